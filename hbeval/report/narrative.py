"""Sentences of the report computed from the result tables (no number typed in by hand).

Each function takes the tidy tables of ``results/`` (as read from CSV) and returns
sentences in the requested language; the templates live in :mod:`hbeval.report.i18n`. When a
table lacks what a sentence needs, the function returns fewer sentences rather than
inventing a number.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from hbeval.report import i18n
from hbeval.study.config import slug

_f = i18n.as_float


def _to_int(x: Any) -> str:
    """A count as text, keeping a suppressed ``<k`` as it is."""
    if isinstance(x, str):
        return x
    v = _f(x)
    return "–" if np.isnan(v) else f"{v:.0f}"


_ADJ = re.compile(r"adj=([A-Za-z_]+)")


def adj_kind(row: Any) -> str:
    """The multiplicity adjustment of a row's ``p_value_adj``, as named in its ``method``
    (``adj=<name>``): ``"wy"`` (Westfall–Young), ``"holm"``, or ``"other"``."""
    m = _ADJ.search(str(row.get("method", "") or ""))
    name = m.group(1).lower() if m else ""
    return "wy" if name.startswith("westfall_young") else "holm" if name.startswith("holm") else "other"


def shown_p(row: Any, adjusted: bool = True) -> tuple[float, str]:
    """The p-value a table cell shows and its kind: the adjusted p (kind ``"wy"``, ``"holm"`` or
    ``"other"``) when ``adjusted`` and the row has one, else the unadjusted p (``"unadj"``).
    :func:`hbeval.report.render.display_effects_matrix` and the sentences beside it use this one rule."""
    if adjusted:
        pa = _f(row.get("p_value_adj"))
        if np.isfinite(pa):
            return pa, adj_kind(row)
    return _f(row.get("p_value")), "unadj"


def p_kind(kind: str, lang: str, short: bool = False) -> str:
    """The words for a p-value of ``kind`` (``"unadj"``, ``"hc2"``, ``"ri"``, ``"wy"``, ``"holm"``, ``"other"``):
    ``"Westfall–Young adjusted p"``, or in a table cell (``short``) ``"WY-adj. p"``."""
    if short:
        return i18n.t("pks_" + ("unadj" if kind in ("unadj", "hc2") else kind if kind != "ri" else "other"), lang)
    return i18n.t("pk_" + kind, lang)


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
    """One contrast on one outcome with its interval and every p-value labelled by kind (unadjusted
    HC2 t, randomisation inference, multiplicity-adjusted by the method named in ``method``)."""
    r = effect_row(effects, outcome, contrast)
    if r is None:
        return None
    est, lo, hi = _f(r["estimate"]), _f(r["ci_low"]), _f(r["ci_high"])
    return i18n.t("n_primary_effect2", lang, contrast=i18n.value(contrast, lang), est=i18n.num(est, lang, 2, sign=True),
                  outcome=i18n.outcome(outcome, lang), ci=i18n.interval(lo, hi, lang), p=i18n.pval(r["p_value"], lang),
                  pri=i18n.pval(r.get("p_value_ri"), lang), padj=i18n.pval(r.get("p_value_adj"), lang), n=_to_int(r["n"]),
                  k_raw=p_kind("hc2", lang), k_ri=p_kind("ri", lang), k_adj=p_kind(adj_kind(r), lang),
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


#: how a process or prevention outcome's difference reads: percentage points, euros, days or as it is
_UNITS = {"budget_accepted_unchanged": "pp", "new_child_welfare_clienthood": "pp", "budget_abs_change_eur": "eur",
          "days_to_confirmation": "days"}


def _unit(outcome: str) -> str:
    if outcome in _UNITS:
        return _UNITS[outcome]
    if outcome.startswith("meetings_"):  # a family had such a meeting (0/1)
        return "pp"
    return "eur" if outcome.endswith("_eur") else "days" if outcome.startswith("days_") else "plain"


def _amount(outcome: str, x: Any, lang: str, sign: bool = True) -> str:
    u = _unit(outcome)
    v = _f(x) * (100 if u == "pp" else 1)
    digits = {"pp": 1, "eur": 0, "days": 1}.get(u, 2)
    return i18n.t(f"u_{u}", lang, est=i18n.num(v, lang, digits, sign=sign))


def _clear(r: pd.Series) -> bool:
    return _f(r["ci_low"]) > 0 or _f(r["ci_high"]) < 0


def _direction(r: pd.Series, what: str, lang: str) -> str:
    lo, hi, est = _f(r["ci_low"]), _f(r["ci_high"]), _f(r["estimate"])
    key = "s_up" if lo > 0 else "s_down" if hi < 0 else "s_flat"
    shown = abs(est) if key != "s_flat" else est
    return i18n.t(key, lang, what=what, est=i18n.num(shown, lang, 2, sign=key == "s_flat"), ci=i18n.interval(lo, hi, lang))


def _summary_changed(eff: pd.DataFrame, consort: pd.DataFrame, config: Any, lang: str) -> str | None:
    primary = config.primary
    parts = []
    for c in ("frame_shares", "teaming"):
        r = effect_row(eff, primary, c)
        if r is not None and np.isfinite(_f(r["estimate"])):
            parts.append(_direction(r, i18n.t(f"s_what_{c}", lang), lang))
    if not parts:
        return None
    # the n of the estimate itself (effects.csv); the CONSORT cells may be suppressed (≥k reads badly here)
    r0 = effect_row(eff, primary, "frame_shares")
    n = _to_int(r0["n"]) if r0 is not None else "–"
    if n == "–" and len(consort):
        cells = [c for c in consort["cell"].astype(str).unique() if "/" in c]
        n = _consort_n(consort[consort["cell"].astype(str).isin(cells)], "analysed")
    both = effect_row(eff, primary, "cell:frame_shares/teaming")
    cell = ("" if both is None or not np.isfinite(_f(both["estimate"])) else
            i18n.t("s_cell", lang, est=i18n.num(both["estimate"], lang, 2, sign=True),
                   ci=i18n.interval(both["ci_low"], both["ci_high"], lang)))
    text = i18n.t("s_changed", lang, outcome=i18n.outcome(primary, lang), n=n, parts=i18n.t("s_and", lang).join(parts),
                  mic=i18n.num(config.mic, lang, 2), cell=cell).rstrip()
    vs = effect_row(eff, primary, "pilot_vs_comparison")
    if vs is not None and np.isfinite(_f(vs["estimate"])):
        text += " " + i18n.t("s_vs_usual", lang, est=i18n.num(vs["estimate"], lang, 2, sign=True),
                             ci=i18n.interval(vs["ci_low"], vs["ci_high"], lang))
    return text


def _summary_prevention(eff: pd.DataFrame, config: Any, lang: str) -> str | None:
    outs = config.families.get("prevention", [])
    if not outs or not len(eff):
        return None
    o = outs[0]
    parts, clear = [], []
    for c in ("frame_shares", "teaming", "pilot_vs_comparison"):
        r = effect_row(eff, o, c)
        if r is None or not np.isfinite(_f(r["estimate"])):
            continue
        what = i18n.t(f"s_prev_what_{c}", lang)
        parts.append(i18n.t("s_prev_part", lang, what=what, est=i18n.num(100 * _f(r["estimate"]), lang, 1, sign=True),
                            ci=i18n.interval(100 * _f(r["ci_low"]), 100 * _f(r["ci_high"]), lang, 1)))
        if _clear(r):
            clear.append(what)
    if not parts:
        return None
    verdict = i18n.t("s_prev_some", lang, what=", ".join(clear)) if clear else i18n.t("s_prev_none", lang)
    return i18n.t("s_prevention", lang, parts="; ".join(parts), verdict=verdict)


def _summary_process(eff: pd.DataFrame, config: Any, lang: str, per_factor: int = 2) -> str | None:
    parts = []
    for fam, c in (("process_frame", "frame_shares"), ("process_teaming", "teaming")):
        found = [(o, effect_row(eff, o, c)) for o in config.families.get(fam, [])]
        rows = [(o, r) for o, r in found if r is not None and np.isfinite(_f(r["estimate"]))]
        if not rows:
            continue
        what = i18n.t(f"s_proc_what_{c}", lang)
        clear = [(o, r) for o, r in rows if _clear(r)]
        if not clear:
            parts.append(i18n.t("s_process_none", lang, what=what))
            continue
        items = [f"{i18n.outcome(o, lang).lower()} {_amount(o, r['estimate'], lang)}" for o, r in clear[:per_factor]]
        if len(clear) > per_factor:
            items.append(i18n.t("s_more", lang, k=len(clear) - per_factor))
        parts.append(i18n.t("s_process_factor", lang, what=what, items=", ".join(items)))
    if not parts:
        return None
    text = "; ".join(parts)
    return i18n.t("s_process", lang, parts=text[:1].upper() + text[1:])


def _summary_cost(results: dict[str, pd.DataFrame], config: Any, lang: str) -> str | None:
    costs, diff = results.get("costs", pd.DataFrame()), results.get("cost_differences", pd.DataFrame())
    d = _cost_diff(diff, "pilot_vs_comparison")
    if d is None:
        return costs_sentence(costs, config, lang)
    parts = []
    for c in ("frame_shares", "teaming"):
        x = _cost_diff(diff, c)
        if x is not None:
            parts.append(i18n.t("s_cost_part", lang, what=i18n.t(f"s_cost_what_{c}", lang),
                                d=i18n.num(x["difference_eur"], lang, 0, sign=True),
                                ci=i18n.interval(x["ci_low"], x["ci_high"], lang, 0)))
    return i18n.t("s_cost", lang, pilot=i18n.num(d["mean_a_eur"], lang, 0), comp=i18n.num(d["mean_b_eur"], lang, 0),
                  diff=i18n.num(d["difference_eur"], lang, 0, sign=True), ci=i18n.interval(d["ci_low"], d["ci_high"], lang, 0),
                  n_a=_to_int(d["n_a"]), n_b=_to_int(d["n_b"]), parts="; ".join(parts) or "–")


def _summary_payback(results: dict[str, pd.DataFrame], config: Any, lang: str) -> str | None:
    rosi = results.get("rosi", pd.DataFrame())
    main = rosi_sentences(rosi, lang, comparisons=("pilot vs comparison",))
    if not main:
        return None
    horizon = rosi_horizon_sentence(results.get("rosi_sensitivity", pd.DataFrame()), rosi, lang, short=True) or ""
    cea = results.get("cea", pd.DataFrame())
    r = _fieller_row(cea, "pilot_vs_comparison") if len(cea) else None
    ceatext = ""
    if r is not None:
        wtp = float(config.wtp_reference_eur)
        prob = r.get("prob_cost_effective")
        ceac = results.get("ceac", pd.DataFrame())
        if len(ceac):
            cc = ceac[(ceac["contrast"] == "pilot_vs_comparison") & (pd.to_numeric(ceac["wtp_eur"], errors="coerce") == wtp)]
            prob = cc["prob_cost_effective"].iloc[0] if len(cc) else prob
        if np.isfinite(_f(prob)):
            ceatext = i18n.t("s_cea", lang, wtp=i18n.num(wtp, lang, 0), prob=_share(prob, lang))
    return i18n.t("s_payback", lang, rosi=main[0], horizon=horizon, cea=ceatext).rstrip()


def _summary_sure(results: dict[str, pd.DataFrame], config: Any, lang: str, plan: dict[str, Any] | None) -> str:
    attr = results.get("attrition", pd.DataFrame())
    atext = ""
    if len(attr) and "section" in attr:
        rates = attr[attr["section"] == "rate"]
        allr = rates[rates["cell"] == "all"]
        cellr = pd.to_numeric(rates[rates["cell"] != "all"]["attrition_rate"], errors="coerce")
        if len(allr):
            atext = i18n.t("s_attr", lang, rate=i18n.num(allr["attrition_rate"].iloc[0], lang, 1, percent=True),
                           range=i18n.interval(cellr.min(), cellr.max(), lang, 1, percent=True))
    r = effect_row(results.get("effects", pd.DataFrame()), config.primary, "frame_shares:teaming")
    itext = "" if r is None or not np.isfinite(_f(r["estimate"])) else i18n.t(
        "s_inter_clear" if _clear(r) else "s_inter", lang, est=i18n.num(r["estimate"], lang, 2, sign=True),
        ci=i18n.interval(r["ci_low"], r["ci_high"], lang))
    comp = results.get("comparison", pd.DataFrame())
    p = comp[comp["section"] == "placebo"] if len(comp) and "section" in comp else pd.DataFrame()
    if len(p):
        ok = not (_f(p["ci_low"].iloc[0]) > 0 or _f(p["ci_high"].iloc[0]) < 0)
        ptext = i18n.t("s_placebo_ok" if ok else "s_placebo_bad", lang)
    else:
        ptext = i18n.t("s_placebo_none", lang)
    dev = results.get("deviations")
    if plan is None:
        ptext2 = i18n.t("s_plan_none", lang)
    elif dev is not None and len(dev):
        ptext2 = i18n.t("s_plan_dev", lang, k=len(dev))
    else:
        ptext2 = i18n.t("s_plan_ok", lang)
    return " ".join(i18n.t("s_sure", lang, attr=atext, inter=itext, placebo=ptext, plan=ptext2).split())


def executive_summary(results: dict[str, pd.DataFrame], config: Any, lang: str = "en",
                      plan: dict[str, Any] | None = None) -> list[str]:
    """The steering group's summary, one bullet per question: what was tested; what changed for families
    (primary outcome, prevention, process); what it cost; whether it paid back and under which assumption
    that changes; how sure we are. Every number comes from ``results`` (the tables of ``results/``).

    ``results`` holds ``effects``, ``consort``, ``costs``, ``cost_differences``, ``cea``, ``ceac``, ``rosi``,
    ``rosi_sensitivity``, ``attrition``, ``comparison`` and ``deviations``; missing tables leave their
    bullet out (or fall back to the plainer sentence), never a number typed in.
    """
    eff = results.get("effects", pd.DataFrame())
    consort = results.get("consort", pd.DataFrame())
    out: list[str] = []
    if len(consort):
        cells = [c for c in consort["cell"].astype(str).unique() if "/" in c]
        c4 = consort[consort["cell"].astype(str).isin(cells)]
        out.append(i18n.t("s_tested", lang, n_alloc=_consort_n(c4, "allocated"),
                          n_comp=_consort_n(consort, "assessed", "comparison")))
    for s in (_summary_changed(eff, consort, config, lang), _summary_prevention(eff, config, lang),
              _summary_process(eff, config, lang), _summary_cost(results, config, lang),
              _summary_payback(results, config, lang)):
        if s:
            out.append(s)
    versions = rosi_sentences(results.get("rosi", pd.DataFrame()), lang,
                              comparisons=("frame_shares vs frame_only", "teaming vs no_teaming"))
    if versions:
        out.append(i18n.t("s_versions", lang, parts=" ".join(versions)))
    if len(eff) or len(consort):
        out.append(_summary_sure(results, config, lang, plan))
    return out


def interaction_sentences(effects: pd.DataFrame, outcome: str, lang: str) -> list[str]:
    """The interaction in words: estimate, interval, the p-value the interaction table shows (labelled by
    its kind) and the unadjusted one; then how to read the margins."""
    r = effect_row(effects, outcome, "frame_shares:teaming")
    if r is None:
        return []
    lo, hi = _f(r["ci_low"]), _f(r["ci_high"])
    clear = i18n.t("n_clear" if (lo > 0 or hi < 0) else "n_unclear", lang)
    p_shown, kind = shown_p(r)
    s = [i18n.t("n_interaction2", lang, est=i18n.num(r["estimate"], lang, 2, sign=True), ci=i18n.interval(lo, hi, lang),
                padj=i18n.pval(p_shown, lang), k_adj=p_kind(kind, lang), p=i18n.pval(r["p_value"], lang),
                k_raw=p_kind("hc2", lang), clear=clear)]
    if kind == "unadj":  # no adjusted p: say the unadjusted one once
        s[0] = s[0].replace(f", {p_kind('hc2', lang)} = {i18n.pval(r['p_value'], lang)}", "")
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


def _matrix_rows(effects: pd.DataFrame, outcomes: list[str], contrasts: tuple[str, ...]) -> pd.DataFrame:
    """The rows a table of :func:`hbeval.report.render.display_effects_matrix` shows: the primary
    specification (``spec``), one row per outcome and contrast, estimated (finite estimate)."""
    if not len(effects):
        return effects
    d = effects[effects["spec"].isin(["primary", "non_randomised"])].drop_duplicates(["outcome", "contrast"])
    d = d[d["outcome"].isin(outcomes) & d["contrast"].isin(contrasts)]
    return d[pd.to_numeric(d["estimate"], errors="coerce").notna()]


def secondary_sentence(effects: pd.DataFrame, config: Any, lang: str) -> str | None:
    """How many secondary outcomes and contrasts the secondary table shows, and how many of them have
    the p-value the table shows (adjusted, labelled by its method) below 0.05: counted on the same rows."""
    sec = config.families.get("secondary", [])
    if not len(effects) or not sec:
        return None
    d = _matrix_rows(effects, sec, ("frame_shares", "teaming", "frame_shares:teaming"))
    if not len(d):
        return None
    shown = [shown_p(r) for _, r in d.iterrows()]
    kinds = list(dict.fromkeys(k for _, k in shown))
    kind = kinds[0] if len(kinds) == 1 else "other"
    s = sum(1 for p, _ in shown if p < 0.05)
    return (i18n.t("n_secondary2", lang, k=d["outcome"].nunique(), c=len(d), s=s, kind=p_kind(kind, lang)) + " "
            + i18n.t("p_legend", lang))


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
                  var=i18n.variable(top, lang), p_frame=p_of("frame_shares", "joint_f"), p_team=p_of("teaming", "joint_f"),
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


def _fieller_row(cea: pd.DataFrame, contrast: str) -> pd.Series | None:
    s = cea[cea["contrast"] == contrast] if len(cea) else cea
    if not len(s):
        return None
    f = s[s["ci_method"] == "fieller"] if "ci_method" in s else s
    return (f if len(f) else s).iloc[0]


def _share(x: Any, lang: str) -> str:
    return i18n.num(x, lang, 0, percent=True)


def cea_sentences(cea: pd.DataFrame, ceac: pd.DataFrame, config: Any, lang: str,
                  contrasts: tuple[str, ...] = ("frame_shares", "teaming", "frame_shares:teaming", "pilot_vs_comparison")
                  ) -> list[str]:
    """ΔC and ΔE of each contrast with their intervals and a verdict only where the intervals support it.

    Notes
    -----
    "Dominates" needs the whole ΔC interval below 0 and the whole ΔE interval above 0 ("dominated" the
    reverse); a point estimate in the north-east or south-west quadrant gets its ICER and Fieller
    interval; otherwise the sentence gives the share of bootstrap replicates in each quadrant instead of a
    verdict. The share of replicates with a positive net benefit at the reference willingness to pay comes
    from ``ceac.csv``. The interaction is not a programme: it gets its ΔC and ΔE, never a quadrant, ICER or
    acceptability (:func:`cea_interaction_sentence`).
    """
    if not len(cea):
        return []
    out = []
    wtp = float(config.wtp_reference_eur)
    for c in contrasts:
        r = _fieller_row(cea, c)
        if r is None:
            continue
        if c == "frame_shares:teaming":
            out.append(cea_interaction_sentence(r, lang))
            continue
        dcl, dch = _f(r.get("delta_cost_ci_low")), _f(r.get("delta_cost_ci_high"))
        del_, deh = _f(r.get("delta_effect_ci_low")), _f(r.get("delta_effect_ci_high"))
        q = str(r.get("quadrant", ""))
        if dch < 0 and del_ > 0:
            verdict = i18n.t("c_dominates", lang)
        elif dcl > 0 and deh < 0:
            verdict = i18n.t("c_dominated", lang)
        elif q in ("NE", "SW") and np.isfinite(_f(r.get("icer"))):
            lo, hi = _f(r.get("icer_ci_low")), _f(r.get("icer_ci_high"))
            verdict = (i18n.t("c_icer", lang, icer=i18n.num(r["icer"], lang, 0), ci=i18n.interval(lo, hi, lang, 0))
                       if np.isfinite(lo) and np.isfinite(hi) else i18n.t("c_icer_open", lang, icer=i18n.num(r["icer"], lang, 0)))
        else:
            verdict = i18n.t("c_shares", lang, se=_share(r.get("share_se"), lang), ne=_share(r.get("share_ne"), lang),
                             sw=_share(r.get("share_sw"), lang), nw=_share(r.get("share_nw"), lang))
        prob = r.get("prob_cost_effective")
        if len(ceac):
            cc = ceac[(ceac["contrast"] == c) & (pd.to_numeric(ceac["wtp_eur"], errors="coerce") == wtp)]
            if len(cc):
                prob = cc["prob_cost_effective"].iloc[0]
        ptext = i18n.t("c_prob", lang, wtp=i18n.num(wtp, lang, 0), prob=_share(prob, lang)) if np.isfinite(_f(prob)) else ""
        out.append(i18n.t("c_sentence", lang, contrast=i18n.value(c, lang), dc=i18n.num(r["delta_cost_eur"], lang, 0, sign=True),
                          dcci=i18n.interval(dcl, dch, lang, 0), de=i18n.num(r["delta_effect"], lang, 2, sign=True),
                          deci=i18n.interval(del_, deh, lang), verdict=verdict, prob=ptext).rstrip())
    return out


def cea_interaction_sentence(r: pd.Series, lang: str) -> str:
    """The interaction's ΔC and ΔE, reported as an interaction (no quadrant, ICER or CEAC)."""
    return i18n.t("c_interaction", lang, dc=i18n.num(r["delta_cost_eur"], lang, 0, sign=True),
                  dcci=i18n.interval(r.get("delta_cost_ci_low"), r.get("delta_cost_ci_high"), lang, 0),
                  de=i18n.num(r["delta_effect"], lang, 2, sign=True),
                  deci=i18n.interval(r.get("delta_effect_ci_low"), r.get("delta_effect_ci_high"), lang))


