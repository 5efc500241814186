"""Gamma GLM with log link and HC1 ("robust") standard errors, without statsmodels.

The cost-difference check of :mod:`hbeval.costs.engine` fitted
``statsmodels.GLM(y, X, family=Gamma(Log())).fit(cov_type="HC1")``; importing statsmodels'
GLM also imports ``scipy.stats`` and ``scipy.optimize`` (about 1 s, a sixth of the analysis
of a small study). :func:`gamma_log_glm` is that fit transcribed operation by operation from
statsmodels 0.14–0.15 (``GLM._fit_irls``, ``families.Gamma``, ``links.Log``, ``varfuncs.Power``,
``_MinimalWLS``, ``WLS.fit(method="pinv")``, ``tools.pinv_extended``, ``GLMResults`` with
``covtype.get_robustcov_results`` and ``sandwich_covariance.cov_white_simple``), so that its
coefficients, standard errors and p-values are the same bits; ``tests/stats/test_glm.py``
compares them with statsmodels on random data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hbeval.stats.dist import norm_sf

__all__ = ["GammaLogGLM", "gamma_log_glm"]

_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class GammaLogGLM:
    """A fitted gamma GLM with log link: coefficients, HC1 standard errors and normal p-values.

    Attributes
    ----------
    params, bse, pvalues : ``(p,)``, as ``statsmodels`` ``GLMResults.params``/``bse``/``pvalues``
    converged : the deviance changed by at most ``tol`` in the last iteration
    iterations : IRLS iterations run
    """

    params: np.ndarray
    bse: np.ndarray
    pvalues: np.ndarray
    converged: bool
    iterations: int


def _clean(x: np.ndarray) -> np.ndarray:
    return np.clip(x, _EPS, np.inf)


def _deriv(mu: np.ndarray) -> np.ndarray:  # links.Log.deriv
    out: np.ndarray = 1.0 / _clean(mu)
    return out


def _variance(mu: np.ndarray) -> np.ndarray:  # varfuncs.Power(power=2)
    out: np.ndarray = np.power(np.fabs(mu), 2)
    return out


def _pinv_extended(x: np.ndarray, rcond: float = 1e-15) -> np.ndarray:
    """statsmodels.tools.tools.pinv_extended (the pseudo-inverse only)."""
    x = np.asarray(x).conjugate()
    u, s, vt = np.linalg.svd(x, False)
    cutoff = rcond * np.maximum.reduce(s)
    for i in range(min(vt.shape[1], u.shape[0])):
        s[i] = 1.0 / s[i] if s[i] > cutoff else 0.0
    out: np.ndarray = np.dot(np.transpose(vt), np.multiply(s[:, np.newaxis], np.transpose(u)))
    return out


def gamma_log_glm(y: np.ndarray, X: np.ndarray, maxiter: int = 100, tol: float = 1e-8) -> GammaLogGLM:
    """Fit ``E[y] = exp(Xβ)``, ``Var(y) ∝ E[y]²`` by IRLS; HC1 (sandwich) covariance.

    Parameters
    ----------
    y : ``(n,)`` positive outcomes
    X : ``(n, p)`` design, intercept included by the caller
    maxiter, tol : IRLS iterations and the absolute deviance tolerance (statsmodels' defaults)

    Returns
    -------
    GammaLogGLM

    Raises
    ------
    ValueError
        The first deviance is NaN, or IRLS meets non-finite weights or working responses.
    numpy.linalg.LinAlgError
        A least-squares fit or the Hessian fails.

    Notes
    -----
    IRLS from ``μ₀ = (y + ȳ)/2`` with working weights ``w = 1/(g'(μ)² V(μ)) = 1`` … as
    statsmodels, stopping when the deviance ``2 Σ [−log(y/μ) + (y − μ)/μ] / φ`` changes by at
    most ``tol``, with the Pearson scale ``φ = Σ (y − μ)²/μ² / (n − rank)``; the final
    coefficients come from a pseudo-inverse WLS fit on the last working response. Covariance
    ``H⁻¹ (Σ s_i s_i') H⁻¹`` with the observed Hessian ``H`` and score contributions ``s_i``;
    despite its name, statsmodels' ``HC1`` for a GLM has no small-sample factor, and neither has
    this. ``p = 2 Φ(−|β/se|)``. Reference: McCullagh & Nelder (1989), ch. 8; statsmodels
    ``GLM`` (Seabold & Perktold 2010).
    """
    endog = np.asarray(y, dtype=float)
    exog = np.asarray(X, dtype=float)
    if endog.shape[0] == 0:
        raise ValueError("no observations")
    # degenerate data (no residual degrees of freedom, a boundary fit) end in NaN or in one of
    # the errors above, as in statsmodels; the floating-point warnings on the way say nothing more
    with np.errstate(all="ignore"):
        return _fit(endog, exog, maxiter, tol)


def _fit(endog: np.ndarray, exog: np.ndarray, maxiter: int, tol: float) -> GammaLogGLM:
    n = endog.shape[0]
    freq_weights = np.ones(n)
    var_weights = np.ones(n)
    iweights = np.asarray(freq_weights * var_weights)
    n_trials = np.ones(n)
    df_model = np.linalg.matrix_rank(exog) - 1
    df_resid = freq_weights.sum() - df_model - 1

    def scale_of(mu: np.ndarray) -> float:  # GLM._estimate_x2_scale
        resid = np.power(endog - mu, 2) * iweights
        out: float = np.sum(resid / _variance(mu)) / df_resid
        return out

    def deviance(mu: np.ndarray, scale: float) -> float:  # Gamma.deviance
        endog_mu = _clean(endog / mu)
        resid_dev = 2 * (-np.log(endog_mu) + (endog - mu) / mu)
        out: float = np.sum(resid_dev * freq_weights * var_weights / scale)
        return out

    mu = (endog + endog.mean()) / 2.0
    lin_pred = np.log(_clean(mu))
    scale = scale_of(mu)
    dev = deviance(mu, scale)
    if np.isnan(dev):
        raise ValueError("The first guess on the deviance function returned a nan.")
    criterion = [np.inf, dev]
    converged = False
    iteration = 0
    weights = wlsendog = np.empty(0)
    for iteration in range(maxiter):
        weights = iweights * n_trials * (1.0 / (_deriv(mu) ** 2 * _variance(mu)))
        wlsendog = lin_pred + _deriv(mu) * (endog - mu) - 0.0
        w_half = np.sqrt(weights)
        if not np.all(np.isfinite(w_half)):
            raise ValueError("weights has non-finite values")
        if not np.all(np.isfinite(wlsendog)):
            raise ValueError("endog has non-finite values")
        params = np.linalg.lstsq(np.asarray(w_half)[:, None] * exog, w_half * wlsendog, rcond=-1)[0]
        lin_pred = np.dot(exog, params)
        lin_pred += 0.0
        mu = np.exp(lin_pred)
        criterion.append(deviance(mu, scale))
        scale = scale_of(mu)
        converged = bool(np.allclose(criterion[iteration + 1], criterion[iteration + 2], atol=tol, rtol=0.0))
        if converged:
            break
    # final WLS by pseudo-inverse on the last working response (statsmodels' WLS(...).fit("pinv"))
    sw = np.sqrt(np.array(weights).squeeze())
    pinv = _pinv_extended(sw[:, None] * exog)
    params = np.dot(pinv, wlsendog * sw)
    # HC "robust" covariance: score contributions and observed Hessian at the estimate
    mu = np.exp(np.dot(exog, params) + 0.0 + 0.0)
    scale = scale_of(mu)
    score_factor = (endog - mu) / _deriv(mu)
    score_factor /= _variance(mu)
    score_factor *= iweights * n_trials
    sf1 = score_factor.copy()  # score_factor(params, scale=1.0)
    if not scale == 1:
        score_factor /= scale
    xu = score_factor[:, None] * exog
    eim = 1 / (_deriv(mu) ** 2 * _variance(mu))
    eim *= iweights * n_trials
    p = _clean(mu)
    tmp = _variance(mu) * (-1.0 / p**2)
    vder = 2 * np.fabs(mu) ** (2 - 1)
    vder[np.flatnonzero(mu < 0)] *= -1
    tmp += vder * _deriv(mu)
    tmp = sf1 * tmp
    tmp /= iweights * n_trials
    oim = eim * (1 + tmp)
    if not scale == 1:
        oim /= scale
    buf = np.empty_like(exog, dtype=float)
    np.multiply(exog.T, oim, out=buf.T)
    hessian_inv = np.linalg.inv(-buf.T.dot(exog))
    xu /= np.sqrt(np.asarray(freq_weights)[:, None])
    cov = np.dot(np.dot(hessian_inv, np.dot(xu.T, xu)), hessian_inv.T)
    bse = np.sqrt(np.diag(cov))
    pvalues = norm_sf(np.abs(params / bse)) * 2
    return GammaLogGLM(params=params, bse=bse, pvalues=pvalues, converged=converged, iterations=iteration + 1)
