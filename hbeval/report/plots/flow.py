"""The CONSORT flow diagram, drawn from ``results/consort.csv`` (counts already suppressed).

The randomised pilot's flow (assessed → excluded with reasons → allocated to the four
cells of the 2×2 → received → lost to follow-up → analysed) is drawn beside the
non-randomised comparison group's flow (identified → lost to follow-up → analysed), as the
CONSORT 2025 flow diagram extended with a comparison column.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from hbeval.arms import CELLS
from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, new_figure

_KEYS = ("assessed", "excluded", "allocated", "received", "lost", "analysed", "comparison", "identified", "randomised",
         "enrol", "alloc", "follow", "anal", "notalloc", "title")


def _n(flow: pd.DataFrame, stage: str, group: str, cell: str = "all", reason: str | None = None) -> str:
    s = flow[(flow["stage"] == stage) & (flow["group"] == group) & (flow["cell"].astype(str) == cell)]
    if reason is not None and "reason" in s:
        s = s[s["reason"].fillna("").astype(str) == reason]
    if not len(s):
        return "–"
    v = s["n"].iloc[0]
    return str(v) if not isinstance(v, float) else f"{v:.0f}"


def flow_counts(consort: pd.DataFrame) -> dict[str, Any]:
    """The numbers of the diagram as text (suppressed counts stay ``<k``)."""
    flow = consort.copy()
    flow["reason"] = flow["reason"].fillna("") if "reason" in flow else ""
    excl = flow[(flow["stage"] == "excluded") & (flow["group"] == "pilot")]
    reasons = [(str(r), str(n)) for r, n in zip(excl["reason"], excl["n"]) if r and r != "all reasons"]
    return {
        "assessed": _n(flow, "assessed", "pilot"),
        "excluded": _n(flow, "excluded", "pilot", reason="all reasons"),
        "reasons": reasons,
        "not_allocated": _n(flow, "allocated", "pilot", "not yet allocated"),
        "cells": {c: {k: _n(flow, k, "pilot", c) for k in ("allocated", "received", "lost_to_follow_up", "analysed")}
                  for c in CELLS},
        "comparison": {k: _n(flow, k, "comparison") for k in ("assessed", "lost_to_follow_up", "analysed")},
    }


def plot_flow(consort: pd.DataFrame, lang: str = "en") -> Figure:
    """The CONSORT flow diagram (matplotlib Figure) from ``consort.csv``."""
    L = {k: i18n.fig(f"flow_{k}", lang) for k in _KEYS}
    c = flow_counts(consort)
    fig, ax = new_figure(11.0, 7.6)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.axis("off")
    ax.grid(False)

    def box(x: float, y: float, w: float, h: float, text: str, color: str = "#333333", fs: float = 7.5,
            face: str = "white", ha: str = "center") -> None:
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.4,rounding_size=0.8",
                                    fc=face, ec=color, lw=1.0))
        tx = x if ha == "center" else x - w / 2 + 1.0
        text = text.replace("= <", "<")  # a suppressed count reads "n <5"
        ax.text(tx, y, text, ha=ha, va="center", fontsize=fs, color="#111111", linespacing=1.25)

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.9})

    xs = [11.0, 31.0, 51.0, 71.0]
    # stage labels on the left margin
    # enrolment
    box(41, 92, 30, 6, f"{L['assessed']}\n(n = {c['assessed']})")
    reasons = "\n".join(textwrap.shorten(f"• {i18n.value(r, lang)} (n = {n})", 44) for r, n in c["reasons"][:6])
    box(76, 84, 30, 4 + 2.6 * max(1, min(len(c["reasons"]), 6)), f"{L['excluded']} (n = {c['excluded']})\n{reasons}",
        ha="left", fs=7)
    arrow(41, 89, 41, 78.5)
    ax.plot([41, 61], [84, 84], color="#555555", lw=0.9)
    extra = "" if c["not_allocated"] == "–" else f"\n{L['notalloc']}: {c['not_allocated']}"
    alloc = [str(c["cells"][cell]["allocated"]) for cell in CELLS]
    known = sum(int(a) for a in alloc if a.isdigit())
    n_rand = str(known) if all(a.isdigit() for a in alloc) else f"≥{known}"  # never undo a suppression
    box(41, 75.5, 30, 5, f"{L['randomised']} (n = {n_rand}){extra}", face="#eef2f6")
    for x, cell in zip(xs, CELLS):
        k = c["cells"][cell]
        arrow(41, 73, x, 66.5)
        col = PALETTE.get(cell, "#333333")
        box(x, 60, 18, 11, f"{i18n.value(cell, lang)}\n\n{L['allocated']}: n = {k['allocated']}\n"
            f"{textwrap.fill(L['received'], 24)}:\nn = {k['received']}", color=col, fs=6.8)
        arrow(x, 54.3, x, 44.8)
        box(x, 41, 18, 6.5, f"{L['lost']}\nn = {k['lost_to_follow_up']}", color=col, fs=6.8)
        arrow(x, 37.6, x, 29.3)
        box(x, 25, 18, 7, f"{L['analysed']}\nn = {k['analysed']}", color=col, fs=6.8)
    # comparison column
    xc = 91.0
    k = c["comparison"]
    ax.plot([82.5, 82.5], [5, 70], color="#999999", lw=0.8, ls="--")
    box(xc, 60, 15, 11, f"{L['comparison']}\n\n{L['identified']}:\nn = {k['assessed']}", color=PALETTE["comparison"],
        fs=6.8, face="#f4f7fb")
    arrow(xc, 54.3, xc, 44.8)
    box(xc, 41, 15, 6.5, f"{L['lost']}\nn = {k['lost_to_follow_up']}", color=PALETTE["comparison"], fs=6.6)
    arrow(xc, 37.6, xc, 29.3)
    box(xc, 25, 15, 7, f"{L['analysed']}\nn = {k['analysed']}", color=PALETTE["comparison"], fs=6.6)
    for y, lab in ((92, L["enrol"]), (60, L["alloc"]), (41, L["follow"]), (25, L["anal"])):
        ax.text(0.0, y + 7 if y == 92 else y + 7.5, lab, fontsize=7.5, color="#2f5f8a", fontweight="bold", ha="left")
    ax.set_title(L["title"], fontsize=10)
    return fig
