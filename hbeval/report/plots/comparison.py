"""The non-randomised comparison's figures, drawn from ``results/comparison.csv``: balance
before and after weighting, and the overlap of the propensity scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, new_figure


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
    ax.set_yticklabels(b["item"].astype(str))
    ax.set_xlabel("|" + i18n.fig("comp_smd", lang) + "|")
    ax.set_title(i18n.fig("comp_love", lang))
    ax.legend(loc="lower right")
    return fig


def plot_overlap(comparison_df: pd.DataFrame, lang: str = "en") -> Figure:
    """Mirrored histogram of the propensity by group from the binned (suppressed) counts of
    ``comparison.csv`` (rows ``overlap_hist``, bins ``[bin_low, bin_high)``); suppressed bins
    are drawn empty, so no small count shows."""
    h = comparison_df[comparison_df["section"] == "overlap_hist"]
    fig, ax = new_figure(7.0, 4.0)
    for g, sign in (("pilot", 1), ("comparison", -1)):
        s = h[h["group"] == g]
        n = pd.to_numeric(s["n"], errors="coerce").fillna(0).to_numpy()
        lo = s["bin_low"].astype(float).to_numpy()
        width = s["bin_high"].astype(float).to_numpy() - lo
        ax.bar(lo, sign * n, width=width, align="edge", color=PALETTE[g], alpha=0.7, label=i18n.fig(f"comp_{g}", lang))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(i18n.fig("comp_ps", lang))
    ax.set_ylabel(i18n.fig("comp_n", lang))
    ax.set_title(i18n.fig("comp_overlap", lang))
    ax.legend()
    return fig
