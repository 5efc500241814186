"""Pre-specified subgroups (``[outcomes] subgroups``): the effect of each randomised margin
within each level, the omnibus test of heterogeneity, and costs by subgroup.

Study glue around :func:`hbeval.stats.heterogeneity.heterogeneity`:

* :func:`subgroup_effects` — rows for ``results/effects.csv`` (the added ``subgroup`` column):
  for each subgroup variable and margin (``frame_shares``, ``teaming``) of the primary outcome,
  one ``spec = "subgroup"`` row per level (``subgroup = "service_line=home_help"``) and one
  ``spec = "heterogeneity"`` row (``subgroup = "service_line"``) whose ``p_value`` is the HC2
  Wald test (HTZ F, its denominator df in ``df``) that the within-level effects are equal and
  ``p_value_ri`` its randomisation p-value under the procedure actually used;
* :func:`add_subgroup_rows` — the effects table with the ``subgroup`` column on every row
  (empty for rows that are not subgroup rows) and the subgroup rows appended;
* :func:`subgroup_costs` — ``results/subgroup_costs.csv``: mean follow-up cost per family by
  subgroup level, group and cell, with bootstrap CIs.

Small subgroups follow the suppression rule: a level with fewer than ``2 × min_cell``
analysed families, or with fewer than :data:`hbeval.stats.factorial.MIN_PER_CELL` families in
an arm of either margin, gets a ``note`` and no estimate, and is left out of the test (the
test's note names it); counts below ``min_cell`` are shown as ``<min_cell``. Families whose
subgroup value is missing are left out of that variable's analysis and counted in the note.
Subgroup findings are exploratory: no multiplicity adjustment is made (``p_value_adj`` empty).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hbeval.arms import CELLS, CONTRASTS_MAIN, SEEDS
from hbeval.costs.engine import FamilyCosts
from hbeval.outcomes.effects import EFFECTS_COLUMNS, contribution_note
from hbeval.outcomes.frame import outcome_columns
from hbeval.privacy import suppress_count, suppress_small_groups
from hbeval.randomisation.plan import check_subgroups
from hbeval.randomisation.redraw import RIDraws
from hbeval.stats.bootstrap import bootstrap_means, percentile_ci
from hbeval.stats.factorial import MIN_PER_CELL, analysis_status
from hbeval.stats.heterogeneity import heterogeneity
from hbeval.stats.ols import drop_singleton_strata
from hbeval.stats.ri import blas_single_thread

#: the column that effects.csv gains (empty on rows that are not subgroup rows)
SUBGROUP_COLUMN = "subgroup"
SPEC_SUBGROUP = "subgroup"  #: a margin's effect within one level
SPEC_HETEROGENEITY = "heterogeneity"  #: the omnibus test that the within-level effects are equal
METHOD_SUBGROUP = "ancova_hc2 with margin x level terms, level and stratum fixed effects"
#: a level needs this many times ``min_cell`` analysed families for an estimate
MIN_CELL_FACTOR = 2
#: the label of families whose subgroup value is missing, in subgroup_costs.csv
MISSING_LEVEL = "(missing)"
#: the bootstrap of subgroup_costs.csv draws from ``default_rng([seed, SEEDS["cost_bootstrap"], COST_STREAM])``
#: (a stream of its own beside costs.csv's ``[seed, SEEDS["cost_bootstrap"]]``)
COST_STREAM = 1
SUBGROUP_COSTS_COLUMNS = ["subgroup", "group", "cell", "period", "n", "mean_eur", "sd_eur", "ci_low", "ci_high",
                          "ci_method"]


def subgroup_values(study: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """``client_id`` and one text column per ``[outcomes] subgroups`` variable (``None`` where
    missing), for the families of ``frame``; raises :class:`hbeval.errors.InputError` when a
    variable is not a column of ``clients.csv``."""
    subs = list(study.config.subgroups)
    ids = frame["client_id"].astype(str)
    if not subs:
        return pd.DataFrame({"client_id": ids})
    clients = study.table("clients")
    check_subgroups(study.config, list(clients.columns))
    c = clients.drop_duplicates("client_id").assign(client_id=lambda d: d["client_id"].astype(str)).set_index("client_id")
    out = pd.DataFrame({"client_id": ids.to_numpy()})
    for v in subs:
        col = c[v].reindex(ids.to_numpy())
        txt = col.map(_level_text)
        out[v] = txt.to_numpy(dtype=object)
    return out


def _level_text(v: Any) -> str | None:
    """A subgroup value as text (``3`` for ``3.0``), ``None`` when missing or blank."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or pd.isna(v):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    s = str(v).strip()
    return s or None


