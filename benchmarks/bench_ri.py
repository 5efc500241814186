"""Benchmark: 10,000 stratified randomisation-inference draws for the primary model, n = 2,000.

Run: ``.venv/bin/python benchmarks/bench_ri.py [--n 2000] [--draws 10000] [--naive-subset 200]``

Compared in the same run:

* **hbeval**: ``hbeval.randomisation.design.batch_draws`` (the re-draws, complete randomisation within the
  strata, misfit rule) + ``hbeval.stats.ri.ri_factorial`` (Frisch–Waugh: residualise on
  intercept, start score and stratum dummies once, then every draw's coefficients from a few
  single-precision matrix products and batched 2×2 / 3×3 solves). One pass gives **all six
  contrasts** (both main effects, the interaction and the three cell contrasts). Timed
  separately: the re-draws and the RI computation.
* **naive statsmodels loop**: for each draw, rebuild the design and refit ``sm.OLS`` (array
  API, no formula parsing: the cheapest honest refitting loop). Only ``--naive-subset``
  draws are timed and the time is **extrapolated linearly** to the full number of draws.
  The formula API (``smf.ols``) is timed the same way for reference.
* **pyfixest ``Feols.ritest``** with ``reps`` = the same number of draws, for the
  ``frame_shares`` coefficient only (one coefficient per call), stratum fixed effects
  absorbed. Note that it permutes ``frame_shares`` across the whole sample, ignoring the
  strata (it has no strata option), so it is not the same null distribution: it is timed
  as the peer, not as a substitute.

* **RI confidence intervals** (``hbeval.stats.ri.ri_ci``): the interval of every contrast by
  inverting the RI test over constant effects, on the same draws, against the plain RI pass
  above (goal: a few RI runs, i.e. a ratio ≤ ~3).

BLAS is limited to one thread for every contender (the machine is shared). The script prints
the seconds and the ratios; the goals are ≥ 50× the naive loop, faster than pyfixest and
under 2 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def make_data(n: int, seed: int = 20261122) -> pd.DataFrame:
    from hbeval.demo import simulate_families

    f = simulate_families(n, 0, seed=seed, n_excluded=0)
    items = ("osallisuus", "mieli", "arki", "taidot", "keho")

    def total(tp):
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
    return d


def bench_hbeval(d: pd.DataFrame, draws: int) -> tuple[float, float, dict]:
    from hbeval.randomisation.design import batch_draws
    from hbeval.stats.factorial import factorial_data
    from hbeval.stats.ri import ri_factorial

    fd = factorial_data(d["end"].to_numpy(), d["cell"].to_numpy(), d["stratum"].to_numpy(object), d["start"].to_numpy())
    t0 = time.perf_counter()
    codes = batch_draws(d["stratum"].to_numpy(), draws, np.random.default_rng([1, 2]))
    t1 = time.perf_counter()
    null = ri_factorial(fd, codes[:, fd.mask])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, null


def bench_ri_ci(d: pd.DataFrame, codes: np.ndarray) -> tuple[float, dict]:
    """Seconds for the RI intervals of all six contrasts on the pre-drawn ``codes``."""
    from hbeval.stats.factorial import factorial_data
    from hbeval.stats.ri import ri_ci

    fd = factorial_data(d["end"].to_numpy(), d["cell"].to_numpy(), d["stratum"].to_numpy(object), d["start"].to_numpy())
    t0 = time.perf_counter()
    ci = ri_ci(fd, codes[:, fd.mask])
    return time.perf_counter() - t0, ci


def bench_naive(d: pd.DataFrame, draws: int, subset: int) -> tuple[float, float]:
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    from hbeval.randomisation.design import batch_draws

    codes = batch_draws(d["stratum"].to_numpy(), subset, np.random.default_rng([1, 3]))
    S = pd.get_dummies(d["stratum"], drop_first=True).to_numpy(float)
    y = d["end"].to_numpy()
    start = d["start"].to_numpy()
    t0 = time.perf_counter()
    for b in range(subset):
        c = codes[b]
        X = np.column_stack([np.ones(len(y)), c // 2, c % 2, start, S])
        sm.OLS(y, X).fit().params[1]
    t_arr = (time.perf_counter() - t0) / subset * draws
    dd = d.copy()
    k = max(subset // 4, 10)
    t0 = time.perf_counter()
    for b in range(k):
        dd["frame_shares"] = codes[b] // 2
        dd["teaming"] = codes[b] % 2
        smf.ols("end ~ frame_shares + teaming + start + C(stratum)", data=dd).fit().params["frame_shares"]
    t_formula = (time.perf_counter() - t0) / k * draws
    return t_arr, t_formula


def bench_pyfixest(d: pd.DataFrame, draws: int, subset_slow: int = 200) -> tuple[float, str] | None:
    """pyfixest ``ritest`` for ``frame_shares``: its numba "fast" path when it runs (with the
    strata as absorbed fixed effects, else as dummies: the fast path raised a singular-matrix
    error with absorbed effects in pyfixest 0.60), timed at the full number of draws after a
    100-draw JIT warm-up; without numba the "slow" path, timed on ``subset_slow`` draws and
    extrapolated."""
    try:
        import pyfixest as pf
    except ImportError:
        return None
    try:
        import numba  # noqa: F401

        has_numba = True
    except ImportError:
        has_numba = False
    if has_numba:
        for fml, label in (("end ~ frame_shares + teaming + start | stratum", "fast path, strata absorbed"),
                           ("end ~ frame_shares + teaming + start + C(stratum)", "fast path, strata as dummies")):
            fit = pf.feols(fml, data=d, vcov="hetero")
            try:
                fit.ritest(resampvar="frame_shares", reps=100, rng=np.random.default_rng(5), choose_algorithm="fast")  # JIT warm-up
            except np.linalg.LinAlgError:
                continue
            t0 = time.perf_counter()
            fit.ritest(resampvar="frame_shares", reps=draws, rng=np.random.default_rng(4), choose_algorithm="fast")
            return time.perf_counter() - t0, label
    fit = pf.feols("end ~ frame_shares + teaming + start | stratum", data=d, vcov="hetero")
    t0 = time.perf_counter()
    fit.ritest(resampvar="frame_shares", reps=subset_slow, rng=np.random.default_rng(4), choose_algorithm="slow")
    return (time.perf_counter() - t0) / subset_slow * draws, f"slow path (no numba), extrapolated from {subset_slow} draws"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=10_000)
    ap.add_argument("--naive-subset", type=int, default=200)
    ap.add_argument("--skip-pyfixest", action="store_true")
    a = ap.parse_args()
    from hbeval.stats.ri import blas_single_thread

    d = make_data(a.n)
    print(f"n = {len(d)} families, {d['stratum'].nunique()} strata, {a.draws} draws")
    with blas_single_thread():
        bench_hbeval(d, 200)  # warm-up (imports, BLAS)
        t_draw, t_ri, null = bench_hbeval(d, a.draws)
        t_hb = t_draw + t_ri
        print(f"hbeval          : {t_hb:7.3f} s  (re-draws {t_draw:.3f} s + RI for all 6 contrasts {t_ri:.3f} s)")
        from hbeval.randomisation.design import batch_draws

        t_ci, ci = bench_ri_ci(d, batch_draws(d["stratum"].to_numpy(), a.draws, np.random.default_rng([1, 2])))
        print(f"hbeval RI CIs   : {t_ci:7.3f} s  (all 6 contrasts, same {a.draws} draws) = {t_ci / t_ri:.2f}x plain RI")
        t_arr, t_formula = bench_naive(d, a.draws, a.naive_subset)
        print(f"naive sm.OLS    : {t_arr:7.3f} s  (extrapolated from {a.naive_subset} draws)")
        print(f"naive smf.ols   : {t_formula:7.3f} s  (formula API, extrapolated from {max(a.naive_subset // 4, 10)} draws)")
        t_pf = None if a.skip_pyfixest else bench_pyfixest(d, a.draws)
    if t_pf is not None:
        t_pf, pf_label = t_pf
        print(f"pyfixest ritest : {t_pf:7.3f} s  (one coefficient, {a.draws} reps, not stratified; {pf_label})")
    print("ratios (compute only: every contender gets the same pre-drawn assignments):")
    print(f"  naive sm.OLS loop / hbeval RI  = {t_arr / t_ri:8.1f}x   (goal >= 50x)")
    print(f"  naive smf.ols loop / hbeval RI = {t_formula / t_ri:8.1f}x")
    print("ratios (end to end, the stratified re-draws included on both sides):")
    print(f"  (naive sm.OLS + re-draws) / hbeval = {(t_arr + t_draw) / t_hb:8.1f}x")
    if t_pf is not None:
        print(f"  pyfixest ritest / hbeval (re-draws included) = {t_pf / t_hb:8.1f}x   (goal > 1x)")
    print(f"  RI confidence intervals / plain RI = {t_ci / t_ri:8.2f}x   (goal: a few RI runs)")
    print(f"  hbeval under 2 s: {'yes' if t_hb < 2 else 'no'} ({t_hb:.3f} s with re-draws, {t_ri:.3f} s RI alone)")
    sd = {k: float(np.std(v)) for k, v in null.items()}
    print("null SDs of the estimates:", {k: round(v, 4) for k, v in sd.items()})
    print("RI 95 % intervals:", {k: (round(lo, 4), round(hi, 4)) for k, (lo, hi) in ci.items()})


if __name__ == "__main__":
    main()
