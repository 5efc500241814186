"""Randomisation inference for the factorial ANCOVA, and multiplicity adjustment.

Randomisation inference (RI) re-draws the assignment under the procedure that was actually
used and recomputes the estimate each time. It is vectorised by Frisch–Waugh–Lovell: the
covariates ``W`` (intercept, start score, stratum fixed effects) do not change between
draws, so with ``W = Q_W R_W`` and ``ỹ = M_W y`` computed once, the arm coefficients of a
draw with indicator matrix ``Z`` are

.. math:: \\hat\\beta = (Z'Z - (Q_W'Z)'(Q_W'Z))^{-1} Z'\\tilde y,

which for thousands of draws is a handful of matrix products and batched 2×2 / 3×3 solves.

Randomisation-inference confidence intervals (:func:`ri_ci`) invert the RI test over
constant additive effects: the same products with the observed arm indicators as extra
right-hand sides give every null statistic as a linear function of the hypothesised effect.

Exact RI: when the draws are every possible assignment (each once, equiprobable, the observed
one among them; :func:`hbeval.randomisation.redraw.enumerate_assignments`), ``exact=True``
makes :func:`ri_pvalue`, :func:`ri_ci` and :func:`westfall_young` use the plain proportion.

Multiplicity: Holm (1979) on the analytic p-values, and the Westfall–Young (1993) step-down
max-T procedure on the RI draws (which share one set of draws across the outcomes of a
family, so their joint null distribution is the re-randomisation distribution; under
subset pivotality this is the Romano–Wolf 2005 step-down).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
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
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - optional
            return contextlib.nullcontext()
        _CONTROLLER = ThreadpoolController()  # finding the libraries costs ~20 ms: once per process
    return _CONTROLLER.limit(limits=1, user_api="blas")


_CONTROLLER: Any = None


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
    model (the primary specification of :mod:`hbeval.outcomes.effects`). A draw that leaves a
    cell empty, or aliased with the strata, among the families of ``d`` has no estimate: NaN
    (:func:`ri_pvalue` and :func:`westfall_young` leave such draws out).

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
        out = _ri_factorial(d, draws, chunk, np.float32 if precision == "float32" else np.float64)
    return {c: v[:, 0] for c, v in out.items()}


def _ri_factorial(d: FactorialData, draws: np.ndarray, chunk: int, dtype: type[np.floating[Any]],
                  extra: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per contrast ``(n_draws, 1 + m)``: each draw's estimate on ``y`` and, as if they were
    the outcome, on the ``m`` columns of ``extra`` (``(n, m)``, residualised here).

    Memory stays ``chunk × n`` for the indicators and ``O(n_draws × m)`` for the rest. The
    products and the Gram entries go chunk by chunk, as first written; the per-draw 3 × 3
    solves (and their singularity test) and the 2 × 2 formulas, one draw at a time whatever
    the batch, run once on all draws: the same bits, without a batched LAPACK call per chunk.
    """
    W, _ = _covariates(d)
    res = Residualiser(W)
    yt = res.resid(d.y)
    Q = res.Q
    q = Q.shape[1]
    rhs = [yt] if extra is None else [yt, res.resid(np.asarray(extra, dtype=float))]
    M = np.ascontiguousarray(np.column_stack([Q, *rhs, np.ones(len(yt))]).astype(dtype))
    m1 = M.shape[1] - q - 1  # right-hand sides: ỹ and the extra columns
    n_draws = draws.shape[0]
    G = np.empty((n_draws, 3, 3))  # Gram of cells per draw
    U = np.empty((n_draws, 3, m1))
    a11, a22, a12 = np.empty(n_draws), np.empty(n_draws), np.empty(n_draws)  # main-effects Gram
    for a in range(0, n_draws, chunk):
        Dc = draws[a : a + chunk]
        B = Dc.shape[0]
        R = [((Dc == k).astype(dtype) @ M).astype(np.float64) for k in (1, 2, 3)]  # each B × (q + m1 + 1)
        P = [r[:, :q] for r in R]
        u = [r[:, q : q + m1] for r in R]  # Z_k'ỹ (and Z_k' of the extra columns)
        s = [np.round(r[:, -1]) for r in R]  # Z_k'Z_k = counts (disjoint cells), exact
        # Gram of cells (disjoint indicators: off-diagonal Z_j'Z_k = 0)
        for j in range(3):
            for k in range(j, 3):
                g = -np.einsum("bi,bi->b", P[j], P[k])
                if j == k:
                    g = g + s[j]
                G[a : a + B, j, k] = g
                G[a : a + B, k, j] = g
        U[a : a + B] = np.stack(u, axis=1)
        # main-effects model: F = D2 + D3, T = D1 + D3
        PF, PT = P[1] + P[2], P[0] + P[2]
        sF, sT, sFT = s[1] + s[2], s[0] + s[2], s[2]
        a11[a : a + B] = sF - np.einsum("bi,bi->b", PF, PF)
        a22[a : a + B] = sT - np.einsum("bi,bi->b", PT, PT)
        a12[a : a + B] = sFT - np.einsum("bi,bi->b", PF, PT)
    beta = _solve_or_nan(G, U)  # n_draws × 3 × m1 (cell contrasts); NaN where a draw leaves a cell not estimable
    out = {"cell:frame_only/teaming": beta[:, 0].copy(), "cell:frame_shares/no_teaming": beta[:, 1].copy(),
           "cell:frame_shares/teaming": beta[:, 2].copy(), CONTRAST_INTERACTION: beta[:, 2] - beta[:, 0] - beta[:, 1]}
    uF, uT = U[:, 1] + U[:, 2], U[:, 0] + U[:, 2]
    det = a11 * a22 - a12**2
    det = np.where(_singular_2x2(a11, a22, det), np.nan, det)[:, None]
    out["frame_shares"] = (a22[:, None] * uF - a12[:, None] * uT) / det
    out["teaming"] = (a11[:, None] * uT - a12[:, None] * uF) / det
    return {c: out[c] for c in CONTRASTS}


