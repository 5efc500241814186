"""Propensity scores and the doubly robust ATT of a non-randomised comparison.

Logistic regression (:func:`logit_fit`), ATT weights, trimming to common support,
standardised mean differences, Kish's effective sample size and the doubly robust ATT
(:func:`dr_att`). :mod:`hbeval.outcomes.comparison` applies them to the pilot and comparison
families; :mod:`hbeval.outcomes.attrition` uses :func:`logit_fit` for the observation model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hbeval.stats.dist import norm_ppf, norm_sf
from hbeval.stats.ols import blocks, html_table
from hbeval.stats.ri import blas_single_thread

#: Rows per block of the n × p products (X'WX, the fitted values): a block's working copy
#: is ~65 k × p floats (26 MB at p = 50) instead of another n × p matrix (0.4 GB at a
#: national study's 1 M rows). A design with fewer rows is one block: the same products as
#: an unblocked computation, bit for bit.
BLOCK_ROWS = 1 << 16


def logit_fit(X: np.ndarray, t: np.ndarray, ridge: float = 1e-6, max_iter: int = 100) -> np.ndarray:
    """Logistic regression by Newton–Raphson (IRLS) with a tiny ridge for separation.

    Parameters
    ----------
    X : (n, p) design including an intercept column (column 0, not penalised)
    t : (n,) 0/1

    Returns
    -------
    (p,) coefficients.

    Notes
    -----
    Maximises ``Σ t log π + (1−t) log(1−π) − ridge/2 ‖β_{1:}‖²`` with step halving. Columns
    are standardised internally for conditioning. Memory: one standardised n × p copy of
    ``X`` (a float64 ``X`` is not copied again) and n-vectors; ``Z' diag(π(1−π)) Z`` is
    summed over blocks of :data:`BLOCK_ROWS` rows. BLAS runs on one thread (skinny
    products; spinning BLAS threads on a loaded machine made the fit ~10x slower).
    """
    with blas_single_thread():
        return _logit_fit(X, t, ridge, max_iter)


def _logit_fit(X: np.ndarray, t: np.ndarray, ridge: float, max_iter: int) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    t = np.asarray(t, dtype=float)
    mu = X[:, 1:].mean(axis=0)
    sd = X[:, 1:].std(axis=0)
    sd[sd == 0] = 1.0
    Z = np.empty((X.shape[0], X.shape[1]))  # standardised in place: one n x p copy (a national study has ~1 M rows)
    Z[:, 0] = 1.0
    np.subtract(X[:, 1:], mu, out=Z[:, 1:])
    Z[:, 1:] /= sd
    n, p = Z.shape
    pen = np.full(p, ridge)
    pen[0] = 0.0
    b = np.zeros(p)
    b[0] = np.log(max(t.mean(), 1e-9) / max(1 - t.mean(), 1e-9))
    work = np.empty((min(n, BLOCK_ROWS), p))  # one buffer for every block of every Newton step

    def ll(beta: np.ndarray) -> float:
        eta = Z @ beta
        return float(np.sum(t * eta - np.logaddexp(0, eta)) - 0.5 * np.sum(pen * beta**2))

    cur = ll(b)
    for _ in range(max_iter):
        eta = Z @ b
        pi = 1 / (1 + np.exp(-eta))
        g = Z.T @ (t - pi) - pen * b
        # H = Z' diag(π(1−π)) Z in the A'A form, for which numpy calls a symmetric rank-k
        # update (syrk), ~10x a general product at 1 M rows. Square-root weights under 1e-100
        # (units the model already separates) are set to 0: their terms are < 1e-200, and as
        # subnormal numbers they would slow the product a hundredfold.
        sw = np.sqrt(pi * (1 - pi))
        sw[sw < 1e-100] = 0.0
        H = np.diag(pen)
        for r in blocks(n, BLOCK_ROWS):
            Zs = np.multiply(Z[r], sw[r, None], out=work[: r.stop - r.start])
            H += Zs.T @ Zs
        step = np.linalg.solve(H + 1e-12 * np.eye(p), g)
        s = 1.0
        while s > 1e-8:
            nb = b + s * step
            new = ll(nb)
            if new >= cur - 1e-12:
                break
            s /= 2
        b, prev, cur = nb, cur, new
        if abs(cur - prev) < 1e-10 * (1 + abs(cur)):
            break
    beta = b.copy()
    beta[1:] = b[1:] / sd
    beta[0] = b[0] - np.sum(b[1:] * mu / sd)
    return beta


def propensity(X: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fitted ``P(pilot | x)`` from :func:`logit_fit` (intercept added here)."""
    Xi = np.column_stack([np.ones(len(X)), X])
    return 1 / (1 + np.exp(-(Xi @ logit_fit(Xi, t))))


