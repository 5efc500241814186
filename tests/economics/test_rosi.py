"""ROSI: the seed's figures, the SROI adjustments, the comparison-adjusted avoided costs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hbeval.costs.engine import CATEGORIES, PERIODS
from hbeval.economics.rosi import (
    COMPARISONS,
    RosiParams,
    adjusted_rosi,
    rosi,
    rosi_inputs,
    rosi_sensitivity,
    rosi_table,
)
from hbeval.randomisation.design import CELLS


def test_the_seeds_three_rosi_figures_exactly():
    # Siun sote / Sitra: ROSI₁ = −112 %, ROSI₂ = 42 %, ROSI₃ = 126 % of intervention costs
    assert rosi(-12.0, 100.0) == -1.12
    assert rosi(142.0, 100.0) == 0.42
    assert rosi(226.0, 100.0) == 1.26
    # in euros: an intervention of €50,000 avoiding €21,000 / €71,000 / €113,000 of costs
    assert rosi(21_000 - 27_000, 50_000) == -1.12
    assert rosi(71_000, 50_000) == 0.42
    assert rosi(113_000, 50_000) == 1.26
    np.testing.assert_array_equal(rosi(np.array([-12.0, 142.0, 226.0]), 100.0), [-1.12, 0.42, 1.26])


def test_adjustment_factor_by_hand():
    p = RosiParams(horizon_years=3, discount_rate=0.035, deadweight=0.2, attribution=0.1, displacement=0.05,
                   drop_off=0.3)
    years = 1 + 0.7 / 1.035 + 0.49 / 1.035**2
    assert p.factor() == pytest.approx(0.8 * 0.9 * 0.95 * years, rel=1e-14)
    a, i, r = adjusted_rosi(1000.0, 400.0, p)
    assert float(a) == pytest.approx(1000 * p.factor())
    assert float(r) == pytest.approx((1000 * p.factor() - 400) / 400)
    # one year, no adjustments: the plain ROSI; the first year is not discounted
    a, i, r = adjusted_rosi(142.0, 100.0, RosiParams())
    assert float(r) == pytest.approx(0.42, abs=1e-15)
    # no positive intervention cost: no ratio
    assert math.isnan(float(adjusted_rosi(100.0, 0.0, RosiParams())[2]))
    assert math.isnan(float(adjusted_rosi(100.0, -5.0, RosiParams())[2]))


def _wide(values: dict[str, tuple[float, float, float]], n: int = 10, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Families of each arm with intervention cost, service cost (fu) and service cost (pre)."""
    rng = np.random.default_rng(seed)
    rows = []
    for arm, (interv, serv_fu, serv_pre) in values.items():
        for k in range(n):
            e = noise * rng.standard_normal(3)
            r = {"client_id": f"{arm}-{k}", "group": "comparison" if arm == "comparison" else "pilot",
                 "cell": None if arm == "comparison" else arm, "stratum": "s"}
            for p in PERIODS:
                for c in CATEGORIES:
                    r[f"{p}_{c}"] = 0.0
            r["follow_up_budget_spending"] = interv + e[0]
            r["follow_up_usual_services"] = serv_fu + e[1]
            r["pre_usual_services"] = serv_pre + e[2]
            rows.append(r)
    return pd.DataFrame(rows)


ARMS = {
    CELLS[0]: (1000.0, 3000.0, 4000.0),
    CELLS[1]: (1200.0, 2500.0, 4000.0),
    CELLS[2]: (1000.0, 2900.0, 3900.0),
    CELLS[3]: (1300.0, 2400.0, 4100.0),
    "comparison": (100.0, 4200.0, 4000.0),
}


def test_avoided_costs_are_comparison_adjusted_by_hand():
    inp = rosi_inputs(_wide(ARMS), ("budget_spending", "staff_time", "teaming"), n_reps=200, seed=1)
    t = rosi_table(inp, RosiParams(), price_year=2024, perspective="organiser", min_cell=5).set_index("comparison")
    # cell 0 vs comparison: counterfactual = own pre 4000 + comparison's change (+200) = 4200; actual 3000
    r = t.loc[f"{CELLS[0]} vs comparison"]
    assert r["avoided_cost_eur"] == pytest.approx(1200.0)
    assert r["intervention_cost_eur"] == pytest.approx(900.0)
    assert r["rosi"] == pytest.approx((1200 - 900) / 900, abs=1e-6)
    # pooled pilot: mean changes: (−1000, −1500, −1000, −1700) → −1300; comparison +200 → avoided 1500
    r = t.loc["pilot vs comparison"]
    assert r["avoided_cost_eur"] == pytest.approx(1500.0)
    assert r["intervention_cost_eur"] == pytest.approx(1125.0 - 100.0)
    # randomised factor contrast: the other level is the counterfactual (follow-up means)
    r = t.loc["teaming vs no_teaming"]
    assert r["avoided_cost_eur"] == pytest.approx((3000 + 2900) / 2 - (2500 + 2400) / 2)
    assert r["intervention_cost_eur"] == pytest.approx((1200 + 1300) / 2 - 1000)
    # frame_shares costs more in intervention? (1150 vs 1100): yes, ROSI defined
    assert np.isfinite(t.loc["frame_shares vs frame_only", "rosi"])
    # the stated parameters are in the table
    assert (t["price_year"] == 2024).all() and (t["perspective"] == "organiser").all()
    assert (t["intervention_categories"] == "budget_spending+staff_time+teaming").all()
    assert set(t.index) == set(COMPARISONS)
    # no noise: every bootstrap replicate equals the point, so the CI collapses on it
    assert r["ci_low"] == pytest.approx(r["rosi"], abs=1e-6) and r["ci_high"] == pytest.approx(r["rosi"], abs=1e-6)


