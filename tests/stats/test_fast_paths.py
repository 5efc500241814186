"""Fast paths that must give the bits of the plain computation (issue 17, small studies in
seconds): the RI interval search (:meth:`hbeval.stats.ri.RIInversion.bound`) against the same
search evaluating :meth:`~hbeval.stats.ri.RIInversion.pvalue` at every step, and the bootstrap
refits (:func:`hbeval.stats.icer.bootstrap_ols`) against solving every replicate on its own;
the RI null draws against computing them chunk by chunk, the closed-form singularity test
against LAPACK's determinant, the block generators' vectorised seeding against
``default_rng``, the string fast path of the strata helpers against pandas."""

from __future__ import annotations

import numpy as np
import pytest

import hbeval.stats.bootstrap as bootstrap
import hbeval.stats.icer as icer
import hbeval.stats.ri as ri
from hbeval.randomisation.design import batch_draws
from hbeval.stats.factorial import factorial_data
from hbeval.stats.ols import drop_singleton_strata, strata_dummies
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


@pytest.mark.parametrize("n", [10, 24, 61])
def test_ri_null_draws_are_the_chunk_by_chunk_computation_bit_for_bit(n):
    """_ri_factorial runs its products chunk by chunk and the rest on all draws at once: the
    same bits as computing each chunk on its own (small n: many draws leave a cell empty)."""
    rng = np.random.default_rng(n)
    strata = np.repeat(np.array(["a", "b", "c"]), -(-n // 3))[:n]
    cell = batch_draws(strata, 1, rng)[0]
    start = rng.normal(size=n)
    d = factorial_data(np.round(start + rng.normal(size=n), 1), cell.astype(float), strata, start)
    draws = batch_draws(strata, 1300, rng)
    draws[:5] = 0  # whole cells empty: no estimate
    C = np.column_stack([(d.cell == k).astype(float) for k in (1, 2, 3)])
    for extra in (None, C):
        whole = ri._ri_factorial(d, draws, 512, np.float32, extra=extra)
        parts = [ri._ri_factorial(d, draws[a : a + 512], 512, np.float32, extra=extra) for a in range(0, 1300, 512)]
        for c, v in whole.items():
            assert np.array_equal(v, np.concatenate([p[c] for p in parts]), equal_nan=True), (n, c)
        assert np.isnan(whole["teaming"][:5]).all()


def test_singular_draws_are_the_ones_lapacks_determinant_finds():
    """_solve_or_nan decides most draws by a closed-form determinant: the draws it leaves out
    are exactly those the LAPACK determinant test leaves out, near the threshold too."""
    rng = np.random.default_rng(5)
    B = 6000
    A = rng.normal(size=(B, 3, 3)) * rng.choice([1e-3, 1.0, 30.0], size=(B, 1, 3))
    G = A @ A.transpose(0, 2, 1)
    # near-singular Gram matrices: the third row close to a combination of the first two
    t = rng.choice([0.0, 1e-12, 1e-10, 1e-9, 1e-5, 1e-3], size=B)
    v = rng.normal(size=(B, 2, 1))
    Z = rng.normal(size=(B, 3, 8))
    Z[:, 2] = (v * Z[:, :2]).sum(axis=1) + t[:, None] * rng.normal(size=(B, 8)) * np.abs(Z[:, 2]).max()
    G[: B // 2] = (Z @ Z.transpose(0, 2, 1))[: B // 2]
    G[::97, 1, 1] = 5e-5  # a diagonal below SINGULAR_DIAG
    U = rng.normal(size=(B, 3, 2))
    diag = np.einsum("bii->bi", G)
    small = diag < ri.SINGULAR_DIAG
    rel = np.linalg.det(G) / np.prod(np.where(small, 1.0, diag), axis=1)
    bad = small.any(axis=1) | (rel < ri.SINGULAR_REL_DET)
    assert 100 < bad.sum() < B - 100
    out = ri._solve_or_nan(G, U)
    assert np.array_equal(np.isnan(out).all(axis=(1, 2)), bad)
    Gs = G.copy()
    Gs[bad] = np.eye(3)
    assert np.array_equal(out[~bad], np.linalg.solve(Gs, U)[~bad])


@pytest.mark.parametrize("base", [0, 7, 2**32 + 3, 2**63 - 1])
def test_block_states_are_default_rngs_states(base):
    template = bootstrap._seed_words(base)
    for arm, first in [(0, 0), (3, 1000), (2**32 - 1, 2**32 - 40)]:
        states = bootstrap._block_states(template, arm, first, 40)
        for j, (state, inc) in enumerate(states):
            ref = np.random.default_rng([base, arm, first + j]).bit_generator.state
            assert ref["state"] == {"state": state, "inc": inc}


def test_small_arm_counts_with_an_order_are_the_reordered_plain_counts():
    rng = np.random.default_rng(2)
    arms = rng.choice(["a", "b"], size=40)
    members = bootstrap.arm_members(arms)[1]
    orders = [rng.permutation(len(i)) for i in members]
    base = int(np.random.default_rng(9).integers(2**63))
    want = _plain_counts(members, 75, base)
    for start, parts in bootstrap.bootstrap_counts(arms, 75, np.random.default_rng(9), orders=orders):
        for w, p, o in zip(want, parts, orders):
            assert np.array_equal(p, w[start : start + len(p)][:, o])


def test_strata_helpers_take_str_labels_as_pandas_does():
    rng = np.random.default_rng(4)
    for _ in range(60):
        n = int(rng.integers(1, 30))
        codes = rng.integers(0, int(rng.integers(1, 6)), size=n)
        mask = rng.random(n) < 0.7
        as_str = np.array([f"s{c}" for c in codes], dtype=object)  # the fast path
        as_np = np.array([f"s{c}" for c in codes]).astype(np.str_)  # NumPy strings: pandas' path
        D1, names1 = strata_dummies(as_str)
        D2, names2 = strata_dummies(as_np)
        assert names1 == names2 and D1.dtype == D2.dtype and np.array_equal(D1, D2)
        assert np.array_equal(drop_singleton_strata(mask, as_str), drop_singleton_strata(mask, as_np))
    assert np.array_equal(drop_singleton_strata(np.array([True, True, False, True]), np.array(["a", "b", "b", "a"], dtype=object)),
                          np.array([True, False, False, True]))
    D, names = strata_dummies(np.array([2, 10, 2], dtype=object))  # not str: converted as pandas does ("10" < "2")
    assert names == ["stratum[2]"] and np.array_equal(D[:, 0], [1.0, 0.0, 1.0])
