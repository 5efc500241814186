"""Batch assignment within strata, the keyed block sequence, block and minimisation redraws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from hbeval.randomisation.design import (
    CELLS,
    arms_of,
    batch_codes,
    batch_draws,
    block_draws,
    block_sequence,
    blocked_draws,
    cell_code,
    draw_batch,
    is_block_sequence,
    keyed_rng,
    minimisation_draws,
    minimisation_scores,
    pocock_simon_choice,
    stratum_labels,
)

# strata of every remainder mod 4, several misfits, a singleton
SIZES = (1, 2, 3, 4, 5, 6, 7, 9, 11)


def _clients(sizes=SIZES) -> pd.DataFrame:
    lab = np.repeat([f"s{i}" for i in range(len(sizes))], sizes)
    return pd.DataFrame({"client_id": [f"c{i:03d}" for i in range(len(lab))], "g": lab})


def _per_stratum_ok(codes: np.ndarray, labels: np.ndarray) -> bool:
    for lab in np.unique(labels):
        c = np.bincount(codes[labels == lab], minlength=4)
        if c.max() - c.min() > 1:
            return False
    return True


def test_cell_codes_round_trip():
    codes = np.arange(4)
    f, t = arms_of(codes)
    assert list(cell_code(pd.Series(f), pd.Series(t))) == [0, 1, 2, 3]
    assert [f"{a}/{b}" for a, b in zip(f, t)] == list(CELLS)


def test_stratum_labels_missing_and_none():
    df = pd.DataFrame({"a": ["x", None], "b": ["p", "q"]})
    assert list(stratum_labels(df, ["a", "b"])) == ["x|p", "(missing)|q"]
    assert list(stratum_labels(df, [])) == ["all", "all"]


def test_per_stratum_counts_differ_by_at_most_one():
    cl = _clients()
    for seed in range(200):
        a = draw_batch(cl, ["g"], seed)
        assert _per_stratum_ok(a["cell"].to_numpy(), a["stratum"].to_numpy())
    assert len(a) == len(cl) and a["client_id"].is_unique


def test_draw_batch_is_exactly_batch_codes_after_sorting():
    cl = _clients().sample(frac=1, random_state=3)
    for seed in range(20):
        a = draw_batch(cl, ["g"], seed)
        srt = a.sort_values(["stratum", "client_id"])
        assert (srt["cell"].to_numpy() == batch_codes(srt["stratum"].to_numpy(), seed)).all()


def _chi2_uniform_pvalues(codes: np.ndarray) -> np.ndarray:
    """Per-family chi-square p-values of 'each cell has probability 1/4' (codes: draws × families)."""
    counts = np.stack([(codes == c).sum(axis=0) for c in range(4)], axis=1)
    exp = codes.shape[0] / 4
    chi = ((counts - exp) ** 2 / exp).sum(axis=1)
    return stats.chi2.sf(chi, 3)


def test_every_family_has_probability_one_quarter_over_4000_seeds():
    """The randomisation step of draw_batch over 4,000 seeds; misfit strata included."""
    labels = np.repeat([f"s{i}" for i in range(len(SIZES))], SIZES)
    codes = np.stack([batch_codes(labels, seed) for seed in range(4000)])
    p = _chi2_uniform_pvalues(codes)
    # Bonferroni over families: rejects if any family's cell probabilities are off
    assert p.min() > 0.001 / len(labels), p.min()
    # the singleton stratum is the most sensitive to a wrong misfit rule
    assert np.allclose(np.bincount(codes[:, 0], minlength=4) / 4000, 0.25, atol=0.03)
    # overall goodness of fit: the p-values of the families are not piled up near zero
    assert (p < 0.01).sum() <= 3


def test_batch_draws_probability_one_quarter_and_balance():
    labels = np.repeat([f"s{i}" for i in range(len(SIZES))], SIZES)
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(labels))  # families in any order
    codes = batch_draws(labels[perm], 8000, 11)
    assert codes.dtype == np.int8 and codes.shape == (8000, len(labels))
    assert _chi2_uniform_pvalues(codes).min() > 0.001 / len(labels)
    for d in codes[:50]:
        assert _per_stratum_ok(d, labels[perm])


def test_a_broken_misfit_rule_would_be_caught():
    """The chi-square check has power: giving remainders to the first cells fails it."""
    labels = np.repeat([f"s{i}" for i in range(len(SIZES))], SIZES)
    rng = np.random.default_rng(0)
    bad = []
    for _ in range(4000):
        out = np.empty(len(labels), dtype=np.int8)
        start = 0
        for n in SIZES:
            base, r = divmod(n, 4)
            out[start:start + n] = rng.permutation(np.r_[np.tile(np.arange(4), base), np.arange(r)])
            start += n
        bad.append(out)
    assert _chi2_uniform_pvalues(np.array(bad)).min() < 1e-6


def test_same_seed_same_assignment_whatever_the_order():
    cl = _clients()
    a = draw_batch(cl, ["g"], 42)
    for k in range(5):
        b = draw_batch(cl.sample(frac=1, random_state=k), ["g"], 42)
        pd.testing.assert_frame_equal(a, b)
    assert not draw_batch(cl, ["g"], 43)["cell"].equals(a["cell"])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=13), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    shuffle=st.integers(min_value=0, max_value=10_000),
)
def test_property_balance_and_order_invariance(sizes, seed, shuffle):
    cl = _clients(tuple(sizes))
    a = draw_batch(cl, ["g"], seed)
    assert _per_stratum_ok(a["cell"].to_numpy(), a["stratum"].to_numpy())
    b = draw_batch(cl.sample(frac=1, random_state=shuffle).reset_index(drop=True), ["g"], seed)
    pd.testing.assert_frame_equal(a, b)
    # the vectorised redraws obey the same balance
    d = batch_draws(cl["g"].to_numpy(), 5, seed)
    for row in d:
        assert _per_stratum_ok(row, cl["g"].to_numpy())


# ---------------------------------------------------------------- keyed blocks
def _blocks_balanced(seq: np.ndarray, block_sizes=(4, 8)) -> bool:
    """Every prefix ending at a multiple of 4 where counts tie exists often; at least: counts
    never differ by more than max(block)/4 ... checked exactly via the block sequence."""
    c = np.zeros(4, int)
    for x in seq:
        c[x] += 1
        if c.max() - c.min() > max(block_sizes) // 4:
            return False
    return True


def _parses_into_blocks(seq: np.ndarray, sizes=(4, 8)) -> bool:
    return is_block_sequence(seq, sizes)


def test_block_sequence_is_made_of_balanced_blocks():
    key = b"test-key"
    for stratum in ("a", "b|c", "Hämeenlinna|home_help"):
        seq = block_sequence(key, stratum, 200)
        assert seq.dtype == np.int8 and len(seq) == 200
        # reconstruct the block boundaries from the keyed generator and check every block
        pos, k = 0, 0
        while pos < 200:
            r = keyed_rng(key, "hbeval-blocks/1", stratum, k)
            size = (4, 8)[int(r.integers(2))]
            blk = seq[pos:pos + size]
            if len(blk) == size:
                assert (np.bincount(blk, minlength=4) == size // 4).all()
            pos += size
            k += 1
        assert _blocks_balanced(seq)
        assert (block_sequence(key, stratum, 37) == seq[:37]).all()  # prefix-stable


def test_block_sequence_depends_on_key_and_stratum():
    a = block_sequence(b"k1", "s", 64)
    assert not (a == block_sequence(b"k2", "s", 64)).all()
    assert not (a == block_sequence(b"k1", "t", 64)).all()
    with pytest.raises(ValueError):
        keyed_rng(b"", "x")
    with pytest.raises(ValueError):
        block_sequence(b"k", "s", 4, (6,))


def test_block_sizes_are_random_and_both_used():
    sizes = []
    for k in range(400):
        r = keyed_rng(b"key", "hbeval-blocks/1", "s", k)
        sizes.append((4, 8)[int(r.integers(2))])
    frac = np.mean(np.array(sizes) == 4)
    assert 0.4 < frac < 0.6


def test_block_draws_balanced_and_uniform():
    rng = np.random.default_rng(1)
    d = block_draws(19, 6000, (4, 8), rng)
    assert d.shape == (6000, 19) and d.dtype == np.int8 and d.min() >= 0
    # every draw splits into balanced blocks of 4 or 8 (the last one possibly incomplete)
    assert all(_parses_into_blocks(row) for row in d[:500])
    assert not _parses_into_blocks(np.array([0, 0, 1, 2, 3, 3, 1, 2, 0, 0, 0, 1], dtype=np.int8))
    assert _chi2_uniform_pvalues(d).min() > 0.001 / 19
    # both block sizes occur: position 4..7 is a new block only when the first had size 4
    first4_balanced = np.array([(np.bincount(r[:4], minlength=4) == 1).all() for r in d])
    assert 0.5 < first4_balanced.mean() < 0.7  # P = 1/2 + 1/2 * P(8-block's first 4 balanced = 8/35)


def test_block_draws_match_the_keyed_sequence_in_distribution():
    """The redraws follow the same law as the keyed sequence (compare the chance that the
    first 4 allocations are balanced, 1/2 + 1/2·(2^4/C(8,4))= 0.614)."""
    keyed = np.array([(np.bincount(block_sequence(f"k{i}".encode(), "s", 4), minlength=4) == 1).all()
                      for i in range(3000)])
    drawn = np.array([(np.bincount(r, minlength=4) == 1).all()
                      for r in block_draws(4, 3000, (4, 8), np.random.default_rng(2))])
    expected = 0.5 + 0.5 * 16 / 70
    assert abs(keyed.mean() - expected) < 0.035 and abs(drawn.mean() - expected) < 0.035


def test_blocked_draws_keep_enrolment_order_within_strata():
    lab = np.array(["a", "b", "a", "a", "b", "a", "b", "b", "a", "a", "a", "a"])
    d = blocked_draws(lab, 300, (4,), 3)
    for row in d:
        a = row[lab == "a"]
        assert (np.bincount(a[:4], minlength=4) == 1).all() and (np.bincount(a[4:8], minlength=4) == 1).all()
        assert (np.bincount(row[lab == "b"], minlength=4) == 1).all()


# ---------------------------------------------------------------- minimisation
def test_minimisation_scores_and_choice():
    counts = np.array([[1, 0, 0, 0], [0, 0, 1, 0]])
    assert list(minimisation_scores(counts)) == [3, 2, 3, 2]
    assert pocock_simon_choice(counts, 0.8, [0.1, 0.0]) == 1
    assert pocock_simon_choice(counts, 0.8, [0.1, 0.99]) == 3
    assert pocock_simon_choice(counts, 0.8, [0.9, 0.0]) in (0, 2)
    assert pocock_simon_choice(np.zeros((2, 4)), 0.8, [0.9, 0.6]) == 2  # all tie: uniform on all four


def test_minimisation_draws_balance_the_margins():
    rng = np.random.default_rng(4)
    levels = np.column_stack([rng.integers(0, 2, 120), rng.integers(0, 5, 120)])
    d = minimisation_draws(levels, 500, 0.9, rng)
    assert d.shape == (500, 120) and d.dtype == np.int8
    # marginal imbalance within each factor level stays small, far below complete randomisation
    worst = []
    for row in d:
        w = 0
        for f in range(2):
            for lev in np.unique(levels[:, f]):
                c = np.bincount(row[levels[:, f] == lev], minlength=4)
                w = max(w, c.max() - c.min())
        worst.append(w)
    assert np.mean(worst) <= 3
    assert _chi2_uniform_pvalues(d[:, :1]).min() > 0.001  # first family: uniform


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=5),
    block_sizes=st.sampled_from([(4,), (8,), (4, 8), (4, 8, 12)]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_property_blocked_draws_are_blocks_within_strata(sizes, block_sizes, seed):
    rng = np.random.default_rng(seed)
    lab = rng.permutation(np.repeat([f"s{i}" for i in range(len(sizes))], sizes))  # enrolment order
    d = blocked_draws(lab, 20, block_sizes, seed)
    assert d.shape == (20, len(lab)) and d.dtype == np.int8
    for row in d:
        for s_ in np.unique(lab):
            assert _parses_into_blocks(row[lab == s_], block_sizes)
    # the keyed sequence obeys the same rule
    for s_ in np.unique(lab):
        assert _parses_into_blocks(block_sequence(seed.to_bytes(8, "little") + b"k", s_, int((lab == s_).sum()), block_sizes),
                                   block_sizes)


def test_is_block_sequence():
    assert is_block_sequence(np.array([0, 1, 2, 3, 3, 2, 1, 0, 0, 1], dtype=np.int8))
    assert is_block_sequence(np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.int8))  # one block of 8
    assert not is_block_sequence(np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.int8), (4,))
    assert not is_block_sequence(np.array([0, 0, 0], dtype=np.int8))
