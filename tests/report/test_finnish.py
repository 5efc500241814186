"""The Finnish report is wholly Finnish (issue 14): its PDF text and every figure's labels hold no English
word and no raw code (snake_case vocabulary, contrast codes, column names), numbers use Finnish forms
(decimal comma, a space between thousands), and nothing reads "1,000 €"."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from test_plots import _all_figures, _shared_analysis, figure_texts
from test_report_e2e import shared_report

from hbeval.arms import CELLS, CONTRASTS, PILOT_VS_COMPARISON
from hbeval.demo import write_demo
from hbeval.disclosure import COMPLEMENTARY
from hbeval.report import i18n
from hbeval.report import render as R
from hbeval.study.ingest import ingest

#: English words that a Finnish report never uses (Finnish text borrows none of them).
ENGLISH = frozenset("""
the and of with from for not this that which are were was only each per than into over under between
suppressed missing start end pilot comparison frame shares teaming teamed report authors partly
table figure title abstract outcome outcomes cost costs effect effects estimate interval page points point family families
household size children youngest site service line area child welfare income support budget spending staff time meetings
analysed allocated randomised lost follow-up probability willingness pay balance before after weighted unweighted
difference mean median total contrast interaction reference replicates plane curve acceptability deadweight
attribution displacement drop-off discount horizon rate low high value base case yes none assessed eligibility excluded
declined moved away eligible need ended usual services purchased subgroup subgroups imputation tipping
ok info warning error note row rows column identifier dropped repeat repeats earlier exactly export kept copies
""".split())

#: raw codes of the vocabulary: contrasts, cells, covariates and categories as the tables store them
RAW = ({c for c in CONTRASTS} | set(CELLS) | {PILOT_VS_COMPARISON} | set(i18n.COLUMNS) | set(i18n.VALUES)) - {
    c for c in list(i18n.COLUMNS) + list(i18n.VALUES) if "_" not in c and ":" not in c and "/" not in c}


def _strip_identifiers(text: str) -> str:
    """File names, hashes and commands are identifiers, not words: ``results/consort.csv``, ``study.toml``,
    a SHA-256, ``hbeval verify …``."""
    text = re.sub(r"\S+\.(csv|json|toml|sqlite|ipynb|png)\b", " ", text)
    text = re.sub(r"\b[a-z_]+\.[a-z_]+\b", " ", text)  # study.toml keys such as outcomes.ri_draws
    text = re.sub(r"\b[0-9a-f]{12,64}\b|\b\d+\.\d+\.\d+\b", " ", text)  # hashes, version numbers
    return re.sub(r"hbeval (verify|assign|plan|diagnose)[^\n;)]*", " ", text)


def pdf_pages(pdf: Path) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")


def finnish_problems(texts: list[str]) -> list[str]:
    """English words, raw codes and English number forms in ``texts``."""
    found: list[str] = []
    for t in texts:
        t = _strip_identifiers(t)
        words = re.findall(r"[A-Za-zÅÄÖåäö][A-Za-zÅÄÖåäö\-]*", t)
        found += [f"english {w!r}" for w in words if w.lower() in ENGLISH]
        found += [f"raw code {c!r}" for c in RAW if re.search(rf"(?<![\w/]){re.escape(c)}(?![\w/])", t)]
        found += [f"snake_case {w!r}" for w in re.findall(r"\b[a-z]+_[a-z_]+\b", t)]
        found += [f"English number {m!r}" for m in re.findall(r"\d,\d{3}\s*€|\b\d+\.\d+\b", t)]
    return sorted(set(found))


@pytest.fixture(scope="module")
def report_fi(tmp_path_factory) -> Path:
    return shared_report(tmp_path_factory, "fi")


def _heading_page(pages: list[str], key: str, default: int) -> int:
    title = re.escape(i18n.t(f"sec_{key}", "fi")).replace(r"\ ", r"\s+")
    return next((i for i, p in enumerate(pages) if re.search(rf"^\s*{title}", p, re.M)), default)


#: the packaged unit-cost catalogue's service codes, which Appendix A's table of assumed prices shows as codes
SERVICE_CODES = tuple(pd.read_csv(Path(R.__file__).parents[1] / "data" / "unit_costs.csv")["service_code"].astype(str))


def _strip_service_codes(page: str) -> str:
    """A service code at the start of a line (the first column of the table of assumed prices) is a code, not words."""
    alt = "|".join(re.escape(c) for c in sorted(SERVICE_CODES, key=len, reverse=True))
    return re.sub(rf"^[ \t]*(?:{alt})(?=\s)", " ", page, flags=re.M)


def _body_pages(pdf: Path) -> list[str]:
    """Every page but Appendix C (study.toml keys, package names and hashes as they are). Appendix A is scanned
    too: its data-quality ledger reads in Finnish (``i18n.quality``); only the service codes of its table of
    assumed prices are taken out."""
    pages = pdf_pages(pdf)
    a, c = (_heading_page(pages, k, len(pages)) for k in ("quality", "repro"))
    return pages[:a] + [_strip_service_codes(p) for p in pages[a:c]]


def test_the_finnish_pdf_holds_no_english_and_no_raw_codes(report_fi):
    pages = _body_pages(report_fi / "report.pdf")
    assert len(pages) > 10
    problems = finnish_problems(pages)
    assert not problems, problems[:20]


def test_finnish_number_forms(report_fi):
    flat = "\n".join(_body_pages(report_fi / "report.pdf"))
    assert re.search(r"\d,\d", flat)  # decimal comma
    assert re.search(r"\d[\u202f\u00a0 ]\d{3}\b", flat)  # thousands with a space
    assert not re.search(r"\b\d{1,3},\d{3}\s*€", flat)  # "1,000 €" reads as one euro in Finnish


def test_finnish_figures_hold_no_english_and_no_raw_codes(tmp_path_factory):
    out = _shared_analysis(tmp_path_factory)
    problems = {}
    for name, fig in _all_figures(out, "fi").items():
        p = finnish_problems(figure_texts(fig))
        if p:
            problems[name] = p
        plt.close(fig)
    assert not problems, problems


def test_the_scan_finds_what_it_looks_for():
    """The scan is not blind: it flags the problems issue 14 found."""
    assert finnish_problems(["n = suppressed"]) == ["english 'suppressed'"]
    assert "raw code 'household_size'" in finnish_problems(["household_size"])
    assert "raw code 'pilot_vs_comparison'" in finnish_problems(["Kustannusvaikuttavuustaso: pilot_vs_comparison"])
    assert finnish_problems(["Maksuhalukkuus 1,000 € / piste"]) == ["English number '1,000 €'"]
    assert finnish_problems(["0.035"]) == ["English number '0.035'"]
    assert finnish_problems(["Maksuhalukkuus 1\u202f000 € / piste; 0,035; results/cost_differences.csv"]) == []


def test_the_assumed_prices_table_is_finnish_for_the_packaged_catalogue():
    """Appendix A's table of assumed unit costs: the packaged catalogue's units and sources read in Finnish
    (the service codes stay codes); a study's own source text is shown as it is."""
    cat = pd.read_csv(Path(R.__file__).parents[1] / "data" / "unit_costs.csv")
    fi = R.display_assumed_prices(cat, "fi")
    assert len(fi) >= 10
    texts = [str(v) for c in ("label", "unit", "source") for v in fi[c]]
    assert finnish_problems(texts) == []
    assert all(s.startswith("oletus:") for s in fi["source"])
    en = R.display_assumed_prices(cat, "en")
    assert all(s.startswith("assumption:") for s in en["source"]) and "hour" in set(en["unit"])
    own = cat.assign(source="assumption: our own costing")
    assert set(R.display_assumed_prices(own, "fi")["source"]) == {"assumption: our own costing"}


