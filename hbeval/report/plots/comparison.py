"""The non-randomised comparison's figures, drawn from ``results/comparison.csv``: balance
before and after weighting, and the overlap of the propensity scores."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, STYLE, legend_below, localise, new_figure


def plot_love_comparison(comparison_df: pd.DataFrame, lang: str = "en") -> Figure:
    """Love plot: |SMD| per covariate before and after ATT weighting (0.1 marked)."""
    b = comparison_df[comparison_df["section"] == "balance"]
    fig, ax = new_figure(7.0, 0.3 * max(len(b), 3) + 1.2)
    y = np.arange(len(b))[::-1]
    ax.plot(np.abs(b["smd_before"].astype(float)), y, "o", mfc="white", color=PALETTE["comparison"],
            label=i18n.fig("comp_before", lang))
    ax.plot(np.abs(b["smd_after"].astype(float)), y, "o", color=PALETTE["pilot"], label=i18n.fig("comp_after", lang))
    ax.axvline(0.1, color="black", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels([i18n.variable(v, lang) for v in b["item"].astype(str)])
    ax.set_xlabel("|" + i18n.fig("comp_smd", lang) + "|")
    ax.set_title(i18n.fig("comp_love", lang), wrap=True)
    legend_below(fig, ax, ncols=2)
    return localise(fig, lang)


def plot_overlap(comparison_df: pd.DataFrame, lang: str = "en") -> Figure:
    """Histograms of the propensity score, one panel per group (pilot above, comparison below, same
    x axis), from the binned (suppressed) counts of ``comparison.csv`` (rows ``overlap_hist``, bins
    ``[bin_low, bin_high)``). Counts are drawn as they are (never mirrored below zero); suppressed
    bins are drawn empty, so no small count shows."""
    h = comparison_df[comparison_df["section"] == "overlap_hist"]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 1, figsize=(7.0, 4.6), sharex=True, layout="constrained")
    for ax, g in zip(axes, ("pilot", "comparison")):
        s = h[h["group"] == g]
        n = pd.to_numeric(s["n"], errors="coerce").fillna(0).to_numpy()
        lo = s["bin_low"].astype(float).to_numpy()
        width = s["bin_high"].astype(float).to_numpy() - lo
        ax.bar(lo, n, width=width, align="edge", color=PALETTE[g], alpha=0.8)
        ax.set_ylim(0, max(float(n.max()) if len(n) else 0.0, 1.0) * 1.1)
        ax.set_ylabel(i18n.fig("comp_n", lang))
        ax.set_title(i18n.fig(f"comp_{g}", lang).capitalize(), fontsize=9, loc="left", wrap=True)
    axes[-1].set_xlabel(i18n.fig("comp_ps", lang))
    axes[-1].set_xlim(0, 1)
    fig.suptitle(i18n.fig("comp_overlap", lang), fontsize=11)
    return localise(fig, lang)
