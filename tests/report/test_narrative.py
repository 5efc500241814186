"""The report's words for its numbers (issue 14, part A): p-values labelled by kind, counts taken from
the rows the tables show, honest economics wording, one headline per quantity, the allocation
procedure from the registry, the reproducibility command and the steering group's summary."""

from __future__ import annotations

import re
import types

import numpy as np
import pandas as pd
import pytest

from hbeval.report import i18n, narrative
from hbeval.report import render as R

WY = "ancova_hc2; ri=10000 re-randomisations (batch procedure, within strata); adj=westfall_young_stepdown_maxT within family"
WY_END = "ancova_hc2_no_baseline; ri=10000 re-randomisations (batch procedure, within strata); adj=westfall_young_stepdown_maxT within family"
LIN = "lin_centred_interaction_hc2; adj=holm within family"
CONTRASTS = ("frame_shares", "teaming", "frame_shares:teaming")


def _row(outcome, contrast, est, lo, hi, p, padj, family="secondary", method=WY, spec="primary", n=300, pri=None):
    return {"family": family, "outcome": outcome, "contrast": contrast, "estimate": est, "std_error": 0.1, "ci_low": lo,
            "ci_high": hi, "p_value": p, "p_value_ri": padj if pri is None else pri, "p_value_adj": padj, "n": n,
            "method": method, "spec": spec, "note": None}


def _effects() -> pd.DataFrame:
    rows = [
        _row("kykyviisari_total", "frame_shares", 0.31, 0.11, 0.52, 0.002, 0.003, family="primary"),
        _row("kykyviisari_total", "teaming", 0.42, 0.22, 0.62, 0.00005, 0.0002, family="primary"),
        _row("kykyviisari_total", "frame_shares:teaming", 0.17, -0.23, 0.57, 0.4005, 0.4208, family="primary"),
        _row("kykyviisari_total", "cell:frame_shares/teaming", 0.73, 0.44, 1.01, 1e-6, 1e-4, family="primary"),
        _row("kykyviisari_total", "frame_shares:teaming", 0.18, -0.24, 0.58, 0.41, 0.41, family="primary", method=LIN,
             spec="robustness"),
        _row("kykyviisari_total", "pilot_vs_comparison", 0.709, 0.572, 0.846, 1e-20, np.nan, family="primary",
             method="dr_att_ipw_regression (not randomised)", spec="non_randomised", n=769),
        # secondary: kompassi_total has all three; satisfaction_total is measured at the end only (another method)
        _row("kompassi_total", "frame_shares", 0.14, 0.02, 0.26, 0.0195, 0.176),
        _row("kompassi_total", "teaming", 0.23, 0.11, 0.35, 0.0003, 0.0031),
        _row("kompassi_total", "frame_shares:teaming", 0.05, -0.19, 0.29, 0.69, 0.99),
        _row("satisfaction_total", "frame_shares", 0.07, -0.02, 0.16, 0.13, 0.59, method=WY_END),
        _row("satisfaction_total", "teaming", 0.27, 0.18, 0.36, 1e-8, 0.0001, method=WY_END),
        _row("satisfaction_total", "frame_shares:teaming", -0.04, -0.22, 0.14, 0.66, 0.99, method=WY_END),
        _row("kompassi_terveys", "frame_shares", np.nan, np.nan, np.nan, np.nan, np.nan),  # not estimable: not shown
        # prevention and process
        _row("new_child_welfare_clienthood", "frame_shares", -0.0006, -0.063, 0.062, 0.98, 0.97, family="prevention"),
        _row("new_child_welfare_clienthood", "teaming", -0.0587, -0.1205, 0.0031, 0.06, 0.07, family="prevention"),
        _row("new_child_welfare_clienthood", "pilot_vs_comparison", -0.021, -0.064, 0.022, 0.33, np.nan,
             family="prevention", method="dr_att", spec="non_randomised"),
        _row("budget_accepted_unchanged", "frame_shares", 0.1666, 0.0715, 0.2617, 0.0006, 0.0007, family="process_frame"),
        _row("days_to_confirmation", "frame_shares", -3.97, -5.67, -2.27, 1e-5, 1e-4, family="process_frame"),
        _row("meetings_before_start", "teaming", 0.935, 0.90, 0.97, 1e-100, 1e-4, family="process_teaming"),
    ]
    return pd.DataFrame(rows)


