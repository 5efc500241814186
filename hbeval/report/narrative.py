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


def small_pilot_sentence(effects: pd.DataFrame, outcome: str, lang: str, mic: float | None) -> str | None:
    """What a pilot of this size can and cannot show, or ``None`` when its main effects are
    estimated more precisely than the minimal important change (half-width of the 95 % interval
    at most ``mic``).

    Notes
    -----
    The half-width is the larger of the two main effects' ``(ci_high − ci_low) / 2``; the
    sentence says it in points and as a multiple of ``mic``. When neither main effect has an
    interval, the note of the row says why.
    """
    rows = [r for r in (effect_row(effects, outcome, c) for c in ("frame_shares", "teaming")) if r is not None]
    if not rows:
        return None
    hws = [(_f(r["ci_high"]) - _f(r["ci_low"])) / 2 for r in rows]
    hws = [h for h in hws if np.isfinite(h)]
    n = _to_int(rows[0]["n"])
    if not hws:
        note = next((i18n.note(r.get("note"), lang) for r in rows if i18n.note(r.get("note"), lang)), "")
        return i18n.t("n_small_not_estimable", lang, n=n, outcome=i18n.outcome(outcome, lang), note=note or "–")
    hw = max(hws)
    if mic is None or not mic > 0 or hw <= mic:
        return None
    return i18n.t("n_small_pilot", lang, n=n, hw=i18n.num(hw, lang, 1), ratio=i18n.num(hw / mic, lang, 1),
                  mic=i18n.num(mic, lang, 2))


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
    if any(not np.isfinite(_f(v)) for v in vals):  # "<5" or "suppressed": a sum would reveal them
        nums = [int(_f(v)) for v in vals if np.isfinite(_f(v))]
        if not sum(nums):  # "≥0" says nothing: the smallest suppressed count reads better ("<5")
            return next((v for v in vals if v.startswith("<")), "–")
        return f"≥{sum(nums)}"
    return str(int(sum(_f(v) for v in vals)))


def not_analysed_sentence(consort: pd.DataFrame, lang: str) -> str | None:
    """The ``not_analysed`` rows of the CONSORT table by reason (counts over the four cells,
    ``≥k`` when a cell's count is suppressed), or ``None`` when every family with an end score
    was analysed."""
    if not len(consort) or "not_analysed" not in set(consort["stage"]):
        return None
    rows = consort[(consort["stage"] == "not_analysed") & (consort["group"] == "pilot")]
    parts = [f"{i18n.t(str(reason), lang)} {_consort_n(rows, 'not_analysed', reason=str(reason))}"
             for reason in dict.fromkeys(rows["reason"].astype(str))]
    return i18n.t("n_not_analysed", lang, parts="; ".join(parts)) if parts else None


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


# ------------------------------------------------------------------ the sealed analysis plan
def _diagnosis(plan: dict[str, Any] | None) -> pd.DataFrame:
    """The diagnosis table of a sealed plan (empty when it has none)."""
    diag = (plan or {}).get("diagnosis") or {}
    return pd.DataFrame(diag.get("table") or [])


def _plan_id(plan: dict[str, Any], sha: str | None) -> dict[str, str]:
    return {"date": str(plan.get("sealed_on", "–")), "sha": (sha or "–")[:16]}


def power_sentences(plan: dict[str, Any] | None, lang: str, sha: str | None = None, mic: float | None = None) -> list[str]:
    """CONSORT 16a and the factorial item (powered to detect an interaction?) from the diagnosis
    sealed in the analysis plan; one sentence saying there is none otherwise.

    The interaction is "powered" when its MDE (80 % power, α = 0.05) is at most the minimal
    important change (``mic``, else the plan's ``outcomes.mic``), at the largest size diagnosed.
    """
    tab = _diagnosis(plan)
    if plan is None or not len(tab) or "contrast" not in tab:
        return [i18n.t("power_none", lang)]
    par = (plan.get("diagnosis") or {}).get("parameters") or {}
    mic = _f(mic if mic is not None else plan.get("settings", {}).get("outcomes.mic"))
    sizes = sorted({int(v) for v in tab["n_pilot"]})
    out = [i18n.t("power_intro", lang, **_plan_id(plan, sha), sims=_to_int(tab["sims"].iloc[0]),
                  procedure=str(par.get("procedure", "–")), sizes=", ".join(str(s) for s in sizes),
                  sd=i18n.num(par.get("sd"), lang, 2), rho=i18n.num(par.get("rho"), lang, 2),
                  attrition=i18n.num(par.get("attrition"), lang, 0, percent=True))]
    at = tab[tab["n_pilot"] == sizes[-1]]
    for c in ("frame_shares", "teaming"):
        r = at[at["contrast"] == c]
        if len(r):
            r0 = r.iloc[0]
            out.append(i18n.t("power_factor", lang, contrast=i18n.value(c, lang), n=sizes[-1],
                              effect=i18n.num(r0["effect"], lang, 2), power=i18n.num(r0["power"], lang, 0, percent=True),
                              mde=i18n.num(r0["mde"], lang, 2)))
    r = at[at["contrast"] == "frame_shares:teaming"]
    if len(r):
        mde = _f(r.iloc[0]["mde"])
        key = "power_interaction_yes" if not np.isnan(mde) and not np.isnan(mic) and mde <= mic else "power_interaction_no"
        out.append(i18n.t(key, lang, mde=i18n.num(mde, lang, 2), mic=i18n.num(mic, lang, 2)))
    return out


