"""Attrition: rates, differential tests, Lee bounds, IPW and missing-baseline dummy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbeval.outcomes.attrition import attrition_results, attrition_table
from hbeval.stats.bounds import lee_bounds, lee_bounds_bootstrap


def _lee_by_hand(y, obs, t):
    p1, p0 = obs[t].mean(), obs[~t].mean()
    if p1 >= p0:
        ys = np.sort(y[t & obs])
        k = int(round((p1 - p0) / p1 * len(ys)))
        return ys[: len(ys) - k].mean() - y[~t & obs].mean(), ys[k:].mean() - y[~t & obs].mean()
    ys = np.sort(y[~t & obs])
    k = int(round((p0 - p1) / p0 * len(ys)))
    return y[t & obs].mean() - ys[k:].mean(), y[t & obs].mean() - ys[: len(ys) - k].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lee_bounds_by_hand(seed):
    rng = np.random.default_rng(seed)
    n = 300
    t = rng.random(n) < 0.5
    y = rng.normal(size=n) + 0.3 * t
    obs = rng.random(n) < np.where(t, 0.9 - 0.2 * seed, 0.75)
    b = lee_bounds(np.where(obs, y, np.nan), obs, t)
    lo, hi = _lee_by_hand(y, obs, t)
    assert b["lower"] == pytest.approx(lo) and b["upper"] == pytest.approx(hi)
    assert b["lower"] <= b["upper"]


def test_lee_bounds_collapse_without_differential_attrition():
    rng = np.random.default_rng(5)
    t = np.repeat([True, False], 100)
    obs = np.tile(np.r_[np.ones(80, bool), np.zeros(20, bool)], 2)
    y = rng.normal(size=200)
    b = lee_bounds(y, obs, t)
    assert b["trim_share"] == 0
    assert b["lower"] == pytest.approx(b["upper"])
    assert b["lower"] == pytest.approx(y[t & obs].mean() - y[~t & obs].mean())


def test_lee_bootstrap_brackets_the_bounds():
    rng = np.random.default_rng(6)
    n = 400
    t = rng.random(n) < 0.5
    y = rng.normal(size=n) + 0.5 * t
    obs = rng.random(n) < np.where(t, 0.9, 0.7)
    b = lee_bounds(y, obs, t)
    lo, hi = lee_bounds_bootstrap(y, obs, t, 2000, np.random.default_rng(0))
    assert lo < b["lower"] <= b["upper"] < hi


@pytest.fixture(scope="module")
def table():
    from hbeval.outcomes.frame import InMemoryStudy

    s = InMemoryStudy.from_demo(n_pilot=400, n_comparison=100, seed=13, bootstrap_reps=300)
    return attrition_results(s), s


def test_sections_and_rates(table):
    a, s = table
    assert {"rate", "differential", "lee_bounds", "complete_cases", "ipw", "missing_baseline_dummy"} <= set(a["section"])
    rates = a[a["section"] == "rate"].set_index("cell")
    assert len(rates) == 5
    allr = rates.loc["all"]
    assert int(allr["n_assigned"]) == 400
    # the demo's attrition is about 20 %
    assert 0.1 < allr["attrition_rate"] < 0.35
    lee = a[a["section"] == "lee_bounds"]
    assert set(lee["contrast"]) == {"frame_shares", "teaming"}
    assert (lee["lower_bound"] <= lee["upper_bound"]).all()
    assert (lee["bound_ci_low"] <= lee["lower_bound"]).all()


def test_ipw_and_dummy_close_to_complete_cases(table):
    a, _ = table
    cc = a[a["section"] == "complete_cases"].set_index("contrast")
    for sec in ("ipw", "missing_baseline_dummy"):
        other = a[a["section"] == sec].set_index("contrast")
        for c in ("frame_shares", "teaming"):
            assert abs(other.loc[c, "estimate"] - cc.loc[c, "estimate"]) < 1.5 * cc.loc[c, "std_error"], (sec, c)
    # the dummy approach keeps families whose start is missing
    dummy_n = int(a[a["section"] == "missing_baseline_dummy"]["n"].iloc[0])
    assert dummy_n > int(cc["n"].iloc[0])


def test_differential_attrition_detected():
    """Attrition made strongly arm-dependent: the tests must see it."""
    rng = np.random.default_rng(8)
    n = 800
    cell = np.tile(np.arange(4), n // 4)
    start = rng.normal(size=n)
    end = start + rng.normal(size=n)
    end[rng.random(n) < np.where(cell % 2 == 1, 0.05, 0.35)] = np.nan
    frame = pd.DataFrame({"client_id": [f"c{i:04d}" for i in range(n)], "cell": pd.array(cell, dtype="Int8"), "stratum": "all",
                          "y_end": end, "y_start": start})
    a = attrition_table(frame, "y", 5, 200, 0)
    d = a[a["section"] == "differential"].set_index("contrast")
    assert d.loc["teaming", "p_value"] < 1e-6
    assert d.loc["cells (joint)", "p_value"] < 1e-6
    assert d.loc["frame_shares", "p_value"] > 0.001
    lee = a[a["section"] == "lee_bounds"].set_index("contrast")
    assert lee.loc["teaming", "trim_share"] > 0.2


def test_small_cells_suppressed():
    frame = pd.DataFrame({"client_id": [f"c{i}" for i in range(12)], "cell": pd.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], dtype="Int8"),
                          "stratum": "all", "y_end": [1.0, np.nan, 2, 3, 4, 5, 1, 2, 3, 4, np.nan, 5], "y_start": np.arange(12.0)})
    a = attrition_table(frame, "y", 5, 50, 0)
    rates = a[(a["section"] == "rate") & (a["cell"] != "all")]
    assert set(rates["n_assigned"]) == {"<5"}
    assert rates["attrition_rate"].isna().all()