#: a draw's Gram matrix of the arm indicators (after the covariates) is singular when a diagonal
#: entry (the indicator's residual sum of squares) is below this, or its determinant below
#: :data:`SINGULAR_REL_DET` of the product of the diagonal: a cell is empty among the analysed
#: families, or aliased with the strata. Such a draw has no estimate (NaN).
SINGULAR_DIAG = 1e-4
SINGULAR_REL_DET = 1e-10


def _singular_2x2(a11: np.ndarray, a22: np.ndarray, det: np.ndarray) -> np.ndarray:
    """Which ``[[a11, a12], [a12, a22]]`` Gram matrices are singular (see :data:`SINGULAR_DIAG`)."""
    small = (a11 < SINGULAR_DIAG) | (a22 < SINGULAR_DIAG)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = det / np.where(small, 1.0, a11 * a22)
    out: np.ndarray = small | (rel < SINGULAR_REL_DET)
    return out


#: closed-form ``det(G) / Π diag(G)`` at least this: the Gram matrix is regular (see :func:`_solve_or_nan`)
_DET_SURE = 1e-4


def _det3_rel_above(G: np.ndarray, denom: np.ndarray, level: float) -> np.ndarray:
    """Where ``det(G_b) / denom_b ≥ level`` by the closed form of a symmetric 3 × 3
    determinant (False where it is not finite)."""
    a, b, c = G[:, 0, 0], G[:, 1, 1], G[:, 2, 2]
    x, y, z = G[:, 0, 1], G[:, 0, 2], G[:, 1, 2]
    det = a * (b * c - z * z) - x * (x * c - z * y) + y * (x * z - b * y)
    with np.errstate(invalid="ignore"):
        out: np.ndarray = det / denom >= level
    return out


