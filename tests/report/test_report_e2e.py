"""End to end: ``hbeval report`` on a small demo, ``hbeval verify`` on it and on a changed study.

The expensive report is built once per test session (and shared between xdist workers and
with ``test_browser.py``) by :func:`shared_report`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from hbeval.demo import write_demo
from hbeval.pipeline import run as analyze_run
from hbeval.report import render as report
from hbeval.study.store import open_study

SECTION_TITLES_EN = ("Executive summary", "Participant flow (CONSORT)", "Baseline characteristics and balance",
                     "Primary and secondary outcomes", "The factorial interaction", "Attrition and its bounds",
                     "The non-randomised comparison group", "Process and prevention outcomes", "Costs",
                     "Cost-effectiveness: CE plane and CEAC", "Return on social investment (ROSI)",
                     "Appendix A: Data quality", "Appendix B: Reporting checklists", "Appendix C: Reproducibility")
SECTION_TITLES_FI = ("Tiivistelmä", "Osallistujien kulku (CONSORT)", "Lähtötilanne ja ryhmien vertailukelpoisuus",
                     "Ensisijaiset ja toissijaiset tulosmuuttujat", "Tekijöiden yhdysvaikutus", "Poistuma ja sen rajat",
                     "Ei-satunnaistettu vertailuryhmä", "Prosessi- ja ennaltaehkäisyn tulokset", "Kustannukset",
                     "Kustannusvaikuttavuus: CE-taso ja CEAC-käyrä", "Sosiaalisen investoinnin tuotto (ROSI)",
                     "Liite A: Aineiston laatu", "Liite B: Raportointitarkistuslistat", "Liite C: Toistettavuus")


def make_test_study(d: Path) -> Path:
    """A small demo study with few RI draws and bootstrap replicates (fast, still real)."""
    write_demo(d, n_pilot=120, n_comparison=160, seed=7)
    toml = (d / "study.toml").read_text(encoding="utf-8")
    toml = toml.replace("[outcomes]\n", "[outcomes]\nri_draws = 200\n", 1)
    toml = toml.replace("[economics]\n", "[economics]\nbootstrap_reps = 200\n", 1)
    (d / "study.toml").write_text(toml, encoding="utf-8")
    return d


def _shared_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    base = root / "hbeval-report-shared"
    base.mkdir(exist_ok=True)
    return base


def shared_study(tmp_path_factory) -> Path:
    base = _shared_root(tmp_path_factory)
    with open(base / ".study.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        d = base / "study"
        if not (d / ".done").exists():
            shutil.rmtree(d, ignore_errors=True)
            make_test_study(d)
            open_study(d)  # ingest once, before workers race on it
            (d / ".done").write_text("ok")
    return d


def shared_report(tmp_path_factory, lang: str = "en") -> Path:
    """``hbeval report`` of the shared small study in ``lang``, built once per session."""
    study = shared_study(tmp_path_factory)
    base = _shared_root(tmp_path_factory)
    out = base / f"report-{lang}"
    with open(base / f".report-{lang}.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if not (out / "report.pdf").exists():
            assert report.run(study, out=out, lang=lang, progress=False) == 0
    return out


@pytest.fixture(scope="session")
def report_en(tmp_path_factory) -> Path:
    return shared_report(tmp_path_factory, "en")


@pytest.fixture(scope="session")
def report_fi(tmp_path_factory) -> Path:
    return shared_report(tmp_path_factory, "fi")


def pdf_text(pdf: Path) -> str:
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pypdf = pytest.importorskip("pypdf")
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)


# ------------------------------------------------------------------ the output folder
def test_report_writes_the_contract_folder(report_en):
    out = report_en
    for f in ("report.html", "report.pdf", "manifest.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 1000, f
    results = sorted(p.stem for p in (out / "results").glob("*.csv"))
    for name in ("consort", "baseline", "balance", "effects", "attrition", "comparison", "costs", "cea", "ceac", "rosi",
                 "process", "data_quality"):
        assert name in results
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(figs) >= 8
    assert any("consort_flow" in f for f in figs) and any("forest" in f for f in figs)
    assert any("tornado" in f for f in figs) and any("ceac" in f for f in figs)
    nbs = sorted(p.name for p in (out / "notebooks").glob("*.ipynb"))
    assert nbs == [p.name for p in report.notebook_paths()]
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"][:2] == ["hbeval", "report"]
    assert set(man["results"]) == {p.name for p in (out / "results").glob("*.csv")}
    assert not list(out.parent.glob(".report-en.tmp-*")), "temporary build folder left behind"


def test_executed_notebooks_hold_outputs_and_no_errors(report_en):
    import nbformat

    for p in (report_en / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(str(p), as_version=4)
        outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outs if o.get("output_type") == "error"], p.name
        assert any(report.BLOCK_MIME in o.get("data", {}) for o in outs), p.name


def test_html_is_self_contained_and_has_no_code(report_en):
    h = (report_en / "report.html").read_text(encoding="utf-8")
    assert "<script" not in h.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//|file:)""", h, re.I)
    assert "@import" not in h and "url(http" not in h
    imgs = re.findall(r'<img src="([^"]+)"', h)
    assert len(imgs) == len(list((report_en / "figures").glob("*.png")))
    assert all(s.startswith("data:image/png;base64,") for s in imgs)
    for code in ("Report.open(", "import hbeval", "r.section(", "narrative."):
        assert code not in h
    for title in SECTION_TITLES_EN:
        assert title in h