def _cost_diff(diff: pd.DataFrame, contrast: str) -> pd.Series | None:
    """The follow-up total of one contrast in ``cost_differences.csv`` (the headline cost figure)."""
    if not len(diff):
        return None
    d = diff[(diff["contrast"] == contrast) & (diff["category"] == "total")]
    if "period" in d:
        d = d[d["period"] == "follow_up"]
    return d.iloc[0] if len(d) else None


def cea_reconcile_sentence(cea: pd.DataFrame, diff: pd.DataFrame, effects: pd.DataFrame, primary: str,
                           lang: str) -> str | None:
    """Why ΔC and ΔE of the CEA differ from the headline cost differences (``cost_differences.csv``) and
    the headline effect against the comparison group (``effects.csv``): population and adjustment."""
    r = _fieller_row(cea, "frame_shares")
    if r is None or not len(diff):
        return None
    parts = []
    for c in ("pilot_vs_comparison", "frame_shares", "teaming"):
        d = _cost_diff(diff, c)
        if d is not None:
            parts.append(i18n.t("c_reconcile_part", lang, what=i18n.value(c, lang),
                                d=i18n.num(d["difference_eur"], lang, 0, sign=True)))
    e = effect_row(effects, primary, "pilot_vs_comparison")
    rc = _fieller_row(cea, "pilot_vs_comparison")
    return i18n.t("c_reconcile", lang, n=_to_int(r.get("n")), nc="–" if rc is None else _to_int(rc.get("n")),
                  parts="; ".join(parts),
                  eff="–" if e is None else i18n.num(e["estimate"], lang, 2, sign=True),
                  nr="–" if e is None else _to_int(e["n"]))


