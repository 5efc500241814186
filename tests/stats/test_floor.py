"""The stats floor: pure (imports nothing of hbeval but the vocabulary) and its results look
good in a notebook (``to_frame`` and ``_repr_html_``)."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import hbeval.stats
from hbeval.stats.bounds import lee_bounds
from hbeval.stats.icer import icer_bootstrap_ci
from hbeval.stats.ols import hc2_cov_full, jackknife_coef, ols_fit, ols_hc2
from hbeval.stats.propensity import dr_att, propensity, smd

STATS = Path(hbeval.stats.__file__).parent
ALLOWED_THIRD_PARTY = {"numpy", "scipy", "pandas", "threadpoolctl"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_stats_imports_nothing_of_hbeval_but_the_vocabulary():
    files = sorted(STATS.glob("*.py"))
    assert {f.stem for f in files} >= {"ols", "factorial", "ri", "bootstrap", "propensity", "bounds", "icer"}
    for f in files:
        for name in _imports(f):
            top = name.split(".")[0]
            if top == "hbeval":
                assert name == "hbeval.arms" or name.startswith("hbeval.stats."), f"{f.name} imports {name}"
            else:
                import sys

                assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, f"{f.name} imports {name}"


def _design(seed: int = 0, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(size=n)])
    y = X @ [1.0, 0.5, -2.0] + rng.normal(size=n) * (1 + X[:, 1])
    return X, y


def test_ols_result_to_frame_and_html():
    X, y = _design()
    res = ols_hc2(y, X, ["(Intercept)", "treated", "x"])
    tab = res.to_frame()
    assert list(tab.columns) == ["term", "estimate", "std_error", "ci_low", "ci_high", "p_value", "df"]
    assert list(tab["term"]) == ["(Intercept)", "treated", "x"]
    np.testing.assert_array_equal(tab["estimate"].to_numpy(), res.coef)
    np.testing.assert_allclose(tab["std_error"].to_numpy() ** 2, np.diag(res.vcov), rtol=1e-12)
    assert (tab["ci_low"] < tab["estimate"]).all() and (tab["estimate"] < tab["ci_high"]).all()
    assert (tab["df"] == len(y) - 3).all()
    html = res._repr_html_()
    assert html.startswith("<div>") and "<table" in html and "treated" in html and "HC2" in html


def test_att_estimate_to_frame_and_html():
    rng = np.random.default_rng(5)
    n = 400
    x = rng.normal(size=n)
    t = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)
    y = 2.0 * t + x + rng.normal(size=n)
    est = dr_att(y, t, x[:, None], propensity(x[:, None], t))
    tab = est.to_frame()
    assert list(tab["term"]) == ["att_doubly_robust", "att_ipw", "naive_difference"]
    first = tab.iloc[0]
    assert first["estimate"] == est.estimate and first["ci_low"] < first["estimate"] < first["ci_high"]
    assert pd.isna(tab.loc[1, "std_error"]) and tab.loc[1, "estimate"] == est.ipw
    assert (tab["n_treated"] == t.sum()).all() and (tab["n_control"] == n - t.sum()).all()
    assert "<table" in est._repr_html_() and "not randomised" in est._repr_html_()


def test_hc2_cross_covariance_is_symmetric_and_reduces_to_the_variance():
    X, y = _design(1)
    f1, f2 = ols_fit(X, y), ols_fit(X, 3 * y + 1)
    V11 = hc2_cov_full(f1)
    np.testing.assert_allclose(V11, ols_hc2(y, X).vcov, rtol=0, atol=0)
    np.testing.assert_allclose(hc2_cov_full(f1, f1), V11, rtol=1e-12)
    np.testing.assert_allclose(hc2_cov_full(f1, f2), hc2_cov_full(f2, f1).T, rtol=1e-12)
    np.testing.assert_allclose(hc2_cov_full(f1, f2), 3 * V11, rtol=1e-10)


def test_rank_deficient_design_drops_a_column_and_embeds_it():
    X, y = _design(2)
    Xd = np.column_stack([X, X[:, 1]])  # a duplicated column
    fit = ols_fit(Xd, y)
    assert fit.rank == 3 and len(fit.keep) == 3
    full = fit.embed(fit.coef, 0.0)
    assert full.shape == (4,) and np.count_nonzero(full == 0.0) == 1
    res = ols_hc2(y, Xd)
    assert np.isnan(res.coef).sum() == 1 and np.isnan(res.vcov).any()
    jk = fit.embed(jackknife_coef(fit), 0.0)
    assert jk.shape == (len(y), 4)


def test_jackknife_of_a_unit_with_leverage_one_is_nan_without_a_warning():
    """A unit fitted by a column of its own has no leave-one-out fit: NaN, and no divide-by-zero
    warning on the way (the 16-family demo printed one); the other units are the explicit refits."""
    rng = np.random.default_rng(5)
    n = 25
    X = np.column_stack([np.ones(n), rng.normal(size=n), np.arange(n) == 0])
    y = X @ [1.0, 0.5, 2.0] + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jk = jackknife_coef(ols_fit(X, y))
    assert np.isnan(jk[0]).all() and np.isfinite(jk[1:]).all()
    for i in (1, 12, 24):
        keep = np.arange(n) != i
        np.testing.assert_allclose(jk[i], np.linalg.lstsq(X[keep], y[keep], rcond=None)[0], rtol=1e-9, atol=1e-10)


def test_bca_without_a_finite_jackknife_value_has_no_acceleration_and_no_warning():
    rng = np.random.default_rng(6)
    dc, de = rng.normal(500, 100, 2000), rng.normal(1.0, 0.1, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        none = icer_bootstrap_ci(500.0, 1.0, dc, de, jack_cost=np.full(8, np.nan), jack_effect=np.full(8, np.nan))
    flat = icer_bootstrap_ci(500.0, 1.0, dc, de, jack_cost=np.full(8, 500.0), jack_effect=np.full(8, 1.0))  # â = 0
    assert none["bootstrap_bca"] == flat["bootstrap_bca"]
    assert np.isfinite(none["bootstrap_bca"][:2]).all()


def test_tiny_groups_give_nan_without_warnings():
    """A group of one family has no SD (the SMD is undefined, not 0) and a group with no observed outcome
    has no mean (the Lee bounds are NaN): no RuntimeWarning either way (8-family studies printed them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(smd(np.array([1.0, 2.0, 3.0]), np.array([1, 0, 0])))
        assert smd(np.array([1.0, 2.0, 3.0, 5.0]), np.array([1, 1, 0, 0])) < 0
        y = np.array([np.nan, np.nan, 1.0, 2.0, 3.0])
        b = lee_bounds(y, np.isfinite(y), np.array([1, 1, 0, 0, 0]))
        assert np.isnan(b["lower"]) and np.isnan(b["upper"])
