"""Exact randomisation inference: the enumeration of every batch assignment, and hbeval's exact
p-value against a brute-force enumeration refitted assignment by assignment."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from hbeval.arms import CONTRASTS
from hbeval.randomisation.design import batch_draws
from hbeval.randomisation.redraw import batch_support_size, enumerate_assignments, enumerate_batch
from hbeval.stats.factorial import factorial_data, factorial_effects
from hbeval.stats.ri import RI_TIE_TOL, ri_factorial, ri_pvalue, westfall_young

STRATA = np.array(["a"] * 4 + ["b"] * 5)  # a stratum of 4 and a misfit stratum of 5


def _batch_rule(codes: tuple[int, ...], n: int) -> bool:
    """The batch rule as the design states it: n // 4 of every cell, the n % 4 others in
    distinct cells."""
    cnt = Counter(codes)
    return all(cnt.get(k, 0) in (n // 4, n // 4 + 1) for k in range(4))


def _brute_force_support(strata: np.ndarray) -> np.ndarray:
    """Every assignment of the batch procedure, by itertools over all 4^n codes per stratum."""
    per = []
    idx = [np.flatnonzero(strata == s) for s in sorted(set(strata))]
    for ix in idx:
        per.append([c for c in itertools.product(range(4), repeat=len(ix)) if _batch_rule(c, len(ix))])
    rows = []
    for combo in itertools.product(*per):
        row = np.empty(len(strata), dtype=np.int8)
        for ix, c in zip(idx, combo):
            row[ix] = c
        rows.append(row)
    return np.array(rows)


def _sample(seed: int = 5):
    rng = np.random.default_rng(seed)
    cell = batch_draws(STRATA, 1, rng)[0]
    start = rng.normal(size=len(STRATA))
    y = start + 0.8 * (cell >= 2) + 0.4 * (cell % 2) + rng.normal(size=len(STRATA)) * (1 + np.abs(start))
    return y, cell, start


def _refit(y: np.ndarray, cell: np.ndarray, start: np.ndarray) -> dict[str, float]:
    """The primary estimates of one assignment by plain least squares (no hbeval code)."""
    f, t = (cell >= 2).astype(float), (cell % 2).astype(float)
    base = [np.ones(len(y)), start, (STRATA == "b").astype(float)]
    bm = np.linalg.lstsq(np.column_stack([f, t, *base]), y, rcond=None)[0]
    bi = np.linalg.lstsq(np.column_stack([f, t, f * t, *base]), y, rcond=None)[0]
    return {"frame_shares": bm[0], "teaming": bm[1], "frame_shares:teaming": bi[2],
            "cell:frame_only/teaming": bi[1], "cell:frame_shares/no_teaming": bi[0],
            "cell:frame_shares/teaming": bi[0] + bi[1] + bi[2]}


def test_enumeration_is_the_brute_force_support() -> None:
    brute = _brute_force_support(STRATA)
    mine = enumerate_batch(STRATA)
    assert batch_support_size(STRATA) == len(brute) == len(mine) == 24 * 240
    as_set = {r.tobytes() for r in mine}
    assert len(as_set) == len(mine)  # each assignment once
    assert as_set == {r.tobytes() for r in brute}


def test_enumeration_is_what_the_batch_draws_produce() -> None:
    """Every redraw of the batch procedure lies in the enumerated support, and the support is
    hit uniformly (equiprobable rows: no weights)."""
    strata = np.array(["a"] * 2 + ["b"] * 3)
    support = {r.tobytes(): i for i, r in enumerate(enumerate_batch(strata))}
    assert len(support) == batch_support_size(strata) == 12 * 24
    draws = batch_draws(strata, 57_600, np.random.default_rng(9))
    hits = np.bincount([support[r.tobytes()] for r in draws], minlength=len(support))
    expected = len(draws) / len(support)
    chi2 = float(((hits - expected) ** 2 / expected).sum())
    assert chi2 < len(support) + 5 * np.sqrt(2 * len(support))  # uniform (df = K − 1)


def test_exact_pvalue_equals_brute_force_refits() -> None:
    y, cell, start = _sample()
    d = factorial_data(y, cell, STRATA, start)
    obs = factorial_effects(d).iloc[:6].set_index("contrast")["estimate"]
    support = _brute_force_support(STRATA)
    # brute force: refit the primary models on every assignment
    ests = {c: [] for c in CONTRASTS}
    for row in support:
        for c, v in _refit(y, row, start).items():
            ests[c].append(v)
    null = ri_factorial(d, enumerate_batch(STRATA), precision="float64")
    for c in CONTRASTS:
        brute = np.array(ests[c])
        p_brute = float(np.mean(np.abs(brute) >= abs(obs[c]) * (1 - RI_TIE_TOL)))  # the documented tie rule
        assert ri_pvalue(obs[c], null[c], exact=True) == pytest.approx(p_brute, abs=1e-12), c
        # the drawn formula would count the observed assignment twice
        assert ri_pvalue(obs[c], null[c]) > ri_pvalue(obs[c], null[c], exact=True) - 1e-12


def test_exact_pvalue_is_at_least_one_over_k_and_wy_exact() -> None:
    y, cell, start = _sample(7)
    d = factorial_data(y, cell, STRATA, start)
    null = ri_factorial(d, enumerate_batch(STRATA), precision="float64")
    K = batch_support_size(STRATA)
    obs = factorial_effects(d).iloc[:6].set_index("contrast")["estimate"]
    for c in CONTRASTS:
        assert ri_pvalue(obs[c], null[c], exact=True) >= 1 / K
    M = np.column_stack([null["frame_shares"], null["teaming"]])
    wy = westfall_young([obs["frame_shares"], obs["teaming"]], M, exact=True)
    raw = [ri_pvalue(obs[c], null[c], exact=True) for c in ("frame_shares", "teaming")]
    assert np.all(wy >= np.array(raw) - 1e-12) and np.all(wy <= 1)


@dataclass
class _Mem:
    fam: pd.DataFrame
    path: object = None

    def families(self) -> pd.DataFrame:
        return self.fam


def test_enumerate_assignments_respects_the_budget_and_columns() -> None:
    """An in-memory study is enumerated over the requested families, columns in their order,
    only within the budget (as :func:`redraw` redraws it)."""
    fam = pd.DataFrame({"client_id": [f"c{i}" for i in range(9)], "stratum": STRATA})
    s = _Mem(fam)
    order = [8, 0, 4, 1, 2, 3, 5, 6, 7]
    got = enumerate_assignments(s, [f"c{i}" for i in order], budget=24 * 240)
    assert got is not None
    want = enumerate_batch(STRATA)[:, order]
    assert got.shape == want.shape
    assert {r.tobytes() for r in got} == {r.tobytes() for r in want}  # the same support (row order aside)
    assert enumerate_assignments(s, [f"c{i}" for i in order], budget=24 * 240 - 1) is None
    sub = enumerate_assignments(s, ["c8", "c0", "c4"], budget=100)  # 4 × 12 assignments
    assert sub is not None and sub.shape == (48, 3)
