"""Randomisation inference for the factorial ANCOVA, and multiplicity adjustment.

Randomisation inference (RI) re-draws the assignment under the procedure that was actually
used and recomputes the estimate each time. It is vectorised by Frisch–Waugh–Lovell: the
covariates ``W`` (intercept, start score, stratum fixed effects) do not change between
draws, so with ``W = Q_W R_W`` and ``ỹ = M_W y`` computed once, the arm coefficients of a
draw with indicator matrix ``Z`` are

.. math:: \\hat\\beta = (Z'Z - (Q_W'Z)'(Q_W'Z))^{-1} Z'\\tilde y,

which for thousands of draws is a handful of matrix products and batched 2×2 / 3×3 solves.

Multiplicity: Holm (1979) on the analytic p-values, and the Westfall–Young (1993) step-down
max-T procedure on the RI draws (which share one set of draws across the outcomes of a
family, so their joint null distribution is the re-randomisation distribution; under
subset pivotality this is the Romano–Wolf 2005 step-down).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hbeval.arms import CONTRAST_INTERACTION, CONTRASTS, SEEDS
from hbeval.stats.factorial import FactorialData, _covariates

RI_SEED_CONSTANT = SEEDS["ri"]
#: Null estimates within this relative distance of the observed one count as at least as
#: extreme (conservative); it covers the ~1e-5 relative error of single-precision products.
RI_TIE_TOL = 1e-4
_CHUNK = 512


def blas_single_thread() -> contextlib.AbstractContextManager[Any]:
    """Context limiting BLAS to one thread (``threadpoolctl`` when installed).

    The RI products are skinny (``q × n`` by ``n × B`` with ``q`` ≈ 12): threads buy little
    and, on a loaded machine, OpenBLAS's spinning threads made them up to 10× slower in our
    measurements. Results do not depend on it.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# ---------------------------------------------------------------------------- RI core
class Residualiser:
    """``M_W`` for a fixed covariate matrix ``W`` (orthonormal basis by QR)."""

    def __init__(self, W: np.ndarray):
        Q, R = np.linalg.qr(W)
        d = np.abs(np.diag(R))
        keep = d > d.max() * max(W.shape) * np.finfo(float).eps
        self.Q = Q[:, keep]

    def resid(self, v: np.ndarray) -> np.ndarray:
        return v - self.Q @ (self.Q.T @ v)


def ri_factorial(d: FactorialData, draws: np.ndarray, chunk: int = _CHUNK, precision: str = "float32") -> dict[str, np.ndarray]:
    """Null distribution of every contrast's ANCOVA estimate over re-drawn assignments.

    Parameters
    ----------
    d : the analysis sample
    draws : ``(n_draws, d.n)`` cell codes for the families of ``d`` (columns in the same order)
    chunk : draws per block (memory ``chunk × n`` per indicator)
    precision : ``"float32"`` (default) or ``"float64"`` for the indicator products

    Returns
    -------
    dict contrast → ``(n_draws,)`` estimates: ``frame_shares`` and ``teaming`` from the
    main-effects model, the interaction and the three cell contrasts from the interaction
    model (the primary specification of :mod:`hbeval.outcomes.effects`).

    Notes
    -----
    Sharp null of no effect of either factor on any family. Per block of draws, with cell
    indicators ``D_k`` (``B × n``) and ``M = [Q_W, ỹ, 1]``, one product ``D_k M`` gives
    ``P_k = Q_W'D_k``, ``Z_k'ỹ`` and the count ``Z_k'Z_k``; the Gram entries are
    ``Z_j'M_W Z_k = Z_j'Z_k − P_j'P_k``; ``F = D_2 + D_3``, ``T = D_1 + D_3``.

    With ``precision="float32"`` the products run in single precision (the 0/1 indicators
    and counts are exact; the null estimates carry an error of about 1e-5 of their SD),
    which is 3–4× faster; everything after the products is double precision. The observed
    estimate always comes from the double-precision fit, and :func:`ri_pvalue` counts null
    draws within a relative 1e-4 of it as at least as extreme (conservative), so p-values do
    not depend on the precision except through such near-ties.
    """
    with blas_single_thread():
        return _ri_factorial(d, draws, chunk, np.float32 if precision == "float32" else np.float64)


