"""Randomised contrasts of the 2×2 factorial: ANCOVA with HC2, Lin-style robustness check,
effect sizes, and the ``results/effects.csv`` / ``results/process.csv`` tables.

Pure statistics (arrays and DataFrames in, tidy DataFrames out) come first; the Study glue
(:func:`effects_results`, :func:`process_results`) and the forest plot come last.

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

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg
from scipy import stats

from hbeval.arms import CELL_CONTRASTS, CONTRAST_INTERACTION, CONTRASTS, CONTRASTS_MAIN  # noqa: E402
METHOD_PRIMARY = "ancova_hc2"
METHOD_LIN = "lin_centred_interaction_hc2"


# ---------------------------------------------------------------------------- OLS + HC2
@dataclass
class OLSResult:
    """An OLS fit with HC2 (or weighted HC2) covariance.

    Attributes
    ----------
    names : column names of the design (``NaN`` coefficients for dropped collinear columns)
    coef, vcov : estimates and their HC2 covariance
    df_resid : ``n - rank``
    n : number of observations
    """

    names: list[str]
    coef: np.ndarray
    vcov: np.ndarray
    df_resid: int
    n: int
    residuals: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    def index(self, name: str) -> int:
        return self.names.index(name)

    def contrast(self, weights: dict[str, float], level: float = 0.95) -> dict[str, float]:
        """Estimate, SE, t-interval and p-value of ``Σ w_j β_j``."""
        c = np.zeros(len(self.names))
        for k, w in weights.items():
            c[self.index(k)] = w
        keep = c != 0
        est = float(c[keep] @ self.coef[keep])
        var = float(c[keep] @ self.vcov[np.ix_(keep, keep)] @ c[keep])
        return _t_row(est, np.sqrt(var) if var >= 0 else np.nan, self.df_resid, level)

    def row(self, name: str, level: float = 0.95) -> dict[str, float]:
        return self.contrast({name: 1.0}, level)


def _t_row(est: float, se: float, df: int, level: float = 0.95) -> dict[str, float]:
    if not np.isfinite(se) or se <= 0 or df <= 0:
        return {"estimate": est, "std_error": se, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "df": df}
    q = stats.t.ppf(0.5 + level / 2, df)
    t = est / se
    return {
        "estimate": est,
        "std_error": se,
        "ci_low": est - q * se,
        "ci_high": est + q * se,
        "p_value": float(2 * stats.t.sf(abs(t), df)),
        "df": df,
    }


def ols_hc2(y: np.ndarray, X: np.ndarray, names: list[str] | None = None, weights: np.ndarray | None = None) -> OLSResult:
    """OLS (or WLS) with HC2 standard errors.

    Parameters
    ----------
    y : (n,) outcome
    X : (n, p) design, intercept included by the caller
    names : column names
    weights : optional (n,) non-negative analytic weights (WLS)

    Returns
    -------
    OLSResult

    Notes
    -----
    With ``X = QR`` (pivoted; columns beyond the numerical rank are dropped and get NaN),
    ``β = R⁻¹Q'y``, leverages ``h_i = ‖Q_i‖²`` and

    .. math:: \\hat V_{HC2} = (X'X)^{-1} X' \\operatorname{diag}\\!\\left(\\frac{e_i^2}{1-h_i}\\right) X (X'X)^{-1}

    (MacKinnon & White 1985), estimatr's default for ``lm_robust``. With weights, the
    same formula on ``√w X`` and ``√w y``, as estimatr does for weighted HC2.
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    names = list(names) if names is not None else [f"x{j}" for j in range(p)]
    if weights is not None:
        sw = np.sqrt(np.asarray(weights, dtype=float))
        Xw, yw = X * sw[:, None], y * sw
    else:
        Xw, yw = X, y
    Q, R, piv = scipy.linalg.qr(Xw, mode="economic", pivoting=True)
    d = np.abs(np.diag(R))
    tol = d.max() * max(n, p) * np.finfo(float).eps if d.size else 0.0
    rank = int((d > tol).sum())
    keep = np.sort(piv[:rank])
    if rank < p:
        Q, R = np.linalg.qr(Xw[:, keep])
    else:
        # re-order to the original column order for a clean R
        Q, R = np.linalg.qr(Xw)
    Rinv = scipy.linalg.solve_triangular(R, np.eye(rank))
    beta_k = Rinv @ (Q.T @ yw)
    e = yw - Xw[:, keep] @ beta_k
    h = np.einsum("ij,ij->i", Q, Q)
    # an observation with leverage 1 is fitted exactly by a column of its own (e.g. the only
    # family with a missing baseline and its indicator): it carries no information on the
    # other coefficients and its HC2 term is 0/0; its limit contribution is 0, the same as
    # dropping it (the coefficients it alone identifies get no valid SE).
    exact = h > 1.0 - 1e-10
    with np.errstate(divide="ignore", invalid="ignore"):
        omega = np.where(exact, 0.0, e**2 / np.where(exact, 1.0, 1.0 - h))
    # bread (X'X)^-1 = R^-1 R^-T; meat X' Ω X
    XR = Xw[:, keep] @ Rinv  # = Q
    meat = (XR * omega[:, None]).T @ XR
    V_k = Rinv @ meat @ Rinv.T
    coef = np.full(p, np.nan)
    coef[keep] = beta_k
    V = np.full((p, p), np.nan)
    V[np.ix_(keep, keep)] = V_k
    resid = y - X[:, keep] @ beta_k
    return OLSResult(names=names, coef=coef, vcov=V, df_resid=n - rank, n=n, residuals=resid)


# ---------------------------------------------------------------------------- designs
def strata_dummies(stratum: np.ndarray | pd.Series) -> tuple[np.ndarray, list[str]]:
    """Indicators of every stratum but the first in sorted order (treatment coding)."""
    lab = pd.Series(np.asarray(stratum, dtype=object)).astype(str)
    levels = sorted(lab.unique())
    if len(levels) <= 1:
        return np.empty((len(lab), 0)), []
    D = (lab.to_numpy()[:, None] == np.array(levels[1:], dtype=object)[None, :]).astype(float)
    return D, [f"stratum[{s}]" for s in levels[1:]]


def drop_singleton_strata(mask: np.ndarray, stratum: np.ndarray) -> np.ndarray:
    """``mask`` without the families that are alone in their stratum among ``mask``."""
    lab = pd.Series(np.asarray(stratum, dtype=object)).astype(str)
    counts = lab[mask].value_counts()
    single = lab.isin(counts.index[counts == 1]).to_numpy()
    return mask & ~single


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
    DataFrame with ``contrast, estimate, std_error, ci_low, ci_high, p_value, df, n, method``,
    six rows for ``ancova_hc2`` and six for ``lin_centred_interaction_hc2``.
    """
    rows = []
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
    lin = fit_lin(d)
    for c, w in lin_weights(d).items():
        rows.append({"contrast": c, **lin.contrast(w, level), "method": METHOD_LIN})
    out = pd.DataFrame(rows)
    out["n"] = d.n
    return out


# ---------------------------------------------------------------------------- effect sizes
def contrast_groups(contrast: str, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Boolean masks (treated, reference) of the families a contrast compares, or ``None``
    for the interaction (a difference of differences has no two groups)."""
    cell = np.asarray(cell)
    if contrast == "frame_shares":
        return cell >= 2, cell < 2
    if contrast == "teaming":
        return cell % 2 == 1, cell % 2 == 0
    if contrast.startswith("cell:"):
        from hbeval.arms import CELLS

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


# ---------------------------------------------------------------------------- Study glue
FAMILY_METHOD = {
    "prevention": "risk_difference_lpm_hc2",
}
EFFECTS_COLUMNS = [
    "family", "outcome", "contrast", "estimate", "std_error", "ci_low", "ci_high", "p_value", "p_value_ri", "p_value_adj",
    "p_value_holm", "n", "method", "df", "hedges_g", "g_ci_low", "g_ci_high", "estimate_sd_units", "baseline",
]
MIN_PER_CELL = 2


def _base_method(family: str, has_start: bool) -> str:
    if family in FAMILY_METHOD:
        return FAMILY_METHOD[family]
    return METHOD_PRIMARY if has_start else "ancova_hc2_no_baseline"


def randomised_effects(frame: pd.DataFrame, families: dict[str, list[str]], draws: np.ndarray | None, draw_ids: np.ndarray | None = None,
                       assignment: str = "batch") -> tuple[pd.DataFrame, dict]:
    """Every randomised contrast of every declared outcome, with RI and multiplicity.

    Parameters
    ----------
    frame : :func:`hbeval.outcomes.frame.outcome_frame` (or any frame with ``client_id``, ``cell``,
        ``stratum`` and ``<outcome>_end`` / ``<outcome>_start`` columns)
    families : outcome family → outcomes
    draws : ``(D, m)`` re-drawn cell codes of the ``m`` assigned families ``draw_ids``
        (``None`` skips RI)
    draw_ids : ``client_id`` of the columns of ``draws``

    Returns
    -------
    (table, nulls): the tidy table (columns :data:`EFFECTS_COLUMNS`) and the RI null draws
    keyed by ``(outcome, contrast)``.
    """
    from hbeval.stats.ri import blas_single_thread

    with blas_single_thread():
        return _randomised_effects(frame, families, draws, draw_ids, assignment)


def _randomised_effects(frame, families, draws, draw_ids, assignment):
    from hbeval.stats.ri import adjust_family, ri_factorial, ri_pvalue
    from hbeval.outcomes.frame import outcome_columns

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
                    rows.append({"family": fam, "outcome": outcome, "contrast": c, "n": 0, "method": f"{base} (no data)"})
                continue
            d = factorial_data(
                pd.to_numeric(rand[end], errors="coerce").to_numpy(float),
                rand["cell"].to_numpy(dtype=float, na_value=np.nan),
                rand["stratum"].astype(str).to_numpy(),
                None if start is None else pd.to_numeric(rand[start], errors="coerce").to_numpy(float),
            )
            counts = np.bincount(d.cell, minlength=4) if d.n else np.zeros(4, int)
            if d.n == 0 or counts.min() < MIN_PER_CELL or np.nanstd(d.y) == 0:
                for c in CONTRASTS:
                    rows.append({"family": fam, "outcome": outcome, "contrast": c, "n": d.n, "method": f"{base} (not estimable)"})
                continue
            tab = effect_sizes(factorial_effects(d), d)
            tab["method"] = tab["method"].map({METHOD_PRIMARY: base, METHOD_LIN: METHOD_LIN})
            if draws is not None:
                null = ri_factorial(d, draws[:, pos[d.mask]])
                for c, v in null.items():
                    nulls[(outcome, c)] = v
                prim = tab["method"] == base
                tab.loc[prim, "p_value_ri"] = [ri_pvalue(e, null[c]) for e, c in zip(tab.loc[prim, "estimate"], tab.loc[prim, "contrast"])]
            tab["family"] = fam
            tab["outcome"] = outcome
            tab["baseline"] = "start" if start is not None else "none"
            rows.extend(tab.to_dict("records"))
    out = pd.DataFrame(rows)
    for c in EFFECTS_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    m = out["method"].astype(str)
    kind = np.where(m.str.contains("(", regex=False), "none", np.where(m == METHOD_LIN, "lin", "primary"))
    out["_k"] = kind
    adj = adjust_family(out, nulls, by=("family", "contrast", "_k"))
    out["p_value_holm"] = adj["p_value_holm"]
    ri_txt = f"ri={n_draws} re-randomisations ({assignment} procedure, within strata)" if n_draws else "ri=none"
    prim = kind == "primary"
    out.loc[prim, "p_value_adj"] = adj.loc[prim, "p_value_wy"]
    out.loc[prim, "method"] = out.loc[prim, "method"] + "; " + ri_txt + "; adj=westfall_young_stepdown_maxT within family"
    lin = kind == "lin"
    out.loc[lin, "p_value_adj"] = adj.loc[lin, "p_value_holm"]
    out.loc[lin, "method"] = METHOD_LIN + "; adj=holm within family"
    return out.drop(columns="_k")[EFFECTS_COLUMNS], nulls


def _sort_effects(df: pd.DataFrame, families: dict[str, list[str]]) -> pd.DataFrame:
    fam_order = {f: i for i, f in enumerate(families)}
    out_order: dict[str, int] = {}
    for f, outs in families.items():
        for o in outs:
            out_order.setdefault(o, len(out_order))
    con_order = {c: i for i, c in enumerate((*CONTRASTS, "pilot_vs_comparison"))}
    key = pd.DataFrame({
        "f": df["family"].map(fam_order).fillna(99),
        "o": df["outcome"].map(out_order).fillna(999),
        "m": (~df["method"].astype(str).str.startswith(METHOD_LIN)).map({True: 0, False: 1}),
        "c": df["contrast"].map(con_order).fillna(99),
    })
    idx = key.sort_values(["f", "o", "m", "c"], kind="mergesort").index
    return df.loc[idx].reset_index(drop=True)


def effects_results(study, include_comparison: bool = False) -> pd.DataFrame:
    """``results/effects.csv``: every contrast of every declared outcome.

    Randomised contrasts (primary specification and the Lin check) for the assigned pilot
    families, with ``p_value_ri`` from ``config.ri_draws`` re-randomisations under the
    assignment procedure actually used (seeded from ``[config.seed, 4001]``), ``p_value_adj``
    Westfall–Young step-down within each outcome family and contrast (``p_value_holm``
    beside it), Hedges' g and the estimate in baseline-SD units. With
    ``include_comparison=True`` the ``pilot_vs_comparison`` rows of
    :func:`hbeval.outcomes.comparison.comparison_results` (not randomised) are added and sorted in;
    by default they are not, because ``hbeval.analyze`` appends the second frame of
    ``comparison_results`` itself. ``n`` is a count of families, shown as ``"<k"`` below
    ``config.min_cell``.
    """
    from hbeval.stats.ri import RI_SEED_CONSTANT, procedure_label, redraw
    from hbeval.outcomes.frame import outcome_frame
    from hbeval.privacy import suppress_count

    cfg = study.config
    frame = outcome_frame(study)
    assigned = frame.loc[frame["cell"].notna(), "client_id"].astype(str).sort_values(kind="mergesort").to_numpy()
    draws = redraw(study, assigned, cfg.ri_draws, np.random.default_rng([cfg.seed, RI_SEED_CONSTANT])) if len(assigned) else None
    tab, _ = randomised_effects(frame, cfg.families, draws, assigned, assignment=procedure_label(study))
    if include_comparison:
        from hbeval.outcomes.comparison import comparison_effect_rows

        comp = comparison_effect_rows(study, frame)
        if len(comp):
            tab = pd.concat([tab, comp[[c for c in EFFECTS_COLUMNS if c in comp.columns]]], ignore_index=True)
    tab = _sort_effects(tab, cfg.families)
    tab["n"] = [suppress_count(v, cfg.min_cell) for v in tab["n"]]
    small = tab["n"].astype(str).str.startswith("<")
    stat_cols = ["estimate", "std_error", "ci_low", "ci_high", "hedges_g", "g_ci_low", "g_ci_high", "estimate_sd_units"]
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


def process_summary(frame: pd.DataFrame, min_cell: int = 5) -> pd.DataFrame:
    """Process measures summarised by cell (and all assigned families): ``measure, factor,
    cell, n, mean, sd, median, share_nonzero``; statistics of groups below ``min_cell`` are
    blanked and their count shown as ``"<k"``; a share whose count (of zeros or non-zeros)
    is below ``min_cell`` is blanked too (and the mean of a 0/1 measure with it)."""
    from hbeval.arms import CELLS
    from hbeval.privacy import suppress_small_groups

    rand = frame[frame["cell"].notna()]
    rows = []
    for m, factor in PROCESS_MEASURES.items():
        col = f"{m}_end"
        if col not in rand.columns:
            continue
        groups = [(CELLS[k], rand[rand["cell"].astype(int) == k][col]) for k in range(4)] + [("all", rand[col])]
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


def process_results(study) -> pd.DataFrame:
    """``results/process.csv``: process measures of both factors by cell (no per-family rows)."""
    from hbeval.outcomes.frame import outcome_frame

    return process_summary(outcome_frame(study), study.config.min_cell)


# ---------------------------------------------------------------------------- figure
_LABELS = {
    "en": {"x": "Effect (points; 95 % CI)", "title": "Effects of the randomised contrasts", "nr": "not randomised"},
    "fi": {"x": "Vaikutus (pisteinä; 95 %:n luottamusväli)", "title": "Satunnaistettujen vertailujen vaikutukset", "nr": "ei satunnaistettu"},
}


def plot_forest(effects_df: pd.DataFrame, lang: str = "en", outcome: str | None = None, method: str = METHOD_PRIMARY):
    """Forest plot of one outcome's contrasts (the primary outcome by default: the first
    outcome of the table). ``pilot_vs_comparison`` is drawn hollow and labelled as not
    randomised. Returns a matplotlib Figure."""
    from hbeval.report.figures import PALETTE, new_figure

    lab = _LABELS.get(lang, _LABELS["en"])
    df = effects_df
    if outcome is None:
        outcome = str(df["outcome"].iloc[0])
    sub = df[(df["outcome"] == outcome) & (df["method"].astype(str).str.startswith(method) | (df["contrast"] == "pilot_vs_comparison"))]
    sub = sub[pd.to_numeric(sub["estimate"], errors="coerce").notna()]
    fig, ax = new_figure(7.0, 0.45 * max(len(sub), 2) + 1.2)
    ys = np.arange(len(sub))[::-1]
    for y, r in zip(ys, sub.itertuples(index=False)):
        nr = r.contrast == "pilot_vs_comparison"
        color = PALETTE["pilot"] if nr else PALETTE["neutral"]
        ax.plot([r.ci_low, r.ci_high], [y, y], color=color, lw=1.5)
        ax.plot([r.estimate], [y], "o", color=color, mfc="white" if nr else color)
    ax.axvline(0, color="black", lw=0.8)
    from hbeval.report import i18n

    ax.set_yticks(ys)
    ax.set_yticklabels([i18n.value(c, lang) for c in sub["contrast"]])
    ax.set_xlabel(lab["x"])
    ax.set_title(f"{lab['title']}:\n{i18n.outcome(outcome, lang)}", fontsize=10)
    return fig
