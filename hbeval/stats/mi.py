"""Multiple imputation by chained equations, Rubin's rules and the delta-adjusted tipping point.

Pure kernels: arrays in, typed results out, randomness from a :class:`numpy.random.Generator`
the caller passes in (so the same generator state gives byte-identical imputations).

* :func:`mice` — chained equations (van Buuren & Groothuis-Oudshoorn 2011, R's ``mice``) for a
  few incomplete continuous columns ``Y`` given complete predictors ``X``: each incomplete column
  in turn is imputed from ``X`` and the current values of the other columns of ``Y``, by a
  Bayesian linear-regression draw (``norm``) or predictive mean matching (``pmm``). The ``m``
  chains run side by side as one batch of arrays (observed rows are selected by 0/1 weights, so
  every chain has the same shapes).
* :func:`ancova_contrast` — one linear contrast of an OLS fit in each completed data set
  (HC2 or classical variance), batched over the imputations.
* :func:`rubin` — Rubin's rules with Barnard–Rubin degrees of freedom, as ``mice::pool``.
* :func:`pool_covariance` — Rubin's total covariance of a vector (e.g. ``(ΔC, ΔE)`` for Fieller).
* :func:`tipping_point` — the smallest shift of a monotone statistic's argument at which it
  crosses zero: an outward scan on a grid then Brent's method (deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from hbeval.stats.dist import t_ppf, t_sf
from hbeval.stats.ols import blocks

METHODS = ("norm", "pmm")
#: ridge added to ``X'X`` before the draw (mice's ``ridge`` default)
RIDGE = 1e-5


# ---------------------------------------------------------------------------- imputation
@dataclass(frozen=True)
class Imputations:
    """``m`` completed copies of the incomplete columns.

    Attributes
    ----------
    values : (m, n, k) completed ``Y`` (observed entries are the data, in every copy)
    missing : (n, k) which entries were imputed
    columns : names of the ``k`` columns
    method, iterations : the imputation method and the number of chained-equation sweeps
    """

    values: np.ndarray
    missing: np.ndarray
    columns: tuple[str, ...]
    method: str
    iterations: int

    @property
    def m(self) -> int:
        return int(self.values.shape[0])

    def column(self, name: str) -> np.ndarray:
        """(m, n) completed values of one column."""
        return self.values[:, :, self.columns.index(name)]

    def to_frame(self) -> pd.DataFrame:
        """Per column: ``column, n_missing, share_missing, mean_imputed, sd_between`` (the SD of
        the imputation means, a summary only: no row per unit)."""
        rows = []
        for j, c in enumerate(self.columns):
            mis = self.missing[:, j]
            k = int(mis.sum())
            means = self.values[:, mis, j].mean(axis=1) if k else np.full(self.m, np.nan)
            rows.append({"column": c, "n_missing": k, "share_missing": k / max(len(mis), 1),
                         "mean_imputed": float(np.mean(means)) if k else np.nan,
                         "sd_between": float(np.std(means, ddof=1)) if k and self.m > 1 else np.nan})
        return pd.DataFrame(rows)


#: bytes the batched work arrays of one block of imputations may take (the ``(b, n, q)``
#: designs and their weighted copies in :func:`mice`, the QR factors in :func:`ancova_fit`):
#: the imputations are processed ``b`` at a time, ``b`` chosen from ``n`` and ``q``
BLOCK_BYTES = 256 * 2**20
#: how many ``(n, q)`` float arrays one imputation keeps alive at once in a sweep of :func:`mice`
_ARRAYS_PER_IMPUTATION = 4


def imputation_block(m: int, n: int, q: int, budget: int = BLOCK_BYTES) -> int:
    """How many of ``m`` imputations to process at once so that their ``(n, q)`` work arrays
    stay within ``budget`` bytes (at least 1)."""
    per = _ARRAYS_PER_IMPUTATION * 8 * max(n, 1) * max(q, 1)
    return int(max(1, min(m, budget // per)))


def _draw_norm(A: np.ndarray, y: np.ndarray, w: np.ndarray, chi2: np.ndarray, z: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bayesian linear-regression draw (mice's ``.norm.draw``), batched over the first axis.

    ``A`` (b, n, p) design, ``y`` (b, n), ``w`` (n,) 0/1 weights of the observed rows, ``chi2``
    (b,) draws from χ² on n_obs − p df and ``z`` (b, p) standard normals (drawn by the caller for
    every imputation at once, so that the stream does not depend on the block size). Returns
    ``(beta_hat, beta_star, sigma_star)``: ``(b, p)``, ``(b, p)``, ``(b,)``.
    """
    p = A.shape[2]
    Awt = np.swapaxes(A * w[None, :, None], 1, 2)
    xtx = Awt @ A
    xtx = xtx + RIDGE * np.diagonal(xtx, axis1=1, axis2=2)[:, :, None] * np.eye(p)[None]
    L = np.linalg.cholesky(xtx)
    beta = np.linalg.solve(xtx, Awt @ y[..., None])[..., 0]
    del Awt
    resid = (y - (A @ beta[..., None])[..., 0]) * w[None, :]
    rss = (resid * resid).sum(axis=1)
    sigma = np.sqrt(rss / chi2)
    # beta* = beta + sigma* · L⁻ᵀ z  (L⁻ᵀ z ~ N(0, (X'X)⁻¹))
    Lt = np.swapaxes(L, 1, 2)
    beta_star = beta + sigma[:, None] * np.linalg.solve(Lt, z[..., None])[..., 0]
    return beta, beta_star, sigma


