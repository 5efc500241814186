"""``hbeval report`` and ``hbeval verify``: the evaluation report and the proof that it reproduces.

``hbeval report STUDY [--out OUT] [--lang fi|en]``
    1. opens (ingests and validates) the study;
    2. computes every result table once (:func:`hbeval.pipeline.compute`) into a temporary
       folder beside ``OUT`` and writes ``manifest.json``;
    3. executes the numbered notebooks of ``notebooks/`` with papermill, in kernels started
       before step 2 (two where two cores are free: :class:`_NotebookRunner`); each notebook
       reads the result tables and calls the library to narrate, tabulate and plot;
    4. assembles ``report.html`` (self-contained: no code, figures as data URIs, nothing
       fetched from the network) from the notebooks' outputs and renders ``report.pdf``
       from the same HTML with WeasyPrint;
    5. moves the folder into place (:func:`hbeval.outdir.building`), so that a failed or
       interrupted run leaves the previous report intact.

``hbeval verify OUT``
    re-runs the analysis from ``OUT/manifest.json`` (its study folder and parameters) into a
    temporary folder and compares the SHA-256 of every ``results/*.csv``; on a difference it
    prints which tables, rows and columns changed (old → new) and returns 1.

The notebooks talk to the library through :class:`Report` (``Report.open(study, out, lang,
seed)``): every block they display (headings, paragraphs, tables, figures) carries a
``application/vnd.hbeval.block+json`` part that :func:`build_html` collects, so the
report holds exactly what the notebooks showed, in the section order of :data:`SECTIONS`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import html
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hbeval import __version__
from hbeval.arms import CELL_CONTRASTS, CELLS  # the notebooks name them as R.CELLS, R.CELL_CONTRASTS
from hbeval.disclosure import COMPLEMENTARY
from hbeval.errors import HbevalError, InputError, UsageError
from hbeval.manifest import build_manifest, read_manifest, sha256_file, write_manifest
from hbeval.outdir import building, check_out, updating
from hbeval.pipeline import compute, write_results
from hbeval.report import i18n, narrative  # narrative: p-values labelled by kind, one rule for tables and text
from hbeval.report.checklists import SectionRefs
from hbeval.study.config import check_config, slug  # slug: the folder-name rule lives beside the name's length check
from hbeval.study.store import open_study

#: Sections of the report, in reading order (notebooks may emit them in any order).
SECTIONS: tuple[str, ...] = ("summary", "power", "deviations", "flow", "baseline", "outcomes", "interaction", "subgroups",
                             "attrition", "missing_data", "comparison", "process", "costs", "cea", "rosi", "quality", "checklists", "repro")
APPENDICES = ("quality", "checklists", "repro")
BLOCK_MIME = "application/vnd.hbeval.block+json"
RANDOMISED = ("frame_shares", "teaming", "frame_shares:teaming")
#: where ``hbeval analyze`` writes the bootstrap replicates that figures draw (not hashed by the manifest)
REPLICATES_DIR = "replicates"
#: the sealed analysis plan in the study folder (``hbeval plan``; :mod:`hbeval.randomisation.plan`)
PLAN_FILE = "analysis_plan.json"


# =============================================================================== paths
def package_dir() -> Path:
    """The installed ``hbeval`` package folder."""
    return Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    return Path(__file__).resolve().parent / "templates"


def notebooks_dir() -> Path:
    """The numbered notebooks: ``notebooks/`` of a source checkout, else the copy packaged in the wheel."""
    src = package_dir().parent / "notebooks"
    if src.is_dir() and any(src.glob("[0-9]*.ipynb")):
        return src
    packaged = package_dir() / "_notebooks"
    if packaged.is_dir():
        return packaged
    raise HbevalError(f"the report notebooks were not found (looked in {src} and {packaged})")


def notebook_paths() -> list[Path]:
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def default_out(study_name: str, base: Path | None = None) -> Path:
    """``reports/<study name slug>`` under ``base`` (the current directory by default)."""
    return (base or Path.cwd()) / "reports" / slug(study_name)


# ===================================================================== result freshness
def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, ensure_ascii=False, default=str))


def results_are_current(study: Any, out: Path) -> bool:
    """Whether ``out`` holds results of exactly this study: same inputs, parameters and
    hbeval version, every ``results/*.csv`` unchanged since its manifest was written, and the
    CE plane's replicates (``replicates/ce_plane.csv``, which the manifest does not hash) present."""

    p = Path(out) / "manifest.json"
    if not p.exists():
        return False
    try:
        man = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if man.get("hbeval_version") != __version__ or man.get("inputs") != dict(sorted(study.input_hashes.items())):
        return False
    if _jsonable(man.get("parameters")) != _jsonable(study.config.to_dict()):
        return False
    files = {f.name: sha256_file(f) for f in sorted((Path(out) / "results").glob("*.csv"))}
    return bool(files) and files == man.get("results") and (Path(out) / REPLICATES_DIR / "ce_plane.csv").exists()


def _with_seed(study: Any, seed: int | None) -> Any:
    if seed is None or int(seed) == study.config.seed:
        return study
    return dataclasses.replace(study, config=dataclasses.replace(study.config, seed=int(seed)))


def compute_results(study: Any, out: Path, command: list[str], progress: bool = True) -> dict[str, pd.DataFrame]:
    """Compute every table (:func:`hbeval.pipeline.compute`) and write ``out/results`` and
    ``out/manifest.json``; hbeval's own files of ``out/results`` are replaced, other files of
    ``out`` stay (:func:`hbeval.outdir.update_output`)."""

    check_out(out, study.path)  # refuse before the work, not after
    analysis = compute(study, progress=progress)
    with updating(out, study.path, "results") as tmp:
        write_results(analysis, tmp)
        write_manifest(build_manifest(study, tmp, command), tmp)
    return analysis.tables


# ======================================================================= the context
class Report:
    """What a notebook uses to put blocks into the report.

    Open it with :meth:`open`; then :meth:`section`, :meth:`text`, :meth:`note`,
    :meth:`table` and :meth:`figure` display blocks, and :meth:`results` reads a result
    table. Outside IPython the blocks are collected in :attr:`blocks` only.
    """

    def __init__(self, study: Any, out: Path, lang: str = "en") -> None:
        if lang not in i18n.LANGS:
            raise UsageError(f"--lang must be one of {', '.join(i18n.LANGS)}")
        self.study = study
        self.config = study.config
        i18n.use_instruments(getattr(self.config, "instruments", None))  # labels of the study's own instruments
        self.out = Path(out)
        self.lang = lang
        self.blocks: list[dict[str, Any]] = []
        self._section: str | None = None
        self._cache: dict[str, pd.DataFrame] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, study: str | Path, out: str | Path | None = None, lang: str = "en", seed: int | None = None,
             progress: bool = False) -> Report:
        """Open the study and make sure ``out/results`` holds its current result tables
        (computing them when they are missing or stale).

        ``out=None`` means ``reports/<study name slug>`` beside the study folder's parent
        (for a notebook opened in JupyterLab, the repository's ``reports/``).
        """

        s = _with_seed(open_study(Path(study)), seed)
        out_p = Path(out) if out else default_out(s.config.name, Path(study).resolve().parent)
        if not results_are_current(s, out_p):
            compute_results(s, out_p, ["hbeval.report.render.Report.open", str(study)], progress=progress)
        return cls(s, out_p, lang)

    # ------------------------------------------------------------------ data
    def results(self, name: str) -> pd.DataFrame:
        """``out/results/<name>.csv`` (an empty frame when the analysis did not produce it)."""
        if name not in self._cache:
            p = self.out / "results" / f"{name}.csv"
            self._cache[name] = pd.read_csv(p) if p.exists() and p.stat().st_size > 1 else pd.DataFrame()
        return self._cache[name].copy()

    def replicates(self, name: str) -> pd.DataFrame:
        """``out/replicates/<name>.csv``: bootstrap replicates a figure draws (an empty frame when missing)."""
        p = self.out / REPLICATES_DIR / f"{name}.csv"
        return pd.read_csv(p) if p.exists() and p.stat().st_size > 1 else pd.DataFrame()

    def manifest(self) -> dict:

        return read_manifest(self.out)

    def plan(self) -> dict[str, Any] | None:
        """The study's sealed analysis plan (``STUDY/analysis_plan.json``; ``hbeval plan``), or ``None``."""
        p = Path(self.study.path) / PLAN_FILE
        try:
            doc = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def plan_sha256(self) -> str | None:
        """SHA-256 of ``STUDY/analysis_plan.json`` (the plan's seal), or ``None`` when there is none."""
        p = Path(self.study.path) / PLAN_FILE
        return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None

    def t(self, key: str, **fields: Any) -> str:
        return i18n.t(key, self.lang, **fields)

    # ------------------------------------------------------------------ blocks
    def _emit(self, kind: str, html_body: str, plain: str, extra: dict | None = None,
              bundle: dict[str, Any] | None = None) -> None:
        if self._section is None and kind != "heading":
            raise RuntimeError("call Report.section(...) before adding blocks")
        block = {"kind": kind, "section": self._section, "html": html_body, **(extra or {})}
        self.blocks.append(block)
        data = {"text/plain": plain, BLOCK_MIME: block}
        if bundle:
            data.update(bundle)
        else:
            data["text/html"] = html_body
        _display(data)

    def section(self, key: str) -> None:
        """Start section ``key`` (one of :data:`SECTIONS`)."""
        if key not in SECTIONS:
            raise ValueError(f"unknown section {key!r}; known: {SECTIONS}")
        self._section = key
        title = self.t(f"sec_{key if key not in ('quality', 'checklists', 'repro') else key}")
        self._emit("heading", f'<h2 id="sec-{key}">{html.escape(title)}</h2>', title, {"title": title})

    def subheading(self, text: str) -> None:
        self._emit("subheading", f"<h3>{html.escape(text)}</h3>", text)

    def text(self, *paragraphs: str) -> None:
        """Paragraphs of narrative (plain text; ``**bold**`` is kept)."""
        body = "".join(f"<p>{_inline(p)}</p>" for p in paragraphs if p)
        self._emit("text", body, "\n\n".join(paragraphs))

    def note(self, text: str) -> None:
        """A highlighted caveat."""
        self._emit("note", f'<div class="note"><p>{_inline(text)}</p></div>', text)

    def bullets(self, items: Sequence[str]) -> None:
        body = "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>"
        self._emit("text", body, "\n".join(f"- {i}" for i in items))

    def table(self, df: pd.DataFrame, caption: str, numeric: Iterable[str] = (), small: bool = False) -> None:
        """A table of display strings (see the ``display_*`` functions); ``numeric`` columns are right-aligned."""
        body = table_html(df, self.lang, numeric=set(numeric), small=small, appendix=self._section in APPENDICES)
        cap = f'<p class="caption-nb">{html.escape(caption)}</p>'
        self._emit("table", body, f"{caption}\n{df.to_string(index=False) if len(df) else ''}",
                   {"caption": caption}, bundle={"text/html": cap + body})

    def figure(self, name: str, fig: Any, caption: str) -> Path:
        """Save ``fig`` as ``out/figures/<name>.png`` (deterministic bytes) and show it."""
        from hbeval.report.plots.style import save  # matplotlib loads only when a figure is drawn

        path = save(fig, self.out / "figures" / f"{name}.png")
        b64 = base64.b64encode(path.read_bytes()).decode("ascii")
        self._emit("figure", "", caption, {"caption": caption, "name": name},
                   bundle={"image/png": b64})
        return path


def _display(data: dict[str, Any]) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover
        return
    if get_ipython() is None:
        return
    display(data, raw=True)


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    s = html.escape(text)
    s = _BOLD.sub(r"<strong>\1</strong>", s)
    return _CODE.sub(r"<code>\1</code>", s)


def _section_links(refs: SectionRefs, lang: str) -> str:
    """``<a class="secref" href="#sec-key">title</a>; …`` (report.css adds the page number in print)."""
    if not refs.keys:
        return html.escape(str(refs))
    return "; ".join(f'<a class="secref" href="#sec-{k}">{html.escape(i18n.t(f"sec_{k}", lang))}</a>' for k in refs.keys)


#: Advance widths (em, rounded up) of DejaVu Sans, the report's type, and of its bold (a table's header): what a
#: column needs; other characters count 1 em.
_EM = {ch: w for w, chars in {
    0.28: "'ijl", 0.3: "IJ", 0.32: " ,.\xa0·’", 0.34: "/:;\\|", 0.36: "f", 0.37: "-", 0.4: "()[]t", 0.41: "!²", 0.42: "r",
    0.46: '"', 0.5: "*_`§°–", 0.52: "“”", 0.53: "sz", 0.54: "?", 0.55: "c", 0.56: "L", 0.58: "Fk", 0.6: "vxy", 0.61: "P",
    0.62: "TYaeo«»äåéö", 0.64: "$0123456789ESbdghnpqu{}ü€", 0.66: "K", 0.69: "ABVXZÄÅ", 0.7: "CR", 0.74: "UÜ",
    0.75: "N", 0.76: "H", 0.78: "&DG", 0.79: "OQÖ", 0.82: "w", 0.84: "#+<=>^~±×−≤≥", 0.87: "M", 0.96: "%", 0.98: "m",
    0.99: "W", 1.0: "@—…"}.items() for ch in chars}
_EM_BOLD = {ch: w for w, chars in {
    0.31: "'", 0.35: " ijl\xa0", 0.37: "/\\|", 0.38: ",.IJ·’", 0.4: ":;", 0.42: "-", 0.44: "f²", 0.46: "!()[]", 0.48: "t",
    0.5: "_`r§°–", 0.53: '"*', 0.59: "?z", 0.6: "cs", 0.64: "L", 0.65: "x«»", 0.66: "vy“”", 0.67: "k", 0.68: "aeäåé",
    0.69: "EFToö", 0.7: "$0123456789€", 0.72: "bdghnpqu{}ü", 0.73: "SYZ", 0.74: "CP", 0.77: "B", 0.78: "AKRVXÄÅ",
    0.82: "UÜ", 0.83: "G", 0.84: "#+<=>DHN^~±×−≤≥", 0.86: "OQÖ", 0.88: "&", 0.93: "w", 1.0: "@M—…", 1.01: "%",
    1.05: "m", 1.11: "W"}.items() for ch in chars}
#: cell padding (0.35rem each side, in print 10pt) in em of the smallest table type (6.6pt), rounded up
_CELL_PAD_EM = 1.07
#: the printed table's width in pt (A4 less the margins of report.css: 182 mm); over :func:`type_pt`, the room in em
_TABLE_PT = 515.9
#: what print adds after a section link (report.css: "\a0(s.\a0" page ")"), as text of about its width
_SECREF_AFTER = "\u00a0(s.\u00a000)"
#: where a line may break: at spaces (not no-break spaces) and after a hyphen or dash before a letter (as Pango does)
_BREAKS = re.compile(r"[ \t\r\n]+|(?<=[-–])(?=[^\W\d])")


def _em(text: str, bold: bool = False) -> float:
    em = _EM_BOLD if bold else _EM
    return sum(em.get(ch, 1.0) for ch in text)


def _fit(texts: Iterable[str], bold: bool = False) -> tuple[float, float]:
    """The widest word and the widest line (em) of these cell texts: a column's min- and max-content width."""
    lo = hi = 0.0
    for t in texts:
        hi = max(hi, _em(t, bold))
        lo = max([lo, *(_em(w, bold) for w in _BREAKS.split(t))])
    return lo, hi


def type_pt(small: bool = False, appendix: bool = False) -> float:
    """The printed size of a table's type (report.css)."""
    return 6.8 if appendix else 6.6 if small else 7.6


def column_widths(cols: Sequence[tuple[float, float]], room: float) -> list[float]:
    """Percent widths of a table's columns from their (min, max) content widths in em: CSS's automatic table
    layout, worked out once here so that print can use the fixed layout (WeasyPrint measured every cell of
    every table, on every page a table ran over, again when a page was laid out anew: a third of the PDF's
    time). As the automatic layout: every column at its widest line when they all fit (spread in proportion),
    else at its widest word plus a share of the room left in proportion to what more it needs. ``room``: the
    table's width in em of its type."""
    lo = [a + _CELL_PAD_EM for a, _ in cols]
    hi = [max(a, b) + _CELL_PAD_EM for a, b in cols]
    if sum(hi) <= room or sum(lo) >= room:
        w = hi if sum(hi) <= room else lo
    else:
        extra = [b - a for a, b in zip(lo, hi)]
        w = [a + (room - sum(lo)) * e / sum(extra) for a, e in zip(lo, extra)]
    total = sum(w)
    return [100 * x / total for x in w]


def table_html(df: pd.DataFrame, lang: str, numeric: set[str] | None = None, small: bool = False,
               appendix: bool = False) -> str:
    """An HTML table of ``df`` (headers translated with :func:`hbeval.report.i18n.col`), its column widths
    set (:func:`column_widths`; ``appendix``: the table is in an appendix, whose type is smaller)."""
    numeric = numeric or set()
    if not len(df):
        return f'<p class="empty">{html.escape(i18n.t("no_rows", lang))}</p>'
    small = small or len(df.columns) > 7
    cls = "data small" if small else "data"
    heads = [i18n.col(str(c), lang) for c in df.columns]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    rows = []
    shown: list[str] = []  # what the cells show, for the footnote on suppression markers
    texts: list[list[str]] = [[] for _ in df.columns]  # what each column shows, for its width
    for rec in df.itertuples(index=False):
        cells = []
        for j, (c, v) in enumerate(zip(df.columns, rec)):
            a = ' class="num"' if c in numeric else ""
            if isinstance(v, SectionRefs):  # links to report sections, with their page numbers in the PDF
                cells.append(f"<td{a}>{_section_links(v, lang)}</td>")
                texts[j].append("; ".join(i18n.t(f"sec_{k}", lang) + _SECREF_AFTER for k in v.keys) if v.keys else str(v))
                continue
            s = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            s = i18n.value(s, lang) if s == COMPLEMENTARY else s  # "suppressed" in the report's language
            shown.append(s)
            texts[j].append(s)
            cells.append(f"<td{a}>{html.escape(s)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    fits = []
    for h, t in zip(heads, texts):
        (hl, hh), (bl, bh) = _fit([h], bold=True), _fit(t)
        fits.append((max(hl, bl), max(hh, bh)))
    widths = column_widths(fits, _TABLE_PT / type_pt(small, appendix))
    cols = "".join(f'<col style="width:{w:.1f}%">' for w in widths)
    table = (f'<table class="{cls}"><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    return table + suppression_footnote(shown, lang)


#: A count below the threshold as the tables show it ("<5"), alone or inside a text.
_SMALL_MARK = re.compile(r"(?<![\w.,])<(\d+)(?![\d.,])")


def suppression_footnote(shown: Iterable[str], lang: str) -> str:
    """The line under a table that says what its suppression markers mean: one sentence for
    "<k" (fewer than k families), one for the complementary marker (hidden so that a small count
    cannot be worked out from other published numbers), one for "–"; empty when it shows none."""
    texts = [s for s in shown if s]
    small = sorted({int(m.group(1)) for s in texts for m in _SMALL_MARK.finditer(s)})
    word = i18n.value(COMPLEMENTARY, lang)
    lines = [i18n.t("fn_small", lang, k=k) for k in small]
    if any(word in s or COMPLEMENTARY in s for s in texts):
        lines.append(i18n.t("fn_complementary", lang, word=word))
    if any(s.strip() == "–" or s.startswith("– ") for s in texts):
        lines.append(i18n.t("fn_dash", lang))
    return f'<p class="caption table-note">{html.escape(" ".join(lines))}</p>' if lines else ""


# ================================================================ display tables
_f = i18n.as_float  # numbers read from results/*.csv (markers are NaN)


def _primary_rows(effects: pd.DataFrame) -> pd.DataFrame:
    if not len(effects):
        return effects
    keep = effects["spec"].isin(["primary", "non_randomised"])
    return effects[keep].drop_duplicates(["outcome", "contrast"])


def _positions(d: pd.DataFrame) -> dict[tuple[Any, Any], list[int]]:
    """Row positions of ``d`` by ``(outcome, contrast)``, in row order: one pass over the table instead of two
    boolean masks per cell of a display table."""
    pos: dict[tuple[Any, Any], list[int]] = {}
    if len(d):
        for i, key in enumerate(zip(d["outcome"], d["contrast"])):
            pos.setdefault(key, []).append(i)
    return pos


def est_ci(est: Any, lo: Any, hi: Any, lang: str, digits: int = 2) -> str:
    return i18n.est_ci(est, lo, hi, lang, digits)


def display_primary_effects(effects: pd.DataFrame, outcome: str, lang: str) -> pd.DataFrame:
    """Every contrast of one outcome: estimate, SE, CI, p, RI p, adjusted p, n, Hedges' g; and
    ``note`` (why a row has no estimate) when a row has none."""
    d = _primary_rows(effects)
    d = d[d["outcome"] == outcome]
    # the adjusted p's header names its method (effects.csv ``method``); "p (adj.)" when the rows differ
    kinds = {narrative.adj_kind(r) for _, r in d.iterrows() if np.isfinite(_f(r.get("p_value_adj")))}
    adj_col = {"wy": "p_adj_wy", "holm": "p_adj_holm"}.get(kinds.pop(), "p_adj_other") if len(kinds) == 1 else "p_adj_other"
    rows = []
    for r in d.itertuples(index=False):
        rows.append({"contrast": i18n.value(r.contrast, lang), "estimate": i18n.num(r.estimate, lang, 2, sign=True),
                     "std_error": i18n.num(r.std_error, lang, 2), "ci": i18n.interval(r.ci_low, r.ci_high, lang),
                     "p_unadj": i18n.pval(r.p_value, lang), "p_value_ri": i18n.pval(getattr(r, "p_value_ri", None), lang),
                     "ri_ci": _ri_interval(getattr(r, "ri_ci_low", None), getattr(r, "ri_ci_high", None), lang),
                     adj_col: i18n.pval(getattr(r, "p_value_adj", None), lang), "n": str(r.n),
                     "hedges_g": i18n.num(getattr(r, "hedges_g", None), lang, 2),
                     "note": (i18n.note(getattr(r, "note", None), lang) if not np.isfinite(_f(r.estimate))
                              else i18n.t("ri_unbounded_note", lang) if _ri_unbounded(r) else "")})
    out = pd.DataFrame(rows)
    if len(out) and (out["ri_ci"] == "–").all():
        out = out.drop(columns="ri_ci")  # no randomisation inference in this analysis
    if len(out) and not out["note"].astype(bool).any():
        out = out.drop(columns="note")  # a column only when a row has something to say
    return out


def _ri_unbounded(r: Any) -> bool:
    return bool(np.isinf(_f(getattr(r, "ri_ci_low", None))) or np.isinf(_f(getattr(r, "ri_ci_high", None))))


def _ri_interval(lo: Any, hi: Any, lang: str) -> str:
    """The randomisation-inference interval; in words where it has no bound (never "−∞ to ∞")."""
    lo_f, hi_f = _f(lo), _f(hi)
    if np.isnan(lo_f) and np.isnan(hi_f):
        return "–"
    if np.isinf(lo_f) or np.isinf(hi_f):
        return i18n.t("ri_unbounded", lang)
    return i18n.interval(lo_f, hi_f, lang)


def display_effects_matrix(effects: pd.DataFrame, outcomes: Sequence[str], contrasts: Sequence[str], lang: str,
                           adjusted: bool = True, primary_only: bool = True) -> pd.DataFrame:
    """One row per outcome, one column per contrast: ``estimate (CI)`` and the p-value labelled by its
    kind (``WY-adj. p``, ``Holm-adj. p``, ``unadj. p``; :func:`hbeval.report.narrative.shown_p`), from rows of
    the primary specification unless ``primary_only=False``."""
    d = _primary_rows(effects) if primary_only else effects.drop_duplicates(["outcome", "contrast"])
    pos = _positions(d)
    shown = {o for o, _ in pos}
    rows = []
    for o in outcomes:
        if o not in shown:
            continue
        row = {"outcome": i18n.outcome(o, lang)}
        for c in contrasts:
            at = pos.get((o, c))
            if not at:
                row[i18n.value(c, lang)] = "–"
                continue
            r0 = d.iloc[at[0]]
            if not np.isfinite(_f(r0["estimate"])):  # say why, instead of an empty cell
                row[i18n.value(c, lang)] = i18n.t("not_estimable_cell", lang)
                continue
            p, kind = narrative.shown_p(r0, adjusted)
            row[i18n.value(c, lang)] = (f"{est_ci(r0['estimate'], r0['ci_low'], r0['ci_high'], lang)}; "
                                        f"{narrative.p_kind(kind, lang, short=True)} {i18n.pval(p, lang)}")
        rows.append(row)
    return pd.DataFrame(rows)


def display_baseline(baseline: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Variables (and levels) down, groups across: ``mean (SD)`` or ``n (%)``."""
    if not len(baseline):
        return baseline
    groups = list(dict.fromkeys(baseline["group"]))
    rows = []
    for (var, lev), s in baseline.groupby(["variable", "level"], sort=False, dropna=False):
        lev_s = "" if pd.isna(lev) else str(lev)
        name = i18n.outcome(var.removesuffix("_start"), lang) + (" (start)" if lang == "en" and var.endswith("_start") else
                                                                  " (alku)" if var.endswith("_start") else "")
        if var in i18n.OUTCOMES or not var.endswith("_start"):
            name = i18n.col(var, lang) if var in i18n.COLUMNS else name
        row = {"variable": name if not lev_s else f"{name}: {i18n.level(lev_s, lang)}"}
        for g in groups:
            r = s[s["group"] == g]
            if not len(r):
                row[i18n.value(g, lang)] = ""
                continue
            r0 = r.iloc[0]
            if lev_s:
                pct = _f(r0["percent"])
                row[i18n.value(g, lang)] = f"{r0['n']} ({i18n.num(pct, lang, 0)} %)" if not np.isnan(pct) else str(r0["n"])
            else:
                m = _f(r0["mean"])
                row[i18n.value(g, lang)] = (f"{i18n.num(m, lang, 2)} ({i18n.num(r0['sd'], lang, 2)})" if not np.isnan(m)
                                            else f"n {r0['n']}")
        rows.append(row)
    return pd.DataFrame(rows)


def display_balance(balance: pd.DataFrame, lang: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(covariates at the two margins, joint tests)."""
    if not len(balance):
        return balance, balance
    cov = balance[(balance["row_type"] == "covariate") & balance["comparison"].isin(["frame_shares", "teaming"])]
    rows = []
    for var, s in cov.groupby("variable", sort=False):
        row = {"variable": i18n.variable(var, lang)}
        for comp in ("frame_shares", "teaming"):
            r = s[s["comparison"] == comp]
            lab = i18n.value(comp, lang)
            if not len(r):
                continue
            r0 = r.iloc[0]
            row[f"{lab}: {i18n.col('difference', lang)}"] = i18n.num(r0["difference"], lang, 2, sign=True)
            row[f"{lab}: {i18n.col('normalized_difference', lang)}"] = i18n.num(r0["normalized_difference"], lang, 2, sign=True)
            row[f"{lab}: p"] = i18n.pval(r0["p_value"], lang)
        rows.append(row)
    joint = balance[balance["row_type"] != "covariate"]
    jrows = [{"comparison": i18n.value(r.comparison, lang) if r.comparison != "all_cells" else i18n.value("cells (joint)", lang),
              "method": i18n.value(r.row_type, lang), "statistic": i18n.num(r.statistic, lang, 2), "p_value": i18n.pval(r.p_value, lang),
              "p_value_ri": i18n.pval(r.p_value_ri, lang), "n": f"{i18n.count(r.n_a, lang)} / {i18n.count(r.n_b, lang)}" if r.row_type != "omnibus_ri" else i18n.count(r.n_a, lang)}
             for r in joint.itertuples(index=False)]
    return pd.DataFrame(rows), pd.DataFrame(jrows)


def display_consort(consort: pd.DataFrame, lang: str) -> pd.DataFrame:
    if not len(consort):
        return consort
    return pd.DataFrame({"stage": [i18n.value(v, lang) for v in consort["stage"]],
                         "group": [i18n.value(v, lang) for v in consort["group"]],
                         "cell": [i18n.value(v, lang) for v in consort["cell"]],
                         "reason": [i18n.value(v, lang) for v in consort["reason"]],
                         "n": consort["n"].astype(str).to_list()})


def display_consort_wide(consort: pd.DataFrame, lang: str) -> pd.DataFrame:
    """``consort.csv`` as one row per stage (and reason) and one column per cell, the pilot's
    undivided counts and the comparison group: a short table at any size, with every count as
    published (``<5`` stays, a complementary suppression reads "suppressed"; "–" where a
    stage does not apply)."""
    if not len(consort):
        return consort
    c = consort.assign(reason=consort["reason"].fillna("").astype(str), cell=consort["cell"].astype(str))
    cols = [cell for cell in CELLS if (c["cell"] == cell).any()]
    order = {st: i for i, st in enumerate(("assessed", "excluded", "allocated", "received", "lost_to_follow_up",
                                           "not_analysed", "analysed"))}
    keys = sorted(dict.fromkeys(zip(c["stage"], c["reason"])), key=lambda k: order.get(k[0], len(order)))
    stage_col, all_col, comp_col = i18n.col("stage", lang), i18n.value("all", lang), i18n.value("comparison", lang)
    rows = []
    for stage, reason in keys:
        s = c[(c["stage"] == stage) & (c["reason"] == reason)]
        label = i18n.value(stage, lang) + (f": {i18n.value(reason, lang)}" if reason and reason != "all reasons" else "")
        row = {stage_col: label}

        def shown(m: pd.Series, s: pd.DataFrame = s) -> str:
            v = s.loc[m, "n"]
            if not len(v):
                return "–"
            x = str(v.iloc[0])
            return i18n.value(x, lang) if x == "suppressed" else x

        for cell in cols:
            row[i18n.value(cell, lang)] = shown((s["group"] == "pilot") & (s["cell"] == cell))
        row[all_col] = shown((s["group"] == "pilot") & (s["cell"].isin(["all", "not yet allocated"])))
        row[comp_col] = shown(s["group"] == "comparison")
        rows.append(row)
    return pd.DataFrame(rows)


def display_attrition(attr: pd.DataFrame, lang: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not len(attr):
        return attr, attr
    rates = attr[attr["section"] == "rate"]
    r1 = pd.DataFrame({"cell": [i18n.value(v, lang) for v in rates["cell"]],
                       "n_assigned": [i18n.num(v, lang, 0) if not isinstance(v, str) else v for v in rates["n_assigned"]],
                       "n_observed": [i18n.num(v, lang, 0) if not isinstance(v, str) else v for v in rates["n_observed"]],
                       "attrition_rate": [i18n.num(v, lang, 1, percent=True) for v in rates["attrition_rate"]]})
    rows = []
    for r in attr[attr["section"] != "rate"].itertuples(index=False):
        if r.section == "lee_bounds":
            est = f"[{i18n.num(r.lower_bound, lang, 2, sign=True)}, {i18n.num(r.upper_bound, lang, 2, sign=True)}]"
            ci = i18n.interval(r.bound_ci_low, r.bound_ci_high, lang)
        else:
            est = i18n.num(r.estimate, lang, 3 if r.section == "differential" else 2, sign=True)
            ci = i18n.interval(r.ci_low, r.ci_high, lang, 3 if r.section == "differential" else 2) if not np.isnan(_f(r.ci_low)) else "–"
        rows.append({"section": i18n.value(r.section, lang), "contrast": i18n.value(r.contrast, lang), "estimate": est,
                     "ci": ci, "p_value": i18n.pval(r.p_value, lang), "n": i18n.num(r.n, lang, 0)})
    return r1, pd.DataFrame(rows)


# ---------------------------------------------------------------- missing data (issue 15)
def _mi_rows(effects: pd.DataFrame) -> pd.DataFrame:
    """The multiple-imputation rows of ``effects.csv`` (``spec`` = ``sensitivity``)."""
    if not len(effects) or "spec" not in effects:
        return effects.iloc[0:0]
    sens = effects[effects["spec"] == "sensitivity"]
    return sens[sens["method"].astype(str).str.startswith("multiple imputation")]


def _tipping_rows(effects: pd.DataFrame) -> pd.DataFrame:
    if not len(effects) or "spec" not in effects:
        return effects.iloc[0:0]
    sens = effects[effects["spec"] == "sensitivity"]
    return sens[sens["method"].astype(str).str.startswith("tipping point")]


def _scenario(method: str) -> str:
    return "both_arms_opposite" if "both arms opposite" in str(method) else "treated_arm"


def display_missing_data(effects: pd.DataFrame, outcomes: Sequence[str], lang: str, mic: float | None = None) -> pd.DataFrame:
    """Complete cases and multiple imputation side by side: one row per outcome and margin with
    ``estimate (95 % CI)`` of each and their ``n``; with ``mic``, the tipping points (treated arm
    only / both arms in opposite directions, outcome points) beside the MIC where there are any."""
    cc, mi, tip = _primary_rows(effects), _mi_rows(effects), _tipping_rows(effects)
    cc_at, mi_at, tip_at = _positions(cc), _positions(mi), _positions(tip)
    rows = []
    for o in outcomes:
        for c in RANDOMISED[:2]:
            a, b = cc_at.get((o, c)), mi_at.get((o, c))
            if not b:
                continue
            ra, rb = (cc.iloc[a[0]] if a else None), mi.iloc[b[0]]
            rows.append({"outcome": i18n.outcome(o, lang), "contrast": i18n.value(c, lang),
                         "cc": est_ci(ra["estimate"], ra["ci_low"], ra["ci_high"], lang) if ra is not None else "–",
                         "n_cc": str(ra["n"]) if ra is not None else "–",
                         "mi": est_ci(rb["estimate"], rb["ci_low"], rb["ci_high"], lang), "n_mi": str(rb["n"])})
            t = tip.iloc[tip_at.get((o, c), [])]
            if mic is not None and len(tip):
                by = {_scenario(r.method): _f(r.estimate) for r in t.itertuples(index=False)}
                shifts = [by.get(k, np.nan) for k in ("treated_arm", "both_arms_opposite")]
                rows[-1]["tipping_points"] = (" / ".join(i18n.num(v, lang, 2, sign=True) if np.isfinite(v) else "–" for v in shifts)
                                              if len(t) else "")
                rows[-1]["mic"] = i18n.num(mic, lang, 2) if len(t) else ""
    return pd.DataFrame(rows)


def display_tipping(effects: pd.DataFrame, mic: float, lang: str) -> pd.DataFrame:
    """The tipping points (``effects.csv``): margin, the shift applied, δ in outcome points, the MIC
    beside it and what changes at δ."""
    rows = []
    for r in _tipping_rows(effects).itertuples(index=False):
        note = str(r.note)
        changes = "sign_flips" if "changes sign" in note else "ci_includes_0"
        rows.append({"contrast": i18n.value(r.contrast, lang), "scenario": i18n.value(_scenario(r.method), lang),
                     "shift_points": i18n.num(r.estimate, lang, 2, sign=True) if np.isfinite(_f(r.estimate)) else "–",
                     "mic": i18n.num(mic, lang, 2), "changes_when": i18n.value(changes, lang)})
    return pd.DataFrame(rows)


def missing_data_sentences(effects: pd.DataFrame, primary: str, mic: float, lang: str) -> list[str]:
    """The section's paragraphs: what was imputed and how (``m`` read from ``method``), the primary
    outcome's margins by both analyses, and each margin's tipping points beside the MIC with a verdict."""
    mi = _mi_rows(effects)
    if not len(mi):
        return [i18n.t("n_missing", lang)]
    found = re.search(r"m=(\d+)", str(mi["method"].iloc[0]))
    out = [i18n.t("mi_intro", lang, m=found.group(1) if found else "?")]
    cc = _primary_rows(effects)
    for c in RANDOMISED[:2]:
        a, b = cc[(cc["outcome"] == primary) & (cc["contrast"] == c)], mi[(mi["outcome"] == primary) & (mi["contrast"] == c)]
        if len(a) and len(b):
            ra, rb = a.iloc[0], b.iloc[0]
            out.append(i18n.t("mi_sentence", lang, outcome=i18n.outcome(primary, lang), contrast=i18n.value(c, lang),
                              cc=i18n.num(ra["estimate"], lang, 2, sign=True), cc_ci=i18n.interval(ra["ci_low"], ra["ci_high"], lang),
                              mi=i18n.num(rb["estimate"], lang, 2, sign=True), mi_ci=i18n.interval(rb["ci_low"], rb["ci_high"], lang)))
    tip = _tipping_rows(effects)
    tip = tip[tip["outcome"] == primary]
    if not len(tip):
        return out
    out.append(i18n.t("tipping_intro", lang))
    for c in RANDOMISED[:2]:
        t = tip[tip["contrast"] == c]
        if not len(t):
            continue
        by = {_scenario(r.method): _f(r.estimate) for r in t.itertuples(index=False)}
        one, both = by.get("treated_arm", np.nan), by.get("both_arms_opposite", np.nan)
        if not np.isfinite(one):
            continue
        out.append(i18n.t("tipping_sentence", lang, contrast=i18n.value(c, lang), delta=i18n.num(one, lang, 2, sign=True),
                          delta_both=i18n.num(both, lang, 2, sign=True), mic=i18n.num(mic, lang, 2))
                   + " " + i18n.t("tipping_vs_mic_robust" if abs(one) > mic else "tipping_vs_mic_fragile", lang))
    return out


def display_comparison(comp: pd.DataFrame, lang: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(estimates incl. the placebo, overlap summary)."""
    if not len(comp):
        return comp, comp
    est = comp[comp["section"].isin(["estimate", "placebo"])]
    rows = []
    for r in est.itertuples(index=False):
        digits = 0 if str(r.item).endswith("_eur") else 2
        name = i18n.outcome(r.item, lang) if r.section == "estimate" else i18n.t("cap_comp_placebo", lang).rstrip(".")
        rows.append({"outcome": name, "estimate": i18n.num(r.estimate, lang, digits, sign=True),
                     "ci": i18n.interval(r.ci_low, r.ci_high, lang, digits), "p_value": i18n.pval(r.p_value, lang),
                     "n": f"{i18n.num(r.n_pilot, lang, 0)} / {i18n.num(r.n_comparison, lang, 0)}"})
    ov = comp[comp["section"] == "overlap"]
    orows = [{"group": i18n.value(r.group, lang), "n": i18n.count(r.n, lang), "n_trimmed": i18n.count(r.n_trimmed, lang), "ess": i18n.num(r.ess, lang, 0),
              "P5 / P50 / P95": f"{i18n.num(r.ps_p05, lang, 2)} / {i18n.num(r.ps_median, lang, 2)} / {i18n.num(r.ps_p95, lang, 2)}"}
             for r in ov.itertuples(index=False)]
    return pd.DataFrame(rows), pd.DataFrame(orows)


def display_process(process: pd.DataFrame, lang: str) -> pd.DataFrame:
    if not len(process):
        return process
    rows = []
    for m, s in process.groupby("measure", sort=False):
        row = {"measure": i18n.outcome(m, lang)}
        for r in s.itertuples(index=False):
            digits = 0 if "eur" in m or "days" in m else 2
            row[i18n.value(r.cell, lang)] = f"{i18n.num(r.mean, lang, digits)} (n {r.n})"
        rows.append(row)
    return pd.DataFrame(rows)


def display_costs(costs: pd.DataFrame, lang: str, period: str = "follow_up") -> pd.DataFrame:
    if not len(costs):
        return costs
    d = costs[costs["period"] == period]
    units = list(dict.fromkeys(zip(d["group"], d["cell"])))
    rows = []
    for cat, s in d.groupby("category", sort=False):
        row = {"category": i18n.value("cost:teaming" if cat == "teaming" else cat, lang)}
        for g, c in units:
            r = s[(s["group"] == g) & (s["cell"] == c)]
            lab = i18n.value(g, lang) if c == "all" else i18n.value(c, lang)
            row[lab] = "" if not len(r) else (f"{i18n.num(r.iloc[0]['mean_eur'], lang, 0)} "
                                             f"({i18n.interval(r.iloc[0]['ci_low'], r.iloc[0]['ci_high'], lang, 0)})")
        rows.append(row)
    nrow = {"category": "n"}
    for g, c in units:
        r = d[(d["group"] == g) & (d["cell"] == c)]
        nrow[i18n.value(g, lang) if c == "all" else i18n.value(c, lang)] = str(r.iloc[0]["n"]) if len(r) else ""
    rows.append(nrow)
    return pd.DataFrame(rows)


def display_cost_differences(diff: pd.DataFrame, lang: str, period: str = "follow_up") -> pd.DataFrame:
    """Categories down, contrasts across: ``difference (CI)`` in euros per family; a last row
    gives the gamma-log GLM ratio of mean totals (a check on the skewed costs)."""
    if not len(diff):
        return diff
    d = diff[diff["period"] == period] if "period" in diff else diff
    contrasts = list(dict.fromkeys(d["contrast"]))
    rows = []
    for cat, s in d.groupby("category", sort=False):
        row = {"category": i18n.value("cost:teaming" if cat == "teaming" else cat, lang)}
        for c in contrasts:
            r = s[s["contrast"] == c]
            row[i18n.value(c, lang)] = ("–" if not len(r) else
                                        est_ci(r.iloc[0]["difference_eur"], r.iloc[0]["ci_low"], r.iloc[0]["ci_high"], lang, 0))
        rows.append(row)
    tot = d[d["category"] == "total"]
    if "glm_ratio" in d and len(tot):
        row = {"category": i18n.t("glm_ratio", lang)}
        for c in contrasts:
            r = tot[tot["contrast"] == c]
            row[i18n.value(c, lang)] = ("–" if not len(r) or np.isnan(_f(r.iloc[0]["glm_ratio"])) else
                                        f"{i18n.num(r.iloc[0]['glm_ratio'], lang, 2)} "
                                        f"({i18n.interval(r.iloc[0]['glm_ci_low'], r.iloc[0]['glm_ci_high'], lang)})")
        rows.append(row)
    return pd.DataFrame(rows)


def display_cea(cea: pd.DataFrame, lang: str) -> pd.DataFrame:
    if not len(cea):
        return cea
    rows = []
    for r in cea.itertuples(index=False):
        inter = r.contrast == "frame_shares:teaming"  # an interaction, not a programme: no ICER or quadrant
        rows.append({"contrast": i18n.value(r.contrast, lang), "delta_cost_eur": i18n.num(r.delta_cost_eur, lang, 0, sign=True),
                     "delta_effect": i18n.num(r.delta_effect, lang, 2, sign=True), "icer": "–" if inter else i18n.num(r.icer, lang, 0),
                     "ci_method": i18n.value(r.ci_method, lang),
                     "icer_ci": "–" if inter else i18n.interval(r.icer_ci_low, r.icer_ci_high, lang, 0),
                     "quadrant": "–" if inter else i18n.value(str(r.quadrant), lang)})
    return pd.DataFrame(rows)


def display_ceac(ceac: pd.DataFrame, lang: str) -> pd.DataFrame:
    if not len(ceac):
        return ceac
    ceac = ceac[ceac["contrast"] != "frame_shares:teaming"]  # the interaction is not a programme to accept
    rows = []
    for w, s in ceac.groupby("wtp_eur", sort=True):
        row = {"wtp_eur": i18n.num(w, lang, 0)}
        for r in s.itertuples(index=False):
            row[i18n.value(r.contrast, lang)] = i18n.num(r.prob_cost_effective, lang, 2)
        rows.append(row)
    return pd.DataFrame(rows)


def display_rosi(rosi: pd.DataFrame, lang: str) -> pd.DataFrame:
    if not len(rosi):
        return rosi
    return pd.DataFrame({
        "comparison": [narrative.comparison_label(v, lang) for v in rosi["comparison"]],
        "intervention_cost_eur": [i18n.num(v, lang, 0) for v in rosi["intervention_cost_eur"]],
        "avoided_cost_eur": [i18n.num(v, lang, 0) for v in rosi["avoided_cost_eur"]],
        # no ROSI as a number when its denominator's interval includes zero (no CI; see narrative.rosi_sentences)
        "rosi": [i18n.num(v, lang, 0, percent=True) if not np.isnan(_f(a)) else i18n.t("r_not_reported", lang)
                 for v, a in zip(rosi["rosi"], rosi["ci_low"])],
        "ci": [i18n.interval(a, b, lang, 0, percent=True) if not np.isnan(_f(a)) else "–"
               for a, b in zip(rosi["ci_low"], rosi["ci_high"])]})


def display_quality(dq: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Appendix A's ledger: severities and rules in ``lang`` (:func:`hbeval.report.i18n.quality`; the CSV keeps
    the ledger's own words), counts in ``lang``'s number form."""
    if not len(dq):
        return dq
    cols = [c for c in ("file", "rows_read", "rows_accepted", "rows_rejected", "severity", "column", "rule", "count") if c in dq]
    out = dq[cols].copy().astype(object)
    out = out.where(out.notna(), "")
    for c in ("severity", "rule"):
        if c in out:
            out[c] = [i18n.quality(v, lang) for v in out[c]]
    for c in ("rows_read", "rows_accepted", "rows_rejected", "count"):
        if c in out:
            out[c] = [i18n.num(v, lang, 0) if v != "" else v for v in out[c]]
    return out


def display_assumed_prices(unit_costs: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Catalogue rows whose ``source`` marks them as assumptions."""
    if not len(unit_costs) or "source" not in unit_costs:
        return pd.DataFrame()
    d = unit_costs[unit_costs["source"].astype(str).str.contains("assum|oletus", case=False, regex=True)]
    lab = "label_fi" if lang == "fi" else "label_en"
    return pd.DataFrame({"service_code": d["service_code"].astype(str),
                         "label": d[lab].astype(str) if lab in d else "",
                         "unit": [i18n.value(v, lang) for v in d["unit"].astype(str)],
                         "unit_cost_eur": [i18n.num(v, lang, 2) for v in d["unit_cost_eur"]],
                         "source": [i18n.value(v, lang) for v in d["source"].astype(str)]})


def display_diagnosis(plan: dict[str, Any] | None, lang: str) -> pd.DataFrame:
    """The design diagnosis sealed in the analysis plan: contrast, size, effect, power, MDE, bias,
    coverage and the rejection rate under no effect (an empty frame when there is none)."""
    tab = pd.DataFrame(((plan or {}).get("diagnosis") or {}).get("table") or [])
    cols = [c for c in ("contrast", "n_pilot", "effect", "power", "mde", "bias", "coverage", "rejection_rate_null") if c in tab]
    if not len(tab) or "contrast" not in cols:
        return pd.DataFrame()
    out = pd.DataFrame({"contrast": [i18n.value(c, lang) for c in tab["contrast"]]})
    for c in cols[1:]:
        out[c] = tab[c].astype(str) if c == "n_pilot" else [i18n.num(v, lang, 3) for v in tab[c]]
    return out


def display_deviations(dev: pd.DataFrame, lang: str) -> pd.DataFrame:
    """``results/deviations.csv`` as the report shows it (item, planned, analysed)."""
    if not len(dev):
        return pd.DataFrame(columns=["item", "planned", "actual"])
    return pd.DataFrame({"item": dev["item"].astype(str), "planned": dev["planned"].fillna("").astype(str),
                         "actual": dev["actual"].fillna("").astype(str)})


def display_params(params: dict[str, Any]) -> pd.DataFrame:
    rows = [{"parameter": k, "value": json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)}
            for k, v in sorted(params.items())]
    return pd.DataFrame(rows)


# ============================================================== assembling the report
def collect_blocks(notebooks: Sequence[Path]) -> list[dict[str, Any]]:
    """The report blocks of executed notebooks, in notebook and cell order (read as JSON: papermill wrote and
    validated them as nbformat 4, and nbformat's reading validated each once more, a tenth of a second)."""
    blocks: list[dict[str, Any]] = []
    for p in notebooks:
        nb = json.loads(Path(p).read_text(encoding="utf-8"))
        if nb.get("nbformat") != 4:
            raise HbevalError(f"{p} is not an executed notebook of nbformat 4")
        for cell in nb["cells"]:
            if cell.get("cell_type") != "code":
                continue
            for o in cell.get("outputs", []):
                if o.get("output_type") not in ("display_data", "execute_result"):
                    continue
                data = o.get("data", {})
                b = data.get(BLOCK_MIME)
                if not b:
                    continue
                b = dict(b)
                if b["kind"] == "figure":
                    png = data.get("image/png", "")
                    b["src"] = "data:image/png;base64," + (png if isinstance(png, str) else "".join(png)).replace("\n", "")
                blocks.append(b)
    return blocks


def _template_env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), keep_trailing_newline=True)


def build_html(blocks: list[dict[str, Any]], lang: str, meta: dict[str, Any]) -> str:
    """The self-contained report: sections in :data:`SECTIONS` order, tables and figures numbered."""
    by: dict[str, list[dict]] = {s: [] for s in SECTIONS}
    for b in blocks:
        by.setdefault(b["section"], []).append(b)
    sections = []
    nt = nf = 0
    for key in SECTIONS:
        bl = by.get(key) or []
        if not bl:
            continue
        title = next((b["title"] for b in bl if b["kind"] == "heading"), i18n.t(f"sec_{key}", lang))
        items = []
        for b in bl:
            if b["kind"] == "heading":
                continue
            b = dict(b)
            if b["kind"] == "table":
                nt += 1
                b["label"] = f"{i18n.t('table', lang)} {nt}."
            elif b["kind"] == "figure":
                nf += 1
                b["label"] = f"{i18n.t('figure', lang)} {nf}."
            items.append(b)
        sections.append({"key": key, "title": title, "items": items, "appendix": key in APPENDICES})
    css = (templates_dir() / "report.css").read_text(encoding="utf-8")
    tpl = _template_env().get_template("report.html.j2")
    return tpl.render(lang=lang, sections=sections, css=css, meta=meta, t=lambda k, **f: i18n.t(k, lang, **f))


def render_pdf(html_text: str, pdf_path: Path) -> Path:
    """``report.pdf`` from the report's HTML with WeasyPrint (no network: every resource is a data URI), as
    PDF/UA-1 (tagged, with the language of ``<html lang>`` and the ``<title>``)."""
    import gc
    import logging

    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)

    fetcher = URLFetcher(allowed_protocols=["data"], fail_on_errors=True)
    # the cyclic garbage collector paused while WeasyPrint lays out: its boxes (hundreds of thousands of
    # objects) made it run six full collections, a fifth of the render's time (41 pages: 2 s of 9.5 s CPU),
    # for about 15 MB more at the peak; what cycles remain are collected once it runs again
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        # PDF/UA-1: a tagged PDF (structure tree, MarkInfo /Marked true) with the document's language and title,
        # figures with their alt texts: a municipality that publishes the report has accessibility duties
        HTML(string=html_text, url_fetcher=fetcher, base_url=str(pdf_path.parent)).write_pdf(str(pdf_path),
                                                                                              pdf_variant="pdf/ua-1")
    finally:
        if gc_was_on:
            gc.enable()
    return pdf_path


def _preload_weasyprint() -> None:
    """Load WeasyPrint (a second or more) in a thread while the notebooks run in their kernels, this process
    waiting for them; :func:`render_pdf` then finds it loaded."""

    def load() -> None:
        import weasyprint  # noqa: F401

    threading.Thread(target=load, name="hbeval-load-weasyprint", daemon=True).start()


def _jobs() -> int:
    """How many kernels may run the notebooks: ``HBEVAL_REPORT_JOBS``, else 2 when this process may use two CPUs,
    else 1. Whether the second one starts is decided while the analysis runs (:class:`_CpuShare`)."""
    env = os.environ.get("HBEVAL_REPORT_JOBS")
    if env:
        return max(1, int(env))
    return 2 if _cpus() >= 2 else 1


def _adaptive() -> bool:
    """Whether the number of kernels is the machine's to decide (not set by ``HBEVAL_REPORT_JOBS``)."""
    return not os.environ.get("HBEVAL_REPORT_JOBS")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _cpu_ticks() -> tuple[int, int, int] | None:
    """Busy and all clock ticks of the machine's CPUs since boot, and how many CPUs (``/proc/stat``); None where
    there is none."""
    try:
        with open("/proc/stat", "rb") as f:
            lines = f.read().split(b"\n")
        v = [int(x) for x in lines[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    total = sum(v)
    return total - v[3] - v[4], total, sum(1 for ln in lines[1:] if ln.startswith(b"cpu"))  # idle, iowait: not busy


def _own_ticks() -> int:
    """Clock ticks of CPU that this process and its children (the notebook kernels, running or ended) have used."""
    t = os.times()
    ticks = round((t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK"))
    me = str(os.getpid()).encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                st = f.read()
        except OSError:  # gone meanwhile
            continue
        rest = st[st.rindex(b")") + 2:].split()  # state ppid ... utime (12th) stime (13th)
        if len(rest) > 12 and rest[1] == me:
            ticks += int(rest[11]) + int(rest[12])
    return ticks


class _CpuShare:
    """How much of the machine other processes use, measured from ``/proc/stat`` between :meth:`__init__` and
    :meth:`others`, less this process's own use and its kernels'. The load average answered this before: a
    minute's lagging mean that counts waiting processes, it still read "busy" seconds after a previous run had
    ended (the second kernel was then not started on an idle machine), and "idle" while others had just begun."""

    #: the shortest sample: /proc/stat counts in ticks of 10 ms
    MIN_SECONDS = 0.2

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0 = _cpu_ticks()
        self.own0 = _own_ticks() if self.cpu0 else 0

    def others(self) -> tuple[float, int] | None:
        """Cores that other processes kept busy on average since the start, of how many the machine has (None
        where it cannot be told)."""
        if self.cpu0 is None:
            return None
        time.sleep(max(0.0, self.MIN_SECONDS - (time.monotonic() - self.t0)))
        cpu1, own1 = _cpu_ticks(), _own_ticks()
        if cpu1 is None or cpu1[1] <= self.cpu0[1] or not cpu1[2]:
            return None
        busy, total, cores = cpu1[0] - self.cpu0[0], cpu1[1] - self.cpu0[1], cpu1[2]
        return max(0.0, (busy - (own1 - self.own0)) / total * cores), cores


def _second_kernel_pays(share: _CpuShare) -> bool:
    """Whether a second kernel would shorten the report: only where a core is left over besides the analysis (or,
    later, the first kernel) and what other processes use (a second kernel costs a second start-up and first figure,
    seconds of CPU; on the 2-core machine busy with load 6-8, one kernel was as fast)."""
    used = share.others()
    return used is None or used[0] <= used[1] - 1.5


#: seconds a notebook kernel may take to answer its first message (Python starts slowly on a loaded machine)
KERNEL_STARTUP_TIMEOUT = 180
#: what a notebook kernel imports as it starts, before it answers: the libraries every notebook uses (loaded
#: while ``hbeval report`` is still computing the results, on the other core). ``gc.freeze()`` then moves what
#: the imports made (modules, functions, pandas' and matplotlib's tables: most of the kernel's objects) out of
#: the garbage collector's sight: they live as long as the kernel, and every full collection walked them, %reset's
#: own among them (0.36 s of each reset between two notebooks, 0.015 s frozen)
_KERNEL_PRELOAD = "import hbeval.report.render, hbeval.report.plots, gc; gc.freeze()"
#: what runs in a shared kernel between two notebooks: no open figure, a fresh namespace, cells numbered from 1
#: again (``store_history=False``: this code takes no number itself); imported modules stay loaded, and what the
#: notebook imported is frozen as well (after %reset collected the notebook's garbage)
_KERNEL_RESET = ("_plt = __import__('sys').modules.get('matplotlib.pyplot')\n"
                 "if _plt is not None:\n    _plt.close('all')\n"
                 "get_ipython().run_line_magic('reset', '-f')\n"
                 "get_ipython().execution_count = 1\n"
                 "__import__('gc').freeze()\n")


class _Kernel:
    """One long-lived IPython kernel that runs several notebooks in turn (each notebook used to pay
    its own kernel start and imports). Its stdout and stderr go to a private log, not the terminal
    (ipykernel's shutdown and interrupt messages are noise to the user), whose tail is quoted when
    the kernel fails."""

    def __init__(self, cwd: Path) -> None:
        """Launch the kernel and return at once (it loads :data:`_KERNEL_PRELOAD` meanwhile); :meth:`ready`
        waits for it."""
        self.cwd = cwd
        self.log = tempfile.TemporaryFile()
        self.km: Any = None
        self.is_ready = False
        self._launch()

    def _launch(self) -> None:
        from jupyter_client.asynchronous import AsyncKernelClient
        from jupyter_client.manager import AsyncKernelManager  # heavy (zmq, tornado): only for the report

        class Client(AsyncKernelClient):
            """nbclient's client of each notebook, ready without waiting for 0.2 s of silence on IOPub."""

            async def wait_for_ready(self, timeout: float | None = None) -> None:
                """The kernel answered ``kernel_info`` and an IOPub message (its status) reached this client: both
                channels are connected. jupyter_client then waited until IOPub had been quiet for 0.2 s (a fifth
                of a second per notebook, 1.4 s of a report's 7 on one kernel) to drop messages that nbclient
                ignores anyway (it keeps only IOPub messages whose parent is the cell it runs)."""
                deadline = time.monotonic() + (KERNEL_STARTUP_TIMEOUT if timeout is None else timeout)
                while True:
                    self.kernel_info()
                    try:
                        reply = await self.shell_channel.get_msg(timeout=1)
                    except queue.Empty:
                        reply = None
                    if reply is not None and reply["msg_type"] == "kernel_info_reply":
                        try:
                            await self.iopub_channel.get_msg(timeout=0.2)
                        except queue.Empty:
                            pass  # IOPub not yet subscribed: ask again
                        else:
                            self._handle_kernel_info_reply(reply)
                            return
                    if not await self._async_is_alive():
                        raise RuntimeError("Kernel died before replying to kernel_info")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

        class Manager(AsyncKernelManager):
            """Remembers the clients nbclient opens on the kernel, so that they are closed after each
            notebook (nbclient leaves a client of a kernel it does not own open)."""

            opened: list[Any]

            def client(self, **kw: Any) -> Any:
                kc = super().client(**kw)
                self.opened.append(kc)
                return kc

        km = Manager(kernel_name="python3")
        km.client_factory = Client
        km.opened = []
        self.km = km
        _sync(km.start_kernel)(extra_arguments=["--IPKernelApp.log_level=ERROR", "--HistoryManager.hist_file=:memory:",
                                                f"--IPKernelApp.exec_lines={_KERNEL_PRELOAD}"],
                               cwd=str(self.cwd), stdout=self.log, stderr=self.log)

    def ready(self) -> None:
        """Wait until the kernel answers; a kernel that dies while starting (as it may on a loaded
        machine) gets one more try."""
        for attempt in (1, 2):
            if self.is_ready:
                return
            try:
                if self.km is None:
                    self._launch()
                self.run(_KERNEL_RESET)  # waits for kernel_info first
                self.is_ready = True
            except (RuntimeError, TimeoutError, HbevalError) as e:
                self.close()
                if attempt == 2:
                    raise HbevalError(f"the notebook kernel did not start ({e}); the machine may be short of memory "
                                      "or very busy: run the command again") from e

    def tail(self, n: int = 2000) -> str:
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - n))
        return self.log.read().decode("utf-8", "replace").strip()

    def run(self, code: str) -> None:
        """Run ``code`` in the kernel outside any notebook and wait for its reply (the first reply also
        says that the kernel has started). Only the shell channel is opened: a request waits in its
        queue until the kernel reads it, whereas output published before a client subscribes is lost."""

        async def go() -> dict[str, Any]:
            kc = self.km.client()
            kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
            try:
                msg_id = kc.execute(code, store_history=False, allow_stdin=False)
                deadline = time.monotonic() + KERNEL_STARTUP_TIMEOUT
                while True:
                    try:
                        msg = await kc.get_shell_msg(timeout=1)
                    except queue.Empty:
                        if not await self.km.is_alive():
                            raise RuntimeError("the kernel died before it answered") from None
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"no answer in {KERNEL_STARTUP_TIMEOUT} s") from None
                        continue
                    if msg["parent_header"].get("msg_id") == msg_id:
                        return msg
            finally:
                self.release()

        reply = _sync(go)()
        if reply["content"].get("status") != "ok":
            raise HbevalError(f"the notebook kernel could not be reset: {reply['content'].get('evalue', '')}")

    def release(self) -> None:
        """Close the clients opened on the kernel (their sockets and heartbeat threads)."""
        for kc in self.km.opened:
            kc.stop_channels()
        self.km.opened.clear()

    def close(self) -> None:
        if self.km is None:
            return
        km, self.km = self.km, None
        try:
            for kc in km.opened:
                kc.stop_channels()
            _sync(km.shutdown_kernel)(now=False)
        except Exception:  # a kernel that is already gone needs no shutdown
            pass
        finally:
            _sync(km.cleanup_resources)()

    def shutdown(self) -> None:
        """Stop the kernel for good and drop its log."""
        self.close()
        self.log.close()


def _sync(coro: Any) -> Any:
    from jupyter_core.utils import run_sync  # the event loop nbclient uses in this thread

    return run_sync(coro)


class _NotebookRunner:
    """Kernels that run the numbered notebooks into ``out/notebooks``, ``jobs`` of them, each in a thread of
    its own (a kernel and its clients live in the thread, and event loop, that started them).

    :meth:`start` launches the kernels and returns at once: ``hbeval report`` starts them before the analysis,
    so that kernel start-up and the imports (:data:`_KERNEL_PRELOAD` in the kernels, papermill here) use the
    second core while the analysis uses the first. :meth:`go` hands them the notebooks, :meth:`wait` returns
    the executed copies in notebook order (or raises the first failure), and :meth:`close` waits for the
    kernels' shutdown, which each thread begins as soon as the queue is empty (so that it overlaps the
    rendering of the report)."""

    def __init__(self, out: Path, jobs: int, progress: bool = True, adaptive: bool = False) -> None:
        """``adaptive``: the second and later kernels start only where the machine has a core to spare for them
        (:func:`_second_kernel_pays`, measured from here until the first kernel is ready); else all ``jobs``."""
        self.out = out
        self.progress = progress
        self.nbs = notebook_paths()
        if not self.nbs:
            raise HbevalError(f"no notebooks in {notebooks_dir()}")
        self.jobs = max(1, min(jobs, len(self.nbs)))
        self.share = _CpuShare() if adaptive and self.jobs > 1 else None
        self.todo: queue.SimpleQueue[tuple[int, Path]] = queue.SimpleQueue()
        self.params: dict[str, Any] = {}
        self.ran: list[Path] = []
        self.errors: list[BaseException] = []
        self._go = threading.Event()
        self._first_ready = threading.Event()  # the kernels start one after another, not all beside the analysis
        self._done = [threading.Event() for _ in range(self.jobs)]
        self._threads = [threading.Thread(target=self._worker, args=(k,), name=f"hbeval-notebooks-{k}", daemon=True)
                         for k in range(self.jobs)]

    def start(self) -> _NotebookRunner:
        for t in self._threads:
            t.start()
        return self

    def go(self, study_path: Path, lang: str, seed: int) -> None:
        """Run the notebooks with these papermill parameters."""
        (self.out / "notebooks").mkdir(parents=True, exist_ok=True)
        self.params = {"study": str(study_path), "out": str(self.out), "lang": lang, "seed": seed}
        for item in enumerate(self.nbs, 1):
            self.todo.put(item)
        self._go.set()

    def wait(self) -> list[Path]:
        for e in self._done:
            e.wait()
        if self.errors:
            raise self.errors[0]
        names = [p.name for p in self.nbs]
        return sorted(self.ran, key=lambda p: names.index(p.name))

    def close(self) -> None:
        """Stop every kernel (a runner that was never given its notebooks stops at once) and wait for it."""
        self._go.set()
        for t in self._threads:
            if t.is_alive():
                t.join()

    def _drain(self) -> None:
        while True:  # the other kernels stop after their current notebook
            try:
                self.todo.get_nowait()
            except queue.Empty:
                return

    def _worker(self, k: int) -> None:
        kernel: _Kernel | None = None
        try:
            try:
                if k:
                    self._first_ready.wait()
                    if self.share is not None and not _second_kernel_pays(self.share):
                        return  # the other kernel(s) run every notebook
                kernel = _Kernel(self.out)
                kernel.ready()
                self._first_ready.set()
                # papermill -> nbformat -> jsonschema imports rfc3987_syntax, which builds an IRI grammar at
                # import (1.2-2 s of the report process's CPU, beside the analysis) for an "iri" format check no
                # notebook schema uses; marked absent, jsonschema skips that check (it imports it under
                # suppress(ImportError)). papermill then loads in about 0.35 s. The report process only.
                sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
                import papermill  # noqa: F401  (loaded while the analysis runs)
                self._go.wait()
                n = 0
                while not self.errors:
                    try:
                        i, src = self.todo.get_nowait()
                    except queue.Empty:
                        break
                    if n:
                        kernel.run(_KERNEL_RESET)
                    self.ran.append(self._one(kernel, i, src))
                    n += 1
            except BaseException as e:
                self.errors.append(e)
                self._drain()
            finally:
                self._first_ready.set()
                self._done[k].set()
        finally:
            if kernel is not None:
                kernel.shutdown()

    def _one(self, kernel: _Kernel, i: int, src: Path) -> Path:
        import papermill as pm
        from nbclient.exceptions import DeadKernelError

        dst = self.out / "notebooks" / src.name
        if self.progress:
            print(f"[notebook {i}/{len(self.nbs)}] {src.name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            # the executed copy is written once, when the notebook is done (not after every cell as well)
            pm.execute_notebook(str(src), str(dst), parameters=self.params, progress_bar=False, kernel_name="python3",
                                log_output=False, km=kernel.km, start_timeout=KERNEL_STARTUP_TIMEOUT,
                                request_save_on_cell_execute=False)
        except pm.PapermillExecutionError as e:
            raise HbevalError(f"notebook {src.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from e
        except DeadKernelError as e:
            raise HbevalError(f"the kernel running notebook {src.name} died: {kernel.tail() or e}") from e
        finally:
            kernel.release()
        if self.progress:
            print(f"      {src.name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return dst


def execute_notebooks(study_path: Path, out: Path, lang: str, seed: int, progress: bool = True,
                      jobs: int | None = None) -> list[Path]:
    """Run every numbered notebook with papermill into ``out/notebooks`` (executed copies).

    The notebooks run in turn in one long-lived kernel (kernel start-up, imports and the study's
    opening are paid once, not once per notebook); between two notebooks the kernel's namespace is
    reset and its figures closed, so a notebook sees nothing of the one before. The notebooks only
    read ``out/results`` and write their own figures, so they are independent: with ``jobs > 1``
    (default: :func:`_jobs`, the second only where a core is spare) that many kernels share them out.
    Progress is one line per notebook started and finished. Every kernel has stopped when this returns.
    """
    runner = _NotebookRunner(out, jobs or _jobs(), progress=progress, adaptive=jobs is None and _adaptive()).start()
    try:
        runner.go(study_path, lang, seed)
        return runner.wait()
    finally:
        runner.close()


def run(study_dir: str | Path, out: str | Path | None = None, lang: str = "en", progress: bool = True) -> int:
    """``hbeval report``: compute, execute the notebooks, render HTML and PDF, swap into place.

    Returns the exit status (0); errors are raised as :class:`hbeval.errors.HbevalError`.
    """

    if lang not in i18n.LANGS:
        raise UsageError(f"--lang must be one of {', '.join(i18n.LANGS)}")
    t_start = time.perf_counter()
    study_path = Path(study_dir).resolve()
    study = open_study(study_path)
    out_p = Path(out).resolve() if out else default_out(study.config.name).resolve()
    command = ["hbeval", "report", str(study_dir)] + (["--out", str(out)] if out else []) + ["--lang", lang]
    with building(out_p, study_path) as tmp:
        if progress:
            print(f"hbeval report: analysing {study_path}", file=sys.stderr, flush=True)
        # the notebooks' kernels start and load their libraries while the analysis runs (on the other core)
        runner = _NotebookRunner(tmp, _jobs(), progress=progress, adaptive=_adaptive()).start()
        try:
            compute_results(study, tmp, command, progress=progress)
            runner.go(study_path, lang, study.config.seed)
            _preload_weasyprint()
            nbs = runner.wait()
            if progress:
                print("[render] report.html and report.pdf", file=sys.stderr, flush=True)
            man = json.loads((tmp / "manifest.json").read_text(encoding="utf-8"))
            meta = {"study_name": study.config.name, "version": __version__, "seed": study.config.seed,
                    "price_year": study.config.price_year, "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                    "results_digest": hashlib.sha256(json.dumps(man["results"], sort_keys=True).encode()).hexdigest()[:16]}
            html_text = build_html(collect_blocks(nbs), lang, meta)
            (tmp / "report.html").write_text(html_text, encoding="utf-8")
            render_pdf(html_text, tmp / "report.pdf")  # while the kernels shut down
        finally:
            runner.close()
    print(f"report written to {out_p} ({time.perf_counter() - t_start:.0f} s): report.html, report.pdf, "
          f"figures/, results/, notebooks/, manifest.json")
    return 0




# ================================================================= verify and golden
def _key_columns(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Columns that identify a row: the text columns shared by both versions (counts such
    as ``n`` can be text too, since suppressed counts read ``<5``; they are left out), with
    columns not needed for uniqueness dropped. Rows that the key does not tell apart are
    told apart by their order of occurrence (see :func:`diff_tables`)."""
    shared = [c for c in old.columns if c in new.columns]
    text = [c for c in shared if not pd.api.types.is_numeric_dtype(old[c]) and not pd.api.types.is_numeric_dtype(new[c])
            and not pd.api.types.is_bool_dtype(old[c])]
    keys = [c for c in text if c not in ("n", "n_a", "n_b", "missing", "n_trimmed", "count")]
    if not keys:
        return []

    def dup(cols: list[str]) -> int:
        return int(old.duplicated(cols).sum() + new.duplicated(cols).sum())

    best = dup(keys)
    for c in reversed(list(keys)):
        trial = [k for k in keys if k != c]
        if trial and dup(trial) <= best:
            keys = trial
    return keys


def _same(a: Any, b: Any) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    return str(a) == str(b)


def diff_tables(old: pd.DataFrame, new: pd.DataFrame, max_lines: int = 20) -> list[str]:
    """Readable differences between two versions of a result table: rows added or
    removed, columns added or removed, and ``row key · column: old → new`` for each value
    that changed (at most ``max_lines`` lines)."""
    lines: list[str] = []
    for c in old.columns:
        if c not in new.columns:
            lines.append(f"column {c} removed")
    for c in new.columns:
        if c not in old.columns:
            lines.append(f"column {c} added")
    keys = _key_columns(old, new)
    cols = [c for c in old.columns if c in new.columns and c not in keys]
    if keys:
        o, n = old.copy(), new.copy()
        o["#"] = o.groupby(keys, dropna=False, sort=False).cumcount() + 1
        n["#"] = n.groupby(keys, dropna=False, sort=False).cumcount() + 1
        kk = keys + ["#"]
        o, n = o.set_index(kk), n.set_index(kk)
        for k in o.index.difference(n.index, sort=False):
            lines.append(f"row {_fmt_key(kk, k)} removed")
        for k in n.index.difference(o.index, sort=False):
            lines.append(f"row {_fmt_key(kk, k)} added")
        common = [k for k in o.index if k in n.index]
        pairs = ((_fmt_key(kk, k), o.loc[k], n.loc[k]) for k in common)
    else:
        if len(old) != len(new):
            lines.append(f"{len(old)} rows → {len(new)} rows")
        m = min(len(old), len(new))
        pairs = ((f"row {i + 2}", old.iloc[i], new.iloc[i]) for i in range(m))
    shown = 0
    total = 0
    for label, ro, rn in pairs:
        for c in cols:
            if not _same(ro[c], rn[c]):
                total += 1
                if shown < max_lines:
                    lines.append(f"{label} · {c}: {ro[c]} → {rn[c]}")
                    shown += 1
    if total > shown:
        lines.append(f"... and {total - shown} more changed values")
    return lines


def _fmt_key(keys: list[str], k: Any) -> str:
    vals = k if isinstance(k, tuple) else (k,)
    parts = []
    for c, v in zip(keys, vals):
        if c == "#":
            if v > 1:
                parts.append(f"(occurrence {v})")
        elif not pd.isna(v):
            parts.append(f"{c}={v}")
    return ", ".join(parts)


def _manifest_config(cfg: Any, params: dict[str, Any], label: Path) -> Any:
    """The study's config with the manifest's parameters, checked as ``study.toml`` is.

    Privacy never comes from the manifest: ``min_cell`` is the larger of the two (an edited
    manifest cannot make ``verify`` print counts the study suppresses) and
    ``allow_small_cells`` is the study's.
    """
    cur = cfg.to_dict()
    kw = {k: (tuple(v) if isinstance(getattr(cfg, k), tuple) and isinstance(v, list) else v)
          for k, v in params.items() if k in cur and k != "allow_small_cells"}
    if isinstance(kw.get("min_cell"), int) and not isinstance(kw["min_cell"], bool) and kw["min_cell"] < cfg.min_cell:
        print(f"hbeval verify: the manifest's min_cell ({kw['min_cell']}) is below the study's ({cfg.min_cell}); "
              f"verify uses {cfg.min_cell}, so no suppressed count is shown", file=sys.stderr)
        kw["min_cell"] = cfg.min_cell
    try:
        new = dataclasses.replace(cfg, **kw)
        check_config(new, source=str(label))
    except InputError as e:
        raise InputError(f"the manifest's parameters cannot be used: {e.message}", file=str(label), column=e.column) from e
    except (TypeError, ValueError, AttributeError) as e:
        raise InputError(f"the manifest's parameters have the wrong types ({e})", file=str(label),
                         column="parameters") from e
    return new


def verify(out_dir: str | Path, progress: bool = True) -> int:
    """``hbeval verify OUT``: re-run the analysis of ``OUT/manifest.json`` and compare the
    SHA-256 of every ``results/*.csv``. Returns 0 when all match, 1 otherwise (printing
    which tables changed, and which rows and columns, old → new)."""

    out = Path(out_dir)
    if not (out / "manifest.json").exists():
        raise UsageError(f"{out} has no manifest.json: give the folder written by hbeval report or hbeval analyze")
    man = read_manifest(out)
    study_path = Path(man["study"])
    if not study_path.is_dir():
        raise InputError(f"the study folder of the manifest does not exist: {study_path}", file=str(out / "manifest.json"))
    problems: list[str] = []
    study = open_study(study_path)
    # inputs
    old_in, new_in = man.get("inputs", {}), dict(study.input_hashes)
    changed_inputs = sorted(k for k in set(old_in) | set(new_in) if old_in.get(k) != new_in.get(k))
    # parameters: re-run with the manifest's parameters where the study's file changed them
    params = man.get("parameters", {})
    cur = _jsonable(study.config.to_dict())
    changed_params = sorted(k for k in set(params) | set(cur) if _jsonable(params.get(k)) != cur.get(k))
    if changed_params:
        # only the changed keys: the manifest stores dicts with sorted keys, and the order of the outcome
        # families is the order of the rows
        cfg = _manifest_config(study.config, {k: params[k] for k in changed_params if k in params}, out / "manifest.json")
        study = dataclasses.replace(study, config=cfg)
    if progress:
        print(f"hbeval verify: re-running the analysis of {study_path}", file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=".verify-"))
    try:
        write_results(compute(study, progress=progress), tmp)
        new_hash = {p.name: sha256_file(p) for p in sorted((tmp / "results").glob("*.csv"))}
        old_hash = man.get("results", {})
        differ = sorted(k for k in set(old_hash) | set(new_hash) if old_hash.get(k) != new_hash.get(k))
        # the stored files themselves may have been edited since the manifest
        edited = sorted(k for k, h in old_hash.items() if (out / "results" / k).exists() and sha256_file(out / "results" / k) != h)
        report_lines: list[str] = []
        for name in differ:
            if name not in new_hash:
                report_lines.append(f"results/{name}: in the manifest but no longer produced")
                continue
            if name not in old_hash:
                report_lines.append(f"results/{name}: produced now but not in the manifest")
                continue
            report_lines.append(f"results/{name}: SHA-256 {old_hash[name][:12]} → {new_hash[name][:12]}")
            old_file = out / "results" / name
            if old_file.exists() and name not in edited:
                try:
                    d = diff_tables(pd.read_csv(old_file), pd.read_csv(tmp / "results" / name))
                except Exception as e:  # pragma: no cover - unreadable file
                    d = [f"(cannot diff: {e})"]
                report_lines += ["    " + x for x in (d or ["(same values, different bytes)"])]
            else:
                report_lines.append("    (the stored copy is missing or was edited, so the old values are unknown)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name in edited:
        problems.append(f"results/{name} in {out} was changed after its manifest was written")
    problems += _plan_problems(man, study_path)
    if not differ and not problems:
        print(f"verify: OK — all {len(new_hash)} result tables reproduce (SHA-256 match)")
        return 0
    msg = ["verify: FAILED"]
    if differ:
        msg.append(f"{len(differ)} of {len(set(old_hash) | set(new_hash))} result tables changed: "
                   + ", ".join(n.removesuffix('.csv') for n in differ))
    if changed_inputs:
        msg.append("input files changed since the manifest: " + ", ".join(changed_inputs))
    if changed_params:
        msg.append("parameters in study.toml changed since the manifest (re-run with the manifest's values): "
                   + ", ".join(changed_params))
    msg += problems + report_lines
    print("\n".join(msg))
    return 1


def _plan_problems(man: dict[str, Any], study_path: Path) -> list[str]:
    """The sealed analysis plan against the manifest: the file must still have the SHA-256 the
    manifest recorded (and exist when it recorded one)."""

    rec = man.get("plan")
    p = study_path / PLAN_FILE
    if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
        return []
    if not p.is_file():
        return [f"{PLAN_FILE} is missing from {study_path}; the manifest recorded the plan {rec['sha256'][:16]}"]
    now = sha256_file(p)
    if now != rec["sha256"]:
        return [f"{PLAN_FILE} was edited after the analysis: its SHA-256 is {now[:16]}, the manifest recorded "
                f"{rec['sha256'][:16]}"]
    return []


def compare_golden(out_dir: str | Path, golden_manifest_path: str | Path) -> int:
    """Compare the result hashes of ``OUT`` with a committed golden manifest (CI).

    Returns 0 when every ``results/*.csv`` of ``OUT`` has the golden SHA-256, 1 otherwise,
    printing the tables that differ and how to update the golden on purpose.
    """

    out = Path(out_dir)
    golden = json.loads(Path(golden_manifest_path).read_text(encoding="utf-8"))
    gold = golden.get("results", {})
    now = {p.name: sha256_file(p) for p in sorted((out / "results").glob("*.csv"))}
    differ = sorted(k for k in set(gold) | set(now) if gold.get(k) != now.get(k))
    if not differ:
        print(f"golden: OK — all {len(now)} result tables match {golden_manifest_path}")
        return 0
    lines = [f"golden: FAILED — {len(differ)} result table(s) differ from {golden_manifest_path}:"]
    for k in differ:
        if k not in now:
            lines.append(f"  {k}: in the golden manifest, not produced")
        elif k not in gold:
            lines.append(f"  {k}: produced, not in the golden manifest")
        else:
            lines.append(f"  {k}: {gold[k][:12]} (golden) → {now[k][:12]} (now)")
    g_in, n_in = golden.get("inputs", {}), {}
    man_p = out / "manifest.json"
    if man_p.exists():
        m = json.loads(man_p.read_text(encoding="utf-8"))
        n_in = m.get("inputs", {})
        if golden.get("hbeval_version") != m.get("hbeval_version"):
            lines.append(f"  hbeval version: {golden.get('hbeval_version')} (golden) → {m.get('hbeval_version')}")
        if _jsonable(golden.get("parameters")) != _jsonable(m.get("parameters")):
            lines.append("  the parameters differ from the golden run")
    ch = sorted(k for k in set(g_in) | set(n_in) if g_in.get(k) != n_in.get(k))
    if ch:
        lines.append("  input files differ from the golden run: " + ", ".join(ch))
    lines.append(f"If the change is intended, update the golden manifest: cp {man_p} {golden_manifest_path}")
    print("\n".join(lines))
    return 1


__all__ = ["CELLS", "CELL_CONTRASTS", "SECTIONS", "Report", "build_html", "collect_blocks", "compare_golden", "compute_results", "default_out",
           "diff_tables", "execute_notebooks", "notebook_paths", "render_pdf", "results_are_current", "run", "slug",
           "table_html", "verify"]
