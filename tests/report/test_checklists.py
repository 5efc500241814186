"""The reporting checklists point at sections that exist, with page numbers that are right (issue 14):
CONSORT 2025 with its factorial extension and CHEERS 2022; the table of contents; and a tagged PDF (PDF/UA-1)."""

from __future__ import annotations

import re
import subprocess
import zlib
from pathlib import Path

import pytest
from test_report_e2e import shared_report

from hbeval.economics.cheers import cheers_checklist
from hbeval.report import checklists, i18n
from hbeval.report.render import SECTIONS, table_html

PAGE_REF = re.compile(r"\((?:p|s)\.[\s\u00a0](\d+)\)")


@pytest.fixture(scope="module", params=["en", "fi"])
def built(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, shared_report(tmp_path_factory, request.param)


def _pages(pdf: Path) -> list[str]:
    """Page texts in content order (``-raw``), whitespace (and no-break spaces) collapsed."""
    text = subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return [re.sub(r"\s+", " ", p.replace("\u00a0", " ")) for p in text.split("\f")]


# ------------------------------------------------------------------ the tables, without a PDF
def test_every_checklist_row_points_at_a_report_section():
    consort = checklists.consort_checklist()
    for secs in consort["sections"]:
        assert set(filter(None, secs.split(","))) <= set(SECTIONS), secs
    assert set(checklists.CHEERS_SECTIONS) == set(range(1, 29))
    for secs in checklists.CHEERS_SECTIONS.values():
        assert set(secs) <= set(SECTIONS)
    # allocation concealment: the randomisation and balance section, which describes the registry
    row = consort[consort["item"] == "18"].iloc[0]
    assert row["sections"] == "baseline"


def test_cheers_names_no_section_the_report_lacks():
    where = " ".join(cheers_checklist()["where_answered"])
    for missing in ("Economic methods", "report: Methods", "report: Discussion", "report: Results", "front matter",
                    "report: Background", "report: Participants", "report: Setting", "report: Design"):
        assert missing not in where, missing
    # each section a CHEERS row links to is named in its where_answered text
    c = cheers_checklist().set_index("item")
    for item, secs in checklists.CHEERS_SECTIONS.items():
        for k in secs:
            if k != "summary":
                assert i18n.t(f"sec_{k}", "en").split(" (")[0].split(":")[0] in c.loc[item, "where_answered"], (item, k)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_checklist_topics_and_links_are_in_the_report_language(lang):
    d = checklists.display_checklist(checklists.consort_checklist(lang), lang)
    html = table_html(d, lang)
    assert html.count('class="secref"') == sum(len(r.keys) for r in d["where"])
    assert 'href="#sec-flow"' in html
    if lang == "fi":
        assert "Satunnaistuksen salaaminen" in html and "Allocation concealment" not in html
        assert "Asetelma (faktorikoe)" in html
    cfg = type("C", (), {"perspective": "organiser (wellbeing services county)", "follow_up_days": 365,
                         "horizon_years": 1, "discount_rate": 0.035, "primary": "kykyviisari_total",
                         "wtp_eur": (0, 1000.0, 5000.0), "price_year": 2024, "bootstrap_reps": 5000, "seed": 1,
                         "deadweight": 0.1, "attribution": 0.0, "displacement": 0.0, "drop_off": 0.0,
                         "intervention_categories": ("budget_spending",)})()
    ch = checklists.cheers_display(cheers_checklist(), lang, cfg)
    answers = " ".join(ch["answer"])
    assert ("0,035" in answers) == (lang == "fi") and ("1\u202f000" in answers)
    if lang == "fi":
        assert "järjestäjä (hyvinvointialue)" in answers and "Budjetin käyttö" in answers


# ------------------------------------------------------------------ the rendered report
def test_checklist_page_references_resolve_to_their_sections(built):
    lang, out = built
    html = (out / "report.html").read_text(encoding="utf-8")
    appendix = html[html.index('id="sec-checklists"'):]
    appendix = appendix[: appendix.index("</section>")]
    keys = re.findall(r'<a class="secref" href="#sec-(\w+)">', appendix)
    assert len(keys) > 60
    for k in set(keys):
        assert f'<section id="sec-{k}"' in html, f"a checklist cites the missing section {k}"
    pages = _pages(out / "report.pdf")
    title_b = i18n.t("sec_checklists", lang)
    # every section starts on a new page, with its heading first
    first = next(i for i, p in enumerate(pages) if p.lstrip().startswith(title_b))
    last = next(i for i, p in enumerate(pages) if p.lstrip().startswith(i18n.t("sec_repro", lang)))
    refs = [int(n) for p in pages[first:last] for n in PAGE_REF.findall(p)]
    assert len(refs) == len(keys), (len(refs), len(keys))
    for k, page in zip(keys, refs):
        heading = i18n.t(f"sec_{k}", lang)
        assert heading in pages[page - 1], f"{k}: page {page} does not hold the heading {heading!r}"


def test_table_of_contents_has_right_page_numbers_after_the_summary(built):
    lang, out = built
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.index('id="sec-summary"') < html.index('<nav class="toc"') < html.index('id="sec-flow"')
    toc = html[html.index('<nav class="toc"'):]
    toc = toc[: toc.index("</nav>")]
    entries = re.findall(r'<a href="#sec-(\w+)">', toc)
    pages = _pages(out / "report.pdf")
    toc_page = next(p for p in pages if i18n.t("contents", lang) in p and i18n.t("sec_flow", lang) in p)
    for k in entries:
        title = i18n.t(f"sec_{k}", lang)
        m = re.search(re.escape(title) + r"[ .]*?(\d+)", toc_page)
        assert m, f"{title!r} has no page number in the contents"
        assert title in pages[int(m.group(1)) - 1], f"{title!r}: contents says page {m.group(1)}"


def _pdf_objects(pdf: Path) -> bytes:
    """The PDF's bytes with its object streams and its XMP metadata inflated (WeasyPrint compresses the
    catalogue into an object stream)."""
    raw = pdf.read_bytes()
    parts = [raw]
    for m in re.finditer(rb"/Type\s*/(?:ObjStm|Metadata)[^>]*>>\s*stream\r?\n", raw):
        body = raw[m.end(): raw.index(b"endstream", m.end())]
        try:
            parts.append(zlib.decompress(body))
        except zlib.error:
            parts.append(body)  # an uncompressed stream
    return b"\n".join(parts)


def test_the_pdf_is_tagged_pdf_ua(built):
    lang, out = built
    raw = _pdf_objects(out / "report.pdf")
    assert b"/StructTreeRoot" in raw
    assert re.search(rb"/MarkInfo\s*<<\s*/Marked\s+true", raw)
    assert re.search(rb"/Lang\s*\(" + lang.encode(), raw)
    assert b"pdfuaid" in raw  # the PDF/UA identification in the XMP metadata
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f'<html lang="{lang}">' in html
    assert all(alt.strip() for alt in re.findall(r'<img [^>]*alt="([^"]*)"', html))