def _solve_or_nan(G: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Batched ``G_b β_b = U_b``; ``β_b`` is NaN where ``G_b`` is singular (see :data:`SINGULAR_DIAG`).

    The regular draws are solved exactly as by ``np.linalg.solve`` on the whole batch.

    Notes
    -----
    The test ``det(G) / Π diag(G) < SINGULAR_REL_DET`` is LAPACK's determinant (LU) only
    where the closed form (symmetric 3 × 3, :func:`_det3_rel_above`) cannot decide it: a
    draw is regular for sure when the closed-form ratio is at least :data:`_DET_SURE`. For a
    positive semi-definite ``G`` every cofactor product is at most ``Π diag``, so the rounding
    error of either ratio is of order ``eps · n / SINGULAR_DIAG`` (``n`` families; about 1e-8
    at n = 1000), far below the gap from ``_DET_SURE`` to :data:`SINGULAR_REL_DET`: ``bad``
    is the same as with LAPACK's determinant on every draw, at a tenth of the cost
    (``tests/stats/test_fast_paths.py`` checks it)."""
    diag = np.einsum("bii->bi", G)
    small = diag < SINGULAR_DIAG
    denom = np.prod(np.where(small, 1.0, diag), axis=1)
    bad = small.any(axis=1)
    unsure = ~(bad | _det3_rel_above(G, denom, _DET_SURE)) if G.shape[1:] == (3, 3) else ~bad
    if unsure.any():
        bad[unsure] = np.linalg.det(G[unsure]) / denom[unsure] < SINGULAR_REL_DET
    if not bad.any():
        out: np.ndarray = np.linalg.solve(G, U)
        return out
    G = G.copy()
    G[bad] = np.eye(G.shape[1])
    out = np.linalg.solve(G, U)
    out[bad] = np.nan
    return out


def ri_pvalue(observed: float, null: np.ndarray, exact: bool = False) -> float:
    """Two-sided RI p-value ``(1 + #{|β_d| ≥ |β_obs|}) / (1 + D)``.

    With ``exact=True`` (``null`` holds every possible assignment once, the observed one
    among them, all equiprobable) the exact p-value ``#{|β_d| ≥ |β_obs|} / D``.

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
    hits = int(np.sum(np.abs(null) >= thr))
    return float(hits / len(null)) if exact else float((1 + hits) / (1 + len(null)))


def ri_observed(d: FactorialData, precision: str = "float64") -> dict[str, float]:
    """The estimates of :func:`ri_factorial` for the observed assignment (a check)."""
    return {k: float(v[0]) for k, v in ri_factorial(d, d.cell[None, :], precision=precision).items()}


# ---------------------------------------------------------------------------- RI intervals
#: the coefficient each contrast's hypothesised effect moves, in its model's parametrisation:
#: main-effects model ``(frame_shares, teaming)``; interaction model by cells ``(c1, c2, c3)``
_CI_MODEL: dict[str, tuple[str, np.ndarray, np.ndarray]] = {
    # contrast: (model, contrast weights k, direction v with k'v = 1)
    "frame_shares": ("main", np.array([1.0, 0.0]), np.array([1.0, 0.0])),
    "teaming": ("main", np.array([0.0, 1.0]), np.array([0.0, 1.0])),
    CONTRAST_INTERACTION: ("cells", np.array([-1.0, -1.0, 1.0]), np.array([0.0, 0.0, 1.0])),
    "cell:frame_only/teaming": ("cells", np.array([1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])),
    "cell:frame_shares/no_teaming": ("cells", np.array([0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0])),
    "cell:frame_shares/teaming": ("cells", np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0])),
}
_BISECT = 64
_EXPAND = 60
_RECLASSIFY = 4  # bisection steps (the bracket shrinks 16-fold) between settling the draws that can no longer change
_FEW = 64  # draws left in a bound's search below which they are counted as Python floats (:class:`_Counter`)
_NO_OVERFLOW = 1e300  # |a_d| and |b_d τ| below this: a_d + b_d τ is finite


@dataclass(frozen=True)
class RIInversion:
    """The RI test of one contrast as a function of the hypothesised constant effect ``τ``:
    the null statistic of draw ``d`` is ``a_d + b_d τ``, the observed one ``estimate − τ``."""

    estimate: float
    a: np.ndarray
    b: np.ndarray
    exact: bool

    def pvalue(self, tau: float) -> float:
        """RI p-value of ``H0: effect = τ`` (:func:`ri_pvalue` on the shifted statistics)."""
        return ri_pvalue(self.estimate - tau, self.a + self.b * tau, self.exact)

    def bound(self, sign: int, alpha: float) -> float:
        """The ``sign`` (−1 lower, +1 upper) end of ``{τ : p(τ) > α}`` found by doubling steps
        away from the estimate, then bisection; ``±inf`` when no ``τ`` is rejected.

        Notes
        -----
        Every p-value of the search is :meth:`pvalue`'s, bit for bit, but counted faster: the
        draws whose statistic is not finite are set aside once (they are for every finite
        ``τ``), and the bisection re-counts only the draws whose comparison can still change
        inside its bracket (:class:`_Counter`).
        """
        scale = float(np.std(self.a)) or abs(self.estimate) or 1.0
        count = _Counter(self)
        inside, step = self.estimate, scale
        for _ in range(_EXPAND):
            out = self.estimate + sign * step
            if count.pvalue(out) <= alpha:
                break
            inside, step = out, 2 * step
        else:
            return sign * np.inf
        for _ in range(_BISECT):
            mid = 0.5 * (inside + out)
            if mid in (inside, out):
                break
            count.settle(min(inside, out), max(inside, out))
            if count.pvalue(mid) <= alpha:
                out = mid
            else:
                inside = mid
        return 0.5 * (inside + out)


