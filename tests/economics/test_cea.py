"""Cost-effectiveness: Fieller, the vectorised bootstrap, ICER reporting, CEAC and NMB."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from hbeval.economics.cea import ce_plane_replicates, cea_analysis
from hbeval.randomisation.design import CELLS
from hbeval.stats.bootstrap import bootstrap_weights
from hbeval.stats.icer import bootstrap_ols, fieller_interval, icer_bootstrap_ci, icer_point, quadrant
from hbeval.stats.ols import jackknife_coef, ols_fit

Z = 1.959963984540054
#: The willingness-to-pay grid of ``study.toml``'s defaults (what these tests were written with).
WTP = (0, 250, 500, 1000, 2000, 5000)


def _data(n_cell=120, n_comp=300, d_effect=(0.0, 0.4, 0.3, 0.8), d_cost=(0.0, 500.0, 300.0, 900.0),
          pilot_effect=0.5, pilot_cost=2000.0, seed=1) -> pd.DataFrame:
    """Families of the four cells and a comparison group with known effects."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, cell in enumerate(CELLS):
        rows.append(pd.DataFrame({"group": "pilot", "cell": cell, "de": d_effect[k] + pilot_effect,
                                  "dc": d_cost[k] + pilot_cost}, index=range(n_cell)))
    rows.append(pd.DataFrame({"group": "comparison", "cell": None, "de": 0.0, "dc": 0.0}, index=range(n_comp)))
    d = pd.concat(rows, ignore_index=True)
    n = len(d)
    d["stratum"] = rng.choice(["a", "b", "c"], n)
    s_eff = d["stratum"].map({"a": 0.0, "b": 0.3, "c": -0.2}).to_numpy()
    d["start"] = 5 + s_eff + rng.normal(0, 1.2, n)
    d["end"] = 0.8 * d["start"] + 1 + s_eff + d["de"] + rng.normal(0, 0.7, n)
    d["cost_pre"] = rng.gamma(2.0, 1500.0, n)
    d["cost"] = 0.5 * d["cost_pre"] + rng.gamma(2.0, 1500.0, n) + d["dc"]
    d.loc[rng.random(n) < 0.05, "end"] = np.nan
    return d.drop(columns=["de", "dc"])


# ------------------------------------------------------------------------ Fieller
def test_fieller_matches_the_closed_form():
    dc, de, vc, ve, c = 1000.0, 2.0, 250000.0, 0.25, 50.0
    lo, hi, note = fieller_interval(dc, de, vc, ve, c)
    # Willan & O'Brien (1996), written with ρ and the standard errors
    sc, se = math.sqrt(vc), math.sqrt(ve)
    rho = c / (sc * se)
    num = de * dc - Z**2 * rho * sc * se
    rad = Z * math.sqrt(de**2 * sc**2 + dc**2 * se**2 - 2 * de * dc * rho * sc * se - Z**2 * sc**2 * se**2 * (1 - rho**2))
    den = de**2 - Z**2 * se**2
    assert note == ""
    assert lo == pytest.approx((num - rad) / den, rel=1e-12)
    assert hi == pytest.approx((num + rad) / den, rel=1e-12)
    # hand-computed: a = 4 − z²/4, b = 2000 − 50 z², c₀ = 10⁶ − 250000 z²
    a = 4 - Z**2 * 0.25
    b = 2000 - Z**2 * 50
    c0 = 1e6 - Z**2 * 250000
    assert lo == pytest.approx((b - math.sqrt(b * b - a * c0)) / a, rel=1e-12)
    assert lo == pytest.approx(11.0644, abs=1e-4) and hi == pytest.approx(1178.5040, abs=1e-4)


def test_fieller_limits_solve_the_defining_equation():
    dc, de, vc, ve, c = -350.0, 0.6, 40000.0, 0.04, -1.5

    def f(r):
        return (dc - r * de) ** 2 - Z**2 * (vc - 2 * r * c + r * r * ve)

    lo, hi, _ = fieller_interval(dc, de, vc, ve, c)
    point = dc / de
    assert lo < point < hi
    assert lo == pytest.approx(optimize.brentq(f, point - 1e5, point), rel=1e-9)
    assert hi == pytest.approx(optimize.brentq(f, point, point + 1e5), rel=1e-9)


def test_fieller_is_unbounded_when_the_effect_is_not_significant():
    lo, hi, note = fieller_interval(500.0, 0.1, 1e4, 0.04, 0.0)
    assert math.isnan(lo) and math.isnan(hi) and "unbounded" in note


