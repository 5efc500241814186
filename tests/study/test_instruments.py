"""The study's own instruments (issue 12): ``STUDY/instruments/*.json`` add to or replace the
packaged definitions, satisfaction items are the study's own, and a study's own total may
be the primary outcome (contract, section 1)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbeval.cli import main
from hbeval.errors import InputError
from hbeval.report import i18n
from hbeval.study.config import load_config
from hbeval.study.ingest import ingest, input_files
from hbeval.study.schema import instruments
from hbeval.study.scoring import score
from hbeval.study.store import open_study

SAT_ITEMS = {"kohtelu": "s1", "vaikutusmahdollisuudet": "s2", "tiedonsaanti": "s3", "palvelujen_sopivuus": "s4"}

HYVINVOINTI = {
    "instrument": "hyvinvointi",
    "name_fi": "Perheen hyvinvointi",
    "name_en": "Family well-being",
    "score_min": 0,
    "score_max": 10,
    "total": "hyvinvointi_total",
    "min_answered_share": 0.8,
    "domains": [
        {"item": "arki", "label_fi": "Arki", "label_en": "Everyday life", "in_total": True},
        {"item": "suhteet", "label_fi": "Suhteet", "label_en": "Relationships", "in_total": True},
        {"item": "talous", "label_fi": "Talous", "label_en": "Finances", "in_total": True},
        {"item": "terveys", "label_fi": "Terveys", "label_en": "Health", "in_total": True},
    ],
}


def _measurements(study: Path) -> pd.DataFrame:
    return pd.read_csv(study / "measurements.csv", dtype=str, keep_default_na=False)


def _own_satisfaction_items(study: Path) -> pd.DataFrame:
    """Replace the demo's five satisfaction items by the study's own ``s1``…``s4``."""
    m = _measurements(study)
    sat = m["instrument"] == "satisfaction"
    m = m[~sat | m["item"].isin(list(SAT_ITEMS))].copy()
    sat = m["instrument"] == "satisfaction"
    m.loc[sat, "item"] = m.loc[sat, "item"].map(SAT_ITEMS)
    m.to_csv(study / "measurements.csv", index=False)
    return m


def _add_hyvinvointi(study: Path) -> None:
    """The study's own instrument: its definition and start/end answers of the pilot families."""
    (study / "instruments").mkdir(exist_ok=True)
    (study / "instruments" / "hyvinvointi.json").write_text(json.dumps(HYVINVOINTI, ensure_ascii=False), encoding="utf-8")
    pilot = pd.read_csv(study / "assignments.csv", dtype=str)  # clients.csv has identity codes, not client_id
    rng = np.random.default_rng(12)
    rows = []
    for i, r in pilot.iterrows():
        enrolled = pd.Timestamp(r["assigned_on"])
        level = rng.uniform(3, 7)
        for tp, day, shift in (("start", 0, 0.0), ("end", 330, 0.8)):
            if tp == "end" and i % 7 == 0:
                continue  # lost to follow-up
            for d in HYVINVOINTI["domains"]:
                if rng.random() < 0.05:
                    continue  # item non-response
                rows.append({"client_id": r["client_id"], "instrument": "hyvinvointi", "timepoint": tp,
                             "measured_on": (enrolled + pd.Timedelta(days=day)).date().isoformat(), "item": d["item"],
                             "score": f"{min(10.0, level + shift + rng.normal(0, 0.7)):.1f}"})
    m = pd.concat([_measurements(study), pd.DataFrame(rows)], ignore_index=True)
    m.to_csv(study / "measurements.csv", index=False)


def _set_primary(study: Path, primary: str) -> None:
    toml = (study / "study.toml").read_text(encoding="utf-8")
    (study / "study.toml").write_text(toml.replace('primary = "kykyviisari_total"', f'primary = "{primary}"'),
                                      encoding="utf-8")


# ------------------------------------------------------------------ (1) the study's own satisfaction items
def test_own_satisfaction_items_validate_and_score_by_the_80_percent_rule(study_copy, tmp_path, capsys):
    m = _own_satisfaction_items(study_copy)
    assert main(["validate", str(study_copy), "--out", str(tmp_path / "o")]) == 0
    assert "No errors." in capsys.readouterr().out
    study = open_study(study_copy)
    sc = score(study.table("measurements"), study.config.instruments)
    assert {f"satisfaction_{it}_end" for it in SAT_ITEMS.values()} <= set(sc.columns)
    assert not any(c.startswith("satisfaction_kohtelu") for c in sc.columns)
    # the total by hand: the mean of the answered items when at least 4 of the 4 (80 %) are answered
    sat = m[(m["instrument"] == "satisfaction") & (m["timepoint"] == "end") & (m["score"] != "")]
    by = sat.assign(score=sat["score"].astype(float)).groupby("client_id")["score"]
    expect = by.mean().where(by.count() >= math.ceil(0.8 * 4))
    got = sc["satisfaction_total_end"].reindex(expect.index)
    assert expect.notna().sum() > 50 and (by.count() < 4).any()  # both cases occur
    pd.testing.assert_series_equal(got, expect, check_names=False)


