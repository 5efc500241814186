"""The sealed analysis plan: ``hbeval plan`` → ``assign`` → ``assign --verify``, the plan's hash in
the registry, ``results/deviations.csv``, the report's sections and ``hbeval verify``."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from hbeval.cli import main
from hbeval.randomisation import plan, registry
from hbeval.stats.power import DiagnosisResult
from hbeval.study.config import load_config

#: quick settings for a study sealed and analysed in the tests
QUICK = '\n[diagnose]\nsims = 20\nri_draws = 0\n'


def _fresh(src: Path, dst: Path, extra_toml: str = QUICK) -> Path:
    """A copy of the demo study as it was before ``hbeval plan`` and ``hbeval assign``."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".hbeval", "analysis_plan.*", "allocation.sqlite",
                                                           "assignments.csv", ".hbeval-output.json"))
    toml = (dst / "study.toml").read_text(encoding="utf-8")
    toml = re.sub(r"\n\[diagnose\]\n(#.*\n)?sims = \d+\n", "\n", toml)
    (dst / "study.toml").write_text(toml + extra_toml, encoding="utf-8")
    return dst


def _set(study: Path, old: str, new: str) -> None:
    p = study / "study.toml"
    text = p.read_text(encoding="utf-8")
    assert old in text
    p.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def fresh(small_demo_dir, tmp_path) -> Path:
    return _fresh(small_demo_dir, tmp_path / "study")


# ------------------------------------------------------------------------------ the demo
def test_the_demo_seals_its_plan_before_it_randomises(small_demo_dir):
    sha = plan.file_sha256(small_demo_dir)
    assert sha is not None and registry.plan_of(small_demo_dir / registry.REGISTRY_NAME) == sha
    doc = plan.read_plan(small_demo_dir)
    assert doc["sealed_on"] == "2025-07-01" and doc["settings"]["outcomes.primary"] == "kykyviisari_total"
    assert {r["contrast"] for r in doc["diagnosis"]["table"]} >= {"frame_shares", "teaming", "frame_shares:teaming"}
    md = (small_demo_dir / plan.PLAN_MD).read_text(encoding="utf-8")
    assert "# Analyysisuunnitelma" in md and "# Analysis plan" in md and md.index("Analyysi") < md.index("Analysis plan")
    # the chain starts from the key and the plan: every receipt names the plan
    rows = registry.read(small_demo_dir / registry.REGISTRY_NAME)
    key_id = registry.key_fingerprint(load_config(small_demo_dir).allocation_key(small_demo_dir))
    assert rows["prev_hash"].iloc[0] == registry.genesis(key_id, sha) != registry.genesis(key_id)
    assert main(["assign", str(small_demo_dir), "--verify"]) == 0


def test_the_plan_is_canonical_and_holds_no_wall_clock(small_demo_dir):
    raw = (small_demo_dir / plan.PLAN_JSON).read_bytes()
    doc = json.loads(raw)
    assert plan.plan_bytes(doc) == raw and plan.plan_sha256(doc) == plan.file_sha256(small_demo_dir)
    assert not re.search(rb"\d{2}:\d{2}:\d{2}", raw)  # no time of day anywhere


# ------------------------------------------------------------------------------ seal → assign → verify
def test_seal_assign_verify_then_an_edited_plan_fails(fresh, capsys):
    assert main(["plan", str(fresh)]) == 0
    assert "analysis plan sealed" in capsys.readouterr().out
    sha = plan.file_sha256(fresh)
    assert main(["assign", str(fresh), "--all"]) == 0
    assert registry.plan_of(fresh / registry.REGISTRY_NAME) == sha
    capsys.readouterr()
    assert main(["assign", str(fresh), "--verify"]) == 0
    assert f"analysis plan {sha[:16]}" in capsys.readouterr().out
    # the plan is edited after sealing
    p = fresh / plan.PLAN_JSON
    p.write_text(p.read_text(encoding="utf-8").replace('"outcomes.mic": 1', '"outcomes.mic": 0.5'), encoding="utf-8")
    assert plan.file_sha256(fresh) != sha
    assert main(["assign", str(fresh), "--verify"]) == 1
    assert "edited after sealing" in capsys.readouterr().err
    # no allocation under a changed plan
    assert main(["assign", str(fresh), "--all"]) == 1
    assert "edited after sealing" in capsys.readouterr().err
    # and the plan cannot be sealed again once families are allocated
    assert main(["plan", str(fresh)]) == 1
    assert "already holds" in capsys.readouterr().err
    # a deleted plan fails too
    p.unlink()
    assert main(["assign", str(fresh), "--verify"]) == 1
    assert "missing" in capsys.readouterr().err


def test_a_plan_sealed_after_allocation_began_fails_verify(fresh, capsys):
    assert main(["assign", str(fresh), "--all"]) == 0  # no plan: allowed by default
    assert registry.plan_of(fresh / registry.REGISTRY_NAME) is None
    assert main(["assign", str(fresh), "--verify"]) == 0
    assert main(["plan", str(fresh)]) == 1  # refused: the registry holds allocations
    assert not (fresh / plan.PLAN_JSON).exists()
    shutil.copy(Path(__file__).parent / "test_plan.py", fresh / plan.PLAN_JSON)  # a plan file put there by hand
    capsys.readouterr()
    assert main(["assign", str(fresh), "--verify"]) == 1
    assert "does not precede randomisation" in capsys.readouterr().err