CFG = types.SimpleNamespace(
    primary="kykyviisari_total", mic=1.0, price_year=2024, wtp_reference_eur=1000.0,
    families={"secondary": ["kompassi_total", "satisfaction_total", "kompassi_terveys"],
              "process_frame": ["budget_accepted_unchanged", "days_to_confirmation"],
              "process_teaming": ["meetings_before_start"], "prevention": ["new_child_welfare_clienthood"]},
    strata=("site", "service_line"), assignment_method="batch", block_sizes=(4, 8), minimisation_p=0.8,
    allocation_key_env="HBEVAL_ALLOCATION_KEY", allocation_key_file=None, intervention_categories=(
        "budget_spending", "staff_time", "teaming"), deadweight=0.0, attribution=0.0, displacement=0.0, drop_off=0.0,
    discount_rate=0.035, horizon_years=1)


# ------------------------------------------------------------------ p-values by kind
def test_the_adjustment_is_named_from_the_method():
    e = _effects()
    assert narrative.adj_kind(e.iloc[0]) == "wy"
    assert narrative.adj_kind(e.iloc[4]) == "holm"
    assert narrative.adj_kind(e.iloc[5]) == "other"
    assert narrative.shown_p(e.iloc[2]) == (0.4208, "wy")
    assert narrative.shown_p(e.iloc[2], adjusted=False) == (0.4005, "unadj")
    assert narrative.shown_p(e.iloc[5]) == (1e-20, "unadj")  # no adjusted p: the unadjusted one, labelled so


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_no_table_cell_shows_a_bare_p(lang):
    e = _effects()
    m = R.display_effects_matrix(e, ["kompassi_total", "satisfaction_total"], R.RANDOMISED, lang)
    cells = [c for col in m.columns[1:] for c in m[col]]
    assert all(re.search(r"; (WY-adj\.|WY-korj\.) p ", c) for c in cells), cells
    lin = R.display_effects_matrix(e[e["spec"] == "robustness"], ["kykyviisari_total"], R.RANDOMISED, lang,
                                   adjusted=False, primary_only=False)
    assert (narrative.p_kind("unadj", lang, short=True) + " 0" + (",410" if lang == "fi" else ".410")) in " ".join(
        lin.iloc[0].astype(str))
    prim = R.display_primary_effects(e, "kykyviisari_total", lang)
    assert {"p_unadj", "p_value_ri", "p_adj_wy"} <= set(prim.columns) and "p_value" not in prim.columns
    assert i18n.col("p_adj_wy", lang).startswith("p (Westfall–Young")


def test_the_interaction_text_gives_the_p_the_table_shows():
    e = _effects()
    text = " ".join(narrative.interaction_sentences(e, "kykyviisari_total", "en"))
    cell = R.display_effects_matrix(e, ["kykyviisari_total"], ("frame_shares:teaming",), "en").iloc[0, 1]
    assert "Westfall–Young adjusted p = 0.421" in text and "WY-adj. p 0.421" in cell
    assert "unadjusted HC2 t-test p = 0.401" in text  # the other kind, named as such


