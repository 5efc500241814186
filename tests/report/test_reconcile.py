"""Reconciliation as a property of the report: every number the summary and the narrative print comes
from ``results/*.csv`` (or the study's parameters), and each headline quantity reads the same wherever
it appears (issue 14).

``report.html`` of the shared small demo is parsed in both languages (built once per session by
:func:`test_report_e2e.shared_report`, shared with the end-to-end tests). A number matches a table
value when the value, shown with as many decimals as the number has (as a percentage, in percentage
points or in euros where the text says so), reads the same. The summary's bullets are checked against
the tables each bullet is about, so a chance match elsewhere in the results does not count.
"""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report_e2e import shared_report

from hbeval.report import i18n, narrative
from hbeval.study.store import open_study

LANGS = ("en", "fi")


# ------------------------------------------------------------------ parsing report.html
class _Report(HTMLParser):
    """Sections of report.html: their paragraphs and list items (outside tables) and their tables."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, dict] = {}
        self._sec: str | None = None
        self._stack: list[str] = []
        self._text: list[str] | None = None
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and (a.get("id") or "").startswith("sec-"):
            self._sec = a["id"][4:]
            self.sections[self._sec] = {"text": [], "tables": []}
        if self._sec is None:
            return
        self._stack.append(tag)
        if tag == "table":
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "p" and "caption" in (a.get("class") or ""):
            self._caption = []
        elif tag in ("p", "li") and self._table is None and self._text is None:
            self._text = []

    def handle_endtag(self, tag):
        if self._sec is None:
            return
        if tag == "section":
            self._sec = None
            self._stack.clear()
            return
        if self._stack:
            self._stack.pop()
        sec = self.sections[self._sec]
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table" and self._table is not None:
            sec["tables"].append({"caption": sec.pop("_caption", ""), "rows": self._table})
            self._table = None
        elif tag == "p" and self._caption is not None:
            sec["_caption"] = _squash("".join(self._caption))
            self._caption = None
        elif tag in ("p", "li") and self._text is not None:
            sec["text"].append(_squash("".join(self._text)))
            self._text = None

    def handle_data(self, data):
        for buf in (self._cell, self._caption, self._text):
            if buf is not None:
                buf.append(data)
                return


def _squash(text: str) -> str:
    """Runs of ASCII whitespace as one space; the thin space that separates thousands stays."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


def parse_report(path: Path) -> dict[str, dict]:
    p = _Report()
    p.feed(path.read_text(encoding="utf-8"))
    return p.sections


# ------------------------------------------------------------------ numbers in the text
_NUM = re.compile(r"(?<![\w.,/:\-−+])([+−-]?)(\d{1,3}(?:\u202f\d{3})+|\d+)(?:([.,])(\d+))?(?![\d])(\s?%)?(\s?€)?")
#: fixed parts of the wording that hold digits but are not results (confidence level, scales, design)
_FIXED = (r"95\s?%(:n)?", r"\(0–10\)", r"\(1–5\)", r"2×2", r"0[.,]05\b", r"SHA-256", r"[0-9a-f]{12,}", r"\b\d{4}-\d{2}-\d{2}\b",
          r"\d+:[0-9a-f]{12,}", r"(et al\.|ym\.) \d{4}", r"0\s?%:n", r"0\s?%(?=[ ).:,;]|$)", r"results/\S+", r"hbeval-registry/\d")


def numbers(text: str, lang: str) -> list[tuple[float, int, str]]:
    """``(value, decimals, unit)`` of every number in ``text`` (unit ``%``, ``€`` or ``""``)."""
    for f in _FIXED:
        text = re.sub(f, " ", text)
    dec = "," if lang == "fi" else "."
    out = []
    for m in _NUM.finditer(text):
        sign, whole, sep, frac, pct, eur = m.groups()
        if sep and sep != dec:  # "1, 2" in English, "1.2" in Finnish: punctuation, not a decimal
            frac = None
        v = float(whole.replace("\u202f", "") + ("." + frac if frac else ""))
        out.append((-v if sign in ("−", "-") else v, len(frac or ""), "%" if pct else "€" if eur else ""))
    return out


def _values(df: pd.DataFrame) -> list[float]:
    """Every number of a result table: numeric cells, counts written as text (``"<5"``), numbers inside
    text cells (a note's "37.3 % of replicates"), and the sums of the CONSORT counts over cells."""
    vals = []
    for c in df.columns:
        vals += [float(v) for v in pd.to_numeric(df[c], errors="coerce").dropna()]
        text = [str(v) for v in df[c] if isinstance(v, str)]
        vals += [float(x) for v in text for x in re.findall(r"\d+(?:\.\d+)?", v)]
    if {"stage", "group", "n"} <= set(df.columns):
        n = pd.to_numeric(df["n"], errors="coerce")
        vals += [float(x) for x in n.groupby([df["stage"], df["group"]]).sum()]
    return vals


