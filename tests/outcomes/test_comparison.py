"""The non-randomised comparison: propensity weighting, DR ATT, balance, overlap, ESS,
LaLonde / Dehejia–Wahba, and the Study glue on the demo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbeval.outcomes.comparison import comparison_tables
from hbeval.stats.propensity import att_weights, common_support, dr_att, ess, logit_fit, propensity, smd

EXPERIMENTAL_NSW = 1794.34  # Dehejia-Wahba sample: mean re78 treated - control


@pytest.fixture(scope="module")
def lalonde():
    causaldata = pytest.importorskip("causaldata")
    nsw = causaldata.nsw_mixtape.load_pandas().data
    cps = causaldata.cps_mixtape.load_pandas().data
    d = pd.concat([nsw[nsw["treat"] == 1], cps], ignore_index=True)
    for c in ("re74", "re75", "re78"):
        d[c] = d[c].astype(float)
    d["u74"] = (d["re74"] == 0).astype(float)
    d["u75"] = (d["re75"] == 0).astype(float)
    d["age2"] = d["age"] ** 2
    d["age3"] = d["age"] ** 3
    d["educ2"] = d["educ"] ** 2
    d["educ_re74"] = d["educ"] * d["re74"]
    return nsw, d


# Dehejia & Wahba (1999) propensity specification for the CPS comparison; 1974-75 earnings
# are the "start" (baseline) of the outcome, 1978 earnings the "end".
DW = ["age", "age2", "age3", "educ", "educ2", "marr", "nodegree", "black", "hisp", "re74", "re75", "u74", "u75", "educ_re74"]


def test_experimental_benchmark(lalonde):
    nsw, _ = lalonde
    exp = nsw.loc[nsw["treat"] == 1, "re78"].mean() - nsw.loc[nsw["treat"] == 0, "re78"].mean()
    assert exp == pytest.approx(EXPERIMENTAL_NSW, abs=0.5)


def test_lalonde_weighted_estimate_near_experimental(lalonde):
    """NSW treated against CPS men, weighted by the comparison machinery.

    Sanity band: the DR ATT must lie within $1,000 of the experimental $1,794 and its 95 %
    interval must cover it, while the unadjusted difference is about −$8,500 (the bias that
    LaLonde showed). Measured: DR ≈ $1,473 (SE ≈ $665), IPW ≈ $1,572.
    """
    nsw, d = lalonde
    t = d["treat"].to_numpy()
    y = d["re78"].to_numpy()
    naive = y[t == 1].mean() - y[t == 0].mean()
    assert naive < -8000
    X = d[DW].to_numpy(float)
    ps = propensity(X, t)
    keep = common_support(ps, t)
    est = dr_att(y[keep], t[keep], X[keep], ps[keep])
    print(f"\nLaLonde/DW: experimental {EXPERIMENTAL_NSW:.0f}; DR ATT {est.estimate:.0f} (SE {est.std_error:.0f}); "
          f"IPW {est.ipw:.0f}; naive full CPS {naive:.0f}; kept {keep.sum()} of {len(keep)}")
    assert abs(est.estimate - EXPERIMENTAL_NSW) < 1000
    assert est.ci_low < EXPERIMENTAL_NSW < est.ci_high
    assert abs(est.ipw - EXPERIMENTAL_NSW) < 1000
    # weighting balances the covariates that were badly imbalanced
    w = np.zeros(len(ps))
    w[keep] = att_weights(ps[keep], t[keep])
    for j, name in enumerate(DW[:12]):
        before = abs(smd(X[:, j], t))
        after = abs(smd(X[keep, j], t[keep], w[keep]))
        assert after < 0.25, (name, before, after)
    assert abs(smd(X[:, DW.index("re75")], t)) > 1.0  # re75 before weighting: far apart
    # effective sample size of the comparison group is far below its 15,992
    assert 50 < ess(w[keep & (t == 0)]) < 2000


def test_logit_matches_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(500), rng.normal(size=(500, 3))])
    t = (rng.random(500) < 1 / (1 + np.exp(-(X @ [0.2, 1.0, -0.5, 0.3])))).astype(float)
    b = logit_fit(X, t, ridge=0.0)
    ref = sm.Logit(t, X).fit(disp=0).params
    np.testing.assert_allclose(b, ref, rtol=1e-6, atol=1e-8)


def test_att_weights_and_ess():
    ps = np.array([0.5, 0.8, 0.2, 0.5, 0.9])
    t = np.array([1, 1, 0, 0, 0])
    w = att_weights(ps, t)
    assert w[:2].tolist() == [1.0, 1.0]
    assert w[2:].sum() == pytest.approx(2.0)
    raw = np.array([0.25, 1.0, 9.0])
    np.testing.assert_allclose(w[2:], raw / raw.sum() * 2)
    assert ess(np.ones(7)) == pytest.approx(7)
    assert ess(np.array([1.0, 0, 0])) == pytest.approx(1)


def test_common_support_trims_both_ends():
    ps = np.array([0.3, 0.6, 0.1, 0.4, 0.7])
    t = np.array([1, 1, 0, 0, 0])
    keep = common_support(ps, t)
    # comparison below the lowest pilot (0.1 < 0.3) dropped; comparison 0.7 > max pilot kept
    assert keep.tolist() == [True, True, False, True, True]
    t2 = np.array([1, 1, 0, 0, 1])
    ps2 = np.array([0.3, 0.95, 0.2, 0.5, 0.4])
    assert common_support(ps2, t2).tolist() == [True, False, False, True, True]


def test_dr_att_doubly_robust_on_synthetic_data():
    """Confounded synthetic data with a known ATT of 2: naive is biased, DR recovers it."""
    rng = np.random.default_rng(11)
    n = 20000
    x = rng.normal(size=(n, 2))
    t = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))).astype(int)
    y = 1.0 + 1.5 * x[:, 0] + x[:, 1] + 2.0 * t + rng.normal(size=n)
    ps = propensity(x, t)
    est = dr_att(y, t, x, ps)
    assert abs(est.naive - 2.0) > 0.5
    assert est.estimate == pytest.approx(2.0, abs=4 * est.std_error)
    # outcome model wrong (no covariates) but propensity right: IPW part still consistent
    est2 = dr_att(y, t, np.zeros((n, 0)), ps)
    assert est2.estimate == pytest.approx(2.0, abs=0.1)
    # propensity wrong (constant) but outcome model right
    est3 = dr_att(y, t, x, np.full(n, t.mean()))
    assert est3.estimate == pytest.approx(2.0, abs=0.1)


@pytest.fixture(scope="module")
def demo_comparison():
    from hbeval.outcomes.comparison import comparison_results
    from hbeval.outcomes.frame import InMemoryStudy

    s = InMemoryStudy.from_demo(n_pilot=400, n_comparison=600, seed=7)
    return comparison_results(s)


def test_comparison_table_sections(demo_comparison):
    comp, rows = demo_comparison
    assert {"balance", "overlap", "overlap_hist", "estimate", "placebo", "note"} <= set(comp["section"])
    assert "not randomised" in comp.loc[comp["section"] == "note", "method"].iloc[0]
    bal = comp[comp["section"] == "balance"]
    assert "kykyviisari_total_start" in set(bal["item"])
    assert "pre_total_eur" in set(bal["item"])  # pre-period costs from hbeval.costs.engine
    # the demo's selection is on the baseline: large SMD before, small after weighting
    b = bal.set_index("item")
    assert abs(b.loc["kykyviisari_total_start", "smd_before"]) > 0.3
    assert abs(b.loc["kykyviisari_total_start", "smd_after"]) < 0.1
    assert (bal["smd_after"].abs() < 0.15).all()
    ov = comp[comp["section"] == "overlap"].set_index("group")
    assert float(ov.loc["comparison", "ess"]) < int(ov.loc["comparison", "n"])


def test_comparison_rows_for_effects(demo_comparison):
    _, rows = demo_comparison
    assert set(rows["contrast"]) == {"pilot_vs_comparison"}
    prim = rows[rows["outcome"] == "kykyviisari_total"].iloc[0]
    # truth of the demo: hb + (frame + teaming)/2 + interaction/4 = 0.625 points
    assert prim["ci_low"] - 0.15 < 0.625 < prim["ci_high"] + 0.15
    assert "not randomised" in prim["method"]
    assert not rows["outcome"].str.startswith(("budget", "meetings", "providers")).any()


def test_placebo_on_pre_costs_is_null(demo_comparison):
    comp, _ = demo_comparison
    pl = comp[(comp["section"] == "placebo") & (comp["item"] == "pre_total_eur")].iloc[0]
    assert pl["ci_low"] < 0 < pl["ci_high"]


def test_no_small_counts_in_histogram(demo_comparison):
    comp, _ = demo_comparison
    n = comp.loc[comp["section"] == "overlap_hist", "n"].astype(str)
    nums = pd.to_numeric(n, errors="coerce")
    assert ((nums.isna() & (n == "<5")) | (nums == 0) | (nums >= 5)).all()


def test_pure_core_without_study():
    """comparison_tables works on a plain frame (no pre-costs: the covariate is optional)."""
    from hbeval.demo import simulate_families

    f = simulate_families(200, 300, seed=5)
    f = f[f["group"] != "excluded"].copy()
    items = ["osallisuus", "mieli", "arki", "taidot", "keho"]
    for tp in ("start", "end"):
        m = f[[f"kyky_{i}_{tp}" for i in items]]
        f[f"kykyviisari_total_{tp}"] = m.mean(axis=1).where(m.notna().sum(axis=1) >= 4)
    f["_t"] = (f["group"] == "pilot").astype(int)
    comp, rows = comparison_tables(f.reset_index(drop=True), {"primary": ["kykyviisari_total"]}, "kykyviisari_total", 5)
    assert "pre_total_eur" not in set(comp["item"])
    assert len(rows) == 1


def test_blocked_products_match_one_block(monkeypatch):
    """National scale (issue 17): ``Z'WZ`` of the logit and the DR design are summed over row
    blocks; with 7-row blocks (several blocks, a ragged last one) the fit, the propensity and
    the DR ATT equal those of one block to rounding, and one block is the unblocked product."""
    import hbeval.stats.propensity as P

    rng = np.random.default_rng(17)
    n = 200
    x = rng.normal(size=(n, 3))
    t = (rng.random(n) < 1 / (1 + np.exp(-(0.5 * x[:, 0] - x[:, 2])))).astype(int)
    y = x @ [1.0, -0.5, 0.2] + 1.5 * t + rng.normal(size=n)
    Xi = np.column_stack([np.ones(n), x])
    one = P.logit_fit(Xi, t)
    ps = propensity(x, t)
    est = dr_att(y, t, x, ps)
    # the one-block path is the plain formula
    r_plain = y - Xi @ np.linalg.lstsq(Xi[t == 0] * np.sqrt(ps[t == 0] / (1 - ps[t == 0]))[:, None],
                                       y[t == 0] * np.sqrt(ps[t == 0] / (1 - ps[t == 0])), rcond=None)[0]
    monkeypatch.setattr(P, "BLOCK_ROWS", 7)
    blocked = P.logit_fit(Xi, t)
    np.testing.assert_allclose(blocked, one, rtol=1e-10, atol=1e-12)
    est7 = dr_att(y, t, x, ps)
    for f in ("estimate", "std_error", "ipw", "naive"):
        assert getattr(est7, f) == pytest.approx(getattr(est, f), rel=1e-10, abs=1e-12)
    w = np.where(t == 1, 1.0, ps / (1 - ps))
    np.testing.assert_allclose(P._residuals(y, x, np.linalg.lstsq(P._weighted_design(x, t == 0, np.sqrt(w[t == 0])),
                                                                   y[t == 0] * np.sqrt(w[t == 0]), rcond=None)[0]),
                               r_plain, rtol=1e-10, atol=1e-10)