def test_the_primary_sentence_names_every_kind_of_p():
    s = narrative.effect_sentence(_effects(), "kykyviisari_total", "frame_shares", "en", mic=1.0)
    assert "unadjusted HC2 t-test p = 0.002" in s and "randomisation-inference p = 0.003" in s
    assert "Westfall–Young adjusted p = 0.003" in s


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_the_secondary_sentence_counts_the_rows_the_table_shows(lang):
    """An end-only outcome (another ``method``) counts; an outcome that could not be estimated does not."""
    e = _effects()
    table = R.display_effects_matrix(e, CFG.families["secondary"], R.RANDOMISED, lang)
    cells = [c for col in table.columns[1:] for c in table[col] if c not in ("–", i18n.t("not_estimable_cell", lang))]
    sig = [c for c in cells if float(re.search(r"p (<?[\d,.]+)$", c).group(1).lstrip("<").replace(",", ".")) < 0.05]
    s = narrative.secondary_sentence(e, CFG, lang)
    assert len(cells) == 6 and len(sig) == 2
    if lang == "en":
        assert "shows 2 secondary outcomes and 6 estimated contrasts" in s and "; 2 of them have Westfall–Young" in s
    else:
        assert "on 2 toissijaista tulosmuuttujaa ja 6 estimoitua" in s and "niistä 2:n Westfall–Young-korjattu p" in s


# ------------------------------------------------------------------------ economics
def _rosi() -> pd.DataFrame:
    base = {"horizon_years": 1, "discount_rate": 0.035, "avoided_categories": "usual_services+purchased_services+income_support"}
    return pd.DataFrame([
        {**base, "comparison": "pilot vs comparison", "intervention_cost_eur": 5438.94, "avoided_cost_eur": 1272.34,
         "rosi": -0.766, "ci_low": -0.939, "ci_high": -0.598, "rosi_note": np.nan},
        {**base, "comparison": "frame_shares vs frame_only", "intervention_cost_eur": 79.23, "avoided_cost_eur": -831.99,
         "rosi": -11.501, "ci_low": np.nan, "ci_high": np.nan,
         "rosi_note": "CI not reported: 37.3 % of replicates have a non-positive intervention cost"},
        {**base, "comparison": "teaming vs no_teaming", "intervention_cost_eur": 467.11, "avoided_cost_eur": 489.10,
         "rosi": 0.047, "ci_low": -4.087, "ci_high": 8.925, "rosi_note": np.nan},
        {**base, "comparison": "frame_only/teaming vs comparison", "intervention_cost_eur": 500.0, "avoided_cost_eur": 900.0,
         "rosi": 0.8, "ci_low": 0.1, "ci_high": 1.5, "rosi_note": np.nan},
    ])


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_no_rosi_number_over_a_denominator_that_may_be_zero(lang):
    s = narrative.rosi_sentences(_rosi(), lang)
    unstable = s[1]
    assert "1\u202f150" not in unstable and "−1150" not in unstable and "37" in unstable
    assert ("37.3 %" if lang == "en" else "37,3 %") in unstable and ("+79 €" in unstable)
    table = R.display_rosi(_rosi(), lang)
    assert table["rosi"].iloc[1] == i18n.t("r_not_reported", lang)
    assert not table["rosi"].str.contains("150").any()


def test_rosi_verdicts_follow_the_interval_and_name_the_design():
    s = narrative.rosi_sentences(_rosi(), "en")
    assert "(not randomised)" in s[0] and "do not pay back" in s[0]
    assert "(randomised)" in s[2] and "cannot tell" in s[2] and "pay back the" in s[2] and "exceed" not in s[2]
    assert "exceed" in s[3] and "comparison group (not randomised)" in s[3]
    assert "Frame only, teaming vs comparison group" in s[3]


def test_rosi_labels_name_each_contrast_once():
    assert i18n.value("frame_shares vs frame_only", "en") == "Frame + shares vs frame only"
    assert i18n.value("teaming vs no_teaming", "fi") == "Tiimiytys vs ei tiimiytystä"
    en = narrative.rosi_method_sentence(CFG, _rosi(), "en")
    assert "Teaming meetings" in en and "Teaming vs no teaming" not in en and "Usual services" in en
    fi = narrative.rosi_method_sentence(CFG, _rosi(), "fi")
    assert "vastaisuu" not in fi and "vertailutilanteeseen" in fi
    assert all("vastaisuu" not in pair[1] for pair in i18n.STRINGS.values())


