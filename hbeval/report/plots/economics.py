"""The economic evaluation's figures: the cost-effectiveness plane (from
``replicates/ce_plane.csv`` and ``results/cea.csv``), the acceptability curves
(``results/ceac.csv``) and the ROSI tornado (``results/rosi_sensitivity.csv``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hbeval.arms import CONTRAST_INTERACTION
from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, legend_below, localise, new_figure

#: the corners of the plane where the quadrant shares are written, as axes fractions
_CORNERS = {"NE": (0.98, 0.98), "NW": (0.02, 0.98), "SE": (0.98, 0.02), "SW": (0.02, 0.02)}


def _short(v: float, lang: str) -> str:
    """A parameter value as short as it is written (0.035, 1.25), with the decimal comma in Finnish."""
    s = f"{float(v):g}"
    return s.replace(".", ",") if lang == "fi" else s


def plot_ce_plane(replicates: pd.DataFrame, cea: pd.DataFrame, contrast: str = "pilot_vs_comparison", lang: str = "en",
                  max_points: int = 2000) -> Figure:
    """The CE plane of one contrast: bootstrap cloud, point estimate, WTP line, quadrant shares.

    Parameters
    ----------
    replicates : ``replicates/ce_plane.csv`` (``contrast``, ``replicate``, ``delta_cost``,
        ``delta_effect``): the first bootstrap replicates of every contrast.
    cea : ``results/cea.csv``: the point estimate, the reference WTP, the outcome and the
        quadrant shares of all replicates (``share_ne`` ...).
    max_points : at most this many replicates are drawn.
    """
    r = replicates[replicates["contrast"] == contrast].sort_values("replicate", kind="stable").head(max_points)
    row = cea[cea["contrast"] == contrast].iloc[0]
    wtp = float(row["wtp_reference_eur"])
    fig, ax = new_figure(6.5, 5)
    ax.scatter(r["delta_effect"].to_numpy(float), r["delta_cost"].to_numpy(float), s=4, alpha=0.25,
               color=PALETTE["neutral"], label=i18n.fig("ce_reps", lang))
    ax.scatter([float(row["delta_effect"])], [float(row["delta_cost_eur"])], s=40, color=PALETTE["pilot"], zorder=3,
               label=i18n.fig("ce_point", lang))
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(0, color="black", lw=0.8)
    xl = np.array(ax.get_xlim())
    ax.plot(xl, wtp * xl, ls="--", color=PALETTE["comparison"], label=i18n.fig("ce_wtp", lang, w=i18n.num(wtp, lang, 0)))
    ax.set_xlim(float(xl[0]), float(xl[1]))
    for q, (x, y) in _CORNERS.items():
        share = float(row[f"share_{q.lower()}"])
        ax.text(x, y, f"{i18n.value(q, lang)} {i18n.num(share, lang, 1, percent=True)}", transform=ax.transAxes, ha="right" if x > 0.5 else "left",
                va="top" if y > 0.5 else "bottom", fontsize=8)
    ax.set_xlabel(i18n.fig("ce_dE", lang, o=i18n.outcome(str(row["outcome"]), lang)))
    ax.set_ylabel(i18n.fig("ce_dC", lang))
    ax.set_title(i18n.fig("ce_plane", lang, c=i18n.value(contrast, lang)), wrap=True)
    legend_below(fig, ax, ncols=3)
    return localise(fig, lang)


def plot_ceac(ceac: pd.DataFrame, lang: str = "en", contrasts: list[str] | None = None) -> Figure:
    """CEAC lines (``ceac.csv``) for the chosen contrasts (default: all)."""
    fig, ax = new_figure(7, 5.2)
    # the interaction is a difference of differences, not a programme a municipality could adopt
    names = contrasts or [c for c in dict.fromkeys(ceac["contrast"]) if c != CONTRAST_INTERACTION]
    for name in names:
        s = ceac[ceac["contrast"] == name]
        ax.plot(s["wtp_eur"].astype(float), pd.to_numeric(s["prob_cost_effective"], errors="coerce"), marker="o", ms=3,
                label=i18n.value(name, lang))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(i18n.fig("ceac_x", lang))
    ax.set_ylabel(i18n.fig("ceac_y", lang))
    ax.set_title(i18n.fig("ceac_title", lang), wrap=True)
    legend_below(fig, ax, ncols=2)
    return localise(fig, lang)


def plot_tornado(sensitivity: pd.DataFrame, comparison: str = "pilot vs comparison", lang: str = "en") -> Figure:
    """Tornado of ``rosi_sensitivity.csv`` for one comparison (widest bar on top)."""
    s = sensitivity[sensitivity["comparison"] == comparison].iloc[::-1]
    fig, ax = new_figure(7, 4.5)
    if len(s):
        base = 100 * float(s["rosi_base"].iloc[0])
        y = np.arange(len(s))
        lo = 100 * s["rosi_at_low"].to_numpy(float)
        hi = 100 * s["rosi_at_high"].to_numpy(float)
        ax.barh(y, lo - base, left=base, color=PALETTE["comparison"], label=i18n.fig("tornado_low", lang))
        ax.barh(y, hi - base, left=base, color=PALETTE["pilot"], label=i18n.fig("tornado_high", lang))
        ax.axvline(base, color="black", lw=0.8, label=f"{i18n.fig('tornado_base', lang)} {i18n.num(base, lang, 0)} %")
        labels = [f"{i18n.fig(f'tornado_{p}', lang, default=p)} ({_short(lv, lang)}–{_short(hv, lang)})"
                  for p, lv, hv in zip(s["parameter"], s["low_value"], s["high_value"])]
        ax.set_yticks(y, labels, fontsize=8)
        legend_below(fig, ax, ncols=3)
    ax.set_xlabel(i18n.fig("tornado_x", lang))
    ax.set_title(i18n.fig("tornado_title", lang, c=i18n.value(comparison, lang)), wrap=True)
    return localise(fig, lang)