def test_required_plan(fresh, capsys):
    (fresh / "study.toml").write_text((fresh / "study.toml").read_text(encoding="utf-8").replace(
        "required = false", "required = true"), encoding="utf-8")
    assert load_config(fresh).plan_required
    assert main(["assign", str(fresh), "--all"]) == 1
    err = capsys.readouterr().err
    assert "required = true" in err and "hbeval plan" in err
    assert not (fresh / registry.REGISTRY_NAME).exists() and not (fresh / "assignments.csv").exists()
    pilot = pd.read_csv(fresh / "clients.csv", dtype=str)
    assert main(["plan", str(fresh)]) == 0
    assert main(["assign", str(fresh), "--all"]) == 0
    assert len(registry.read(fresh / registry.REGISTRY_NAME)) == (pilot["group"] == "pilot").sum()
    assert main(["assign", str(fresh), "--verify"]) == 0


def test_resealing_before_the_first_allocation_reopens_an_empty_registry(fresh, capsys):
    assert main(["plan", str(fresh)]) == 0
    first = plan.file_sha256(fresh)
    key = load_config(fresh).allocation_key(fresh)
    registry.connect(fresh / registry.REGISTRY_NAME, key=key, plan_sha256=first).close()  # an empty registry
    _set(fresh, "mic = 1.0", "mic = 0.8")
    assert main(["plan", str(fresh)]) == 0
    second = plan.file_sha256(fresh)
    assert second != first and registry.plan_of(fresh / registry.REGISTRY_NAME) == second
    assert registry.head_of(fresh / registry.REGISTRY_NAME)["head"] == registry.genesis(registry.key_fingerprint(key), second)
    assert main(["assign", str(fresh), "--all"]) == 0
    assert main(["assign", str(fresh), "--verify"]) == 0


def test_swapping_the_plan_recorded_in_the_registry_breaks_the_chain(fresh, capsys):
    assert main(["plan", str(fresh)]) == 0
    assert main(["assign", str(fresh), "--all"]) == 0
    other = "0" * 64
    with sqlite3.connect(fresh / registry.REGISTRY_NAME) as c:
        c.execute("UPDATE meta SET value = ? WHERE key = ?", (other, registry.PLAN_KEY))
    (fresh / plan.PLAN_JSON).write_text("{}", encoding="utf-8")  # and a plan file that would match nothing
    capsys.readouterr()
    assert main(["assign", str(fresh), "--verify"]) == 1
    assert "row 1" in capsys.readouterr().err


def test_plan_refuses_a_subgroup_that_is_not_a_column(fresh, capsys):
    toml = (fresh / "study.toml").read_text(encoding="utf-8")
    assert 'subgroups = ["service_line"]' in toml  # the demo's own pre-specified subgroup
    (fresh / "study.toml").write_text(toml.replace('subgroups = ["service_line"]', 'subgroups = ["no_such_column"]'),
                                      encoding="utf-8")
    assert main(["plan", str(fresh)]) == 1
    assert "outcomes.subgroups" in capsys.readouterr().err and not (fresh / plan.PLAN_JSON).exists()


# ------------------------------------------------------------------------------ deviations (unit)
def _diag() -> DiagnosisResult:
    t = pd.DataFrame({"contrast": ["frame_shares", "teaming", "frame_shares:teaming"], "n_pilot": [80] * 3,
                      "effect": [1.0, 1.0, 0.0], "power": [0.9, 0.85, 0.05], "mde": [0.8, 0.9, 1.7],
                      "bias": [0.0] * 3, "rmse": [0.3] * 3, "coverage": [0.95] * 3, "rejection_rate_null": [0.05] * 3,
                      "sims": [100] * 3, "method": ["x"] * 3})
    return DiagnosisResult(table=t, curve=pd.DataFrame(), parameters={"sd": 1.6, "rho": 0.5, "attrition": 0.2,
                                                                       "procedure": "batch"})


def test_deviations_list_every_change(small_demo_dir):
    import dataclasses

    cfg = load_config(small_demo_dir)
    doc = json.loads(plan.plan_bytes(plan.build_plan(cfg, _diag(), dt.date(2025, 1, 1))))
    none = plan.deviations(doc, cfg)
    assert list(none.columns) == ["item", "planned", "actual"] and none.empty
    assert plan.deviations(None, cfg).empty
    new = dataclasses.replace(cfg, mic=0.5, strata=("site",), ri_draws=2000, wtp_eur=(0, 1000), subgroups=("site",),
                              families={**cfg.families, "secondary": [*cfg.families["secondary"][1:], "kompassi_talous"]})
    dev = plan.deviations(doc, new).set_index("item")
    assert dev.loc["outcomes.mic", "planned"] == "1" and dev.loc["outcomes.mic", "actual"] == "0.5"
    assert dev.loc["design.strata", "planned"] == "site, service_line" and dev.loc["design.strata", "actual"] == "site"
    assert {"outcomes.ri_draws", "economics.wtp_eur", "outcomes.subgroups"} <= set(dev.index)
    dropped = cfg.families["secondary"][0]
    assert dev.loc[f"outcome {dropped}", "actual"] == "(dropped)"
    assert "outcomes.primary" not in dev.index


