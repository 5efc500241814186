"""Pilot families against the non-randomised comparison group.

**This contrast is not randomised.** Families chose HB; the comparison group is clients of
the same target group and services who did not. The estimate is an average effect on the
treated (ATT) under the assumption that, given the baseline score, service line, family
composition, area and pre-period register costs, the choice is unrelated to potential
outcomes (no unmeasured confounding). With one pre-period, parallel trends cannot be
tested; the pre-period register costs serve as a placebo outcome instead.

The statistics (propensity model, ATT weights, trimming, SMD, ESS, the doubly robust
estimate) are the kernels of :mod:`hbeval.stats.propensity`; this module is the Study glue
(:func:`comparison_results`, :func:`comparison_effect_rows`); the figures are in
:mod:`hbeval.report.plots.comparison`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hbeval.costs.engine import family_costs_from_tables, wide_costs, wide_family_costs
from hbeval.outcomes.frame import outcome_frame
from hbeval.privacy import pool_rare_levels, suppress_count
from hbeval.stats.propensity import att_weights, common_support, dr_att, ess, logit_fit, smd

METHOD_DR = "dr_att_ipw_regression (not randomised)"
NOT_RANDOMISED = "not randomised: propensity-weighted observational comparison"
NOTE_TOO_FEW = "not estimable: fewer than 2 pilot or 2 comparison families with the outcome within common support"
NOTE_SEPARATED = ("not estimable: the propensity model separates pilot from comparison families "
                  "(no comparison family with the outcome carries weight)")
HIST_BINS = np.linspace(0, 1, 21)


# ---------------------------------------------------------------------------- design
def covariate_matrix(frame: pd.DataFrame, numeric: list[str], categorical: list[str], missing_dummy: bool = True,
                     intercept: bool = False) -> tuple[np.ndarray, list[str]]:
    """Covariates for the propensity and outcome models: numeric columns (missing values set
    to the mean with a missing-indicator, McKenzie's approach, when any is missing) and
    treatment-coded categorical columns (first level in sorted order left out). With
    ``intercept`` a column of ones comes first (not in the names): the propensity design
    without a second n × p copy. The matrix is written once, column by column (a national
    study has ~1 M rows and ~50 columns: 0.4 GB)."""
    cols: list = []
    names: list[str] = []
    for c in numeric:
        if c not in frame.columns:
            continue
        v = pd.to_numeric(frame[c], errors="coerce").to_numpy(float)
        miss = ~np.isfinite(v)
        if miss.all():
            continue
        if miss.any() and missing_dummy:
            v = np.where(miss, np.nanmean(v), v)
            cols += [v, miss.astype(float)]
            names += [c, f"{c}_missing"]
        else:
            cols.append(v)
            names.append(c)
    for c in categorical:
        if c not in frame.columns:
            continue
        lab = frame[c].astype(object).where(frame[c].notna(), "(missing)").astype(str)
        codes, uniq = pd.factorize(lab, sort=False)
        order = sorted(range(len(uniq)), key=lambda i: uniq[i])  # levels in sorted order
        for i in order[1:]:
            cols.append((codes, i))  # the indicator is built when it is written
            names.append(f"{c}[{uniq[i]}]")

    def column(j: int) -> np.ndarray:
        col = cols[j]
        return (col[0] == col[1]).astype(float) if isinstance(col, tuple) else col

    # drop constant columns (no information, break the logit)
    keep = [j for j in range(len(cols)) if np.ptp(column(j)) > 0]
    off = int(intercept)
    X = np.empty((len(frame), off + len(keep)))
    if intercept:
        X[:, 0] = 1.0
    for k, j in enumerate(keep):
        X[:, off + k] = column(j)
    return X, [names[j] for j in keep]


NUMERIC_COVARIATES = ["household_size", "n_children", "youngest_child_age", "pre_total_eur", "new_child_welfare_clienthood_pre"]
CATEGORICAL_COVARIATES = ["service_line", "area"]


def pre_costs(study, fc=None) -> pd.Series | None:
    """Pre-period register costs per family (``pre_total`` of :func:`hbeval.costs.engine.wide_costs`)
    or ``None`` when they cannot be computed (the covariate is then left out)."""
    try:

        if fc is not None:
            w = fc.wide  # read only: two columns, not a copy of the wide frame
        elif hasattr(study, "connect"):
            w = wide_family_costs(study)
        else:
            cfg = study.config
            w = wide_costs(family_costs_from_tables(study.tables, study.unit_costs(), study.price_index(), cfg.price_year,
                                                    cfg.follow_up_days, tuple(cfg.strata)))
        # rounded to the cent: the database sums in parallel, so the last bits of a float
        # sum can differ between runs; cents make the covariate (and every result) stable
        return w.set_index(w["client_id"].astype(str))["pre_total"].astype(float).round(2)
    except Exception:  # noqa: BLE001 - the covariate is optional by design
        return None


def _needed_columns(families: dict[str, list[str]], primary: str) -> list[str]:
    """The columns of the outcome frame that :func:`comparison_tables` reads."""
    outs = [o for fam, os_ in families.items() if not fam.startswith("process") for o in os_]
    want = ["client_id", "group", f"{primary}_start", *NUMERIC_COVARIATES, *CATEGORICAL_COVARIATES,
            *[f"{o}_{s}" for o in outs for s in ("end", "start")]]
    return list(dict.fromkeys(want))


def _pilot_comparison(study, frame: pd.DataFrame, fc=None, columns: list[str] | None = None) -> pd.DataFrame:
    # rows in client_id order (stable), taken in one copy: filtering then sorting the frame
    # held two copies of it at once (~1 GB each at a national study's 1 M families)
    pos = np.flatnonzero(frame["group"].astype(str).isin(["pilot", "comparison"]).to_numpy())
    order = frame["client_id"].iloc[pos].reset_index(drop=True).sort_values(kind="mergesort").index.to_numpy()
    # only the columns the comparison reads (the frame has ~90), rows and columns in one take
    cols = slice(None) if columns is None else [j for j, c in enumerate(frame.columns) if c in set(columns)]
    pc = frame.iloc[pos[order], cols].reset_index(drop=True)
    pc["_t"] = (pc["group"].astype(str) == "pilot").astype(int)
    if "pre_total_eur" not in pc.columns:
        pcost = pre_costs(study, fc)
        pc["pre_total_eur"] = pc["client_id"].astype(str).map(pcost) if pcost is not None else np.nan
    return pc


@dataclass
class ComparisonFit:
    """The propensity model of pilot vs comparison, trimmed to common support."""

    frame: pd.DataFrame  # pilot and comparison families (internal: one row per family)
    X: np.ndarray
    names: list[str]
    ps: np.ndarray
    keep: np.ndarray
    weights: np.ndarray  # ATT weights on the kept units (0 for trimmed)


def fit_comparison(pc: pd.DataFrame, primary: str, exclude: tuple[str, ...] = ()) -> ComparisonFit:
    """Propensity of being a pilot family from the baseline of the primary outcome, service
    line, family composition, area and pre-period costs (and pre-period child-welfare
    clienthood), then common-support trimming and ATT weights."""
    numeric = [f"{primary}_start", *[c for c in NUMERIC_COVARIATES if c not in exclude]]
    Xi, names = covariate_matrix(pc, numeric, [c for c in CATEGORICAL_COVARIATES if c not in exclude], intercept=True)
    t = pc["_t"].to_numpy()
    # = propensity(Xi[:, 1:], t) without its copy of the design with an intercept; X is a view
    ps = 1 / (1 + np.exp(-(Xi @ logit_fit(Xi, t))))
    X = Xi[:, 1:]
    keep = common_support(ps, t)
    w = np.zeros(len(ps))
    w[keep] = att_weights(ps[keep], t[keep])
    return ComparisonFit(pc, X, names, ps, keep, w)


def balance_table(fit: ComparisonFit, min_cell: int) -> pd.DataFrame:
    """SMD of every propensity covariate before (all units) and after weighting (kept units).

    For an indicator covariate held by fewer than ``min_cell`` (but some) families of a
    group, the group means are blanked: a share times the group size would reveal the
    small count. The SMDs stay."""
    t = fit.frame["_t"].to_numpy().astype(bool)
    k = fit.keep
    rows = []
    for j, nm in enumerate(fit.names):
        x = fit.X[:, j]
        binary = bool(np.isin(x, (0.0, 1.0)).all())
        small = binary and any(0 < x[m].sum() < min_cell or 0 < (1 - x[m]).sum() < min_cell for m in (t, ~t))
        if small:
            rows.append({"section": "balance", "item": nm, "mean_pilot": np.nan, "mean_comparison": np.nan,
                         "mean_comparison_weighted": np.nan, "smd_before": smd(x, t), "smd_after": smd(x[k], t[k], fit.weights[k])})
            continue
        rows.append({
            "section": "balance", "item": nm,
            "mean_pilot": float(x[t].mean()), "mean_comparison": float(x[~t].mean()),
            "mean_comparison_weighted": _weighted_mean(x[k & ~t], fit.weights[k & ~t]),
            "smd_before": smd(x, t), "smd_after": smd(x[k], t[k], fit.weights[k]),
        })
    return pd.DataFrame(rows)


def _weighted_mean(x: np.ndarray, w: np.ndarray) -> float:
    """``Σ w x / Σ w``, NaN when the weights sum to zero (a separated propensity model)."""
    return float(np.average(x, weights=w)) if len(w) and w.sum() > 0 else np.nan


def overlap_table(fit: ComparisonFit, min_cell: int) -> pd.DataFrame:
    """Propensity overlap by group: counts, trimmed, ESS, quantiles; and binned counts (a
    histogram over [0, 1] in 0.05 bins, counts below ``min_cell`` suppressed)."""

    t = fit.frame["_t"].to_numpy().astype(bool)
    rows = []
    for g, m in (("pilot", t), ("comparison", ~t)):
        p = fit.ps[m]
        rows.append({
            "section": "overlap", "item": "propensity", "group": g, "n": int(m.sum()),
            "n_trimmed": int((m & ~fit.keep).sum()), "ess": ess(fit.weights[m & fit.keep]),
            "ps_p05": float(np.quantile(p, 0.05)), "ps_median": float(np.median(p)), "ps_p95": float(np.quantile(p, 0.95)),
        })
    for g, m in (("pilot", t), ("comparison", ~t)):
        cnt, _ = np.histogram(fit.ps[m], bins=HIST_BINS)
        for lo, hi, c in zip(HIST_BINS[:-1], HIST_BINS[1:], cnt):
            rows.append({"section": "overlap_hist", "item": f"[{lo:.2f},{hi:.2f})", "group": g, "bin_low": lo, "bin_high": hi, "n": int(c)})
    out = pd.DataFrame(rows)
    out["n"] = [suppress_count(v, min_cell) for v in out["n"]]
    out["n_trimmed"] = [suppress_count(v, min_cell) if pd.notna(v) else "" for v in out["n_trimmed"]]
    return out


def not_estimable_note(fit: ComparisonFit, outcome: str) -> str:
    """Why :func:`estimate_outcome` has no estimate of ``outcome`` (``""`` when it has one)."""
    end = f"{outcome}_end"
    if end not in fit.frame.columns:
        return "no data: no family has a score for this outcome"
    ok = np.isfinite(pd.to_numeric(fit.frame[end], errors="coerce").to_numpy(float)) & fit.keep
    t = fit.frame["_t"].to_numpy()
    if ok.sum() < 4 or t[ok].sum() < 2 or (1 - t[ok]).sum() < 2:
        return NOTE_TOO_FEW
    if not _control_weight(fit.ps, t, ok) > 0:
        return NOTE_SEPARATED
    return ""


def _control_weight(ps: np.ndarray, t: np.ndarray, ok: np.ndarray) -> float:
    """``Σ e/(1−e)`` over the comparison units of ``ok``: 0 when the model separates them."""
    c = ok & (t == 0)
    return float(np.sum(ps[c] / (1 - ps[c])))


def estimate_outcome(fit: ComparisonFit, outcome: str) -> dict | None:
    """DR ATT of ``outcome`` (ANCOVA form: its start score enters the outcome model when it
    exists, McKenzie dummy for a missing start). Families without the end value drop out;
    the propensity is not refitted (weights are renormalised within the observed)."""
    pc = fit.frame
    end = f"{outcome}_end"
    if end not in pc.columns:
        return None
    y = pd.to_numeric(pc[end], errors="coerce").to_numpy(float)
    ok = np.isfinite(y) & fit.keep
    t = pc["_t"].to_numpy()
    if ok.sum() < 4 or t[ok].sum() < 2 or (1 - t[ok]).sum() < 2 or not _control_weight(fit.ps, t, ok) > 0:
        return None  # see not_estimable_note
    start = f"{outcome}_start"
    if start in pc.columns and pd.to_numeric(pc[start], errors="coerce").notna().any() and start not in fit.names:
        Xs, _ = covariate_matrix(pc, [start], [])  # mean imputation over every family, as before
        # the rows of the families with the outcome, written once (X[ok] then a stacked copy
        # held two n × p matrices at once: 0.8 GB at a national study's 1 M families)
        Xo = np.empty((int(ok.sum()), fit.X.shape[1] + Xs.shape[1]))
        for j in range(fit.X.shape[1]):
            Xo[:, j] = fit.X[ok, j]
        for j in range(Xs.shape[1]):
            Xo[:, fit.X.shape[1] + j] = Xs[ok, j]
        del Xs
    else:
        Xo = fit.X[ok]  # the rows of the families with the outcome only (not an n × p copy per outcome)
    est = dr_att(y[ok], t[ok], Xo, fit.ps[ok])
    return {"outcome": outcome, **est.__dict__}


def comparison_tables(pc: pd.DataFrame, families: dict[str, list[str]], primary: str, min_cell: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pure core of :func:`comparison_results` on a pilot+comparison frame (``_t`` = pilot).

    Text levels of the categorical covariates held by fewer than ``min_cell`` families are
    pooled as ``(other)`` first (:func:`~hbeval.privacy.pool_rare_levels`): a
    level's label is data, and the balance rows are named after it."""
    pc = pc.assign(**{c: pool_rare_levels(pc[c], min_cell) for c in CATEGORICAL_COVARIATES if c in pc.columns})
    fit = fit_comparison(pc, primary)
    parts = [balance_table(fit, min_cell), overlap_table(fit, min_cell)]
    est_rows, eff_rows = [], []
    for fam, outs in families.items():
        if fam.startswith("process"):
            continue  # budgets and teaming exist only for pilot families
        for o in outs:
            r = estimate_outcome(fit, o)
            if r is None:  # the row stays, saying why
                eff_rows.append({"family": fam, "outcome": o, "contrast": "pilot_vs_comparison", "n": 0,
                                 "method": METHOD_DR + " (not estimable)", "spec": "non_randomised",
                                 "note": not_estimable_note(fit, o)})
                continue
            n = r["n_treated"] + r["n_control"]
            est_rows.append({"section": "estimate", "item": o, "family": fam, "n": n, "n_pilot": r["n_treated"], "n_comparison": r["n_control"],
                             "estimate": r["estimate"], "std_error": r["std_error"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                             "p_value": r["p_value"], "estimate_ipw": r["ipw"], "estimate_naive": r["naive"], "method": METHOD_DR})
            eff_rows.append({"family": fam, "outcome": o, "contrast": "pilot_vs_comparison", "estimate": r["estimate"],
                             "std_error": r["std_error"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p_value": r["p_value"],
                             "n": n, "method": METHOD_DR + "; propensity ATT weights, common-support trimming; influence-function SE",
                             "spec": "non_randomised"})
    parts.append(pd.DataFrame(est_rows))
    del fit  # each placebo fits its own propensity model: one design in memory at a time
    # placebo: outcomes fixed before enrolment, with the variable left out of both models
    for placebo in ("pre_total_eur", "new_child_welfare_clienthood_pre"):
        if placebo not in pc.columns:
            continue
        yp = pd.to_numeric(pc[placebo], errors="coerce")
        if yp.notna().sum() < 4 or yp.nunique() < 2:
            continue  # nothing to test (e.g. no pre-period clienthood at all)
        pfit = fit_comparison(pc, primary, exclude=(placebo,))
        y = pd.to_numeric(pc[placebo], errors="coerce").to_numpy(float)
        ok = np.isfinite(y) & pfit.keep
        t = pc["_t"].to_numpy()
        if t[ok].sum() < 2 or (1 - t[ok]).sum() < 2 or not _control_weight(pfit.ps, t, ok) > 0:
            continue
        e = dr_att(y[ok], t[ok], pfit.X[ok], pfit.ps[ok])
        parts.append(pd.DataFrame([{"section": "placebo", "item": placebo, "n": int(ok.sum()), "n_pilot": e.n_treated, "n_comparison": e.n_control,
                                    "estimate": e.estimate, "std_error": e.std_error, "ci_low": e.ci_low, "ci_high": e.ci_high,
                                    "p_value": e.p_value, "estimate_ipw": e.ipw, "estimate_naive": e.naive,
                                    "method": METHOD_DR + "; placebo: pre-period outcome left out of both models, true effect 0"}]))
        del pfit
    parts.append(pd.DataFrame([{"section": "note", "item": "design", "method": NOT_RANDOMISED + "; one pre-period: parallel trends "
                                "cannot be tested; pre-period outcomes serve as placebos"}]))
    comp = pd.concat([p for p in parts if len(p)], ignore_index=True)

    for c in ("n_pilot", "n_comparison"):
        if c in comp.columns:
            comp[c] = [suppress_count(v, min_cell) if pd.notna(v) else "" for v in comp[c]]
    comp["n"] = [v if isinstance(v, str) else (suppress_count(v, min_cell) if pd.notna(v) else "") for v in comp["n"]]
    front = ["section", "item", "group", "family", "n", "n_pilot", "n_comparison", "n_trimmed", "ess", "estimate", "std_error", "ci_low",
             "ci_high", "p_value", "estimate_ipw", "estimate_naive", "mean_pilot", "mean_comparison", "mean_comparison_weighted",
             "smd_before", "smd_after", "ps_p05", "ps_median", "ps_p95", "bin_low", "bin_high", "method"]
    comp = comp[[c for c in front if c in comp.columns]]
    return comp, pd.DataFrame(eff_rows)


def comparison_effect_rows(study, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``pilot_vs_comparison`` rows of ``effects.csv``."""
    return comparison_results(study, frame)[1]


def comparison_results(study, frame: pd.DataFrame | None = None, fc=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results/comparison.csv`` and the ``pilot_vs_comparison`` rows of ``effects.csv``.

    Returns
    -------
    (comparison, effect_rows). ``comparison`` has sections ``balance`` (SMD before/after
    weighting per covariate), ``overlap`` (per group: n, trimmed, ESS, propensity
    quantiles), ``overlap_hist`` (binned propensity counts, suppressed below min_cell),
    ``estimate`` (DR, IPW and naive per outcome), ``placebo`` and ``note``. Both are empty
    when the study has no comparison group. ``frame`` (the outcome frame) and ``fc`` (the
    family costs) are built here unless ``hbeval.pipeline`` hands them in.
    """

    cfg = study.config
    if frame is None:
        frame = outcome_frame(study)
    pc = _pilot_comparison(study, frame, fc, _needed_columns(cfg.families, cfg.primary))
    if pc["_t"].sum() < 2 or (1 - pc["_t"]).sum() < 2:
        return pd.DataFrame(columns=["section", "item", "method"]), pd.DataFrame()
    return comparison_tables(pc, cfg.families, cfg.primary, cfg.min_cell)
