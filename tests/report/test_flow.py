"""The CONSORT flow diagram (issues 12 and 14): readable in print, the not-analysed boxes by
reason, the comparison group's analysis populations, translated labels, and small studies
without a wall of "<5" and without undoing a suppression."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from hbeval.arms import CELLS
from hbeval.report.plots import flow

ENGLISH_LABELS = ("Not analysed", "Lost to follow-up", "Analysed", "complete cases", "suppressed", "Allocated",
                  "Comparison", "each cell", "in all cells", "common support", "Randomised")
RAW_CODES = ("no_start_score", "alone_in_stratum", "not_estimable", "frame_only/", "frame_shares/", "lost_to_follow_up",
             "fig_flow_")


def _rows(stage, per_cell, reason=""):
    return [(stage, "pilot", c, reason, str(n)) for c, n in zip(CELLS, per_cell)]


def _large() -> pd.DataFrame:
    """A flow with every per-cell count shown (a not-analysed reason in each cell)."""
    rows = [("assessed", "pilot", "all", "", "130"), ("excluded", "pilot", "all", "all reasons", "10"),
            ("excluded", "pilot", "all", "declined", "10")]
    rows += _rows("allocated", (30, 30, 30, 30)) + _rows("received", (29, 28, 30, 27))
    rows += _rows("lost_to_follow_up", (6, 7, 5, 8)) + _rows("not_analysed", (5, 6, 7, 5), "no_start_score")
    rows += _rows("analysed", (19, 17, 18, 17))
    rows += [("assessed", "comparison", "all", "", "600"), ("lost_to_follow_up", "comparison", "all", "", "140"),
             ("not_analysed", "comparison", "all", "no_start_score", "21"), ("analysed", "comparison", "all", "", "439")]
    return pd.DataFrame(rows, columns=["stage", "group", "cell", "reason", "n"])


def _comparison() -> pd.DataFrame:
    return pd.DataFrame([
        {"section": "overlap", "item": "propensity", "group": "pilot", "family": "", "n": "120", "n_pilot": "",
         "n_comparison": "", "n_trimmed": "<5"},
        {"section": "overlap", "item": "propensity", "group": "comparison", "family": "", "n": "600", "n_pilot": "",
         "n_comparison": "", "n_trimmed": "16"},
        {"section": "estimate", "item": "kykyviisari_total", "group": "", "family": "primary", "n": "547",
         "n_pilot": "97", "n_comparison": "450", "n_trimmed": ""}])


def _small() -> pd.DataFrame:
    """A flow of 8 families: most per-cell counts suppressed."""
    rows = [("assessed", "pilot", "all", "", "suppressed"), ("excluded", "pilot", "all", "all reasons", "<5"),
            ("excluded", "pilot", "all", "(other)", "<5")]
    rows += _rows("allocated", ("0", "<5", "<5", "<5")) + _rows("received", ("0", "<5", "<5", "<5"))
    rows += _rows("lost_to_follow_up", ("0", "<5", "<5", "suppressed"))
    rows += _rows("not_analysed", ("0", "0", "<5", "<5"), "alone_in_stratum")
    rows += _rows("not_analysed", ("0", "<5", "suppressed", "<5"), "not_estimable")
    rows += _rows("analysed", ("0", "suppressed", "suppressed", "0"))
    rows += [("assessed", "comparison", "all", "", "12"), ("lost_to_follow_up", "comparison", "all", "", "<5"),
             ("not_analysed", "comparison", "all", "no_start_score", "<5"), ("analysed", "comparison", "all", "", "10")]
    return pd.DataFrame(rows, columns=["stage", "group", "cell", "reason", "n"])


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def _close(fig) -> None:
    plt.close(fig)


def test_printed_scale_of_the_a4_page():
    # 7.2 in at 120 dpi is 9 in of CSS pixels, shrunk to the 182 mm text width
    assert flow.printed_scale(7.2, 7.6, dpi=120) == pytest.approx(182 / 25.4 / 7.2)
    # the old 11-inch diagram printed at 65 %: 6.8 pt came out at 4.4 pt (issue 14)
    assert 6.8 * flow.printed_scale(11.0, 7.6, dpi=120) == pytest.approx(4.43, abs=0.01)
    # a small figure is not enlarged beyond its natural size
    assert flow.printed_scale(3.0, 2.0, dpi=96) == pytest.approx(1.0)
    # a tall figure is shrunk to the 200 mm maximum height
    assert flow.printed_scale(7.0, 14.0, dpi=96) == pytest.approx(200 / 25.4 / 14.0)


@pytest.mark.parametrize("lang", ["en", "fi"])
@pytest.mark.parametrize("consort", [_large, _small])
def test_every_label_prints_at_7_pt_or_more_on_a4(consort, lang):
    fig = flow.plot_flow(consort(), lang, comparison=_comparison())
    w, h = fig.get_size_inches()
    scale = flow.printed_scale(w, h)
    sizes = [t.get_fontsize() * scale for t in fig.axes[0].texts if t.get_text().strip()]
    assert sizes and min(sizes) >= flow.MIN_PRINTED_PT
    _close(fig)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_not_analysed_boxes_by_reason_and_the_comparison_reconciled(lang):
    fig = flow.plot_flow(_large(), lang, comparison=_comparison())
    text = "\n".join(_texts(fig)).replace("\n", " ")
    for n in (5, 6, 7):  # one box per cell, with the reason
        assert f"n = {n}" in text
    reason = "no start score" if lang == "en" else "ei alkumittausta"
    assert text.count(reason) >= 5  # the four cells and the comparison group
    for n in (600, 140, 21, 439, 450, 97, 16):  # identified, lost, no start, complete cases, DR population, trimmed
        assert f"n = {n}" in text, n
    _close(fig)


def test_the_comparison_populations_come_from_comparison_csv():
    pops = flow.comparison_populations(_comparison())
    assert pops == {"n_pilot": "97", "n_comparison": "450", "n_trimmed": "16"}
    assert flow.comparison_populations(None) == {}
    assert flow.comparison_populations(_comparison(), primary="kompassi_total") == {"n_trimmed": "16"}


@pytest.mark.parametrize("consort", [_large, _small])
def test_finnish_labels_hold_no_english_and_no_raw_codes(consort):
    fig = flow.plot_flow(consort(), "fi", comparison=_comparison())
    text = " ".join(_texts(fig))
    for w in ENGLISH_LABELS + RAW_CODES:
        assert w not in text, w
    _close(fig)
    fig = flow.plot_flow(consort(), "en", comparison=_comparison())
    text = " ".join(_texts(fig))
    for w in RAW_CODES:
        assert w not in text, w
    _close(fig)


def test_a_small_study_has_no_wall_of_suppressed_counts():
    fig = flow.plot_flow(_small(), "en", comparison=_comparison())
    texts = _texts(fig)
    # the follow-up, not-analysed and analysed stages are one box each across the cells, not four
    assert sum("Lost to follow-up" in t for t in texts) == 2  # the pilot's row and the comparison's box
    assert sum("Not analysed: alone in their stratum" in t for t in texts) == 1
    assert sum("Not analysed: contrast not estimable" in t for t in texts) == 1
    assert sum(t.startswith("Analysed (start and end score)") for t in texts) == 1
    assert sum(t.count("<5") for t in texts) <= 12  # the old diagram had 17 per-cell "<5" (a wall)
    _close(fig)


def test_the_diagram_undoes_no_suppression():
    """Every count the diagram prints is a count published in consort.csv (or a total that
    another table publishes): no total is formed from suppressed counts."""
    consort = _small()
    effects = pd.DataFrame([{"family": "primary", "contrast": "frame_shares", "spec": "primary", "n": "<5"}])
    fig = flow.plot_flow(consort, "en", comparison=_comparison(), effects=effects)
    printed = {int(x) for t in _texts(fig) for x in re.findall(r"n = (\d+)", t)}
    comp = _comparison()
    published = {int(v) for v in consort["n"] if str(v).isdigit()}
    published |= {int(v) for col in ("n_pilot", "n_comparison", "n_trimmed") for v in comp[col] if str(v).isdigit()}
    assert printed <= published, printed - published
    text = " ".join(_texts(fig))
    assert "≥" not in text and "in all cells" not in text
    _close(fig)


def test_a_collapsed_row_gives_the_total_another_table_publishes():
    consort = _large()
    consort.loc[(consort["stage"] == "not_analysed") & consort["cell"].isin(CELLS[1:3]), "n"] = "<5"
    consort.loc[(consort["stage"] == "analysed") & consort["cell"].isin(CELLS[1:]), "n"] = "suppressed"
    effects = pd.DataFrame([{"family": "primary", "contrast": "frame_shares", "spec": "primary", "n": 71}])
    fig = flow.plot_flow(consort, "en", effects=effects)
    text = " ".join(_texts(fig))
    assert "n = 71 in all cells" in text  # the primary estimate's n
    # not analysed = (allocated − lost) − analysed, every term of it published elsewhere
    assert f"n = {4 * 30 - (6 + 7 + 5 + 8) - 71} in all cells" in text
    _close(fig)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_the_flow_in_words_reads_without_symbols_at_small_n(lang):
    text = " ".join(flow.flow_sentences(_small(), lang, comparison=_comparison()))
    assert "<5" not in text and "–" not in text and "≥" not in text and "suppressed were" not in text
    assert ("fewer than 5" if lang == "en" else "alle 5") in text
    big = " ".join(flow.flow_sentences(_large(), lang, comparison=_comparison()))
    for n in (130, 10, 120, 26, 23, 71, 600, 140, 21, 439, 450):  # assessed, excluded, randomised, lost, not analysed,
        assert str(n) in big, n                                       # analysed; the comparison's counts and DR n


def test_the_wide_consort_table_keeps_every_published_count():
    from hbeval.report.render import display_consort_wide

    consort = _small()
    wide = display_consort_wide(consort, "en")
    assert len(wide) == len(dict.fromkeys(zip(consort["stage"], consort["reason"])))  # one row per stage and reason
    cells = wide.drop(columns=wide.columns[0]).to_numpy().ravel().tolist()
    assert sorted(v for v in cells if v != "–") == sorted(consort["n"].astype(str))
    assert list(wide.iloc[:, 0])[-1].startswith("Analysed")  # the stages in the flow's order
