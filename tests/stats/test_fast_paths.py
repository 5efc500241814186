"""Fast paths that must give the bits of the plain computation (issue 17, small studies in
seconds): the RI interval search (:meth:`hbeval.stats.ri.RIInversion.bound`) against the same
search evaluating :meth:`~hbeval.stats.ri.RIInversion.pvalue` at every step, and the bootstrap
refits (:func:`hbeval.stats.icer.bootstrap_ols`) against solving every replicate on its own."""

from __future__ import annotations

import numpy as np
import pytest

import hbeval.stats.bootstrap as bootstrap
import hbeval.stats.icer as icer
from hbeval.randomisation.design import batch_draws
from hbeval.stats.factorial import factorial_data
from hbeval.stats.ri import RIInversion, ri_inversions


def _plain_bound(inv: RIInversion, sign: int, alpha: float) -> float:
    """The search as first written: doubling steps, then 64 bisections, each step a full
    :meth:`RIInversion.pvalue`."""
    scale = float(np.std(inv.a)) or abs(inv.estimate) or 1.0
    inside, step = inv.estimate, scale
    for _ in range(60):
        out = inv.estimate + sign * step
        if inv.pvalue(out) <= alpha:
            break
        inside, step = out, 2 * step
    else:
        return sign * np.inf
    for _ in range(64):
        mid = 0.5 * (inside + out)
        if mid in (inside, out):
            break
        if inv.pvalue(mid) <= alpha:
            out = mid
        else:
            inside = mid
    return 0.5 * (inside + out)


def _same(x: float, y: float) -> bool:
    return x == y or (np.isnan(x) and np.isnan(y))


