"""Attrition of the randomised families: rates, differential attrition, Lee bounds, an
inverse-probability-weighted sensitivity estimate and McKenzie's missing-baseline dummy.

A family is *observed* when its end score of the primary outcome exists. The bounds are the
kernels of :mod:`hbeval.stats.bounds`; the Study glue (:func:`attrition_results`) is last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hbeval.arms import CELLS, SEEDS
from hbeval.outcomes.frame import outcome_frame
from hbeval.privacy import suppress_count
from hbeval.stats.bounds import lee_bounds, lee_bounds_bootstrap
from hbeval.stats.dist import pearson_chi2
from hbeval.stats.factorial import FactorialData, factorial_data, fit_interaction, fit_main
from hbeval.stats.ols import strata_dummies
from hbeval.stats.propensity import logit_fit

ATTRITION_COLUMNS = ["section", "cell", "contrast", "n_assigned", "n_observed", "attrition_rate", "estimate", "std_error", "ci_low",
                     "ci_high", "p_value", "lower_bound", "upper_bound", "bound_ci_low", "bound_ci_high", "trim_share", "n", "method"]


# ---------------------------------------------------------------------------- IPW
def observation_design(cell: np.ndarray, stratum: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Design of the observation model ``P(observed | cell, start score, stratum)`` (a
    missing start enters as the mean plus a missing indicator); intercept first."""
    start = np.asarray(start, dtype=float)
    miss = ~np.isfinite(start)
    s = np.where(miss, np.nanmean(start) if (~miss).any() else 0.0, start)
    S, _ = strata_dummies(stratum)
    C = np.column_stack([(np.asarray(cell) == k).astype(float) for k in (1, 2, 3)])
    cols = [np.ones(len(s)), C, s[:, None]] + ([miss[:, None].astype(float)] if miss.any() and not miss.all() else []) + ([S] if S.shape[1] else [])
    return np.column_stack(cols)


def ipw_effects(end: np.ndarray, start: np.ndarray, cell: np.ndarray, stratum: np.ndarray) -> list[dict]:
    """ANCOVA (primary specification) on the observed families weighted by the inverse of
    their fitted probability of being observed (HC2 on the weighted fit; the weights are
    treated as known). Rows for the two main effects and the interaction."""
    end = np.asarray(end, dtype=float)
    start = np.asarray(start, dtype=float)
    X = observation_design(cell, stratum, start)
    obs = np.isfinite(end).astype(float)
    beta = logit_fit(X, obs)
    p = 1 / (1 + np.exp(-(X @ beta)))
    d = factorial_data(end, cell, stratum, start)
    w = 1 / p[d.mask]
    rows = []
    m = fit_main(d, weights=w)
    for c in ("frame_shares", "teaming"):
        rows.append({"contrast": c, **m.row(c), "n": d.n})
    i = fit_interaction(d, weights=w)
    rows.append({"contrast": "frame_shares:teaming", **i.row("frame_shares:teaming"), "n": d.n})
    return rows


def mckenzie_effects(end: np.ndarray, start: np.ndarray, cell: np.ndarray, stratum: np.ndarray) -> list[dict]:
    """ANCOVA keeping families whose start score is missing: the start is set to the mean
    of the observed starts and a missing-baseline indicator is added (McKenzie 2012)."""
    end = np.asarray(end, dtype=float)
    start = np.asarray(start, dtype=float)
    miss = ~np.isfinite(start)
    filled = np.where(miss, np.nanmean(start), start)
    d = factorial_data(end, cell, stratum, filled)
    if miss[d.mask].any():
        d = FactorialData(d.y, d.frame, d.teaming, d.start, d.stratum, d.mask, extra=miss[d.mask].astype(float)[:, None],
                          extra_names=("start_missing",))
    rows = []
    m = fit_main(d)
    for c in ("frame_shares", "teaming"):
        rows.append({"contrast": c, **m.row(c), "n": d.n, "n_missing_start": int(miss[d.mask].sum())})
    i = fit_interaction(d)
    rows.append({"contrast": "frame_shares:teaming", **i.row("frame_shares:teaming"), "n": d.n, "n_missing_start": int(miss[d.mask].sum())})
    return rows