# ---------------------------------------------------------------------------- effects
def _note_small(n: int, min_cell: int, arm_short: bool) -> str:
    if arm_short:
        return (f"no estimate: an arm of a margin has fewer than {MIN_PER_CELL} analysed families in this subgroup "
                "(exploratory rows need both arms of both margins); left out of the heterogeneity test")
    return (f"no estimate: {suppress_count(n, min_cell)} analysed families in this subgroup, fewer than "
            f"{MIN_CELL_FACTOR * min_cell} ({MIN_CELL_FACTOR} x the suppression threshold); "
            "left out of the heterogeneity test")


def _eligible(ok: np.ndarray, level: np.ndarray, cell: np.ndarray, stratum: np.ndarray, min_cell: int
              ) -> tuple[np.ndarray, dict[str, tuple[int, bool]]]:
    """The analysis sample (``ok`` restricted to the levels with enough families, singleton
    strata dropped, repeated until stable) and, per level of ``ok``, ``(n, arm_short)`` where
    it is too small."""
    levels = sorted({str(v) for v in level[ok]})
    small: dict[str, tuple[int, bool]] = {}
    use = ok.copy()
    for _ in range(len(levels) + 2):
        use = drop_singleton_strata(use, stratum)
        changed = False
        for lev in levels:
            if lev in small:
                continue
            m = use & (level == lev)
            n = int(m.sum())
            c = cell[m].astype(int)
            f, t = c // 2, c % 2
            arm_short = min(int((f == 1).sum()), int((f == 0).sum()), int((t == 1).sum()), int((t == 0).sum())) < MIN_PER_CELL
            if n < MIN_CELL_FACTOR * min_cell or arm_short:
                small[lev] = (n, arm_short and n >= MIN_CELL_FACTOR * min_cell)
                use &= level != lev
                changed = True
        if not changed:
            break
    return use, small


