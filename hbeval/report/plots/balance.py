"""The love plot of the randomised margins, drawn from ``results/balance.csv``."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, legend_below, localise, new_figure

#: the margins drawn, with their marker and colour
_MARGINS = {"frame_shares": ("o", PALETTE["frame_shares/no_teaming"]), "teaming": ("s", PALETTE["frame_only/teaming"])}


def plot_love(balance_df: pd.DataFrame, lang: str = "en") -> Figure:
    """Love plot: the normalised difference of every covariate at the two margins.

    Suppressed rows are left out (their values are blank); dashed lines at ±0.1 and dotted
    at ±0.25 (common rules of thumb for imbalance).
    """
    d = balance_df[(balance_df["row_type"] == "covariate") & balance_df["comparison"].isin(list(_MARGINS))]
    variables = list(dict.fromkeys(d["variable"]))
    fig, ax = new_figure(7.0, max(2.5, 0.28 * len(variables) + 1.2))
    ypos = {v: i for i, v in enumerate(reversed(variables))}
    for comp, (mk, col) in _MARGINS.items():
        s = d[(d["comparison"] == comp) & d["normalized_difference"].notna()]
        ax.scatter(s["normalized_difference"].astype(float), [ypos[v] for v in s["variable"]], marker=mk, color=col,
                   label=i18n.fig(f"love_{comp}", lang), zorder=3)
    for v, ls in ((0.1, "--"), (0.25, ":")):
        ax.axvline(v, color=PALETTE["neutral"], ls=ls, lw=0.8)
        ax.axvline(-v, color=PALETTE["neutral"], ls=ls, lw=0.8)
    ax.axvline(0, color=PALETTE["neutral"], lw=0.8)
    ax.set_yticks(list(ypos.values()), [i18n.variable(v, lang) for v in ypos])
    ax.set_xlabel(i18n.fig("love_x", lang))
    ax.set_title(i18n.fig("love_title", lang), wrap=True)
    if variables:  # below the axes, off the data
        legend_below(fig, ax, ncols=2)
    return localise(fig, lang)
