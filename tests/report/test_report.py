"""Unit tests of the report machinery: labels, narrative, checklists, flow diagram, HTML
assembly, and the readable diff of ``hbeval verify``."""

from __future__ import annotations

import re
import types

import nbformat
import pandas as pd
import pytest

from hbeval.report import checklists, i18n, narrative
from hbeval.report import render as report
from hbeval.report.plots import flow


# ------------------------------------------------------------------------------ i18n
def test_numbers_in_both_languages():
    assert i18n.num(1234.567, "en", 2) == "1\u202f234.57"
    assert i18n.num(1234.567, "fi", 2) == "1\u202f234,57"
    assert i18n.num(-0.5, "fi", 1) == "−0,5"
    assert i18n.num(0.25, "en", 0, percent=True) == "25 %"
    assert i18n.num(0.3, "en", 2, sign=True) == "+0.30"
    assert i18n.num("<5", "en") == "<5"
    assert i18n.num(float("nan"), "en") == "–"
    assert i18n.pval(0.0001, "fi") == "<0,001"
    assert i18n.pval(0.0456, "en") == "0.046"
    assert i18n.interval(0.1, 0.5, "fi") == "0,10 … 0,50"


def test_every_string_has_both_languages_and_the_same_fields():
    fields = re.compile(r"\{(\w+)")
    for key, (en, fi) in i18n.STRINGS.items():
        assert en and fi, key
        assert sorted(set(fields.findall(en))) == sorted(set(fields.findall(fi))), key
    for table in (i18n.COLUMNS, i18n.OUTCOMES, i18n.VALUES):
        for key, pair in table.items():
            assert len(pair) == 2 and all(pair), key


def test_every_declared_outcome_has_a_label():
    from hbeval.study.config import DEFAULT_FAMILIES

    for fam in DEFAULT_FAMILIES.values():
        for o in fam:
            assert i18n.outcome(o, "fi") != o and i18n.outcome(o, "en") != o, o


def test_unknown_language_is_refused():
    with pytest.raises(ValueError):
        i18n.t("sec_costs", "sv")


def test_slug():
    assert report.slug("Hämeenlinna HB pilot") == "hameenlinna-hb-pilot"
    assert report.slug("Siun sote / Sitra: lab #2") == "siun-sote-sitra-lab-2"
    assert report.slug("???") == "study"


# ------------------------------------------------------------------------- narrative
def _effects(est=0.31, lo=0.11, hi=0.52, inter=(0.17, -0.23, 0.57)):
    rows = []
    for c, (e, low, h) in {"frame_shares": (est, lo, hi), "teaming": (0.42, 0.22, 0.62),
                           "frame_shares:teaming": inter}.items():
        rows.append({"family": "primary", "outcome": "kykyviisari_total", "contrast": c, "estimate": e, "std_error": 0.1,
                     "ci_low": low, "ci_high": h, "p_value": 0.002, "p_value_ri": 0.003, "p_value_adj": 0.004,
                     "n": 308, "method": "ancova_hc2; ri=...", "spec": "primary"})
        rows.append({**rows[-1], "estimate": 99.0, "method": "lin_centred_interaction_hc2", "spec": "robustness"})
    rows.append({"family": "primary", "outcome": "kykyviisari_total", "contrast": "pilot_vs_comparison", "estimate": 0.7,
                 "std_error": 0.07, "ci_low": 0.57, "ci_high": 0.85, "p_value": 1e-9, "p_value_ri": None,
                 "p_value_adj": None, "n": 769, "method": "dr_att (not randomised)", "spec": "non_randomised"})
    return pd.DataFrame(rows)


CFG = types.SimpleNamespace(primary="kykyviisari_total", mic=1.0, price_year=2024, wtp_reference_eur=1000.0,
                            families={"secondary": [], "process_frame": [], "process_teaming": [], "prevention": []})


