"""Design diagnosis by simulation: power, MDE, bias, RMSE, coverage and the null rejection rate
of the primary estimator of the 2×2, with randomisation inference, vectorised over simulations.

The kernel takes what the study glue (:mod:`hbeval.diagnose`) hands it: the strata of one pilot
size, the simulated assignments (one row per simulation, drawn under the study's own procedure)
and, for randomisation inference, a set of re-randomisations of the same design. Nothing here
reads a study or draws an assignment.

The outcome model of one simulated family ``i``
(:func:`outcome_draws`; the mean ``μ`` is 0 without loss, every estimator here is invariant to it):

.. math::

    x_i \\sim N(0, \\sigma^2), \\qquad
    y_i = \\rho x_i + \\sqrt{1-\\rho^2}\\,\\sigma\\,\\varepsilon_i
          + a F_i + b T_i + c F_i T_i, \\qquad \\varepsilon_i \\sim N(0, 1),

with ``x`` the start score, ``y`` the end score, ``F``/``T`` the arm indicators and ``(a, b, c)``
the stated effects; each end score is missing independently with probability ``attrition``
(missing completely at random).

The estimator is the primary specification of ``results/effects.csv``
(:mod:`hbeval.stats.factorial`): OLS of the end score on the arms, the start score and stratum
fixed effects, HC2 standard errors, t on the residual degrees of freedom; the main-effects
model for the margins and the model with the product term for the interaction and the cells;
families alone in their stratum among the analysed are dropped. It is computed for every
simulation at once by Frisch–Waugh–Lovell (:func:`ancova_sims`), and equals
:func:`hbeval.stats.factorial.fit_main` / :func:`~hbeval.stats.factorial.fit_interaction`
to rounding (``tests/stats/test_power.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hbeval.arms import CELL_CONTRASTS, CONTRAST_INTERACTION, CONTRASTS, CONTRASTS_MAIN
from hbeval.stats.dist import t_ppf
from hbeval.stats.ols import html_table

#: two-sided level of every test
ALPHA = 0.05
#: the power that defines the minimal detectable effect
POWER_TARGET = 0.80
#: null estimates within this relative distance of the observed one count as at least as extreme
#: (as :data:`hbeval.stats.ri.RI_TIE_TOL`)
RI_TIE_TOL = 1e-4
#: rows of (draws × simulations × strata) products held at once in randomisation inference
_RI_BLOCK = 4_000_000
#: arm rows of the cell indicators (cells 1, 2, 3): ``F = D2 + D3``, ``T = D1 + D3``
_MAIN_ROWS = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
#: each contrast of :data:`CONTRASTS` as weights on the main model (first two) or the cell model
_CELL_WEIGHTS = np.array([[-1.0, -1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
COLUMNS = ("contrast", "n_pilot", "effect", "power", "mde", "bias", "rmse", "coverage", "rejection_rate_null", "sims",
           "method")


def true_effects(effects: dict[str, float]) -> dict[str, float]:
    """The true value of every contrast of :data:`hbeval.arms.CONTRASTS` under the stated effects.

    Parameters
    ----------
    effects : ``frame_shares`` (a), ``teaming`` (b) and ``interaction`` (c), outcome points

    Notes
    -----
    The margins average each factor's simple effects over the two levels of the other, as the
    main-effects model does in a balanced design: ``a + c/2`` and ``b + c/2``; the interaction
    is ``c``; the cells against ``frame_only/no_teaming`` are ``b``, ``a`` and ``a + b + c``.
    """
    a, b, c = (float(effects.get(k, 0.0)) for k in ("frame_shares", "teaming", "interaction"))
    vals = (a + c / 2, b + c / 2, c, b, a, a + b + c)
    return dict(zip(CONTRASTS, vals))


# ---------------------------------------------------------------------------- simulation
def outcome_draws(rng: np.random.Generator, n_sims: int, n: int, sd: float, rho: float,
                  attrition: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start scores, null end scores and the observed-end mask of ``n_sims × n`` families.

    Returns
    -------
    ``(start, end, observed)``, each ``(n_sims, n)``; ``end`` carries no effect (add
    :func:`effect_shift`).

    Notes
    -----
    ``x = σ z₁``, ``y = ρ x + √(1−ρ²) σ z₂`` and ``observed = u ≥ attrition``, with ``z₁``,
    ``z₂`` standard normal and ``u`` uniform, drawn in that order.
    """
    start = sd * rng.standard_normal((n_sims, n))
    end = rho * start + np.sqrt(1.0 - rho**2) * sd * rng.standard_normal((n_sims, n))
    observed = rng.random((n_sims, n)) >= attrition
    return start, end, observed