# ---------------------------------------------------------------------------- table
def attrition_table(frame: pd.DataFrame, outcome: str, min_cell: int, n_reps: int,
                    seed: int | np.random.Generator) -> pd.DataFrame:
    """Pure core of :func:`attrition_results` on an outcome frame (assigned families only)."""

    rand = frame[frame["cell"].notna()].sort_values("client_id", kind="mergesort").reset_index(drop=True)
    cell = rand["cell"].astype(int).to_numpy()
    stratum = rand["stratum"].astype(str).to_numpy()
    end = pd.to_numeric(rand.get(f"{outcome}_end"), errors="coerce").to_numpy(float) if f"{outcome}_end" in rand else np.full(len(rand), np.nan)
    start = pd.to_numeric(rand[f"{outcome}_start"], errors="coerce").to_numpy(float) if f"{outcome}_start" in rand else np.full(len(rand), np.nan)
    obs = np.isfinite(end)
    rows: list[dict] = []
    # rates by cell
    for k, lab in [*enumerate(CELLS), (None, "all")]:
        m = np.ones(len(cell), bool) if k is None else cell == k
        na, no = int(m.sum()), int((obs & m).sum())
        rows.append({"section": "rate", "cell": lab, "n_assigned": na, "n_observed": no,
                     "attrition_rate": 1 - no / na if na else np.nan, "method": f"observed = {outcome}_end present"})
    # differential attrition: chi-square over cells, and a linear probability model
    tab = np.array([[int((~obs & (cell == k)).sum()), int((obs & (cell == k)).sum())] for k in range(4)])
    if (tab.sum(axis=0) > 0).all() and (tab.sum(axis=1) > 0).all():
        chi2, p, dof = pearson_chi2(tab)
        rows.append({"section": "differential", "contrast": "cells (joint)", "estimate": chi2, "p_value": p, "n": len(cell),
                     "method": f"pearson chi-square, {dof} df, attrition by cell"})
    miss = (~obs).astype(float)
    dl = factorial_data(miss, cell, stratum, None)
    if dl.n and np.ptp(dl.y) > 0:
        m = fit_main(dl)
        for c in ("frame_shares", "teaming"):
            rows.append({"section": "differential", "contrast": c, **m.row(c), "n": dl.n, "method": "lpm_hc2: attrition on arms + strata"})
        i = fit_interaction(dl)
        rows.append({"section": "differential", "contrast": "frame_shares:teaming", **i.row("frame_shares:teaming"), "n": dl.n,
                     "method": "lpm_hc2: attrition on arms + strata"})
    # Lee bounds for each margin (end score, families of both groups)
    rng = np.random.default_rng(seed)
    if obs.sum() > 4:
        for c, treat in (("frame_shares", cell >= 2), ("teaming", cell % 2 == 1)):
            b = lee_bounds(end, obs, treat)
            lo, hi = lee_bounds_bootstrap(end, obs, treat, n_reps, rng)
            rows.append({"section": "lee_bounds", "contrast": c, "lower_bound": b["lower"], "upper_bound": b["upper"],
                         "bound_ci_low": lo, "bound_ci_high": hi, "trim_share": b["trim_share"], "n": int(obs.sum()),
                         "method": f"lee_2009 on {outcome}_end, trimmed group: {b['trimmed']}; percentile bootstrap ({n_reps}) of the bounds"})
    # complete cases, IPW and McKenzie
    if np.isfinite(start).any() and obs.sum() > 8:
        d = factorial_data(end, cell, stratum, start)
        m = fit_main(d)
        i = fit_interaction(d)
        for c, r in (("frame_shares", m.row("frame_shares")), ("teaming", m.row("teaming")), ("frame_shares:teaming", i.row("frame_shares:teaming"))):
            rows.append({"section": "complete_cases", "contrast": c, **r, "n": d.n, "method": "ancova_hc2 (primary specification)"})
        for r in ipw_effects(end, start, cell, stratum):
            rows.append({"section": "ipw", **r, "method": "ancova_hc2 weighted by 1/P(observed | cell, start, strata)"})
        for r in mckenzie_effects(end, start, cell, stratum):
            r = dict(r)
            nm = r.pop("n_missing_start")
            rows.append({"section": "missing_baseline_dummy", **r,
                         "method": f"ancova_hc2 with missing start set to the mean + indicator (mckenzie 2012); {suppress_count(nm, min_cell)} missing starts"})
    out = pd.DataFrame(rows)
    for c in ATTRITION_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    out = out[ATTRITION_COLUMNS]
    out["outcome"] = outcome
    for c in ("n_assigned", "n_observed", "n"):
        out[c] = [suppress_count(v, min_cell) if pd.notna(v) else "" for v in out[c]]
    small = out["n_assigned"].astype(str).str.startswith("<") | out["n_observed"].astype(str).str.startswith("<")
    out.loc[small, "attrition_rate"] = np.nan
    return out


def attrition_results(study, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """``results/attrition.csv`` for the primary outcome: rates by cell, differential
    attrition (chi-square over cells; LPM with HC2 per margin), Lee bounds per margin with
    bootstrap intervals (``config.bootstrap_reps``, seeded ``[seed, 4002]``), the complete-case
    ANCOVA, the IPW sensitivity estimate and the missing-baseline dummy estimate."""
    cfg = study.config
    if frame is None:
        frame = outcome_frame(study)
    return attrition_table(frame, cfg.primary, cfg.min_cell, cfg.bootstrap_reps, np.random.default_rng([cfg.seed, SEEDS["attrition_bootstrap"]]))