def matches(value: float, decimals: int, unit: str, pool: list[float]) -> bool:
    """Whether a printed number is one of ``pool`` as the report shows it (× 100 for % and percentage points)."""
    for x in pool:
        for scale in ((100.0, 1.0) if unit != "€" else (1.0,)):
            y = x * scale
            if not math.isfinite(y):
                continue
            if round(abs(y), decimals) == round(abs(value), decimals) and (value == 0 or np.sign(y) == np.sign(value)):
                return True
            if abs(round(y, decimals) - value) < 0.5 * 10 ** -decimals + 1e-9:
                return True
    return False


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", params=LANGS)
def built(request, tmp_path_factory):
    """(lang, sections of report.html, results tables, study config) — one report build per language."""
    out = shared_report(tmp_path_factory, request.param)
    results = {p.stem: pd.read_csv(p) for p in sorted((out / "results").glob("*.csv")) if p.stat().st_size > 1}
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    cfg = open_study(Path(man["study"])).config
    return request.param, parse_report(out / "report.html"), results, cfg, man


def _config_pool(cfg) -> list[float]:
    return [float(x) for x in (cfg.mic, cfg.wtp_reference_eur, *cfg.wtp_eur, cfg.price_year, cfg.discount_rate,
                               cfg.horizon_years, cfg.min_cell, cfg.bootstrap_reps, cfg.ri_draws, cfg.deadweight,
                               cfg.attribution, cfg.displacement, cfg.drop_off)]


#: the tables each bullet of the summary is about (by its bold lead-in)
_BULLET_TABLES = {
    ("What was tested", "Mitä kokeiltiin"): ("consort",),
    ("What changed for families", "Mitä perheille tapahtui"): ("effects", "consort"),
    ("Prevention", "Ennaltaehkäisy"): ("effects",),
    ("How the work changed", "Miten työ muuttui"): ("effects",),
    ("What it cost", "Mitä se maksoi"): ("cost_differences",),
    ("Did it pay back", "Maksoiko se itsensä takaisin"): ("rosi", "rosi_sensitivity", "ceac", "cea"),
    ("Between the versions", "Versioiden välillä"): ("rosi",),
    ("How sure are we", "Kuinka varmoja olemme"): ("attrition", "effects"),
}


def _bullet_tables(bullet: str) -> tuple[str, ...]:
    for heads, tables in _BULLET_TABLES.items():
        if any(bullet.startswith(h) for h in heads):
            return tables
    raise AssertionError(f"a summary bullet without a known lead-in: {bullet[:60]}")


# ------------------------------------------------------------------ every number from the tables
def test_every_number_of_the_summary_comes_from_the_tables_it_is_about(built):
    lang, secs, results, cfg, _ = built
    bullets = secs["summary"]["text"]
    assert len(bullets) >= 6
    unmatched = []
    for b in bullets:
        pool = [v for name in _bullet_tables(b) for v in _values(results.get(name, pd.DataFrame()))] + _config_pool(cfg)
        for value, dec, unit in numbers(b, lang):
            if dec == 0 and unit == "" and abs(value) <= 20 and value == int(value):
                continue  # a count of rows ("2 more in the process section"), checked below where it matters
            if not matches(value, dec, unit, pool):
                unmatched.append((b[:40], value, dec, unit))
    assert unmatched == []


NARRATIVE_SECTIONS = ("flow", "outcomes", "interaction", "attrition", "comparison", "process", "costs", "cea", "rosi")


def test_every_number_of_the_narrative_comes_from_the_results(built):
    lang, secs, results, cfg, _ = built
    pool = [v for df in results.values() for v in _values(df)] + _config_pool(cfg)
    # derived once in the text: the net cost of the ROSI reconciliation (intervention − avoided costs)
    r = results["rosi"]
    pool += list(pd.to_numeric(r["intervention_cost_eur"], errors="coerce") - pd.to_numeric(r["avoided_cost_eur"], errors="coerce"))
    unmatched = []
    for key in NARRATIVE_SECTIONS:
        for para in secs.get(key, {}).get("text", []):
            for value, dec, unit in numbers(para, lang):
                if dec == 0 and unit == "" and abs(value) <= 60 and value == int(value):
                    continue  # counts of rows, years, item numbers
                if not matches(value, dec, unit, pool):
                    unmatched.append((key, para[:50], value))
    assert unmatched == []


# ------------------------------------------------------------------ one headline per quantity
def _fmt(x, lang, digits=0, sign=True, percent=False):
    return i18n.num(x, lang, digits, sign=sign, percent=percent)