def _rosi_label(comparison: str, lang: str) -> str:
    return i18n.t("r_label_r" if _randomised(comparison) else "r_label_nr", lang)


#: the ``comparison`` suffix of the multiple-imputation rows of ``rosi.csv`` (hbeval.economics.rosi.MI_SUFFIX)
MI_SUFFIX = " (multiple imputation)"
_SUFFIX = re.compile(r"^(.*?)(?: \((.+)\))?$")


def comparison_label(comparison: str, lang: str) -> str:
    """The label of a ``rosi.csv`` comparison: a factor contrast named once ("Frame + shares vs frame only",
    never "… vs frame only vs Frame only"), an arm against the comparison group, and a trailing
    ``(multiple imputation)`` or other qualifier kept, translated when it has a label."""
    base, qual = _SUFFIX.match(str(comparison)).groups()  # type: ignore[union-attr]
    if base.endswith(" vs comparison") and base != "pilot vs comparison":
        label = f"{i18n.value(base.removesuffix(' vs comparison'), lang)} vs {i18n.value('comparison group', lang)}"
    else:
        label = i18n.value(base, lang)
    return f"{label} ({i18n.value(qual, lang)})" if qual else label


def _rosi_name(comparison: str, lang: str) -> str:
    """The comparison's label without a "(not randomised)" that the sentence adds itself."""
    return comparison_label(comparison, lang).replace(f" ({i18n.t('r_label_nr', lang)})", "")


