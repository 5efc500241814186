"""``render_pdf`` on a small document (issue 17): the PDF is still PDF/UA-1 with the page's text, and the
cyclic garbage collector, paused while WeasyPrint lays out, is left as it was found, also when the
rendering fails."""

from __future__ import annotations

import gc
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from test_checklists import _pdf_objects

from hbeval.report.render import render_pdf

HTML = ('<!DOCTYPE html><html lang="fi"><head><meta charset="utf-8"><title>Raportti</title></head><body>'
        "<h1>Otsikko</h1><p>Perheitä 308, väli 0,11–0,52.</p>"
        '<table><thead><tr><th>Solu</th><th>n</th></tr></thead><tbody><tr><td>A</td><td>77</td></tr></tbody></table>'
        "</body></html>")


@pytest.fixture
def gc_state() -> Iterator[None]:
    was_on = gc.isenabled()
    yield
    if was_on:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.parametrize("enabled", [True, False])
def test_render_pdf_leaves_the_garbage_collector_as_it_was(tmp_path, gc_state, enabled):
    (gc.enable if enabled else gc.disable)()
    pdf = render_pdf(HTML, tmp_path / "r.pdf")
    assert gc.isenabled() is enabled
    raw = _pdf_objects(pdf)
    assert b"/StructTreeRoot" in raw and b"pdfuaid" in raw
    assert re.search(rb"/Lang\s*\(fi", raw)
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout
        assert "Perheitä 308, väli 0,11–0,52." in text
        assert text.count("\f") == 1  # one page


def test_render_pdf_turns_the_garbage_collector_back_on_when_it_fails(tmp_path, gc_state):
    gc.enable()
    bad = HTML.replace("</body>", '<img src="http://example.invalid/x.png" alt="x"></body>')
    with pytest.raises(BaseException, match="example.invalid"):  # only data: URIs are fetched
        render_pdf(bad, tmp_path / "r.pdf")
    assert gc.isenabled()


# ------------------------------------------------------------------ column widths (the fixed table layout)
def test_column_widths_follow_the_automatic_layout():
    from hbeval.report.render import _CELL_PAD_EM, column_widths

    pad = _CELL_PAD_EM
    # everything fits on one line: in proportion to the widest lines
    assert column_widths([(2, 10 - pad), (2, 30 - pad)], room=80) == pytest.approx([25, 75])
    # squeezed: every column keeps its widest word, the room left goes to what the columns need more
    w = column_widths([(10, 12), (5, 100), (3, 3)], room=50)
    assert sum(w) == pytest.approx(100)
    got = [x / 100 * 50 for x in w]
    assert got[0] >= 10 + pad and got[1] >= 5 + pad and got[2] == pytest.approx(3 + pad)
    assert (got[1] - 5 - pad) / (got[0] - 10 - pad) == pytest.approx(95 / 2)  # shares in proportion to the need
    # wider than the page even word by word: in proportion to the words (the table runs over, as before)
    assert column_widths([(60, 70), (40, 40)], room=50) == pytest.approx([100 * (60 + pad) / (100 + 2 * pad),
                                                                            100 * (40 + pad) / (100 + 2 * pad)])


def test_the_type_sizes_of_the_widths_are_those_of_the_stylesheet():
    from hbeval.report.render import templates_dir, type_pt

    css = (templates_dir() / "report.css").read_text(encoding="utf-8")
    print_css = css[css.index("@media print"):]
    size = {sel: float(m) for sel, m in re.findall(r"^\s*([\w. ]+?)\s*\{[^}]*font-size:\s*([\d.]+)pt", print_css, re.M)}
    assert size["table.data"] == type_pt() and size["table.data.small"] == type_pt(small=True)
    assert size["section.appendix table.data"] == type_pt(appendix=True) == type_pt(small=True, appendix=True)
    assert "table-layout: fixed" in print_css


def _overflowing_cells(html_text: str) -> list[str]:
    """Text that runs past the right edge of its table cell in the laid-out PDF."""
    from weasyprint import HTML as WeasyHTML
    from weasyprint.formatting_structure import boxes

    bad = []
    for page in WeasyHTML(string=html_text).render().pages:
        for cell in page._page_box.descendants():
            if isinstance(cell, boxes.TableCellBox):
                right = cell.content_box_x() + cell.width
                bad += [t.text for t in cell.descendants()
                        if isinstance(t, boxes.TextBox) and t.position_x + t.width > right + 0.5]
    return bad


@pytest.mark.parametrize("appendix", [False, True])
def test_no_word_runs_out_of_its_column_in_print(appendix):
    """The widths worked out from the text (``column_widths``) hold every word of every column, headers in bold
    included, in narrow and wide, normal and small tables, in the body and in an appendix."""
    import pandas as pd

    from hbeval.report import render as R
    from hbeval.report.checklists import SectionRefs

    long_fi = "Lastensuojelun avohuollon tukitoimien kokonaiskustannukset"
    tables = [
        pd.DataFrame({"outcome": ["kyky_total", "Kyvykkyysarviointien yhteispistemäärä"], "estimate": ["+0,31", "−0,07"],
                      "ci95": ["0,11 … 0,52", "−0,23 … 0,57"], "p_unadj": ["<0,001", "0,417"], "n": ["308", "1 024"]}),
        pd.DataFrame({"x": ["WWWWWWWWWWWW", "MMMM MMMM"], "y": [long_fi, "a"], "z": ["%%%%%%", "1"]}),
        pd.DataFrame({c: [f"{c}-sarake-{i} 123 456,78 €" for i in range(3)] for c in "abcdefghi"}),  # small: 9 columns
        pd.DataFrame({"item": ["1a", "23-F"], "topic": ["Otsikko", long_fi],
                      "where": [SectionRefs(("summary", "flow", "baseline"), "fi"), SectionRefs((), "fi")],
                      "status": ["raportti, osittain", "tekijät"]}),
    ]
    blocks = []
    for i, df in enumerate(tables):
        blocks.append({"kind": "table", "section": "quality" if appendix else "outcomes", "caption": f"t{i}",
                       "html": R.table_html(df, "fi", numeric={"n", "estimate"}, appendix=appendix)})
    for key in ("summary", "flow", "baseline"):  # the sections the links point at
        blocks.append({"kind": "text", "section": key, "html": "<p>x</p>"})
    html_text = R.build_html(blocks, "fi", {"study_name": "S", "version": "0", "seed": 1, "price_year": 2024,
                                            "date": "2026-01-01", "results_digest": "x"})
    assert html_text.count("<colgroup>") == len(tables)
    assert _overflowing_cells(html_text) == []


def test_the_overflow_check_finds_a_word_wider_than_its_column():
    """The check above can fail: a column set narrower than its word is found."""
    html_text = ('<html><head><style>table { width: 100%; table-layout: fixed }</style></head><body><table>'
                 '<colgroup><col style="width:2%"><col style="width:98%"></colgroup>'
                 "<tr><td>Kokonaiskustannukset</td><td>b</td></tr></table></body></html>")
    assert _overflowing_cells(html_text) == ["Kokonaiskustannukset"]