def test_the_headline_cost_reads_the_same_in_every_place(built):
    lang, secs, results, *_ = built
    d = results["cost_differences"]
    head = d[(d["contrast"] == "pilot_vs_comparison") & (d["category"] == "total") & (d["period"] == "follow_up")].iloc[0]
    h = _fmt(head["difference_eur"], lang) + " €"
    summary = " ".join(secs["summary"]["text"])
    assert h in summary
    cost_tables = " ".join(c for t in secs["costs"]["tables"] for row in t["rows"] for c in row)
    assert _fmt(head["difference_eur"], lang) in cost_tables  # the cost-difference table
    assert h in " ".join(secs["cea"]["text"]) and h in " ".join(secs["rosi"]["text"])  # named where figures differ
    # the CEA's ΔC differs, and the text says why, with both numbers
    cea = results["cea"]
    dc = cea[(cea["contrast"] == "pilot_vs_comparison") & (cea["ci_method"] == "fieller")]["delta_cost_eur"].iloc[0]
    cea_text = " ".join(secs["cea"]["text"])
    assert _fmt(dc, lang) + " €" in cea_text
    # every version contrast: the summary's cost difference equals the cost table's
    for c in ("frame_shares", "teaming"):
        x = d[(d["contrast"] == c) & (d["category"] == "total") & (d["period"] == "follow_up")]["difference_eur"].iloc[0]
        assert _fmt(x, lang) + " €" in summary and _fmt(x, lang) in cost_tables and _fmt(x, lang) + " €" in cea_text


def test_the_effect_against_usual_services_reads_the_same_in_every_place(built):
    lang, secs, results, cfg, _ = built
    e = results["effects"]
    r = e[(e["outcome"] == cfg.primary) & (e["contrast"] == "pilot_vs_comparison")].iloc[0]
    est = _fmt(r["estimate"], lang, 2)
    assert est in " ".join(secs["summary"]["text"])
    assert est in " ".join(c for t in secs["outcomes"]["tables"] for row in t["rows"] for c in row)
    assert est in " ".join(secs["cea"]["text"])  # the reconciliation names the headline next to the CEA's ΔE
    for c in ("frame_shares", "teaming"):
        r = e[(e["outcome"] == cfg.primary) & (e["contrast"] == c) & (e["spec"] == "primary")].iloc[0]
        shown = _fmt(abs(r["estimate"]), lang, 2, sign=False)
        assert shown in " ".join(secs["summary"]["text"])
        assert _fmt(r["estimate"], lang, 2) in " ".join(secs["outcomes"]["text"])


def test_the_rosi_of_the_summary_is_the_table_s(built):
    lang, secs, results, *_ = built
    rosi = results["rosi"].set_index("comparison")
    summary = " ".join(secs["summary"]["text"])
    table = {row[0]: row for t in secs["rosi"]["tables"] for row in t["rows"][1:]}
    pilot = rosi.loc["pilot vs comparison"]
    label = narrative.comparison_label("pilot vs comparison", lang)
    if np.isfinite(pilot["ci_low"]):
        shown = _fmt(pilot["rosi"], lang, percent=True, sign=False)
        assert shown in summary and table[label][3] == shown
        assert (i18n.t("r_label_nr", lang)) in summary
    for comp, r in rosi.iterrows():  # no ROSI as a number over a denominator whose interval includes zero
        if not np.isfinite(r["ci_low"]) and np.isfinite(r["rosi"]):
            n = _fmt(r["rosi"], lang, percent=True, sign=False)
            assert n not in summary and n not in " ".join(secs["rosi"]["text"])
            assert table[narrative.comparison_label(comp, lang)][3] == i18n.t("r_not_reported", lang)


def test_the_horizon_sensitivity_is_in_the_summary(built):
    lang, secs, results, *_ = built
    s = results["rosi_sensitivity"]
    h = s[(s["comparison"] == "pilot vs comparison") & (s["parameter"] == "horizon_years")]
    rosi = results["rosi"].set_index("comparison").loc["pilot vs comparison"]
    if not len(h) or not np.isfinite(rosi["ci_low"]):
        pytest.skip("no horizon sensitivity for a reported ROSI in this study")
    assert _fmt(h["rosi_at_high"].iloc[0], lang, percent=True) in " ".join(secs["summary"]["text"])


# ------------------------------------------------------------------ p-values and counts
def test_the_interaction_p_in_the_text_is_the_table_s(built):
    lang, secs, results, cfg, _ = built
    text = " ".join(secs["interaction"]["text"])
    label = i18n.value("frame_shares:teaming", lang)
    table = next(t for t in secs["interaction"]["tables"] if t["rows"] and label in t["rows"][0])
    col = table["rows"][0].index(label)
    cell = next(row[col] for row in table["rows"][1:] if row[0] == i18n.outcome(cfg.primary, lang))
    kind, p = re.search(r"; (.+ p) (<?[\d.,]+)$", cell).groups()
    long = {"WY-adj. p": "Westfall–Young adjusted p", "WY-korj. p": "Westfall–Young-korjattu p"}[kind]
    assert f"{long} = {p}" in text or f"{long} {p}" in text.replace("< ", "<")


