"""Time hbeval.randomisation.redraw.redraw (vectorised re-randomisation) against a naive loop.

Run: ``.venv/bin/python benchmarks/bench_rerandomise.py``. Prints draws per second and the
speed-up of the vectorised redraws over calling the single-assignment procedure in a loop
(``draw_batch`` per draw for batch; ``block_sequence`` with a fresh key per stratum and
draw for blocks), both run here on the same machine.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hbeval.randomisation import allocate as assign  # noqa: E402
from hbeval.randomisation.design import block_sequence, draw_batch  # noqa: E402
from hbeval.randomisation.redraw import redraw  # noqa: E402

N_FAMILIES = 400
N_DRAWS = 10_000
NAIVE_DRAWS = 200
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _study(root: Path, n: int) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(1)
    cl = pd.DataFrame({"client_id": [f"F{i:05d}" for i in range(n)],
                       "site": rng.choice(["Hämeenlinna", "Siun sote"], n, p=[0.55, 0.45]),
                       "service_line": rng.choice(["home_help", "family_work", "family_counselling", "disability_services",
                                                   "child_welfare_open_care"], n),
                       "group": "pilot"})
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text('[study]\nname = "bench"\nseed = 5\n', encoding="utf-8")
    cl.to_csv(root / "clients.csv", index=False)
    return root, cl


def _time(f, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    os.environ["HBEVAL_ALLOCATION_KEY"] = "bench-allocation-key-not-a-secret-0123"  # batch keys the registry too
    with tempfile.TemporaryDirectory() as tmp:
        # batch
        st, cl = _study(Path(tmp) / "batch", N_FAMILIES)
        assign.assign_all(st, now=NOW)
        ids = list(cl["client_id"])
        t_vec = _time(lambda: redraw(st, ids, N_DRAWS, 1))
        t_naive = _time(lambda: [draw_batch(cl, ["site", "service_line"], s) for s in range(NAIVE_DRAWS)], 1)
        per_vec, per_naive = t_vec / N_DRAWS, t_naive / NAIVE_DRAWS
        print(f"batch, {N_FAMILIES} families in {cl.groupby(['site', 'service_line']).ngroups} strata:")
        print(f"  redraw, {N_DRAWS:,} draws: {t_vec:.3f} s ({N_DRAWS / t_vec:,.0f} draws/s)")
        print(f"  naive loop of draw_batch: {per_naive * 1e3:.2f} ms/draw -> {per_naive * N_DRAWS:.1f} s for {N_DRAWS:,}")
        print(f"  speed-up: {per_naive / per_vec:,.0f}x")
        # permuted blocks in enrolment order
        st, cl = _study(Path(tmp) / "blocks", N_FAMILIES)
        for cid in cl["client_id"]:
            assign.assign_one(st, cid, now=NOW)
        t_vec = _time(lambda: redraw(st, ids, N_DRAWS, 1))
        lab = (cl["site"] + "|" + cl["service_line"]).to_numpy()
        strata = {s: int((lab == s).sum()) for s in np.unique(lab)}

        def naive_blocks():
            for d in range(NAIVE_DRAWS // 4):
                for s, n in strata.items():
                    block_sequence(f"k{d}".encode(), s, n)

        t_naive = _time(naive_blocks, 1)
        per_vec, per_naive = t_vec / N_DRAWS, t_naive / (NAIVE_DRAWS // 4)
        print(f"permuted blocks (4, 8), {N_FAMILIES} families in enrolment order:")
        print(f"  redraw, {N_DRAWS:,} draws: {t_vec:.3f} s ({N_DRAWS / t_vec:,.0f} draws/s)")
        print(f"  naive loop of block_sequence: {per_naive * 1e3:.2f} ms/draw -> {per_naive * N_DRAWS:.1f} s for {N_DRAWS:,}")
        print(f"  speed-up: {per_naive / per_vec:,.0f}x")


if __name__ == "__main__":
    main()