def _randomised(comparison: str) -> bool:
    base = _SUFFIX.match(str(comparison)).group(1)  # type: ignore[union-attr]
    return not base.endswith(" vs comparison")


_SHARE = re.compile(r"(\d+(?:\.\d+)?) % of replicates have a non-positive")


def rosi_sentences(rosi: pd.DataFrame, lang: str, comparisons: tuple[str, ...] | None = None) -> list[str]:
    """ROSI per comparison, labelled randomised or not, with a verdict only when its interval supports it.

    Notes
    -----
    No ROSI is given as a number when the extra intervention cost (its denominator) is not positive, or
    when its bootstrap interval includes zero (``rosi.csv`` then has no interval and ``rosi_note`` gives the
    share of replicates with a non-positive denominator): a ratio over a denominator that may be zero can
    take any sign and size. "Pays back" needs the whole interval above 0 %, "does not pay back" the
    whole interval below.
    """
    if not len(rosi):
        return []
    out = []
    mi_same = False
    by_name = {str(c): r for c, r in zip(rosi["comparison"], rosi.itertuples(index=False))}
    for r in rosi.itertuples(index=False):
        if comparisons is not None and r.comparison not in comparisons:
            continue
        name, label = _rosi_name(r.comparison, lang), _rosi_label(r.comparison, lang)
        note = str(getattr(r, "rosi_note", "") or "")
        note = "" if note == "nan" else note
        v, ic, ac = _f(r.rosi), _f(r.intervention_cost_eur), _f(r.avoided_cost_eur)
        lo, hi = _f(r.ci_low), _f(r.ci_high)
        base = by_name.get(str(r.comparison).removesuffix(MI_SUFFIX)) if str(r.comparison).endswith(MI_SUFFIX) else None
        if base is not None:  # a multiple-imputation row: said once when it repeats its complete-case row
            same = all(np.allclose(_f(getattr(base, c)), _f(getattr(r, c)), equal_nan=True)
                       for c in ("rosi", "ci_low", "ci_high", "intervention_cost_eur"))
            if same or (np.isnan(v) and "not computed" in note):
                mi_same = mi_same or same
                if not same:
                    out.append(i18n.t("r_mi_not_computed", lang, comparison=name))
                continue
        if note.startswith("suppressed"):
            out.append(i18n.t("r_suppressed", lang, comparison=name))
        elif np.isnan(v) or ic <= 0:
            out.append(i18n.t("r_undefined", lang, comparison=name, label=label, ic=i18n.num(ic, lang, 0, sign=True)))
        elif np.isnan(lo) or np.isnan(hi):
            m = _SHARE.search(note)
            if m:
                out.append(i18n.t("r_unstable", lang, comparison=name, label=label, ic=i18n.num(ic, lang, 0, sign=True),
                                  ac=i18n.num(ac, lang, 0, sign=True), share=i18n.num(float(m.group(1)) / 100, lang, 1,
                                                                                   percent=True)))
            else:
                out.append(i18n.t("r_unstable_noshare", lang, comparison=name, label=label, ic=i18n.num(ic, lang, 0, sign=True)))
        else:
            verdict = i18n.t("r_neg" if hi < 0 else "r_pos" if lo > 0 else "r_unclear", lang)
            out.append(i18n.t("r_value", lang, comparison=name, label=label, rosi=i18n.num(v, lang, 0, percent=True),
                              ci=i18n.interval(lo, hi, lang, 0, percent=True), ic=i18n.num(ic, lang, 0),
                              ac=i18n.num(ac, lang, 0), verdict=verdict))
    if mi_same:
        out.append(i18n.t("r_mi_same", lang))
    return out