def _ri_factorial(d: FactorialData, draws: np.ndarray, chunk: int, dtype: type[np.floating[Any]]) -> dict[str, np.ndarray]:
    W, _ = _covariates(d)
    res = Residualiser(W)
    yt = res.resid(d.y)
    Q = res.Q
    q = Q.shape[1]
    M = np.ascontiguousarray(np.column_stack([Q, yt, np.ones(len(yt))]).astype(dtype))
    n_draws = draws.shape[0]
    out = {c: np.empty(n_draws) for c in CONTRASTS}
    for a in range(0, n_draws, chunk):
        Dc = draws[a : a + chunk]
        B = Dc.shape[0]
        R = [((Dc == k).astype(dtype) @ M).astype(np.float64) for k in (1, 2, 3)]  # each B × (q + 2)
        P = [r[:, :q] for r in R]
        u = [r[:, q] for r in R]  # Z_k'ỹ
        s = [np.round(r[:, q + 1]) for r in R]  # Z_k'Z_k = counts (disjoint cells), exact
        # Gram of cells (disjoint indicators: off-diagonal Z_j'Z_k = 0)
        G = np.empty((B, 3, 3))
        for j in range(3):
            for k in range(j, 3):
                g = -np.einsum("bi,bi->b", P[j], P[k])
                if j == k:
                    g = g + s[j]
                G[:, j, k] = g
                G[:, k, j] = g
        U = np.stack(u, axis=1)
        beta = np.linalg.solve(G, U[..., None])[..., 0]  # B × 3 (cell contrasts)
        out["cell:frame_only/teaming"][a : a + B] = beta[:, 0]
        out["cell:frame_shares/no_teaming"][a : a + B] = beta[:, 1]
        out["cell:frame_shares/teaming"][a : a + B] = beta[:, 2]
        out[CONTRAST_INTERACTION][a : a + B] = beta[:, 2] - beta[:, 0] - beta[:, 1]
        # main-effects model: F = D2 + D3, T = D1 + D3
        PF, PT = P[1] + P[2], P[0] + P[2]
        sF, sT, sFT = s[1] + s[2], s[0] + s[2], s[2]
        a11 = sF - np.einsum("bi,bi->b", PF, PF)
        a22 = sT - np.einsum("bi,bi->b", PT, PT)
        a12 = sFT - np.einsum("bi,bi->b", PF, PT)
        uF, uT = u[1] + u[2], u[0] + u[2]
        det = a11 * a22 - a12**2
        out["frame_shares"][a : a + B] = (a22 * uF - a12 * uT) / det
        out["teaming"][a : a + B] = (a11 * uT - a12 * uF) / det
    return out


def ri_pvalue(observed: float, null: np.ndarray) -> float:
    """Two-sided RI p-value ``(1 + #{|β_d| ≥ |β_obs|}) / (1 + D)``.

    Notes
    -----
    Counting the observed assignment among the draws keeps the test exact (valid at every
    level) for a finite number of draws (Phipson & Smyth 2010). Null estimates within a
    relative :data:`RI_TIE_TOL` (1e-4) of the observed one count as ties (at least as
    extreme): rounding, or the single-precision products of :func:`ri_factorial`, cannot
    make the test anti-conservative; the price is at most the null mass within 0.01 % of the
    observed value.
    """
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or len(null) == 0:
        return np.nan
    thr = abs(observed) * (1 - RI_TIE_TOL)
    return float((1 + np.sum(np.abs(null) >= thr)) / (1 + len(null)))


