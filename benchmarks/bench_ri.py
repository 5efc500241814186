"""Benchmark: 10,000 stratified randomisation-inference draws for the primary model, n = 2,000.

Run: ``.venv/bin/python benchmarks/bench_ri.py [--n 2000] [--draws 10000] [--rounds 5] [--skip-pyfixest]``

Contenders, alternated in every round of one run (BLAS limited to one thread for all):

* **hbeval**: ``hbeval.randomisation.design.batch_draws`` (the re-draws: complete
  randomisation within the strata, misfit rule, numpy's Fisher–Yates ``Generator.permuted``
  per stratum) + ``hbeval.stats.ri.ri_factorial`` (Frisch–Waugh on a QR basis of intercept,
  start score and stratum dummies; single-precision indicator products; batched 2×2 / 3×3
  solves). One pass gives all six contrasts; it accepts any draws (blocks, minimisation,
  a subset of the families), so it cannot assume the stratum counts.
* **floor** (written here, the fastest numpy we know for this exact problem): the draws as
  sorted random keys (a 30-bit uniform key per family with the template cell in its low two
  bits, one SIMD ``np.sort`` per stratum, the cells read off the sorted keys; families kept in
  stratum order, so nothing is scattered), and the statistic by Frisch–Waugh with the
  within-stratum cell counts known from the generator, so each draw needs only the products
  of its three cell indicators with two columns (the within-stratum-demeaned start score and
  the residualised outcome). The floor's null estimates are checked against hbeval's on the
  floor's own draws.
* **pyfixest** ``Feols.ritest`` (if installed), ``reps`` = the same number of draws, run once
  (not per round): **one coefficient** per call (``frame_shares``), and it **does not
  stratify** (it permutes the treatment across the whole sample; it has no strata option),
  so it is a different null distribution: timed as the nearest packaged peer, not a
  substitute.

Printed: seconds per contender and round (wall and CPU), and the per-round ratios hbeval /
floor (draws, statistic, total) as min / median / max. The machine is shared: the CPU-time
ratio is the less noisy one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import mmm, timed  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

from hbeval.randomisation.design import batch_draws  # noqa: E402
from hbeval.stats.factorial import factorial_data  # noqa: E402
from hbeval.stats.ri import blas_single_thread, ri_factorial  # noqa: E402

CELL_CONTRASTS = ("cell:frame_only/teaming", "cell:frame_shares/no_teaming", "cell:frame_shares/teaming")


def make_data(n: int, seed: int = 20261122) -> pd.DataFrame:
    from hbeval.demo import simulate_families

    f = simulate_families(n, 0, seed=seed, n_excluded=0)
    items = ("osallisuus", "mieli", "arki", "taidot", "keho")

    def total(tp: str) -> pd.Series:
        m = f[[f"kyky_{i}_{tp}" for i in items]]
        return m.mean(axis=1).where(m.notna().sum(axis=1) >= 4)

    d = pd.DataFrame({
        "stratum": f["stratum"].astype(str).to_numpy(),
        "cell": (2 * (f["frame_arm"] == "frame_shares").astype(int) + (f["teaming_arm"] == "teaming").astype(int)).to_numpy(),
        "end": total("end").to_numpy(),
        "start": total("start").to_numpy(),
    })
    # the benchmark times n = 2,000 analysed families: fill the rare missing scores
    d["end"] = d["end"].fillna(d["end"].mean())
    d["start"] = d["start"].fillna(d["start"].mean())
    d["frame_shares"] = d["cell"] // 2
    d["teaming"] = d["cell"] % 2
    # the floor keeps the families in stratum order (hbeval accepts any order)
    return d.sort_values("stratum", kind="mergesort").reset_index(drop=True)


# ----------------------------------------------------------------------------- the floor
class Floor:
    """Fused numpy RI for complete randomisation within strata (families sorted by stratum)."""

    def __init__(self, d: pd.DataFrame) -> None:
        g = pd.factorize(d["stratum"], sort=True)[0]
        self.sizes = np.bincount(g)
        self.starts = np.r_[0, np.cumsum(self.sizes)[:-1]]
        n = len(d)
        tmpl = np.empty(n, dtype=np.uint32)
        for s0, m in zip(self.starts, self.sizes):
            tmpl[s0 : s0 + m] = np.arange(m) % 4  # the misfit slots are overwritten per draw
        self.tmpl = tmpl
        y, s = d["end"].to_numpy(float), d["start"].to_numpy(float)

        def demean(v: np.ndarray) -> np.ndarray:
            return v - (np.bincount(g, weights=v) / self.sizes)[g]

        st = demean(s)
        yt = demean(y)
        self.sts = float(st @ st)
        yt = yt - st * (st @ yt) / self.sts  # M_W y: within strata, then the start score
        self.V = np.ascontiguousarray(np.column_stack([st, yt]).astype(np.float32))

    def draws(self, n_draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(codes (B, n) int8, counts (B, G, 4))``: 30 random bits per key above the two
        bits of the template cell (a tie, probability ~ m² / 2³¹ per stratum of m families
        and draw, orders the tied pair by cell: negligible for a floor)."""
        low = np.uint32(3)
        keys = rng.integers(0, 2**32, size=(n_draws, len(self.tmpl)), dtype=np.uint32)
        keys &= ~low
        keys |= self.tmpl.astype(np.uint32)
        counts = np.empty((n_draws, len(self.sizes), 4))
        cells = np.arange(4, dtype=np.uint32)
        for g, (s0, m) in enumerate(zip(self.starts, self.sizes)):
            base, r = divmod(int(m), 4)
            counts[:, g, :] = base
            if r:  # misfit rule: the r extra families get r distinct cells, at random
                k4 = rng.integers(0, 2**32, size=(n_draws, 4), dtype=np.uint32) & ~low | cells
                k4.sort(axis=1)
                extra = k4[:, :r] & low
                seg = keys[:, s0 + 4 * base : s0 + m]
                seg &= ~low
                seg |= extra
                counts[:, g, :] += (extra[:, :, None] == cells).sum(axis=1)
            keys[:, s0 : s0 + m].sort(axis=1)
        codes = keys.view(np.uint8)[:, ::4] & np.uint8(3)  # the low byte (little-endian)
        return codes.view(np.int8), counts

    def stat(self, codes: np.ndarray, counts: np.ndarray, chunk: int = 512) -> dict[str, np.ndarray]:
        B = len(codes)
        u = np.empty((B, 3, 2))  # Z_k'[s̃, ỹ], k = 1, 2, 3
        for a in range(0, B, chunk):
            c = codes[a : a + chunk]
            for k in (1, 2, 3):
                u[a : a + chunk, k - 1] = (c == k).astype(np.float32) @ self.V
        nk = counts[:, :, 1:]  # (B, G, 3)
        ng = self.sizes.astype(float)[None, :, None]
        G = -np.einsum("bgj,bgk->bjk", nk / ng, nk)
        G[:, [0, 1, 2], [0, 1, 2]] += nk.sum(axis=1)
        G -= u[:, :, None, 0] * u[:, None, :, 0] / self.sts
        beta = np.linalg.solve(G, u[:, :, 1:])[:, :, 0]
        out = {c: beta[:, i] for i, c in enumerate(CELL_CONTRASTS)}
        out["frame_shares:teaming"] = beta[:, 2] - beta[:, 0] - beta[:, 1]
        # main effects: F = Z2 + Z3, T = Z1 + Z3
        F, T = np.array([0.0, 1.0, 1.0]), np.array([1.0, 0.0, 1.0])
        a11, a22, a12 = F @ G @ F, T @ G @ T, F @ G @ T
        uF, uT = u[:, :, 1] @ F, u[:, :, 1] @ T
        det = a11 * a22 - a12**2
        out["frame_shares"] = (a22 * uF - a12 * uT) / det
        out["teaming"] = (a11 * uT - a12 * uF) / det
        return out