def subgroup_effects(frame: pd.DataFrame, values: pd.DataFrame, subgroups: tuple[str, ...] | list[str], outcome: str,
                     family: str, ri: RIDraws | None, min_cell: int = 5) -> pd.DataFrame:
    """The subgroup and heterogeneity rows of one outcome (columns :data:`EFFECTS_COLUMNS` and
    ``subgroup``).

    Parameters
    ----------
    frame : the outcome frame (:func:`hbeval.outcomes.frame.outcome_frame`)
    values : :func:`subgroup_values` of ``frame``
    subgroups : the subgroup variables (columns of ``values``)
    outcome, family : the outcome and its family
    ri : the re-randomisations of the analysis (:func:`hbeval.randomisation.redraw.ri_draws`),
        or ``None`` (no RI p-value)
    min_cell : the suppression threshold

    Returns
    -------
    DataFrame: per variable and margin, one row per level (in sorted order; ``spec =
    "subgroup"``) and the ``spec = "heterogeneity"`` row of the omnibus test.
    """
    rand = frame[frame["cell"].notna()].sort_values("client_id", kind="mergesort").reset_index(drop=True)
    vals = values.drop_duplicates("client_id").set_index("client_id")
    end_col, start_col = outcome_columns(rand, outcome)
    rows: list[dict[str, Any]] = []
    draws = None if ri is None else ri.draws
    if ri is not None and draws is not None:
        pos = pd.Index(np.asarray(ri.client_ids, dtype=str)).get_indexer(rand["client_id"].astype(str))
        if (pos < 0).any():
            raise ValueError("re-drawn assignments do not cover every assigned family")
    for var in subgroups:
        base: dict[str, Any] = {"family": family, "outcome": outcome, "method": METHOD_SUBGROUP,
                "baseline": "start" if start_col is not None else "none"}
        if end_col is None:
            for c in CONTRASTS_MAIN:
                rows.append({**base, "contrast": c, "spec": SPEC_HETEROGENEITY, SUBGROUP_COLUMN: var, "n": 0,
                             "note": "no data: no family has a score for this outcome"})
            continue
        level = vals[var].reindex(rand["client_id"].astype(str)).to_numpy(dtype=object)
        has_level = np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in level])
        level = np.where(has_level, level, "").astype(str)
        y = pd.to_numeric(rand[end_col], errors="coerce").to_numpy(float)
        cell = rand["cell"].to_numpy(dtype=float, na_value=np.nan)
        stratum = rand["stratum"].astype(str).to_numpy()
        start = None if start_col is None else pd.to_numeric(rand[start_col], errors="coerce").to_numpy(float)
        complete = np.isfinite(y) & np.isfinite(cell) & (np.isfinite(start) if start is not None else True)
        status = analysis_status(y, cell, stratum, start)
        left = contribution_note(status, min_cell)
        n_missing = int((complete & ~has_level).sum())
        use, small = _eligible(complete & has_level, level, np.nan_to_num(cell).astype(int), stratum, min_cell)
        levels_all = sorted({str(v) for v in level[complete & has_level]})
        good = [lv for lv in levels_all if lv not in small]
        res = None
        if len(good) >= 2:
            codes = {lv: i for i, lv in enumerate(good)}
            lev_code = np.array([codes[v] for v in level[use]])
            for margin in CONTRASTS_MAIN:
                with blas_single_thread():
                    res = heterogeneity(y[use], cell[use].astype(int), lev_code, stratum[use],
                                        None if start is None else start[use], margin,
                                        draws=None if draws is None else draws[:, pos[use]],
                                        exact=bool(ri is not None and ri.exact), level_names=good)
                by = {e.level: e for e in res.levels}
                for lv in levels_all:
                    r: dict[str, Any] = {**base, "contrast": margin, "spec": SPEC_SUBGROUP, SUBGROUP_COLUMN: f"{var}={lv}"}
                    if lv in by:
                        e = by[lv]
                        r.update(estimate=e.estimate, std_error=e.std_error, ci_low=e.ci_low, ci_high=e.ci_high,
                                 p_value=e.p_value, df=e.df, df_bm=e.df_bm, n=e.n,
                                 note=_fit_note(e.estimate, e.std_error))
                    else:
                        n, arm_short = small[lv]
                        r.update(n=n, note=_note_small(n, min_cell, arm_short))
                    rows.append(r)
                ri_txt = _ri_text(res.n_draws, ri)
                rows.append({**base, "contrast": margin, "spec": SPEC_HETEROGENEITY, SUBGROUP_COLUMN: var,
                             "p_value": res.p_value, "p_value_ri": res.p_value_ri, "df": res.df_den, "n": res.n,
                             "method": (f"wald_hc2_htz F({res.df_num}, {res.df_den:.1f}) = {res.statistic:.4g}: equal "
                                        f"effects of {margin} in the {len(good)} levels of {var} (naive F({res.df_num}, "
                                        f"{res.df_resid}) p = {res.p_value_f:.4g}); {ri_txt}"),
                             "note": _test_note(var, small, n_missing, left, min_cell)})
        else:
            for margin in CONTRASTS_MAIN:
                for lv in levels_all:
                    n, arm_short = small.get(lv, (int((use & (level == lv)).sum()), False))
                    note = (_note_small(n, min_cell, arm_short) if lv in small else
                            "no estimate: fewer than two levels of this subgroup have enough families for a comparison")
                    rows.append({**base, "contrast": margin, "spec": SPEC_SUBGROUP, SUBGROUP_COLUMN: f"{var}={lv}",
                                 "n": n, "note": note})
                rows.append({**base, "contrast": margin, "spec": SPEC_HETEROGENEITY, SUBGROUP_COLUMN: var,
                             "n": int(use.sum()),
                             "note": _join("no test: fewer than two levels of this subgroup have enough families "
                                           f"(each needs at least {MIN_CELL_FACTOR * min_cell} analysed families and "
                                           f"{MIN_PER_CELL} in every arm of both margins)",
                                           _test_note(var, {}, n_missing, left, min_cell))})
    out = pd.DataFrame(rows)
    for c in [*EFFECTS_COLUMNS, SUBGROUP_COLUMN]:
        if c not in out.columns:
            out[c] = np.nan
    out = out[[*EFFECTS_COLUMNS, SUBGROUP_COLUMN]]
    out["n"] = [suppress_count(v, min_cell) for v in out["n"]]
    out["note"] = out["note"].where(out["note"].astype(str) != "", np.nan)
    return out


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _fit_note(estimate: float, std_error: float) -> str:
    if not np.isfinite(estimate):
        return "not estimable: the margin is aliased with the strata in this subgroup"
    if not np.isfinite(std_error):
        return "no standard error: the subgroup model has as many parameters as families"
    return ""