class _Counter:
    """:meth:`RIInversion.pvalue` for the search of :meth:`RIInversion.bound`, the same bits.

    Notes
    -----
    A draw with ``a_d`` or ``b_d`` not finite has no finite statistic at a finite ``τ``
    (``pvalue`` leaves it out); the others are finite while ``|τ|`` stays below
    :data:`_NO_OVERFLOW` ``/ max|b|`` (beyond, or with the estimate not finite, the count is
    :meth:`RIInversion.pvalue` itself). :meth:`settle` takes a bracket ``[lo, hi]`` that holds
    every later ``τ``. On it, the computed ``x_d(τ) = fl(a_d + fl(b_d τ))`` and
    ``thr(τ) = fl(|fl(estimate − τ)| (1 − tol))`` are monotone in ``τ`` (rounding is), so
    ``|x_d(τ)|`` and ``thr(τ)`` lie between their values at the ends (``|x_d|`` down to 0 when
    ``x_d`` changes sign, ``thr`` down to 0 when the bracket holds the estimate). A draw whose
    smallest ``|x_d|`` is at least the largest ``thr`` is a hit at every ``τ`` of the bracket, one
    whose largest ``|x_d|`` is below the smallest ``thr`` never is: both are settled and counted
    once. The others are compared at each ``τ`` as :func:`ri_pvalue` compares them. A bound
    then costs about two ``O(D)`` counts instead of about 60. Once at most :data:`_FEW` draws
    are left, they are compared as Python floats (the same IEEE double operations, each
    rounded as numpy rounds them), which spares the bisection's last ~50 steps a handful of
    numpy calls each.
    """

    def __init__(self, inv: RIInversion):
        self.inv = inv
        fin = np.isfinite(inv.a) & np.isfinite(inv.b)
        self.a, self.b = inv.a[fin], inv.b[fin]
        self.n = len(self.a)
        self.hits = 0  # hits among the settled draws
        self.limit = _NO_OVERFLOW / max(float(np.max(np.abs(self.b))) if self.n else 0.0, 1.0)
        self.fast = (self.n > 0 and np.isfinite(inv.estimate) and float(np.max(np.abs(self.a))) < _NO_OVERFLOW)
        self.since = _RECLASSIFY
        self.few: list[tuple[float, float]] | None = None  # the draws left, as floats, once at most _FEW

    def pvalue(self, tau: float) -> float:
        if not (self.fast and abs(tau) < self.limit):
            return self.inv.pvalue(tau)
        thr = abs(self.inv.estimate - tau) * (1 - RI_TIE_TOL)
        if self.few is not None:
            hits = self.hits + sum(abs(a + b * tau) >= thr for a, b in self.few)
        else:
            hits = self.hits + int(np.count_nonzero(np.abs(self.a + self.b * tau) >= thr))
        return float(hits / self.n) if self.inv.exact else float((1 + hits) / (1 + self.n))

    def settle(self, lo: float, hi: float) -> None:
        """Count once, and stop comparing, the draws whose comparison cannot change on ``[lo, hi]``
        (every :data:`_RECLASSIFY` calls: the bracket has shrunk enough to settle more)."""
        self.since += 1
        left = len(self.a) if self.few is None else len(self.few)
        if self.since < _RECLASSIFY or not left or not (self.fast and max(abs(lo), abs(hi)) < self.limit):
            return
        self.since = 0
        a, b, est, c = self.a, self.b, self.inv.estimate, 1 - RI_TIE_TOL
        vl, vh = est - lo, est - hi
        tl, th = abs(vl) * c, abs(vh) * c
        t_max = max(tl, th)
        t_min = min(tl, th) if (vl >= 0 and vh >= 0) or (vl <= 0 and vh <= 0) else 0.0
        if self.few is not None:  # the same tests, on floats
            keep_few = []
            for ad, bd in self.few:
                fl, fh = ad + bd * lo, ad + bd * hi
                gl, gh = abs(fl), abs(fh)
                if ((fl >= 0 and fh >= 0) or (fl <= 0 and fh <= 0)) and min(gl, gh) >= t_max:
                    self.hits += 1
                elif max(gl, gh) >= t_min:
                    keep_few.append((ad, bd))
            self.few = keep_few
            return
        xl, xh = a + b * lo, a + b * hi
        al, ah = np.abs(xl), np.abs(xh)
        hit = (((xl >= 0) & (xh >= 0)) | ((xl <= 0) & (xh <= 0))) & (np.minimum(al, ah) >= t_max)
        keep = ~hit & (np.maximum(al, ah) >= t_min)
        self.hits += int(np.count_nonzero(hit))
        self.a, self.b = a[keep], b[keep]
        if len(self.a) <= _FEW:
            self.few = list(zip(self.a.tolist(), self.b.tolist()))