def test_own_satisfaction_item_codes_must_be_codes(study_copy):
    m = _own_satisfaction_items(study_copy)
    m.loc[m.index[m["instrument"] == "satisfaction"][:3], "item"] = ["S 1", "total", "s1"]
    m.drop_duplicates(["client_id", "instrument", "timepoint", "item"]).to_csv(study_copy / "measurements.csv", index=False)
    led = ingest(study_copy, write_store=False).ledger
    rules = {k[2] for k in led.counts}
    assert any(r.startswith("item of satisfaction is not a code") for r in rules)
    assert led.counts[next(k for k in led.counts if k[2].startswith("item of satisfaction"))] == 2  # "S 1", "total"


def test_a_study_satisfaction_definition_restricts_the_items(study_copy):
    _own_satisfaction_items(study_copy)
    doc = {"instrument": "satisfaction", "name_fi": "Tyytyväisyys", "name_en": "Satisfaction", "score_min": 1,
           "score_max": 5, "domains": [{"item": it, "label_fi": it, "label_en": it, "in_total": True}
                                       for it in ("s1", "s2", "s3")]}
    assert instruments()["satisfaction"].open_items  # without a study file the items are the study's choice
    (study_copy / "instruments").mkdir()
    (study_copy / "instruments" / "satisfaction.json").write_text(json.dumps(doc), encoding="utf-8")
    led = ingest(study_copy, write_store=False).ledger
    assert ("measurements.csv", "item", "unknown item of satisfaction (see instruments/satisfaction.json)") in led.counts


# ------------------------------------------------------------------ (2) an extra instrument, declared primary
@pytest.mark.slow  # about 2.5 minutes (the report executes the notebooks); runs in CI
def test_study_instrument_as_primary_validates_analyzes_and_reports(study_copy, tmp_path, capsys):
    _own_satisfaction_items(study_copy)
    _add_hyvinvointi(study_copy)
    _set_primary(study_copy, "hyvinvointi_total")
    assert main(["validate", str(study_copy), "--out", str(tmp_path / "v")]) == 0
    assert "No errors." in capsys.readouterr().out
    cfg = load_config(study_copy)
    assert cfg.primary == "hyvinvointi_total" and "hyvinvointi" in cfg.instruments
    assert "instruments/hyvinvointi.json" in input_files(study_copy)
    out = tmp_path / "out"
    assert main(["analyze", str(study_copy), "--out", str(out)]) == 0
    eff = pd.read_csv(out / "results" / "effects.csv")
    prim = eff[eff["outcome"] == "hyvinvointi_total"]
    assert {"frame_shares", "teaming", "frame_shares:teaming"} <= set(prim["contrast"])  # measured in the pilot only
    rand = prim[prim["contrast"] == "frame_shares"].iloc[0]
    assert np.isfinite(rand["estimate"]) and int(rand["n"]) > 40
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert "instruments/hyvinvointi.json" in man["inputs"]
    rep = tmp_path / "rep"
    assert main(["report", str(study_copy), "--out", str(rep), "--lang", "en"]) == 0
    html = (rep / "report.html").read_text(encoding="utf-8")
    assert "Family well-being total (0–10)" in html  # the study's own label


def test_study_instrument_labels(study_copy):
    _add_hyvinvointi(study_copy)
    try:
        i18n.use_instruments(instruments(study_copy))
        assert i18n.outcome("hyvinvointi_total", "en") == "Family well-being total (0–10)"
        assert i18n.outcome("hyvinvointi_suhteet", "fi") == "Perheen hyvinvointi: Suhteet"
        assert i18n.value("hyvinvointi_total", "fi") == "Perheen hyvinvointi, kokonaispisteet (0–10)"
        assert i18n.outcome("kompassi_total", "en") == "Kompassi total (1–5)"  # packaged labels stay
    finally:
        i18n.use_instruments(None)
    assert i18n.outcome("hyvinvointi_total", "en") == "hyvinvointi_total"


def test_unknown_primary_is_still_refused(study_copy):
    _set_primary(study_copy, "hyvinvointi_total")
    with pytest.raises(InputError) as e:
        load_config(study_copy)
    assert e.value.column == "outcomes.primary" and "hyvinvointi_total" in e.value.message


def test_editing_a_study_instrument_reingests(study_copy):
    _add_hyvinvointi(study_copy)
    s1 = open_study(study_copy)
    assert s1.config.instruments["hyvinvointi"].min_answered() == 4  # ceil(0.8 * 4)
    doc = dict(HYVINVOINTI, min_answered_share=0.5)
    (study_copy / "instruments" / "hyvinvointi.json").write_text(json.dumps(doc), encoding="utf-8")
    s2 = open_study(study_copy)
    assert s2.ledger is not None  # ingested again, not read from the stale store
    assert s2.input_hashes["instruments/hyvinvointi.json"] != s1.input_hashes["instruments/hyvinvointi.json"]
    assert s2.config.instruments["hyvinvointi"].min_answered() == 2