def _appendix_a(pdf: Path) -> str:
    pages = pdf_pages(pdf)
    a, b = (_heading_page(pages, k, len(pages)) for k in ("quality", "checklists"))
    assert a < b < len(pages)
    return "\n".join(pages[a:b])


def test_appendix_a_ledger_is_finnish_in_the_pdf(report_fi):
    """Appendix A's data-quality ledger (the shared study has a file without findings, a dropped name column and
    exact duplicate rows) reads in Finnish; results/data_quality.csv keeps the ledger's own words."""
    dq = pd.read_csv(report_fi / "results" / "data_quality.csv", dtype=str, keep_default_na=False)
    assert {"ok", "info"} <= set(dq["severity"]) and "none" in set(dq["rule"])
    assert dq["rule"].str.startswith("warning:").any() and dq["rule"].str.startswith("direct identifier").any()
    raw = _appendix_a(report_fi / "report.pdf")
    text = re.sub(r"\s+", " ", raw)
    for fi in ("kunnossa", "huomautus", "ei huomautettavaa", "suoran tunnisteen sarake ”nimi” poistettu",
               "varoitus:", "toistaa täsmälleen"):  # the PDF wraps the rest of the sentence
        assert fi in text, fi
    leftovers = re.findall(r"\b(?:ok|info|none|warning|direct identifier|rows repeat)\b", text)
    assert not leftovers, leftovers
    assert finnish_problems([_strip_service_codes(raw)]) == []