def _dev_item(item: str, lang: str) -> str:
    if item.startswith("outcome "):
        return i18n.t("dev_outcome", lang, o=i18n.outcome(item.removeprefix("outcome "), lang))
    return f"`{item}`"


def _dev_value(item: str, v: Any, lang: str) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "":
        return i18n.t("dev_empty", lang)
    s = str(v)
    if item == "outcomes.primary":
        return i18n.outcome(s, lang)
    if item.startswith("outcome "):
        return i18n.value(s, lang)
    return s


def deviation_sentences(deviations: pd.DataFrame, plan: dict[str, Any] | None, lang: str,
                        sha: str | None = None) -> list[str]:
    """The differences between the sealed analysis plan and the analysis, in words
    (``results/deviations.csv``); one sentence when there is no plan or no difference."""
    if plan is None:
        return [i18n.t("dev_no_plan", lang)]
    if not len(deviations):
        return [i18n.t("dev_none", lang, **_plan_id(plan, sha))]
    out = [i18n.t("dev_intro", lang, **_plan_id(plan, sha), k=len(deviations))]
    for r in deviations.itertuples(index=False):
        item = str(r.item)
        out.append(i18n.t("dev_item", lang, item=_dev_item(item, lang), planned=_dev_value(item, r.planned, lang),
                          actual=_dev_value(item, r.actual, lang)))
    return out


def allocation_sentences(manifest: dict[str, Any], lang: str) -> list[str]:
    """The allocation registry's head and the plan that opened it (``manifest.json``: ``registry``, ``plan``)."""
    reg, plan = manifest.get("registry"), manifest.get("plan")
    if not reg:
        return [i18n.t("alloc_none", lang)]
    out = [i18n.t("alloc_record", lang, schema=reg.get("schema", "–"), seq=reg.get("seq", "–"),
                  receipt=reg.get("receipt", "–"))]
    if plan and plan.get("registry_plan"):
        out.append(i18n.t("alloc_plan", lang, date=plan.get("sealed_on") or "–", sha=str(plan["registry_plan"])[:16]))
    else:
        out.append(i18n.t("alloc_no_plan", lang))
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in esc)]


def _plan_section(plan: dict[str, Any], lang: str) -> list[str]:
    t = lambda key, **kw: i18n.t(key, lang, **kw)  # noqa: E731 - a local shorthand
    s = plan.get("settings", {})
    lines = [f"# {t('plan_title', study=plan.get('study', ''))}", "",
             t("plan_sealed", date=plan.get("sealed_on", "–"), version=plan.get("hbeval_version", "–")), "",
             f"## {t('plan_outcomes')}", ""]
    lines += _md_table([i18n.col("outcome", lang), i18n.col("family", lang)],
                       [[i18n.outcome(o["outcome"], lang) + f" (`{o['outcome']}`)", i18n.value(o["family"], lang)]
                        for o in plan.get("outcomes", [])])
    lines += ["", f"## {t('plan_contrasts')}", "", *(f"- {i18n.value(c, lang)} (`{c}`)" for c in plan.get("contrasts", [])),
              "", f"## {t('plan_estimator')}", "", t("spec_note"), "",
              f"## {t('plan_design')}", "", f"- {t('plan_strata', strata=', '.join(s.get('design.strata') or []) or '–')}",
              f"- {t('plan_procedure', procedure=s.get('design.assignment', '–'))}", "",
              f"## {t('plan_parameters')}", ""]
    lines += _md_table([i18n.col("parameter", lang), i18n.col("value", lang)],
                       [[f"`{k}`", ", ".join(map(str, v)) if isinstance(v, list) else str(v)]
                        for k, v in sorted(s.items()) if k != "outcomes.families"])
    subs = s.get("outcomes.subgroups") or []
    lines += ["", f"## {t('plan_subgroups')}", "", ", ".join(subs) if subs else t("plan_no_subgroups"), "",
              f"## {t('plan_diagnosis')}", ""]
    tab = _diagnosis(plan)
    if not len(tab):
        return [*lines, t("plan_no_diagnosis"), ""]
    lines += [" ".join(power_sentences(plan, lang)[1:]).replace("**", ""), ""]  # [0] names the seal, which the JSON is
    cols = [c for c in ("contrast", "n_pilot", "effect", "power", "mde", "bias", "coverage", "rejection_rate_null") if c in tab]
    rows = [[i18n.value(r[c], lang) if c == "contrast" else str(r[c]) if c == "n_pilot" else i18n.num(r[c], lang, 3)
             for c in cols] for _, r in tab.iterrows()]
    return [*lines, *_md_table([i18n.col(c, lang) for c in cols], rows), ""]


def plan_markdown(plan: dict[str, Any]) -> str:
    """``analysis_plan.md``: the sealed plan in words and tables, in Finnish and then in English."""
    return "\n".join([*_plan_section(plan, "fi"), "---", "", *_plan_section(plan, "en")]).rstrip("\n") + "\n"
