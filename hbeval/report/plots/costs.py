"""Mean cost per family by category, drawn from ``results/costs.csv``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, legend_below, localise, new_figure

#: one colour per stacked category, in the order of ``costs.csv``
_COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B2", "#937860"]


def stacked_categories(costs: pd.DataFrame) -> list[str]:
    """The categories that add up to the total, in the order of ``costs.csv``: every category
    but ``total`` and the breakdowns of one category (``income_support:<kind>``)."""
    return [c for c in dict.fromkeys(costs["category"].astype(str)) if c != "total" and ":" not in c]


def plot_costs(costs: pd.DataFrame, lang: str = "en", period: str = "follow_up") -> Figure:
    """Stacked bars of mean cost per family by category, per group and cell (``costs.csv``)."""
    d = costs[(costs["period"] == period) & (costs["category"] != "total")].copy()
    d["mean_eur"] = pd.to_numeric(d["mean_eur"], errors="coerce")
    units = list(dict.fromkeys(zip(d["group"], d["cell"])))
    fig, ax = new_figure(8, 5.2)
    bottom = np.zeros(len(units))
    for k, cat in enumerate(stacked_categories(costs)):
        vals = np.array([d[(d["group"] == g) & (d["cell"] == c) & (d["category"] == cat)]["mean_eur"].sum() for g, c in units])
        ax.bar(range(len(units)), vals, bottom=bottom, label=i18n.fig(f"costs_{cat}", lang, default=cat),
               color=_COLOURS[k % len(_COLOURS)])
        bottom += np.nan_to_num(vals)
    labels = []
    for g, c in units:
        nn = i18n.count(d[(d["group"] == g) & (d["cell"] == c)]["n"].iloc[0], lang)
        cl = "" if c == "all" else "\n".join(i18n.value(c, lang).split(", "))
        labels.append(f"{i18n.fig(f'costs_{g}', lang, default=g)}\n{cl}\n(n={nn})")
    ax.set_xticks(range(len(units)), labels, fontsize=8)
    top = float(np.nanmax(bottom)) if len(bottom) else 0.0
    ax.set_ylim(0, max(top, 1.0) * 1.06)  # every stacked bar inside the axes
    ax.set_ylabel(i18n.fig("costs_y", lang))
    ax.set_title(f"{i18n.fig('costs_title', lang)} ({i18n.fig(f'costs_{period}', lang)})", wrap=True)
    legend_below(fig, ax, ncols=3)
    ax.tick_params(axis="x", colors=PALETTE["neutral"])
    return localise(fig, lang)
