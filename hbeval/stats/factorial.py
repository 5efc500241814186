"""The 2×2 factorial: its analysis sample, the primary ANCOVA fits, the Lin check, every
contrast and its effect size.

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

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hbeval.arms import CELLS, CONTRAST_INTERACTION, CONTRASTS_MAIN
from hbeval.stats.ols import OLSResult, _t_row, bm_dfs_of, drop_singleton_strata, ols_hc2, strata_dummies

METHOD_PRIMARY = "ancova_hc2"
METHOD_LIN = "lin_centred_interaction_hc2"


@dataclass
class FactorialData:
    """The analysis sample of one outcome: complete cases of the randomised families."""

    y: np.ndarray
    frame: np.ndarray  # 0/1
    teaming: np.ndarray  # 0/1
    start: np.ndarray | None
    stratum: np.ndarray
    mask: np.ndarray  # which rows of the input frame are used
    extra: np.ndarray | None = None  # further covariates (n, k), e.g. a missing-baseline dummy
    extra_names: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def cell(self) -> np.ndarray:
        return (2 * self.frame + self.teaming).astype(np.int8)


def factorial_data(end: np.ndarray, cell: np.ndarray, stratum: np.ndarray, start: np.ndarray | None = None) -> FactorialData:
    """Complete cases (end, start when given, cell) with singleton strata removed."""
    end = np.asarray(end, dtype=float)
    cell_f = pd.to_numeric(pd.Series(np.asarray(cell, dtype=object)), errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(end) & np.isfinite(cell_f)
    if start is not None:
        start = np.asarray(start, dtype=float)
        ok &= np.isfinite(start)
    ok = drop_singleton_strata(ok, np.asarray(stratum, dtype=object))
    c = cell_f[ok].astype(np.int8)
    return FactorialData(
        y=end[ok],
        frame=(c // 2).astype(float),
        teaming=(c % 2).astype(float),
        start=None if start is None else start[ok],
        stratum=np.asarray(stratum, dtype=object)[ok],
        mask=ok,
    )


#: a randomised contrast needs at least this many analysed families in every cell
MIN_PER_CELL = 2
#: why a randomised family is not in the analysis sample of an outcome, in the order checked
REASON_NO_END = "no_end_score"
REASON_NO_START = "no_start_score"
REASON_ALONE = "alone_in_stratum"
REASON_NOT_ESTIMABLE = "not_estimable"


def analysis_status(end: np.ndarray, cell: np.ndarray, stratum: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Per unit, why it is not in the sample of :func:`factorial_data` (``""`` when it is).

    The first that applies of :data:`REASON_NO_END` (or no cell), :data:`REASON_NO_START`
    (only when ``start`` is given) and :data:`REASON_ALONE` (alone in its stratum among the
    complete cases); the units with ``""`` are exactly ``factorial_data(...).mask``.
    """
    end = np.asarray(end, dtype=float)
    cell_f = pd.to_numeric(pd.Series(np.asarray(cell, dtype=object)), errors="coerce").to_numpy(dtype=float)
    out = np.full(len(end), "", dtype=object)
    ok = np.isfinite(end) & np.isfinite(cell_f)
    out[~ok] = REASON_NO_END
    if start is not None:
        has_start = np.isfinite(np.asarray(start, dtype=float))
        out[ok & ~has_start] = REASON_NO_START
        ok &= has_start
    kept = drop_singleton_strata(ok, np.asarray(stratum, dtype=object))
    out[ok & ~kept] = REASON_ALONE
    return out


def estimable(d: FactorialData) -> bool:
    """Whether the contrasts of ``d`` can be estimated: every cell has :data:`MIN_PER_CELL`
    families and the outcome varies."""
    if d.n == 0:
        return False
    counts = np.bincount(d.cell, minlength=4)
    return bool(counts.min() >= MIN_PER_CELL and np.nanstd(d.y) > 0)