def test_undefined_rosi_when_the_arm_is_not_more_expensive():
    arms = dict(ARMS)
    arms[CELLS[2]] = (900.0, 2900.0, 3900.0)
    arms[CELLS[3]] = (1100.0, 2400.0, 4100.0)  # frame_shares level: 1000 vs frame_only 1100
    t = rosi_table(rosi_inputs(_wide(arms), ("budget_spending",), 100, 1), RosiParams(), 2024, perspective="",
                   min_cell=5).set_index("comparison")
    r = t.loc["frame_shares vs frame_only"]
    assert math.isnan(r["rosi"]) and "not positive" in r["rosi_note"]


def test_bootstrap_ci_covers_the_point_and_is_seeded():
    w = _wide(ARMS, n=40, noise=400.0, seed=3)
    a = rosi_table(rosi_inputs(w, ("budget_spending",), 1000, 7), RosiParams(), 2024, perspective="", min_cell=5)
    b = rosi_table(rosi_inputs(w, ("budget_spending",), 1000, 7), RosiParams(), 2024, perspective="", min_cell=5)
    pd.testing.assert_frame_equal(a, b)
    p = a.set_index("comparison").loc["pilot vs comparison"]
    assert p["ci_low"] < p["rosi"] < p["ci_high"]


def test_sensitivity_moves_rosi_in_the_expected_directions():
    inp = rosi_inputs(_wide(ARMS), ("budget_spending",), 100, 1)
    s = rosi_sensitivity(inp, RosiParams())
    p = s[s["comparison"] == "pilot vs comparison"].set_index("parameter")
    assert p.loc["deadweight", "rosi_at_high"] < p.loc["deadweight", "rosi_at_low"]
    assert p.loc["horizon_years", "rosi_at_high"] > p.loc["horizon_years", "rosi_at_low"]
    assert p.loc["intervention_scale", "rosi_at_high"] < p.loc["intervention_scale", "rosi_at_low"]
    assert p.loc["avoided_scale", "rosi_at_high"] > p.loc["avoided_scale", "rosi_at_low"]
    # one-year horizon: discounting and drop-off cannot matter
    assert p.loc["discount_rate", "swing"] == 0 and p.loc["drop_off", "swing"] == 0
    # sorted for the tornado: widest swing first
    assert list(p["swing"]) == sorted(p["swing"], reverse=True)


def test_rosi_results_on_a_study(small_demo_dir, tmp_path):
    import shutil

    from hbeval.economics.rosi import rosi_results, rosi_sensitivity_results
    from hbeval.study.store import open_study

    d = tmp_path / "s"
    shutil.copytree(small_demo_dir, d)
    study = open_study(d)
    r = rosi_results(study)
    need = ["comparison", "intervention_cost_eur", "avoided_cost_eur", "rosi", "ci_low", "ci_high", "horizon_years",
            "discount_rate", "deadweight", "attribution", "drop_off", "price_year"]
    assert list(r.columns[: len(need)]) == need
    assert len(r) == len(COMPARISONS)
    assert (r["price_year"] == study.config.price_year).all()
    assert "client_id" not in r.columns
    s = rosi_sensitivity_results(study)
    assert set(s["comparison"]) <= set(COMPARISONS)


def test_without_a_comparison_group_only_the_factor_contrasts_remain():
    arms = {k: v for k, v in ARMS.items() if k != "comparison"}
    inp = rosi_inputs(_wide(arms), ("budget_spending",), 100, 1)
    assert rosi_table(inp, RosiParams(), 2024, perspective="", min_cell=5)["comparison"].tolist() == [
        "frame_shares vs frame_only", "teaming vs no_teaming"]
    only = rosi_inputs(_wide({"comparison": ARMS["comparison"]}), ("budget_spending",), 100, 1)
    t = rosi_table(only, RosiParams(), 2024, perspective="", min_cell=5)
    assert len(t) == 0 and "rosi" in t.columns
    assert len(rosi_sensitivity(only, RosiParams())) == 0