def mice(Y: np.ndarray, X: np.ndarray, rng: np.random.Generator, m: int = 20, iterations: int = 10,
         method: str = "norm", donors: int = 5, columns: tuple[str, ...] | None = None,
         block: int | None = None) -> Imputations:
    """Multiple imputation by chained equations.

    Parameters
    ----------
    Y : (n, k) incomplete continuous columns (NaN = missing)
    X : (n, p) complete predictors; an intercept is added here (give none)
    rng : the generator every draw comes from
    m : number of imputations (≥ 2; ≥ 20 recommended)
    iterations : sweeps of the chained equations (1 suffices when one column is incomplete)
    method : ``"norm"`` (Bayesian linear regression) or ``"pmm"`` (predictive mean matching,
        type-1 matching on ``donors`` nearest observed predicted means)
    block : imputations processed at once (default :func:`imputation_block`: the work arrays
        of a block take at most :data:`BLOCK_BYTES`); the result does not depend on it

    Returns
    -------
    :class:`Imputations`

    Notes
    -----
    Start: each missing entry is a random draw from the column's observed values (mice's
    default). Sweep: for column ``j`` with predictors ``Z = [1, X, Y_{-j}]`` (current values)
    and the ``n_j`` observed rows, ``β̂ = (Z'Z + κ diag(Z'Z))⁻¹Z'y`` (``κ`` = 1e-5),
    ``σ*² = RSS/χ²_{n_j − q}``, ``β* = β̂ + σ* L⁻ᵀ z`` with ``LLᵀ = Z'Z + …``; ``norm`` imputes
    ``Z β* + σ* ε``, ``pmm`` takes the observed value of a donor drawn from the ``donors``
    observed rows whose ``Z β̂`` is closest to the missing row's ``Z β*`` (Rubin 1987 §5.3;
    van Buuren 2018, *Flexible Imputation of Missing Data*, §3.2 and §3.4).

    Every random number of a step is drawn for all ``m`` imputations at once, in one fixed order
    (χ², then the normals of ``β*``, then the noise or the donor picks), and only the arithmetic
    runs a block of imputations at a time: any ``block`` gives the same bytes.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    X = np.asarray(X, dtype=float)
    n, k = Y.shape
    if X.shape[0] != n or not np.all(np.isfinite(X)):
        raise ValueError("X must have a finite row for every row of Y")
    if m < 2:
        raise ValueError("m must be at least 2")
    cols = tuple(columns) if columns is not None else tuple(f"y{j}" for j in range(k))
    missing = ~np.isfinite(Y)
    base = np.column_stack([np.ones(n), X])
    vals = np.repeat(Y[None], m, axis=0)
    todo = [j for j in range(k) if missing[:, j].any()]
    for j in todo:
        obs = Y[~missing[:, j], j]
        q = base.shape[1] + k - 1
        if len(obs) <= q + 1:
            raise ValueError(f"column {cols[j]!r} has {len(obs)} observed values: too few for {q} predictors")
        vals[:, missing[:, j], j] = rng.choice(obs, size=(m, int(missing[:, j].sum())))
    sweeps = iterations if len(todo) > 1 else min(iterations, 1)
    q = base.shape[1] + k - 1
    b = imputation_block(m, n, q) if block is None else max(1, int(block))
    for _ in range(sweeps):
        for j in todo:
            mis = missing[:, j]
            w = (~mis).astype(float)
            others = [i for i in range(k) if i != j]
            n_mis = int(mis.sum())
            chi2 = rng.chisquare(int(w.sum()) - q, size=m)
            z = rng.standard_normal((m, q))
            if method == "norm":
                eps = rng.standard_normal((m, n_mis))
            else:
                kk = min(donors, n - n_mis)
                pick = rng.integers(0, kk, size=(m, n_mis))
            for blk in blocks(m, b):
                nb = blk.stop - blk.start
                A = np.concatenate([np.broadcast_to(base, (nb, n, base.shape[1])), vals[blk][:, :, others]], axis=2)
                beta, beta_star, sigma = _draw_norm(A, vals[blk, :, j], w, chi2[blk], z[blk])
                Am = A[:, mis, :]
                if method == "norm":
                    vals[blk, mis, j] = (Am @ beta_star[..., None])[..., 0] + sigma[:, None] * eps[blk]
                else:
                    vals[blk, mis, j] = _pmm(A[:, ~mis, :], Am, beta, beta_star, Y[~mis, j], pick[blk], kk)
                del A, Am
    return Imputations(values=vals, missing=missing, columns=cols, method=method, iterations=sweeps)


def _pmm(Aobs: np.ndarray, Am: np.ndarray, beta: np.ndarray, beta_star: np.ndarray, yobs: np.ndarray,
         pick: np.ndarray, kk: int) -> np.ndarray:
    """Predictive mean matching of a block: (b, n_mis) donor values (type-1 matching)."""
    yhat_obs = (Aobs @ beta[..., None])[..., 0]
    yhat_mis = (Am @ beta_star[..., None])[..., 0]
    nb, n_mis = yhat_mis.shape
    out = np.empty((nb, n_mis))
    # the (b, rows, n_obs) distance array a bounded number of missing rows at a time
    rows = max(1, BLOCK_BYTES // (8 * nb * max(yhat_obs.shape[1], 1)))
    for r in blocks(n_mis, rows):
        d = np.abs(yhat_mis[:, r, None] - yhat_obs[:, None, :])  # (b, rows, n_obs)
        near = np.argpartition(d, kk - 1, axis=2)[:, :, :kk]
        near = np.sort(near, axis=2)  # a stable order, so the draw below is reproducible
        idx = np.take_along_axis(near, pick[:, r, None], axis=2)[..., 0]
        out[:, r] = yobs[idx]
    return out


# ---------------------------------------------------------------------------- analysis of each completed set
@dataclass(frozen=True)
class AncovaFit:
    """The QR factors of the completed-data designs, kept so that many outcomes ``y`` (e.g. the
    shifted end scores of a tipping-point search) are fitted without factorising again.

    Attributes
    ----------
    Q : (m, n, p) orthonormal factors; R : (m, p, p) triangular factors
    h : (m, n) leverages; df : residual degrees of freedom ``n − p``
    block : imputations per block of the products (bounds the temporaries)
    """

    Q: np.ndarray
    R: np.ndarray
    h: np.ndarray
    df: int
    block: int

    def contrast(self, y: np.ndarray, L: np.ndarray, se_type: str = "HC2") -> tuple[np.ndarray, np.ndarray, int]:
        """``L'β̂`` and its variance in each completed data set (see :func:`ancova_contrast`)."""
        if se_type not in ("HC2", "classical"):
            raise ValueError("se_type must be 'HC2' or 'classical'")
        y = np.asarray(y, dtype=float)
        m, n, p = self.Q.shape
        if y.shape != (m, n):
            raise ValueError(f"y must have shape {(m, n)}, not {y.shape}")
        est, var = np.empty(m), np.empty(m)
        Lb = np.asarray(L, float)
        for blk in blocks(m, self.block):
            Q, R, yb = self.Q[blk], self.R[blk], y[blk]
            # a = Q R⁻ᵀ L
            u = np.linalg.solve(np.swapaxes(R, 1, 2), np.broadcast_to(Lb, (Q.shape[0], p))[..., None])[..., 0]
            a = (Q @ u[..., None])[..., 0]
            est[blk] = (a * yb).sum(axis=1)
            e = yb - (Q @ (np.swapaxes(Q, 1, 2) @ yb[..., None]))[..., 0]
            if se_type == "HC2":
                with np.errstate(divide="ignore", invalid="ignore"):
                    var[blk] = (a * a / (1.0 - self.h[blk]) * e * e).sum(axis=1)
            else:
                var[blk] = (a * a).sum(axis=1) * (e * e).sum(axis=1) / self.df
        return est, var, self.df