def _covariates(d: FactorialData) -> tuple[np.ndarray, list[str]]:
    """``W = [1, start, extra, stratum dummies]``: every covariate but the arms."""
    S, snames = strata_dummies(d.stratum)
    cols = [np.ones(d.n)]
    names = ["(Intercept)"]
    if d.start is not None:
        cols.append(d.start)
        names.append("start")
    if d.extra is not None and d.extra.shape[1]:
        cols.append(d.extra)
        names += list(d.extra_names)
    W = np.column_stack(cols + ([S] if S.shape[1] else []))
    return W, names + snames


def fit_main(d: FactorialData, weights: np.ndarray | None = None) -> OLSResult:
    """``y ~ frame_shares + teaming + start + strata`` with HC2 (weighted when given)."""
    W, wn = _covariates(d)
    X = np.column_stack([W[:, :1], d.frame, d.teaming, W[:, 1:]])
    return ols_hc2(d.y, X, [wn[0], "frame_shares", "teaming", *wn[1:]], weights)


def fit_interaction(d: FactorialData, weights: np.ndarray | None = None) -> OLSResult:
    """``y ~ frame_shares * teaming + start + strata`` with HC2 (weighted when given)."""
    W, wn = _covariates(d)
    X = np.column_stack([W[:, :1], d.frame, d.teaming, d.frame * d.teaming, W[:, 1:]])
    return ols_hc2(d.y, X, [wn[0], "frame_shares", "teaming", "frame_shares:teaming", *wn[1:]], weights)


#: contrasts of the primary fits as weights on ``(frame_shares, teaming)`` of the main-effects
#: model or ``(frame_shares, teaming, frame_shares:teaming)`` of the interaction model
_PRIMARY_WEIGHTS: dict[str, tuple[str, tuple[float, ...]]] = {
    "frame_shares": ("main", (1.0, 0.0)),
    "teaming": ("main", (0.0, 1.0)),
    CONTRAST_INTERACTION: ("interaction", (0.0, 0.0, 1.0)),
    "cell:frame_only/teaming": ("interaction", (0.0, 1.0, 0.0)),
    "cell:frame_shares/no_teaming": ("interaction", (1.0, 0.0, 0.0)),
    "cell:frame_shares/teaming": ("interaction", (1.0, 1.0, 1.0)),
}
#: below this many analysed families the primary t intervals and p-values use the
#: Bell–McCaffrey degrees of freedom instead of the residual ones (``df_bm`` is always reported)
SMALL_N_BM = 50


def bm_dfs(d: FactorialData) -> dict[str, float]:
    """Bell–McCaffrey degrees of freedom (:func:`hbeval.stats.ols.bm_df`) of every primary
    contrast's HC2 variance."""
    W, _ = _covariates(d)
    arms = {"main": [d.frame, d.teaming], "interaction": [d.frame, d.teaming, d.frame * d.teaming]}
    out: dict[str, float] = {}
    for model, cols in arms.items():  # each model's design factored once for its contrasts
        names = [c for c, (m, _) in _PRIMARY_WEIGHTS.items() if m == model]
        X = np.column_stack([W[:, :1], *cols, W[:, 1:]])
        dfs = bm_dfs_of(X, [np.r_[0.0, _PRIMARY_WEIGHTS[c][1], np.zeros(W.shape[1] - 1)] for c in names])
        out.update(zip(names, dfs))
    return {c: out[c] for c in _PRIMARY_WEIGHTS}


def fit_lin(d: FactorialData) -> OLSResult:
    """Lin (2013)-style fit: cell indicators fully interacted with the centred start score,
    plus stratum fixed effects.

    Columns ``c1, c2, c3`` (cells ``frame_only/teaming``, ``frame_shares/no_teaming``,
    ``frame_shares/teaming`` against ``frame_only/no_teaming``), ``start_c`` and
    ``c_k:start_c``, with ``start_c = start − mean(start)``. The coefficient of ``c_k`` is
    then the adjusted cell contrast at the sample's mean baseline.
    """
    S, Sn = strata_dummies(d.stratum)
    cell = d.cell
    C = np.column_stack([(cell == k).astype(float) for k in (1, 2, 3)])
    cols = [np.ones((d.n, 1)), C]
    names = ["(Intercept)", "c1", "c2", "c3"]
    if d.start is not None:
        sc = d.start - d.start.mean()
        cols += [sc[:, None], C * sc[:, None]]
        names += ["start_c", "c1:start_c", "c2:start_c", "c3:start_c"]
    if d.extra is not None and d.extra.shape[1]:
        cols.append(d.extra)
        names += list(d.extra_names)
    X = np.column_stack(cols + ([S] if S.shape[1] else []))
    return ols_hc2(d.y, X, names + Sn)