def test_effect_sentence_uses_the_table_numbers_and_the_primary_specification():
    s = narrative.effect_sentence(_effects(), "kykyviisari_total", "frame_shares", "en", mic=1.0)
    assert "+0.31" in s and "0.11 to 0.52" in s and "308" in s and "99" not in s
    assert "smaller than the assumed minimal important change" in s
    s2 = narrative.effect_sentence(_effects(est=1.6, lo=1.2, hi=2.0), "kykyviisari_total", "frame_shares", "fi", mic=1.0)
    assert "+1,60" in s2 and "1,20 … 2,00" in s2 and "yläpuolella" in s2


def test_interaction_sentence_follows_the_interval():
    small = " ".join(narrative.interaction_sentences(_effects(inter=(0.02, -0.2, 0.24)), "kykyviisari_total", "en"))
    assert "includes zero" in small and "averaged over the other" in small
    wide = " ".join(narrative.interaction_sentences(_effects(inter=(0.17, -0.23, 0.57)), "kykyviisari_total", "en"))
    assert "includes zero" in wide and "cannot be ruled out" in wide
    big = " ".join(narrative.interaction_sentences(_effects(inter=(0.9, 0.3, 1.5)), "kykyviisari_total", "en"))
    assert "excludes zero" in big and "clearly non-zero" in big
    assert "(95 % CI 0.80 to 1.00; adjusted p = 0.004, unadjusted HC2 t-test p < 0.001)" in " ".join(
        narrative.interaction_sentences(_effects(inter=(0.9, 0.8, 1.0)).assign(p_value=0.0001), "kykyviisari_total", "en"))


def test_executive_summary_has_headline_numbers_with_uncertainty():
    consort = pd.DataFrame({"stage": ["allocated"] * 4 + ["analysed"] * 4 + ["assessed"],
                            "group": ["pilot"] * 8 + ["comparison"],
                            "cell": list(report.CELLS) * 2 + ["all"], "reason": [""] * 9,
                            "n": ["30", "31", "29", "30", "25", "26", "<5", "24", "160"]})
    costs = pd.DataFrame({"group": ["pilot", "comparison"], "cell": ["all", "all"], "category": ["total", "total"],
                          "period": ["follow_up"] * 2, "n": [120, 160], "mean_eur": [9029.4, 4677.0],
                          "sd_eur": [1, 1], "median_eur": [1, 1], "ci_low": [8109, 3949], "ci_high": [10127, 5539],
                          "total_eur": [1, 1]})
    rosi = pd.DataFrame({"comparison": ["pilot vs comparison"], "intervention_cost_eur": [5825.0],
                         "avoided_cost_eur": [1077.0], "rosi": [-0.815], "ci_low": [-1.0], "ci_high": [-0.62]})
    s = narrative.executive_summary({"effects": _effects(), "consort": consort, "costs": costs, "rosi": rosi}, CFG, "en")
    text = " ".join(s)
    assert "120 families" in text  # 30+31+29+30
    assert "<5" not in text and "308 families" in text  # the effect's own n; a suppressed cell never enters a total
    assert "9\u202f029" in text and "8\u202f109 to 10\u202f127" in text
    assert "−82 %" in text and "(95 % CI −100 % to −62 %)" in text
    assert "not randomised" in text


def test_balance_sentence_counts_imbalance():
    bal = pd.DataFrame({"variable": ["a", "b", "a", "b", "joint_f_test", "joint_f_test", "omnibus"],
                        "comparison": ["frame_shares", "frame_shares", "teaming", "teaming", "frame_shares", "teaming", "all_cells"],
                        "row_type": ["covariate"] * 4 + ["joint_f", "joint_f", "omnibus_ri"],
                        "normalized_difference": [0.05, 0.3, -0.02, 0.01, None, None, None],
                        "p_value": [0.5, 0.01, 0.8, 0.9, 0.4, 0.6, 0.7]})
    s = narrative.balance_sentence(bal, "en")
    assert "1 of 2" in s and "0.30 for b" in s and "p = 0.400" in s and "p = 0.700" in s