# ------------------------------------------------------------------ (3) bad study instrument files
def _bad(**change: object) -> dict:
    doc = json.loads(json.dumps(HYVINVOINTI))
    for k, v in change.items():
        if v is None:
            doc.pop(k)
        else:
            doc[k] = v
    return doc


DUP = [dict(d) for d in HYVINVOINTI["domains"]] + [dict(HYVINVOINTI["domains"][0])]

BAD_FILES = [
    ("no domains", _bad(domains=None), "domains"),
    ("empty domains", _bad(domains=[]), "domains"),
    ("score range reversed", _bad(score_min=10, score_max=0), "score_max"),
    ("score range empty", _bad(score_max=0), "score_max"),
    ("score_min not a number", _bad(score_min="low"), "score_min"),
    ("score_max missing", _bad(score_max=None), "score_max"),
    ("duplicate item", _bad(domains=DUP), "domains[4].item"),
    ("item not a code", _bad(domains=[{"item": "Arki ja koti", "in_total": True}]), "domains[0].item"),
    ("total clashes with a packaged total", _bad(total="kompassi_total"), "total"),
    ("total clashes with a packaged domain", _bad(total="kykyviisari_mieli"), "total"),
    ("total clashes with a process outcome", _bad(total="budget_revisions"), "total"),
    ("domain clashes with the own total", _bad(domains=[{"item": "total"}, {"item": "arki"}]), "domains[0].item"),
    ("name not an identifier", _bad(instrument="Hyvinvointi-mittari"), "instrument"),
    ("name starts with a digit", _bad(instrument="2hyvinvointi"), "instrument"),
    ("name missing", _bad(instrument=None), "instrument"),
    ("share out of range", _bad(min_answered_share=1.5), "min_answered_share"),
    ("no domain in the total", _bad(domains=[{"item": "arki", "in_total": False}]), "domains"),
    ("in_total not a boolean", _bad(domains=[{"item": "arki", "in_total": "yes"}]), "domains[0].in_total"),
    ("not an object", [HYVINVOINTI], "instrument"),
]


@pytest.mark.parametrize(("case", "doc", "field"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_instrument_file_exits_1_naming_file_and_field(study_copy, tmp_path, capsys, case, doc, field):
    (study_copy / "instruments").mkdir()
    (study_copy / "instruments" / "hyvinvointi.json").write_text(json.dumps(doc), encoding="utf-8")
    assert main(["validate", str(study_copy), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "instruments/hyvinvointi.json" in err, case
    assert f"column {field}" in err, (case, err)


def test_instrument_file_that_is_not_json_names_file_and_line(study_copy, tmp_path, capsys):
    (study_copy / "instruments").mkdir()
    (study_copy / "instruments" / "hyvinvointi.json").write_text('{"instrument": "hyvinvointi",\n "domains": [,]}',
                                                                  encoding="utf-8")
    assert main(["validate", str(study_copy), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "instruments/hyvinvointi.json" in err and "row 2" in err and "not valid JSON" in err


def test_two_study_files_defining_one_instrument_are_refused(study_copy):
    (study_copy / "instruments").mkdir()
    for name in ("a.json", "b.json"):
        (study_copy / "instruments" / name).write_text(json.dumps(HYVINVOINTI), encoding="utf-8")
    with pytest.raises(InputError) as e:
        instruments(study_copy)
    assert e.value.file == "instruments/b.json" and e.value.column == "instrument"


# ------------------------------------------------------------------ (4) replacing a packaged instrument
def test_a_study_kompassi_replaces_the_packaged_scoring(study_copy):
    before = open_study(study_copy)
    sc0 = score(before.table("measurements"), before.config.instruments)
    doc = json.loads((Path(__file__).parents[2] / "data_schema" / "instruments" / "kompassi.json").read_text("utf-8"))
    for d in doc["domains"]:
        d["in_total"] = d["item"] in ("terveys", "talous", "osallisuus")  # a three-sector total
    doc["min_answered_share"] = 1.0
    (study_copy / "instruments").mkdir()
    (study_copy / "instruments" / "kompassi.json").write_text(json.dumps(doc), encoding="utf-8")
    after = open_study(study_copy)
    ins = after.config.instruments["kompassi"]
    assert ins.origin == "instruments/kompassi.json" and ins.total_items == ["terveys", "talous", "osallisuus"]
    sc1 = score(after.table("measurements"), after.config.instruments)
    three = sc1[["kompassi_terveys_end", "kompassi_talous_end", "kompassi_osallisuus_end"]]
    expect = three.mean(axis=1).where(three.notna().all(axis=1))
    pd.testing.assert_series_equal(sc1["kompassi_total_end"], expect, check_names=False)
    assert not np.allclose(sc0["kompassi_total_end"].fillna(-1), sc1["kompassi_total_end"].fillna(-1))
    assert instruments()["kompassi"].min_answered() == 5  # the packaged definition is unchanged