def test_the_horizon_sensitivity_in_a_sentence():
    sens = pd.DataFrame({"comparison": ["pilot vs comparison"] * 2, "parameter": ["horizon_years", "deadweight"],
                         "base_value": [1.0, 0.0], "low_value": [1.0, 0.0], "high_value": [5.0, 0.3],
                         "rosi_base": [-0.766, -0.766], "rosi_at_low": [-0.766, -0.766], "rosi_at_high": [0.093, -0.84]})
    s = narrative.rosi_horizon_sentence(sens, _rosi(), "en")
    assert "5-year horizon" in s and "+9 %" in s and "−77 %" in s
    assert narrative.rosi_horizon_sentence(sens, _rosi(), "en", comparison="frame_shares vs frame_only") is None


def _cea(contrast, dc, dcl, dch, de, del_, deh, q, icer=np.nan, shares=(0.25, 0.25, 0.25, 0.25)):
    return {"contrast": contrast, "delta_cost_eur": dc, "delta_effect": de, "icer": icer, "icer_ci_low": np.nan,
            "icer_ci_high": np.nan, "ci_method": "fieller", "quadrant": q, "delta_cost_ci_low": dcl,
            "delta_cost_ci_high": dch, "delta_effect_ci_low": del_, "delta_effect_ci_high": deh, "share_ne": shares[0],
            "share_se": shares[1], "share_sw": shares[2], "share_nw": shares[3], "prob_cost_effective": 0.72, "n": 308}


def test_dominance_only_when_both_intervals_support_it():
    cea = pd.DataFrame([
        _cea("teaming", -143, -2127, 1694, 0.42, 0.22, 0.62, "SE", shares=(0.441, 0.559, 0, 0)),
        _cea("frame_shares", -900, -1500, -100, 0.3, 0.1, 0.5, "SE"),
        _cea("frame_shares:teaming", -1723, -5768, 2120, 0.17, -0.23, 0.56, "SE"),
    ])
    s = narrative.cea_sentences(cea, pd.DataFrame(), CFG, "en", contrasts=("teaming", "frame_shares", "frame_shares:teaming"))
    assert "dominat" not in s[0] and "56 %" in s[0] and "44 %" in s[0] and "72 %" in s[0]
    assert "dominates" in s[1]
    assert "not a programme" in s[2] and "quadrant" in s[2] and "dominat" not in s[2]
    assert "replicates" not in s[2]  # no quadrant shares or acceptability for an interaction
    t = R.display_cea(cea, "en")
    assert t["quadrant"].iloc[2] == "–" and t["icer"].iloc[2] == "–"
    ceac = pd.DataFrame({"contrast": ["teaming", "frame_shares:teaming"], "wtp_eur": [1000, 1000],
                         "prob_cost_effective": [0.7, 0.8]})
    assert list(R.display_ceac(ceac, "en").columns) == ["wtp_eur", "Teaming vs no teaming"]


def test_why_the_figures_differ_is_said_once_with_both_numbers():
    diff = pd.DataFrame({"contrast": ["pilot_vs_comparison", "frame_shares", "teaming"], "category": ["total"] * 3,
                         "period": ["follow_up"] * 3, "difference_eur": [3897.97, 911.21, -21.99]})
    cea = pd.DataFrame([_cea("frame_shares", 809, -1135, 2754, 0.31, 0.11, 0.51, "NE"),
                        {**_cea("pilot_vs_comparison", 4328, 3256, 5522, 0.695, 0.56, 0.83, "NE"), "n": 747}])
    s = narrative.cea_reconcile_sentence(cea, diff, _effects(), "kykyviisari_total", "en")
    assert "+3\u202f898 €" in s and "+911 €" in s and "−22 €" in s and "+0.71" in s and "769" in s and "747" in s
    r = narrative.rosi_reconcile_sentence(_rosi(), diff, "en")
    assert "5\u202f439 € − 1\u202f272 € = 4\u202f167 €" in r and "+3\u202f898 €" in r


