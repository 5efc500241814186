"""10,000 bootstrap replicates of the CEA at n = 2,000 families: hbeval against a vectorised numpy floor.

Run: ``.venv/bin/python benchmarks/bench_cea.py [--reps 10000] [--rounds 5] [--naive 0]``

Contenders, alternated in every round of one run (BLAS limited to one thread for all):

* **hbeval CEA** — :func:`hbeval.economics.cea.cea_analysis` with ``n_reps`` replicates:
  every replicate refits the three ANCOVA models (main effects, interaction, pilot vs
  comparison) for cost and effect, resampling within arms; the time also includes the point
  estimates, HC2 variances, jackknife, Fieller, BCa, the CEAC and the NMB regressions.
* **hbeval bootstrap kernel** — :func:`hbeval.stats.icer.bootstrap_ols` alone on the same six
  designs (the part the floor does): resampling counts from the chunk-invariant engine (a
  seeded generator per arm and block of 16 replicates), per-cell sums of the varying columns
  and their products, normal equations assembled per replicate, one batched solve.
* **floor** (written here): per sample, the resampling counts of every arm drawn at once
  (one ``integers`` + one ``bincount`` per arm and chunk of 2,000 replicates, no per-block
  generators, so its replicates depend on the chunk), then ``counts @ P`` with ``P`` the
  pairwise products of all the columns the models use (intercept, arms, baselines, stratum
  dummies, outcomes; identical and all-zero products once), the normal equations of each model picked out of those cross-products,
  and one batched ``np.linalg.solve``. It computes only the bootstrap replicates of the
  coefficients (no HC2, jackknife, Fieller, BCa, CEAC, NMB).
* ``--naive K``: additionally the pandas ``groupby.sample`` + ``smf.ols`` loop on ``K``
  replicates, extrapolated (the old weak peer; off by default).

Printed: seconds per contender and round, per-round ratios (min / median / max), and as a
check the floor's point estimates (all counts 1) against hbeval's and both bootstrap SDs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import mmm, timed  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

from hbeval.arms import CELLS  # noqa: E402
from hbeval.economics.cea import cea_analysis  # noqa: E402
from hbeval.stats.icer import bootstrap_ols  # noqa: E402
from hbeval.stats.ols import strata_dummies  # noqa: E402
from hbeval.stats.ri import blas_single_thread  # noqa: E402

WTP = (0.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0)


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


def samples(d: pd.DataFrame) -> list[dict]:
    """The two resampling samples of the CEA with their columns and models (column indices)."""
    out = []
    arm_all = np.where(d["group"] == "comparison", "comparison", d["cell"].astype(object))
    for name, m in (("randomised", (d["group"] == "pilot").to_numpy()), ("pilot_vs_comparison", np.ones(len(d), bool))):
        s = d[m]
        n = len(s)
        S, _ = strata_dummies(s["stratum"].to_numpy(object))
        arm = arm_all[m]
        one = np.ones(n)
        c0, e0, c, e = (s[k].to_numpy(float) for k in ("cost_pre", "start", "cost", "end"))
        if name == "randomised":
            fs = np.isin(arm, CELLS[2:]).astype(float)
            tm = np.isin(arm, (CELLS[1], CELLS[3])).astype(float)
            cols = np.column_stack([one, fs, tm, fs * tm, c0, e0, S, c, e])
            k = 6 + S.shape[1]  # index of c; e is k + 1
            st = list(range(6, k))
            models = {("main", "cost"): ([0, 1, 2, 4, *st], k), ("main", "effect"): ([0, 1, 2, 5, *st], k + 1),
                      ("inter", "cost"): ([0, 1, 2, 3, 4, *st], k), ("inter", "effect"): ([0, 1, 2, 3, 5, *st], k + 1)}
        else:
            pilot = (arm != "comparison").astype(float)
            cols = np.column_stack([one, pilot, c0, e0, S, c, e])
            k = 4 + S.shape[1]
            st = list(range(4, k))
            models = {("pvc", "cost"): ([0, 1, 2, *st], k), ("pvc", "effect"): ([0, 1, 3, *st], k + 1)}
        out.append({"name": name, "arm": arm, "cols": cols, "models": models, "stratum": s["stratum"].to_numpy(object)})
    return out


# ----------------------------------------------------------------------------- the floor
def floor(smp: list[dict], n_reps: int, rng: np.random.Generator, chunk: int = 2000,
          ones: bool = False) -> dict[tuple[str, str], np.ndarray]:
    """Bootstrap coefficients of every model (``ones``: one replicate with all counts 1)."""
    res: dict[tuple[str, str], np.ndarray] = {}
    for sm in smp:
        C = sm["cols"]
        n, q = C.shape
        iu = np.triu_indices(q)
        P = C[:, iu[0]] * C[:, iu[1]]  # (n, q(q+1)/2) pairwise products
        # identical products (dummy x dummy = dummy, ...) and zero ones (two stratum dummies)
        # are computed once
        P, inv = np.unique(P, axis=1, return_inverse=True)
        inv = inv.ravel()
        codes, uniq = pd.factorize(sm["arm"])
        members = [np.flatnonzero(codes == a) for a in range(len(uniq))]
        Pm = [P[idx] for idx in members]
        outs = {key: np.empty((1 if ones else n_reps, len(x))) for key, (x, _) in sm["models"].items()}
        for a0 in range(0, 1 if ones else n_reps, chunk):
            B = 1 if ones else min(chunk, n_reps - a0)
            cp = np.zeros((B, P.shape[1]))
            for idx, pm in zip(members, Pm):
                m = len(idx)
                if ones:
                    w = np.ones((1, m))
                else:
                    dr = rng.integers(0, m, size=(B, m))
                    dr += (np.arange(B) * m)[:, None]
                    w = np.bincount(dr.ravel(), minlength=B * m).reshape(B, m).astype(float)
                cp += w @ pm
            G = np.empty((B, q, q))
            G[:, iu[0], iu[1]] = cp[:, inv]
            G[:, iu[1], iu[0]] = cp[:, inv]
            for key, (x, y) in sm["models"].items():
                xi = np.array(x)
                outs[key][a0 : a0 + B] = np.linalg.solve(G[:, xi[:, None], xi[None, :]], G[:, xi, y][:, :, None])[:, :, 0]
        res.update(outs)
    return res


def hbeval_kernel(smp: list[dict], n_reps: int, rng: np.random.Generator) -> dict[tuple[str, str], np.ndarray]:
    res = {}
    for sm in smp:
        keys = list(sm["models"])
        designs = [sm["cols"][:, sm["models"][k][0]] for k in keys]
        ys = [sm["cols"][:, sm["models"][k][1]] for k in keys]
        res.update(zip(keys, bootstrap_ols(designs, ys, sm["arm"], n_reps, rng, groups=sm["stratum"])))
    return res


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
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--naive", type=int, default=0, help="replicates of the naive pandas loop to time (0: skip)")
    a = ap.parse_args()
    d = make_data()
    smp = samples(d)
    print(f"n = {len(d):,} families (4 cells x 400 + 400 comparison), 10 strata, {a.reps:,} replicates, {a.rounds} rounds")
    with blas_single_thread():
        # checks: the floor's normal equations give hbeval's point estimates; warm-up
        res = cea_analysis(d, WTP, 1000.0, 200, 0, min_cell=5)
        pt = floor(smp, 1, np.random.default_rng(0), ones=True)
        got = {"frame_shares": (pt[("main", "cost")][0, 1], pt[("main", "effect")][0, 1]),
               "pilot_vs_comparison": (pt[("pvc", "cost")][0, 1], pt[("pvc", "effect")][0, 1])}
        for c, (dc, de) in got.items():
            ref = res.contrasts[c]
            assert abs(dc - ref.delta_cost) < 1e-6 * abs(ref.delta_cost) and abs(de - ref.delta_effect) < 1e-8, c
        rows = []
        for r in range(a.rounds):
            t: dict[str, tuple[float, float]] = {}
            out: dict[str, object] = {}
            jobs = {
                "cea": lambda r=r: cea_analysis(d, WTP, 1000.0, a.reps, r, min_cell=5),
                "kernel": lambda r=r: hbeval_kernel(smp, a.reps, np.random.default_rng([r, 1])),
                "floor": lambda r=r: floor(smp, a.reps, np.random.default_rng([r, 2])),
            }
            names = list(jobs) if r % 2 == 0 else list(jobs)[::-1]
            for k in names:
                w, c, out[k] = timed(jobs[k])
                t[k] = (w, c)
            rows.append(t)
            print(f"round {r + 1}: hbeval CEA {t['cea'][0]:.2f} s, hbeval bootstrap kernel {t['kernel'][0]:.2f} s, "
                  f"floor {t['floor'][0]:.2f} s (wall; CPU {t['cea'][1]:.2f} / {t['kernel'][1]:.2f} / {t['floor'][1]:.2f})")
    med = {k: float(np.median([x[k][0] for x in rows])) for k in rows[0]}
    print(f"median wall: hbeval CEA {med['cea']:.2f} s, kernel {med['kernel']:.2f} s, floor {med['floor']:.2f} s")
    print("per-round ratios, min / median / max (goal: kernel / floor <= 1.5):")
    for num in ("kernel", "cea"):
        print(f"  {num:6s} / floor: wall {mmm([x[num][0] / x['floor'][0] for x in rows])}   "
              f"CPU {mmm([x[num][1] / x['floor'][1] for x in rows])}")
    fl, kn = out["floor"], out["kernel"]
    assert isinstance(fl, dict) and isinstance(kn, dict)
    print("bootstrap SD of the pilot-vs-comparison coefficient (cost, effect): hbeval "
          f"{kn[('pvc', 'cost')][:, 1].std():.1f}, {kn[('pvc', 'effect')][:, 1].std():.4f}; floor "
          f"{fl[('pvc', 'cost')][:, 1].std():.1f}, {fl[('pvc', 'effect')][:, 1].std():.4f}")
    if a.naive:
        w, c, reps = timed(lambda: naive(d, a.naive))
        print(f"naive pandas + smf.ols loop: {w:.2f} s for {a.naive} replicates -> extrapolated {w / a.naive * a.reps:,.0f} s "
              f"for {a.reps:,} ({w / a.naive * a.reps / med['cea']:,.0f}x hbeval CEA; linear extrapolation, not run in full)")


if __name__ == "__main__":
    main()