def rosi_horizon_sentence(sens: pd.DataFrame, rosi: pd.DataFrame, lang: str, comparison: str = "pilot vs comparison",
                          short: bool = False) -> str | None:
    """The horizon sensitivity of one comparison's ROSI (``rosi_sensitivity.csv``, parameter
    ``horizon_years``): ROSI at the longest horizon against the base one. ``None`` when the table has no such
    row or when its ROSI is not reported as a number (see :func:`rosi_sentences`)."""
    if not len(sens) or not len(rosi):
        return None
    base = rosi[rosi["comparison"] == comparison]
    if not len(base) or np.isnan(_f(base["ci_low"].iloc[0])) or np.isnan(_f(base["rosi"].iloc[0])):
        return None
    h = sens[(sens["comparison"] == comparison) & (sens["parameter"] == "horizon_years")]
    if not len(h):
        return None
    h0 = h.iloc[0]
    if _f(h0["high_value"]) == _f(h0["base_value"]):
        return None
    fields = dict(h=i18n.num(h0["high_value"], lang, 0), h0=i18n.num(h0["base_value"], lang, 0),
                  hi=i18n.num(h0["rosi_at_high"], lang, 0, sign=True, percent=True))
    if short:
        return i18n.t("r_horizon_short", lang, **fields)
    return i18n.t("r_horizon", lang, **fields, base=i18n.num(h0["rosi_base"], lang, 0, percent=True),
                  dr=i18n.num(base["discount_rate"].iloc[0], lang, 1, percent=True), comparison=_rosi_name(comparison, lang))


