"""Randomisation-inference confidence intervals by test inversion (hbeval.stats.ri.ri_ci)."""

from __future__ import annotations

import numpy as np
import pytest

from hbeval.arms import CONTRASTS
from hbeval.randomisation.design import batch_draws
from hbeval.stats.factorial import factorial_data, factorial_effects
from hbeval.stats.ri import ri_ci, ri_inversions

ALPHA = 0.05


def _data(n: int, seed: int = 1, effects: tuple[float, float, float] = (0.3, 0.2, 0.1)):
    rng = np.random.default_rng(seed)
    strata = np.repeat(np.array(["a", "b", "c", "d"]), n // 4)
    cell = batch_draws(strata, 1, rng)[0]
    start = rng.normal(size=n)
    f, t = (cell >= 2).astype(float), (cell % 2).astype(float)
    y = start + effects[0] * f + effects[1] * t + effects[2] * f * t + rng.normal(size=n) * (0.5 + np.abs(start))
    return y, cell, strata, start, rng


def _primary(d) -> dict:
    return factorial_effects(d).iloc[:6].set_index("contrast").to_dict("index")


def test_null_statistic_is_linear_in_tau_and_matches_refitting() -> None:
    """``a_d + b_d τ`` equals the estimate − τ refitted on the outcome imputed under the
    hypothesis (nuisance effects at their estimates) for draw ``d``."""
    y, cell, strata, start, rng = _data(40, seed=3)
    d = factorial_data(y, cell, strata, start)
    draws = batch_draws(strata, 5, rng)
    inv = ri_inversions(d, draws, precision="float64")
    est = _primary(d)
    F, T = d.frame, d.teaming
    C = np.column_stack([(d.cell == k).astype(float) for k in (1, 2, 3)])
    gamma = np.array([est[c]["estimate"] for c in ("cell:frame_only/teaming", "cell:frame_shares/no_teaming",
                                                   "cell:frame_shares/teaming")])
    beta = np.array([est["frame_shares"]["estimate"], est["teaming"]["estimate"]])
    tau = 0.37
    for k, row in enumerate(draws):
        dk = factorial_data(y, row, strata, start)  # only the arms change
        Fk, Tk = dk.frame, dk.teaming
        Ck = np.column_stack([(dk.cell == j).astype(float) for j in (1, 2, 3)])
        for c in CONTRASTS:
            if c in ("frame_shares", "teaming"):
                b = beta.copy()
                b[0 if c == "frame_shares" else 1] = tau
                y_d = y - np.column_stack([F, T]) @ b + np.column_stack([Fk, Tk]) @ b
            else:
                g = gamma.copy()
                if c == "frame_shares:teaming":
                    g[2] = tau + g[0] + g[1]
                else:
                    g[["cell:frame_only/teaming", "cell:frame_shares/no_teaming", "cell:frame_shares/teaming"].index(c)] = tau
                y_d = y - C @ g + Ck @ g
            refit = _primary(factorial_data(y_d, row, strata, start))[c]["estimate"]
            assert inv[c].a[k] + inv[c].b[k] * tau == pytest.approx(refit - tau, abs=1e-9), c
    # the observed assignment: a = estimate, b = -1
    obs = ri_inversions(d, d.cell[None, :], precision="float64")
    for c in CONTRASTS:
        assert obs[c].a[0] == pytest.approx(est[c]["estimate"], abs=1e-10)
        assert obs[c].b[0] == pytest.approx(-1.0, abs=1e-10)


def test_interval_contains_estimate_and_bounds_are_crossings() -> None:
    y, cell, strata, start, rng = _data(60, seed=4)
    d = factorial_data(y, cell, strata, start)
    draws = batch_draws(strata, 2000, rng)
    inv = ri_inversions(d, draws)
    ci = ri_ci(d, draws)
    est = _primary(d)
    for c in CONTRASTS:
        lo, hi = ci[c]
        assert lo < est[c]["estimate"] < hi, c
        assert inv[c].pvalue(est[c]["estimate"]) == 1.0
        eps = 1e-6 * (hi - lo)
        assert inv[c].pvalue(lo + eps) > ALPHA >= inv[c].pvalue(lo - eps), c
        assert inv[c].pvalue(hi - eps) > ALPHA >= inv[c].pvalue(hi + eps), c


def test_interval_shifts_with_a_constant_and_scales() -> None:
    y, cell, strata, start, rng = _data(60, seed=5)
    draws = batch_draws(strata, 1000, rng)
    base = ri_ci(factorial_data(y, cell, strata, start), draws, precision="float64")
    shifted = ri_ci(factorial_data(y + 123.0, cell, strata, start), draws, precision="float64")
    scaled = ri_ci(factorial_data(3.0 * y, cell, strata, start), draws, precision="float64")
    for c in CONTRASTS:
        width = base[c][1] - base[c][0]
        assert shifted[c] == pytest.approx(base[c], abs=1e-7 * width), c
        assert scaled[c] == pytest.approx((3 * base[c][0], 3 * base[c][1]), abs=1e-6 * width), c


def test_large_n_interval_approximates_hc2_t() -> None:
    """Homoskedastic errors, n = 2,000: the RI interval is close to the HC2 t interval."""
    rng = np.random.default_rng(8)
    n = 2000
    strata = np.repeat(np.array(["a", "b", "c", "d"]), n // 4)
    cell = batch_draws(strata, 1, rng)[0]
    start = rng.normal(size=n)
    y = start + 0.3 * (cell >= 2) + 0.2 * (cell % 2) + rng.normal(size=n)
    d = factorial_data(y, cell, strata, start)
    ci = ri_ci(d, batch_draws(strata, 4000, rng))
    est = _primary(d)
    for c in CONTRASTS:
        half = (est[c]["ci_high"] - est[c]["ci_low"]) / 2
        assert ci[c][0] == pytest.approx(est[c]["ci_low"], abs=0.1 * half), c
        assert ci[c][1] == pytest.approx(est[c]["ci_high"], abs=0.1 * half), c


def test_exact_interval_unbounded_when_too_few_assignments() -> None:
    """With fewer than 20 possible assignments no effect can be rejected at 5 %."""
    y = np.array([1.0, 2.0, 0.5, 3.0, 1.5, 2.5, 0.0, 1.0])
    strata = np.array(["a"] * 8)
    cell = np.array([0, 1, 2, 3, 0, 1, 2, 3], dtype=np.int8)
    d = factorial_data(y, cell, strata)
    few = batch_draws(strata, 10, np.random.default_rng(1))
    few[0] = cell
    ci = ri_ci(d, few, exact=True)
    assert all(v == (-np.inf, np.inf) for v in ci.values())
