"""The bootstrap engine's fast paths give the same bits as the slow ones: the stacked
block product (:func:`hbeval.stats.bootstrap.block_matmul`) and counts returned with their
columns reordered (``orders`` of :func:`hbeval.stats.bootstrap.bootstrap_counts`)."""

from __future__ import annotations

import numpy as np
import pytest

from hbeval.stats.bootstrap import BOOT_BLOCK, arm_members, block_matmul, bootstrap_counts


def _block_loop(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The reference: one BLAS call per block of BOOT_BLOCK rows (a lone last row duplicated)."""
    out = np.empty((a.shape[0], b.shape[1]))
    for s in range(0, a.shape[0], BOOT_BLOCK):
        blk = a[s : s + BOOT_BLOCK]
        if len(blk) == 1:
            out[s] = (np.vstack([blk, blk]) @ b)[0]
        else:
            np.matmul(blk, b, out=out[s : s + BOOT_BLOCK])
    return out


@pytest.mark.parametrize("rows", [1, 15, 16, 17, 33, 16 * 40 + 7])
@pytest.mark.parametrize("k, m", [(1, 1), (7, 3), (40, 13), (301, 2)])
def test_stacked_block_product_is_the_block_loop_bit_for_bit(rows: int, k: int, m: int) -> None:
    rng = np.random.default_rng(rows * 1000 + k)
    wide = rng.integers(0, 4, size=(rows, k + 5)).astype(float)
    a = wide[:, 2 : 2 + k]  # a strided view, as the engine passes column ranges of a chunk
    b = rng.normal(size=(k, m)) * 1e3
    got = block_matmul(a, b)
    assert np.array_equal(got, _block_loop(a, b))
    assert np.allclose(got, a @ b, rtol=1e-12, atol=1e-9)


def test_a_replicate_has_the_same_bits_in_any_chunk() -> None:
    """Row r of the product does not depend on how many rows come with it."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, size=(16 * 9 + 3, 50)).astype(float)
    b = rng.normal(size=(50, 6))
    full = block_matmul(a, b)
    for start, stop in ((0, 16), (16, 64), (64, 16 * 9 + 3), (16 * 9, 16 * 9 + 1)):
        assert np.array_equal(block_matmul(a[start:stop], b), full[start:stop])


def test_counts_in_a_given_column_order_are_the_same_draws() -> None:
    rng = np.random.default_rng(4)
    arms = rng.choice(np.array(["a", "b", "comparison"], dtype=object), 500)
    members = arm_members(arms)[1]
    orders = [rng.permutation(len(m)) for m in members]
    orders[1] = None  # an arm left in its own order
    plain = [(s, [p.copy() for p in parts]) for s, parts in bootstrap_counts(arms, 53, np.random.default_rng(8), 4000)]
    ordered = [(s, [p.copy() for p in parts])  # the engine reuses its buffers: copy each chunk
               for s, parts in bootstrap_counts(arms, 53, np.random.default_rng(8), 4000, orders=orders)]
    assert len(plain) == len(ordered) > 1  # several chunks
    for (s0, p0), (s1, p1) in zip(plain, ordered):
        assert s0 == s1
        for a, (x, y) in enumerate(zip(p0, p1)):
            want = x if orders[a] is None else x[:, orders[a]]
            assert np.array_equal(y, want)
            assert (y.sum(axis=1) == len(members[a])).all()  # every arm keeps its size