def _category(c: str, lang: str) -> str:
    return i18n.value("cost:teaming" if c == "teaming" else c, lang)


def rosi_method_sentence(config: Any, rosi: pd.DataFrame, lang: str) -> str:
    """How ROSI is computed, with the study's cost categories (their labels, never a contrast's) and
    SROI adjustments; the avoided categories are those ``rosi.csv`` names."""
    ic = ", ".join(_category(c, lang) for c in config.intervention_categories)
    acs = str(rosi["avoided_categories"].iloc[0]) if len(rosi) and "avoided_categories" in rosi else ""
    ac = ", ".join(_category(c, lang) for c in acs.split("+") if c and c != "nan") or "–"
    return i18n.t("r_method", lang, py=config.price_year, ic=ic, ac=ac, dw=i18n.num(config.deadweight, lang, 2),
                  at=i18n.num(config.attribution, lang, 2), dp=i18n.num(config.displacement, lang, 2),
                  do=i18n.num(config.drop_off, lang, 2), dr=i18n.num(config.discount_rate, lang, 1, percent=True),
                  h=config.horizon_years)


def rosi_reconcile_sentence(rosi: pd.DataFrame, diff: pd.DataFrame, lang: str) -> str | None:
    """Why the ROSI's net cost per HB family differs from the headline extra cost (``cost_differences.csv``)."""
    r = rosi[rosi["comparison"] == "pilot vs comparison"] if len(rosi) else rosi
    d = _cost_diff(diff, "pilot_vs_comparison")
    if not len(r) or d is None:
        return None
    ic, ac = _f(r["intervention_cost_eur"].iloc[0]), _f(r["avoided_cost_eur"].iloc[0])
    if np.isnan(ic) or np.isnan(ac):
        return None
    return i18n.t("r_reconcile", lang, ic=i18n.num(ic, lang, 0), ac=i18n.num(ac, lang, 0), net=i18n.num(ic - ac, lang, 0),
                  head=i18n.num(d["difference_eur"], lang, 0, sign=True))


