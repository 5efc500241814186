"""The forest plot of one outcome's contrasts, drawn from ``results/effects.csv``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hbeval.arms import PILOT_VS_COMPARISON
from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, legend_below, localise, new_figure


def plot_forest(effects_df: pd.DataFrame, lang: str = "en", outcome: str | None = None,
                spec: str = "primary", mic: float | None = None) -> Figure:
    """Forest plot of one outcome's contrasts (the primary outcome by default: the first
    outcome of the table). ``pilot_vs_comparison`` is drawn hollow and labelled as not
    randomised. ``spec`` picks the rows (``effects.csv``'s column). ``mic``, the study's minimal important
    change (``[outcomes] mic``), is drawn as dotted lines at ±mic. Returns a matplotlib Figure."""
    df = effects_df
    if outcome is None:
        outcome = str(df["outcome"].iloc[0])
    keep = (df["spec"] == spec) | (df["contrast"] == PILOT_VS_COMPARISON)
    sub = df[(df["outcome"] == outcome) & keep]
    sub = sub[pd.to_numeric(sub["estimate"], errors="coerce").notna()]
    fig, ax = new_figure(7.0, 0.45 * max(len(sub), 2) + 1.2)
    ys = np.arange(len(sub))[::-1]
    for y, r in zip(ys, sub.itertuples(index=False)):
        nr = r.contrast == PILOT_VS_COMPARISON
        color = PALETTE["pilot"] if nr else PALETTE["neutral"]
        ax.plot([r.ci_low, r.ci_high], [y, y], color=color, lw=1.5)
        ax.plot([r.estimate], [y], "o", color=color, mfc="white" if nr else color)
    ax.axvline(0, color="black", lw=0.8)
    if mic is not None and np.isfinite(mic) and mic > 0:
        label = i18n.fig("forest_mic", lang, mic=i18n.num(mic, lang, 2))
        ax.axvline(mic, color=PALETTE["comparison"], ls=":", lw=1.2, label=label)
        ax.axvline(-mic, color=PALETTE["comparison"], ls=":", lw=1.2)
        legend_below(fig, ax, ncols=1)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))  # tick labels that do not run into each other
    ax.set_yticks(ys)
    ax.set_yticklabels([i18n.value(c, lang) for c in sub["contrast"]])
    ax.set_xlabel(i18n.fig("forest_x", lang))
    ax.set_title(f"{i18n.fig('forest_title', lang)}:\n{i18n.outcome(outcome, lang)}", fontsize=10)
    return localise(fig, lang)
