"""hbeval.stats.dist gives the bits of scipy.stats (issue 17: analyze no longer imports
scipy.stats, which costs ~1.5 s): every function against its scipy.stats original on a grid of
edge values (df = 1 and huge, infinite and invalid df, p at and near 0 and 1, NaN, ±inf, ±0),
compared as bit patterns so that -0.0 and NaN payload placement count too."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from hbeval.stats import dist

X = np.array([-np.inf, -1e300, -40.0, -5.0, -1.0, -1e-300, -0.0, 0.0, 1e-300, 0.3, 1.0, 2.5, 40.0, 1e300, np.inf, np.nan])
Q = np.array([-0.1, 0.0, 1e-300, 1e-16, 0.025, 0.3, 0.5, 0.975, 1 - 1e-16, 1.0, 1.1, np.nan])
DF = np.array([1.0, 2.0, 3.5, 30.0, 1e6, 1e20, np.inf, 0.0, -1.0, np.nan])


def _same(got: object, want: object) -> None:
    g, w = np.asarray(got), np.asarray(want)
    assert g.dtype == w.dtype and g.shape == w.shape
    assert type(got) is type(want)
    assert np.array_equal(g.view(np.int64), w.view(np.int64)), (g, w)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(dist.t_cdf, stats.t.cdf), (dist.t_sf, stats.t.sf), (dist.t_ppf, stats.t.ppf), (dist.chi2_sf, stats.chi2.sf)],
)
def test_one_shape_parameter_bit_for_bit(ours, theirs) -> None:
    arg = Q if ours is dist.t_ppf else X
    xx, dd = np.meshgrid(arg, DF)
    _same(ours(xx, dd), theirs(xx, dd))  # the whole grid at once
    for v in arg:  # and scalar by scalar (a NumPy scalar comes back, as from scipy)
        for d in DF:
            _same(ours(v, d), theirs(v, d))
    _same(ours(arg[3], 7), theirs(arg[3], 7))  # an integer df
    _same(ours(arg, 12.0), theirs(arg, 12.0))  # broadcasting


@pytest.mark.parametrize(("ours", "theirs"), [(dist.norm_cdf, stats.norm.cdf), (dist.norm_sf, stats.norm.sf), (dist.norm_ppf, stats.norm.ppf)])
def test_normal_bit_for_bit(ours, theirs) -> None:
    arg = Q if ours is dist.norm_ppf else X
    _same(ours(arg), theirs(arg))
    for v in arg:
        _same(ours(v), theirs(v))
        _same(ours(float(v)), theirs(float(v)))
    _same(ours(np.linspace(0.001, 0.999, 999)), theirs(np.linspace(0.001, 0.999, 999)))


def test_f_sf_bit_for_bit() -> None:
    xx, d1, d2 = np.meshgrid(X, DF, DF, indexing="ij")
    _same(dist.f_sf(xx, d1, d2), stats.f.sf(xx, d1, d2))
    for v in X:
        _same(dist.f_sf(v, 3, 40), stats.f.sf(v, 3, 40))
        _same(dist.f_sf(v, 1.0, 0.0), stats.f.sf(v, 1.0, 0.0))


def test_random_values_bit_for_bit() -> None:
    rng = np.random.default_rng(17)
    x = rng.standard_normal(2000) * rng.choice([0.1, 1.0, 10.0], 2000)
    df = rng.choice([1.0, 2.0, 5.0, 17.3, 250.0, 1e5], 2000)
    q = rng.uniform(size=2000)
    _same(dist.t_sf(np.abs(x), df), stats.t.sf(np.abs(x), df))
    _same(dist.t_ppf(q, df), stats.t.ppf(q, df))
    _same(dist.f_sf(x**2, df, df[::-1]), stats.f.sf(x**2, df, df[::-1]))
    _same(dist.chi2_sf(x**2, df), stats.chi2.sf(x**2, df))
    _same(dist.norm_ppf(q), stats.norm.ppf(q))


def test_scalar_fast_path_bit_for_bit() -> None:
    """One Python or NumPy scalar at a time (the fast path: the kernel alone) gives scipy.stats'
    bits and type, and so do the scalars it hands to the array path (NaN, bool, float32)."""
    rng = np.random.default_rng(3)
    for x, d, q in zip(rng.standard_normal(300) * 5, rng.choice([1.0, 2.0, 7.5, 40.0, 1e6], 300), rng.uniform(size=300)):
        for cast in (float, np.float64):
            _same(dist.t_sf(cast(x), cast(d)), stats.t.sf(cast(x), cast(d)))
            _same(dist.t_cdf(cast(x), int(d)), stats.t.cdf(cast(x), int(d)))
            _same(dist.t_ppf(cast(q), cast(d)), stats.t.ppf(cast(q), cast(d)))
            _same(dist.chi2_sf(cast(x * x), cast(d)), stats.chi2.sf(cast(x * x), cast(d)))
            _same(dist.f_sf(cast(x * x), 3, cast(d)), stats.f.sf(cast(x * x), 3, cast(d)))
            _same(dist.norm_ppf(cast(q)), stats.norm.ppf(cast(q)))
    for x, d in [(float("nan"), 3.0), (1.0, float("nan")), (True, 3.0), (np.float32(1.5), 3.0), (1.5, np.float32(3.0)),
                 (2, 5), (-0.0, 4.0)]:
        _same(dist.t_sf(x, d), stats.t.sf(x, d))
        _same(dist.t_cdf(x, d), stats.t.cdf(x, d))
    for q in (0, 1, 0.0, 1.0, -0.5, float("nan"), np.float32(0.3), 0.5):
        _same(dist.t_ppf(q, 4.0), stats.t.ppf(q, 4.0))
        _same(dist.norm_ppf(q), stats.norm.ppf(q))


@pytest.mark.parametrize("shape", [(2, 2), (4, 2), (3, 5), (2, 3, 2), (1, 4), (5,)])
def test_pearson_chi2_bit_for_bit(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape) * 10 + shape[0])
    for _ in range(20):
        tab = rng.integers(1, 60, size=shape)
        stat, p, dof = dist.pearson_chi2(tab)
        want = stats.chi2_contingency(tab, correction=False)
        _same(stat, want.statistic)
        _same(p, want.pvalue)
        assert dof == want.dof and type(dof) is type(want.dof)


def test_pearson_chi2_rejects_what_scipy_rejects() -> None:
    for bad in (np.array([[0, 0], [3, 4]]), np.array([[-1, 2], [3, 4]]), np.zeros((0, 2))):
        with pytest.raises(ValueError):
            stats.chi2_contingency(bad, correction=False)
        with pytest.raises(ValueError):
            dist.pearson_chi2(bad)


def test_the_analysis_modules_do_not_import_scipy_stats() -> None:
    """Importing the pipeline, the CLI and the statistics floor must not pull in scipy.stats
    (about 1.5 s) or statsmodels (which imports it)."""
    code = ("import sys, hbeval.cli, hbeval.pipeline, hbeval.stats.dist, hbeval.stats.glm; "
            "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] if m.startswith('scipy.') else m.split('.')[0] "
            "for m in sys.modules if m.startswith(('scipy.stats', 'statsmodels'))}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