def process_sentences(effects: pd.DataFrame, config: Any, lang: str) -> list[str]:
    """Each process outcome on its own factor and the prevention outcome on both, with the p-value
    the process table shows, labelled by its kind."""
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
            p, kind = shown_p(r)
            out.append(i18n.t("n_process2", lang, outcome=i18n.outcome(o, lang), contrast=i18n.value(contrast, lang),
                              est=i18n.num(r["estimate"], lang, digits, sign=True),
                              ci=i18n.interval(r["ci_low"], r["ci_high"], lang, digits), p=i18n.pval(p, lang),
                              kind=p_kind(kind, lang)))
    return out


# ------------------------------------------------------------------ the sealed analysis plan
def _diagnosis(plan: dict[str, Any] | None) -> pd.DataFrame:
    """The diagnosis table of a sealed plan (empty when it has none)."""
    diag = (plan or {}).get("diagnosis") or {}
    return pd.DataFrame(diag.get("table") or [])


def _plan_id(plan: dict[str, Any], sha: str | None) -> dict[str, str]:
    return {"date": str(plan.get("sealed_on", "–")), "sha": (sha or "–")[:16]}


def procedure_label(procedure: Any, lang: str) -> str:
    """An assignment procedure (``[design] assignment``) named in ``lang``, with its code in the plan's words."""
    key = f"procedure_{procedure}"
    return i18n.t(key, lang) if key in i18n.STRINGS else str(procedure or "–")


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
                  procedure=procedure_label(par.get("procedure"), lang), sizes=", ".join(str(s) for s in sizes),
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