# ------------------------------------------------------------- allocation, Appendix C
MANIFEST = {"registry": {"schema": "hbeval-registry/2", "seq": 400, "head": "61803e585676a1795c6fbb" + "0" * 42,
                         "receipt": "400:61803e585676a1795c6f"},
            "plan": {"registry_plan": "2ba04c2fee55575fe22de9", "sealed_on": "2025-07-01"},
            "command": ["hbeval", "report", "my_study", "--out", "reports/pilot", "--lang", "fi"],
            "study": "/abs/my_study", "parameters": {"name": "Hämeenlinna HB pilot"}}


@pytest.mark.parametrize("method,word", [("batch", "batch"), ("blocks", "permuted blocks"), ("minimisation", "minimisation")])
def test_the_allocation_is_described_from_the_registry(method, word):
    cfg = types.SimpleNamespace(**{**vars(CFG), "assignment_method": method})
    text = " ".join(narrative.allocation_sentences(MANIFEST, "en", cfg))
    assert word in text and "site, service line" in text and "400:61803e585676a1795c6f" in text
    assert "61803e585676a1795c6f" in text and "HMAC" in text and "HBEVAL_ALLOCATION_KEY" in text and "2025-07-01" in text
    assert ("keyed by the secret allocation key" in text) == (method != "batch")
    fi = " ".join(narrative.allocation_sentences(MANIFEST, "fi", cfg))
    assert "toimipiste, palvelulinja" in fi and "salattu" in fi and "concealed" in text


def test_appendix_c_names_the_folder_the_user_gave():
    assert "`hbeval verify reports/pilot`" in narrative.repro_sentence(MANIFEST, "en", fallback_out="/x/.pilot.tmp-ab12")
    no_out = {**MANIFEST, "command": ["hbeval", "report", "my_study"]}
    s = narrative.repro_sentence(no_out, "fi", fallback_out="/x/.pilot.tmp-ab12")
    assert "`hbeval verify reports/hameenlinna-hb-pilot`" in s and "tmp" not in s and "my_study" in s


# ------------------------------------------------------------------------- summary
def _results() -> dict[str, pd.DataFrame]:
    cells = list(R.CELLS)
    consort = pd.DataFrame({"stage": ["allocated"] * 4 + ["analysed"] * 4 + ["assessed"],
                            "group": ["pilot"] * 8 + ["comparison"], "cell": cells * 2 + ["all"], "reason": [""] * 9,
                            "n": ["101", "98", "100", "101", "68", "82", "77", "81", "600"]})
    diff = pd.DataFrame({"contrast": ["pilot_vs_comparison", "frame_shares", "teaming"], "category": ["total"] * 3,
                         "period": ["follow_up"] * 3, "n_a": [400, 201, 199], "n_b": [600, 199, 201],
                         "mean_a_eur": [9063.68, 9517.01, 9052.63], "mean_b_eur": [5165.71, 8605.79, 9074.62],
                         "difference_eur": [3897.97, 911.21, -21.99], "ci_low": [3004.12, -637.33, -1690.81],
                         "ci_high": [4915.38, 2521.09, 1535.65]})
    sens = pd.DataFrame({"comparison": ["pilot vs comparison"], "parameter": ["horizon_years"], "base_value": [1.0],
                         "low_value": [1.0], "high_value": [5.0], "rosi_base": [-0.766], "rosi_at_low": [-0.766],
                         "rosi_at_high": [0.093]})
    attr = pd.DataFrame({"section": ["rate"] * 3, "cell": ["all", cells[0], cells[1]], "contrast": [None] * 3,
                         "attrition_rate": [0.2, 0.277, 0.133]})
    comp = pd.DataFrame({"section": ["placebo"], "ci_low": [-239.2], "ci_high": [354.2]})
    return {"effects": _effects(), "consort": consort, "cost_differences": diff, "rosi": _rosi(), "rosi_sensitivity": sens,
            "attrition": attr, "comparison": comp, "deviations": pd.DataFrame()}


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_the_summary_answers_the_steering_groups_questions(lang):
    s = narrative.executive_summary(_results(), CFG, lang, plan={"sealed_on": "2025-07-01"})
    text = " ".join(s)
    heads = (["What was tested", "What changed for families", "Prevention", "How the work changed", "What it cost",
              "Did it pay back", "Between the versions", "How sure are we"] if lang == "en" else
             ["Mitä kokeiltiin", "Mitä perheille tapahtui", "Ennaltaehkäisy", "Miten työ muuttui", "Mitä se maksoi",
              "Maksoiko se itsensä takaisin", "Versioiden välillä", "Kuinka varmoja olemme"])
    assert [h for h in heads if f"**{h}" not in text] == []
    assert len(s) == len(heads)
    assert " p = " not in text and "p < " not in text  # statistical detail stays in the sections
    dec = "," if lang == "fi" else "."
    for number in ("400", "600", f"0{dec}31", f"0{dec}42", f"+0{dec}73", f"+0{dec}71", f"−5{dec}9", f"+16{dec}7",
                   "+3\u202f898 €", "+911 €", "−22 €", "−77 %", "+9 %", "+79 €", f"37{dec}3 %", f"20{dec}0 %", f"+0{dec}17"):
        assert number in text, number
    nr = "not randomised" if lang == "en" else "ei satunnaistettu"
    assert text.count(nr) >= 4  # HB vs usual services: the effect, the prevention, the cost and the ROSI
    assert ("versions of HB" if lang == "en" else "HB:n versioita") in text