@pytest.mark.parametrize("n", [12, 24, 60])
def test_ri_bounds_are_the_plain_search_bit_for_bit_on_real_inversions(n):
    rng = np.random.default_rng(n)
    strata = np.repeat(np.array(["a", "b", "c"]), n // 3)
    cell = batch_draws(strata, 1, rng)[0]
    start = rng.normal(size=n)
    y = np.round(start + 0.4 * (cell >= 2) + rng.normal(size=n), 1)  # rounded scores: ties among the draws
    d = factorial_data(y, cell.astype(float), strata, start)
    draws = batch_draws(strata, 999, rng)
    bounds = 0
    for inv in ri_inversions(d, draws).values():
        for sign in (-1, 1):
            for alpha in (0.05, 0.2):
                fast, plain = inv.bound(sign, alpha), _plain_bound(inv, sign, alpha)
                assert _same(fast, plain), (n, sign, alpha, fast, plain)
                bounds += np.isfinite(plain)
    assert bounds > 0  # some finite bounds were searched, not only unbounded sides


def test_ri_bounds_are_the_plain_search_bit_for_bit_on_awkward_inversions():
    rng = np.random.default_rng(3)
    cases = 0
    for trial in range(120):
        D = int(rng.choice([3, 40, 2000]))
        a = rng.normal(size=D) * float(rng.choice([1e-3, 1.0, 1e3]))
        if trial % 3 == 0:
            a = np.round(a, 1)  # exact ties
        b = rng.normal(size=D) * float(rng.choice([0.0, 0.01, 0.3]))  # a draw's slope: its overlap with the observed arms
        if trial % 7 == 0:
            a[:2] = np.nan  # draws without an estimate
        if trial % 11 == 0:
            b[2:3] = np.inf
        est = float(rng.normal()) if trial % 13 else float("nan")
        inv = RIInversion(estimate=est, a=a, b=b, exact=trial % 5 == 0)
        for sign in (-1, 1):
            with np.errstate(invalid="ignore"):
                fast, plain = inv.bound(sign, 0.05), _plain_bound(inv, sign, 0.05)
            assert _same(fast, plain), (trial, sign, fast, plain)
            cases += np.isfinite(plain)
    assert cases > 50


def _solve_each(M: np.ndarray, r: np.ndarray, log: list[int]) -> np.ndarray:
    """Every replicate on its own: ``np.linalg.solve``, or ``pinv`` when it refuses."""
    sol = np.empty_like(r)
    for b in range(len(r)):
        try:
            s = np.linalg.solve(M[b : b + 1], r[b : b + 1, :, None])[0, :, 0]
            if not np.isfinite(s).all():
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            log.append(b)
            s = np.linalg.pinv(M[b]) @ r[b]
        sol[b] = s
    return sol


def test_bootstrap_refits_are_each_replicate_solved_alone_bit_for_bit(monkeypatch):
    # 4 arms of 5-7 families over 3 strata: many replicates lose a stratum in an arm (singular)
    rng = np.random.default_rng(8)
    arm = np.repeat(np.array(["a", "b", "c", "d"]), [5, 6, 7, 6])
    stratum = rng.choice(np.array(["s1", "s2", "s3"]), size=len(arm), p=[0.6, 0.3, 0.1])
    x = rng.normal(size=len(arm))
    cost = rng.gamma(2.0, 1000.0, size=len(arm))
    S = (stratum[:, None] == np.array(["s2", "s3"])).astype(float)
    A = (arm[:, None] == np.array(["b", "c", "d"])).astype(float)
    designs = [np.column_stack([np.ones(len(arm)), A, S, x]), np.column_stack([np.ones(len(arm)), A[:, 2], S])]
    ys = [cost, x]
    fast = icer.bootstrap_ols(designs, ys, arm, 400, np.random.default_rng(1), groups=stratum)
    refused: list[int] = []
    monkeypatch.setattr(icer, "_solve_batch", lambda M, r: _solve_each(M, r, refused))
    plain = icer.bootstrap_ols(designs, ys, arm, 400, np.random.default_rng(1), groups=stratum)
    assert refused, "the case must have singular replicates"
    for f, p in zip(fast, plain):
        assert np.array_equal(f, p, equal_nan=True)


def test_a_matrix_with_a_zero_row_is_refused_by_solve():
    """What :func:`hbeval.stats.icer.bootstrap_ols` relies on to skip trying such systems."""
    rng = np.random.default_rng(2)
    for p in (2, 5, 11):
        for j in range(p):
            M = rng.normal(size=(p, p)) * 1e3
            M[j] = 0.0
            with pytest.raises(np.linalg.LinAlgError):
                np.linalg.solve(M[None], np.ones((1, p, 1)))


@pytest.mark.parametrize("base", [0, 1, 2**32 - 1, 2**32, 5_000_000_000_123, 2**63 - 1])
def test_block_generators_are_default_rng_of_the_integer_list(base):
    """bootstrap._block_rng(words of base, a, b) is default_rng([base, a, b]): same state, same draws."""
    template = bootstrap._seed_words(base)
    for a, b in [(0, 0), (0, 1), (3, 0), (4, 123_456), (1, 2**32 - 1), (2, 2**32), (2**33 + 5, 7)]:
        ours, ref = bootstrap._block_rng(template, a, b), np.random.default_rng([base, a, b])
        assert ours.bit_generator.state == ref.bit_generator.state
        assert np.array_equal(ours.integers(0, 9, size=40), ref.integers(0, 9, size=40))


def _plain_counts(members, n_reps, base):
    """Resampling counts as first written: a default_rng per arm and block, 2-D integer draws."""
    out = []
    for a, idx in enumerate(members):
        m, cnt = len(idx), np.zeros((n_reps, len(idx)))
        for s in range(0, n_reps, bootstrap.BOOT_BLOCK):
            gen = np.random.default_rng([base, a, s // bootstrap.BOOT_BLOCK])
            r = min(bootstrap.BOOT_BLOCK, n_reps - s)
            if m:
                d = gen.integers(0, m, size=(r, m))
                cnt[s : s + r] = [np.bincount(row, minlength=m) for row in d]
        out.append(cnt)
    return out


def test_bootstrap_counts_are_the_plain_draws_bit_for_bit():
    rng = np.random.default_rng(11)
    arms = rng.choice(["a", "b", "c", "d"], size=301, p=[0.5, 0.3, 0.19, 0.01])
    members = bootstrap.arm_members(arms)[1]
    base = int(np.random.default_rng(4).integers(2**63))
    want = _plain_counts(members, 203, base)
    got = [np.zeros_like(w) for w in want]
    for start, parts in bootstrap.bootstrap_counts(arms, 203, np.random.default_rng(4), max_bytes=64 * 301 * 8):
        for g, p in zip(got, parts):
            g[start : start + len(p)] = p
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