def ancova_fit(X: np.ndarray, m: int | None = None, block: int | None = None) -> AncovaFit:
    """QR factors of ``X`` — (n, p) shared by the ``m`` imputations, or (m, n, p) one per
    imputation (full column rank) — computed ``block`` imputations at a time (default
    :func:`imputation_block`; the factors do not depend on it). A shared design (2-D, or a
    broadcast view with stride 0 over the imputations) is factorised once and its factors are
    broadcast views: the same numbers as factorising each copy, without the ``m`` copies."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 2:
        if m is None:
            raise ValueError("m is needed when X is shared by the imputations")
        X = np.broadcast_to(X, (m, *X.shape))
    m, n, p = X.shape
    b = imputation_block(m, n, p) if block is None else max(1, int(block))
    if X.strides[0] == 0:  # one design shared by every imputation: factorised once, kept once
        Q1, R1 = np.linalg.qr(X[0])
        h1 = (Q1 * Q1).sum(axis=1)
        return AncovaFit(np.broadcast_to(Q1, (m, n, p)), np.broadcast_to(R1, (m, p, p)), np.broadcast_to(h1, (m, n)),
                         n - p, b)
    Q, R, h = np.empty((m, n, p)), np.empty((m, p, p)), np.empty((m, n))
    for blk in blocks(m, b):
        Q[blk], R[blk] = np.linalg.qr(X[blk])
        h[blk] = (Q[blk] * Q[blk]).sum(axis=2)
    return AncovaFit(Q, R, h, n - p, b)


def ancova_contrast(X: np.ndarray, y: np.ndarray, L: np.ndarray, se_type: str = "HC2", block: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """``L'β̂`` and its variance in each completed data set.

    Parameters
    ----------
    X : (n, p) design shared by every imputation, or (m, n, p) one per imputation
        (full column rank: the caller drops aliased columns)
    y : (m, n) completed outcomes
    L : (p,) contrast
    se_type : ``"HC2"`` (the estimator of ``effects.csv``) or ``"classical"`` (``lm``'s)
    block : imputations per block (memory only; see :func:`ancova_fit`)

    Returns
    -------
    ``(estimates (m,), variances (m,), df_resid)``.

    Notes
    -----
    With ``a = X(X'X)⁻¹L`` (so ``L'β̂ = a'y``), ``h_i`` the leverages and ``e`` the residuals,
    HC2 is ``Σ a_i² e_i²/(1 − h_i)`` and the classical variance ``‖a‖² e'e/(n − p)``.
    """
    if se_type not in ("HC2", "classical"):
        raise ValueError("se_type must be 'HC2' or 'classical'")
    y = np.asarray(y, dtype=float)
    return ancova_fit(X, m=y.shape[0], block=block).contrast(y, L, se_type)


# ---------------------------------------------------------------------------- Rubin's rules
@dataclass(frozen=True)
class RubinResult:
    """A scalar pooled by Rubin's rules (the columns of ``mice::pool``'s ``pooled``)."""

    estimate: float
    ubar: float  #: mean within-imputation variance
    b: float  #: between-imputation variance
    t: float  #: total variance ``ubar + (1 + 1/m) b``
    m: int
    dfcom: float  #: complete-data degrees of freedom
    df: float  #: Barnard–Rubin degrees of freedom
    riv: float  #: relative increase in variance ``(1 + 1/m) b / ubar``
    lambda_: float  #: share of the total variance due to missingness ``(1 + 1/m) b / t``
    fmi: float  #: fraction of missing information ``(riv + 2/(df + 3)) / (1 + riv)``

    @property
    def std_error(self) -> float:
        return math.sqrt(self.t) if self.t >= 0 else math.nan

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """t interval on the Barnard–Rubin degrees of freedom."""
        if not (self.std_error > 0 and self.df > 0):
            return math.nan, math.nan
        q = float(t_ppf(0.5 + level / 2, self.df))
        return self.estimate - q * self.std_error, self.estimate + q * self.std_error

    @property
    def p_value(self) -> float:
        if not (self.std_error > 0 and self.df > 0):
            return math.nan
        return float(2 * t_sf(abs(self.estimate) / self.std_error, self.df))

    def to_frame(self, level: float = 0.95) -> pd.DataFrame:
        lo, hi = self.ci(level)
        return pd.DataFrame([{"estimate": self.estimate, "std_error": self.std_error, "ci_low": lo, "ci_high": hi,
                              "p_value": self.p_value, "df": self.df, "ubar": self.ubar, "b": self.b, "t": self.t,
                              "riv": self.riv, "lambda": self.lambda_, "fmi": self.fmi, "m": self.m, "dfcom": self.dfcom}])

    def _repr_html_(self) -> str:
        body = self.to_frame().to_html(index=False, float_format=lambda v: f"{v:.4g}")
        return f"<div><p><b>Rubin's rules (m = {self.m}, Barnard–Rubin df)</b></p>{body}</div>"


def barnard_rubin_df(m: int, b: np.ndarray | float, t: np.ndarray | float, dfcom: float) -> np.ndarray:
    """Barnard & Rubin (1999) degrees of freedom, as ``mice:::barnard.rubin``.

    ``λ = (1 + 1/m) b / t`` (floored at 1e-4), ``ν_old = (m − 1)/λ²``,
    ``ν_obs = (ν_com + 1)/(ν_com + 3) · ν_com (1 − λ)``, ``ν = ν_old ν_obs / (ν_old + ν_obs)``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.maximum((1 + 1 / m) * np.asarray(b, float) / np.asarray(t, float), 1e-4)
        dfold = (m - 1) / lam**2
        if not np.isfinite(dfcom):
            return np.asarray(dfold, float)
        dfobs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam)
        return np.asarray(dfold * dfobs / (dfold + dfobs), float)


