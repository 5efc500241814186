"""Ordinary least squares with HC2 standard errors, strata dummies and the singleton rule.

One OLS for the whole package: :func:`ols_fit` (pivoted QR, columns beyond the numerical rank
dropped) and :func:`hc2_cov` (the HC2 sandwich, or the cross-covariance of two fits on the
same rows) are the pieces; :func:`ols_hc2` puts them together into an :class:`OLSResult`,
pinned to R's ``estimatr::lm_robust(..., se_type = "HC2")`` by the fixtures of
``tests/R``. The CEA (:mod:`hbeval.economics.cea`) uses the same pieces for its observed-data
fits and their cross-covariances.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg

from hbeval.stats.dist import t_ppf, t_sf

#: leverage above ``1 − EXACT_LEVERAGE`` counts as 1 (a unit fitted exactly by a column of its own)
EXACT_LEVERAGE = 1e-10


# ---------------------------------------------------------------------------- results
def _t_row(est: float, se: float, df: float, level: float = 0.95) -> dict[str, float]:
    """Estimate, SE, t-interval on ``df`` degrees of freedom and two-sided p-value."""
    if not np.isfinite(se) or se <= 0 or df <= 0:
        return {"estimate": est, "std_error": se, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "df": df}
    q = t_ppf(0.5 + level / 2, df)
    t = est / se
    return {
        "estimate": est,
        "std_error": se,
        "ci_low": est - q * se,
        "ci_high": est + q * se,
        "p_value": float(2 * t_sf(abs(t), df)),
        "df": df,
    }


def blocks(n: int, size: int) -> list[slice]:
    """``range(n)`` as consecutive slices of at most ``size`` (the row or replicate blocks that
    bound a kernel's working memory)."""
    return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]


def html_table(frame: pd.DataFrame, caption: str) -> str:
    """An HTML table of a result's :meth:`to_frame` with a caption, for ``_repr_html_``."""
    body = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
    return f"<div><p><b>{caption}</b></p>{body}</div>"


@dataclass
class OLSResult:
    """An OLS fit with HC2 (or weighted HC2) covariance.

    Attributes
    ----------
    names : column names of the design (``NaN`` coefficients for dropped collinear columns)
    coef, vcov : estimates and their HC2 covariance
    df_resid : ``n - rank``
    n : number of observations
    residuals : ``y − X β`` (unweighted)
    """

    names: list[str]
    coef: np.ndarray
    vcov: np.ndarray
    df_resid: int
    n: int
    residuals: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    def index(self, name: str) -> int:
        """Position of the column ``name``."""
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
        """:meth:`contrast` of one coefficient."""
        return self.contrast({name: 1.0}, level)

    def to_frame(self, level: float = 0.95) -> pd.DataFrame:
        """One row per coefficient: ``term, estimate, std_error, ci_low, ci_high, p_value, df``."""
        rows = [{"term": nm, **self.row(nm, level)} for nm in self.names]
        return pd.DataFrame(rows, columns=["term", "estimate", "std_error", "ci_low", "ci_high", "p_value", "df"])

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), f"OLS with HC2 standard errors (n = {self.n}, df = {self.df_resid})")