def _ri_text(n_draws: int, ri: RIDraws | None) -> str:
    if ri is None or ri.draws is None or not n_draws:
        return "ri=none"
    kind = f"ri=exact ({n_draws} assignments" if ri.exact else f"ri={n_draws} re-randomisations ("
    sep = ", " if ri.exact else ""
    return (f"{kind}{sep}{ri.procedure} procedure, within strata; sharp null: a constant effect at the pooled "
            "estimate, Wald statistic recomputed per draw)")


def _test_note(var: str, small: dict[str, tuple[int, bool]], n_missing: int, left: str, min_cell: int) -> str:
    parts = []
    if small:
        parts.append(f"levels with too few families left out of the test: {', '.join(sorted(small))}")
    if n_missing:
        parts.append(f"{suppress_count(n_missing, min_cell)} {'family' if n_missing == 1 else 'families'} "
                     f"without a value of {var} left out")
    parts.append(left)
    return _join(*parts)


def add_subgroup_rows(study: Any, effects: pd.DataFrame, frame: pd.DataFrame, ri: RIDraws | None) -> pd.DataFrame:
    """``effects`` with the ``subgroup`` column on every row (empty where not a subgroup row)
    and the subgroup and heterogeneity rows of the primary outcome for every
    ``[outcomes] subgroups`` variable appended (:func:`subgroup_effects`)."""
    cfg = study.config
    out = effects.copy()
    if SUBGROUP_COLUMN not in out.columns:
        out[SUBGROUP_COLUMN] = np.nan
    if not cfg.subgroups:
        return out
    values = subgroup_values(study, frame)
    primary = next((o for f, outs in cfg.families.items() if f == "primary" for o in outs), cfg.primary)
    rows = subgroup_effects(frame, values, cfg.subgroups, primary, "primary", ri, cfg.min_cell)
    return pd.concat([out, rows[[c for c in rows.columns]]], ignore_index=True)


