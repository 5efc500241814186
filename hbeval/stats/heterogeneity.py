"""Heterogeneity of a randomised margin across the levels of a pre-specified subgroup variable.

For a margin of the 2×2 (``frame_shares`` or ``teaming``) and a subgroup variable with levels
``g = 1 … G``, the model is the primary specification with the margin split by level:

.. math:: y_i = \\sum_g \\tau_g M_i [g_i = g] + \\beta O_i + \\gamma\\, start_i
          + \\sum_{g>1} \\alpha_g [g_i = g] + \\text{stratum}_i + \\varepsilon_i,

with ``M`` the margin's indicator and ``O`` the other factor's (a single main effect, as in the
primary specification), level main effects and stratum fixed effects (level dummies aliased with
the strata, e.g. a stratification variable, are dropped by the rank rule of
:func:`hbeval.stats.ols.ols_fit`). ``τ_g`` is the effect of the margin within level ``g``; HC2
standard errors (estimatr's ``lm_robust(se_type = "HC2")``).

The omnibus test of heterogeneity is the Wald test of ``τ_1 = … = τ_G`` with the HC2 covariance,
``W = (Rτ̂)'(R V̂ R')^{-1}(Rτ̂)`` (``R`` the differences ``τ_g − τ_1``), referred to an F
distribution by the Hotelling-T² approximation of Pustejovsky & Tipton (2018) (HTZ,
:func:`htz_eta`; clubSandwich's ``Wald_test(test = "HTZ")``), which keeps its size where the
naive ``W/(G − 1) ~ F(G − 1, n − rank)`` (``car::linearHypothesis(..., test = "F")``, also
reported) over-rejects with small subgroups; both are pinned in ``tests/R/heterogeneity_fixtures.R``.
Its randomisation p-value: see :func:`heterogeneity`.

Pure: arrays in, :class:`HeterogeneityResult` out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from hbeval.arms import CONTRASTS_MAIN
from hbeval.stats.dist import f_sf
from hbeval.stats.factorial import SMALL_N_BM
from hbeval.stats.ols import EXACT_LEVERAGE, _t_row, bm_df, html_table, ols_fit, ols_hc2, pivoted_qr, strata_dummies
from hbeval.stats.ri import blas_single_thread, ri_pvalue

METHOD_HETEROGENEITY = "wald_hc2_F"
#: draws per block of the vectorised RI (memory ``chunk × n × (G + 1)`` doubles)
_CHUNK = 256


@dataclass(frozen=True)
class LevelEffect:
    """The margin's effect within one level: HC2 SE, t interval (on ``df_bm`` when the level
    has fewer than :data:`hbeval.stats.factorial.SMALL_N_BM` families, else on ``df``)."""

    level: str
    n: int  #: families of the level in the model
    n_treated: int  #: of which in the margin's treated arm
    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float  #: residual degrees of freedom of the model
    df_bm: float  #: Bell–McCaffrey degrees of freedom of ``τ̂_g``'s HC2 variance


@dataclass(frozen=True)
class HeterogeneityResult:
    """Subgroup effects of one margin and the omnibus test that they are equal.

    Attributes
    ----------
    margin : ``frame_shares`` or ``teaming``
    levels : the within-level effects, in the order of the input levels
    pooled_estimate, pooled_std_error : the margin's effect in the model without the
        margin × level terms (the null model; its estimate imputes the potential outcomes of RI)
    statistic, df_num, df_den, p_value : the test of heterogeneity: the HTZ F statistic
        ``(η − q + 1)/(η q) · wald`` on ``(q, η − q + 1)`` degrees of freedom, ``q = G − 1``
        (:func:`htz_eta`; clubSandwich's ``Wald_test(test = "HTZ")``)
    wald : the HC2 Wald statistic ``(Rτ̂)'(RV̂R')^{-1}Rτ̂``
    statistic_f, df_resid, p_value_f : the naive F test, ``wald / q`` on ``(q, n − rank)``
        (``car::linearHypothesis(..., test = "F")``), anti-conservative in small or unbalanced
        subgroups (see the simulations)
    p_value_ri : the randomisation p-value (NaN without draws)
    n_draws : RI draws with a statistic (draws that leave a level's arm empty have none)
    exact : the draws were every possible assignment
    n : families in the model
    """

    margin: str
    levels: tuple[LevelEffect, ...]
    pooled_estimate: float
    pooled_std_error: float
    statistic: float
    wald: float
    df_num: int
    df_den: float
    p_value: float
    statistic_f: float
    df_resid: int
    p_value_f: float
    p_value_ri: float = float("nan")
    n_draws: int = 0
    exact: bool = False
    n: int = 0
    null: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per level (``level, n, n_treated, estimate, std_error, ci_low, ci_high,
        p_value, df, df_bm``) and a last row ``level = "(heterogeneity)"`` with the test
        (``statistic, df_num, df_den, p_value, p_value_ri``)."""
        rows: list[dict[str, Any]] = [{"margin": self.margin, **vars(lv)} for lv in self.levels]
        rows.append({"margin": self.margin, "level": "(heterogeneity)", "n": self.n, "statistic": self.statistic,
                     "df_num": self.df_num, "df_den": self.df_den, "p_value": self.p_value,
                     "p_value_ri": self.p_value_ri, "statistic_f": self.statistic_f, "df_resid": self.df_resid,
                     "p_value_f": self.p_value_f})
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), f"Effect of {self.margin} by subgroup; HC2 Wald (HTZ) test of equal effects "
                                           f"F({self.df_num}, {self.df_den:.1f}) = {self.statistic:.3g}")