def ri_inversions(d: FactorialData, draws: np.ndarray, exact: bool = False, chunk: int = _CHUNK,
                  precision: str = "float32") -> dict[str, RIInversion]:
    """The RI test of every contrast as a linear function of a hypothesised constant effect.

    Parameters
    ----------
    d : the analysis sample
    draws : ``(D, d.n)`` cell codes, as :func:`ri_factorial`
    exact : the draws are the full enumeration (:func:`ri_pvalue`)
    chunk, precision : as :func:`ri_factorial`

    Returns
    -------
    dict contrast → :class:`RIInversion`.

    Notes
    -----
    Model of constant additive effects: ``Y_i(z) = Y_i(0) + x(z_i)'β`` for every family, with
    ``x`` the arm regressors of the contrast's model (``(F, T)`` for the margins, the three
    cell indicators for the interaction and the cell contrasts) and the contrast ``k'β``. The
    hypothesis ``k'β = τ`` fixes the nuisance directions at their estimates,
    ``β(τ) = β̂ + (τ − k'β̂) v`` with ``v`` the contrast's own coefficient (``k'v = 1``), which
    makes it sharp: the outcome under draw ``d`` is ``Y − X_{obs}β(τ) + X_dβ(τ)``, and, since
    the draw's estimator ``A_d = (X_d'M_W X_d)^{-1}X_d'M_W`` reproduces ``X_dβ(τ)`` exactly,
    its statistic (estimate − τ) is

    .. math:: t_d(τ) = k'A_d Y − k'A_d X_{obs} β(τ) = a_d + b_d τ,

    ``a_d = k'A_dY − h_d'(β̂ − (k'β̂)v)``, ``b_d = −h_d'v``, ``h_d = (k'A_dX_{obs})'``. The
    ``1 + dim β`` right-hand sides ``(Y, X_{obs})`` go through one pass of the
    :func:`ri_factorial` products, so every τ afterwards costs ``O(D)``. For the observed
    assignment ``a = k'β̂``, ``b = −1``: ``t_{obs}(τ) = k'β̂ − τ``. The statistic is the
    unstudentised estimate, as for ``p_value_ri``; under the sharp hypothesis the test is exact
    whatever the heteroskedasticity (the ``Y_i(0)`` are fixed), but the plug-in of the nuisance
    effects makes the interval approximate when they are far from their estimates, and effects
    that vary between families are outside the model.
    """
    C = np.column_stack([(d.cell == k).astype(float) for k in (1, 2, 3)])
    with blas_single_thread():
        out = _ri_factorial(d, draws, chunk, np.float32 if precision == "float32" else np.float64, extra=C)
        obs = _ri_factorial(d, d.cell[None, :], chunk, np.float64)
    gamma = np.array([obs[c][0, 0] for c in ("cell:frame_only/teaming", "cell:frame_shares/no_teaming", "cell:frame_shares/teaming")])
    beta_main = np.array([obs["frame_shares"][0, 0], obs["teaming"][0, 0]])
    res = {}
    for c, (model, k, v) in _CI_MODEL.items():
        o = out[c]
        if model == "main":  # F = C2 + C3, T = C1 + C3
            h, beta = np.column_stack([o[:, 2] + o[:, 3], o[:, 1] + o[:, 3]]), beta_main
        else:
            h, beta = o[:, 1:4], gamma
        est = float(k @ beta)
        res[c] = RIInversion(estimate=est, a=o[:, 0] - h @ (beta - est * v), b=-(h @ v), exact=exact)
    return res