# ---------------------------------------------------------------------------- costs
def subgroup_costs(wide: pd.DataFrame, values: pd.DataFrame, subgroups: tuple[str, ...] | list[str], n_reps: int,
                   seed: int, min_cell: int = 5, level: float = 0.95) -> pd.DataFrame:
    """``results/subgroup_costs.csv``: the mean follow-up cost per family by subgroup level.

    Parameters
    ----------
    wide : per-family costs (:attr:`hbeval.costs.engine.FamilyCosts.wide`: ``client_id, group,
        cell, follow_up_total, …``)
    values : :func:`subgroup_values` (``client_id`` and a text column per variable)
    subgroups : the variables
    n_reps, seed : bootstrap replicates and the study seed (stream ``[seed, SEEDS["cost_bootstrap"],``
        :data:`COST_STREAM` ``]``)

    Returns
    -------
    DataFrame :data:`SUBGROUP_COSTS_COLUMNS`: per variable and level (sorted; ``(missing)`` last
    when some family has no value), ``comparison``/``all``, ``pilot``/``all`` and the four pilot
    cells; ``mean_eur`` of the follow-up total with a percentile bootstrap CI (families resampled
    within the row's group), rows of fewer than ``min_cell`` families blanked and ``n`` shown as
    ``<min_cell``.
    """
    rows: list[dict[str, Any]] = []
    if not len(subgroups):
        return pd.DataFrame(columns=SUBGROUP_COSTS_COLUMNS)
    rng = np.random.default_rng([seed, SEEDS["cost_bootstrap"], COST_STREAM])
    w = wide[wide["group"].isin(["pilot", "comparison"])]
    vals = values.drop_duplicates("client_id").set_index("client_id")
    ids = w["client_id"].astype(str).to_numpy()
    x_all = w["follow_up_total"].to_numpy(float)
    group = w["group"].to_numpy(object)
    cell = w["cell"].astype(object).where(w["cell"].notna(), "").to_numpy(object)
    method = f"bootstrap percentile ({n_reps} replicates, families resampled)"
    for var in subgroups:
        lev = vals[var].reindex(ids).to_numpy(dtype=object) if var in vals.columns else np.full(len(ids), None)
        lev = np.array([MISSING_LEVEL if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in lev],
                       dtype=object)
        levels = sorted(set(lev) - {MISSING_LEVEL}) + ([MISSING_LEVEL] if (lev == MISSING_LEVEL).any() else [])
        for lv in levels:
            units = [("comparison", "all", (lev == lv) & (group == "comparison")),
                     ("pilot", "all", (lev == lv) & (group == "pilot"))]
            units += [("pilot", c, (lev == lv) & (group == "pilot") & (cell == c)) for c in CELLS]
            for g, c, m in units:
                x = x_all[m]
                n = len(x)
                lo = hi = np.nan
                if n:
                    a, b = percentile_ci(bootstrap_means(x[:, None], n_reps, rng), level)
                    lo, hi = float(a[0]), float(b[0])
                rows.append({"subgroup": f"{var}={lv}", "group": g, "cell": c, "period": "follow_up", "n": n,
                             "mean_eur": float(x.mean()) if n else np.nan,
                             "sd_eur": float(x.std(ddof=1)) if n > 1 else np.nan,
                             "ci_low": lo, "ci_high": hi, "ci_method": method if n else ""})
    out = pd.DataFrame(rows, columns=SUBGROUP_COSTS_COLUMNS)
    num = ["mean_eur", "sd_eur", "ci_low", "ci_high"]
    out[num] = out[num].astype(float).round(2)
    return suppress_small_groups(out, "n", num, min_cell)


def subgroup_costs_results(study: Any, fc: FamilyCosts, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """``results/subgroup_costs.csv`` of a study (only the header when it has no subgroups)."""
    cfg = study.config
    if not cfg.subgroups:
        return pd.DataFrame(columns=SUBGROUP_COSTS_COLUMNS)
    base = fc.wide if frame is None else frame
    values = subgroup_values(study, base)
    return subgroup_costs(fc.wide, values, cfg.subgroups, cfg.bootstrap_reps, cfg.seed, cfg.min_cell)