def att_weights(ps: np.ndarray, t: np.ndarray) -> np.ndarray:
    """ATT weights: 1 for the treated, ``e/(1−e)`` for the comparison units, the latter
    normalised to sum to the number of treated (Hirano, Imbens & Ridder 2003)."""
    ps = np.asarray(ps, dtype=float)
    t = np.asarray(t).astype(bool)
    w = np.where(t, 1.0, ps / (1 - ps))
    if (~t).any() and w[~t].sum() > 0:
        w[~t] *= t.sum() / w[~t].sum()
    return w


def common_support(ps: np.ndarray, t: np.ndarray, ps_max: float | None = None) -> np.ndarray:
    """Keep-mask after trimming to common support (Dehejia & Wahba 1999): comparison
    units below the lowest treated propensity and treated units above the highest
    comparison propensity are dropped; optionally also every unit with ``e > ps_max``
    (Crump et al. 2009 style)."""
    ps = np.asarray(ps, dtype=float)
    t = np.asarray(t).astype(bool)
    keep = np.ones(len(ps), bool)
    if t.any() and (~t).any():
        keep &= ~(~t & (ps < ps[t].min()))
        keep &= ~(t & (ps > ps[~t].max()))
    if ps_max is not None:
        keep &= ps <= ps_max
    return keep


def smd(x: np.ndarray, t: np.ndarray, w: np.ndarray | None = None) -> float:
    """Standardised mean difference ``(x̄_T − x̄_C^w) / sqrt((s_T² + s_C²)/2)``; the
    denominator uses the unweighted SDs, so before and after are on one scale (Austin 2009)."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(t).astype(bool)
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=float)
    if not (w[t].sum() > 0 and w[~t].sum() > 0):
        return np.nan  # no weight in a group (a separated propensity model): no weighted mean
    if t.sum() < 2 or (~t).sum() < 2:
        return np.nan  # a group of one family has no SD: no scale to standardise by (it read 0, "balanced")
    m1 = np.average(x[t], weights=w[t])
    m0 = np.average(x[~t], weights=w[~t])
    s = np.sqrt((x[t].var(ddof=1) + x[~t].var(ddof=1)) / 2)
    return float((m1 - m0) / s) if s > 0 else 0.0


def ess(w: np.ndarray) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²``."""
    w = np.asarray(w, dtype=float)
    return float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0