def rubin(estimates: np.ndarray, variances: np.ndarray, dfcom: float = math.inf) -> RubinResult:
    """Rubin's rules for one scalar from ``m`` completed-data estimates and variances.

    Notes
    -----
    ``Q̄ = mean(Q_l)``, ``Ū = mean(U_l)``, ``B = var(Q_l)`` (divisor ``m − 1``),
    ``T = Ū + (1 + 1/m) B`` (Rubin 1987); df by :func:`barnard_rubin_df` with ``dfcom``
    the complete-data residual df (as ``mice::pool``).
    """
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(variances, dtype=float)
    m = len(q)
    if m < 2 or len(u) != m:
        raise ValueError("Rubin's rules need at least 2 estimates with one variance each")
    qbar, ubar, b = float(q.mean()), float(u.mean()), float(q.var(ddof=1))
    t = ubar + (1 + 1 / m) * b
    df = float(barnard_rubin_df(m, b, t, dfcom))
    riv = (1 + 1 / m) * b / ubar if ubar > 0 else math.inf
    lam = (1 + 1 / m) * b / t if t > 0 else math.nan
    fmi = (riv + 2 / (df + 3)) / (1 + riv) if math.isfinite(riv) else math.nan
    return RubinResult(qbar, ubar, b, t, m, float(dfcom), df, riv, lam, fmi)


