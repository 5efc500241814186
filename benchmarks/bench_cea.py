"""10,000 bootstrap replicates of the CEA at n = 2,000 families: hbeval.economics.cea vs a naive loop.

* ``hbeval`` — :func:`hbeval.economics.cea.cea_analysis` with ``n_reps=10_000``: every replicate
  refits the three ANCOVA models (main effects, interaction, pilot vs comparison) for cost
  and effect, vectorised (within-arm resampling counts × cross-products, one batched solve);
  the timing also includes the point estimates, HC2 variances, jackknife, Fieller, BCa,
  CEAC and the NMB regressions.
* ``naive`` — the loop one writes with pandas + statsmodels: per replicate
  ``groupby("arm").sample(frac=1, replace=True)`` and six ``smf.ols`` formula fits. It is
  timed on a subset of replicates (default 40) and extrapolated linearly to 10,000 — the
  extrapolation is printed as such.

Also prints both methods' bootstrap SD of ΔC and ΔE for one contrast as a sanity check.

Usage: ``python benchmarks/bench_cea.py [N_NAIVE]``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hbeval.economics.cea import cea_analysis  # noqa: E402
from hbeval.randomisation.design import CELLS  # noqa: E402

N_REPS = 10_000


def make_data(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for k, cell in enumerate(CELLS):
        parts.append(pd.DataFrame({"group": "pilot", "cell": cell, "de": 0.5 + 0.2 * k, "dc": 1500 + 300 * k}, index=range(400)))
    parts.append(pd.DataFrame({"group": "comparison", "cell": None, "de": 0.0, "dc": 0.0}, index=range(400)))
    d = pd.concat(parts, ignore_index=True)
    n = len(d)
    d["stratum"] = rng.choice([f"s{i}" for i in range(10)], n)
    d["start"] = 5 + rng.normal(0, 1.2, n)
    d["end"] = 0.8 * d["start"] + 1 + d["de"] + rng.normal(0, 0.7, n)
    d["cost_pre"] = rng.gamma(2.0, 1500.0, n)
    d["cost"] = 0.5 * d["cost_pre"] + rng.gamma(2.0, 1500.0, n) + d["dc"]
    return d.drop(columns=["de", "dc"])


def naive(d: pd.DataFrame, n_reps: int, seed: int = 2) -> np.ndarray:
    import statsmodels.formula.api as smf

    d = d.copy()
    d["arm"] = np.where(d["group"] == "comparison", "comparison", d["cell"])
    d["fs"] = d["cell"].isin(CELLS[2:]).astype(float)
    d["tm"] = d["cell"].isin([CELLS[1], CELLS[3]]).astype(float)
    d["pilot"] = (d["group"] == "pilot").astype(float)
    out = []
    for b in range(n_reps):
        s = d.groupby("arm", group_keys=False).sample(frac=1.0, replace=True, random_state=seed + b)
        p = s[s["group"] == "pilot"]
        row = []
        for y, base in (("cost", "cost_pre"), ("end", "start")):
            m = smf.ols(f"{y} ~ fs + tm + {base} + C(stratum)", data=p).fit()
            i = smf.ols(f"{y} ~ fs * tm + {base} + C(stratum)", data=p).fit()
            c = smf.ols(f"{y} ~ pilot + {base} + C(stratum)", data=s).fit()
            row += [m.params["fs"], m.params["tm"], i.params["fs:tm"], c.params["pilot"]]
        out.append(row)
    return np.array(out)


def main() -> None:
    n_naive = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    d = make_data()
    print(f"n = {len(d):,} families (4 cells × 400 + 400 comparison), 10 strata, {N_REPS:,} replicates")
    cea_analysis(d, n_reps=200, seed=0)  # warm-up (imports, BLAS threads)
    t, c0 = time.perf_counter(), time.process_time()
    res = cea_analysis(d, n_reps=N_REPS, seed=1)
    t_vec, c_vec = time.perf_counter() - t, time.process_time() - c0
    print(f"hbeval.economics.cea (vectorised): {t_vec:8.2f} s wall, {c_vec:8.2f} s CPU for {N_REPS:,} replicates (3 models × cost and effect, "
          f"+ HC2, jackknife, Fieller, BCa, CEAC, NMB)")
    t, c0 = time.perf_counter(), time.process_time()
    reps = naive(d, n_naive)
    t_naive, c_naive = time.perf_counter() - t, time.process_time() - c0
    t_naive_full = t_naive / n_naive * N_REPS
    c_naive_full = c_naive / n_naive * N_REPS
    print(f"naive pandas loop      : {t_naive:8.2f} s wall, {c_naive:8.2f} s CPU for {n_naive} replicates → extrapolated "
          f"{t_naive_full:8.0f} s wall, {c_naive_full:8.0f} s CPU for {N_REPS:,} (linear extrapolation, not run in full)")
    print(f"ratio naive / vectorised: wall ×{t_naive_full / t_vec:,.0f}, CPU ×{c_naive_full / c_vec:,.0f}")
    c = res.contrasts["pilot_vs_comparison"]
    print(f"sanity (pilot_vs_comparison): bootstrap SD of ΔC {c.reps_cost.std():.1f} (hbeval, {N_REPS}) vs "
          f"{reps[:, 3].std():.1f} (naive, {n_naive}); of ΔE {c.reps_effect.std():.4f} vs {reps[:, 7].std():.4f}; "
          f"HC2 SE of ΔC {np.sqrt(c.var_cost):.1f}, of ΔE {np.sqrt(c.var_effect):.4f}")


if __name__ == "__main__":
    main()