def test_the_ledger_reads_in_finnish_and_unknown_rules_stay_as_written(tmp_path):
    """``display_quality`` translates the severities and the notes the real ingestion writes (a small demo:
    a dropped name column, exact duplicate rows), with counts in the Finnish number form; English shows the
    ledger's words; a rule with no translation (a validation rule, which stops the analysis before any report)
    is shown as written, never dropped; the frame it was given is unchanged."""
    write_demo(tmp_path / "s", n_pilot=24, n_comparison=30, seed=3)
    dq = ingest(tmp_path / "s", write_store=False).ledger.to_frame()
    dq = pd.concat([dq, dq.iloc[[0]].assign(severity="error", column="date", rule="not a date", count=2)],
                   ignore_index=True)
    before = dq.copy()
    fi, en = R.display_quality(dq, "fi"), R.display_quality(dq, "en")
    pd.testing.assert_frame_equal(dq, before)
    assert list(en["rule"]) == list(dq["rule"]) and list(en["severity"]) == list(dq["severity"])
    assert len(fi) == len(dq) and set(fi["severity"]) == {"kunnossa", "huomautus", "virhe"}
    assert fi["rule"].iloc[-1] == "not a date"
    assert "ei huomautettavaa" in set(fi["rule"]) and "suoran tunnisteen sarake ”nimi” poistettu" in set(fi["rule"])
    dup = dq.loc[dq["rule"].str.startswith("warning:"), "rule"].iloc[0]
    n_dup, n_rows = map(int, re.findall(r"\d+", dup)[:2])
    assert n_rows >= 1000 and n_dup >= 1  # so the Finnish count shows a thousands space
    want = f"varoitus: {i18n.num(n_rows, 'fi', 0)} rivistä {n_dup} toistaa täsmälleen aiemman rivin"
    assert any(r.startswith(want) for r in fi["rule"]), list(fi["rule"])
    assert finnish_problems([str(v) for c in ("severity", "rule") for v in fi[c].iloc[:-1]]) == []
    assert finnish_problems(list(en["rule"])) != []  # the scan sees the English ledger


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_the_suppression_note_names_both_markers(lang):
    """A hidden count reads "<5" or the complementary marker; the note under Appendix A's heading says both, and why."""
    note = i18n.t("suppression_note", lang, k=5)
    assert "<5" in note and f"{i18n.value(COMPLEMENTARY, lang)}" in note
    assert ("recognised" if lang == "en" else "tunnistettavissa") in note
    if lang == "fi":
        assert finnish_problems([note]) == []


def test_the_footer_is_finnish(report_fi):
    """The footer after Appendix C (outside the pages the scan reads) names the result tables' digest in Finnish."""
    last = re.sub(r"\s+", " ", " ".join(pdf_pages(report_fi / "report.pdf")[-2:]))  # the text ends with a form feed
    assert re.search(r"hbeval \S+ · .+ · tulosten tiiviste [0-9a-f]{16}", last), last[-300:]
    assert not re.search(r"· results [0-9a-f]{16}", last)
