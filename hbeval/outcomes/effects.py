"""Randomised contrasts of the 2×2 factorial: the ``results/effects.csv`` /
``results/process.csv`` tables.

The statistics (the ANCOVA with HC2, the Lin-style check, effect sizes) are the kernels of
:mod:`hbeval.stats.factorial`; randomisation inference and multiplicity those of
:mod:`hbeval.stats.ri`. This module is the Study glue (:func:`randomised_effects`,
:func:`effects_results`, :func:`process_results`).

The primary specification (contract §3, ``results/effects.csv``) is pinned so that anyone
can re-derive it with R's ``estimatr::lm_robust(..., se_type = "HC2")``:

* main effects: ``end ~ frame_shares + teaming + start + factor(stratum)``;
* interaction: the same model plus ``frame_shares:teaming``;
* cell contrasts: the same model as the interaction model, parametrised by the indicators
  of the three non-reference cells (it is the same linear space, so the same fit);
* HC2 standard errors, t-based 95 % intervals on the residual degrees of freedom.

Families alone in their stratum (among the analysed) are fitted exactly by their stratum
dummy: they carry no information on the arm coefficients and their HC2 leverage is 1, so
they are dropped before fitting (coefficients and HC2 SEs of the others are unchanged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hbeval.arms import CELLS, CONTRASTS
from hbeval.outcomes.frame import outcome_columns, outcome_frame
from hbeval.privacy import suppress_count, suppress_small_groups
from hbeval.randomisation.redraw import RIDraws, ri_draws
from hbeval.stats.factorial import (
    METHOD_LIN,
    METHOD_PRIMARY,
    MIN_PER_CELL,
    REASON_ALONE,
    REASON_NO_START,
    SMALL_N_BM,
    analysis_status,
    effect_sizes,
    estimable,
    factorial_data,
    factorial_effects,
)
from hbeval.stats.ri import adjust_family, blas_single_thread, ri_ci, ri_factorial, ri_pvalue

# ---------------------------------------------------------------------------- Study glue
FAMILY_METHOD = {
    "prevention": "risk_difference_lpm_hc2",
}
EFFECTS_COLUMNS = [
    "family", "outcome", "contrast", "estimate", "std_error", "ci_low", "ci_high", "p_value", "p_value_ri", "ri_ci_low",
    "ri_ci_high", "p_value_adj", "p_value_holm", "n", "method", "spec", "note", "df", "df_bm", "hedges_g", "g_ci_low", "g_ci_high", "estimate_sd_units", "baseline",
]
#: ``spec`` of an ``effects.csv`` row: what kind of analysis it is (nothing parses ``method``)
SPEC_PRIMARY = "primary"  # the pre-specified primary specification of a randomised contrast
SPEC_ROBUSTNESS = "robustness"  # the Lin (centred interaction) check of the same contrast
SPEC_NON_RANDOMISED = "non_randomised"  # pilot vs the comparison group (propensity-weighted)
NOTE_NO_DATA = "no data: no family has a score for this outcome"
NOTE_NOT_ESTIMABLE = (f"not estimable: a cell has fewer than {MIN_PER_CELL} families with the outcome, "
                      "or the outcome does not vary")
NOTE_ALIASED = "not estimable: the contrast is aliased with the strata (its cells lie in strata of their own)"
NOTE_NO_SE = "no standard error: the model has as many parameters as analysed families"
#: a family that has the end score but does not contribute, by reason (see :func:`contribution_note`)
LEFT_OUT_TEXT = {REASON_NO_START: "without a start score", REASON_ALONE: "alone in their stratum"}


def contribution_note(status: np.ndarray, min_cell: int) -> str:
    """Which randomised families with the end score did not contribute, in words
    (e.g. ``"3 families alone in their stratum did not contribute"``), counts below
    ``min_cell`` shown as ``<min_cell``; ``""`` when all did."""
    parts = []
    for reason, text in LEFT_OUT_TEXT.items():
        k = int(np.sum(status == reason))
        if k:
            parts.append(f"{suppress_count(k, min_cell)} {'family' if k == 1 else 'families'} {text}")
    return (" and ".join(parts) + " did not contribute") if parts else ""


def _join_notes(*notes: object) -> str:
    return "; ".join(str(n) for n in notes if isinstance(n, str) and n)


def _base_method(family: str, has_start: bool) -> str:
    if family in FAMILY_METHOD:
        return FAMILY_METHOD[family]
    return METHOD_PRIMARY if has_start else "ancova_hc2_no_baseline"


def randomised_effects(frame: pd.DataFrame, families: dict[str, list[str]], draws: np.ndarray | None, draw_ids: np.ndarray | None = None,
                       assignment: str = "batch", exact: bool = False, *, min_cell: int) -> tuple[pd.DataFrame, dict]:
    """Every randomised contrast of every declared outcome, with RI and multiplicity.

    Parameters
    ----------
    frame : :func:`hbeval.outcomes.frame.outcome_frame` (or any frame with ``client_id``, ``cell``,
        ``stratum`` and ``<outcome>_end`` / ``<outcome>_start`` columns)
    families : outcome family → outcomes
    draws : ``(D, m)`` re-drawn cell codes of the ``m`` assigned families ``draw_ids``
        (``None`` skips RI)
    draw_ids : ``client_id`` of the columns of ``draws``
    exact : ``draws`` is every possible assignment (:attr:`hbeval.randomisation.redraw.RIDraws.exact`):
        exact RI p-values and intervals
    min_cell : counts of non-contributing families in ``note`` below this are shown as ``<min_cell``

    Returns
    -------
    (table, nulls): the tidy table (columns :data:`EFFECTS_COLUMNS`) and the RI null draws
    keyed by ``(outcome, contrast)``.
    """

    with blas_single_thread():
        return _randomised_effects(frame, families, draws, draw_ids, assignment, exact, min_cell)


def _randomised_effects(frame, families, draws, draw_ids, assignment, exact, min_cell):

    rand = frame[frame["cell"].notna()].sort_values("client_id", kind="mergesort").reset_index(drop=True)
    if draws is not None:
        pos = pd.Index(np.asarray(draw_ids, dtype=str)).get_indexer(rand["client_id"].astype(str))
        if (pos < 0).any():
            raise ValueError("re-drawn assignments do not cover every assigned family")
    rows = []
    nulls: dict[tuple[str, str], np.ndarray] = {}
    n_draws = 0 if draws is None else draws.shape[0]
    for fam, outcomes in families.items():
        for outcome in outcomes:
            end, start = outcome_columns(rand, outcome)
            base = _base_method(fam, start is not None)
            if end is None:
                for c in CONTRASTS:
                    rows.append({"family": fam, "outcome": outcome, "contrast": c, "n": 0, "method": f"{base} (no data)",
                                 "spec": SPEC_PRIMARY, "note": NOTE_NO_DATA, "_est": False})
                continue
            args = (
                pd.to_numeric(rand[end], errors="coerce").to_numpy(float),
                rand["cell"].to_numpy(dtype=float, na_value=np.nan),
                rand["stratum"].astype(str).to_numpy(),
                None if start is None else pd.to_numeric(rand[start], errors="coerce").to_numpy(float),
            )
            d = factorial_data(*args)
            left_out = contribution_note(analysis_status(*args), min_cell)
            if not estimable(d):
                for c in CONTRASTS:
                    rows.append({"family": fam, "outcome": outcome, "contrast": c, "n": d.n, "_est": False,
                                 "method": f"{base} (not estimable)", "spec": SPEC_PRIMARY,
                                 "note": _join_notes(NOTE_NOT_ESTIMABLE, left_out)})
                continue
            tab = effect_sizes(factorial_effects(d), d)
            tab["spec"] = tab["method"].map({METHOD_PRIMARY: SPEC_PRIMARY, METHOD_LIN: SPEC_ROBUSTNESS})
            tab["method"] = tab["method"].map({METHOD_PRIMARY: base, METHOD_LIN: METHOD_LIN})
            if draws is not None:
                null = ri_factorial(d, draws[:, pos[d.mask]])
                for c, v in null.items():
                    nulls[(outcome, c)] = v
                ci = ri_ci(d, draws[:, pos[d.mask]], exact)
                # the primary rows' RI columns (NaN on the Lin rows), set as whole columns: .loc on a
                # 12-row frame costs more than the rest of this loop
                prim = (tab["spec"] == SPEC_PRIMARY).to_numpy()
                est, con = tab["estimate"].to_numpy(dtype=float), tab["contrast"].tolist()
                p_ri, lo_ri, hi_ri = np.full(len(tab), np.nan), np.full(len(tab), np.nan), np.full(len(tab), np.nan)
                for i in np.flatnonzero(prim):
                    p_ri[i] = ri_pvalue(est[i], null[con[i]], exact)
                    lo_ri[i], hi_ri[i] = ci[con[i]]
                tab["p_value_ri"], tab["ri_ci_low"], tab["ri_ci_high"] = p_ri, lo_ri, hi_ri
            tab["family"] = fam
            tab["outcome"] = outcome
            tab["baseline"] = "start" if start is not None else "none"
            nan = [np.nan] * len(tab)
            tab["note"] = [_join_notes(_fit_note(e, se, df), left_out, _ri_ci_note(lo, hi))
                           for e, se, df, lo, hi in zip(tab["estimate"].tolist(), tab["std_error"].tolist(), tab["df"].tolist(),
                                                        tab["ri_ci_low"].tolist() if "ri_ci_low" in tab else nan,
                                                        tab["ri_ci_high"].tolist() if "ri_ci_high" in tab else nan)]
            rows.extend(tab.to_dict("records"))
    out = pd.DataFrame(rows)
    for c in EFFECTS_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    estimated = out["_est"].ne(False).to_numpy() if "_est" in out.columns else np.ones(len(out), bool)
    kind = np.where(~estimated, "none", np.where(out["spec"] == SPEC_ROBUSTNESS, "lin", "primary"))
    out["_k"] = kind
    adj = adjust_family(out, nulls, by=("family", "contrast", "_k"), exact=exact)
    out["p_value_holm"] = adj["p_value_holm"]
    ri_txt = (f"ri=exact ({n_draws} assignments, {assignment} procedure, within strata)" if n_draws and exact
              else f"ri={n_draws} re-randomisations ({assignment} procedure, within strata)" if n_draws else "ri=none")
    prim = kind == "primary"
    out.loc[prim, "p_value_adj"] = adj.loc[prim, "p_value_wy"]
    out.loc[prim, "method"] = (out.loc[prim, "method"] + "; " + _df_text(out.loc[prim]) + "; " + ri_txt
                               + "; adj=westfall_young_stepdown_maxT within family")
    lin = kind == "lin"
    out.loc[lin, "p_value_adj"] = adj.loc[lin, "p_value_holm"]
    out.loc[lin, "method"] = METHOD_LIN + "; adj=holm within family"
    out["note"] = out["note"].where(out["note"].astype(str) != "", np.nan)  # NaN: nothing to say
    return out.drop(columns="_k")[EFFECTS_COLUMNS], nulls


def _df_text(rows: pd.DataFrame) -> pd.Series:
    """The degrees of freedom of each primary row's t interval and p-value, in ``method``: the
    Bell–McCaffrey df below :data:`~hbeval.stats.factorial.SMALL_N_BM` analysed families (when it
    exists), else the residual df (:func:`hbeval.stats.factorial.factorial_effects`)."""
    n = pd.to_numeric(rows["n"], errors="coerce")
    bm = (n < SMALL_N_BM) & np.isfinite(pd.to_numeric(rows["df_bm"], errors="coerce"))
    return pd.Series(np.where(bm, f"t on Bell-McCaffrey df (fewer than {SMALL_N_BM} analysed families)",
                              f"t on residual df ({SMALL_N_BM} or more analysed families)"), index=rows.index)


#: ``note`` of a row whose randomisation-inference interval is unbounded
NOTE_RI_UNBOUNDED = ("randomisation-inference interval unbounded ({side}): no constant effect, however large, is "
                     "rejected at 5 % by re-randomising so few families")


def _ri_ci_note(low: float, high: float) -> str:
    """Says in words that the RI interval is unbounded (``ri_ci_low = -inf`` or ``ri_ci_high =
    inf``), rather than leaving a reader with "-inf to inf"; ``""`` otherwise."""
    lo, hi = (float(low) if pd.notna(low) else np.nan), (float(high) if pd.notna(high) else np.nan)
    below, above = lo == -np.inf, hi == np.inf
    if not (below or above):
        return ""
    side = "on both sides" if below and above else ("below" if below else "above")
    return NOTE_RI_UNBOUNDED.format(side=side)


def _fit_note(estimate: float, std_error: float, df: float) -> str:
    """The note of an estimated row whose estimate or standard error does not exist."""
    if not np.isfinite(estimate):
        return NOTE_ALIASED
    if not np.isfinite(std_error) or not df > 0:
        return NOTE_NO_SE
    return ""


def _sort_effects(df: pd.DataFrame, families: dict[str, list[str]]) -> pd.DataFrame:
    fam_order = {f: i for i, f in enumerate(families)}
    out_order: dict[str, int] = {}
    for outs in families.values():
        for o in outs:
            out_order.setdefault(o, len(out_order))
    con_order = {c: i for i, c in enumerate((*CONTRASTS, "pilot_vs_comparison"))}
    key = pd.DataFrame({
        "f": df["family"].map(fam_order).fillna(99),
        "o": df["outcome"].map(out_order).fillna(999),
        "m": (df["spec"] == SPEC_ROBUSTNESS).astype(int),
        "c": df["contrast"].map(con_order).fillna(99),
    })
    idx = key.sort_values(["f", "o", "m", "c"], kind="mergesort").index
    return df.loc[idx].reset_index(drop=True)


def effects_results(study, comparison_rows: pd.DataFrame | None = None, frame: pd.DataFrame | None = None,
                    ri: RIDraws | None = None) -> pd.DataFrame:
    """``results/effects.csv``: every contrast of every declared outcome.

    Randomised contrasts (primary specification and the Lin check) for the assigned pilot
    families, with ``p_value_ri`` from ``config.ri_draws`` re-randomisations under the
    assignment procedure actually used (seeded from ``[config.seed, 4001]``), ``p_value_adj``
    Westfall–Young step-down within each outcome family and contrast (``p_value_holm``
    beside it), Hedges' g and the estimate in baseline-SD units. ``comparison_rows``, the
    ``pilot_vs_comparison`` rows of :func:`hbeval.outcomes.comparison.comparison_effect_rows`
    (not randomised), are added and sorted in when given (this module does not import the
    comparison group's estimation); ``hbeval.pipeline`` appends the second frame of
    ``comparison_results`` itself. ``n`` is a count of families, shown as ``"<k"`` below
    ``config.min_cell``. ``frame`` (the outcome frame) and ``ri`` (the re-randomisations,
    :func:`hbeval.randomisation.redraw.ri_draws`) are built here unless ``hbeval.pipeline``
    hands them in.
    """
    cfg = study.config
    if frame is None:
        frame = outcome_frame(study)
    if ri is None:
        ri = ri_draws(study, frame)
    tab, _ = randomised_effects(frame, cfg.families, ri.draws, ri.client_ids, assignment=ri.procedure, exact=ri.exact,
                                min_cell=cfg.min_cell)
    if comparison_rows is not None and len(comparison_rows):
        comp = comparison_rows
        tab = pd.concat([tab, comp[[c for c in EFFECTS_COLUMNS if c in comp.columns]]], ignore_index=True)
    tab = _sort_effects(tab, cfg.families)
    tab["n"] = [suppress_count(v, cfg.min_cell) for v in tab["n"]]
    small = tab["n"].astype(str).str.startswith("<")
    stat_cols = ["estimate", "std_error", "ci_low", "ci_high", "ri_ci_low", "ri_ci_high", "hedges_g", "g_ci_low", "g_ci_high", "estimate_sd_units"]
    tab.loc[small, stat_cols] = np.nan
    return tab


# ---------------------------------------------------------------------------- process table
PROCESS_MEASURES = {
    "budget_accepted_unchanged": "frame",
    "budget_revisions": "frame",
    "budget_abs_change_eur": "frame",
    "days_to_confirmation": "frame",
    **{f"meetings_{p}": "teaming" for p in ("before_start", "after_start", "evaluation")},
    **{f"providers_present_{p}": "teaming" for p in ("before_start", "after_start", "evaluation")},
}


def process_summary(frame: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Process measures summarised by cell (and all assigned families): ``measure, factor,
    cell, n, mean, sd, median, share_nonzero``; statistics of groups below ``min_cell`` are
    blanked and their count shown as ``"<k"``; a share whose count (of zeros or non-zeros)
    is below ``min_cell`` is blanked too (and the mean of a 0/1 measure with it)."""

    rand = frame[frame["cell"].notna()]
    in_cell = [(rand["cell"].astype(int) == k).to_numpy() for k in range(4)]
    rows = []
    for m, factor in PROCESS_MEASURES.items():
        col = f"{m}_end"
        if col not in rand.columns:
            continue
        groups = [(CELLS[k], rand[col][in_cell[k]]) for k in range(4)] + [("all", rand[col])]
        for label, s in groups:
            v = pd.to_numeric(s, errors="coerce").dropna().to_numpy(float)
            nz = int((v != 0).sum())
            # a share (or the mean of a 0/1 measure) would reveal a count below min_cell
            hide_share = 0 < nz < min_cell or 0 < len(v) - nz < min_cell
            binary = bool(np.isin(v, (0.0, 1.0)).all())
            rows.append({
                "measure": m, "factor": factor, "cell": label, "n": len(v),
                "mean": np.nan if (binary and hide_share) or not len(v) else v.mean(),
                "sd": np.nan if (binary and hide_share) or len(v) < 2 else v.std(ddof=1),
                "median": float(np.median(v)) if len(v) and not (binary and hide_share) else np.nan,
                "share_nonzero": np.nan if hide_share or not len(v) else float(nz / len(v)),
            })
    out = pd.DataFrame(rows, columns=["measure", "factor", "cell", "n", "mean", "sd", "median", "share_nonzero"])
    return suppress_small_groups(out, "n", ["mean", "sd", "median", "share_nonzero"], min_cell)


def process_results(study, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """``results/process.csv``: process measures of both factors by cell (no per-family rows)."""
    return process_summary(outcome_frame(study) if frame is None else frame, study.config.min_cell)