def lin_weights(d: FactorialData) -> dict[str, dict[str, float]]:
    """Contrast weights of the Lin fit's coefficients for each contrast.

    Notes
    -----
    With ``μ_k`` the adjusted mean of cell ``k`` (``μ_0`` the reference), the main effect of
    the frame factor averages its simple effects over the sample share ``p_T`` of teaming,
    ``(1−p_T)(μ_2−μ_0) + p_T(μ_3−μ_1)``, which is the coefficient of a centred factor coding
    (``F − p_F``, ``T − p_T``, their product); likewise for teaming with ``p_F``. The
    interaction is ``μ_3 − μ_2 − μ_1 + μ_0``. Shares are treated as fixed in the SE.
    """
    pT = float(d.teaming.mean())
    pF = float(d.frame.mean())
    return {
        "frame_shares": {"c2": 1 - pT, "c3": pT, "c1": -pT},
        "teaming": {"c1": 1 - pF, "c3": pF, "c2": -pF},
        "frame_shares:teaming": {"c3": 1.0, "c1": -1.0, "c2": -1.0},
        "cell:frame_only/teaming": {"c1": 1.0},
        "cell:frame_shares/no_teaming": {"c2": 1.0},
        "cell:frame_shares/teaming": {"c3": 1.0},
    }


def factorial_effects(d: FactorialData, level: float = 0.95) -> pd.DataFrame:
    """Every contrast of the 2×2 under the primary specification and the Lin check.

    Returns
    -------
    DataFrame with ``contrast, estimate, std_error, ci_low, ci_high, p_value, df, df_bm, n,
    method``, six rows for ``ancova_hc2`` and six for ``lin_centred_interaction_hc2``.

    Notes
    -----
    ``df`` is the residual degrees of freedom and ``df_bm`` the Bell–McCaffrey degrees of
    freedom of the HC2 variance (:func:`bm_dfs`, primary rows). With fewer than
    :data:`SMALL_N_BM` (50) analysed families the primary rows' ``ci_low, ci_high, p_value``
    are t-based on ``df_bm``; from 50 on, on ``df`` (the contract's pinned specification).
    """
    rows: list[dict[str, Any]] = []
    main = fit_main(d)
    inter = fit_interaction(d)
    for c in CONTRASTS_MAIN:
        rows.append({"contrast": c, **main.row(c, level), "method": METHOD_PRIMARY})
    rows.append({"contrast": CONTRAST_INTERACTION, **inter.row(CONTRAST_INTERACTION, level), "method": METHOD_PRIMARY})
    cellw = {
        "cell:frame_only/teaming": {"teaming": 1.0},
        "cell:frame_shares/no_teaming": {"frame_shares": 1.0},
        "cell:frame_shares/teaming": {"frame_shares": 1.0, "teaming": 1.0, "frame_shares:teaming": 1.0},
    }
    for c, w in cellw.items():
        rows.append({"contrast": c, **inter.contrast(w, level), "method": METHOD_PRIMARY})
    for r, (c, df_bm) in zip(rows, bm_dfs(d).items()):  # the same order: CONTRASTS
        assert r["contrast"] == c
        r["df_bm"] = df_bm
        if d.n < SMALL_N_BM and np.isfinite(df_bm):  # small sample: t on the Bell–McCaffrey df
            r.update(_t_row(float(r["estimate"]), float(r["std_error"]), df_bm, level), df=r["df"])
    lin = fit_lin(d)
    for c, w in lin_weights(d).items():
        rows.append({"contrast": c, **lin.contrast(w, level), "method": METHOD_LIN})
    out = pd.DataFrame(rows)
    out["n"] = d.n
    return out


