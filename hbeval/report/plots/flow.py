"""The CONSORT flow diagram, drawn from ``results/consort.csv`` (counts already suppressed).

The randomised pilot's flow (assessed → excluded with reasons → allocated to the four
cells of the 2×2 → received → lost to follow-up → not analysed, with reasons → analysed) is
drawn beside the non-randomised comparison group's flow (identified → lost to follow-up → no
start score → analysed), as the CONSORT 2025 flow diagram extended with a comparison column.
The comparison column names the population of each comparison analysis (the complete cases of
the CEA; the doubly robust estimate's families from ``comparison.csv``), so that its numbers
reconcile with the tables.

Readable in print: the figure is drawn at the text width of an A4 page, so that every label is
at least :data:`MIN_PRINTED_PT` points when the report places it (:func:`printed_scale`). At
small n, a row whose per-cell counts are mostly suppressed is drawn as one box across the four
cells that says so once, instead of a wall of ``<5`` (nothing suppressed is undone: no total is
computed from suppressed counts).
"""

from __future__ import annotations

import textwrap
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from hbeval.arms import CELLS
from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, STYLE, new_figure

_KEYS = ("assessed", "excluded", "allocated", "received", "lost", "analysed", "comparison", "identified", "randomised",
         "enrol", "alloc", "follow", "anal", "notalloc", "not_analysed", "complete_cases",
         "dr_population", "trimmed", "suppressed_row", "each_cell", "other_cells", "suppressed", "total")

#: the printed page: A4 (210 mm) less the report's left and right margins (``report.css``: 14 mm
#: each); figures are at most 200 mm high (``figure img { max-height: 200mm }``)
A4_TEXT_WIDTH_IN = (210 - 2 * 14) / 25.4
MAX_FIGURE_HEIGHT_IN = 200 / 25.4
#: CSS pixels per inch: the PNG's natural size in the report is its pixels / 96
CSS_PX_PER_IN = 96.0
#: the smallest font size, in points on paper, that the flow diagram may print at
MIN_PRINTED_PT = 7.0
#: the figure's size in inches: about the A4 text width, so it prints at about 1:1
FIG_WIDTH, FIG_HEIGHT = 7.2, 7.6
#: font sizes (points in the figure) of the box texts and of the stage labels
FS, FS_STAGE = 7.6, 7.8


def printed_scale(width_in: float, height_in: float, dpi: float | None = None) -> float:
    """Printed size / figure size of a figure placed in the PDF report.

    The PNG is saved at ``savefig.dpi``; the report shows it at its natural CSS size
    (pixels / 96 per inch), shrunk to fit the A4 text width and the 200 mm maximum height. A
    font of ``f`` points in the figure prints at ``f × printed_scale(...)`` points.
    """
    dpi = float(dpi if dpi is not None else STYLE.get("savefig.dpi", 100))  # type: ignore[arg-type]
    w, h = width_in * dpi / CSS_PX_PER_IN, height_in * dpi / CSS_PX_PER_IN
    shrink = min(1.0, A4_TEXT_WIDTH_IN / w, MAX_FIGURE_HEIGHT_IN / h)
    return w * shrink / width_in


def _n(flow: pd.DataFrame, stage: str, group: str, cell: str = "all", reason: str | None = None) -> str:
    s = flow[(flow["stage"] == stage) & (flow["group"] == group) & (flow["cell"].astype(str) == cell)]
    if reason is not None and "reason" in s:
        s = s[s["reason"].fillna("").astype(str) == reason]
    if not len(s):
        return "–"
    v = s["n"].iloc[0]
    return str(v) if not isinstance(v, float) else f"{v:.0f}"


