"""Randomisation inference and multiplicity adjustment."""

from __future__ import annotations

import numpy as np
import pytest

from hbeval.randomisation.design import batch_draws
from hbeval.randomisation.redraw import redraw
from hbeval.stats.factorial import factorial_data, factorial_effects, fit_interaction, fit_main
from hbeval.stats.ri import holm, ri_factorial, ri_observed, ri_pvalue, westfall_young


def _data(seed=0, n=240, effect=0.0, n_strata=6):
    rng = np.random.default_rng(seed)
    strat = np.array([f"s{k}" for k in rng.integers(0, n_strata, n)], dtype=object)
    cell = batch_draws(strat.astype(str), 1, rng)[0]
    start = rng.normal(size=n)
    y = 0.8 * start + effect * (cell % 2) + rng.normal(size=n) * (1 + 0.5 * (cell == 3))
    y[rng.random(n) < 0.1] = np.nan
    return y, cell, strat, start


def test_ri_statistic_equals_the_ancova_estimate():
    y, cell, strat, start = _data()
    d = factorial_data(y, cell, strat, start)
    obs = ri_observed(d)
    tab = factorial_effects(d)
    prim = tab[tab["method"] == "ancova_hc2"].set_index("contrast")["estimate"]
    for c, v in obs.items():
        assert v == pytest.approx(prim[c], rel=1e-10, abs=1e-12), c


def test_ri_draws_match_refitting_each_draw():
    """Frisch-Waugh shortcut against refitting OLS for a handful of draws."""
    y, cell, strat, start = _data(1)
    d = factorial_data(y, cell, strat, start)
    draws = batch_draws(strat.astype(str), 7, 5)[:, d.mask]
    null = ri_factorial(d, draws, chunk=3, precision="float64")  # chunking must not matter
    for b in range(7):
        db = factorial_data(d.y, draws[b], d.stratum, d.start)
        m, i = fit_main(db), fit_interaction(db)
        assert null["frame_shares"][b] == pytest.approx(m.row("frame_shares")["estimate"], rel=1e-9)
        assert null["teaming"][b] == pytest.approx(m.row("teaming")["estimate"], rel=1e-9)
        assert null["frame_shares:teaming"][b] == pytest.approx(i.row("frame_shares:teaming")["estimate"], rel=1e-9)
        assert null["cell:frame_shares/teaming"][b] == pytest.approx(
            i.contrast({"frame_shares": 1, "teaming": 1, "frame_shares:teaming": 1})["estimate"], rel=1e-9)


def test_single_precision_products_agree():
    y, cell, strat, start = _data(6, n=500)
    d = factorial_data(y, cell, strat, start)
    draws = batch_draws(strat.astype(str), 300, 2)[:, d.mask]
    f64 = ri_factorial(d, draws, precision="float64")
    f32 = ri_factorial(d, draws, precision="float32")
    for c in f64:
        scale = f64[c].std()
        assert np.max(np.abs(f32[c] - f64[c])) < 1e-4 * scale, c
    obs32 = ri_observed(d, precision="float32")
    obs = ri_observed(d)
    assert all(abs(obs32[c] - obs[c]) < 1e-4 * f64[c].std() for c in obs)


def test_ri_without_baseline():
    y, cell, strat, _ = _data(2)
    d = factorial_data(y, cell, strat, None)
    obs = ri_observed(d)
    assert obs["teaming"] == pytest.approx(fit_main(d).row("teaming")["estimate"], rel=1e-10)


def test_ri_pvalue_rejects_real_effect_and_not_null():
    y, cell, strat, start = _data(3, n=400, effect=0.6)
    d = factorial_data(y, cell, strat, start)
    draws = batch_draws(strat.astype(str), 2000, 9)[:, d.mask]
    null = ri_factorial(d, draws)
    obs = ri_observed(d)
    assert ri_pvalue(obs["teaming"], null["teaming"]) < 0.01
    assert ri_pvalue(obs["frame_shares"], null["frame_shares"]) > 0.01


def test_ri_pvalue_formula():
    null = np.array([-3.0, -1.0, 0.5, 2.0])
    assert ri_pvalue(1.0, null) == pytest.approx((1 + 3) / 5)
    assert ri_pvalue(5.0, null) == pytest.approx(1 / 5)
    assert np.isnan(ri_pvalue(np.nan, null))


def test_draws_respect_strata():
    """Every draw keeps each stratum's cell counts (complete randomisation within strata)."""
    _, cell, strat, _ = _data(4, n=203)
    draws = batch_draws(strat.astype(str), 50, 1)
    for s in np.unique(strat):
        m = strat == s
        counts = np.stack([np.bincount(draws[b, m], minlength=4) for b in range(50)])
        assert counts.max(axis=1).max() - counts.min(axis=1).min() <= 1


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.2, 0.005, np.nan])
    ref = multipletests(p[:-1], method="holm")[1]
    got = holm(p)
    np.testing.assert_allclose(got[:-1], ref)
    assert np.isnan(got[-1])


def test_westfall_young_properties():
    rng = np.random.default_rng(0)
    D, m = 5000, 4
    # correlated null draws
    z = rng.normal(size=(D, 1))
    null = 0.7 * z + np.sqrt(1 - 0.49) * rng.normal(size=(D, m))
    obs = np.array([3.0, 0.2, 2.0, 1.0])
    adj = westfall_young(obs, null)
    raw = np.array([ri_pvalue(o, null[:, j]) for j, o in enumerate(obs)])
    assert (adj >= raw - 1e-12).all()  # never below the unadjusted
    bonf = np.minimum(1, raw * m)
    assert (adj <= bonf + 0.01).all()  # and no worse than Bonferroni (up to MC error)
    order = np.argsort(-np.abs(obs))
    assert np.all(np.diff(adj[order]) >= -1e-12)  # monotone in the statistic
    # single hypothesis: WY equals the plain RI p-value
    assert westfall_young(obs[:1], null[:, :1])[0] == pytest.approx(raw[0])


def test_westfall_young_controls_fwer_under_null():
    rng = np.random.default_rng(1)
    D, m, reps = 1000, 5, 300
    rejections = 0
    for _ in range(reps):
        draws = rng.normal(size=(D + 1, m))
        obs, null = draws[0], draws[1:]
        rejections += (westfall_young(obs, null) <= 0.05).any()
    assert rejections / reps < 0.085


class _Fam:
    def __init__(self, strat):
        import pandas as pd

        self._f = pd.DataFrame({"client_id": [f"c{i:03d}" for i in range(len(strat))], "stratum": strat})
        self.path = None

    def families(self):
        return self._f


def test_redraw_falls_back_to_batch_for_in_memory_study():
    strat = np.array(["a"] * 8 + ["b"] * 12, dtype=object)
    st = _Fam(strat)
    ids = st.families()["client_id"].tolist()[::-1]
    dr = redraw(st, ids, 100, np.random.default_rng(0))
    assert dr.shape == (100, 20) and dr.dtype == np.int8
    a = np.array(ids) < "c008"
    assert (np.stack([np.bincount(r[a], minlength=4) for r in dr]) == 2).all()
    again = redraw(st, ids, 100, np.random.default_rng(0))
    assert (dr == again).all()