def ri_observed(d: FactorialData, precision: str = "float64") -> dict[str, float]:
    """The estimates of :func:`ri_factorial` for the observed assignment (a check)."""
    return {k: float(v[0]) for k, v in ri_factorial(d, d.cell[None, :], precision=precision).items()}


# ---------------------------------------------------------------------------- multiplicity
def holm(p: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values (NaN stays NaN).

    Notes
    -----
    With ``p_(1) ≤ … ≤ p_(m)``: ``p̃_(i) = max_{j≤i} min(1, (m − j + 1) p_(j))``.
    """
    pv = np.asarray(p, dtype=float)
    out = np.full(pv.shape, np.nan)
    ok = np.isfinite(pv)
    q = pv[ok]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adj = np.minimum(1.0, (m - np.arange(m)) * q[order])
    adj = np.maximum.accumulate(adj)
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def westfall_young(observed: Sequence[float], null: np.ndarray) -> np.ndarray:
    """Westfall–Young step-down max-T adjusted p-values from joint null draws.

    Parameters
    ----------
    observed : (m,) observed estimates
    null : (D, m) estimates under re-randomisation, one column per hypothesis, the same
        draw in every row

    Notes
    -----
    Statistics are standardised by each hypothesis' null SD, ``t_j = |β_j| / sd_j``. With
    hypotheses ordered ``t_(1) ≥ … ≥ t_(m)``, ``p̃_(i) = (1 + #{d: max_{j≥i} t_{d,(j)} ≥
    t_(i)}) / (1 + D)``, made monotone by a running maximum (Westfall & Young 1993,
    Algorithm 2.8; Romano & Wolf 2005, 2016). NaN hypotheses are left out.
    """
    obs = np.asarray(observed, dtype=float)
    null = np.asarray(null, dtype=float)
    out = np.full(obs.shape, np.nan)
    ok = np.isfinite(obs) & np.all(np.isfinite(null), axis=0)
    if not ok.any():
        return out
    nb = null[:, ok]
    sd = nb.std(axis=0, ddof=1)
    sd[sd == 0] = np.inf
    t_obs = np.abs(obs[ok]) / sd
    t_null = np.abs(nb) / sd
    order = np.argsort(-t_obs, kind="stable")
    t_sorted = t_obs[order]
    n_sorted = t_null[:, order]
    # successive maxima from the least significant upwards
    succ_max = np.maximum.accumulate(n_sorted[:, ::-1], axis=1)[:, ::-1]
    D = null.shape[0]
    p = (1 + (succ_max >= t_sorted[None, :] * (1 - RI_TIE_TOL)).sum(axis=0)) / (1 + D)
    p = np.maximum.accumulate(p)
    res = np.empty(len(p))
    res[order] = p
    out[ok] = res
    return out


def adjust_family(table: pd.DataFrame, null: dict[tuple[str, str], np.ndarray], by: Sequence[str] = ("family", "contrast", "method")) -> pd.DataFrame:
    """Add ``p_value_holm`` and ``p_value_wy`` within groups of ``table``.

    ``null`` maps ``(outcome, contrast)`` to that estimate's RI draws (the same draws for
    every outcome); rows without draws get Holm only.
    """
    out = table.copy()
    out["p_value_holm"] = np.nan
    out["p_value_wy"] = np.nan
    for _, idx in out.groupby(list(by), sort=True, dropna=False).groups.items():
        sub = out.loc[idx]
        out.loc[idx, "p_value_holm"] = holm(sub["p_value"].to_numpy(dtype=float))
        keys = list(zip(sub["outcome"], sub["contrast"]))
        if all(k in null for k in keys) and len(keys):
            lens = {len(null[k]) for k in keys}
            if len(lens) == 1:
                M = np.column_stack([null[k] for k in keys])
                out.loc[idx, "p_value_wy"] = westfall_young(sub["estimate"].to_numpy(dtype=float), M)
    return out
