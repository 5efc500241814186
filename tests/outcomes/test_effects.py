"""effects.csv and process.csv from a study: contract columns, every declared outcome,
privacy, determinism; and small-sample behaviour of the estimator (the forest plot: tests/report/test_plots.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbeval.outcomes.comparison import comparison_effect_rows
from hbeval.outcomes.effects import (
    CONTRASTS,
    effects_results,
    process_results,
)
from hbeval.outcomes.frame import InMemoryStudy
from hbeval.stats.factorial import factorial_data, hedges_g
from hbeval.stats.ols import ols_hc2

CONTRACT = ["outcome", "contrast", "estimate", "std_error", "ci_low", "ci_high", "p_value", "p_value_ri", "p_value_adj", "n", "method"]


@pytest.fixture(scope="module")
def study():
    return InMemoryStudy.from_demo(n_pilot=400, n_comparison=500, seed=11, ri_draws=1000, bootstrap_reps=200)


@pytest.fixture(scope="module")
def effects(study):
    return effects_results(study, comparison_rows=comparison_effect_rows(study))


def test_contract_columns_and_every_outcome(study, effects):
    assert CONTRACT == [c for c in effects.columns if c in CONTRACT]
    assert set(CONTRACT) <= set(effects.columns)
    declared = [o for outs in study.config.families.values() for o in outs]
    assert set(effects["outcome"]) == set(declared)
    prim = effects[effects["outcome"] == "kykyviisari_total"]
    assert set(prim["contrast"]) == {*CONTRASTS, "pilot_vs_comparison"}
    assert prim["method"].str.startswith("lin_centred_interaction_hc2").sum() == 6
    assert (effects["family"].isin(study.config.families)).all()


def test_primary_estimates_near_truth(effects):
    from hbeval.demo import DemoEffects

    truth = DemoEffects().margins()
    prim = effects[(effects["outcome"] == "kykyviisari_total") & effects["method"].str.startswith("ancova_hc2;")].set_index("contrast")
    for c in CONTRASTS:
        r = prim.loc[c]
        # within 3.5 SE of the truth (one dataset; a loose sanity check, coverage is tested by simulation)
        assert abs(r["estimate"] - truth[c]) < 3.5 * r["std_error"], c
        assert r["ci_low"] < r["estimate"] < r["ci_high"]
        assert 0 < r["p_value_ri"] <= 1
        assert r["p_value_adj"] >= r["p_value_ri"] - 1e-12


def test_ri_and_analytic_pvalues_agree_roughly(effects):
    prim = effects[effects["method"].str.startswith("ancova_hc2;") & effects["p_value"].between(0.02, 0.9)]
    ratio = (prim["p_value_ri"] / prim["p_value"]).to_numpy()
    assert np.median(ratio) == pytest.approx(1, abs=0.25)


def test_multiplicity_within_family(effects):
    sec = effects[(effects["family"] == "secondary") & effects["method"].str.startswith("ancova_hc2") & (effects["contrast"] == "teaming")]
    assert (sec["p_value_adj"] >= sec["p_value_ri"] - 1e-12).all()
    assert (sec["p_value_holm"] >= sec["p_value"] - 1e-12).all()
    assert "westfall_young" in sec["method"].iloc[0]
    prim = effects[(effects["family"] == "primary") & effects["method"].str.startswith("ancova_hc2;")]
    # one outcome in the primary family: adjusted = unadjusted
    np.testing.assert_allclose(prim["p_value_adj"], prim["p_value_ri"])


def test_effect_sizes(effects):
    r = effects[(effects["outcome"] == "kykyviisari_total") & (effects["contrast"] == "teaming") & effects["method"].str.startswith("ancova_hc2;")].iloc[0]
    assert r["g_ci_low"] < r["hedges_g"] < r["g_ci_high"]
    assert np.sign(r["hedges_g"]) == np.sign(r["estimate"])
    assert 0.1 < r["estimate_sd_units"] < 1


def test_prevention_is_a_risk_difference(effects):
    p = effects[(effects["outcome"] == "new_child_welfare_clienthood") & (effects["contrast"] == "teaming")]
    r = p[p["method"].str.startswith("risk_difference")].iloc[0]
    assert -1 < r["estimate"] < 1 and np.isfinite(r["p_value_ri"])
    assert (effects.loc[effects["outcome"] == "new_child_welfare_clienthood", "contrast"] == "pilot_vs_comparison").any()


def test_process_outcomes_show_the_designed_effects(effects):
    frame = effects[effects["method"].str.startswith("ancova_hc2_no_baseline")].set_index(["outcome", "contrast"])
    # the demo: telling the shares halves revisions; teaming holds meetings
    assert frame.loc[("budget_revisions", "frame_shares"), "estimate"] < -0.2
    assert frame.loc[("budget_revisions", "frame_shares"), "p_value_ri"] < 0.01
    assert frame.loc[("meetings_before_start", "teaming"), "estimate"] > 0.8


def test_no_identifiers_and_no_per_person_rows(study, effects):
    ids = set(study.table("clients")["client_id"].astype(str))
    text = effects.to_csv(index=False)
    assert not any(i in text for i in list(ids)[:50])
    assert len(effects) < len(ids)


def test_deterministic(study, effects):
    again = effects_results(study, comparison_rows=comparison_effect_rows(study))
    assert again.to_csv(index=False) == effects.to_csv(index=False)


def test_default_leaves_comparison_rows_to_analyze(study, effects):
    plain = effects_results(study)
    assert "pilot_vs_comparison" not in set(plain["contrast"])
    assert len(plain) == (effects["contrast"] != "pilot_vs_comparison").sum()


def test_process_table(study):
    p = process_results(study)
    assert {"measure", "factor", "cell", "n", "mean", "sd", "median"} <= set(p.columns)
    assert set(p["cell"]) == {"frame_only/no_teaming", "frame_only/teaming", "frame_shares/no_teaming", "frame_shares/teaming", "all"}
    m = p[(p["measure"] == "meetings_before_start")].set_index("cell")
    assert float(m.loc["frame_only/no_teaming", "mean"]) == 0
    assert float(m.loc["frame_shares/teaming", "mean"]) > 0.5
    assert len(p) == 10 * 5


def test_small_counts_suppressed_in_process():
    from hbeval.outcomes.effects import process_summary

    frame = pd.DataFrame({"client_id": list("abcdefgh"), "cell": pd.array([0, 0, 0, 1, 2, 2, 3, 3], dtype="Int8"),
                          "budget_revisions_end": [1.0, 2, 0, 1, 0, 0, 1, 3]})
    p = process_summary(frame, min_cell=5)
    assert set(p.loc[p["cell"] != "all", "n"]) == {"<5"}
    assert p.loc[p["cell"] != "all", "mean"].isna().all()
    assert p.loc[p["cell"] == "all", "n"].iloc[0] == "8"


def test_unestimable_outcome_gives_rows_not_errors():
    """An outcome with no data, or with an empty cell, yields NaN rows named as such."""
    from hbeval.outcomes.effects import randomised_effects

    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame({"client_id": [f"c{i:02d}" for i in range(n)], "cell": pd.array(np.arange(n) % 4, dtype="Int8"),
                          "stratum": "all", "x_end": rng.normal(size=n), "x_start": rng.normal(size=n)})
    frame.loc[frame["cell"] == 3, "x_end"] = np.nan
    tab, _ = randomised_effects(frame, {"secondary": ["x", "missing_outcome"]}, None, min_cell=5)
    assert tab["estimate"].isna().all()
    assert tab["method"].str.contains("not estimable|no data").all()


def test_hedges_g_against_pingouin():
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.5, 1, 40), rng.normal(0, 1.3, 55)
    diff = a.mean() - b.mean()
    g = hedges_g(diff, diff - 1, diff + 1, a, b)["hedges_g"]
    assert g == pytest.approx(pg.compute_effsize(a, b, eftype="hedges"), rel=2e-3)


def test_singleton_strata_dropped_and_rank_deficiency_handled():
    rng = np.random.default_rng(2)
    n = 60
    strat = np.array(["a"] * 30 + ["b"] * 29 + ["lonely"], dtype=object)
    cell = np.arange(n) % 4
    y = rng.normal(size=n)
    d = factorial_data(y, cell, strat, rng.normal(size=n))
    assert d.n == 59 and "lonely" not in set(d.stratum)
    X = np.column_stack([np.ones(n), y, 2 * y])
    fit = ols_hc2(rng.normal(size=n), X)
    assert np.isnan(fit.coef).sum() == 1 and fit.df_resid == n - 2


def test_leverage_one_observation_contributes_nothing():
    """A family alone in its indicator (leverage 1) gives the same arm SEs as dropping it."""
    rng = np.random.default_rng(9)
    n = 80
    X = np.column_stack([np.ones(n), np.arange(n) % 2, rng.normal(size=n)])
    y = X @ [1.0, 0.5, 0.3] + rng.normal(size=n)
    lone = np.zeros(n)
    lone[0] = 1
    with_lone = ols_hc2(y, np.column_stack([X, lone]))
    dropped = ols_hc2(y[1:], X[1:])
    np.testing.assert_allclose(with_lone.coef[:3], dropped.coef, rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(np.diag(with_lone.vcov))[:3], np.sqrt(np.diag(dropped.vcov)), rtol=1e-8)


def test_share_revealing_a_small_count_is_blanked():
    from hbeval.outcomes.effects import process_summary

    n = 40
    frame = pd.DataFrame({"client_id": [f"c{i:02d}" for i in range(n)], "cell": pd.array(np.arange(n) % 4, dtype="Int8"),
                          "budget_accepted_unchanged_end": (np.arange(n) < 3).astype(float)})  # 3 families accepted
    p = process_summary(frame, min_cell=5)
    allrow = p[(p["cell"] == "all") & (p["measure"] == "budget_accepted_unchanged")].iloc[0]
    assert allrow["n"] == "40"
    assert pd.isna(allrow["mean"]) and pd.isna(allrow["share_nonzero"])


def test_effect_size_of_an_outcome_constant_within_cells_is_blank_not_infinite():
    """An outcome that does not vary within cells (e.g. a process count that every family
    of a cell shares) has no SD to scale by: the effect sizes are blank, with no warning."""
    import warnings

    from hbeval.outcomes.effects import effect_sizes

    cell = np.repeat([0, 1, 2, 3], 10)
    d = factorial_data(np.where(cell == 3, 2.0, 1.0), cell, np.repeat("s", 40))
    table = pd.DataFrame({"contrast": ["frame_shares:teaming", "teaming"], "estimate": [1.0, 0.5],
                          "ci_low": [0.5, 0.2], "ci_high": [1.5, 0.8]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = effect_sizes(table, d)
    inter = out.set_index("contrast").loc["frame_shares:teaming"]
    assert np.isnan(inter["hedges_g"]) and np.isnan(inter["g_ci_low"]) and np.isnan(inter["g_ci_high"])