def test_the_summary_leaves_out_what_the_tables_lack():
    r = _results()
    s = narrative.executive_summary({"effects": r["effects"], "consort": r["consort"]}, CFG, "en")
    text = " ".join(s)
    assert "What it cost" not in text and "Did it pay back" not in text and "–" not in text.replace("(0–10)", "")


def test_multiple_imputation_rows_are_said_once():
    rosi = _rosi()
    mi = rosi[rosi["comparison"].isin(["frame_shares vs frame_only", "teaming vs no_teaming"])].copy()
    mi["comparison"] += narrative.MI_SUFFIX
    mi["rosi_note"] = "multiple imputation: no follow-up cost is missing"
    s = narrative.rosi_sentences(pd.concat([rosi, mi], ignore_index=True), "en")
    assert len(s) == len(rosi) + 1 and "are the same as above" in s[-1]
    assert not any("vs frame only vs" in x for x in s)
    assert narrative.comparison_label("frame_shares vs frame_only (multiple imputation)", "fi") == \
        "Kehys + osuudet vs pelkkä kehys (moni-imputointi)"
    gone = mi.assign(rosi=np.nan, ci_low=np.nan, ci_high=np.nan, rosi_note="not computed: 3 follow-up costs are missing")
    s2 = narrative.rosi_sentences(pd.concat([rosi, gone], ignore_index=True), "en")
    assert sum("is not computed" in x for x in s2) == 2 and not any("not positive" in x for x in s2)


@pytest.mark.parametrize("method", ["batch", "blocks", "minimisation"])
def test_the_assignment_procedure_is_named_in_the_reports_language(method):
    # the Finnish power sentence and plan once showed the raw code ("menettely batch")
    fi, en = narrative.procedure_label(method, "fi"), narrative.procedure_label(method, "en")
    assert fi != method and fi != en
    plan = {"diagnosis": {"parameters": {"procedure": method, "sd": 1.0, "rho": 0.5, "attrition": 0.1},
                          "table": [{"n_pilot": 24, "contrast": "teaming", "sims": 200, "effect": 0.5, "power": 0.4,
                                     "mde": 0.9}]}, "sealed_on": "2026-01-01"}
    assert fi in narrative.power_sentences(plan, "fi")[0]
    assert f"({en} assignment" in narrative.power_sentences(plan, "en")[0]
    assert narrative.procedure_label("something_else", "fi") == "something_else"