# ---------------------------------------------------------------------------- the pieces
@dataclass
class LinearFit:
    """The pieces of one least-squares fit that the HC2 sandwich needs.

    Attributes
    ----------
    X : (n, p) design as fitted (weighted rows for WLS)
    keep : the ``rank`` columns of ``X`` within its numerical rank, ascending
    coef : (rank,) coefficients of the columns ``keep``
    resid : (n,) residuals ``y − X_keep β``
    leverage : (n,) ``h_i = ‖Q_i‖²``
    r_inv : ``R⁻¹`` of ``X_keep = QR``, so that ``(X_keep'X_keep)⁻¹ = R⁻¹R⁻ᵀ``
    """

    X: np.ndarray
    keep: np.ndarray
    coef: np.ndarray
    resid: np.ndarray
    leverage: np.ndarray
    r_inv: np.ndarray

    @property
    def rank(self) -> int:
        """Numerical rank of ``X``."""
        return len(self.keep)

    @property
    def bread(self) -> np.ndarray:
        """``(X_keep'X_keep)⁻¹`` ``(rank, rank)``."""
        return self.r_inv @ self.r_inv.T

    def embed(self, a: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """A vector ``(rank,)`` or rows ``(k, rank)`` on the kept columns spread to all ``p``
        columns, ``fill`` for the dropped ones."""
        out = np.full((*a.shape[:-1], self.X.shape[1]), fill)
        out[..., self.keep] = a
        return out


def pivoted_qr(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(Q, piv, rank)`` of the column-pivoted QR of ``X``: the numerical rank is the number of
    diagonal entries of ``R`` above ``max|R_jj| · max(n, p) · ε``, so ``Q[:, :rank]`` is an
    orthonormal basis of the columns of ``X`` and ``piv[:rank]`` the independent ones."""
    Q, R, piv = scipy.linalg.qr(X, mode="economic", pivoting=True)
    d = np.abs(np.diag(R))
    tol = d.max() * max(X.shape) * np.finfo(float).eps if d.size else 0.0
    return Q, piv, int((d > tol).sum())


def ols_fit(X: np.ndarray, y: np.ndarray) -> LinearFit:
    """Least squares by pivoted QR, columns beyond the numerical rank dropped.

    Notes
    -----
    The rank is the number of diagonal entries of the pivoted ``R`` above
    ``max|R_jj| · max(n, p) · ε``; the kept columns are refactored in their own order,
    ``X_keep = QR``, ``β = R⁻¹Q'y`` and ``h_i = ‖Q_i‖²``.
    """
    n, p = X.shape
    _, piv, rank = pivoted_qr(X)
    keep = np.sort(piv[:rank])
    if rank < p:
        Q, R = np.linalg.qr(X[:, keep])
    else:
        # re-order to the original column order for a clean R
        Q, R = np.linalg.qr(X)
    r_inv = scipy.linalg.solve_triangular(R, np.eye(rank))
    beta = r_inv @ (Q.T @ y)
    e = y - X[:, keep] @ beta
    h = np.einsum("ij,ij->i", Q, Q)
    return LinearFit(X=X, keep=keep, coef=beta, resid=e, leverage=h, r_inv=r_inv)


def hc2_cov(f1: LinearFit, f2: LinearFit | None = None) -> np.ndarray:
    """HC2 covariance of a fit's coefficients, or cross-covariance of two fits on the same rows.

    Returns
    -------
    ``(rank_1, rank_2)`` on the kept columns of each fit (:meth:`LinearFit.embed` spreads it).

    Notes
    -----
    .. math:: \\hat V_{12} = (X_1'X_1)^{-1} X_1' \\operatorname{diag}(\\omega_i) X_2 (X_2'X_2)^{-1}

    with ``ω_i = e_i² / (1 − h_i)`` for one fit (MacKinnon & White 1985) and
    ``ω_i = e_{1i} e_{2i} / \\sqrt{(1 − h_{1i})(1 − h_{2i})}`` for two. A unit with leverage 1
    is fitted exactly by a column of its own (e.g. the only family with a missing baseline and
    its indicator): it carries no information on the other coefficients and its term is 0/0;
    its limit contribution is 0, the same as dropping it.
    """
    xr1 = f1.X[:, f1.keep] @ f1.r_inv  # = Q
    if f2 is None:
        h, e = f1.leverage, f1.resid
        exact = h > 1.0 - EXACT_LEVERAGE
        with np.errstate(divide="ignore", invalid="ignore"):
            omega = np.where(exact, 0.0, e**2 / np.where(exact, 1.0, 1.0 - h))
        meat = (xr1 * omega[:, None]).T @ xr1
        return f1.r_inv @ meat @ f1.r_inv.T
    omega = _scaled_resid(f1) * _scaled_resid(f2)
    xr2 = f2.X[:, f2.keep] @ f2.r_inv
    return f1.r_inv @ ((xr1 * omega[:, None]).T @ xr2) @ f2.r_inv.T


def hc2_cov_full(f1: LinearFit, f2: LinearFit | None = None, fill: float = np.nan) -> np.ndarray:
    """:func:`hc2_cov` spread to every column of both designs, ``(p_1, p_2)``, ``fill`` for the
    dropped ones."""
    g = f1 if f2 is None else f2
    out = np.full((f1.X.shape[1], g.X.shape[1]), fill)
    out[np.ix_(f1.keep, g.keep)] = hc2_cov(f1, f2)
    return out


def _scaled_resid(f: LinearFit) -> np.ndarray:
    """``e_i / √(1 − h_i)``, 0 for a unit with leverage 1."""
    exact = f.leverage > 1.0 - EXACT_LEVERAGE
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(exact, 0.0, f.resid / np.sqrt(np.where(exact, 1.0, 1.0 - f.leverage)))


def jackknife_coef(f: LinearFit) -> np.ndarray:
    """Leave-one-out coefficients ``β − (X'X)⁻¹ x_i e_i / (1 − h_i)``: ``(n, rank)``; NaN rows
    where ``h_i = 1``."""
    exact = f.leverage > 1 - EXACT_LEVERAGE  # a unit fitted by a column of its own: no leave-one-out fit
    g = (f.X[:, f.keep] @ f.bread) * (f.resid / np.where(exact, 1.0, 1 - f.leverage))[:, None]
    g[exact] = np.nan
    return f.coef[None, :] - g


def ols_hc2(y: np.ndarray, X: np.ndarray, names: list[str] | None = None,
            weights: np.ndarray | None = None) -> OLSResult:
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
    fit = ols_fit(Xw, yw)
    resid = y - X[:, fit.keep] @ fit.coef
    return OLSResult(names=names, coef=fit.embed(fit.coef), vcov=hc2_cov_full(fit), df_resid=n - fit.rank, n=n, residuals=resid)


# ---------------------------------------------------------------------------- designs
def _str_labels(stratum: np.ndarray | pd.Series) -> np.ndarray | None:
    """The stratum labels as an object array when every one is a ``str`` already (the usual
    case), else ``None``: then ``pd.Series(...).astype(str)`` makes them ``str``, which costs
    ~0.2 ms a call on a small sample, and the fits of one outcome call this a dozen times."""
    arr = np.asarray(stratum, dtype=object)
    return arr if all(type(v) is str for v in arr.tolist()) else None


def strata_dummies(stratum: np.ndarray | pd.Series) -> tuple[np.ndarray, list[str]]:
    """Indicators of every stratum but the first in sorted order (treatment coding)."""
    lab = _str_labels(stratum)
    if lab is not None:
        levels = sorted(set(lab.tolist()))
    else:
        lab_s = pd.Series(np.asarray(stratum, dtype=object)).astype(str)
        lab, levels = lab_s.to_numpy(), sorted(lab_s.unique())
    if len(levels) <= 1:
        return np.empty((len(lab), 0)), []
    D = (lab[:, None] == np.array(levels[1:], dtype=object)[None, :]).astype(float)
    return D, [f"stratum[{s}]" for s in levels[1:]]


def drop_singleton_strata(mask: np.ndarray, stratum: np.ndarray | pd.Series) -> np.ndarray:
    """``mask`` without the units that are alone in their stratum among ``mask``.

    Such a unit is fitted exactly by its stratum dummy: it carries no information on the other
    coefficients and its HC2 leverage is 1, so it is dropped before fitting.
    """
    fast = _str_labels(stratum)
    if fast is not None:
        counts = Counter(fast[np.asarray(mask, dtype=bool)].tolist())
        alone = {k for k, c in counts.items() if c == 1}
        single = np.array([v in alone for v in fast.tolist()], dtype=bool)
    else:
        lab = pd.Series(np.asarray(stratum, dtype=object)).astype(str)
        counts_s = lab[mask].value_counts()
        single = lab.isin(counts_s.index[counts_s == 1]).to_numpy()
    out: np.ndarray = mask & ~single
    return out


# ---------------------------------------------------------------------------- small samples
def bm_df(X: np.ndarray, c: np.ndarray, w: np.ndarray | None = None) -> float:
    """Bell–McCaffrey (Satterthwaite) degrees of freedom of the HC2 variance of ``c'β̂``.

    Parameters
    ----------
    X : (n, p) design (intercept included by the caller); columns beyond its numerical rank
        are dropped as in :func:`ols_fit`
    c : (p,) contrast
    w : optional (n,) analytic weights (the regression on ``√w X``, as :func:`ols_hc2`)

    Returns
    -------
    float: ``df_BM``; NaN when a leverage is 1 (HC2 undefined) or the contrast is 0.

    Notes
    -----
    With ``M = (X'X)^{-1}``, ``H = XMX'``, ``ℓ = XMc`` (so ``c'β̂ = ℓ'y``) and
    ``a_i = ℓ_i / \\sqrt{1 - h_{ii}}``, the HC2 variance is ``V = Σ_i a_i² e_i²``. Under the
    working model ``y ~ N(Xβ, σ²I)``, ``e = (I − H)ε`` and ``V = ε'GG'ε`` with
    ``G = (I − H) diag(a)``, a weighted sum of χ²₁ variables; matching two moments to
    ``σ² χ²_K / K · E[V]`` gives (Bell & McCaffrey 2002; Imbens & Kolesár 2016)

    .. math:: K_{BM} = \\frac{\\operatorname{tr}(G'G)^2}{\\operatorname{tr}((G'G)^2)},

    clubSandwich's Satterthwaite df for CR2 with every observation its own cluster
    (Pustejovsky & Tipton 2018). It is computed in ``O(np²)`` without the ``n × n`` matrix:
    with ``X = QR``, ``G'G = diag(a)(I − H)diag(a)``, so ``tr(G'G) = Σ a_i²(1 − h_ii)`` and

    .. math:: \\operatorname{tr}((G'G)^2) = Σ_i a_i^4 (1 − 2h_{ii}) + \\lVert Q'\\operatorname{diag}(a^2) Q \\rVert_F^2.

    Checked against clubSandwich 0.5.8 on ``tests/R/clubsandwich_expected.csv``.
    """
    return bm_dfs_of(X, [c], w)[0]


def bm_dfs_of(X: np.ndarray, contrasts: Sequence[np.ndarray], w: np.ndarray | None = None) -> list[float]:
    """:func:`bm_df` of several contrasts of one design, the design factored once (the same
    numbers as one :func:`bm_df` call per contrast)."""
    X = np.asarray(X, dtype=float)
    if w is not None:
        X = X * np.sqrt(np.asarray(w, dtype=float))[:, None]
    _, piv, rank = pivoted_qr(X)
    keep = np.sort(piv[:rank])  # columns beyond the numerical rank are dropped, as ols_fit (and so ols_hc2) does
    Q, R = np.linalg.qr(X[:, keep])
    h = np.einsum("ij,ij->i", Q, Q)
    out = []
    for c in contrasts:
        c = np.asarray(c, dtype=float)
        if np.any(np.delete(c, keep)):
            out.append(float("nan"))  # the contrast involves a dropped (inestimable) column
            continue
        ell = Q @ scipy.linalg.solve_triangular(R, c[keep], trans="T")
        if np.any(h > 1.0 - EXACT_LEVERAGE) or not np.any(ell):
            out.append(float("nan"))
            continue
        a2 = ell**2 / (1.0 - h)
        tr1 = float(np.sum(a2 * (1.0 - h)))
        qaq = (Q * a2[:, None]).T @ Q
        tr2 = float(np.sum(a2**2 * (1.0 - 2.0 * h)) + np.sum(qaq * qaq))
        out.append(tr1**2 / tr2)
    return out