def effect_shift(cell: np.ndarray, effects: dict[str, float]) -> np.ndarray:
    """``a F + b T + c F T`` of each family (same shape as ``cell``)."""
    a, b, c = (float(effects.get(k, 0.0)) for k in ("frame_shares", "teaming", "interaction"))
    f = (cell // 2).astype(float)
    t = (cell % 2).astype(float)
    shift: np.ndarray = a * f + b * t + c * f * t
    return shift


@dataclass
class Partialled:
    """The covariate part of the primary model, partialled out of every simulation at once.

    Attributes
    ----------
    w : ``(S, n)`` 1 for a family in the analysis (end observed, not alone in its stratum)
    G : ``(n, K)`` stratum one-hot
    cnt : ``(S, K)`` analysed families per stratum
    xd : ``(S, n)`` start score demeaned within strata (0 outside the analysis)
    sxx : ``(S,)`` ``Σ xd²``
    h0 : ``(S, n)`` leverage of the covariates (``1/n_g + xd²/sxx``)
    df_cov : ``(S,)`` rank of the covariates (strata present + 1)
    """

    w: np.ndarray
    G: np.ndarray
    cnt: np.ndarray
    xd: np.ndarray
    sxx: np.ndarray
    h0: np.ndarray
    df_cov: np.ndarray

    def resid(self, v: np.ndarray) -> np.ndarray:
        """``M_W v`` for ``(S, n)`` or ``(S, n, k)`` values: within-stratum demeaning over the
        analysed families, then the start score partialled out."""
        if v.ndim == 2:
            return self.resid(v[..., None])[..., 0]
        wv = self.w[..., None] * v
        means = np.einsum("sik,ig->sgk", wv, self.G) / np.maximum(self.cnt, 1)[..., None]
        vd = self.w[..., None] * (v - np.einsum("sgk,ig->sik", means, self.G))
        with np.errstate(invalid="ignore", divide="ignore"):
            coef = np.einsum("si,sik->sk", self.xd, vd) / self.sxx[:, None]
        out: np.ndarray = vd - self.xd[..., None] * coef[:, None, :]
        return out


def partial_covariates(start: np.ndarray, observed: np.ndarray, stratum: np.ndarray) -> Partialled:
    """Drop singleton strata and partial stratum means and the start score out (see :class:`Partialled`).

    Parameters
    ----------
    start : ``(S, n)`` start scores
    observed : ``(S, n)`` end score observed
    stratum : ``(n,)`` integer stratum codes ``0 … K−1`` (the same for every simulation)
    """
    K = int(stratum.max()) + 1 if len(stratum) else 1
    G = np.zeros((len(stratum), K))
    G[np.arange(len(stratum)), stratum] = 1.0
    w = observed.astype(float)
    cnt = w @ G
    w = w * ((cnt == 1).astype(float) @ G.T == 0)  # a family alone in its stratum has leverage 1: dropped
    cnt = w @ G
    means = ((w * start) @ G) / np.maximum(cnt, 1)
    xd = w * (start - means @ G.T)
    sxx = np.einsum("si,si->s", xd, xd)
    with np.errstate(invalid="ignore", divide="ignore"):
        h0 = w * ((1.0 / np.maximum(cnt, 1)) @ G.T + xd**2 / sxx[:, None])
    df_cov = (cnt > 0).sum(axis=1) + 1
    return Partialled(w=w, G=G, cnt=cnt, xd=xd, sxx=sxx, h0=h0, df_cov=df_cov)


def _inv_batched(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of each ``(k, k)`` matrix of ``A`` and a mask of the well-conditioned ones
    (the others get NaN)."""
    k = A.shape[-1]
    scale = np.maximum(np.abs(np.diagonal(A, axis1=-2, axis2=-1)).max(axis=-1), 1e-300)
    ok = np.isfinite(A).all(axis=(-2, -1))
    with np.errstate(invalid="ignore"):
        ok &= np.abs(np.linalg.det(np.where(ok[..., None, None], A, 0.0) / scale[..., None, None])) > 1e-10
    safe = np.where(ok[..., None, None], A, np.eye(k))
    inv = np.linalg.inv(safe)
    inv[~ok] = np.nan
    return inv, ok


def _hc2_fit(Zt: np.ndarray, yt: np.ndarray, h0: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``(S, q)`` and HC2 covariance ``(S, q, q)`` of partialled arms ``Zt``
    ``(S, n, q)`` on a partialled outcome ``yt`` ``(S, n)``."""
    A = np.einsum("siq,sir->sqr", Zt, Zt)
    Ainv, _ = _inv_batched(A)
    beta = np.einsum("sqr,sr->sq", Ainv, np.einsum("siq,si->sq", Zt, yt))
    e = w * (yt - np.einsum("siq,sq->si", Zt, beta))
    h = h0 + w * np.einsum("siq,sqr,sir->si", Zt, Ainv, Zt)
    exact = h > 1.0 - 1e-10
    with np.errstate(invalid="ignore", divide="ignore"):
        omega = np.where(exact | (w == 0), 0.0, e**2 / np.where(exact, 1.0, 1.0 - h))
    meat = np.einsum("siq,si,sir->sqr", Zt, omega, Zt)
    return beta, Ainv @ meat @ Ainv


@dataclass
class SimFits:
    """The primary estimator in every simulation: ``est`` and ``se`` ``(S, 6)`` in the order of
    :data:`hbeval.arms.CONTRASTS` (NaN where a model cannot be fitted), ``df`` ``(S, 2)`` (main
    model, interaction model) and ``n_obs`` ``(S,)`` analysed families."""

    est: np.ndarray
    se: np.ndarray
    df: np.ndarray
    n_obs: np.ndarray

    def df_of(self) -> np.ndarray:
        """``(S, 6)`` residual degrees of freedom of each contrast's model."""
        return np.column_stack([self.df[:, 0], self.df[:, 0], *(self.df[:, 1] for _ in range(4))])


def cell_indicators(cell: np.ndarray) -> np.ndarray:
    """``(…, n, 3)`` indicators of cells 1, 2, 3 (the reference cell 0 is left out)."""
    return np.stack([(cell == k).astype(float) for k in (1, 2, 3)], axis=-1)


def ancova_sims(part: Partialled, cell: np.ndarray, end: np.ndarray) -> SimFits:
    """The primary estimator of every contrast in every simulation.

    Parameters
    ----------
    part : the covariates partialled out (:func:`partial_covariates`)
    cell : ``(S, n)`` cell codes of each simulation's assignment
    end : ``(S, n)`` end scores (values outside the analysis are ignored)

    Notes
    -----
    By Frisch–Waugh–Lovell, with ``W`` the covariates (stratum indicators and the start score)
    and ``Z̃ = M_W Z``, ``ỹ = M_W y`` over the analysed families: ``β = (Z̃'Z̃)⁻¹ Z̃'ỹ`` and
    the HC2 covariance of the arm coefficients

    .. math:: \\hat V = (\\tilde Z'\\tilde Z)^{-1} \\tilde Z' \\operatorname{diag}\\!\\left(
              \\frac{e_i^2}{1-h_i}\\right) \\tilde Z (\\tilde Z'\\tilde Z)^{-1},

    with the full model's leverage ``h_i = 1/n_{g(i)} + x̃_i²/Σx̃² + z̃_i'(Z̃'Z̃)⁻¹z̃_i``
    (stratum means, the demeaned start score and the partialled arms are orthogonal). The main
    model's arms are ``F = D_2 + D_3`` and ``T = D_1 + D_3``; the interaction model is
    parametrised by the cell indicators ``D_1, D_2, D_3`` (the same span as ``F, T, FT``), so
    the interaction is ``β_3 − β_1 − β_2``. Residual df ``= n_obs − (K_present + 1) − q``.
    """
    Dt = part.resid(cell_indicators(cell))
    yt = part.resid(np.nan_to_num(end))
    n_obs = part.w.sum(axis=1)
    Ft = Dt @ _MAIN_ROWS.T
    b_main, v_main = _hc2_fit(Ft, yt, part.h0, part.w)
    b_cell, v_cell = _hc2_fit(Dt, yt, part.h0, part.w)
    est = np.column_stack([b_main, b_cell @ _CELL_WEIGHTS.T])
    var_cell = np.einsum("cq,sqr,cr->sc", _CELL_WEIGHTS, v_cell, _CELL_WEIGHTS)
    var = np.column_stack([np.diagonal(v_main, axis1=1, axis2=2), var_cell])
    df = np.column_stack([n_obs - part.df_cov - 2, n_obs - part.df_cov - 3])
    bad = np.column_stack([df[:, 0] <= 0, df[:, 0] <= 0, *(df[:, 1] <= 0 for _ in range(4))])
    bad |= ~(part.sxx > 0)[:, None]
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.where(var >= 0, var, np.nan))
    est[bad] = np.nan
    se[bad] = np.nan
    return SimFits(est=est, se=se, df=df.astype(float), n_obs=n_obs)


# ---------------------------------------------------------------------------- randomisation inference
def ri_pvalues(part: Partialled, ends: list[np.ndarray], observed_est: list[np.ndarray],
               ri_draws: np.ndarray) -> list[np.ndarray]:
    """Randomisation-inference p-values of every contrast in every simulation.

    Parameters
    ----------
    part : the covariates partialled out of each simulation
    ends : ``(S, n)`` end scores of each simulation, one array per scenario (e.g. no effect and
        the stated effects: the Gram matrices are shared, only the moments differ)
    observed_est : ``(S, 6)`` estimates of each scenario (:func:`ancova_sims`)
    ri_draws : ``(R, n)`` re-randomisations of the whole design (cell codes), shared by the
        simulations (each is independent of every simulation's assignment)

    Returns
    -------
    One ``(S, 6)`` array per scenario: two-sided p-values
    ``(1 + #{|β_r| ≥ |β_obs|(1 − 10⁻⁴)}) / (1 + R)`` under the sharp null of no effect of
    either factor, as :func:`hbeval.stats.ri.ri_pvalue`.

    Notes
    -----
    For draw ``r`` with cell indicators ``E_k`` and simulation ``s`` (weights ``w``, stratum
    counts ``n_g``, demeaned start ``x̃``, partialled outcome ``ỹ``), the partialled Gram and
    moments are

    .. math:: A_{jk} = \\delta_{jk} N_k - \\sum_g \\frac{C_{jg} C_{kg}}{n_g} - \\frac{P_j P_k}{\\sum x̃^2},
              \\qquad u_k = E_k'\\tilde y,

    with ``N_k = E_k'w``, ``C_{kg} = Σ_{i∈g} w_i E_{ki}`` and ``P_k = E_k'x̃``: one matrix
    product of the ``R × n`` indicators with an ``n × (S·K)`` matrix per cell, then 3×3 and
    2×2 solves in closed form. The main model's Gram is ``L A L'`` with ``F = E_2 + E_3``,
    ``T = E_1 + E_3``.
    """
    S = part.w.shape[0]
    K = part.G.shape[1]
    R = ri_draws.shape[0]
    yts = [part.resid(np.nan_to_num(e)) for e in ends]
    outs = [np.full((S, len(CONTRASTS)), np.nan) for _ in ends]
    block = max(1, _RI_BLOCK // max(R * (K + 3), 1))
    E = [(ri_draws == k).astype(float) for k in (1, 2, 3)]
    for a in range(0, S, block):
        sl = slice(a, min(a + block, S))
        nulls = _ri_block(part, sl, [yt[sl] for yt in yts], E)  # each (R, s, 6)
        for out, null, obs_all in zip(outs, nulls, observed_est):
            obs = obs_all[sl]
            count = (np.abs(null) >= (np.abs(obs) * (1 - RI_TIE_TOL))[None]).sum(axis=0)
            out[sl] = np.where(np.isfinite(obs), (1 + count) / (1 + R), np.nan)
    return outs


def _ri_block(part: Partialled, sl: slice, yts: list[np.ndarray], E: list[np.ndarray]) -> list[np.ndarray]:
    """Null estimates ``(R, s, 6)`` of the simulations ``sl``, one array per outcome of ``yts``."""
    w, G, cnt = part.w[sl], part.G, part.cnt[sl]
    s, K = w.shape[0], G.shape[1]
    R = E[0].shape[0]
    root = np.where(cnt > 0, 1.0 / np.sqrt(np.maximum(cnt, 1)), 0.0)  # (s, K)
    WG = ((w[:, :, None] * G[None]) * root[:, None, :]).transpose(1, 0, 2).reshape(-1, s * K)  # (n, s·K)
    C = [(e @ WG).reshape(R, s, K) for e in E]  # C_kg / √n_g
    N = [e @ w.T for e in E]  # (R, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        P = [(e @ part.xd[sl].T) / np.sqrt(part.sxx[sl])[None, :] for e in E]
    A = {}
    for j in range(3):
        for k in range(j, 3):
            A[j, k] = -np.einsum("rsg,rsg->rs", C[j], C[k]) - P[j] * P[k] + (N[j] if j == k else 0.0)
    out = []
    for yt in yts:
        U = [e @ yt.T for e in E]
        b1, b2, b3 = _solve3(A, U)
        # main model: F = E2 + E3, T = E1 + E3
        aFF = A[1, 1] + 2 * A[1, 2] + A[2, 2]
        aTT = A[0, 0] + 2 * A[0, 2] + A[2, 2]
        aFT = A[0, 1] + A[0, 2] + A[1, 2] + A[2, 2]
        uF, uT = U[1] + U[2], U[0] + U[2]
        det = aFF * aTT - aFT**2
        ok = np.abs(det) > 1e-10 * np.maximum(aFF * aTT, 1e-300)
        with np.errstate(invalid="ignore", divide="ignore"):
            bF = np.where(ok, (aTT * uF - aFT * uT) / det, np.nan)
            bT = np.where(ok, (aFF * uT - aFT * uF) / det, np.nan)
        out.append(np.stack([bF, bT, b3 - b1 - b2, b1, b2, b3], axis=-1))
    return out


def _solve3(A: dict[tuple[int, int], np.ndarray], u: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """``A⁻¹u`` for batches of symmetric 3×3 ``A`` (upper entries ``A[j, k]``, ``j ≤ k``) by
    cofactors; NaN where ``A`` is singular."""
    a, b, c = A[0, 0], A[1, 1], A[2, 2]
    d, e, f = A[0, 1], A[0, 2], A[1, 2]
    c00, c11, c22 = b * c - f * f, a * c - e * e, a * b - d * d
    c01, c02, c12 = e * f - c * d, d * f - b * e, d * e - a * f
    det = a * c00 + d * c01 + e * c02
    ok = np.abs(det) > 1e-10 * np.maximum(np.abs(a * b * c), 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_det = np.where(ok, 1.0 / det, np.nan)
    x0 = (c00 * u[0] + c01 * u[1] + c02 * u[2]) * inv_det
    x1 = (c01 * u[0] + c11 * u[1] + c12 * u[2]) * inv_det
    x2 = (c02 * u[0] + c12 * u[1] + c22 * u[2]) * inv_det
    return x0, x1, x2


# ---------------------------------------------------------------------------- power and MDE
def t_crit(df: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Two-sided critical values of t on ``df`` degrees of freedom (NaN where ``df ≤ 0``)."""
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        out: np.ndarray = np.where(df > 0, t_ppf(1 - alpha / 2, np.where(df > 0, df, 1.0)), np.nan)
    return out


def power_curve(est0: np.ndarray, se: np.ndarray, crit: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Power of the t-test at each true effect ``δ`` from null simulations.

    Notes
    -----
    With a constant additive effect ``δ`` on the contrast, each simulation's estimate shifts by
    exactly ``δ`` and its residuals (hence its HC2 SE) are unchanged, so
    ``power(δ) = mean_s 1{|β̂_{0,s} + δ| > t_s · SE_s}``. A simulation whose model cannot be
    fitted counts as not rejecting.
    """
    ok = np.isfinite(est0) & np.isfinite(se) & np.isfinite(crit)
    e, h = est0[ok], (crit * se)[ok]
    n = len(est0)
    if n == 0:
        return np.full(len(deltas), np.nan)
    rej = np.abs(e[None, :] + np.asarray(deltas, dtype=float)[:, None]) > h[None, :]
    out: np.ndarray = rej.sum(axis=1) / n
    return out


def mde(est0: np.ndarray, se: np.ndarray, crit: np.ndarray, target: float = POWER_TARGET) -> float:
    """The smallest true effect ``δ ≥ 0`` whose power (:func:`power_curve`) reaches ``target``.

    Notes
    -----
    On ``δ ≥ 0`` simulation ``s`` rejects when ``δ > U_s = t_s SE_s − β̂_s`` or
    ``δ < L_s = −t_s SE_s − β̂_s``, so ``#rejections(δ) = #{U_s < δ} + #{L_s > δ}`` only
    rises at the ``U_s``: the MDE is exact (no bisection), the infimum over ``δ ∈ {0} ∪ {U_s}``
    at which the count reaches ``⌈target · S⌉``. NaN when no effect reaches it (too few
    analysable simulations).
    """
    S = len(est0)
    need = int(np.ceil(target * S - 1e-9))
    ok = np.isfinite(est0) & np.isfinite(se) & np.isfinite(crit)
    if S == 0 or ok.sum() < need:
        return float("nan")
    h = (crit * se)[ok]
    U = np.sort(h - est0[ok])
    L = np.sort(-h - est0[ok])
    if (L > 0).sum() + 0 >= need and need > 0:  # already at δ = 0 (only with a very biased estimator)
        return 0.0
    cand = np.maximum(U, 0.0)
    up = np.arange(1, len(U) + 1)  # #{U_s < δ} just above each candidate
    down = len(L) - np.searchsorted(L, cand, side="right")  # #{L_s > δ}
    hit = np.flatnonzero(up + down >= need)
    return float(cand[hit[0]]) if len(hit) else float("nan")


# ---------------------------------------------------------------------------- one size, summarised
@dataclass
class SizeSims:
    """Per-simulation results of one pilot size (concatenated over chunks of simulations)."""

    null: SimFits
    stated: SimFits
    p_ri_null: np.ndarray | None = None
    p_ri_stated: np.ndarray | None = None

    @staticmethod
    def concat(parts: list[SizeSims]) -> SizeSims:
        """Chunks of simulations joined in order."""
        def cat(fits: list[SimFits]) -> SimFits:
            return SimFits(*(np.concatenate([getattr(f, k) for f in fits]) for k in ("est", "se", "df", "n_obs")))

        ri0 = [p.p_ri_null for p in parts]
        ri1 = [p.p_ri_stated for p in parts]
        return SizeSims(null=cat([p.null for p in parts]), stated=cat([p.stated for p in parts]),
                        p_ri_null=None if any(r is None for r in ri0) else np.concatenate(ri0),  # type: ignore[arg-type]
                        p_ri_stated=None if any(r is None for r in ri1) else np.concatenate(ri1))  # type: ignore[arg-type]


def simulate_chunk(rng: np.random.Generator, stratum: np.ndarray, cell: np.ndarray, *, sd: float, rho: float,
                   attrition: float, effects: dict[str, float], ri_draws: np.ndarray | None = None) -> SizeSims:
    """Simulate ``len(cell)`` trials of one design and fit the primary estimator to each.

    Parameters
    ----------
    rng : generator of the outcomes and attrition
    stratum : ``(n,)`` integer stratum codes of the families
    cell : ``(S, n)`` each simulation's assignment (cell codes), drawn under the study's procedure
    sd, rho, attrition : the outcome model (module docstring)
    effects : ``frame_shares``, ``teaming``, ``interaction`` (outcome points)
    ri_draws : ``(R, n)`` re-randomisations of the design for RI p-values, or None for none

    Returns
    -------
    SizeSims: the fits with no effect and with the stated effects (the same start scores,
    noise and attrition: common random numbers).
    """
    S, n = cell.shape
    start, end0, observed = outcome_draws(rng, S, n, sd, rho, attrition)
    part = partial_covariates(start, observed, stratum)
    end1 = end0 + effect_shift(cell, effects)
    null = ancova_sims(part, cell, end0)
    stated = ancova_sims(part, cell, end1)
    if ri_draws is None or len(ri_draws) == 0:
        return SizeSims(null=null, stated=stated)
    p0, p1 = ri_pvalues(part, [end0, end1], [null.est, stated.est], ri_draws)
    return SizeSims(null=null, stated=stated, p_ri_null=p0, p_ri_stated=p1)


def summarise(sims: SizeSims, n_pilot: int, effects: dict[str, float], method: str,
              alpha: float = ALPHA, target: float = POWER_TARGET) -> pd.DataFrame:
    """One row per contrast of :data:`hbeval.arms.CONTRASTS`: the columns of ``diagnosis.csv``.

    Notes
    -----
    Over the ``S`` simulations (a simulation whose model cannot be fitted counts as not
    rejecting and is left out of bias, RMSE and coverage):

    * ``power`` — share rejecting ``H₀: contrast = 0`` (t-test, level ``alpha``) under the stated effects;
    * ``rejection_rate_null`` — the same with every effect 0 (should be ``alpha``);
    * ``mde`` — :func:`mde` from the null simulations;
    * ``bias`` = mean(β̂ − θ), ``rmse`` = √mean((β̂ − θ)²), ``coverage`` = share of t-intervals
      holding θ, at the stated effects (θ from :func:`true_effects`);
    * ``power_ri``, ``rejection_rate_null_ri`` — the RI test's rejection rates (p ≤ ``alpha``);
    * ``mean_se``, ``n_analysed`` — the mean HC2 SE and the mean number of analysed families.
    """
    truth = true_effects(effects)
    df0, df1 = sims.null.df_of(), sims.stated.df_of()
    c0, c1 = t_crit(df0, alpha), t_crit(df1, alpha)
    S = sims.null.est.shape[0]
    rows = []
    for j, con in enumerate(CONTRASTS):
        th = truth[con]
        e0, s0, e1, s1 = sims.null.est[:, j], sims.null.se[:, j], sims.stated.est[:, j], sims.stated.se[:, j]
        ok1 = np.isfinite(e1) & np.isfinite(s1)
        err = e1[ok1] - th
        half = (c1[:, j] * s1)[ok1]
        row: dict[str, Any] = {
            "contrast": con, "n_pilot": int(n_pilot), "effect": th,
            "power": _rate(np.abs(e1) > c1[:, j] * s1, S),
            "mde": mde(e0, s0, c0[:, j], target),
            "bias": float(err.mean()) if ok1.any() else np.nan,
            "rmse": float(np.sqrt((err**2).mean())) if ok1.any() else np.nan,
            "coverage": float((np.abs(err) <= half).mean()) if ok1.any() else np.nan,
            "rejection_rate_null": _rate(np.abs(e0) > c0[:, j] * s0, S),
            "sims": S, "method": method,
            "power_ri": _rate(sims.p_ri_stated[:, j] <= alpha, S) if sims.p_ri_stated is not None else np.nan,
            "rejection_rate_null_ri": _rate(sims.p_ri_null[:, j] <= alpha, S) if sims.p_ri_null is not None else np.nan,
            "mean_se": float(np.nanmean(s0)) if np.isfinite(s0).any() else np.nan,
            "n_analysed": float(sims.null.n_obs.mean()),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _rate(hit: np.ndarray, S: int) -> float:
    """Share of ``S`` simulations where ``hit`` is true (NaN comparisons are False)."""
    return float(np.sum(np.nan_to_num(hit, nan=0.0).astype(bool)) / S) if S else float("nan")


def curve_frame(sims: SizeSims, n_pilot: int, deltas: np.ndarray, alpha: float = ALPHA) -> pd.DataFrame:
    """Power of the t-test of every contrast at each effect of ``deltas`` (:func:`power_curve`):
    ``contrast, n_pilot, effect, power``."""
    crit = t_crit(sims.null.df_of(), alpha)
    frames = [pd.DataFrame({"contrast": con, "n_pilot": int(n_pilot), "effect": deltas,
                            "power": power_curve(sims.null.est[:, j], sims.null.se[:, j], crit[:, j], deltas)})
              for j, con in enumerate(CONTRASTS)]
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------- the result
@dataclass
class DiagnosisResult:
    """The diagnosis of a design: one row per contrast and size, and the power curves.

    Attributes
    ----------
    table : the columns of ``diagnosis.csv`` (:data:`COLUMNS` first, then ``power_ri``,
        ``rejection_rate_null_ri``, ``mean_se``, ``n_analysed``, ``sd``, ``rho``, ``attrition``)
    curve : ``contrast, n_pilot, effect, power`` (the power curves)
    parameters : the parameters and where each came from
    seconds : wall seconds per size
    """

    table: pd.DataFrame
    curve: pd.DataFrame
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The table of ``diagnosis.csv``."""
        return self.table.copy()

    def _repr_html_(self) -> str:
        cols = ["contrast", "n_pilot", "effect", "power", "mde", "bias", "rmse", "coverage", "rejection_rate_null"]
        p = self.parameters
        cap = (f"Design diagnosis ({int(self.table['sims'].iloc[0]) if len(self.table) else 0} simulations; "
               f"sd {p.get('sd', float('nan')):.3g}, rho {p.get('rho', float('nan')):.3g}, "
               f"attrition {p.get('attrition', float('nan')):.3g})")
        return html_table(self.table[cols], cap)


#: the order of the contrasts in tables and figures
CONTRAST_ORDER: tuple[str, ...] = (*CONTRASTS_MAIN, CONTRAST_INTERACTION, *CELL_CONTRASTS)
