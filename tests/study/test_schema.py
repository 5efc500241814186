"""The data schema is one source of truth (issue 2)."""

from __future__ import annotations

import json
from pathlib import Path

from hbeval.study.schema import TABLE_ORDER, aliases_markdown, data_schema_dir, instruments, tables

CONTRACT_COLUMNS = {
    "clients": ["client_id", "site", "service_line", "group", "exclusion_reason", "enrolled_on", "household_size",
                "n_children", "youngest_child_age", "area", "referral_reason"],
    "assignments": ["client_id", "frame_arm", "teaming_arm", "stratum", "assigned_on"],
    "measurements": ["client_id", "instrument", "timepoint", "measured_on", "item", "score"],
    "service_events": ["client_id", "event_date", "service_code", "quantity", "visit_content", "cost_eur"],
    "unit_costs": ["service_code", "label_fi", "label_en", "unit", "unit_cost_eur", "price_year", "source"],
    "budgets": ["client_id", "frame_eur", "category", "told_share", "proposed_eur", "confirmed_eur", "proposed_on",
                "confirmed_on", "revisions"],
    "budget_spending": ["client_id", "date", "category", "provider_id", "amount_eur"],
    "income_support": ["client_id", "date", "kind", "amount_eur"],
    "worker_time": ["client_id", "date", "role", "activity", "minutes"],
    "teaming_meetings": ["client_id", "date", "phase", "providers_invited", "providers_present", "minutes"],
    "child_welfare": ["client_id", "date", "event"],
}


def test_every_contract_table_has_a_schema_with_its_columns():
    ts = tables()
    for name, cols in CONTRACT_COLUMNS.items():
        assert ts[name].columns == cols, name
    assert set(TABLE_ORDER) == set(ts)


def test_schema_files_are_frictionless_table_schemas():
    for p in sorted((data_schema_dir() / "tables").glob("*.json")):
        doc = json.loads(p.read_text(encoding="utf-8"))
        assert doc["fields"] and all({"name", "type"} <= set(f) for f in doc["fields"])
        assert all(f["type"] in {"string", "integer", "number", "date"} for f in doc["fields"])
        for k in doc.get("primaryKey", []):
            assert k in [f["name"] for f in doc["fields"]]


def test_instruments_follow_the_contract():
    ins = instruments()
    assert ins["kompassi"].total_items == ["tyoelama", "terveys", "psyykkinen_hyvinvointi", "arjen_hallinta", "talous",
                                           "osallisuus"]
    assert (ins["kompassi"].score_min, ins["kompassi"].score_max, ins["kompassi"].min_answered()) == (1, 5, 5)
    assert ins["kykyviisari"].total_items == ["osallisuus", "mieli", "arki", "taidot", "keho"]
    assert set(ins["kykyviisari"].items) - set(ins["kykyviisari"].total_items) == {"kokonaistilanne",
                                                                                   "elamaan_tyytyvaisyys"}
    assert (ins["kykyviisari"].score_min, ins["kykyviisari"].score_max, ins["kykyviisari"].min_answered()) == (0, 10, 4)
    assert ins["satisfaction"].score_min == 1 and ins["satisfaction"].score_max == 5


def test_alias_documentation_is_in_step():
    readme = (Path(data_schema_dir()) / "README.md").read_text(encoding="utf-8")
    assert aliases_markdown() in readme


def test_packaged_catalogue_marks_assumptions():
    import pandas as pd

    from hbeval.study.ingest import PACKAGE_DATA

    uc = pd.read_csv(PACKAGE_DATA / "unit_costs.csv")
    published = uc[~uc["source"].str.startswith(("assumption", "direct cost"))]
    # the figures domain.md gives, with their price year
    expect = {"cw_institution_day": 480, "disabled_24h_housing_day": 257, "disabled_institution_day": 656,
              "mh_24h_housing_day": 154, "home_care_visit": 29, "gp_visit": 125, "nurse_visit": 51}
    assert dict(zip(published["service_code"], published["unit_cost_eur"])) == expect
    assert (published["price_year"] == 2024).all()
    assert uc["service_code"].is_unique
    for code in ("family_work_visit", "family_counselling_visit", "social_work_meeting"):
        assert uc.set_index("service_code").loc[code, "source"].startswith("assumption")
