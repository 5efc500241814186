"""The memory-bounded bootstrap engine (:func:`hbeval.stats.bootstrap.bootstrap_counts`): results
independent of the memory chunk, arms keep their sizes, unbiased counts, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from hbeval.stats.bootstrap import (
    _BUCKET,
    _BUCKET_FROM,
    BOOT_BLOCK,
    bootstrap_arm_means,
    bootstrap_counts,
    bootstrap_means,
    bootstrap_weights,
)
from hbeval.stats.icer import bootstrap_ols

TINY = 1  # bytes: forces one block of BOOT_BLOCK replicates per chunk
HUGE = 2**40  # everything in one chunk


def _arms(sizes: dict[str, int], seed: int = 0) -> np.ndarray:
    """Arm labels of the given sizes, shuffled (arms interleave in the rows)."""
    a = np.concatenate([[k] * v for k, v in sizes.items()]).astype(object)
    return np.random.default_rng(seed).permutation(a)


# --------------------------------------------------------------------------- (a) chunk-size invariance
@pytest.mark.parametrize("n_reps", [209, 16 * 7])  # 209 = 13 blocks + a block of one replicate
def test_statistics_do_not_depend_on_the_memory_chunk(n_reps):
    rng = np.random.default_rng(5)
    arm = _arms({"a": 300, "b": 41, "comparison": 1200, "d": 7})
    x = rng.gamma(2.0, 1000.0, size=(len(arm), 3))
    a = bootstrap_means(x, n_reps, np.random.default_rng(11), max_bytes=TINY)
    b = bootstrap_means(x, n_reps, np.random.default_rng(11), max_bytes=HUGE)
    assert np.array_equal(a, b)  # bit for bit
    order = ("a", "b", "comparison", "d", "absent")
    a = bootstrap_arm_means(x, arm, order, n_reps, np.random.default_rng(12), max_bytes=TINY)
    b = bootstrap_arm_means(x, arm, order, n_reps, np.random.default_rng(12), max_bytes=HUGE)
    assert np.array_equal(a, b, equal_nan=True) and np.isnan(a[:, 4]).all() and np.isfinite(a[:, :4]).all()
    w1 = bootstrap_weights(arm, n_reps, np.random.default_rng(13), max_bytes=TINY)
    w2 = bootstrap_weights(arm, n_reps, np.random.default_rng(13), max_bytes=3 * BOOT_BLOCK * len(arm) * 8)
    assert np.array_equal(w1, w2)
    # a different seed gives different draws
    assert not np.array_equal(w1, bootstrap_weights(arm, n_reps, np.random.default_rng(14)))


def test_ols_replicates_do_not_depend_on_the_memory_chunk():
    rng = np.random.default_rng(6)
    n = 900
    arm = _arms({"t0": 300, "t1": 300, "c": 300}, seed=2)
    stratum = rng.integers(0, 5, n)
    S = (stratum[:, None] == np.arange(1, 5)[None, :]).astype(float)
    X = np.column_stack([np.ones(n), arm == "t1", arm == "c", rng.normal(size=n), S])
    y = X @ rng.normal(size=X.shape[1]) + rng.normal(size=n)
    a = bootstrap_ols([X], [y], arm, 100, np.random.default_rng(3), groups=stratum, max_bytes=TINY)[0]
    b = bootstrap_ols([X], [y], arm, 100, np.random.default_rng(3), groups=stratum, max_bytes=HUGE)[0]
    assert np.array_equal(a, b)


def test_grouped_ols_bootstrap_equals_explicit_refits():
    """Cells (arm × stratum) only change how the cross-products are summed: the replicates
    are the OLS fits on the resampled rows, with or without ``groups``."""
    rng = np.random.default_rng(7)
    n = 240
    arm = _arms({"t": 100, "c": 140}, seed=3)
    stratum = rng.integers(0, 4, n)
    S = (stratum[:, None] == np.arange(1, 4)[None, :]).astype(float)
    x1, x2 = rng.normal(size=n), rng.gamma(2.0, 1.0, n)
    X1 = np.column_stack([np.ones(n), arm == "t", x1, S])
    X2 = np.column_stack([np.ones(n), arm == "t", x2, x1, S])
    y1, y2 = X1 @ [1, 2, 0.5, 0.1, -0.2, 0.3] + rng.normal(size=n), rng.normal(size=n)
    grouped = bootstrap_ols([X1, X2], [y1, y2], arm, 6, np.random.default_rng(9), groups=stratum)
    plain = bootstrap_ols([X1, X2], [y1, y2], arm, 6, np.random.default_rng(9))
    W = bootstrap_weights(arm, 6, np.random.default_rng(9))  # the same draws
    for b in range(6):
        idx = np.repeat(np.arange(n), W[b].astype(int))
        for k, (X, y) in enumerate(((X1, y1), (X2, y2))):
            coef = np.linalg.lstsq(X[idx], y[idx], rcond=None)[0]
            np.testing.assert_allclose(grouped[k][b], coef, rtol=1e-8, atol=1e-9)
            np.testing.assert_allclose(plain[k][b], coef, rtol=1e-8, atol=1e-9)


# --------------------------------------------------------------------------- (b) arm sizes
def test_every_arm_keeps_its_size_in_every_replicate():
    sizes = {"big": _BUCKET_FROM + 3 * _BUCKET + 17, "mid": 5000, "one": 1, "small": 12}  # "big" is drawn by buckets
    arm = _arms(sizes, seed=4)
    w = bootstrap_weights(arm, 40, np.random.default_rng(1))
    assert w.shape == (40, len(arm))
    assert (w >= 0).all() and (w == np.round(w)).all()
    for k, m in sizes.items():
        assert (w[:, arm == k].sum(axis=1) == m).all(), k
    assert (w[:, arm == "one"] == 1).all()
    assert bootstrap_weights(arm, 0, np.random.default_rng(1)).shape == (0, len(arm))
    assert bootstrap_arm_means(np.ones(len(arm)), arm, ("mid",), 0, np.random.default_rng(1)).shape == (0, 1, 1)
    # the same through the chunked engine: one count matrix per arm, arms sorted by name
    for _start, parts in bootstrap_counts(arm, 40, np.random.default_rng(1), max_bytes=TINY):
        assert [p.shape[1] for p in parts] == [sizes[k] for k in sorted(sizes)]
        assert all((p.sum(axis=1) == p.shape[1]).all() for p in parts)


# --------------------------------------------------------------------------- (c) unbiased counts
def test_counts_are_unbiased_and_have_the_multinomial_variance():
    # small arm: every unit's mean count over 4,000 replicates is 1 within 5 standard errors
    B, m = 4000, 60
    w = bootstrap_weights(np.zeros(m), B, np.random.default_rng(2))
    se = np.sqrt((1 - 1 / m) / B)
    assert np.abs(w.mean(axis=0) - 1).max() < 5 * se
    assert w.var(axis=0).mean() == pytest.approx(1 - 1 / m, rel=0.03)
    # an arm drawn by buckets (the last one partial): no bucket is favoured
    m = _BUCKET_FROM + 2 * _BUCKET + 1000
    w = bootstrap_weights(np.zeros(m), 24, np.random.default_rng(3))
    edges = list(range(0, m, _BUCKET)) + [m]
    for lo, hi in zip(edges[:-1], edges[1:]):
        mean = w[:, lo:hi].mean()
        assert mean == pytest.approx(1.0, abs=5 / np.sqrt(24 * (hi - lo))), (lo, hi)
    assert w.var() == pytest.approx(1.0, rel=0.02)
    # and within a bucket, no position is favoured (first vs second half of each)
    half = w[:, : _BUCKET // 2].mean() - w[:, _BUCKET // 2 : _BUCKET].mean()
    assert abs(half) < 5 * np.sqrt(2 / (24 * _BUCKET / 2))


# --------------------------------------------------------------------------- (d) memory
def test_bootstrap_means_memory_is_bounded_by_the_chunk_not_the_replicates():
    n, n_reps = 300_000, 200
    x = np.random.default_rng(4).gamma(2.0, 1000.0, size=(n, 2))
    full = n_reps * n * 8  # the dense (replicates × families) weight matrix: 480 MB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        reps = bootstrap_means(x, n_reps, np.random.default_rng(5), max_bytes=32 * 2**20)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    print(f"peak {peak / 2**20:.1f} MiB vs dense {full / 2**20:.0f} MiB")
    assert reps.shape == (n_reps, 2)
    assert peak < 0.25 * full
    # the replicate means scatter around the sample mean with the SE of a mean
    se = x.std(axis=0) / np.sqrt(n)
    assert np.abs(reps.mean(axis=0) - x.mean(axis=0)).max() < 5 * se.max()
    assert reps.std(axis=0) == pytest.approx(se, rel=0.25)
