"""Costs per family: the hand-computed fixture, the window, price years and the errors."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from hbeval.costs.engine import (
    CATEGORIES,
    connect_tables,
    difference_table,
    family_costs_from_tables,
    family_costs_sql,
    summarise_costs,
    wide_costs,
)
from hbeval.errors import InputError
from hbeval.stats.bootstrap import bootstrap_weights

D = pd.Timestamp


def _catalogue() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("visit", 100.0, 2022, "fixture"),
            ("day", 50.0, 2024, "fixture"),
            ("purchased_service", 0.0, 2024, "direct cost: the invoice"),
            ("staff:hb_worker", 60.0, 2024, "fixture"),
            ("staff:provider", 40.0, 2022, "fixture"),
            ("staff:social_worker", 30.0, 2023, "fixture"),
        ],
        columns=["service_code", "unit_cost_eur", "price_year", "source"],
    )


def _index() -> pd.DataFrame:
    # factors to 2024: 2022 → ×2, 2023 → ×1.25 (exact in binary floating point)
    return pd.DataFrame({"year": [2022, 2023, 2024, 2025], "index": [50.0, 80.0, 100.0, 104.0]})


def _fixture(out_of_window: bool = True) -> dict[str, pd.DataFrame]:
    clients = pd.DataFrame(
        {
            "client_id": ["F1", "F2", "F3"],
            "site": ["A", "A", "A"],
            "service_line": ["home_help"] * 3,
            "group": ["pilot", "comparison", "comparison"],
            "enrolled_on": [D("2023-07-01"), D("2023-07-01"), D("2020-01-01")],
        }
    )
    assignments = pd.DataFrame({"client_id": ["F1"], "frame_arm": ["frame_shares"], "teaming_arm": ["teaming"],
                                "stratum": ["A|home_help"]})
    # F1's follow-up window is [2023-07-01, 2024-06-30) (2024 is a leap year), its
    # pre-period [2022-07-01, 2023-07-01)
    ev = [
        ("F1", "2023-07-01", "visit", 1.0, np.nan),  # first day of the window: 100 × 2 = 200
        ("F1", "2024-06-29", "visit", 2.0, np.nan),  # last day of the window: 400
        ("F1", "2023-06-30", "visit", 1.0, np.nan),  # last day of the pre-period: 200
        ("F1", "2022-07-01", "visit", 1.0, np.nan),  # first day of the pre-period: 200
        ("F1", "2024-01-10", "day", 3.0, np.nan),  # 3 × 50 = 150
        ("F1", "2023-08-01", "purchased_service", 1.0, 400.0),  # direct, 2023 euros: 500
        ("F1", "2024-02-01", "purchased_service", 1.0, 300.0),  # direct, 2024 euros: 300
        ("F1", "2023-09-01", "visit", 1.0, 1000.0),  # cost_eur overrides the catalogue: 1250
        ("F1", "2022-12-01", "zzz_uncatalogued", 1.0, 50.0),  # direct cost, no catalogue row: pre 100
        ("GHOST", "2023-09-01", "visit", 5.0, np.nan),  # not a family of the study
    ]
    if out_of_window:
        ev += [
            ("F1", "2024-06-30", "visit", 1.0, np.nan),  # first day after the window
            ("F1", "2022-06-30", "visit", 1.0, np.nan),  # the day before the pre-period
            ("F3", "2023-09-01", "visit", 9.0, np.nan),  # F3's windows ended in 2021
            ("F1", "2026-01-01", "zzz_not_priced", 1.0, np.nan),  # outside: neither priced nor an error
        ]
    events = pd.DataFrame(ev, columns=["client_id", "event_date", "service_code", "quantity", "cost_eur"])
    events["event_date"] = pd.to_datetime(events["event_date"])
    spend = [("F1", "2023-08-15", 800.0), ("F1", "2024-03-01", 200.0)]
    if out_of_window:
        spend.append(("F1", "2025-01-01", 999.0))
    spending = pd.DataFrame(spend, columns=["client_id", "date", "amount_eur"]).assign(category="therapy", provider_id="Y1")
    income = pd.DataFrame([("F1", "2023-01-15", "basic", 160.0), ("F1", "2023-10-01", "preventive", 40.0)],
                          columns=["client_id", "date", "kind", "amount_eur"])
    wt = [("F1", "2023-07-05", "hb_worker", 90.0), ("F1", "2023-12-01", "social_worker", 120.0)]
    if out_of_window:
        wt.append(("F1", "2024-07-15", "hb_worker", 30.0))
    worker = pd.DataFrame(wt, columns=["client_id", "date", "role", "minutes"]).assign(activity="x")
    tm = [("F1", "2023-07-20", 2, 60.0)]
    if out_of_window:
        tm.append(("F1", "2024-08-01", 3, 90.0))
    meetings = pd.DataFrame(tm, columns=["client_id", "date", "providers_present", "minutes"]).assign(
        phase="before_start", providers_invited=4)
    for df, col in ((spending, "date"), (income, "date"), (worker, "date"), (meetings, "date")):
        df[col] = pd.to_datetime(df[col])
    return {"clients": clients, "assignments": assignments, "service_events": events, "budget_spending": spending,
            "income_support": income, "worker_time": worker, "teaming_meetings": meetings}


EXPECTED_F1 = {
    ("follow_up", "usual_services"): 200 + 400 + 150,
    ("follow_up", "purchased_services"): 500 + 300 + 1250,
    ("follow_up", "budget_spending"): 800 * 1.25 + 200,
    ("follow_up", "income_support"): 40 * 1.25,
    ("follow_up", "staff_time"): 90 / 60 * 60 + 120 / 60 * 30 * 1.25,
    ("follow_up", "teaming"): 60 * (2 * 40 * 2 + 60) / 60,
    ("pre", "usual_services"): 200 + 200,
    ("pre", "purchased_services"): 50 * 2,
    ("pre", "income_support"): 160 * 1.25,
}


def _costs(tables, **kw) -> pd.DataFrame:
    return family_costs_from_tables(tables, kw.pop("uc", _catalogue()), kw.pop("pi", _index()), price_year=2024,
                                    follow_up_days=365, strata=("site", "service_line"))


def test_hand_computed_family_cost_is_exact():
    fc = _costs(_fixture())
    f1 = fc[fc["client_id"] == "F1"].set_index(["period", "category"])["cost_eur"]
    for (p, c), v in f1.items():
        assert v == pytest.approx(EXPECTED_F1.get((p, c), 0.0), abs=1e-9), (p, c)
    w = wide_costs(fc).set_index("client_id")
    assert w.loc["F1", "follow_up_total"] == pytest.approx(750 + 2050 + 1200 + 50 + 165 + 220, abs=1e-9)
    assert w.loc["F1", "pre_total"] == pytest.approx(400 + 100 + 200, abs=1e-9)
    # a family with nothing, and one whose rows all fall outside its windows, cost zero
    assert (w.loc[["F2", "F3"], ["follow_up_total", "pre_total"]].to_numpy() == 0).all()
    # the rows carry the family's group, cell and stratum; the ghost is not a family
    assert set(fc["client_id"]) == {"F1", "F2", "F3"}
    assert fc.loc[fc["client_id"] == "F1", "cell"].iloc[0] == "frame_shares/teaming"
    assert len(fc) == 3 * 2 * len(CATEGORIES)


def test_rows_outside_the_window_are_excluded():
    with_out = wide_costs(_costs(_fixture(out_of_window=True)))
    without = wide_costs(_costs(_fixture(out_of_window=False)))
    num = [c for c in with_out.columns if c.startswith(("follow_up_", "pre_"))]
    np.testing.assert_array_equal(with_out[num].to_numpy(), without[num].to_numpy())
    # and moving one out-of-window row into the window does change the cost
    t = _fixture()
    ev = t["service_events"]
    ev.loc[ev["event_date"] == D("2024-06-30"), "event_date"] = D("2024-06-29")
    moved = wide_costs(_costs(t)).set_index("client_id")
    assert moved.loc["F1", "follow_up_usual_services"] == pytest.approx(750 + 200)


def test_a_longer_follow_up_takes_in_more_rows():
    t = _fixture()
    fc = family_costs_from_tables(t, _catalogue(), _index(), price_year=2024, follow_up_days=366,
                                  strata=("site", "service_line"))
    w = wide_costs(fc).set_index("client_id")
    # day 366 is 2024-06-30: the visit on it now counts (100 × 2 = 200 in 2024 euros)
    assert w.loc["F1", "follow_up_usual_services"] == pytest.approx(750 + 200)


def test_price_year_moves_every_amount():
    base = wide_costs(_costs(_fixture())).set_index("client_id").loc["F1", "follow_up_total"]
    fc = family_costs_from_tables(_fixture(), _catalogue(), _index(), price_year=2025, follow_up_days=365,
                                  strata=("site", "service_line"))
    moved = wide_costs(fc).set_index("client_id").loc["F1", "follow_up_total"]
    assert moved == pytest.approx(base * 1.04, rel=1e-12)


def test_year_missing_from_the_index_is_an_error_naming_it():
    pi = _index()
    with pytest.raises(InputError, match="2022"):
        _costs(_fixture(), pi=pi[pi["year"] != 2022])
    with pytest.raises(InputError, match="price year 2024"):
        _costs(_fixture(), pi=pi[pi["year"] != 2024])
    # a year used only by a row outside every window is not needed
    pi2 = pd.concat([pi, pd.DataFrame({"year": [2026], "index": [110.0]})])
    _costs(_fixture(), pi=pi2)


def test_uncatalogued_code_without_cost_is_an_error():
    t = _fixture()
    t["service_events"].loc[0, "service_code"] = "no_such_code"
    with pytest.raises(InputError, match="no_such_code"):
        _costs(t)


def test_invoice_only_code_without_cost_eur_is_an_error():
    t = _fixture()
    t["service_events"].loc[5, "cost_eur"] = np.nan
    with pytest.raises(InputError, match="purchased_service"):
        _costs(t)


def test_staff_role_without_hourly_cost_is_an_error():
    t = _fixture()
    t["worker_time"].loc[0, "role"] = "janitor"
    with pytest.raises(InputError, match="janitor"):
        _costs(t)
    uc = _catalogue()
    with pytest.raises(InputError, match="staff:provider"):
        _costs(_fixture(), uc=uc[uc["service_code"] != "staff:provider"])


def test_duplicated_catalogue_rows_are_an_error():
    uc = pd.concat([_catalogue(), _catalogue().iloc[:1]])
    with pytest.raises(InputError, match="twice"):
        _costs(_fixture(), uc=uc)


def test_absent_optional_tables_count_as_empty():
    t = _fixture()
    t = {k: v for k, v in t.items() if k in ("clients", "assignments", "service_events")}
    w = wide_costs(_costs(t)).set_index("client_id")
    assert w.loc["F1", "follow_up_total"] == pytest.approx(750 + 2050)
    t["service_events"] = t["service_events"].drop(columns=["cost_eur"])
    t["service_events"] = t["service_events"][t["service_events"]["service_code"].isin(["visit", "day"])]
    w = wide_costs(_costs(t)).set_index("client_id")
    # without cost_eur the invoiced visit of 2023-09-01 is priced from the catalogue (200)
    assert w.loc["F1", "follow_up_usual_services"] == pytest.approx(750 + 200)
    assert w.loc["F1", "follow_up_purchased_services"] == 0


def test_aggregation_runs_in_duckdb_on_a_read_only_store(tmp_path):
    t = _fixture()
    db = tmp_path / "store.duckdb"
    con = duckdb.connect(str(db))
    for name in ("service_events", "budget_spending", "income_support", "worker_time", "teaming_meetings"):
        df = t[name]
        con.register("_x", df)
        con.execute(f"CREATE TABLE {name} AS SELECT * EXCLUDE ({'event_date' if name == 'service_events' else 'date'}), "
                    f"CAST({'event_date' if name == 'service_events' else 'date'} AS DATE) AS "
                    f"{'event_date' if name == 'service_events' else 'date'} FROM _x")
        con.unregister("_x")
    con.close()
    ro = duckdb.connect(str(db), read_only=True)
    fam = t["clients"][["client_id", "enrolled_on"]]
    fc = family_costs_sql(ro, fam, _catalogue(), _index(), 2024, 365)
    ro.close()
    f1 = fc[fc["client_id"] == "F1"].groupby("period")["cost_eur"].sum()
    assert f1["follow_up"] == pytest.approx(4435.0)
    assert f1["pre"] == pytest.approx(700.0)


def test_bootstrap_weights_keep_arm_sizes():
    arms = np.array(["a"] * 7 + ["b"] * 3 + ["a"] * 2)
    w = bootstrap_weights(arms, 50, np.random.default_rng(1))
    assert w.shape == (50, 12)
    assert (w[:, arms == "a"].sum(axis=1) == 9).all()
    assert (w[:, arms == "b"].sum(axis=1) == 3).all()


def _demo_costs():
    from importlib.resources import files

    from hbeval.demo import generate

    d = generate(60, 80, seed=11)

    uc = pd.read_csv(files("hbeval") / "data" / "unit_costs.csv")
    pi = pd.read_csv(files("hbeval") / "data" / "price_index.csv")
    return d, family_costs_from_tables(d.tables, uc, pi, price_year=2024, follow_up_days=365,
                                       strata=("site", "service_line"))


def test_summary_table_columns_totals_and_suppression():
    _, fc = _demo_costs()
    s = summarise_costs(fc, n_reps=500, seed=3, min_cell=5)
    assert list(s.columns) == ["group", "cell", "category", "period", "n", "mean_eur", "sd_eur", "median_eur", "ci_low",
                               "ci_high", "total_eur"]
    assert set(s["category"]) == {*CATEGORIES, "total"}
    pil = s[(s["group"] == "pilot") & (s["cell"] == "all") & (s["period"] == "follow_up")].set_index("category")
    assert pil.loc["total", "total_eur"] == pytest.approx(pil.loc[list(CATEGORIES), "total_eur"].sum(), abs=0.05)
    assert (pil["ci_low"] <= pil["mean_eur"] + 1e-9).all() and (pil["mean_eur"] <= pil["ci_high"] + 1e-9).all()
    # a group below min_cell shows "<k" and no statistics
    s2 = summarise_costs(fc, n_reps=200, seed=3, min_cell=40)
    small = s2[s2["n"] == "<40"]
    assert len(small) and small["mean_eur"].isna().all()
    # the same seed gives the same table
    pd.testing.assert_frame_equal(s, summarise_costs(fc, n_reps=500, seed=3, min_cell=5))


def test_cost_differences_match_means_and_glm():
    _, fc = _demo_costs()
    d = difference_table(fc, n_reps=400, seed=1, min_cell=5)
    row = d[(d["contrast"] == "pilot_vs_comparison") & (d["category"] == "total")].iloc[0]
    assert row["difference_eur"] == pytest.approx(row["mean_a_eur"] - row["mean_b_eur"], abs=0.02)
    assert row["ci_low"] < row["difference_eur"] < row["ci_high"]
    # the gamma-log GLM with one indicator reproduces the ratio of means (on positive costs)
    assert row["glm_ratio"] == pytest.approx(row["mean_a_eur"] / row["mean_b_eur"], rel=0.02)
    assert row["glm_ci_low"] < row["glm_ratio"] < row["glm_ci_high"]


def test_study_costs_match_the_tables_they_were_written_from(small_demo_dir, tmp_path):
    """Round trip: the office-format study folder, ingested, gives the same costs as the
    canonical in-memory tables it was written from."""
    from importlib.resources import files

    from hbeval.costs.engine import costs_results, family_costs
    from hbeval.demo import generate
    from hbeval.study.store import open_study

    d = tmp_path / "s"
    shutil.copytree(small_demo_dir, d)
    study = open_study(d)
    fc = family_costs(study)
    demo = generate(120, 160, seed=7)
    uc = pd.read_csv(files("hbeval") / "data" / "unit_costs.csv")
    pi = pd.read_csv(files("hbeval") / "data" / "price_index.csv")
    ref = family_costs_from_tables(demo.tables, uc, pi, price_year=2024, follow_up_days=365,
                                   strata=("site", "service_line"))
    a = fc.groupby(["group", "period", "category"])["cost_eur"].sum()
    b = ref.groupby(["group", "period", "category"])["cost_eur"].sum()
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index(), check_exact=False, rtol=1e-9)
    c1 = costs_results(study)
    assert c1.equals(costs_results(study))
    assert not c1["n"].astype(str).str.len().eq(0).any()
    assert "client_id" not in c1.columns


def test_income_support_by_kind_is_a_breakdown_not_added_twice():
    fc, det = family_costs_from_tables(_fixture(), _catalogue(), _index(), price_year=2024, follow_up_days=365,
                                       strata=("site", "service_line"), detail=True)
    d = det[det["client_id"] == "F1"].set_index(["period", "category"])["cost_eur"]
    assert d[("follow_up", "income_support:preventive")] == pytest.approx(50.0)
    assert d[("pre", "income_support:basic")] == pytest.approx(200.0)
    assert d[("pre", "income_support:supplementary")] == 0.0
    s = summarise_costs(fc, n_reps=50, seed=1, min_cell=1, detail=det)
    pil = s[(s["group"] == "pilot") & (s["cell"] == "all") & (s["period"] == "pre")].set_index("category")
    cats = list(pil.index)
    assert cats.index("income_support:basic") == cats.index("income_support") + 1
    assert pil.loc["total", "total_eur"] == pytest.approx(700.0)
    assert pil.loc["income_support", "total_eur"] == pytest.approx(
        pil.loc[[c for c in cats if c.startswith("income_support:")], "total_eur"].sum())


def test_wide_sql_equals_the_pivot_of_the_long_costs():
    """The analyses read costs pivoted in DuckDB (one row per family); pivoting the long
    table in pandas gives the same table, and the long table is the wide one melted."""
    from hbeval.costs.engine import _wide_frame, families_frame, family_costs_wide_sql
    from hbeval.demo import generate
    from hbeval.outcomes.frame import InMemoryStudy

    tables = generate(60, 80, seed=11).tables
    uc, pi = InMemoryStudy(tables).unit_costs(), InMemoryStudy(tables).price_index()
    fc, det = family_costs_from_tables(tables, uc, pi, price_year=2024, follow_up_days=365,
                                       strata=("site", "service_line"), detail=True)
    w_pivot = wide_costs(fc.sample(frac=1.0, random_state=1))
    fam = families_frame(tables["clients"], tables.get("assignments"), ("site", "service_line"))
    con = connect_tables(tables)
    try:
        values, kinds = family_costs_wide_sql(con, fam, uc, pi, 2024, 365)
    finally:
        con.close()
    pd.testing.assert_frame_equal(_wide_frame(values, fam), w_pivot, check_exact=True)
    assert len(w_pivot) == fam["enrolled_on"].notna().sum() and w_pivot["follow_up_total"].gt(0).any()
    assert kinds[:3] == ["income_support:basic", "income_support:supplementary", "income_support:preventive"]
    d = det.pivot_table(index="client_id", columns=["period", "category"], values="cost_eur", aggfunc="sum")
    for (p, k) in d.columns:
        np.testing.assert_array_equal(values.loc[d.index, f"{p}_{k}"].to_numpy(), d[(p, k)].to_numpy())

