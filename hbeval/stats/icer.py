"""Kernels of the cost-effectiveness analysis: the ICER and its quadrant, Fieller's and the
bootstrap intervals of a ratio, and OLS refitted on within-arm bootstrap samples.

:mod:`hbeval.economics.cea` applies them to the families of a study.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hbeval.stats.bootstrap import BOOT_CHUNK_BYTES, arm_members, block_matmul, bootstrap_counts
from hbeval.stats.dist import norm_cdf, norm_ppf
from hbeval.stats.ri import blas_single_thread


def fieller_interval(delta_cost: float, delta_effect: float, var_cost: float, var_effect: float, cov: float,
                     level: float = 0.95) -> tuple[float, float, str]:
    """Fieller's confidence interval of the ratio ``R = ΔC / ΔE``.

    Returns
    -------
    ``(low, high, note)``; ``low``/``high`` are NaN when the set is unbounded.

    Notes
    -----
    The interval is the set of ``R`` with ``(ΔC − R ΔE)² ≤ z² (v_C − 2 R c + R² v_E)``, the
    roots of ``a R² − 2 b R + c₀ = 0`` with ``a = ΔE² − z² v_E``, ``b = ΔE ΔC − z² c`` and
    ``c₀ = ΔC² − z² v_C``:

    .. math:: R_{\\pm} = \\frac{b \\pm \\sqrt{b^2 - a c_0}}{a}.

    It is bounded only when ``a > 0``, i.e. ``ΔE`` is significantly different from zero at
    the chosen level (Fieller 1954; Willan & O'Brien 1996, Health Econ 5:297).
    """
    z = norm_ppf(0.5 + level / 2)
    a = delta_effect**2 - z**2 * var_effect
    b = delta_effect * delta_cost - z**2 * cov
    c0 = delta_cost**2 - z**2 * var_cost
    disc = b * b - a * c0
    if a <= 0:
        if disc < 0:
            return math.nan, math.nan, "Fieller: unbounded (the whole real line): ΔE not significantly different from 0"
        return math.nan, math.nan, "Fieller: unbounded (two disjoint rays): ΔE not significantly different from 0"
    r = math.sqrt(max(disc, 0.0))
    return (b - r) / a, (b + r) / a, ""


def quadrant(delta_cost: float, delta_effect: float) -> str:
    """CE-plane quadrant: ``NE`` (more effective, costlier), ``SE`` (dominant), ``NW``
    (dominated), ``SW`` (less effective, cheaper) or ``none`` when ``ΔE = 0``."""
    if delta_effect > 0:
        return "NE" if delta_cost > 0 else "SE"
    if delta_effect < 0:
        return "NW" if delta_cost >= 0 else "SW"
    return "none"


def icer_point(delta_cost: float, delta_effect: float) -> tuple[float, str]:
    """``(icer, note)``; ``icer`` is NaN for a dominant, dominated or undefined ICER."""
    q = quadrant(delta_cost, delta_effect)
    if q == "NE":
        return delta_cost / delta_effect, "NE: extra € per extra point of the outcome"
    if q == "SW":
        return delta_cost / delta_effect, "SW: € saved per point of the outcome lost"
    if q == "SE":
        return math.nan, "dominant: more effective and not more costly (ICER not reported)"
    if q == "NW":
        return math.nan, "dominated: less effective and not less costly (ICER not reported)"
    return math.nan, "undefined: ΔE = 0"


def _wrap(x: np.ndarray) -> np.ndarray:
    return (x + np.pi) % (2 * np.pi) - np.pi


def _angle_interval(center: float, lo_d: float, hi_d: float) -> tuple[float, float, str]:
    t_lo, t_hi = center + lo_d, center + hi_d
    k_lo = math.floor((t_lo - math.pi / 2) / math.pi)
    k_hi = math.floor((t_hi - math.pi / 2) / math.pi)
    if k_lo != k_hi:
        return math.nan, math.nan, "unbounded: the interval crosses ΔE = 0 (see the CEAC)"
    a, b = math.tan(t_lo), math.tan(t_hi)
    note = ""
    if (a < 0) != (b < 0) or (a < 0 and b < 0):
        note = "the interval reaches the dominant or dominated quadrant (negative ratios)"
    return min(a, b), max(a, b), note


def icer_bootstrap_ci(delta_cost: float, delta_effect: float, reps_cost: np.ndarray, reps_effect: np.ndarray,
                      level: float = 0.95, jack_cost: np.ndarray | None = None,
                      jack_effect: np.ndarray | None = None) -> dict[str, tuple[float, float, str]]:
    """Percentile and (with jackknife values) BCa intervals of the ICER on the angle scale.

    Notes
    -----
    ``d_b = wrap(atan2(ΔC_b, ΔE_b) − atan2(ΔC, ΔE))``; percentile bounds are the
    ``α/2, 1−α/2`` quantiles of ``d``; BCa (Efron 1987) moves them to
    ``Φ(z₀ + (z₀ + z_α)/(1 − â(z₀ + z_α)))`` with ``z₀ = Φ⁻¹(#{d_b < 0}/B)`` and the
    jackknife acceleration ``â = Σ(θ̄ − θ_i)³ / (6 [Σ(θ̄ − θ_i)²]^{3/2})``. The ratio is
    ``tan`` of the angle, so an angle interval that contains ``±π/2`` is unbounded.
    """
    c = math.atan2(delta_cost, delta_effect)
    d = _wrap(np.arctan2(reps_cost, reps_effect) - c)
    alpha = 1 - level
    out = {"bootstrap_percentile": _angle_interval(c, *np.quantile(d, [alpha / 2, 1 - alpha / 2]))}
    if jack_cost is not None and jack_effect is not None:
        p0 = np.mean(d < 0) + 0.5 * np.mean(d == 0)
        p0 = min(max(p0, 1 / (len(d) + 1)), 1 - 1 / (len(d) + 1))
        z0 = norm_ppf(p0)
        th = _wrap(np.arctan2(jack_cost, jack_effect) - c)
        th = th[np.isfinite(th)]
        acc = 0.0  # no acceleration when the jackknife values have no spread (or none is finite)
        if th.size:
            u = th.mean() - th
            den = 6 * (np.sum(u**2) ** 1.5)
            acc = float(np.sum(u**3) / den) if den > 0 else 0.0
        qs = []
        for za in (norm_ppf(alpha / 2), norm_ppf(1 - alpha / 2)):
            qs.append(norm_cdf(z0 + (z0 + za) / (1 - acc * (z0 + za))))
        out["bootstrap_bca"] = _angle_interval(c, *np.quantile(d, qs))
    return out


def bootstrap_ols(designs: list[np.ndarray], ys: list[np.ndarray], arms: np.ndarray, n_reps: int,
                  rng: np.random.Generator, groups: np.ndarray | None = None,
                  max_bytes: float = BOOT_CHUNK_BYTES) -> list[np.ndarray]:
    """Coefficients of OLS fits refitted on ``n_reps`` within-arm bootstrap samples.

    Parameters
    ----------
    designs, ys : pairs ``(X_k, y_k)`` on the same rows; every replicate resamples the rows
        once and refits every pair on that sample (so estimates of different models keep
        their joint distribution).
    arms : resampling strata (each keeps its size).
    groups : optional labels that split the arms further (e.g. the randomisation strata).
        Only speed depends on it: design columns constant within every arm × group cell
        (intercept, arm and stratum indicators) cost nothing per family.
    max_bytes : memory bound of the resampling counts held at once (no result depends on it).

    Returns
    -------
    list of ``(n_reps, p_k)`` arrays.

    Notes
    -----
    Replicate ``b`` solves ``(Σ_i w_bi x_i x_iᵀ) β = Σ_i w_bi x_i y_i`` for the resampling
    counts ``w_b`` of :func:`hbeval.stats.bootstrap.bootstrap_counts`. The rows are sorted into cells
    (arm × group); a column ``d`` constant within each cell enters only through the cell's
    resampled count ``Σ_{i∈k} w_bi``, a column ``u`` that varies through ``Σ_{i∈k} w_bi u_i``,
    and two varying columns through ``Σ_i w_bi u_i v_i``. So each replicate needs one small
    matrix product per cell with the columns ``[1, u…, u·v…]``, whatever the number of
    indicator columns; the normal equations are assembled from those sums and solved as a
    batch (pseudo-inverse for a replicate that loses a cell).
    """
    n = len(arms)
    members = arm_members(arms)[1]
    gcode = (np.zeros(n, dtype=np.intp) if groups is None
             else pd.factorize(np.asarray(groups, dtype=object), use_na_sentinel=False)[0])
    # rows sorted into cells: within each arm (in the engine's order) by group
    perms, segs, order = [], [], []  # per arm: local order; per cell: (arm, start, end)
    for g, idx in enumerate(members):
        perm = np.argsort(gcode[idx], kind="stable")
        rows = idx[perm]
        cut = np.flatnonzero(np.diff(gcode[rows])) + 1
        bounds = [0, *cut.tolist(), len(rows)]
        segs += [(g, s, e) for s, e in zip(bounds[:-1], bounds[1:])]
        perms.append(None if (perm == np.arange(len(perm))).all() else perm)
        order.append(rows)
    R = np.concatenate(order) if order else np.zeros(0, dtype=np.intp)
    offset = np.cumsum([0] + [len(i) for i in members])
    first = np.array([R[offset[g] + s] for g, s, _ in segs], dtype=np.intp)  # a row of each cell
    lengths = np.array([e - s for _, s, e in segs])
    # columns: constant within every cell (entering through the cell's count) or varying
    U: list[np.ndarray] = []  # distinct varying columns and outcomes, rows in the order R

    def u_index(v: np.ndarray) -> int:
        for j, u in enumerate(U):
            if np.array_equal(u, v):
                return j
        U.append(v)
        return len(U) - 1

    plans = []
    for X, y in zip(designs, ys):
        XR = X[R]
        const = np.array([np.array_equal(XR[:, j], np.repeat(X[first, j], lengths)) for j in range(X.shape[1])],
                         dtype=bool)
        dpos, cpos = np.flatnonzero(const), np.flatnonzero(~const)
        plans.append((dpos, cpos, [u_index(XR[:, j]) for j in cpos], u_index(np.asarray(y, dtype=float)[R])))
    pairs: dict[tuple[int, int], int] = {}
    for _, _, cu, yu in plans:
        for a in range(len(cu)):
            for b in range(a, len(cu)):
                pairs.setdefault((cu[a], cu[b]), len(pairs))
            pairs.setdefault((cu[a], yu), len(pairs))
    V = np.column_stack([np.ones(n), *U, *[U[a] * U[b] for a, b in pairs]])  # (n, J), order R
    J = V.shape[1]
    ones_k = np.ones((len(segs), 1))
    outs = [np.empty((n_reps, X.shape[1])) for X in designs]
    with blas_single_thread():  # skinny products: BLAS threads only add overhead
        for start, cnt in bootstrap_counts(arms, n_reps, rng, max_bytes, orders=perms):  # columns in cell order
            c = len(cnt[0])
            S = np.empty((J, c, len(segs)))  # S[j, b, k] = Σ_{i ∈ cell k} w_bi V_ij
            for k, (g, s, e) in enumerate(segs):
                S[:, :, k] = block_matmul(cnt[g][:, s:e], V[offset[g] + s : offset[g] + e]).T
            for (dpos, cpos, cu, yu), X, out in zip(plans, designs, outs):
                p = X.shape[1]
                Dk = X[first][:, dpos]
                M = np.empty((c, p, p))
                r = np.empty((c, p))
                M[:, dpos[:, None], dpos[None, :]] = block_matmul(
                    S[0], (Dk[:, :, None] * Dk[:, None, :]).reshape(len(segs), -1)).reshape(c, len(dpos), len(dpos))
                r[:, dpos] = block_matmul(S[1 + yu], Dk)
                for a, (ja, ua) in enumerate(zip(cpos, cu)):
                    M[:, dpos, ja] = M[:, ja, dpos] = block_matmul(S[1 + ua], Dk)
                    for jb, ub in zip(cpos[a:], cu[a:]):
                        M[:, ja, jb] = M[:, jb, ja] = block_matmul(S[1 + len(U) + pairs[(ua, ub)]], ones_k)[:, 0]
                    r[:, ja] = block_matmul(S[1 + len(U) + pairs[(ua, yu)]], ones_k)[:, 0]
                out[start : start + c] = _solve_batch(M, r)
    return outs


def _solve_batch(M: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solutions of ``M_b β = r_b``; a singular system (a replicate that lost a cell) by
    pseudo-inverse, each replicate on its own so that the result does not depend on the batch.

    Notes
    -----
    Each replicate gets what ``np.linalg.solve`` gives on it alone (a batch solves every matrix
    on its own, with the same bits), or, when that refuses it or is not finite, ``pinv(M_b) r_b``.
    Only the bookkeeping is batched: the replicates with ``det M_b = 0`` (LU met a zero pivot,
    which is when ``solve`` refuses) are set aside and the others solved as one batch (if it is
    still refused, every replicate is tried on its own); a matrix with a row of zeros is refused
    without trying (its row stays zero through the elimination, so the last pivot is 0); the
    pseudo-inverses are taken as one stack (each matrix's SVD on its own).
    """
    sol = np.empty_like(r)
    with np.errstate(all="ignore"):
        alone = np.linalg.det(M) == 0
    ok = np.flatnonzero(~alone)
    try:
        if len(ok):
            sol[ok] = np.linalg.solve(M[ok], r[ok, :, None])[:, :, 0]
            alone[ok[~np.isfinite(sol[ok]).all(axis=1)]] = True
    except np.linalg.LinAlgError:
        alone[:] = True
    zero_row = (M == 0).all(axis=2).any(axis=1)
    by_pinv = []
    for b in np.flatnonzero(alone):
        if not zero_row[b]:
            try:
                s = np.linalg.solve(M[b : b + 1], r[b : b + 1, :, None])[0, :, 0]
                if np.isfinite(s).all():
                    sol[b] = s
                    continue
            except np.linalg.LinAlgError:
                pass
        by_pinv.append(b)
    if by_pinv:
        P = np.linalg.pinv(M[by_pinv])
        for i, b in enumerate(by_pinv):
            sol[b] = P[i] @ r[b]
    return sol
