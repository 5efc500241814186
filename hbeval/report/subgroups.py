"""The report's "subgroups" section: its sentences and tables, read from ``results/effects.csv``
(rows with a ``subgroup``) and ``results/subgroup_costs.csv``. Presentation only: every number
comes from those tables (:mod:`hbeval.outcomes.subgroups` computes them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hbeval.report import i18n

SPEC_SUBGROUP = "subgroup"  # as hbeval.outcomes.subgroups writes them
SPEC_HETEROGENEITY = "heterogeneity"
MARGINS = ("frame_shares", "teaming")
#: a test of heterogeneity is "convincing" when both its p-value and its RI p-value are below this
ALPHA = 0.05


_f = i18n.as_float


def p_text(p: Any, lang: str) -> str:
    """``= 0.483``, ``< 0.001`` or ``–``."""
    s = i18n.pval(p, lang)
    return s if s.startswith(("<", "–")) else f"= {s}"


def subgroup_rows(effects: pd.DataFrame, outcome: str | None = None) -> pd.DataFrame:
    """The subgroup and heterogeneity rows of ``effects`` (of ``outcome`` when given)."""
    if not len(effects) or "subgroup" not in effects.columns:
        return pd.DataFrame(columns=list(effects.columns))
    d = effects[effects["spec"].isin([SPEC_SUBGROUP, SPEC_HETEROGENEITY]) & effects["subgroup"].notna()]
    return d if outcome is None else d[d["outcome"] == outcome]


def tests(effects: pd.DataFrame, outcome: str | None = None) -> pd.DataFrame:
    """The heterogeneity rows (one per variable and margin)."""
    d = subgroup_rows(effects, outcome)
    return d[d["spec"] == SPEC_HETEROGENEITY]


def subgroup_sentences(effects: pd.DataFrame, outcome: str, variables: list[str] | tuple[str, ...], min_cell: int,
                       lang: str) -> list[str]:
    """The section's paragraphs: what was done, each test of heterogeneity, and the verdict, which
    says plainly that the subgroup findings are exploratory unless a test is convincing (both
    its p-value and its randomisation p-value below :data:`ALPHA`)."""
    out = [i18n.t("subgroups_intro", lang, vars=", ".join(i18n.variable(v, lang) for v in variables), k=2 * min_cell)]
    t = tests(effects, outcome)
    tested = []
    for r in t.itertuples(index=False):
        margin, var = i18n.value(r.contrast, lang), i18n.variable(r.subgroup, lang)
        if not np.isfinite(_f(r.p_value)):
            why = i18n.note(getattr(r, "note", ""), lang) or "–"
            out.append(i18n.t("subgroups_no_test", lang, margin=margin, var=var, why=why))
            continue
        tested.append(r)
        out.append(i18n.t("subgroups_test", lang, margin=margin, var=var, p=p_text(r.p_value, lang),
                          p_ri=p_text(r.p_value_ri, lang)))
    if not tested:
        out.append(i18n.t("subgroups_untestable", lang))
        return out

    def worst(r: Any) -> float:
        p, pr = _f(r.p_value), _f(r.p_value_ri)
        return max(p, pr) if np.isfinite(pr) else p

    convincing = [r for r in tested if worst(r) < ALPHA]
    if convincing:
        which = ", ".join(f"{i18n.value(r.contrast, lang)} × {i18n.variable(r.subgroup, lang)}" for r in convincing)
        out.append(i18n.t("subgroups_convincing", lang, which=which, k=len(tested)))
    else:
        best = min(tested, key=worst)
        out.append(i18n.t("subgroups_exploratory", lang, p=p_text(best.p_value, lang), p_ri=p_text(best.p_value_ri, lang)))
    return out


def display_subgroups(effects: pd.DataFrame, outcome: str, lang: str) -> pd.DataFrame:
    """One row per subgroup level (and a test row per variable), one column per margin:
    ``estimate (CI); n`` or why there is none; the test row shows its p and RI p."""
    d = subgroup_rows(effects, outcome)
    if not len(d):
        return pd.DataFrame()
    rows: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for r in d.itertuples(index=False):
        key = str(r.subgroup) if r.spec == SPEC_SUBGROUP else f"{r.subgroup}\x00test"
        if key not in rows:
            label = (i18n.variable(r.subgroup, lang) if r.spec == SPEC_SUBGROUP
                     else f"{i18n.variable(r.subgroup, lang)}: {i18n.t('subgroup_heterogeneity', lang)}")
            rows[key] = {"subgroup": label}
            order.append(key)
        col = i18n.value(r.contrast, lang)
        if r.spec == SPEC_HETEROGENEITY:
            rows[key][col] = i18n.t("subgroup_test_cell", lang, p=p_text(r.p_value, lang), p_ri=p_text(r.p_value_ri, lang))
        elif np.isfinite(_f(r.estimate)):
            rows[key][col] = f"{i18n.est_ci(r.estimate, r.ci_low, r.ci_high, lang)}; n {r.n}"
        else:
            rows[key][col] = i18n.t("subgroup_no_estimate", lang)
    return pd.DataFrame([rows[k] for k in order]).fillna("–")


def display_subgroup_costs(costs: pd.DataFrame, lang: str) -> pd.DataFrame:
    """``subgroup_costs.csv`` for reading: subgroup, group or cell, n, mean (CI)."""
    if not len(costs):
        return pd.DataFrame()
    rows = []
    for r in costs.itertuples(index=False):
        who = i18n.value(r.group if r.cell == "all" else r.cell, lang)
        rows.append({"subgroup": i18n.variable(r.subgroup, lang), "group": who, "n": i18n.count(r.n, lang),
                     "mean_eur": i18n.est_ci(r.mean_eur, r.ci_low, r.ci_high, lang, 0, sign=False)})
    return pd.DataFrame(rows)