# ------------------------------------------------------------------------ checklists
def test_consort_2025_checklist_items_and_where_answered():
    c = checklists.consort_checklist("en")
    base = c[~c["item"].str.endswith("-F")]
    numbers = sorted({int(re.match(r"\d+", i).group()) for i in base["item"]})
    assert numbers == list(range(1, 31))  # CONSORT 2025 has 30 numbered items
    fact = c[c["item"].str.endswith("-F")]
    assert len(fact) >= 10 and fact["requirement"].str.contains("interaction").any()
    for secs in c["sections"]:
        for s in filter(None, secs.split(",")):
            assert s in report.SECTIONS
    assert set(c["status"]) <= {"answered", "partly", "authors"}
    assert (c.loc[c["status"] == "authors", "sections"] == "").all()
    fi = checklists.consort_checklist("fi")
    assert "Osallistujien kulku (CONSORT)" in " ".join(fi["where"])


def test_cheers_checklist_is_used(tmp_path):
    """The report shows ``results/cheers.csv`` as analyze wrote it (read back from the CSV)."""
    from hbeval.economics.cheers import cheers_checklist
    from hbeval.pipeline import write_csv
    from hbeval.study.config import StudyConfig

    write_csv(cheers_checklist(StudyConfig()), tmp_path / "cheers.csv")
    c = checklists.cheers_display(pd.read_csv(tmp_path / "cheers.csv"), "en")
    assert len(c) == 28 and c["item"].tolist()[0] == "1"
    assert list(c.columns) == ["item", "topic", "where", "status", "answer"]
    assert c["answer"].str.contains("price year").any() and not c["answer"].isna().any()


# ------------------------------------------------------------------------ flow diagram
def _consort():
    rows = [("assessed", "pilot", "all", "", "127"), ("excluded", "pilot", "all", "all reasons", "7"),
            ("excluded", "pilot", "all", "declined", "<5"), ("excluded", "pilot", "all", "moved away", "<5")]
    for c, n in zip(report.CELLS, ("30", "31", "29", "30")):
        rows += [("allocated", "pilot", c, "", n), ("received", "pilot", c, "", "28"),
                 ("lost_to_follow_up", "pilot", c, "", "<5"), ("analysed", "pilot", c, "", "25")]
    rows += [("assessed", "comparison", "all", "", "160"), ("lost_to_follow_up", "comparison", "all", "", "40"),
             ("analysed", "comparison", "all", "", "120")]
    return pd.DataFrame(rows, columns=["stage", "group", "cell", "reason", "n"])


def test_flow_counts_keep_suppression():
    c = flow.flow_counts(_consort())
    assert c["assessed"] == "127" and c["excluded"] == "7"
    assert ("declined", "<5") in c["reasons"]
    assert c["cells"]["frame_shares/teaming"]["lost_to_follow_up"] == "<5"
    assert c["comparison"] == {"assessed": "160", "lost_to_follow_up": "40", "analysed": "120"}


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_flow_diagram_shows_every_box(lang):
    fig = flow.plot_flow(_consort(), lang)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "n = 127" in texts and "n = 160" in texts and "n <5" in texts
    assert texts.count("n = 25") == 4
    assert ("not randomised" in texts) == (lang == "en")
    assert ("ei satunnaistettu" in texts) == (lang == "fi")
    import matplotlib.pyplot as plt

    plt.close(fig)


# ------------------------------------------------------------------- HTML assembly
def _block_nb(path, blocks):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    for b in blocks:
        data = {"text/plain": "x", report.BLOCK_MIME: b}
        if b["kind"] == "figure":
            data["image/png"] = "iVBORw0KGgo="
        cell.outputs.append(nbformat.v4.new_output("display_data", data=data))
    cell.outputs.append(nbformat.v4.new_output("stream", name="stderr", text="a warning the report must not show"))
    nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


