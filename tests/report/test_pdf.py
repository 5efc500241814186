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