# ------------------------------------------------------------------------ ICER reporting
def test_quadrants_and_icer_point():
    assert quadrant(1, 1) == "NE" and quadrant(-1, 1) == "SE" and quadrant(1, -1) == "NW" and quadrant(-1, -1) == "SW"
    assert icer_point(1000.0, 2.0) == (500.0, icer_point(1000.0, 2.0)[1])
    for dc, de, word in ((100.0, -0.5, "dominated"), (-100.0, 0.5, "dominant"), (100.0, 0.0, "undefined")):
        v, note = icer_point(dc, de)
        assert math.isnan(v) and note.startswith(word)


def test_dominated_contrast_is_reported_as_such():
    d = _data(pilot_effect=-0.8, pilot_cost=3000.0, seed=5)
    res = cea_analysis(d, n_reps=1000, seed=2, wtp=WTP, wtp_reference=1000.0, min_cell=5)
    t = res.to_frame()
    pvc = t[t["contrast"] == "pilot_vs_comparison"]
    assert len(pvc) == 3 and set(pvc["ci_method"]) == {"fieller", "bootstrap_percentile", "bootstrap_bca"}
    assert pvc["icer"].isna().all() and pvc["icer_ci_low"].isna().all() and pvc["icer_ci_high"].isna().all()
    assert pvc["icer_note"].str.startswith("dominated").all()
    assert (pvc["quadrant"] == "NW").all()
    assert pvc["share_nw"].iloc[0] > 0.95
    assert (pvc["delta_cost_eur"] > 0).all() and (pvc["delta_effect"] < 0).all()


def test_angle_interval_is_unbounded_when_the_cloud_crosses_zero_effect():
    rng = np.random.default_rng(0)
    de = rng.normal(0.1, 0.3, 4000)
    dc = rng.normal(500, 100, 4000)
    ci = icer_bootstrap_ci(500.0, 0.1, dc, de)
    lo, hi, note = ci["bootstrap_percentile"]
    assert math.isnan(lo) and math.isnan(hi) and "unbounded" in note
    # a cloud well inside NE gives the plain percentile interval of the ratios
    de2 = rng.normal(1.0, 0.05, 4000)
    lo, hi, _ = icer_bootstrap_ci(500.0, 1.0, dc, de2)["bootstrap_percentile"]
    r = dc / de2
    assert lo == pytest.approx(np.quantile(r, 0.025), rel=2e-3) and hi == pytest.approx(np.quantile(r, 0.975), rel=2e-3)


# ------------------------------------------------------------------------ vectorised bootstrap
def test_vectorised_bootstrap_refits_equal_explicit_refits():
    rng = np.random.default_rng(3)
    n = 60
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=n)
    arms = np.where(X[:, 2] == 1, "t", "c")
    reps = bootstrap_ols([X], [y], arms, 5, np.random.default_rng(9))[0]
    W = bootstrap_weights(arms, 5, np.random.default_rng(9))  # the same draws
    for b in range(5):
        idx = np.repeat(np.arange(n), W[b].astype(int))
        coef = np.linalg.lstsq(X[idx], y[idx], rcond=None)[0]
        np.testing.assert_allclose(reps[b], coef, rtol=1e-9, atol=1e-9)


def test_closed_form_jackknife_equals_leave_one_out():
    rng = np.random.default_rng(4)
    n = 40
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    y = X @ [0.5, 1.0, 0.0] + rng.normal(size=n)
    jk = jackknife_coef(ols_fit(X, y))
    for i in (0, 7, 39):
        keep = np.arange(n) != i
        np.testing.assert_allclose(jk[i], np.linalg.lstsq(X[keep], y[keep], rcond=None)[0], rtol=1e-9, atol=1e-10)


