"""The one bootstrap engine: resampling counts drawn within arms, a memory-bounded chunk of
replicates at a time, reduced block by block so that no result depends on the chunk size.

Every bootstrap of the package (costs, cost differences, the CEA, ROSI) draws from
:func:`bootstrap_counts` (or its whole-matrix and mean forms below).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hbeval.stats.ri import blas_single_thread

#: replicates per random stream: the counts of replicates ``b`` of arm ``a`` come from the
#: generator ``default_rng([base, a, b // BOOT_BLOCK])``, and every statistic is reduced
#: block by block, so the results do not depend on how many replicates are held in memory
BOOT_BLOCK = 16
#: memory bound of one chunk of resampling counts (``chunk × n`` float64), in bytes: a
#: performance parameter only (see :data:`BOOT_BLOCK`)
BOOT_CHUNK_BYTES = 256 * 2**20
#: arms larger than ``_BUCKET_FROM`` units draw their counts bucket by bucket of ``_BUCKET``
#: units (multinomial bucket totals, then uniform draws inside each bucket: the same
#: distribution, with the counting kept inside the CPU cache)
_BUCKET = 1 << 14
_BUCKET_FROM = 1 << 16


def arm_members(arms: np.ndarray) -> tuple[list[Any], list[np.ndarray]]:
    """The resampling arms of ``arms`` (one label per unit) as :func:`bootstrap_counts` uses
    them: the labels sorted by ``str`` and, for each, the ascending row indices of its units."""
    arms = np.asarray(arms)
    if len(arms) == 0:
        return [], []
    codes, uniq = pd.factorize(arms, use_na_sentinel=False)
    order = sorted(range(len(uniq)), key=lambda k: str(uniq[k]))
    rank = np.empty(len(uniq), dtype=np.intp)
    rank[order] = np.arange(len(uniq))
    c = rank[codes]
    rows = np.argsort(c, kind="stable")
    bounds = np.cumsum(np.bincount(c, minlength=len(uniq)))[:-1]
    return [uniq[k] for k in order], np.split(rows, bounds)


def _draw_counts(gen: np.random.Generator, m: int, out: np.ndarray) -> None:
    """Fill ``out`` ``(r, m)`` with the counts of ``m`` draws with replacement among ``m``
    units, one replicate per row."""
    r = len(out)
    if m == 0:
        return
    if m <= _BUCKET_FROM:
        d = gen.integers(0, m, size=r * m).reshape(r, m)  # the same draws as size=(r, m), faster
        if r * m <= 1 << 17:  # one bincount for the block (small arms)
            d += (np.arange(r) * m)[:, None]
            out[:] = np.bincount(d.ravel(), minlength=r * m).reshape(r, m)
        else:
            for i in range(r):
                out[i] = np.bincount(d[i], minlength=m)
        return
    nb = -(-m // _BUCKET)
    last = m - _BUCKET * (nb - 1)
    p = np.full(nb, _BUCKET / m)
    p[-1] = last / m
    per_bucket = gen.multinomial(m, p, size=r)
    for i in range(r):
        k_last = int(per_bucket[i, -1])
        d = gen.integers(0, _BUCKET, size=m - k_last)
        pos = 0
        for j in range(nb - 1):
            k = int(per_bucket[i, j])
            out[i, j * _BUCKET : (j + 1) * _BUCKET] = np.bincount(d[pos : pos + k], minlength=_BUCKET)
            pos += k
        out[i, (nb - 1) * _BUCKET :] = np.bincount(gen.integers(0, last, size=k_last), minlength=last)


def _block_rng(template: np.ndarray, arm: int, block: int) -> np.random.Generator:
    """``np.random.default_rng([base, arm, block])``, the same generator bit for bit, about
    twice as fast: ``template`` is :func:`_seed_words` of ``base``.

    ``SeedSequence`` turns a list of integers into the concatenation of their 32-bit words
    (least significant first, ``[0]`` for 0) before mixing; building that array here skips
    its per-call coercion of Python integers, which dominated the cost of a generator (one per
    arm and block of :data:`BOOT_BLOCK` replicates). ``tests/stats/test_fast_paths.py``
    compares the states."""
    if arm >= 1 << 32 or block >= 1 << 32:  # more than one word each: the general path
        return np.random.default_rng([_seed_int(template), arm, block])
    words = template.copy()
    words[-2] = arm
    words[-1] = block
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


def _seed_words(base: int) -> np.ndarray:
    """The 32-bit words of ``base`` as ``SeedSequence`` coerces it, and two free slots."""
    words = []
    while base > 0:
        words.append(base & 0xFFFFFFFF)
        base >>= 32
    return np.array([*(words or [0]), 0, 0], dtype=np.uint32)


def _seed_int(template: np.ndarray) -> int:
    return sum(int(w) << (32 * i) for i, w in enumerate(template[:-2]))


#: an arm's chunk of counts of at most this many entries is drawn by :func:`_small_arm_counts`
_SMALL_CHUNK = 1 << 17
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED  # numpy's SeedSequence
_MIX_L, _MIX_R, _M32 = 0xCA01F9DD, 0x4973F715, 0xFFFFFFFF
_PCG_MULT, _M128 = 0x2360ED051FC65DA44385DF649FCCF645, (1 << 128) - 1  # PCG64's 128-bit LCG multiplier


def _block_states(template: np.ndarray, arm: int, first: int, n_blocks: int) -> list[tuple[int, int]]:
    """The PCG64 ``(state, inc)`` of :func:`_block_rng` ``(template, arm, b)`` for the blocks
    ``b = first … first + n_blocks − 1`` (``arm`` and every ``b`` below 2**32): the same numbers,
    for all the blocks at once, in well under half the time (~7 µs a block with setting it, from ~17).

    ``SeedSequence``'s hashing and mixing of the entropy words (numpy's ``bit_generator.pyx``:
    ``mix_entropy`` into a pool of four words, then ``generate_state(4, uint64)``) is uint32
    arithmetic whose multipliers do not depend on the data, so it runs on arrays, one element
    per block; then ``pcg64_set_seed``: ``inc = 2 seq + 1``, one LCG step from 0, ``+ seed``,
    one more step (128-bit, in Python integers). ``tests/stats/test_fast_paths.py`` compares
    the states with ``default_rng([base, arm, b])``'s."""
    entropy = [np.full(n_blocks, int(w), np.uint32) for w in template[:-2]]
    entropy += [np.full(n_blocks, arm, np.uint32), np.arange(first, first + n_blocks, dtype=np.int64).astype(np.uint32)]
    hc = _INIT_A

    def xorshift(v: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.bitwise_xor(v, np.right_shift(v, np.uint32(16)))
        return out

    def hashmix(v: np.ndarray) -> np.ndarray:
        nonlocal hc
        v = np.bitwise_xor(v, np.uint32(hc))
        hc = (hc * _MULT_A) & _M32
        return xorshift(np.multiply(v, np.uint32(hc)))

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return xorshift(np.subtract(np.multiply(np.uint32(_MIX_L), x), np.multiply(np.uint32(_MIX_R), y)))

    pool = [hashmix(entropy[i] if i < len(entropy) else np.zeros(n_blocks, np.uint32)) for i in range(4)]
    for i_src in range(4):
        for i_dst in range(4):
            if i_src != i_dst:
                pool[i_dst] = mix(pool[i_dst], hashmix(pool[i_src]))
    for i_src in range(4, len(entropy)):
        for i_dst in range(4):
            pool[i_dst] = mix(pool[i_dst], hashmix(entropy[i_src]))
    hb, words = _INIT_B, []
    for i in range(8):
        v = np.bitwise_xor(pool[i % 4], np.uint32(hb))
        hb = (hb * _MULT_B) & _M32
        words.append(xorshift(np.multiply(v, np.uint32(hb))).astype(np.uint64))
    u64 = [(words[2 * k] | (words[2 * k + 1] << np.uint64(32))).tolist() for k in range(4)]
    out = []
    for s0, s1, i0, i1 in zip(*u64):
        inc = ((((i0 << 64) | i1) << 1) | 1) & _M128
        state = ((inc + ((s0 << 64) | s1)) * _PCG_MULT + inc) & _M128
        out.append((state, inc))
    return out


def _small_arm_counts(gen: np.random.Generator, states: list[tuple[int, int]], m: int, out: np.ndarray,
                      order: np.ndarray | None) -> None:
    """A chunk of counts of a small arm (``out`` ``(c, m)``, ``c · m`` ≤ :data:`_SMALL_CHUNK`):
    block by block, ``gen``'s PCG64 set to the block's state (a fresh ``default_rng`` of the
    block: nothing else is held between draws) draws ``m`` integers per replicate as
    :func:`_draw_counts` does, and one ``bincount`` counts the whole chunk (the same integers,
    so the same counts); columns in ``order`` when given."""
    c = len(out)
    d = np.empty(c * m, dtype=np.int64)
    bg = gen.bit_generator
    for j, (state, inc) in enumerate(states):
        bg.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0, "uinteger": 0}
        lo, hi = j * BOOT_BLOCK * m, min((j + 1) * BOOT_BLOCK, c) * m
        d[lo:hi] = gen.integers(0, m, size=hi - lo)
    d += np.repeat(np.arange(c, dtype=np.int64) * m, m)
    counts = np.bincount(d, minlength=c * m).reshape(c, m)
    if order is None:
        out[:] = counts
    else:
        np.take(counts.astype(np.float64), order, axis=1, out=out)


