"""Mean cost per family by category, drawn from ``results/costs.csv``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, new_figure

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
    fig, ax = new_figure(8, 4.5)
    bottom = np.zeros(len(units))
    for k, cat in enumerate(stacked_categories(costs)):
        vals = np.array([d[(d["group"] == g) & (d["cell"] == c) & (d["category"] == cat)]["mean_eur"].sum() for g, c in units])
        ax.bar(range(len(units)), vals, bottom=bottom, label=i18n.fig(f"costs_{cat}", lang, default=cat),
               color=_COLOURS[k % len(_COLOURS)])
        bottom += np.nan_to_num(vals)
    labels = []
    for g, c in units:
        nn = d[(d["group"] == g) & (d["cell"] == c)]["n"].iloc[0]
        cl = "" if c == "all" else c.replace("/", "/\n")
        labels.append(f"{i18n.fig(f'costs_{g}', lang, default=g)}\n{cl}\n(n={nn})")
    ax.set_xticks(range(len(units)), labels, fontsize=7)
    ax.set_ylabel(i18n.fig("costs_y", lang))
    ax.set_title(f"{i18n.fig('costs_title', lang)} ({i18n.fig(f'costs_{period}', lang)})")
    ax.legend(fontsize=7, ncols=3, loc="upper right")
    ax.tick_params(axis="x", colors=PALETTE["neutral"])
    return fig
