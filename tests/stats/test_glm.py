"""hbeval.stats.glm.gamma_log_glm is statsmodels' gamma/log GLM with HC1 covariance, bit for bit
(issue 17: the cost-difference check no longer imports statsmodels, and with it scipy.stats):
coefficients, standard errors, p-values and the IRLS iteration count on random cost-like data
(2-arm, factorial and rank-deficient designs, n from 3 to 400), and the same exception types
where statsmodels fails."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hbeval.stats.glm import gamma_log_glm

sm_glm = pytest.importorskip("statsmodels.genmod.generalized_linear_model")
sm_families = pytest.importorskip("statsmodels.genmod.families")


def _statsmodels(y: np.ndarray, X: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sm_glm.GLM(y, X, family=sm_families.Gamma(sm_families.links.Log()))
        return model.fit(cov_type="HC1")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=float).view(np.int64)


def _designs(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(3, 400))
        k = int(rng.integers(1, 4))
        X = np.column_stack([np.ones(n)] + [rng.integers(0, 2, n).astype(float) for _ in range(k)])
        if k == 3:  # the interaction model of the factorial contrasts
            X[:, 3] = X[:, 1] * X[:, 2]
        mu = np.exp(6 + X[:, 1:] @ rng.normal(0, 0.5, k))
        shape = rng.uniform(0.2, 3)
        yield rng.gamma(shape, mu / shape), X


@pytest.mark.parametrize("seed", [1, 2])
def test_gamma_log_glm_is_statsmodels_bit_for_bit(seed: int) -> None:
    fitted = 0
    for y, X in _designs(seed, 60):
        try:
            want = _statsmodels(y, X)
        except Exception as e:  # noqa: BLE001 - the same failure is expected
            with pytest.raises(type(e)):
                gamma_log_glm(y, X)
            continue
        got = gamma_log_glm(y, X)
        fitted += 1
        assert np.array_equal(_bits(got.params), _bits(want.params))
        assert np.array_equal(_bits(got.bse), _bits(want.bse))
        assert np.array_equal(_bits(got.pvalues), _bits(want.pvalues))
        assert got.iterations == want.fit_history["iteration"]
        assert got.converged == want.converged
    assert fitted > 50


@pytest.mark.parametrize(
    ("y", "X"),
    [
        (np.array([120.0, 80.0]), np.array([[1.0, 0.0], [1.0, 1.0]])),  # exactly fitted: singular Hessian
        (np.full(10, 50.0), np.column_stack([np.ones(10), np.arange(10) % 2])),  # no variation
        (np.array([3.0, 5.0, 9.0, 4.0, 8.0]), np.column_stack([np.ones(5), np.zeros(5)])),  # an empty arm
        (np.empty(0), np.empty((0, 2))),
    ],
)
def test_degenerate_data_fail_as_in_statsmodels(y: np.ndarray, X: np.ndarray) -> None:
    try:
        _statsmodels(y, X)
    except Exception as e:  # noqa: BLE001
        with pytest.raises(type(e)):
            gamma_log_glm(y, X)
    else:
        pytest.fail("statsmodels was expected to fail on these data")


def test_ratio_of_means_recovered_on_large_sample() -> None:
    """Not only the same bits: on a large sample the log ratio of means is close to the truth
    and the HC1 95 % interval covers it."""
    rng = np.random.default_rng(7)
    n = 20_000
    arm = rng.integers(0, 2, n).astype(float)
    y = rng.gamma(1.5, np.exp(7 + 0.3 * arm) / 1.5)
    res = gamma_log_glm(y, np.column_stack([np.ones(n), arm]))
    assert res.converged
    assert abs(res.params[1] - 0.3) < 4 * res.bse[1]
    assert 0.005 < res.bse[1] < 0.05
    assert res.pvalues[1] < 1e-10