def _chunk_rows(n: int, max_bytes: float) -> int:
    return max(BOOT_BLOCK, int(max_bytes // (8 * max(n, 1))) // BOOT_BLOCK * BOOT_BLOCK)


def _count_chunks(members: list[np.ndarray], n_reps: int, rng: np.random.Generator, max_bytes: float,
                  orders: Sequence[np.ndarray | None] | None = None) -> Iterator[tuple[int, list[np.ndarray]]]:
    base = int(rng.integers(2**63))  # drawn now, not when the generator below first runs
    template = _seed_words(base)
    orders = list(orders) if orders is not None else [None] * len(members)

    def chunks() -> Iterator[tuple[int, list[np.ndarray]]]:
        chunk = min(_chunk_rows(sum(len(i) for i in members), max_bytes), max(n_reps, 1))
        buffers = [np.empty((chunk, len(idx))) for idx in members]  # reused: one chunk in memory
        reseeded = np.random.Generator(np.random.PCG64(0))  # its state is set block by block (_small_arm_counts)
        for start in range(0, n_reps, chunk):
            c = min(chunk, n_reps - start)
            parts = []
            for a, (idx, buf, order) in enumerate(zip(members, buffers, orders)):
                cnt = buf[:c]
                m = len(idx)
                first, n_blocks = start // BOOT_BLOCK, -(-c // BOOT_BLOCK)
                if 0 < m and c * m <= _SMALL_CHUNK and a < 1 << 32 and first + n_blocks <= 1 << 32:
                    _small_arm_counts(reseeded, _block_states(template, a, first, n_blocks), m, cnt, order)
                    parts.append(cnt)
                    continue
                tmp = None if order is None else np.empty((BOOT_BLOCK, len(idx)))
                for s in range(0, c, BOOT_BLOCK):
                    gen = _block_rng(template, a, (start + s) // BOOT_BLOCK)  # default_rng([base, a, block])
                    if tmp is None or order is None:
                        _draw_counts(gen, len(idx), cnt[s : s + BOOT_BLOCK])
                    else:  # the block's columns reordered while it is in cache
                        r = len(cnt[s : s + BOOT_BLOCK])
                        _draw_counts(gen, len(idx), tmp[:r])
                        np.take(tmp[:r], order, axis=1, out=cnt[s : s + r])
                parts.append(cnt)
            yield start, parts

    return chunks()


def bootstrap_counts(arms: np.ndarray, n_reps: int, rng: np.random.Generator, max_bytes: float = BOOT_CHUNK_BYTES,
                     orders: Sequence[np.ndarray | None] | None = None) -> Iterator[tuple[int, list[np.ndarray]]]:
    """The bootstrap engine: resampling counts drawn within arms, a memory-bounded chunk of
    replicates at a time.

    Parameters
    ----------
    arms : one label per unit; every arm keeps its size in every replicate (stratified
        nonparametric bootstrap, Efron & Tibshirani 1993, §6.4).
    n_reps : replicates.
    rng : the caller's generator; exactly one number is drawn from it (the base seed).
    max_bytes : memory bound of one chunk (``chunk × n × 8`` bytes); it changes no result.
    orders : optional, per arm, a permutation of its units (or None): ``counts[a]`` then has
        its columns in that order (``counts[a][:, j]`` is unit ``orders[a][j]``); the same
        draws, reordered block by block while they are in cache.

    Yields
    ------
    ``(start, counts)`` for replicates ``start … start + c − 1``: ``counts[a]`` is a
    ``(c, m_a)`` float64 array, how often each unit of arm ``a`` (in the order and with the
    row indices of :func:`arm_members`) is drawn in each replicate. The arrays are reused for
    the next chunk: reduce (or copy) them before asking for it.

    Notes
    -----
    Replicates come in blocks of :data:`BOOT_BLOCK`, each arm and block with its own
    generator ``default_rng([base, a, block])``, and a chunk is a whole number of blocks, so
    the counts of a replicate are the same whatever ``max_bytes``; consumers reduce each
    block of counts to their per-replicate statistic at once (:func:`block_matmul`).
    """
    return _count_chunks(arm_members(arms)[1], n_reps, rng, max_bytes, orders)


def block_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` computed :data:`BOOT_BLOCK` rows of ``a`` at a time, so that a replicate's
    statistic is the same bits whatever the chunk it was computed in.

    The whole blocks go to BLAS as one stacked product (``(blocks, BOOT_BLOCK, k) @ (k, m)``:
    numpy's matmul loop calls the same ``BOOT_BLOCK``-row product per block, without a Python
    call per block); a last partial block is multiplied on its own."""
    out = np.empty((a.shape[0], b.shape[1]))
    full = a.shape[0] // BOOT_BLOCK * BOOT_BLOCK
    if full:
        np.matmul(a[:full].reshape(-1, BOOT_BLOCK, a.shape[1]), b, out=out[:full].reshape(-1, BOOT_BLOCK, b.shape[1]))
    rest = a[full:]
    if len(rest) == 1:  # keep it a matrix product (not a vector one): same kernel as the rest
        out[full] = (np.vstack([rest, rest]) @ b)[0]
    elif len(rest):
        np.matmul(rest, b, out=out[full:])
    return out


def bootstrap_weights(arms: np.ndarray, n_reps: int, rng: np.random.Generator,
                      max_bytes: float = BOOT_CHUNK_BYTES) -> np.ndarray:
    """Resampling counts, drawn within arms: ``(n_reps, n)`` float array whose row ``b``
    holds how often each unit is drawn in replicate ``b``; each arm keeps its size.

    The whole matrix, for small problems and tests: the same draws as
    :func:`bootstrap_counts` (same ``rng`` state), which the analyses use chunk by chunk.
    """
    arms = np.asarray(arms)
    members = arm_members(arms)[1]
    w = np.zeros((n_reps, len(arms)))
    for start, parts in _count_chunks(members, n_reps, rng, max_bytes):
        for idx, cnt in zip(members, parts):
            w[start : start + len(cnt), idx] = cnt
    return w


def bootstrap_means(x: np.ndarray, n_reps: int, rng: np.random.Generator,
                    max_bytes: float = BOOT_CHUNK_BYTES) -> np.ndarray:
    """Bootstrap replicates of column means: ``x`` is ``(n, k)``; returns ``(n_reps, k)``
    (:func:`bootstrap_arm_means` with one arm)."""
    return bootstrap_arm_means(x, np.zeros(len(x), dtype=np.int8), [0], n_reps, rng, max_bytes)[:, 0]


def bootstrap_arm_means(x: np.ndarray, arm: np.ndarray, arms_order: tuple[Any, ...] | list[Any], n_reps: int,
                        rng: np.random.Generator, max_bytes: float = BOOT_CHUNK_BYTES) -> np.ndarray:
    """Bootstrap replicates of the column means of ``x`` ``(n, k)`` within each arm, resampling
    within arms: ``(n_reps, len(arms_order), k)``, NaN for an arm without units."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    labels, members = arm_members(arm)
    where = {lab: g for g, lab in enumerate(labels)}
    use = [(j, where[a]) for j, a in enumerate(arms_order) if a in where]
    xs = {g: x[members[g]] for _, g in use}
    out = np.full((n_reps, len(arms_order), x.shape[1]), np.nan)
    with blas_single_thread():  # skinny products: BLAS threads only add overhead
        for start, parts in _count_chunks(members, n_reps, rng, max_bytes):
            c = len(parts[0])
            for j, g in use:
                out[start : start + c, j] = block_matmul(parts[g], xs[g]) / len(members[g])
    return out


def percentile_ci(reps: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    a = (1 - level) / 2
    return np.quantile(reps, a, axis=axis), np.quantile(reps, 1 - a, axis=axis)