def test_bootstrap_ci_of_a_cost_difference_covers_at_the_nominal_rate():
    """1,000 simulated trials of skewed (gamma, shape 2) costs, 100 families per arm; the
    within-arm percentile bootstrap CI (500 replicates, :func:`bootstrap_weights` as every
    cost CI of hbeval uses it) of the mean difference must cover the truth in 93–97 % of
    them. Vectorised over 25 trials at a time."""
    rng = np.random.default_rng(20261122)
    n_sim, n, n_reps, shape, batch = 1000, 100, 500, 2.0, 25
    mu = np.array([4000.0, 5000.0])  # true means: difference 1000
    truth = mu[1] - mu[0]
    arms = np.repeat(np.arange(batch * 2), n)  # trial × arm labels: resampling stays inside each
    covered = 0
    for _ in range(0, n_sim, batch):
        y = rng.gamma(shape, np.tile(np.repeat(mu / shape, n), batch))
        W = bootstrap_weights(arms, n_reps, rng)  # (B, batch·2·n)
        m = (W.reshape(n_reps, 2 * batch, n) * y.reshape(2 * batch, n)).sum(axis=2) / n  # (B, arms) means
        diff = m[:, 1::2] - m[:, 0::2]  # (B, batch)
        lo, hi = np.quantile(diff, [0.025, 0.975], axis=0)
        covered += int(((lo <= truth) & (truth <= hi)).sum())
    coverage = covered / n_sim
    print(f"coverage {coverage:.3f}")
    assert 0.93 <= coverage <= 0.97, coverage


# ------------------------------------------------------------------------ the analysis
def test_cea_recovers_known_differences_and_tables_are_consistent():
    d = _data(n_cell=250, n_comp=500, seed=8)
    res = cea_analysis(d, wtp=(0, 1000, 5000), wtp_reference=1000, n_reps=2000, seed=1, min_cell=5)
    t = res.to_frame()
    one = t.drop_duplicates("contrast").set_index("contrast")
    assert one.loc["pilot_vs_comparison", "delta_effect"] == pytest.approx(0.5 + np.mean([0, 0.4, 0.3, 0.8]), abs=0.15)
    assert one.loc["cell:frame_shares/teaming", "delta_cost_eur"] == pytest.approx(900, abs=500)
    assert one.loc["frame_shares:teaming", "delta_effect"] == pytest.approx(0.1, abs=0.25)
    # the ICER is ΔC/ΔE where it is reported; INB = λΔE − ΔC at the reference WTP
    ne = one[one["quadrant"] == "NE"]
    np.testing.assert_allclose(ne["icer"], ne["delta_cost_eur"] / ne["delta_effect"], rtol=1e-3)
    np.testing.assert_allclose(one["inb_eur"], 1000 * one["delta_effect"] - one["delta_cost_eur"], atol=0.01)
    c = res.ceac_frame()
    assert len(c) == 7 * 3
    sub = c[c["contrast"] == "pilot_vs_comparison"].set_index("wtp_eur")
    assert sub.loc[0.0, "prob_cost_effective"] < 0.01  # costs clearly more
    assert sub.loc[5000.0, "prob_cost_effective"] > sub.loc[0.0, "prob_cost_effective"]
    # for a well-estimated contrast, the bootstrap and Fieller intervals agree closely
    p = t[t["contrast"] == "pilot_vs_comparison"].set_index("ci_method")
    for m in ("bootstrap_percentile", "bootstrap_bca"):
        assert p.loc[m, "icer_ci_low"] == pytest.approx(p.loc["fieller", "icer_ci_low"], rel=0.2)
        assert p.loc[m, "icer_ci_high"] == pytest.approx(p.loc["fieller", "icer_ci_high"], rel=0.2)


def test_delta_effect_follows_the_primary_specification():
    effects = pytest.importorskip("hbeval.stats.factorial")
    d = _data(seed=12)
    res = cea_analysis(d, n_reps=200, seed=1, wtp=WTP, wtp_reference=1000.0, min_cell=5)
    m = (d["group"] == "pilot").to_numpy()
    sub = d[m]
    code = sub["cell"].map({c: k for k, c in enumerate(CELLS)}).to_numpy()
    fd = effects.factorial_data(sub["end"].to_numpy(), code, sub["stratum"].to_numpy(), sub["start"].to_numpy())
    main, inter = effects.fit_main(fd), effects.fit_interaction(fd)
    assert res.contrasts["frame_shares"].delta_effect == pytest.approx(main.row("frame_shares")["estimate"], abs=1e-10)
    assert res.contrasts["teaming"].delta_effect == pytest.approx(main.row("teaming")["estimate"], abs=1e-10)
    assert res.contrasts["frame_shares:teaming"].delta_effect == pytest.approx(
        inter.row("frame_shares:teaming")["estimate"], abs=1e-10)
    # and Fieller's variance of ΔE is the HC2 variance of effects.csv
    se = main.row("frame_shares")["std_error"]
    assert math.sqrt(res.contrasts["frame_shares"].var_effect) == pytest.approx(se, rel=1e-9)


