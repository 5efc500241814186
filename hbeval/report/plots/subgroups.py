"""The subgroup forest plot: each margin's effect within the levels of one subgroup variable,
drawn from ``results/effects.csv`` (``spec`` ``subgroup`` and ``heterogeneity`` rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hbeval.report import i18n
from hbeval.report.plots.style import PALETTE, STYLE, localise, plt

MARGINS = ("frame_shares", "teaming")


def _p(p: object, lang: str) -> str:
    s = i18n.pval(p, lang)
    if lang == "fi":
        s = s.replace(".", ",")  # the decimal comma, as i18n.t gives the text
    return s if s.startswith(("<", "–")) else f"= {s}"


def plot_subgroups(effects_df: pd.DataFrame, variable: str, lang: str = "en", outcome: str | None = None,
                   mic: float | None = None) -> Figure:
    """Forest plot of the effects of ``frame_shares`` and ``teaming`` (one panel each) within the
    levels of ``variable``, with the pooled (primary) effect dashed, the minimal important change
    ``mic`` dotted (when given) and the test of heterogeneity's p and RI p in each panel's title.
    A level without an estimate is labelled so, with no point. Returns a matplotlib Figure."""
    df = effects_df
    if outcome is None:
        outcome = str(df["outcome"].iloc[0])
    sub = df[(df["outcome"] == outcome) & df.get("subgroup", pd.Series(index=df.index, dtype=object)).notna()]
    levels = list(dict.fromkeys(s for s in sub.loc[sub["spec"] == "subgroup", "subgroup"]
                                if str(s).startswith(variable + "=")))
    n = max(len(levels), 1)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(10.0, 0.45 * n + 2.0), sharey=True, layout="constrained")
    ys = np.arange(n)[::-1]
    for ax, margin in zip(axes, MARGINS):
        s = sub[sub["contrast"] == margin]
        for y, lv in zip(ys, levels):
            r = s[(s["spec"] == "subgroup") & (s["subgroup"] == lv)]
            est = pd.to_numeric(r["estimate"], errors="coerce")
            if not len(r) or not np.isfinite(est.iloc[0]):
                ax.text(0.02, y, i18n.fig("subgroups_noest", lang), transform=ax.get_yaxis_transform(), va="center",
                        fontsize=8, color=PALETTE["neutral"])
                continue
            r0 = r.iloc[0]
            ax.plot([float(r0["ci_low"]), float(r0["ci_high"])], [y, y], color=PALETTE["neutral"], lw=1.5)
            ax.plot([float(r0["estimate"])], [y], "o", color=PALETTE["neutral"])
        pooled = df[(df["outcome"] == outcome) & (df["contrast"] == margin) & (df["spec"] == "primary")]
        if len(pooled) and np.isfinite(pd.to_numeric(pooled["estimate"], errors="coerce").iloc[0]):
            ax.axvline(float(pooled["estimate"].iloc[0]), color=PALETTE["pilot"], lw=1.0, ls="--")
        if mic is not None and mic > 0:
            ax.axvline(float(mic), color=PALETTE["comparison"], lw=1.0, ls=":")
        ax.axvline(0, color="black", lw=0.8)
        test = s[(s["spec"] == "heterogeneity") & (s["subgroup"] == variable)]
        title = i18n.value(margin, lang)
        if len(test):
            t0 = test.iloc[0]
            title += "\n" + i18n.fig("subgroups_het", lang, p=_p(t0["p_value"], lang), p_ri=_p(t0["p_value_ri"], lang))
        ax.set_title(title, fontsize=8)
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels([i18n.level(lv.split("=", 1)[1], lang) for lv in levels] if levels else [""])
    fig.supxlabel(i18n.fig("subgroups_x", lang, o=i18n.outcome(outcome, lang)), fontsize=9)
    fig.suptitle(i18n.fig("subgroups_title", lang, v=i18n.variable(variable, lang), m=i18n.outcome(outcome, lang)),
                 fontsize=10)
    return localise(fig, lang)