# ---------------------------------------------------------------------------- designs
def _margin_codes(cell: np.ndarray, margin: str) -> tuple[np.ndarray, np.ndarray]:
    """``(M, Ot)``: the margin's and the other factor's 0/1 indicators from cell codes."""
    if margin not in CONTRASTS_MAIN:
        raise ValueError(f"margin must be one of {CONTRASTS_MAIN}, not {margin!r}")
    cell = np.asarray(cell)
    f, t = (cell // 2).astype(float), (cell % 2).astype(float)
    return (f, t) if margin == "frame_shares" else (t, f)


def _covariates(start: np.ndarray | None, level: np.ndarray, n_levels: int, stratum: np.ndarray) -> np.ndarray:
    """``W = [1, start, level dummies (g > 0), stratum dummies]``: every column but the arms."""
    cols = [np.ones((len(level), 1))]
    if start is not None:
        cols.append(np.asarray(start, dtype=float)[:, None])
    cols.append((level[:, None] == np.arange(1, n_levels)[None, :]).astype(float))
    S, _ = strata_dummies(stratum)
    if S.shape[1]:
        cols.append(S)
    return np.column_stack(cols)


def covariate_basis(W: np.ndarray) -> np.ndarray:
    """An orthonormal basis ``(n, rank)`` of the columns of ``W`` by pivoted QR (level dummies
    aliased with the strata are dependent columns; pivoting keeps the span exact)."""
    Q, _, rank = pivoted_qr(W)
    out: np.ndarray = Q[:, :rank]
    return out


def _arms(M: np.ndarray, Ot: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``Z = [M·[g = 1], …, M·[g = G], Ot]``; ``M``, ``Ot`` are ``(n,)`` or ``(B, n)``."""
    return np.concatenate([M[..., None] * L, Ot[..., None]], axis=-1)


def _contrast(n_levels: int) -> np.ndarray:
    """``R`` ``(G − 1, G + 1)``: ``τ_g − τ_1`` on the columns of :func:`_arms`."""
    R = np.zeros((n_levels - 1, n_levels + 1))
    R[:, 0] = -1.0
    R[np.arange(n_levels - 1), np.arange(1, n_levels)] = 1.0
    return R


def batched_wald(y: np.ndarray, M: np.ndarray, Ot: np.ndarray, level: np.ndarray, n_levels: int, Q: np.ndarray,
                 R: np.ndarray) -> np.ndarray:
    """HC2 Wald statistics of ``Rβ = 0`` for many assignments of the arms, the covariates fixed.

    Parameters
    ----------
    y : ``(n,)`` outcome, or ``(B, n)`` one per assignment
    M, Ot : ``(B, n)`` 0/1 indicators of the margin and of the other factor, one row per assignment
    level : ``(n,)`` level codes ``0 … G−1``; ``n_levels`` is ``G``
    Q : ``(n, q)`` orthonormal basis of the fixed covariates ``W`` (:func:`covariate_basis`)
    R : ``(r, G + 1)`` restrictions on the coefficients of ``Z = [M·[g = 1], …, M·[g = G], Ot]``

    Returns
    -------
    ``(B,)`` Wald statistics; NaN where ``Z`` is not of full rank after ``W`` (a level's arm
    empty, or aliased with the strata) or the restricted covariance is singular.

    Notes
    -----
    By Frisch–Waugh–Lovell, with ``Z̃ = M_W Z = Z − QP`` (``P = Q'Z``) and ``ỹ = M_W y``:
    ``β̂ = A^{-1}Z'ỹ`` with ``A = Z̃'Z̃ = Z'Z − P'P``, residuals ``e = ỹ − Zβ̂ + QPβ̂`` (those of the
    full fit), leverages of the full design ``h_i = ‖Q_i‖² + z̃_i'A^{-1}z̃_i`` and the HC2
    covariance of ``β̂``

    .. math:: \\hat V = A^{-1} \\Big(\\sum_i \\frac{e_i^2}{1 - h_i} \\tilde z_i \\tilde z_i'\\Big) A^{-1},

    the ``Z`` block of the full fit's HC2 sandwich (its rows of ``(X'X)^{-1}X'`` are
    ``A^{-1}Z̃'``). ``z_i`` has at most two non-zero entries (``M_i`` at ``g_i``, ``O_i`` at ``G``),
    so every sum over units is a product of an ``(B, n)`` matrix with a fixed ``(n, ·)`` one
    (``Q`` by level, ``Q_iQ_i'``): no ``(B, n, k)`` array is formed. Units with leverage 1
    contribute 0, as in :func:`hbeval.stats.ols.hc2_cov`.
    """
    M = np.asarray(M, dtype=float)
    Ot = np.asarray(Ot, dtype=float)
    B, n = M.shape
    G, q, k = n_levels, Q.shape[1], n_levels + 1
    lev = np.asarray(level, dtype=np.int64)
    L = (lev[:, None] == np.arange(G)[None, :]).astype(float)
    QL = (Q[:, :, None] * L[:, None, :]).reshape(n, q * G)  # column j·G + g: Q_ij [g_i = g]
    QQ = (Q[:, :, None] * Q[:, None, :]).reshape(n, q * q)
    yt = np.broadcast_to(y - (y @ Q) @ Q.T, (B, n))
    MO = M * Ot

    def zz(w: np.ndarray) -> np.ndarray:
        """``Σ_i w_i z_i z_i'`` ``(B, k, k)`` for weights ``w`` ``(B, n)`` (M, Ot binary)."""
        out = np.zeros((B, k, k))
        g = np.arange(G)
        out[:, g, g] = (w * M) @ L
        out[:, g, G] = out[:, G, g] = (w * MO) @ L
        out[:, G, G] = (w * Ot).sum(axis=1)
        return out

    def zq(w: np.ndarray) -> np.ndarray:
        """``Σ_i w_i z_i Q_i'`` ``(B, k, q)``."""
        return np.concatenate([np.swapaxes(((w * M) @ QL).reshape(B, q, G), 1, 2), ((w * Ot) @ Q)[:, None, :]], axis=1)

    ones = np.ones((B, n))
    P = np.swapaxes(zq(ones), 1, 2)  # Q'Z (B, q, k)
    Pt = np.swapaxes(P, 1, 2)
    A = zz(ones) - Pt @ P
    u = np.concatenate([(M * yt) @ L, (Ot * yt).sum(axis=1)[:, None]], axis=1)  # Z'ỹ = Z̃'ỹ
    diag = np.einsum("bii->bi", A)
    scale = np.sqrt(np.where(diag > 0, diag, 1.0))
    As = A / scale[:, :, None] / scale[:, None, :]
    # singular: a column without variation after W (a level's arm empty), or collinear columns
    bad = (diag < 1e-8).any(axis=1) | ~(np.linalg.det(As) > 1e-10)  # unit diagonal: det ≤ 1
    As[bad] = np.eye(k)
    Ainv = np.linalg.inv(As) / scale[:, :, None] / scale[:, None, :]
    beta = np.einsum("bkl,bl->bk", Ainv, u)
    Pb = np.einsum("bqk,bk->bq", P, beta)
    e = yt - M * beta[:, lev] - Ot * beta[:, G : G + 1] + Pb @ Q.T
    # leverage: ‖Q_i‖² + z_i'A⁻¹z_i − 2 z_i'A⁻¹P'Q_i + Q_i'PA⁻¹P'Q_i
    ar = np.arange(G)
    t1 = M * Ainv[:, ar, ar][:, lev] + 2 * MO * Ainv[:, :G, G][:, lev] + Ot * Ainv[:, G, G][:, None]
    K = Ainv @ Pt  # (B, k, q)
    t2 = M * (np.swapaxes(K[:, :G, :], 1, 2).reshape(B, q * G) @ QL.T) + Ot * (K[:, G, :] @ Q.T)  # K[g_i]·Q_i, K[G]·Q_i
    C = P @ K  # (B, q, q)
    t3 = ((C.reshape(B, q * q)) @ QQ.T)  # Q_i'CQ_i
    h = np.einsum("nq,nq->n", Q, Q)[None, :] + t1 - 2 * t2 + t3
    exact = h > 1.0 - EXACT_LEVERAGE
    with np.errstate(divide="ignore", invalid="ignore"):
        omega = np.where(exact, 0.0, e**2 / np.where(exact, 1.0, 1.0 - h))
    Szq = zq(omega)
    Sqq = (omega @ QQ).reshape(B, q, q)
    meat = zz(omega) - Szq @ P - Pt @ np.swapaxes(Szq, 1, 2) + Pt @ Sqq @ P
    V = Ainv @ meat @ Ainv
    rb = beta @ R.T  # (B, r)
    RVR = R @ V @ R.T  # (B, r, r)
    out = np.full(B, np.nan)
    ok = np.flatnonzero(~bad)
    try:
        out[ok] = np.einsum("br,br->b", rb[ok], np.linalg.solve(RVR[ok], rb[ok][..., None])[..., 0])
    except np.linalg.LinAlgError:  # a singular restricted covariance: draw by draw
        for j in ok:
            try:
                out[j] = float(rb[j] @ np.linalg.solve(RVR[j], rb[j]))
            except np.linalg.LinAlgError:
                out[j] = np.nan
    return out


def htz_eta(X: np.ndarray, R: np.ndarray) -> float:
    """Degrees of freedom ``η`` of the Hotelling-T² approximation (HTZ) to the HC2 Wald test of
    ``Rβ = 0`` (Pustejovsky & Tipton 2018), clubSandwich's ``Wald_test(..., test = "HTZ")``
    with CR2 on singleton clusters (= HC2).

    Parameters
    ----------
    X : (n, p) design (columns beyond its numerical rank are dropped, as :func:`hbeval.stats.ols.ols_fit`)
    R : (q, p) restrictions

    Returns
    -------
    ``η``; the test is ``F = (η − q + 1)/(η q) · W`` on ``(q, η − q + 1)`` degrees of freedom.
    NaN when ``R`` involves a dropped column.

    Notes
    -----
    With ``X = QR``, ``L = XM R'`` (``M = (X'X)^{-1}``, so ``Rβ̂ = L'y``), ``Ω = L'L`` and
    ``g_i = Ω^{-1/2} L_i / \\sqrt{1 − h_i}``, the HC2 covariance standardised by its expectation
    under the working model ``y ~ N(Xβ, σ²I)`` is ``D = Σ_i g_i g_i' e_i²/σ²``, with
    ``Var(D_st) = 2 Σ_{ij} g_{is}g_{it}g_{js}g_{jt} (I − H)_{ij}²``. Matching the total
    variance of ``D`` to a Wishart's, ``η = q(q + 1) / Σ_{s,t} Var(D_st)``, where

    .. math:: \\sum_{s,t} \\operatorname{Var}(D_{st}) = 2\\Big(\\sum_i (1 − 2h_i)\\lVert g_i\\rVert^4
              + \\big\\lVert \\sum_i \\operatorname{vec}(Q_iQ_i')\\operatorname{vec}(g_ig_i')'\\big\\rVert_F^2\\Big)

    (``(I − H)_{ij}² = δ_{ij}(1 − 2h_i) + (Q_i'Q_j)²``): ``O(n p² q²)``, no ``n × n`` matrix.
    For ``q = 1`` it is the Bell–McCaffrey df (:func:`hbeval.stats.ols.bm_df`). Units with
    leverage 1 carry no information and are left out.
    """
    X = np.asarray(X, dtype=float)
    R = np.atleast_2d(np.asarray(R, dtype=float))
    keep = ols_fit(X, np.zeros(len(X))).keep
    if np.any(np.delete(R, keep, axis=1)):
        return float("nan")
    Qx, Rx = np.linalg.qr(X[:, keep])
    L = Qx @ scipy.linalg.solve_triangular(Rx, R[:, keep].T, trans="T")  # (n, q)
    h = np.einsum("ij,ij->i", Qx, Qx)
    ok = h < 1.0 - EXACT_LEVERAGE
    w, v = np.linalg.eigh(L.T @ L)
    if not np.all(w > 0):
        return float("nan")
    g = (L[ok] @ (v / np.sqrt(w)) @ v.T) / np.sqrt(1.0 - h[ok])[:, None]  # (n_ok, q), Ω^{-1/2} symmetric
    q = R.shape[0]
    Qo = Qx[ok]
    U = (Qo[:, :, None] * Qo[:, None, :]).reshape(len(Qo), -1)
    T = (g[:, :, None] * g[:, None, :]).reshape(len(g), -1)
    S = U.T @ T
    total = 2.0 * (float(np.sum((1.0 - 2.0 * h[ok]) * np.sum(g * g, axis=1) ** 2)) + float(np.sum(S * S)))
    return q * (q + 1) / total


# ---------------------------------------------------------------------------- the kernel
def heterogeneity(y: np.ndarray, cell: np.ndarray, level: np.ndarray, stratum: np.ndarray,
                  start: np.ndarray | None = None, margin: str = "frame_shares", draws: np.ndarray | None = None,
                  exact: bool = False, level_names: Sequence[str] | None = None, ci: float = 0.95,
                  chunk: int = _CHUNK) -> HeterogeneityResult:
    """Effects of a randomised margin within the levels of a subgroup variable, and the omnibus
    test (HC2 Wald F and randomisation inference) that they are equal.

    Parameters
    ----------
    y : ``(n,)`` end scores of the analysis sample (complete cases)
    cell : ``(n,)`` observed cell codes ``2·frame + teaming``
    level : ``(n,)`` level codes ``0 … G−1`` of the subgroup variable (every level present)
    stratum : ``(n,)`` stratum labels (fixed effects)
    start : ``(n,)`` start scores, or ``None`` (no baseline)
    margin : ``frame_shares`` or ``teaming``
    draws : ``(D, n)`` re-drawn cell codes of the same families (the procedure actually used,
        :class:`hbeval.randomisation.redraw.RIDraws`), or ``None`` (no RI)
    exact : the draws are every possible assignment, each once and equiprobable
    level_names : names of the levels (default ``"0"``, ``"1"``, …)
    ci : level of the intervals

    Returns
    -------
    :class:`HeterogeneityResult`

    Notes
    -----
    **Randomisation inference** (Ding, Feller & Miratrix 2016). The sharp null is a constant
    effect of the margin equal to its pooled estimate ``τ̂`` (the null model, without the
    margin × level terms), with the other factor's effect ``β̂`` likewise: the potential
    outcomes are imputed as ``y_i(m, o) = y_i − τ̂ M_i − β̂ O_i + τ̂ m + β̂ o``. Under draw ``d``
    the outcome is ``y⁰ + τ̂ M_d + β̂ O_d`` with ``y⁰ = y − τ̂ M − β̂ O``; since
    ``M_d = Σ_g M_d[g]`` and ``O_d`` are columns of the draw's design, adding them moves every
    ``τ_g`` by the same ``τ̂`` and leaves the residuals alone, so the draw's Wald statistic is
    that of ``y⁰`` on the draw's design (:func:`batched_wald`), and the observed one is that of
    ``y`` (equivalently ``y⁰``) on the observed design. ``p_ri = (1 + #{W_d ≥ W_obs})/(1 + D)``
    (exact enumeration: ``#{W_d ≥ W_obs}/D``) with the tie tolerance of
    :func:`hbeval.stats.ri.ri_pvalue`; draws with no statistic (a level's arm empty) are left
    out. The plug-in of ``τ̂`` makes the test approximate (Ding, Feller & Miratrix take the
    supremum over a confidence set); the simulations of ``tests/stats/test_heterogeneity.py``
    find its size within Monte-Carlo error of 5 %. The statistic is studentised (HC2), so the
    test is also asymptotically valid for the weak null of equal average effects.
    """
    y = np.asarray(y, dtype=float)
    level = np.asarray(level, dtype=np.int64)
    n = len(y)
    G = int(level.max()) + 1 if n else 0
    names = [str(v) for v in (level_names if level_names is not None else range(G))]
    if G < 2 or len(names) != G or np.bincount(level, minlength=G).min() == 0:
        raise ValueError("heterogeneity needs at least two levels, each present, with one name each")
    M, Ot = _margin_codes(np.asarray(cell), margin)
    L = (level[:, None] == np.arange(G)[None, :]).astype(float)
    stratum = np.asarray(stratum, dtype=object)
    W = _covariates(start, level, G, stratum)
    Z = _arms(M, Ot, L)
    X = np.column_stack([Z, W])
    cols = [f"{margin}:{nm}" for nm in names] + ["other"] + [f"w{j}" for j in range(W.shape[1])]
    fit = ols_hc2(y, X, cols)
    df = float(fit.df_resid)
    # the within-level effects
    lv: list[LevelEffect] = []
    for g in range(G):
        c = np.zeros(X.shape[1])
        c[g] = 1.0
        est, var = float(fit.coef[g]), float(fit.vcov[g, g])
        se = float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("nan")
        dfb = bm_df(X, c) if np.isfinite(est) else float("nan")
        ng = int(L[:, g].sum())
        use_df = dfb if ng < SMALL_N_BM and np.isfinite(dfb) else df
        r = _t_row(est, se, use_df, ci)
        lv.append(LevelEffect(level=names[g], n=ng, n_treated=int((M * L[:, g]).sum()), estimate=est, std_error=se,
                              ci_low=r["ci_low"], ci_high=r["ci_high"], p_value=r["p_value"], df=df, df_bm=dfb))
    # the null model: the margin pooled
    X0 = np.column_stack([M, Ot, W])
    fit0 = ols_hc2(y, X0)
    tau0, beta0 = float(fit0.coef[0]), float(fit0.coef[1])
    se0 = float(np.sqrt(fit0.vcov[0, 0])) if np.isfinite(fit0.vcov[0, 0]) else float("nan")
    # the omnibus Wald test
    Rk = _contrast(G)
    Q = covariate_basis(W)
    with blas_single_thread():
        wald = float(batched_wald(y, M[None], Ot[None], level, G, Q, Rk)[0])
    q = G - 1
    stat_f = wald / q
    p_f = float(f_sf(stat_f, q, df)) if np.isfinite(stat_f) and df > 0 else float("nan")
    Rfull = np.zeros((q, X.shape[1]))
    Rfull[:, : G + 1] = Rk
    eta = htz_eta(X, Rfull)
    df2 = eta - q + 1
    stat = (eta - q + 1) / (eta * q) * wald if np.isfinite(eta) else float("nan")
    p = float(f_sf(stat, q, df2)) if np.isfinite(stat) and df2 > 0 else float("nan")
    p_ri, used, null = float("nan"), 0, np.empty(0)
    if draws is not None and np.isfinite(wald) and np.isfinite(tau0) and np.isfinite(beta0):
        draws = np.asarray(draws)
        if draws.ndim != 2 or draws.shape[1] != n:
            raise ValueError(f"draws must be (D, {n}) cell codes of the same families")
        y0 = y - tau0 * M - beta0 * Ot
        null = np.empty(len(draws))
        with blas_single_thread():
            for a in range(0, len(draws), chunk):
                Md, Od = _margin_codes(draws[a : a + chunk], margin)
                null[a : a + len(Md)] = batched_wald(y0, Md, Od, level, G, Q, Rk)
        p_ri = ri_pvalue(wald, null, exact)
        used = int(np.isfinite(null).sum())
    return HeterogeneityResult(margin=margin, levels=tuple(lv), pooled_estimate=tau0, pooled_std_error=se0,
                               statistic=stat, wald=wald, df_num=q, df_den=df2, p_value=p, statistic_f=stat_f,
                               df_resid=int(df), p_value_f=p_f, p_value_ri=p_ri,
                               n_draws=used, exact=exact, n=n, null=null)