def rubin_batch(estimates: np.ndarray, variances: np.ndarray, dfcom: float = math.inf, level: float = 0.95
                ) -> dict[str, np.ndarray]:
    """Rubin's rules over the first axis of ``(m, ...)`` arrays at once (for simulations):
    ``estimate, std_error, df, ci_low, ci_high``, each of shape ``...``."""
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(variances, dtype=float)
    m = q.shape[0]
    qbar, ubar, b = q.mean(axis=0), u.mean(axis=0), q.var(axis=0, ddof=1)
    t = ubar + (1 + 1 / m) * b
    df = barnard_rubin_df(m, b, t, dfcom)
    se = np.sqrt(t)
    tq = t_ppf(0.5 + level / 2, df)
    return {"estimate": qbar, "std_error": se, "df": df, "ci_low": qbar - tq * se, "ci_high": qbar + tq * se}


def pool_covariance(estimates: np.ndarray, covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rubin's rules for a vector: ``(Q̄, T)`` with ``T = Ū + (1 + 1/m) B`` from ``(m, q)``
    estimates and ``(m, q, q)`` covariances (``B`` the sample covariance of the estimates)."""
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(covariances, dtype=float)
    m = q.shape[0]
    return q.mean(axis=0), u.mean(axis=0) + (1 + 1 / m) * np.atleast_2d(np.cov(q, rowvar=False, ddof=1))


# ---------------------------------------------------------------------------- tipping point
@dataclass(frozen=True)
class TippingPoint:
    """The shift at which a statistic crosses zero (``nan`` when it does not within the range)."""

    shift: float
    value_at_zero: float  #: the statistic without a shift
    searched_to: float  #: the largest |shift| searched
    direction: float  #: +1 or −1: the sign of the shifts searched

    @property
    def found(self) -> bool:
        return math.isfinite(self.shift)


def tipping_point(statistic: Callable[[float], float], direction: float, max_shift: float, step: float,
                  xtol: float = 1e-6) -> TippingPoint:
    """The smallest ``δ`` in ``direction`` (|δ| ≤ ``max_shift``) with ``statistic(δ) = 0``.

    ``statistic`` is continuous with ``statistic(0) ≠ 0`` (e.g. the lower bound of a 95 % CI
    for a positive effect). The grid ``0, step, 2·step, …`` (times ``direction``) is scanned
    outward to the first sign change, then Brent's method finds the root to ``xtol`` inside
    that step. Deterministic: no random draw.
    """
    f0 = float(statistic(0.0))
    sgn = 1.0 if direction >= 0 else -1.0
    if f0 == 0.0:
        return TippingPoint(0.0, f0, 0.0, sgn)
    if not math.isfinite(f0):
        return TippingPoint(math.nan, f0, 0.0, sgn)
    prev, fprev = 0.0, f0
    n_steps = int(math.ceil(max_shift / step))
    for i in range(1, n_steps + 1):
        x = sgn * min(i * step, max_shift)
        fx = float(statistic(x))
        if math.isfinite(fx) and (fx == 0.0 or np.sign(fx) != np.sign(fprev)):
            if fx == 0.0:
                return TippingPoint(x, f0, abs(x), sgn)
            root = optimize.brentq(statistic, prev, x, xtol=xtol) if prev < x else optimize.brentq(statistic, x, prev, xtol=xtol)
            return TippingPoint(float(root), f0, abs(x), sgn)
        prev, fprev = x, fx
    return TippingPoint(math.nan, f0, float(max_shift), sgn)
