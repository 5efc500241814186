"""Sentences of the report computed from the result tables (no number typed in by hand).

Each function takes the tidy tables of ``results/`` (as read from CSV) and returns
sentences in the requested language; the templates live in :mod:`hbeval.report.i18n`. When a
table lacks what a sentence needs, the function returns fewer sentences rather than
inventing a number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hbeval.report import i18n



def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _to_int(x: Any) -> str:
    """A count as text, keeping a suppressed ``<k`` as it is."""
    if isinstance(x, str):
        return x
    v = _f(x)
    return "–" if np.isnan(v) else f"{v:.0f}"


def effect_row(effects: pd.DataFrame, outcome: str, contrast: str) -> pd.Series | None:
    """The primary-specification row of one outcome and contrast (or ``None``)."""
    if not len(effects):
        return None
    s = effects[(effects["outcome"] == outcome) & (effects["contrast"] == contrast)]
    if contrast != "pilot_vs_comparison":
        s = s[s["spec"] == "primary"]
    return None if not len(s) else s.iloc[0]


def mic_phrase(est: float, lo: float, mic: float, lang: str) -> str:
    """How the estimate and its lower limit compare with the minimal important change."""
    if np.isnan(est) or mic <= 0:
        return ""
    m = i18n.num(mic, lang, 2)
    if lo >= mic:
        return i18n.t("n_mic_above", lang, mic=m)
    if est >= mic:
        return i18n.t("n_mic_partly", lang, mic=m)
    return i18n.t("n_mic_below", lang, mic=m) if est > 0 else ""


def effect_sentence(effects: pd.DataFrame, outcome: str, contrast: str, lang: str, mic: float | None = None) -> str | None:
    r = effect_row(effects, outcome, contrast)
    if r is None:
        return None
    est, lo, hi = _f(r["estimate"]), _f(r["ci_low"]), _f(r["ci_high"])
    return i18n.t("n_primary_effect", lang, contrast=i18n.value(contrast, lang), est=i18n.num(est, lang, 2, sign=True),
                  outcome=i18n.outcome(outcome, lang), ci=i18n.interval(lo, hi, lang), p=i18n.pval(r["p_value"], lang),
                  pri=i18n.pval(r.get("p_value_ri"), lang), padj=i18n.pval(r.get("p_value_adj"), lang), n=_to_int(r["n"]),
                  mic="" if mic is None else mic_phrase(est, lo, mic, lang))


def _consort_n(consort: pd.DataFrame, stage: str, group: str = "pilot", cell: str | None = None, reason: str | None = None) -> str:
    if not len(consort):
        return "–"
    s = consort[(consort["stage"] == stage) & (consort["group"] == group)]
    if cell is not None:
        s = s[s["cell"].astype(str) == cell]
    if reason is not None:
        s = s[s["reason"].fillna("").astype(str) == reason]
    if not len(s):
        return "–"
    vals = [str(v) for v in s["n"]]
    if len(vals) == 1:
        return _to_int(s["n"].iloc[0])
    if any(v.startswith("<") for v in vals):  # a sum of suppressed counts would reveal them
        nums = [int(_f(v)) for v in vals if not v.startswith("<")]
        return f"≥{sum(nums)}"
    return str(int(sum(_f(v) for v in vals)))


def flow_sentence(consort: pd.DataFrame, lang: str) -> str:
    cells = [c for c in consort["cell"].astype(str).unique() if "/" in c] if len(consort) else []
    alloc = _consort_n(consort[consort["cell"].astype(str).isin(cells)], "allocated")
    lost = _consort_n(consort[consort["cell"].astype(str).isin(cells)], "lost_to_follow_up")
    anal = _consort_n(consort[consort["cell"].astype(str).isin(cells)], "analysed")
    return i18n.t("n_flow", lang, assessed=_consort_n(consort, "assessed"),
                  excluded=_consort_n(consort, "excluded", reason="all reasons"), alloc=alloc, lost=lost, anal=anal,
                  comp=_consort_n(consort, "assessed", "comparison"), comp_anal=_consort_n(consort, "analysed", "comparison"))


def executive_summary(results: dict[str, pd.DataFrame], config: Any, lang: str = "en") -> list[str]:
    """The headline findings with their uncertainty, as a list of sentences (bullets)."""
    eff = results.get("effects", pd.DataFrame())
    consort = results.get("consort", pd.DataFrame())
    primary = config.primary
    out: list[str] = []
    if len(consort):
        cells = [c for c in consort["cell"].astype(str).unique() if "/" in c]
        c4 = consort[consort["cell"].astype(str).isin(cells)]
        out.append(i18n.t("n_summary_intro", lang, n_alloc=_consort_n(c4, "allocated"), n_anal=_consort_n(c4, "analysed"),
                          outcome=i18n.outcome(primary, lang), n_comp=_consort_n(consort, "assessed", "comparison")))
    for c in ("frame_shares", "teaming"):
        s = effect_sentence(eff, primary, c, lang, mic=config.mic)
        if s:
            out.append(s)
    inter = interaction_sentences(eff, primary, lang)
    if inter:
        out.append(" ".join(inter))
    r = effect_row(eff, primary, "pilot_vs_comparison")
    if r is not None:
        out.append(i18n.t("n_comparison", lang, outcome=i18n.outcome(primary, lang), est=i18n.num(r["estimate"], lang, 2, sign=True),
                          ci=i18n.interval(r["ci_low"], r["ci_high"], lang)))
    cs = costs_sentence(results.get("costs", pd.DataFrame()), config, lang)
    if cs:
        out.append(cs)
    cea = cea_sentences(results.get("cea", pd.DataFrame()), results.get("ceac", pd.DataFrame()), config, lang,
                        contrasts=("pilot_vs_comparison",))
    out += cea
    out += rosi_sentences(results.get("rosi", pd.DataFrame()), lang, comparisons=("pilot vs comparison",))
    return out


def interaction_sentences(effects: pd.DataFrame, outcome: str, lang: str) -> list[str]:
    r = effect_row(effects, outcome, "frame_shares:teaming")
    if r is None:
        return []
    lo, hi = _f(r["ci_low"]), _f(r["ci_high"])
    clear = i18n.t("n_clear" if (lo > 0 or hi < 0) else "n_unclear", lang)
    s = [i18n.t("n_interaction", lang, est=i18n.num(r["estimate"], lang, 2, sign=True), ci=i18n.interval(lo, hi, lang),
                p=i18n.pval(r["p_value"], lang), clear=clear)]
    # compare the interval with the smaller main effect: could the interaction be as large?
    mains = [effect_row(effects, outcome, c) for c in ("frame_shares", "teaming")]
    sizes = [abs(_f(m["estimate"])) for m in mains if m is not None and not np.isnan(_f(m["estimate"]))]
    if lo > 0 or hi < 0:
        s.append(i18n.t("n_interaction_large", lang))
    elif sizes and max(abs(lo), abs(hi)) >= min(sizes):
        s.append(i18n.t("n_interaction_uncertain", lang))
    else:
        s.append(i18n.t("n_interaction_small", lang))
    return s


def secondary_sentence(effects: pd.DataFrame, config: Any, lang: str) -> str | None:
    sec = config.families.get("secondary", [])
    if not len(effects) or not sec:
        return None
    d = effects[effects["outcome"].isin(sec) & effects["contrast"].isin(["frame_shares", "teaming", "frame_shares:teaming"])]
    d = d[d["spec"] == "primary"]
    k = d["outcome"].nunique()
    s = int((pd.to_numeric(d["p_value_adj"], errors="coerce") < 0.05).sum())
    return i18n.t("n_secondary", lang, k=k, s=s)


def balance_sentence(balance: pd.DataFrame, lang: str) -> str | None:
    if not len(balance):
        return None
    cov = balance[(balance["row_type"] == "covariate") & balance["comparison"].isin(["frame_shares", "teaming"])].copy()
    cov["nd"] = pd.to_numeric(cov["normalized_difference"], errors="coerce").abs()
    if not cov["nd"].notna().any():
        return None
    per_var = cov.groupby("variable", sort=False)["nd"].max()
    top = per_var.idxmax()

    def p_of(comp: str, row_type: str) -> str:
        s = balance[(balance["row_type"] == row_type) & (balance["comparison"] == comp)]
        return i18n.pval(s["p_value"].iloc[0], lang) if len(s) else "–"

    omni = balance[balance["row_type"] == "omnibus_ri"]
    text = i18n.t("n_balance", lang, k=int((per_var > 0.1).sum()), m=len(per_var), maxd=i18n.num(per_var.max(), lang, 2),
                  var=top, p_frame=p_of("frame_shares", "joint_f"), p_team=p_of("teaming", "joint_f"),
                  p_omni=i18n.pval(omni["p_value"].iloc[0], lang) if len(omni) else "–")
    ps = pd.to_numeric(balance.loc[balance["row_type"] != "covariate", "p_value"], errors="coerce")
    if (ps < 0.05).any():
        text = text.rsplit(".", 2)[0] + ". " + i18n.t("n_balance_warn", lang)
    return text


def attrition_sentences(attrition: pd.DataFrame, lang: str) -> list[str]:
    if not len(attrition):
        return []
    out = []
    rates = attrition[attrition["section"] == "rate"]
    allr = rates[rates["cell"] == "all"]
    cellr = pd.to_numeric(rates[rates["cell"] != "all"]["attrition_rate"], errors="coerce")
    joint = attrition[(attrition["section"] == "differential") & (attrition["contrast"] == "cells (joint)")]
    if len(allr):
        out.append(i18n.t("n_attrition", lang, rate=i18n.num(allr["attrition_rate"].iloc[0], lang, 1, percent=True),
                          range=i18n.interval(cellr.min(), cellr.max(), lang, 1, percent=True),
                          p=i18n.pval(joint["p_value"].iloc[0], lang) if len(joint) else "–"))
    for r in attrition[attrition["section"] == "lee_bounds"].itertuples(index=False):
        out.append(i18n.t("n_lee", lang, contrast=i18n.value(r.contrast, lang), lo=i18n.num(r.lower_bound, lang, 2, sign=True),
                          hi=i18n.num(r.upper_bound, lang, 2, sign=True), ci=i18n.interval(r.bound_ci_low, r.bound_ci_high, lang)))
    return out


def comparison_sentences(comparison: pd.DataFrame, primary: str, lang: str) -> list[str]:
    if not len(comparison):
        return []
    out = []
    e = comparison[(comparison["section"] == "estimate") & (comparison["item"] == primary)]
    if len(e):
        r = e.iloc[0]
        out.append(i18n.t("n_comparison", lang, outcome=i18n.outcome(primary, lang), est=i18n.num(r["estimate"], lang, 2, sign=True),
                          ci=i18n.interval(r["ci_low"], r["ci_high"], lang)))
    p = comparison[comparison["section"] == "placebo"]
    if len(p):
        r = p.iloc[0]
        ok = not (_f(r["ci_low"]) > 0 or _f(r["ci_high"]) < 0)
        out.append(i18n.t("n_placebo", lang, est=i18n.num(r["estimate"], lang, 0, sign=True),
                          ci=i18n.interval(r["ci_low"], r["ci_high"], lang, 0), p=i18n.pval(r["p_value"], lang),
                          verdict=i18n.t("n_placebo_ok" if ok else "n_placebo_bad", lang)))
    return out


def costs_sentence(costs: pd.DataFrame, config: Any, lang: str) -> str | None:
    if not len(costs):
        return None
    d = costs[(costs["category"] == "total") & (costs["period"] == "follow_up") & (costs["cell"] == "all")]
    p, c = d[d["group"] == "pilot"], d[d["group"] == "comparison"]
    if not len(p) or not len(c):
        return None
    p, c = p.iloc[0], c.iloc[0]
    return i18n.t("n_costs", lang, pilot=i18n.num(p["mean_eur"], lang, 0), pci=i18n.interval(p["ci_low"], p["ci_high"], lang, 0),
                  comp=i18n.num(c["mean_eur"], lang, 0), cci=i18n.interval(c["ci_low"], c["ci_high"], lang, 0),
                  py=config.price_year)


def cea_sentences(cea: pd.DataFrame, ceac: pd.DataFrame, config: Any, lang: str,
                  contrasts: tuple[str, ...] = ("frame_shares", "teaming", "pilot_vs_comparison")) -> list[str]:
    if not len(cea):
        return []
    out = []
    wtp = float(config.wtp_reference_eur)
    for c in contrasts:
        s = cea[(cea["contrast"] == c)]
        if not len(s):
            continue
        f = s[s["ci_method"] == "fieller"]
        r = (f if len(f) else s).iloc[0]
        q = str(r.get("quadrant", ""))
        if q == "SE":
            icer = i18n.t("n_icer_dominant", lang)
        elif q == "NW":
            icer = i18n.t("n_icer_dominated", lang)
        elif q == "SW":
            icer = i18n.t("n_icer_sw", lang, icer=i18n.num(r["icer"], lang, 0))
        else:
            icer = i18n.t("n_icer", lang, icer=i18n.num(r["icer"], lang, 0),
                          ci=i18n.interval(r["icer_ci_low"], r["icer_ci_high"], lang, 0))
        prob = r.get("prob_cost_effective")
        if len(ceac):
            cc = ceac[(ceac["contrast"] == c) & (pd.to_numeric(ceac["wtp_eur"], errors="coerce") == wtp)]
            if len(cc):
                prob = cc["prob_cost_effective"].iloc[0]
        out.append(i18n.t("n_cea", lang, contrast=i18n.value(c, lang), dc=i18n.num(r["delta_cost_eur"], lang, 0, sign=True),
                          dcci=i18n.interval(r.get("delta_cost_ci_low"), r.get("delta_cost_ci_high"), lang, 0),
                          de=i18n.num(r["delta_effect"], lang, 2, sign=True), icer=icer, wtp=i18n.num(wtp, lang, 0),
                          prob=i18n.num(prob, lang, 2)))
    return out


def rosi_sentences(rosi: pd.DataFrame, lang: str, comparisons: tuple[str, ...] | None = None) -> list[str]:
    if not len(rosi):
        return []
    out = []
    for r in rosi.itertuples(index=False):
        if comparisons is not None and r.comparison not in comparisons:
            continue
        v = _f(r.rosi)
        if v is None or v != v:  # no ROSI (the extra intervention cost is not positive): say why, no verdict
            note = getattr(r, "rosi_note", "") or ""
            out.append(i18n.t("n_rosi_undefined", lang, comparison=i18n.value(r.comparison, lang), note=note))
            continue
        out.append(i18n.t("n_rosi", lang, comparison=i18n.value(r.comparison, lang), rosi=i18n.num(v, lang, 0, percent=True),
                          ci=i18n.interval(r.ci_low, r.ci_high, lang, 0, percent=True),
                          ic=i18n.num(r.intervention_cost_eur, lang, 0), ac=i18n.num(r.avoided_cost_eur, lang, 0),
                          verdict=i18n.t("n_rosi_neg" if v < 0 else "n_rosi_pos", lang)))
    return out


def process_sentences(effects: pd.DataFrame, config: Any, lang: str) -> list[str]:
    if not len(effects):
        return []
    out = []
    for fam, contrast in (("process_frame", "frame_shares"), ("process_teaming", "teaming"), ("prevention", "frame_shares"),
                          ("prevention", "teaming")):
        for o in config.families.get(fam, []):
            r = effect_row(effects, o, contrast)
            if r is None:
                continue
            digits = 0 if ("eur" in o or "days" in o) else 3 if fam == "prevention" else 2
            out.append(i18n.t("n_process", lang, outcome=i18n.outcome(o, lang), contrast=i18n.value(contrast, lang),
                              est=i18n.num(r["estimate"], lang, digits, sign=True),
                              ci=i18n.interval(r["ci_low"], r["ci_high"], lang, digits), p=i18n.pval(r.get("p_value_adj"), lang)))
    return out