def allocation_sentences(manifest: dict[str, Any], lang: str, config: Any = None) -> list[str]:
    """The allocation procedure and its concealment, from the registry (``manifest.json``: ``registry``, the
    head the analysis saw; ``plan``) and the study's design settings: the procedure (batch or sequential),
    the strata, the keyed hash chain, the head digest and receipt, who holds the key, and the plan that
    opened the registry. One sentence when the study supplied its own assignments."""
    reg, plan = manifest.get("registry"), manifest.get("plan")
    if not reg:
        return [i18n.t("alloc_none", lang)]
    out = []
    if config is not None:
        strata = ", ".join(i18n.col(s, lang).lower() for s in config.strata) or "–"
        method = str(config.assignment_method)
        if method == "blocks":
            out.append(i18n.t("alloc_blocks", lang, strata=strata, sizes=", ".join(str(b) for b in config.block_sizes)))
        elif method == "minimisation":
            out.append(i18n.t("alloc_minimisation", lang, strata=strata, p=i18n.num(config.minimisation_p, lang, 2)))
        else:
            out.append(i18n.t("alloc_batch", lang, strata=strata))
    out.append(i18n.t("alloc_chain", lang, schema=reg.get("schema", "–"), seq=reg.get("seq", "–"),
                      head=str(reg.get("head", "–"))[:20] + "…", receipt=reg.get("receipt", "–")))
    if config is not None:
        out.append(i18n.t("alloc_key_file", lang, file=config.allocation_key_file) if config.allocation_key_file
                   else i18n.t("alloc_key_env", lang, env=config.allocation_key_env))
    if plan and plan.get("registry_plan"):
        out.append(i18n.t("alloc_plan", lang, date=plan.get("sealed_on") or "–", sha=str(plan["registry_plan"])[:16]))
    else:
        out.append(i18n.t("alloc_no_plan", lang))
    return out


def repro_sentence(manifest: dict[str, Any], lang: str, fallback_out: str = "OUT") -> str:
    """Appendix C's command: ``hbeval verify`` on the output folder as the user named it (from the command
    recorded in ``manifest.json``; ``hbeval report`` without ``--out`` writes ``reports/<study slug>``), never
    the temporary folder the report was built in; and the study folder as given."""
    cmd = [str(c) for c in manifest.get("command") or []]
    user = len(cmd) >= 3 and cmd[0] == "hbeval" and cmd[1] in ("report", "analyze")
    if "--out" in cmd[:-1]:
        out = cmd[cmd.index("--out") + 1]
    elif user and cmd[1] == "report":
        out = f"reports/{slug(str((manifest.get('parameters') or {}).get('name', '')))}"
    else:
        out = fallback_out
    study = cmd[2] if user else str(manifest.get("study", "–"))
    return i18n.t("repro_note2", lang, out=out, study=study)


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
              f"- {t('plan_procedure', procedure=procedure_label(s.get('design.assignment'), lang))}", "",
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