def test_the_report_s_power_sentences_answer_16a_and_the_interaction():
    from hbeval.report import narrative

    doc = {"sealed_on": "2025-01-01", "settings": {"outcomes.mic": 1.0},
           "diagnosis": {"parameters": _diag().parameters, "table": _diag().table.to_dict(orient="records")}}
    en = " ".join(narrative.power_sentences(doc, "en", sha="ab" * 32))
    assert "16a" in en and "not powered to detect an interaction" in en and "0.80" in en
    doc["settings"]["outcomes.mic"] = 2.0
    assert "is powered to detect" in " ".join(narrative.power_sentences(doc, "en"))
    fi = " ".join(narrative.power_sentences(doc, "fi"))
    assert "yhdysvaikutus" in fi and "0,80" in fi
    assert "hbeval diagnose" in narrative.power_sentences(None, "en")[0]


# ------------------------------------------------------------------------------ analyze, report, verify
@pytest.fixture(scope="module")
def analysed(small_demo_dir, tmp_path_factory):
    """A study sealed, randomised, then analysed with another primary outcome."""
    root = tmp_path_factory.mktemp("plan")
    study = _fresh(small_demo_dir, root / "study")
    _set(study, "mic = 1.0", "mic = 1.0\nri_draws = 200")
    _set(study, "drop_off = 0.0", "drop_off = 0.0\nbootstrap_reps = 200")
    assert main(["plan", str(study)]) == 0
    assert main(["assign", str(study), "--all"]) == 0
    _set(study, 'primary = "kykyviisari_total"', 'primary = "kompassi_total"')
    out = root / "out"
    assert main(["analyze", str(study), "--out", str(out)]) == 0
    return study, out


def test_a_changed_primary_is_a_deviation(analysed):
    study, out = analysed
    dev = pd.read_csv(out / "results" / "deviations.csv", dtype=str, keep_default_na=False)
    assert list(dev.columns) == ["item", "planned", "actual"]
    row = dev[dev["item"] == "outcomes.primary"]
    assert list(row["planned"]) == ["kykyviisari_total"] and list(row["actual"]) == ["kompassi_total"]
    fams = dev.set_index("item")
    assert fams.loc["outcome kompassi_total", "actual"] == "primary"
    assert fams.loc["outcome kykyviisari_total", "planned"] == "primary"


def test_the_report_says_the_deviation(analysed):
    from hbeval.report import narrative
    from hbeval.report.render import Report, build_html, display_deviations

    study, out = analysed
    for lang, words in (("en", ("Deviations from the analysis plan", "Kompassi total", "planned")),
                        ("fi", ("Poikkeamat analyysisuunnitelmasta", "Kompassi, kokonaispisteet", "suunniteltu"))):
        r = Report.open(study, out, lang=lang)
        dev = r.results("deviations")
        r.section("deviations")
        r.text(*narrative.deviation_sentences(dev, r.plan(), lang, sha=r.plan_sha256()))
        r.table(display_deviations(dev, lang), r.t("cap_deviations"))
        r.section("power")
        r.text(*narrative.power_sentences(r.plan(), lang, sha=r.plan_sha256(), mic=r.config.mic))
        text = re.sub(r"<[^>]+>", " ", build_html(r.blocks, lang, {"study_name": "x", "version": "0", "seed": 1,
                                                                  "price_year": 2024, "date": "2025-01-01"}))
        for w in (*words, "outcomes.primary", plan.file_sha256(study)[:16]):
            assert w in text, (lang, w)


def test_no_plan_writes_the_header_only(small_demo_dir, tmp_path):
    study = _fresh(small_demo_dir, tmp_path / "study")
    cfg = load_config(study)
    dev = plan.study_deviations(study, cfg)
    assert dev.empty and list(dev.columns) == ["item", "planned", "actual"]
    assert plan.manifest_entry(study) is None


def test_manifest_records_the_plan_and_verify_fails_after_an_edit(analysed, capsys):
    study, out = analysed
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert man["plan"]["sha256"] == plan.file_sha256(study) == man["plan"]["registry_plan"]
    assert man["registry"]["seq"] > 0
    p = study / plan.PLAN_JSON
    original = p.read_bytes()
    try:
        p.write_bytes(original.replace(b'"outcomes.mic": 1', b'"outcomes.mic": 2'))
        capsys.readouterr()
        assert main(["verify", str(out)]) == 1
        text = capsys.readouterr().out
        assert "analysis_plan.json was edited after the analysis" in text
    finally:
        p.write_bytes(original)