def contrast_groups(contrast: str, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Boolean masks (treated, reference) of the families a contrast compares, or ``None``
    for the interaction (a difference of differences has no two groups)."""
    cell = np.asarray(cell)
    if contrast == "frame_shares":
        return cell >= 2, cell < 2
    if contrast == "teaming":
        return cell % 2 == 1, cell % 2 == 0
    if contrast.startswith("cell:"):

        k = CELLS.index(contrast[5:])
        return cell == k, cell == 0
    return None


def hedges_g(estimate: float, ci_low: float, ci_high: float, y1: np.ndarray, y0: np.ndarray) -> dict[str, float]:
    """Hedges' g of an (adjusted) mean difference, with a CI.

    Notes
    -----
    ``g = J · estimate / s_p`` with the pooled SD of the outcome in the two groups,
    ``s_p² = ((n_1−1)s_1² + (n_0−1)s_0²)/(n_1+n_0−2)``, and the small-sample correction
    ``J = 1 − 3/(4(n_1+n_0) − 9)`` (Hedges 1981; What Works Clearinghouse Procedures
    Handbook v5, covariate-adjusted g). The CI is the estimate's own (HC2, t) interval on
    the same scale, ``J · [ci_low, ci_high] / s_p``, so the effect size inherits the
    precision of the ANCOVA rather than that of an unadjusted comparison.
    """
    y1 = np.asarray(y1, dtype=float)
    y0 = np.asarray(y0, dtype=float)
    n1, n0 = len(y1), len(y0)
    if n1 < 2 or n0 < 2:
        return {"hedges_g": np.nan, "g_ci_low": np.nan, "g_ci_high": np.nan}
    sp = np.sqrt(((n1 - 1) * y1.var(ddof=1) + (n0 - 1) * y0.var(ddof=1)) / (n1 + n0 - 2))
    J = 1 - 3 / (4 * (n1 + n0) - 9)
    if not sp > 0:
        return {"hedges_g": np.nan, "g_ci_low": np.nan, "g_ci_high": np.nan}
    return {"hedges_g": J * estimate / sp, "g_ci_low": J * ci_low / sp, "g_ci_high": J * ci_high / sp}


def effect_sizes(table: pd.DataFrame, d: FactorialData) -> pd.DataFrame:
    """Add ``hedges_g, g_ci_low, g_ci_high, estimate_sd_units`` to a :func:`factorial_effects`
    table. ``estimate_sd_units`` is the estimate over the SD of the start score of the
    analysed families (all arms pooled), or of the end score when there is no baseline."""
    out = table.copy()
    base = d.start if d.start is not None else d.y
    sd0 = float(np.std(base, ddof=1)) if len(base) > 1 else np.nan
    gs = []
    for r in out.itertuples(index=False):
        grp = contrast_groups(r.contrast, d.cell)
        if grp is None:
            # interaction: scale by the pooled within-cell SD
            resid = np.concatenate([d.y[d.cell == k] - d.y[d.cell == k].mean() for k in range(4) if (d.cell == k).sum() > 0])
            sw = np.sqrt((resid**2).sum() / max(len(resid) - 4, 1))
            J = 1 - 3 / (4 * d.n - 9) if d.n > 3 else np.nan
            if not sw > 0:  # the outcome does not vary within cells: no SD to scale by
                gs.append({"hedges_g": np.nan, "g_ci_low": np.nan, "g_ci_high": np.nan})
                continue
            gs.append({"hedges_g": J * r.estimate / sw, "g_ci_low": J * r.ci_low / sw, "g_ci_high": J * r.ci_high / sw})
        else:
            gs.append(hedges_g(r.estimate, r.ci_low, r.ci_high, d.y[grp[0]], d.y[grp[1]]))
    g = pd.DataFrame(gs, index=out.index)
    out[g.columns] = g
    out["estimate_sd_units"] = out["estimate"] / sd0 if sd0 and sd0 > 0 else np.nan
    return out