def flow_counts(consort: pd.DataFrame) -> dict[str, Any]:
    """The numbers of the diagram as text (suppressed counts stay ``<k`` / ``suppressed``).

    ``not_analysed`` maps each reason to its count per cell; ``comparison_not_analysed`` the
    comparison group's reasons to their counts.
    """
    flow = consort.copy()
    flow["reason"] = flow["reason"].fillna("").astype(str) if "reason" in flow else ""
    excl = flow[(flow["stage"] == "excluded") & (flow["group"] == "pilot")]
    reasons = [(str(r), str(n)) for r, n in zip(excl["reason"], excl["n"]) if r and r != "all reasons"]
    na = flow[flow["stage"] == "not_analysed"]
    pilot_reasons = list(dict.fromkeys(na.loc[na["group"] == "pilot", "reason"]))
    return {
        "assessed": _n(flow, "assessed", "pilot"),
        "excluded": _n(flow, "excluded", "pilot", reason="all reasons"),
        "reasons": reasons,
        "not_allocated": _n(flow, "allocated", "pilot", "not yet allocated"),
        "cells": {c: {k: _n(flow, k, "pilot", c) for k in ("allocated", "received", "lost_to_follow_up", "analysed")}
                  for c in CELLS},
        "not_analysed": {r: {c: _n(flow, "not_analysed", "pilot", c, r) for c in CELLS} for r in pilot_reasons},
        "comparison": {k: _n(flow, k, "comparison") for k in ("assessed", "lost_to_follow_up", "analysed")},
        "comparison_not_analysed": {r: _n(flow, "not_analysed", "comparison", reason=r)
                                    for r in dict.fromkeys(na.loc[na["group"] == "comparison", "reason"])},
    }


def comparison_populations(comparison: pd.DataFrame | None, primary: str | None = None) -> dict[str, str]:
    """The doubly robust comparison estimate's families (``n_pilot``, ``n_comparison``) and the
    comparison families outside common support (``n_trimmed``), from ``comparison.csv``, as
    text; empty when the table or the primary outcome's row is missing."""
    if comparison is None or not len(comparison) or "section" not in comparison:
        return {}
    est = comparison[comparison["section"] == "estimate"]
    if primary is not None:
        est = est[est["item"].astype(str) == primary]
    elif "family" in est:
        est = est[est["family"].astype(str) == "primary"]
    out: dict[str, str] = {}
    if len(est):
        r = est.iloc[0]
        out = {"n_pilot": _text(r.get("n_pilot")), "n_comparison": _text(r.get("n_comparison"))}
    ov = comparison[(comparison["section"] == "overlap") & (comparison["group"].astype(str) == "comparison")]
    if len(ov):
        out["n_trimmed"] = _text(ov["n_trimmed"].iloc[0])
    return out


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    try:
        return f"{float(str(v)):.0f}"
    except ValueError:
        return str(v)


def _height(text: str, fs: float = FS) -> float:
    """The height of a box (axis units, 100 = the figure's height) that holds ``text``."""
    line = fs * 1.2 / (FIG_HEIGHT * 72) * 100
    return line * (text.count("\n") + 1) + 1.4


def _is_count(v: str) -> bool:
    return v.isdigit()


def _collapse(values: list[str]) -> bool:
    """Draw one box across the cells: two or more of the four counts are suppressed."""
    return sum(not _is_count(v) for v in values) >= 2


def _eq(n: str, lang: str = "en") -> str:
    """``n = 12``; a suppressed count reads ``n <5`` or ``n suppressed`` (in ``lang``)."""
    if n == "suppressed":
        return f"n {i18n.fig('flow_suppressed', lang)}"
    return f"n {n}" if n.startswith(("<", "≥")) else f"n = {n}"


def _totals(c: dict[str, Any], effects: pd.DataFrame | None) -> dict[str, str]:
    """The pilot's analysed families in all four cells (the primary estimate's ``n`` in
    ``effects.csv``) and, when every cell's allocated and lost counts are shown, the families not
    analysed (those with the end score less the analysed): counts other tables already publish,
    so a collapsed row can still give its total."""
    if effects is None or not len(effects) or not {"family", "contrast", "n"} <= set(effects.columns):
        return {}
    e = effects[(effects["family"].astype(str) == "primary") & (effects["contrast"].astype(str) == "frame_shares")]
    if "spec" in e:
        e = e[e["spec"].astype(str) == "primary"]
    if not len(e) or not _is_count(_text(e["n"].iloc[0])):
        return {}
    out = {"analysed": _text(e["n"].iloc[0])}
    parts = [(c["cells"][cell]["allocated"], c["cells"][cell]["lost_to_follow_up"]) for cell in CELLS]
    if all(_is_count(a) and _is_count(lost) for a, lost in parts):
        rest = sum(int(a) - int(lost) for a, lost in parts) - int(out["analysed"])
        if rest >= 0:
            out["not_analysed"] = str(rest)
    return out