@dataclass
class ATTEstimate:
    """A doubly robust ATT with its pieces."""

    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float
    ipw: float
    naive: float
    n_treated: int
    n_control: int

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows ``term, estimate, std_error, ci_low, ci_high, p_value, n_treated,
        n_control``: the doubly robust ATT, and beside it the IPW and unadjusted differences
        (point estimates only)."""
        rows = [
            {"term": "att_doubly_robust", "estimate": self.estimate, "std_error": self.std_error,
             "ci_low": self.ci_low, "ci_high": self.ci_high, "p_value": self.p_value},
            {"term": "att_ipw", "estimate": self.ipw},
            {"term": "naive_difference", "estimate": self.naive},
        ]
        out = pd.DataFrame(rows, columns=["term", "estimate", "std_error", "ci_low", "ci_high", "p_value"])
        out["n_treated"] = self.n_treated
        out["n_control"] = self.n_control
        return out

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), "Doubly robust ATT (not randomised)")


def dr_att(y: np.ndarray, t: np.ndarray, X: np.ndarray, ps: np.ndarray, level: float = 0.95) -> ATTEstimate:
    """Doubly robust ATT: weighted outcome regression on the comparison units, augmented.

    Parameters
    ----------
    y : outcome; t : 0/1 treated; X : (n, p) outcome-model covariates (no intercept);
    ps : propensity scores

    Notes
    -----
    With ATT weights ``w_i = e_i/(1−e_i)`` on the comparison units and ``m_0(x)`` the
    weighted least-squares fit of ``y`` on ``x`` among them,

    .. math:: \\hat\\tau = \\frac{1}{n_1}\\sum_{T_i=1} (y_i − m_0(x_i)) − \\frac{\\sum_{T_i=0} w_i (y_i − m_0(x_i))}{\\sum_{T_i=0} w_i},

    consistent when either the propensity or the outcome model is right (Robins, Rotnitzky
    & Zhao 1994; Sant'Anna & Zhao 2020, the ATT form; with an intercept in ``m_0`` the second
    term is zero). The SE is from the estimated influence function
    ``ψ_i = [T_i (r_i − τ) − (1−T_i) w_i r_i] / p̂``, ``r = y − m_0(x)``, treating the
    propensity as known; normal-based interval.
    """
    y = np.asarray(y, dtype=float)
    t = np.asarray(t).astype(bool)
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    w = np.where(t, 1.0, ps / (1 - ps))
    c = ~t
    sw = np.sqrt(w[c])
    with blas_single_thread():
        beta, *_ = np.linalg.lstsq(_weighted_design(X, c, sw), y[c] * sw, rcond=None)
        r = _residuals(y, X, beta)
    n = len(y)
    n1 = int(t.sum())
    wc = w[c] / w[c].sum() * n1
    tau = r[t].mean() - np.sum(wc * r[c]) / n1
    psi = np.zeros(n)
    psi[t] = r[t] - r[t].mean()
    psi[c] = -(wc * (r[c] - np.sum(wc * r[c]) / n1))
    se = float(np.sqrt(np.sum(psi**2)) / n1)
    ipw = float(y[t].mean() - np.sum(wc * y[c]) / n1)
    naive = float(y[t].mean() - y[c].mean())
    z = norm_ppf(0.5 + level / 2)
    p = float(2 * norm_sf(abs(tau / se))) if se > 0 else np.nan
    return ATTEstimate(float(tau), se, float(tau - z * se), float(tau + z * se), p, ipw, naive, n1, int(c.sum()))


def _weighted_design(X: np.ndarray, rows: np.ndarray, sw: np.ndarray) -> np.ndarray:
    """``[1, X][rows] * sw[:, None]`` written once, in blocks of rows: neither the design
    with an intercept nor ``X[rows]`` is copied whole (each is n × p, 0.4 GB at 1 M rows)."""
    idx = np.flatnonzero(rows)
    A = np.empty((len(idx), X.shape[1] + 1))
    A[:, 0] = sw  # = 1 · sw
    for r in blocks(len(idx), BLOCK_ROWS):
        np.multiply(X[idx[r]], sw[r, None], out=A[r, 1:])
    return A


def _residuals(y: np.ndarray, X: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``y − [1, X] @ beta`` in blocks of :data:`BLOCK_ROWS` rows (one n × (p+1) design with
    the intercept is never formed; a block's products are those of the whole design)."""
    n = len(y)
    r = np.empty(n)
    work = np.empty((min(n, BLOCK_ROWS), X.shape[1] + 1))
    work[:, 0] = 1.0
    for b in blocks(n, BLOCK_ROWS):
        Xb = work[: b.stop - b.start]
        Xb[:, 1:] = X[b]
        np.subtract(y[b], Xb @ beta, out=r[b])
    return r