def test_no_p_value_is_unlabelled(built):
    lang, secs, *_ = built
    for key in ("outcomes", "interaction", "process"):
        for t in secs[key]["tables"]:
            for row in t["rows"][1:]:
                for c in row:
                    assert not re.search(r"; p [<\d]", c), (key, c)
        for para in secs[key]["text"]:
            assert not re.search(r"[;(] ?p = ", para), (key, para)


def test_the_secondary_sentence_counts_the_table_s_cells(built):
    lang, secs, results, cfg, _ = built
    outcomes = {i18n.outcome(o, lang) for o in cfg.families.get("secondary", [])}
    table = next(t for t in secs["outcomes"]["tables"] if len(t["rows"]) > 1 and t["rows"][1][0] in outcomes)
    cells = [c for row in table["rows"][1:] for c in row[1:] if c not in ("–", i18n.t("not_estimable_cell", lang))]
    ps = [re.search(r" p (<?[\d.,]+)$", c).group(1) for c in cells]
    sig = sum(1 for p in ps if p.startswith("<") or float(p.replace(",", ".")) < 0.05)
    text = next(p for p in secs["outcomes"]["text"] if ("secondary outcomes" in p or "toissijaista" in p))
    k = len(table["rows"]) - 1
    if lang == "en":
        assert f"shows {k} secondary outcomes and {len(cells)} estimated contrasts" in text and f"; {sig} of them" in text
    else:
        assert f"on {k} toissijaista tulosmuuttujaa ja {len(cells)} estimoitua" in text and f"niistä {sig}:n" in text


# ------------------------------------------------------------------ what the issue found
def test_appendix_c_prints_the_output_folder_not_a_temporary_one(built):
    lang, secs, _, _, man = built
    text = " ".join(secs["repro"]["text"])
    cmd = man["command"]
    assert f"hbeval verify {cmd[cmd.index('--out') + 1]}" in text
    assert ".tmp-" not in text


def test_labels_name_each_contrast_once(built):
    lang, secs, *_ = built
    everything = " ".join(p for s in secs.values() for p in s["text"])
    assert "vs frame only vs" not in everything and "vs pelkkä kehys vs" not in everything
    for t in secs["rosi"]["tables"] + secs["cea"]["tables"]:
        assert all(row[0].count(" vs ") <= 1 for row in t["rows"][1:]), t["rows"]
    rosi_method = secs["rosi"]["text"][0]
    assert i18n.value("teaming", lang) not in rosi_method and i18n.value("cost:teaming", lang) in rosi_method
    assert "vastaisuu" not in everything


def test_the_allocation_and_its_concealment_are_described(built):
    lang, secs, _, _, man = built
    text = " ".join(secs["baseline"]["text"])
    reg = man["registry"]
    assert reg["receipt"] in text and str(reg["seq"]) in text and reg["head"][:20] in text
    assert ("concealed" in text) if lang == "en" else ("salattu" in text)


def test_the_summary_says_what_was_randomised_and_what_was_not(built):
    lang, secs, *_ = built
    summary = " ".join(secs["summary"]["text"])
    assert ("versions of HB" in summary) if lang == "en" else ("HB:n versioita" in summary)
    nr = i18n.t("r_label_nr", lang)
    assert summary.count(nr) >= 3
    assert not re.search(r"\bp [=<]", summary)  # the statistical detail is in the sections


def test_the_number_check_catches_a_number_not_in_the_tables():
    """The check itself: a number typed in, or one rounded differently, is found; a suppressed count is not."""
    pool = [3897.97, 0.7091, -0.766, 0.373]
    assert matches(3898, 0, "€", pool) and matches(0.71, 2, "", pool) and matches(-77, 0, "%", pool)
    assert matches(37.3, 1, "%", pool)
    assert not matches(3899, 0, "€", pool) and not matches(0.72, 2, "", pool) and not matches(-76, 0, "%", pool)
    assert numbers("a difference of +3\u202f898 € (95 % CI 3\u202f004 to 4\u202f915); ROSI −77 % in 2×2", "en") == [
        (3898.0, 0, "€"), (3004.0, 0, ""), (4915.0, 0, ""), (-77.0, 0, "%")]
    assert numbers("ero +0,71 pistettä (95 %:n lv. 0,57 … 0,85)", "fi") == [(0.71, 2, ""), (0.57, 2, ""), (0.85, 2, "")]