# ----------------------------------------------------------------------------- contenders
def bench_pyfixest(d: pd.DataFrame, draws: int) -> tuple[float, str] | None:
    """pyfixest ``ritest`` for ``frame_shares`` (numba "fast" path after a 100-draw warm-up;
    strata absorbed, else as dummies when the fast path fails with absorbed effects)."""
    try:
        import pyfixest as pf
    except ImportError:
        return None
    for fml, label in (("end ~ frame_shares + teaming + start | stratum", "fast path, strata absorbed"),
                       ("end ~ frame_shares + teaming + start + C(stratum)", "fast path, strata as dummies")):
        fit = pf.feols(fml, data=d, vcov="hetero")
        try:
            fit.ritest(resampvar="frame_shares", reps=100, rng=np.random.default_rng(5), choose_algorithm="fast")
        except (np.linalg.LinAlgError, ImportError):
            continue
        t0 = time.perf_counter()
        fit.ritest(resampvar="frame_shares", reps=draws, rng=np.random.default_rng(4), choose_algorithm="fast")
        return time.perf_counter() - t0, f"pyfixest {pf.__version__}, {label}"
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-pyfixest", action="store_true")
    a = ap.parse_args()
    d = make_data(a.n)
    fd = factorial_data(d["end"].to_numpy(), d["cell"].to_numpy(), d["stratum"].to_numpy(object), d["start"].to_numpy())
    assert fd.mask.all()
    floor = Floor(d)
    lab = d["stratum"].to_numpy()
    print(f"n = {len(d)} families, {d['stratum'].nunique()} strata, {a.draws:,} draws, 6 contrasts, {a.rounds} rounds")
    rows = []
    with blas_single_thread():
        # warm-up and a correctness check: hbeval's statistic on the floor's draws
        codes, counts = floor.draws(500, np.random.default_rng(9))
        ref = ri_factorial(fd, codes, precision="float64")
        got = floor.stat(codes, counts)
        for c in ref:
            err = np.max(np.abs(got[c] - ref[c])) / np.std(ref[c])
            assert err < 1e-4, (c, err)
        ri_factorial(fd, batch_draws(lab, 500, np.random.default_rng(1)))
        for r in range(a.rounds):
            res: dict[str, tuple[float, float]] = {}

            def hb(r: int = r, res: dict[str, tuple[float, float]] = res) -> None:
                w, c, codes = timed(lambda: batch_draws(lab, a.draws, np.random.default_rng([1, r])))
                res["hb_draws"] = (w, c)
                w, c, _ = timed(lambda: ri_factorial(fd, codes))
                res["hb_stat"] = (w, c)

            def fl(r: int = r, res: dict[str, tuple[float, float]] = res) -> None:
                w, c, (codes, counts) = timed(lambda: floor.draws(a.draws, np.random.default_rng([1, r])))
                res["fl_draws"] = (w, c)
                w, c, _ = timed(lambda: floor.stat(codes, counts))
                res["fl_stat"] = (w, c)

            for f in ((hb, fl) if r % 2 == 0 else (fl, hb)):
                f()
            rows.append(res)
            print(f"round {r + 1}: hbeval draws {res['hb_draws'][0]:.3f} s + RI {res['hb_stat'][0]:.3f} s | floor draws "
                  f"{res['fl_draws'][0]:.3f} s + RI {res['fl_stat'][0]:.3f} s (wall; CPU {res['hb_draws'][1]:.3f} + "
                  f"{res['hb_stat'][1]:.3f} vs {res['fl_draws'][1]:.3f} + {res['fl_stat'][1]:.3f})")
        pf = None if a.skip_pyfixest else bench_pyfixest(d, a.draws)

    def ratio(key: str, i: int) -> list[float]:
        if key == "total":
            return [(x["hb_draws"][i] + x["hb_stat"][i]) / (x["fl_draws"][i] + x["fl_stat"][i]) for x in rows]
        return [x[f"hb_{key}"][i] / x[f"fl_{key}"][i] for x in rows]

    med = {k: float(np.median([x[k][0] for x in rows])) for k in rows[0]}
    medc = {k: float(np.median([x[k][1] for x in rows])) for k in rows[0]}
    print(f"median wall: hbeval {med['hb_draws'] + med['hb_stat']:.3f} s (draws {med['hb_draws']:.3f} + RI {med['hb_stat']:.3f}); "
          f"floor {med['fl_draws'] + med['fl_stat']:.3f} s (draws {med['fl_draws']:.3f} + RI {med['fl_stat']:.3f})")
    print(f"median CPU : hbeval {medc['hb_draws'] + medc['hb_stat']:.3f} s (draws {medc['hb_draws']:.3f} + RI {medc['hb_stat']:.3f}); "
          f"floor {medc['fl_draws'] + medc['fl_stat']:.3f} s (draws {medc['fl_draws']:.3f} + RI {medc['fl_stat']:.3f})")
    print("per-round ratio hbeval / floor, min / median / max (goal <= 1.5):")
    for key in ("draws", "stat", "total"):
        print(f"  {key:6s} wall {mmm(ratio(key, 0))}   CPU {mmm(ratio(key, 1))}")
    if pf is not None:
        t_pf, label = pf
        hb = med["hb_draws"] + med["hb_stat"]
        print(f"pyfixest ritest: {t_pf:.3f} s wall for ONE coefficient, {a.draws:,} unstratified permutations ({label}); "
              f"hbeval (draws + all 6 contrasts, median) is {t_pf / hb:.1f}x faster")
    elif not a.skip_pyfixest:
        print("pyfixest not installed (or its fast path failed): not timed")


if __name__ == "__main__":
    main()
