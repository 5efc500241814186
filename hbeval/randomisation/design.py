"""The 2×2 factorial design: cells, batch assignment within strata, and re-randomisation.

Cell codes are used throughout: ``code = 2 * frame_shares + teaming``, so

====  ============  ===========
code  frame_arm     teaming_arm
====  ============  ===========
0     frame_only    no_teaming
1     frame_only    teaming
2     frame_shares  no_teaming
3     frame_shares  teaming
====  ============  ===========

Batch assignment is complete randomisation of the four cells within each stratum. A stratum
whose size is not a multiple of four ("misfits") gets ``n // 4`` families in every cell and
its ``n % 4`` remaining families go to distinct cells drawn at random, randomizr's rule,
so that every family's probability of every cell is exactly 1/4.

Sequential enrolment uses stratified permuted blocks of random size (:func:`block_sequence`)
or Pocock–Simon minimisation with a random element (:func:`pocock_simon_choice`). Their
randomness comes from a *keyed* generator (:func:`keyed_rng`, HMAC-SHA-256 of the study's
allocation key), so the coming allocations cannot be computed from anything stored in the
study folder. The ``*_draws`` functions redraw whole assignments many times at once under each
procedure, for randomisation inference.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hbeval.arms import CELLS, FRAME_ARMS, N_CELLS, TEAMING_ARMS, arms_of, cell_code  # noqa: F401  (the vocabulary)


def stratum_labels(clients: pd.DataFrame, strata: list[str] | tuple[str, ...]) -> pd.Series:
    """A text label per family, e.g. ``"Hämeenlinna|family_work"`` (``"all"`` with no strata)."""
    if not strata:
        return pd.Series("all", index=clients.index, dtype=object)
    parts = [clients[s].astype(object).where(clients[s].notna(), "(missing)").astype(str) for s in strata]
    lab = parts[0]
    for p in parts[1:]:
        lab = lab + "|" + p
    return lab.astype(object)


POOLED = "(pooled)"
#: a stratum expected to hold fewer families than this cannot fill the four cells once
MIN_EXPECTED_PER_STRATUM = 4


def coarsen_strata(clients: pd.DataFrame, strata: list[str] | tuple[str, ...], min_size: int) -> pd.Series:
    """Stratum labels with every stratum of fewer than ``min_size`` families merged (``[design]
    min_stratum_size``), by a pre-specified, deterministic rule.

    Notes
    -----
    Start from the full labels of :func:`stratum_labels`. Then, for ``k = len(strata) − 1`` down
    to 1: every family whose current stratum has fewer than ``min_size`` families is relabelled
    by its first ``k`` stratification variables only, ``"<v_1>|…|<v_k>|(pooled)"`` (the last
    variable is dropped first). The families still in a stratum below ``min_size`` are pooled
    into one stratum ``"(pooled)"``. Strata of ``min_size`` or more are never touched; the
    result depends only on the labels, not on row order.
    """
    lab = stratum_labels(clients, strata).astype(object)
    parts = [clients[s].astype(object).where(clients[s].notna(), "(missing)").astype(str) for s in strata]
    for k in range(len(strata) - 1, 0, -1):
        small = lab.map(lab.value_counts()) < min_size
        if not small.any():
            return lab
        prefix = parts[0]
        for p in parts[1:k]:
            prefix = prefix + "|" + p
        lab = lab.where(~small, prefix + "|" + POOLED)
    small = lab.map(lab.value_counts()) < min_size
    return lab.where(~small, POOLED).astype(object)


def small_strata(labels: pd.Series) -> tuple[float, list[str]]:
    """``(expected families per stratum, the strata below`` :data:`MIN_EXPECTED_PER_STRATUM` ``)``."""
    counts = labels.value_counts()
    expected = len(labels) / max(len(counts), 1)
    return expected, sorted(str(s) for s in counts.index[counts < MIN_EXPECTED_PER_STRATUM])


def draw_batch(clients: pd.DataFrame, strata: list[str] | tuple[str, ...], seed: int | Sequence[int]) -> pd.DataFrame:
    """Assign every row of ``clients`` to a cell, completely randomised within strata.

    The result does not depend on the row order of ``clients``: families are sorted by
    ``client_id`` within strata, and strata are taken in sorted order, before the seeded
    generator is used.

    Returns
    -------
    DataFrame with ``client_id``, ``frame_arm``, ``teaming_arm``, ``stratum``, ``cell``
    (the code), sorted by ``client_id``.
    """
    ids = np.asarray([str(v) for v in clients["client_id"].to_numpy()], dtype=object)
    lab = stratum_labels(clients, strata).to_numpy(dtype=object)
    # sort by (stratum, client_id), stably: the generator is used stratum by stratum in sorted order
    o1 = np.argsort(ids, kind="stable")
    order = o1[np.argsort(lab[o1], kind="stable")]
    ids, lab = ids[order], lab[order]
    codes = batch_codes(lab, seed)
    back = np.argsort(ids, kind="stable")
    frame, team = arms_of(codes[back])
    return pd.DataFrame({"client_id": ids[back], "frame_arm": frame, "teaming_arm": team, "stratum": lab[back],
                         "cell": codes[back]})


def batch_codes(sorted_stratum: np.ndarray, seed: int | Sequence[int] | np.random.Generator) -> np.ndarray:
    """The randomisation step of :func:`draw_batch`: cell codes for families already sorted
    by (stratum, client_id), the generator used stratum by stratum in that order.

    Each stratum of size ``n`` gets ``n // 4`` of every cell plus ``n % 4`` distinct cells drawn
    at random, in a uniformly random order (randomizr's ``block_ra`` rule for misfits).
    """
    lab = np.asarray(sorted_stratum, dtype=object)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    codes = np.empty(len(lab), dtype=np.int8)
    if len(lab):
        cut = np.flatnonzero(lab[1:] != lab[:-1]) + 1
        for a, b in zip(np.r_[0, cut], np.r_[cut, len(lab)]):
            codes[a:b] = _one_block(int(b - a), rng)
    return codes


def _one_block(n: int, rng: np.random.Generator) -> np.ndarray:
    base, r = divmod(n, N_CELLS)
    pattern = np.concatenate([np.tile(np.arange(N_CELLS, dtype=np.int8), base), rng.permutation(N_CELLS)[:r].astype(np.int8)])
    return rng.permutation(pattern)


def batch_draws(stratum: np.ndarray | pd.Series, n_draws: int, seed: int | np.random.Generator) -> np.ndarray:
    """Vectorised re-randomisation under the batch procedure (sorted random keys).

    Parameters
    ----------
    stratum : array of labels, one per family (in any order)
    n_draws : number of assignments to draw
    seed : seed or generator

    Returns
    -------
    ``int8`` array of shape ``(n_draws, n_families)`` of cell codes, each row one
    assignment with the distribution of :func:`draw_batch` (within strata, misfit rule).

    Notes
    -----
    A stratum of ``m = 4b + r`` families gets, in every draw, a uniformly random arrangement of
    its template: ``b`` of every cell, plus ``r`` distinct cells chosen at random for the
    misfits. Every family draws a 64-bit uniform key whose two low bits are overwritten by a
    template cell; sorting the keys (numpy's SIMD sort) orders the cells uniformly at random,
    and the cells are read off in sorted order. The misfit cells are the first ``r`` of the four
    cells ordered the same way. Uniform up to key ties (probability below ``m² / 2⁶³`` per
    stratum and draw). Strata are drawn in sorted-label order, keys a block of draws at a time
    (at most ``_KEY_BYTES`` held at once), so the draws depend only on the seed, the labels and
    ``n_draws``. About 2.5x faster than shuffling (``Generator.permuted``) each row.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lab = pd.Series(np.asarray(stratum)).astype(str)
    groups = list(lab.groupby(lab, sort=True).indices.values())
    n = len(lab)
    buf = np.empty((n_draws, n), dtype=np.int8)  # columns in stratum order
    low = np.uint64(3)
    cells = np.arange(N_CELLS, dtype=np.uint64)
    top = np.iinfo(np.uint64).max
    pos = 0
    for idx in groups:
        m = len(idx)
        base, r = divmod(m, N_CELLS)
        tmpl = np.tile(cells, base)
        rows = max(1, _KEY_BYTES // (8 * m))
        for a in range(0, n_draws, rows):
            k = min(rows, n_draws - a)
            keys = rng.integers(0, top, size=(k, m), dtype=np.uint64, endpoint=True)
            keys &= ~low
            keys[:, : base * N_CELLS] |= tmpl
            if r:
                k4 = rng.integers(0, top, size=(k, N_CELLS), dtype=np.uint64, endpoint=True) & ~low | cells
                k4.sort(axis=1)
                keys[:, base * N_CELLS :] |= k4[:, :r] & low
            keys.sort(axis=1)
            buf[a : a + k, pos : pos + m] = keys & low
        pos += m
    if not groups:
        return buf
    inv = np.empty(n, dtype=np.intp)
    inv[np.concatenate(groups)] = np.arange(n)
    return np.take(buf, inv, axis=1)


#: keys held at once by :func:`batch_draws` (8 bytes each): a stratum's draws are sorted a block at a time
_KEY_BYTES = 64 * 2**20


# ---------------------------------------------------------------------- keyed generator
BLOCKS_ALGORITHM = "hbeval-blocks/1"
MINIMISATION_ALGORITHM = "hbeval-minimisation/1"
BATCH_ALGORITHM = "hbeval-batch/1"


def keyed_rng(key: bytes, *parts: str | int) -> np.random.Generator:
    """A generator seeded by ``HMAC-SHA-256(key, parts)``.

    Notes
    -----
    The 256-bit HMAC digest seeds NumPy's PCG64 through ``SeedSequence``. HMAC is a
    pseudo-random function, so without ``key`` the seed of every block (and therefore every
    coming allocation) is unpredictable, and seeing past blocks tells nothing about the next
    one: each block has its own independent digest. This is how a sealed-envelope sequence is
    concealed without storing the sequence anywhere.
    """
    if not key:
        raise ValueError("an allocation key is required")
    msg = "\x1f".join(str(p) for p in parts).encode("utf-8")
    digest = hmac.new(key, msg, hashlib.sha256).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype="<u4").tolist())


def _check_block_sizes(block_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(b) for b in block_sizes)
    if not sizes or any(b <= 0 or b % N_CELLS for b in sizes):
        raise ValueError(f"block sizes must be positive multiples of {N_CELLS}: {block_sizes!r}")
    return sizes


def block_sequence(key: bytes, stratum: str, n: int, block_sizes: Sequence[int] = (4, 8)) -> np.ndarray:
    """The first ``n`` allocations of a stratum under permuted blocks of random size.

    Block ``k`` of stratum ``s`` draws its size uniformly from ``block_sizes`` and is a uniform
    random permutation of ``size / 4`` copies of each cell, both from
    ``keyed_rng(key, "hbeval-blocks/1", s, k)``.

    Returns
    -------
    ``int8`` array of cell codes (length ``n``).

    Notes
    -----
    Stratified permuted blocks (Matts & Lachin 1988); random block sizes make the end of a
    block hard to guess even for someone who sees the past allocations.
    """
    sizes = _check_block_sizes(block_sizes)
    out: list[np.ndarray] = []
    have, k = 0, 0
    while have < n:
        rng = keyed_rng(key, BLOCKS_ALGORITHM, stratum, k)
        size = sizes[int(rng.integers(len(sizes)))]
        out.append(rng.permutation(np.repeat(np.arange(N_CELLS, dtype=np.int8), size // N_CELLS)))
        have += size
        k += 1
    if not out:
        return np.empty(0, dtype=np.int8)
    return np.concatenate(out)[:n].astype(np.int8)


def block_draws(n: int, n_draws: int, block_sizes: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Vectorised redraws of one stratum's first ``n`` allocations under permuted blocks.

    Same distribution as :func:`block_sequence` with a fresh key per draw: block sizes
    uniform on ``block_sizes``, each block a uniform permutation of its balanced pattern.

    Returns
    -------
    ``int8`` array of shape ``(n_draws, n)``.
    """
    sizes = np.asarray(_check_block_sizes(block_sizes), dtype=np.int16)
    out = np.empty((n, n_draws), dtype=np.int8)
    if n == 0:
        return out.T.copy()
    # sequential urn sampling without replacement from each balanced block, vectorised over
    # draws: the same law as a uniform permutation of the block's pattern
    rows = np.arange(n_draws)
    rem = np.zeros((N_CELLS, n_draws), dtype=np.int16)  # cells left in the current block
    left = np.zeros(n_draws, dtype=np.int16)
    u = rng.random((n, n_draws))
    pick = rng.integers(len(sizes), size=(n, n_draws))
    for i in range(n):
        new = left == 0
        if new.any():
            q = sizes[pick[i, new]] // N_CELLS
            rem[:, new] = q
            left[new] = q * N_CELLS
        t = u[i] * left
        c0 = rem[0]
        c1 = c0 + rem[1]
        c2 = c1 + rem[2]
        c = (t >= c0).view(np.int8) + (t >= c1).view(np.int8) + (t >= c2).view(np.int8)
        out[i] = c
        rem[c, rows] -= 1
        left -= 1
    return np.ascontiguousarray(out.T)


def is_block_sequence(seq: np.ndarray, block_sizes: Sequence[int] = (4, 8)) -> bool:
    """Whether ``seq`` can be cut into balanced blocks of the given sizes, the last one
    possibly incomplete but never holding more than ``size / 4`` of a cell (a check for
    permuted-block allocations; dynamic programming over block boundaries)."""
    sizes = _check_block_sizes(block_sizes)
    seq = np.asarray(seq)
    n = len(seq)
    ok = np.zeros(n + 1, bool)
    ok[0] = True
    for i in range(n):
        if not ok[i]:
            continue
        for b in sizes:
            blk = seq[i:i + b]
            c = np.bincount(blk, minlength=N_CELLS)
            if len(blk) == b and (c == b // N_CELLS).all():
                ok[i + b] = True
            elif len(blk) < b and i + len(blk) == n and c.max() <= b // N_CELLS:
                return True
    return bool(ok[n])


def blocked_draws(stratum: np.ndarray | pd.Series, n_draws: int, block_sizes: Sequence[int],
                  seed: int | Sequence[int] | np.random.Generator) -> np.ndarray:
    """Redraws under stratified permuted blocks; families given in enrolment order.

    ``stratum[i]`` is the stratum of the ``i``-th family to enrol; within each stratum the
    families take the block sequence in the order they appear.

    Returns
    -------
    ``int8`` array of shape ``(n_draws, n_families)``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lab = pd.Series(np.asarray(stratum)).astype(str)
    out = np.empty((n_draws, len(lab)), dtype=np.int8)
    for _, idx in lab.groupby(lab, sort=True).indices.items():
        out[:, np.sort(idx)] = block_draws(len(idx), n_draws, block_sizes, rng)
    return out


# ---------------------------------------------------------------------- minimisation
def minimisation_scores(level_counts: np.ndarray) -> np.ndarray:
    """Pocock–Simon imbalance of each candidate cell.

    ``level_counts[..., f, c]`` is the number of families already in cell ``c`` at the new
    family's level of factor ``f``. The score of candidate ``c`` is
    ``Σ_f range_c'(counts_f + 1[c' = c])`` (range = max − min over the four cells).
    Leading dimensions broadcast (one per draw in :func:`minimisation_draws`).
    """
    counts = np.asarray(level_counts, dtype=np.int64)
    eye = np.eye(N_CELLS, dtype=np.int64)
    # (..., F, cand, cell)
    after = counts[..., :, None, :] + eye
    rng_ = after.max(axis=-1) - after.min(axis=-1)
    return rng_.sum(axis=-2)


def pocock_simon_choice(level_counts: np.ndarray, p: float, u: Sequence[float]) -> int:
    """One Pocock–Simon allocation with a random element.

    Parameters
    ----------
    level_counts : ``(n_factors, 4)`` counts at the new family's levels
    p : probability of taking a minimising cell
    u : two uniforms on [0, 1): ``u[0]`` decides minimising or not, ``u[1]`` picks the cell

    Notes
    -----
    Cells with the least imbalance (:func:`minimisation_scores`) form the set ``M``. When every
    cell ties, the cell is uniform on all four; otherwise with probability ``p`` it is uniform on
    ``M`` and with ``1 − p`` uniform on the other cells (Pocock & Simon 1975; Taves 1974).
    """
    score = minimisation_scores(level_counts)
    best = np.flatnonzero(score == score.min())
    if len(best) == N_CELLS:
        pool = best
    else:
        pool = best if u[0] < p else np.setdiff1d(np.arange(N_CELLS), best)
    return int(pool[min(int(u[1] * len(pool)), len(pool) - 1)])


def minimisation_draws(levels: np.ndarray, n_draws: int, p: float, rng: np.random.Generator,
                       start_counts: np.ndarray | None = None) -> np.ndarray:
    """Redraws under Pocock–Simon minimisation, families in enrolment order (simulation).

    Parameters
    ----------
    levels : ``(n, n_factors)`` integer level codes of each family, in enrolment order
    n_draws : number of assignments
    p : probability of a minimising cell
    rng : generator
    start_counts : optional ``(n_factors, n_levels, 4)`` counts of families assigned before
        (by other procedures), common to every draw

    Returns
    -------
    ``int8`` array ``(n_draws, n)``; loops over families, vectorised over draws.
    """
    levels = np.asarray(levels, dtype=np.int64)
    if levels.ndim == 1:
        levels = levels[:, None]
    n, n_f = levels.shape
    n_lev = int(levels.max()) + 1 if n else 1
    counts = np.zeros((n_draws, n_f, n_lev, N_CELLS), dtype=np.int64)
    if start_counts is not None:
        sc = np.asarray(start_counts)
        counts[:, :, : sc.shape[1], :] += sc[None, :, :n_lev, :]
    out = np.empty((n_draws, n), dtype=np.int8)
    fidx = np.arange(n_f)
    rows = np.arange(n_draws)
    for i in range(n):
        lc = counts[:, fidx, levels[i], :]  # (n_draws, F, 4)
        score = minimisation_scores(lc)
        is_best = score == score.min(axis=1, keepdims=True)
        all_tie = is_best.all(axis=1)
        take_best = rng.random(n_draws) < p
        pool = np.where((take_best | all_tie)[:, None], is_best, ~is_best)
        # uniform pick among the pool: random keys, masked argmax
        keys = np.where(pool, rng.random((n_draws, N_CELLS)), -1.0)
        c = keys.argmax(axis=1)
        out[:, i] = c
        counts[rows[:, None], fidx[None, :], levels[i][None, :], c[:, None]] += 1
    return out