def test_nmb_regression_matches_statsmodels_hc2():
    sm = pytest.importorskip("statsmodels.api")
    d = _data(seed=13)
    res = cea_analysis(d, wtp=(2000,), n_reps=200, seed=1, wtp_reference=1000.0, min_cell=5)
    est, lo, hi, _ = res.contrasts["pilot_vs_comparison"].nmb[2000.0]
    ok = d["end"].notna()
    s = d[ok]
    X = pd.get_dummies(s["stratum"], drop_first=True, dtype=float)
    X.insert(0, "cost_pre", s["cost_pre"])
    X.insert(0, "start", s["start"])
    X.insert(0, "pilot", (s["group"] == "pilot").astype(float))
    X = sm.add_constant(X)
    fit = sm.OLS(2000 * s["end"] - s["cost"], X).fit(cov_type="HC2")
    assert est == pytest.approx(fit.params["pilot"], rel=1e-9)
    ci = fit.conf_int().loc["pilot"]
    # HC2 with a t quantile on the residual df (statsmodels uses z): widths agree to < 0.1 %
    assert (hi - lo) == pytest.approx(ci.iloc[1] - ci.iloc[0], rel=2e-3)


def test_same_seed_same_tables_and_plane_replicates():
    d = _data(seed=14)
    a = cea_analysis(d, n_reps=500, seed=3, wtp=WTP, wtp_reference=1000.0, min_cell=5)
    b = cea_analysis(d, n_reps=500, seed=3, wtp=WTP, wtp_reference=1000.0, min_cell=5)
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())
    pd.testing.assert_frame_equal(a.ceac_frame(), b.ceac_frame())
    pd.testing.assert_frame_equal(ce_plane_replicates(a), ce_plane_replicates(b))


def test_ce_plane_replicates_are_the_first_draws_of_the_reported_contrasts(tmp_path):
    """``replicates/ce_plane.csv``: the first draws of every contrast, exact through the CSV,
    and none of a contrast that cea.csv suppresses."""
    a = cea_analysis(_data(seed=14), n_reps=500, seed=3, wtp=WTP, wtp_reference=1000.0, min_cell=5)
    r = ce_plane_replicates(a, max_per_contrast=300)
    assert list(r.columns) == ["contrast", "replicate", "delta_cost", "delta_effect"]
    assert list(dict.fromkeys(r["contrast"])) == list(a.contrasts) and len(r) == 300 * len(a.contrasts)
    t = r[r["contrast"] == "teaming"]
    assert t["replicate"].tolist() == list(range(300))
    np.testing.assert_array_equal(t["delta_cost"], a.contrasts["teaming"].reps_cost[:300])
    np.testing.assert_array_equal(t["delta_effect"], a.contrasts["teaming"].reps_effect[:300])
    r.to_csv(tmp_path / "ce_plane.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ce_plane.csv"), r)
    assert len(ce_plane_replicates(a)) == 500 * len(a.contrasts)  # fewer draws than the cap: all of them
    small = cea_analysis(_data(n_cell=3, n_comp=50, seed=15), n_reps=200, seed=1, min_cell=20, wtp=WTP,
                         wtp_reference=1000.0)
    shown = small.to_frame().dropna(subset=["delta_cost_eur"])["contrast"]
    s = ce_plane_replicates(small)
    assert "frame_shares" not in set(s["contrast"]) and set(s["contrast"]) == set(shown)


def test_small_groups_are_suppressed():
    d = _data(n_cell=3, n_comp=50, seed=15)
    res = cea_analysis(d, n_reps=200, seed=1, min_cell=20, wtp=WTP, wtp_reference=1000.0)
    t = res.to_frame()
    r = t[t["contrast"] == "frame_shares"]
    assert (r["n"] == "<20").all() and r["delta_cost_eur"].isna().all()


def test_missing_groups_or_outcomes_give_empty_tables_not_errors():
    d = _data(seed=16)
    pilot_only = cea_analysis(d[d["group"] == "pilot"], n_reps=100, seed=1, wtp=WTP, wtp_reference=1000.0,
                              min_cell=5).to_frame()
    assert "pilot_vs_comparison" not in set(pilot_only["contrast"]) and len(pilot_only) == 6 * 3
    d2 = d.copy()
    d2["end"] = np.nan
    res = cea_analysis(d2, n_reps=100, seed=1, wtp=WTP, wtp_reference=1000.0, min_cell=5)
    assert len(res.to_frame()) == 0 and "icer" in res.to_frame().columns and len(res.ceac_frame()) == 0