def ri_ci(d: FactorialData, draws: np.ndarray, exact: bool = False, level: float = 0.95, chunk: int = _CHUNK,
          precision: str = "float32") -> dict[str, tuple[float, float]]:
    """Randomisation-inference confidence interval of every contrast by test inversion.

    Returns
    -------
    dict contrast → ``(low, high)``: the constant effects ``τ`` whose RI p-value
    (:meth:`RIInversion.pvalue`) exceeds ``1 − level``, from the estimate out to where the
    p-value first falls to ``1 − level`` on each side (``±inf`` if it never does, e.g. when
    fewer than ``1/(1 − level)`` assignments exist).

    Notes
    -----
    See :func:`ri_inversions` for the model and the construction. The bounds are found by
    doubling steps (from the SD of the null estimates) and 64 bisections on the stepwise
    p-value, each an ``O(D)`` count, so an interval costs about one more RI pass.
    """
    alpha = 1 - level
    return {c: (inv.bound(-1, alpha), inv.bound(+1, alpha))
            for c, inv in ri_inversions(d, draws, exact, chunk, precision).items()}


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


def westfall_young(observed: Sequence[float], null: np.ndarray, exact: bool = False) -> np.ndarray:
    """Westfall–Young step-down max-T adjusted p-values from joint null draws.

    Parameters
    ----------
    observed : (m,) observed estimates
    null : (D, m) estimates under re-randomisation, one column per hypothesis, the same
        draw in every row
    exact : the rows are every possible assignment (observed included): ``#{…} / D``

    Notes
    -----
    Statistics are standardised by each hypothesis' null SD, ``t_j = |β_j| / sd_j``. With
    hypotheses ordered ``t_(1) ≥ … ≥ t_(m)``, ``p̃_(i) = (1 + #{d: max_{j≥i} t_{d,(j)} ≥
    t_(i)}) / (1 + D)``, made monotone by a running maximum (Westfall & Young 1993,
    Algorithm 2.8; Romano & Wolf 2005, 2016). NaN hypotheses are left out, and so are the
    draws in which an estimate of another hypothesis does not exist (NaN).
    """
    obs = np.asarray(observed, dtype=float)
    null = np.asarray(null, dtype=float)
    out = np.full(obs.shape, np.nan)
    # draws in which an estimate does not exist (a cell empty or aliased with the strata) are left out
    null = null[np.all(np.isfinite(null[:, np.isfinite(obs)]), axis=1)]
    ok = np.isfinite(obs) & np.all(np.isfinite(null), axis=0)
    if not ok.any() or null.shape[0] < 2:
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
    hits = (succ_max >= t_sorted[None, :] * (1 - RI_TIE_TOL)).sum(axis=0)
    p = hits / D if exact else (1 + hits) / (1 + D)
    p = np.maximum.accumulate(p)
    res = np.empty(len(p))
    res[order] = p
    out[ok] = res
    return out


def adjust_family(table: pd.DataFrame, null: dict[tuple[str, str], np.ndarray], by: Sequence[str] = ("family", "contrast", "method"),
                  exact: bool = False) -> pd.DataFrame:
    """Add ``p_value_holm`` and ``p_value_wy`` within groups of ``table``.

    ``null`` maps ``(outcome, contrast)`` to that estimate's RI draws (the same draws for
    every outcome); rows without draws get Holm only. ``exact``: the draws are the full
    enumeration (:func:`westfall_young`).
    """
    out = table.copy()
    p_value, estimate = out["p_value"].to_numpy(dtype=float), out["estimate"].to_numpy(dtype=float)
    outcome, contrast = out["outcome"].to_numpy(dtype=object), out["contrast"].to_numpy(dtype=object)
    p_holm, p_wy = np.full(len(out), np.nan), np.full(len(out), np.nan)
    for pos in out.groupby(list(by), sort=True, dropna=False).indices.values():  # row positions, in table order
        p_holm[pos] = holm(p_value[pos])
        keys = list(zip(outcome[pos], contrast[pos]))
        if all(k in null for k in keys) and len(keys):
            lens = {len(null[k]) for k in keys}
            if len(lens) == 1:
                M = np.column_stack([null[k] for k in keys])
                p_wy[pos] = westfall_young(estimate[pos], M, exact=exact)
    out["p_value_holm"] = p_holm
    out["p_value_wy"] = p_wy
    return out