def test_html_tables_keep_small_counts_suppressed(report_en):
    """Every count shown comes from the suppressed tables: no 1-4 in the CONSORT n column."""
    consort = pd.read_csv(report_en / "results" / "consort.csv", dtype=str)
    nums = pd.to_numeric(consort["n"], errors="coerce")
    assert not ((nums > 0) & (nums < 5)).any()
    h = (report_en / "report.html").read_text(encoding="utf-8")
    assert "&lt;5" in h  # the small cells are shown as <5


def test_pdf_has_every_section(report_en):
    text = pdf_text(report_en / "report.pdf")
    flat = re.sub(r"\s+", " ", text)
    for title in SECTION_TITLES_EN:
        assert title in flat, title
    assert "CONSORT" in flat and "CHEERS" in flat and "SHA-256" in flat


def test_finnish_report_renders_in_finnish(report_fi):
    h = (report_fi / "report.html").read_text(encoding="utf-8")
    assert '<html lang="fi">' in h
    for title in SECTION_TITLES_FI:
        assert title in h, title
    assert "Executive summary" not in h and "Primary and secondary outcomes" not in h
    flat = re.sub(r"\s+", " ", pdf_text(report_fi / "report.pdf"))
    for title in SECTION_TITLES_FI:
        assert title in flat, title
    # Finnish number format: decimal comma in the executive summary's intervals
    assert re.search(r"\d,\d\d … [−\-]?\d", h)


def test_both_languages_report_the_same_numbers(report_en, report_fi):
    for p in (report_en / "results").glob("*.csv"):
        assert p.read_bytes() == (report_fi / "results" / p.name).read_bytes(), p.name


# ------------------------------------------------------------------------------ verify
def test_verify_fresh_report_exits_0(report_en, capsys):
    assert report.verify(report_en, progress=False) == 0
    assert "OK" in capsys.readouterr().out


def test_verify_names_the_tables_a_changed_input_affects(tmp_path, capsys):
    study = make_test_study(tmp_path / "study")
    out = tmp_path / "out"
    analyze_run(open_study(study), out, progress=False)  # (verify of an unchanged folder: see test_verify_fresh_report_exits_0)
    # change one value: the end score of one pilot family's Kykyviisari domain
    m = pd.read_csv(study / "measurements.csv", dtype=str, keep_default_na=False)
    pilot = set(pd.read_csv(study / "assignments.csv", dtype=str)["client_id"])
    i = m.index[(m["instrument"] == "kykyviisari") & (m["timepoint"] == "end") & m["client_id"].isin(pilot)
                & (m["item"] == "mieli") & (m["score"] != "")][0]
    m.loc[i, "score"] = "10" if m.loc[i, "score"] != "10" else "0"
    m.to_csv(study / "measurements.csv", index=False, lineterminator="\n")
    capsys.readouterr()
    assert report.verify(out, progress=False) == 1
    msg = capsys.readouterr().out
    assert "FAILED" in msg and "measurements.csv" in msg
    assert "effects" in msg
    # a readable diff of the numbers: "row ... · column: old → new"
    assert re.search(r"results/effects\.csv: SHA-256", msg)
    assert re.search(r"outcome=kykyviisari_total.* · estimate: -?\d.* → -?\d", msg)
    # tables that do not depend on the scores are not named
    assert "results/data_quality.csv: SHA" not in msg and "results/costs.csv: SHA" not in msg


def test_verify_flags_an_edited_results_file(report_en, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(report_en, out)
    p = out / "results" / "rosi.csv"
    p.write_text(p.read_text().replace("0.", "9.", 1))
    assert report.verify(out, progress=False) == 1
    assert "rosi.csv" in capsys.readouterr().out


def test_compare_golden(report_en, tmp_path, capsys):
    golden = tmp_path / "golden.json"
    shutil.copy(report_en / "manifest.json", golden)
    assert report.compare_golden(report_en, golden) == 0
    g = json.loads(golden.read_text())
    g["results"]["effects.csv"] = "0" * 64
    del g["results"]["cea.csv"]
    golden.write_text(json.dumps(g))
    capsys.readouterr()
    assert report.compare_golden(report_en, golden) == 1
    msg = capsys.readouterr().out
    assert "effects.csv" in msg and "cea.csv" in msg and "update the golden" in msg
    assert "rosi.csv" not in msg


# ------------------------------------------------------------------------- atomicity
def test_failed_report_leaves_the_previous_one_intact(report_en, tmp_path, monkeypatch):
    out = tmp_path / "rep"
    shutil.copytree(report_en, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def boom(*a, **k):
        raise RuntimeError("interrupted while rendering")

    def copy_results(study, o, command, progress=True):  # the analysis itself is tested elsewhere
        shutil.copytree(report_en / "results", Path(o) / "results")
        shutil.copy(report_en / "manifest.json", Path(o) / "manifest.json")

    monkeypatch.setattr(report, "compute_results", copy_results)
    monkeypatch.setattr(report, "render_pdf", boom)

    class Ran:  # the notebooks' kernels: report_en's executed notebooks stand in for a run
        def __init__(self, *a, **k): pass
        def start(self): return self
        def go(self, *a): pass
        def wait(self): return sorted((report_en / "notebooks").glob("*.ipynb"))
        def close(self): pass

    monkeypatch.setattr(report, "_NotebookRunner", Ran)
    with pytest.raises(RuntimeError):
        report.run(shared_study_path(report_en), out=out, lang="en", progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".rep.tmp-*"))


def shared_study_path(report_dir: Path) -> Path:
    return Path(json.loads((report_dir / "manifest.json").read_text())["study"])


def test_default_out_is_reports_slug(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert report.default_out("Hämeenlinna HB pilot") == tmp_path / "reports" / "hameenlinna-hb-pilot"


def test_cli_report_rejects_bad_language(capsys):
    from hbeval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["report", "x", "--lang", "sv"])
    assert e.value.code == 2