def test_build_html_orders_sections_and_numbers_tables_and_figures(tmp_path):
    a = _block_nb(tmp_path / "01.ipynb", [
        {"kind": "heading", "section": "costs", "html": "<h2>C</h2>", "title": "Costs"},
        {"kind": "table", "section": "costs", "html": "<table class='data'><tr><td>t1</td></tr></table>", "caption": "cost table"},
        {"kind": "figure", "section": "costs", "html": "", "caption": "cost figure", "name": "f"}])
    b = _block_nb(tmp_path / "02.ipynb", [
        {"kind": "heading", "section": "summary", "html": "<h2>S</h2>", "title": "Executive summary"},
        {"kind": "text", "section": "summary", "html": "<p>headline</p>"},
        {"kind": "table", "section": "summary", "html": "<table class='data'><tr><td>t0</td></tr></table>", "caption": "sum table"}])
    blocks = report.collect_blocks([a, b])
    assert len(blocks) == 6
    h = report.build_html(blocks, "en", {"study_name": "S", "version": "0", "seed": 1, "price_year": 2024,
                                         "date": "2026-01-01", "results_digest": "x"})
    assert h.index("Executive summary") < h.index("headline") < h.index("cost table")
    assert "Table 1.</strong> sum table" in h and "Table 2.</strong> cost table" in h
    assert "Figure 1.</strong> cost figure" in h
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in h
    assert "a warning the report must not show" not in h
    assert "<script" not in h


def test_table_html_escapes_and_translates():
    h = report.table_html(pd.DataFrame({"n": ["<5"], "outcome": ["<b>x</b>"]}), "fi", numeric={"n"})
    assert "&lt;5" in h and "&lt;b&gt;" in h and "Tulosmuuttuja" in h and 'class="num"' in h


def test_report_refuses_blocks_outside_a_section(tmp_path):
    r = report.Report(types.SimpleNamespace(config=CFG), tmp_path, "en")
    with pytest.raises(RuntimeError):
        r.text("x")
    r.section("costs")
    r.text("**bold** and `code`")
    assert r.blocks[-1]["html"] == "<p><strong>bold</strong> and <code>code</code></p>"
    with pytest.raises(ValueError):
        r.section("nonsense")


# ---------------------------------------------------------------------- verify diff
def test_diff_tables_names_rows_and_columns():
    old = pd.DataFrame({"outcome": ["a", "a", "b"], "contrast": ["x", "y", "x"], "estimate": [0.1, 0.2, 0.3],
                        "n": ["10", "<5", "12"]})
    new = old.copy()
    new.loc[1, "estimate"] = 0.25
    new.loc[2, "n"] = "13"
    lines = report.diff_tables(old, new)
    assert "outcome=a, contrast=y · estimate: 0.2 → 0.25" in lines
    assert "outcome=b, contrast=x · n: 12 → 13" in lines
    assert len(lines) == 2


def test_diff_tables_tells_repeated_keys_apart_by_occurrence():
    old = pd.DataFrame({"k": ["a", "a", "b"], "v": [1.0, 2.0, 3.0]})
    new = pd.DataFrame({"k": ["a", "a", "b"], "v": [1.0, 2.5, 3.0]})
    assert report.diff_tables(old, new) == ["k=a, (occurrence 2) · v: 2.0 → 2.5"]


def test_diff_tables_added_and_removed_rows():
    old = pd.DataFrame({"k": ["a", "b"], "v": [1.0, 2.0]})
    new = pd.DataFrame({"k": ["a", "c"], "v": [1.0, 2.0], "w": [0, 0]})
    lines = report.diff_tables(old, new)
    assert "column w added" in lines and "row k=b removed" in lines and "row k=c added" in lines


def test_diff_tables_without_keys_falls_back_to_rows():
    old = pd.DataFrame({"v": [1.0, 2.0, 3.0]})
    new = pd.DataFrame({"v": [1.0, 2.5, 3.0]})
    assert report.diff_tables(old, new) == ["row 3 · v: 2.0 → 2.5"]


def test_diff_tables_truncates_long_diffs():
    old = pd.DataFrame({"v": range(100)})
    new = pd.DataFrame({"v": range(1, 101)})
    lines = report.diff_tables(old, new, max_lines=5)
    assert len(lines) == 6 and lines[-1] == "... and 95 more changed values"


def test_verify_without_manifest_is_misuse(tmp_path):
    from hbeval.errors import UsageError

    with pytest.raises(UsageError):
        report.verify(tmp_path)
