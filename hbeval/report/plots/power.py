"""The power curves of ``hbeval diagnose``, drawn from ``OUT/power_curve.csv`` and ``OUT/diagnosis.csv``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from hbeval.arms import CONTRASTS
from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, STYLE

#: the target power marked on every panel
TARGET = 0.80


def plot_power_curve(curve: pd.DataFrame, table: pd.DataFrame, lang: str = "en", mic: float | None = None) -> Figure:
    """Power against the true effect, one panel per randomised contrast, one line per pilot size.

    Each panel marks 80 % power (dashed), each size's MDE (a dot on its line where it reaches
    80 %) and, when given, the minimal important change ``mic`` (dotted).
    """
    sizes = sorted(int(n) for n in curve["n_pilot"].unique())
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 3, figsize=(10.0, 6.0), sharex=True, sharey=True, layout="constrained")
    cmap = plt.get_cmap("viridis")
    for ax, con in zip(axes.ravel(), CONTRASTS):
        for k, n in enumerate(sizes):
            colour = cmap(k / max(len(sizes) - 1, 1) * 0.85)
            c = curve[(curve["contrast"] == con) & (curve["n_pilot"] == n)]
            ax.plot(c["effect"], c["power"], color=colour, lw=1.5, label=i18n.fig("power_n", lang, n=n))
            row = table[(table["contrast"] == con) & (table["n_pilot"] == n)]
            if len(row) and pd.notna(row["mde"].iloc[0]):
                ax.plot([row["mde"].iloc[0]], [TARGET], "o", color=colour, ms=4)
        ax.axhline(TARGET, color=PALETTE["neutral"], ls="--", lw=0.8)
        if mic is not None:
            ax.axvline(mic, color=PALETTE["neutral"], ls=":", lw=0.8)
        ax.set_title(i18n.value(con, lang), fontsize=9)
        ax.set_ylim(0, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel(i18n.fig("power_x", lang))
    for ax in axes[:, 0]:
        ax.set_ylabel(i18n.fig("power_y", lang))
    axes[0, 0].legend(loc="lower right", fontsize=7)
    fig.suptitle(i18n.fig("power_title", lang, mic="" if mic is None else i18n.fig("power_mic", lang, mic=i18n.num(mic, lang))))
    return fig