def plot_flow(consort: pd.DataFrame, lang: str = "en", comparison: pd.DataFrame | None = None,
              primary: str | None = None, effects: pd.DataFrame | None = None) -> Figure:
    """The CONSORT flow diagram (matplotlib Figure) from ``consort.csv``.

    ``comparison`` (``comparison.csv``, optional) gives the population of the doubly robust
    comparison estimate of ``primary`` (default: the row of the primary family), named in the
    comparison column beside the complete cases. ``effects`` (``effects.csv``, optional) gives
    the total of a row drawn as one box (:func:`_totals`).
    """
    L = {k: i18n.fig(f"flow_{k}", lang) for k in _KEYS}
    c = flow_counts(consort)

    def eq(n: str) -> str:
        return _eq(n, lang)

    fig, ax = new_figure(FIG_WIDTH, FIG_HEIGHT)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.axis("off")
    lows: list[float] = []
    ax.grid(False)

    def box(x: float, y: float, w: float, h: float, text: str, color: str = "#333333", fs: float = FS,
            face: str = "white", ha: str = "center") -> None:
        lows.append(y - h / 2)
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.3,rounding_size=0.8",
                                    fc=face, ec=color, lw=0.9))
        tx = x if ha == "center" else x - w / 2 + 1.0
        ax.text(tx, y, text, ha=ha, va="center", fontsize=fs, color="#111111", linespacing=1.2)

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8})

    def wrap(s: str, width: int) -> str:  # never between "n", "=" and the count
        s = s.replace("n = ", "n\u00a0=\u00a0").replace("n <", "n\u00a0<")
        s = s.replace(f"n {L['suppressed']}", f"n\u00a0{L['suppressed']}")
        out = "\n".join(textwrap.fill(part, width, break_long_words=False) for part in s.split("\n"))
        return out.replace("\u00a0", " ")

    xs = [10.5, 28.5, 46.5, 64.5]  # the four cells
    wcell = 17.0
    xmid = (xs[0] + xs[-1]) / 2
    wide = xs[-1] - xs[0] + wcell

    def row_texts(values: dict[str, str], label: str, total: str | None = None) -> list[str] | str:
        """One stage across the four cells: a text per cell, or one text (a box across the cells)
        when most are suppressed, with the stage's total where another table publishes it."""
        vals = [values[cell] for cell in CELLS]
        if _collapse(vals):
            shown = [f"{i18n.value(cell, lang)}: {v}" for cell, v in zip(CELLS, vals) if _is_count(v) and v != "0"]
            k = next((v[1:] for v in vals if v.startswith("<")), "")
            note = (L["other_cells"] if shown else L["each_cell"]).format(k=k) \
                if k and all(_is_count(v) or v.startswith("<") for v in vals) else L["suppressed_row"]
            head = f"{label}: {L['total'].format(n=total)}" if total else label
            return wrap(head, 75) + "\n" + wrap(note, 75) + (f"\n{wrap('; '.join(shown), 75)}" if shown else "")
        return [wrap(f"{label}: {eq(v)}", 20) for v in vals]

    def row(top: float, texts: list[str] | str) -> float:
        """Draw a row of boxes whose tops are at ``top``, with arrows into it; its bottom."""
        h = _height(texts if isinstance(texts, str) else max(texts, key=lambda t: t.count("\n")))
        for x in xs:
            arrow(x + 2.5, top + 4.4, x + 2.5, top + 0.5)
        if isinstance(texts, str):
            box(xmid, top - h / 2, wide, h, texts)
        else:
            for x, cell, t in zip(xs, CELLS, texts):
                box(x, top - h / 2, wcell, h, t, color=PALETTE.get(cell, "#333333"))
        return top - h

    # --- enrolment
    box(xmid, 93, 30, 5, f"{L['assessed']}\n({eq(c['assessed'])})")
    reasons = "\n".join(textwrap.shorten(f"• {i18n.value(r, lang)} ({eq(n)})", 34) for r, n in c["reasons"][:5])
    h_ex = 3.6 + 2.2 * max(1, min(len(c["reasons"]), 5))
    box(79, 86, 34, h_ex, f"{L['excluded']} ({eq(c['excluded'])})" + (f"\n{reasons}" if reasons else ""), ha="left")
    ax.plot([xmid, 61.3], [86, 86], color="#555555", lw=0.8)
    arrow(xmid, 90.5, xmid, 81.5)
    extra = "" if c["not_allocated"] == "–" else f"\n{L['notalloc']}: {c['not_allocated']}"
    alloc = [str(c["cells"][cell]["allocated"]) for cell in CELLS]
    # the total only when every cell's count is shown: never undo a suppression (nor print "≥5")
    n_rand = str(sum(int(a) for a in alloc)) if all(a.isdigit() for a in alloc) else ""
    rand = L["randomised"] + (f"\n({eq(n_rand)})" if n_rand else "")
    box(xmid, 78.5, 32, 5, f"{rand}{extra}", face="#eef2f6")
    # --- allocation: per cell, its name, allocated and received
    alloc_texts = [f"{wrap(i18n.value(cell, lang), 20)}\n{wrap(L['allocated'] + ': ' + eq(c['cells'][cell]['allocated']), 20)}\n"
                   f"{wrap(L['received'] + ': ' + eq(c['cells'][cell]['received']), 20)}" for cell in CELLS]
    h = _height(max(alloc_texts, key=lambda t: t.count("\n")))
    top = 71.5
    for x, cell, t in zip(xs, CELLS, alloc_texts):
        arrow(xmid, 76, x, top + 0.5)
        box(x, top - h / 2, wcell, h, t, color=PALETTE.get(cell, "#333333"))
    stage_y = {"alloc": top + 2.2}
    # --- follow-up, not analysed, analysed
    top -= h + 5.0
    stage_y["follow"] = top + 2.5
    bottom = row(top, row_texts({cell: c["cells"][cell]["lost_to_follow_up"] for cell in CELLS},
                                L["lost"].replace("\n", " ")))
    totals = _totals(c, effects)
    top = bottom - 5.0
    stage_y["anal"] = top + 2.5
    for reason, per_cell in c["not_analysed"].items():
        bottom = row(top, row_texts(per_cell, f"{L['not_analysed']}: {i18n.value(reason, lang)}",
                                    totals.get("not_analysed") if len(c["not_analysed"]) == 1 else None))
        top = bottom - 5.0
    row(top, row_texts({cell: c["cells"][cell]["analysed"] for cell in CELLS}, L["analysed"].replace("\n", " "),
                       totals.get("analysed")))
    # --- the comparison column: who is in which analysis
    xc, wc = 89.0, 20.0
    k = c["comparison"]
    col = PALETTE["comparison"]
    divider = ax.plot([79.0, 79.0], [1, 72], color="#999999", lw=0.7, ls="--")[0]
    pops = comparison_populations(comparison, primary)
    texts = [f"{wrap(L['lost'].replace(chr(10), ' '), 22)}\n{eq(k['lost_to_follow_up'])}"]
    texts += [f"{wrap(L['not_analysed'] + ': ' + i18n.value(reason, lang), 22)}\n{eq(n)}"
              for reason, n in c["comparison_not_analysed"].items()]
    texts.append(f"{wrap(L['complete_cases'], 22)}\n{eq(k['analysed'])}")
    box(xc, 65.5, wc, 10.5, f"{wrap(L['comparison'], 22)}\n{L['identified']}: {eq(k['assessed'])}", color=col,
        face="#f4f7fb")
    top = 60.2  # stacked downwards, each box as high as its lines, an arrow between them
    for text in texts:
        h = _height(text)
        arrow(xc, top, xc, top - 2.6)
        top -= 2.9
        box(xc, top - h / 2, wc, h, text, color=col)
        top -= h + 0.6
    divider_low: float | None = None
    if pops.get("n_comparison"):
        pilot_low = min(lows[:-len(texts) - 1])  # the pilot's boxes (drawn before the comparison column)
        dr = L["dr_population"].format(n=eq(pops["n_comparison"]), n_pilot=eq(pops.get("n_pilot", "–")))
        trimmed = L["trimmed"].format(n=eq(pops["n_trimmed"])) if pops.get("n_trimmed") else ""
        wide_text = wrap(dr, 52) + (f"\n{wrap(trimmed, 52)}" if trimmed else "")
        h = _height(wide_text)
        if top - 1.5 < pilot_low - 2.5:  # room below the pilot's rows: one wide box, fewer lines
            box(99.0 - 22.0, top - 1.5 - h / 2, 44.0, h, wide_text, color=col, face="#f4f7fb")
            divider_low = top - 1.5 + 0.5
        else:
            text = wrap(dr, 23) + (f"\n{wrap(trimmed, 23)}" if trimmed else "")
            h = _height(text)
            box(xc, top - 1.5 - h / 2, wc, h, text, color=col, face="#f4f7fb")
    # --- stage labels on the left margin
    for yl, lab in ((97.5, L["enrol"]), (stage_y["alloc"], L["alloc"]), (stage_y["follow"], L["follow"]),
                    (stage_y["anal"], L["anal"])):
        ax.text(0.0, yl, lab, fontsize=FS_STAGE, color="#2f5f8a", fontweight="bold", ha="left", va="center")
    # the figure ends below its lowest box: the page keeps the text above it (same inches per unit)
    y0 = max(0.0, min(lows) - 2.0)
    ax.set_ylim(y0, 100)
    divider.set_ydata([divider_low if divider_low is not None else y0 + 0.5, 72])
    fig.set_size_inches(FIG_WIDTH, FIG_HEIGHT * (100 - y0) / 100)
    return fig


