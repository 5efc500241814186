"""Time hbeval.randomisation.redraw.redraw (vectorised re-randomisation) against a numpy floor and a naive loop.

Run: ``.venv/bin/python benchmarks/bench_rerandomise.py [--rounds 5]``. For the batch procedure
(complete randomisation within strata), alternated for ``--rounds`` rounds: ``redraw`` on a
study with an allocation registry (reads the registry, numpy's Fisher–Yates
``Generator.permuted`` per stratum, columns put in the requested order) against the floor of
``bench_ri.py`` (sorted random keys, one SIMD sort per stratum, families left in stratum
order, nothing read from disk), with per-round ratios (min / median / max). Also the speed-up
over calling the single-assignment procedure in a loop (``draw_batch`` per draw for batch;
``block_sequence`` with a fresh key per stratum and draw for permuted blocks, which has no
floor here).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hbeval.randomisation import allocate as assign  # noqa: E402
from hbeval.randomisation.design import block_sequence, draw_batch  # noqa: E402
from hbeval.randomisation.redraw import redraw  # noqa: E402

N_FAMILIES = 2000
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


def floor_vs_redraw(st: Path, cl: pd.DataFrame, rounds: int) -> float:
    """Per-round ratios redraw / floor on the batch study; returns redraw's median seconds."""
    from bench_ri import Floor

    d = pd.DataFrame({"stratum": (cl["site"] + "|" + cl["service_line"]).to_numpy(), "end": 0.0, "start": 1.0})
    d = d.sort_values("stratum", kind="mergesort").reset_index(drop=True)
    d["start"] = np.arange(len(d), dtype=float)  # any non-constant column (the floor's constructor residualises it)
    fl = Floor(d)
    ids = list(cl["client_id"])
    t_hb, t_fl, ratios = [], [], []
    for r in range(rounds):
        pair = {}
        for k in (("hb", "fl") if r % 2 == 0 else ("fl", "hb")):
            c0 = time.process_time()
            if k == "hb":
                redraw(st, ids, N_DRAWS, r)
            else:
                fl.draws(N_DRAWS, np.random.default_rng(r))
            pair[k] = time.process_time() - c0
        t_hb.append(pair["hb"])
        t_fl.append(pair["fl"])
        ratios.append(pair["hb"] / pair["fl"])
    print(f"  redraw {np.median(t_hb):.3f} s CPU, floor {np.median(t_fl):.3f} s CPU (medians of {rounds} rounds); "
          f"ratio redraw / floor min / median / max {min(ratios):.2f} / {np.median(ratios):.2f} / {max(ratios):.2f}")
    return float(np.median(t_hb))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    rounds = ap.parse_args().rounds
    os.environ["HBEVAL_ALLOCATION_KEY"] = "bench-allocation-key-not-a-secret-0123"  # batch keys the registry too
    with tempfile.TemporaryDirectory() as tmp:
        # batch
        st, cl = _study(Path(tmp) / "batch", N_FAMILIES)
        assign.assign_all(st, now=NOW)
        ids = list(cl["client_id"])
        print(f"batch, {N_FAMILIES} families, {N_DRAWS:,} draws, against the floor:")
        floor_vs_redraw(st, cl, rounds)
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