def _phrase(v: str, lang: str) -> str | None:
    """A published count for a sentence: the number, ``fewer than 5`` for ``<5``, ``None``
    when it is suppressed or missing."""
    if _is_count(v):
        return v
    if v.startswith("<"):
        return i18n.t("flow_fewer_than", lang, k=v[1:])
    return None


def _sum_or_none(values: list[str]) -> str | None:
    return str(sum(int(v) for v in values)) if values and all(_is_count(v) for v in values) else None


def flow_sentences(consort: pd.DataFrame, lang: str = "en", comparison: pd.DataFrame | None = None,
                   primary: str | None = None, effects: pd.DataFrame | None = None) -> list[str]:
    """The flow in words, from the counts the diagram shows: totals only where every part is
    published (or another table publishes the total, :func:`_totals`), ``fewer than k`` for a
    ``<k`` count, and a plain "counts suppressed" where a stage has no publishable total, so
    that a small pilot's text never reads "<5 were randomised" or "– were analysed"."""
    if not len(consort):
        return []
    c = flow_counts(consort)
    totals = _totals(c, effects)
    unknown = i18n.t("flow_unknown", lang)
    cells = c["cells"]
    out = []
    assessed, excluded = _phrase(c["assessed"], lang), _phrase(c["excluded"], lang)
    rand = _sum_or_none([cells[cell]["allocated"] for cell in CELLS])
    enrol = i18n.t("flow_s_assessed", lang, n=assessed) if assessed else i18n.t("flow_s_assessed_unknown", lang)
    enrol += " " + i18n.t("flow_s_excluded", lang, n=excluded or unknown)
    enrol += " " + (i18n.t("flow_s_randomised", lang, n=rand) if rand else i18n.t("flow_s_randomised_small", lang))
    out.append(enrol)
    lost = _sum_or_none([cells[cell]["lost_to_follow_up"] for cell in CELLS])
    anal = _sum_or_none([cells[cell]["analysed"] for cell in CELLS]) or totals.get("analysed")
    not_anal = _sum_or_none([v for per in c["not_analysed"].values() for v in per.values()]) or totals.get("not_analysed")
    if lost or not_anal or anal:
        out.append(i18n.t("flow_s_followup", lang, lost=lost or unknown, na=not_anal or unknown, anal=anal or unknown))
    else:
        out.append(i18n.t("flow_s_followup_unknown", lang))
    k = c["comparison"]
    if _is_count(k["assessed"]) and k["assessed"] != "0":
        na = next(iter(c["comparison_not_analysed"].values()), "–")
        text = i18n.t("flow_s_comparison", lang, n=k["assessed"], lost=_phrase(k["lost_to_follow_up"], lang) or unknown,
                      na=_phrase(na, lang) or unknown, anal=_phrase(k["analysed"], lang) or unknown)
        pops = comparison_populations(comparison, primary)
        dr = _phrase(pops.get("n_comparison", "–"), lang)
        if dr:
            text += " " + i18n.t("flow_s_comparison_dr", lang, n=dr)
        out.append(text)
    return out
