"""CONSORT flow counts and their suppression."""

from __future__ import annotations

import pandas as pd

from hbeval.randomisation.consort import consort_flow, consort_table
from hbeval.study.scoring import score
from hbeval.study.store import open_study


def test_flow_adds_up_and_suppresses(small_demo_dir):
    s = open_study(small_demo_dir)
    fam = s.families()
    flow = consort_flow(fam, score(s.table("measurements")), s.table("budgets"), s.table("teaming_meetings"),
                        s.config.primary)
    alloc = flow[(flow["stage"] == "allocated") & (flow["group"] == "pilot")]["n"].sum()
    assert alloc == (fam["group"] == "pilot").sum()
    assessed = flow[(flow["stage"] == "assessed") & (flow["group"] == "pilot")]["n"].iloc[0]
    excluded = flow[(flow["stage"] == "excluded") & (flow["reason"] == "all reasons")]["n"].iloc[0]
    assert assessed - excluded == alloc
    for cell in flow.loc[flow["stage"] == "allocated", "cell"]:
        k = flow[(flow["cell"] == cell)].set_index("stage")["n"]
        assert k["analysed"] + k["lost_to_follow_up"] <= k["allocated"]
    t = consort_table(flow, 5)
    assert not any(str(v).isdigit() and 0 < int(v) < 5 for v in t["n"])


def test_a_lone_small_exclusion_reason_cannot_be_recovered_from_the_total():
    flow = pd.DataFrame({"stage": ["excluded"] * 4, "group": "pilot", "cell": "all",
                         "reason": ["all reasons", "declined", "moved away", "not eligible"], "n": [20, 12, 6, 2]})
    t = consort_table(flow, 5).set_index("reason")["n"]
    assert t["not eligible"] == "<5" and t["moved away"] == "suppressed" and t["declined"] == "12"
    flow.loc[2, "n"] = 3
    flow.loc[1, "n"] = 15
    t = consort_table(flow, 5).set_index("reason")["n"]  # two small ones protect each other
    assert list(t) == ["20", "15", "<5", "<5"]


def test_rare_levels_never_reach_the_baseline_or_balance_tables(small_demo_dir):
    from hbeval.randomisation.balance import balance_table
    from hbeval.randomisation.consort import baseline_table

    s = open_study(small_demo_dir)
    fam = s.families()
    fam.loc[fam.index[0], "area"] = "Aino Korhonen"  # free text typed into a category
    base = baseline_table(fam, score(s.table("measurements")), [s.config.primary], 5)
    assert not base["level"].astype(str).str.contains("Korhonen").any()
    assert "(other)" in set(base["level"])
    pilot = fam[fam["group"] == "pilot"].reset_index(drop=True)
    pilot.loc[0, "area"] = "Aino Korhonen"
    bal = balance_table(pilot, ["area", "n_children"], 5)
    assert not bal["variable"].astype(str).str.contains("Korhonen").any()


def test_balance_survives_covariates_that_predict_the_arm_perfectly():
    import numpy as np

    from hbeval.randomisation.balance import balance_table

    n = 12
    fam = pd.DataFrame({"client_id": [f"c{i}" for i in range(n)], "cell": pd.array(np.arange(n) % 4, dtype="Int8"),
                        "area": [f"a{i}" for i in range(n)], "x": np.arange(n, dtype=float)})
    bal = balance_table(fam, ["area", "x"], 1)
    assert len(bal) > 0


# --------------------------------------------------------------------------- the identity (issues 12 and 14)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hbeval.arms import CELLS  # noqa: E402
from hbeval.demo import write_demo  # noqa: E402
from hbeval.disclosure import determined  # noqa: E402
from hbeval.randomisation.consort import _flow_expressions, _published_elsewhere  # noqa: E402


def _assert_identity(flow: pd.DataFrame) -> None:
    """In every cell (and for the comparison group, whose ``assessed`` is its total):
    allocated = lost_to_follow_up + not_analysed + analysed."""
    for group, total_stage, cells in (("pilot", "allocated", CELLS), ("comparison", "assessed", ("all",))):
        g = flow[flow["group"] == group]
        for cell in cells:
            rows = g[g["cell"] == cell]
            total = int(rows.loc[rows["stage"] == total_stage, "n"].sum())
            parts = int(rows.loc[rows["stage"].isin(["lost_to_follow_up", "not_analysed", "analysed"]), "n"].sum())
            assert total == parts, (group, cell, total, parts)


def _assert_nothing_recoverable(flow: pd.DataFrame, table: pd.DataFrame) -> None:
    """No suppressed count of ``consort.csv`` follows, by differencing, from its published
    counts and the counts other tables publish (families with the end score per cell, the
    analysed total)."""
    table = table.reset_index(drop=True)
    own = _flow_expressions(table.assign(n=flow["n"].to_numpy()))
    ext = _published_elsewhere(table.assign(n=flow["n"].to_numpy()))
    hidden = {i for i, v in enumerate(table["n"]) if not str(v).isdigit()}
    single = {next(iter(e)): int(flow["n"].iloc[i]) for i, e in enumerate(own) if len(e) == 1}
    for j, e in enumerate(ext):  # an external count below the threshold is suppressed there too
        if 0 < sum(single.get(k, 0) for k in e) < 5:
            hidden.add(len(own) + j)
    got = [i for i in determined(own + ext, hidden) if i < len(own)]
    assert not got, table.loc[got]


def _flow_of(study_dir) -> pd.DataFrame:
    s = open_study(study_dir)
    return consort_flow(s.families(), score(s.table("measurements"), s.config.instruments), s.table("budgets"),
                        s.table("teaming_meetings"), s.config.primary)


@pytest.mark.parametrize(("n_pilot", "n_comparison", "seed"),
                         [(400, 600, 20261122), (8, 12, 3), (8, 10, 1), (12, 16, 9), (12, 16, 1), (24, 30, 2),
                          (24, 30, 3), (24, 30, 5), (40, 12, 1), (40, 30, 3)])
def test_identity_holds_in_every_cell_of_demos(tmp_path, n_pilot, n_comparison, seed):
    write_demo(tmp_path / "s", n_pilot=n_pilot, n_comparison=n_comparison, seed=seed)
    flow = _flow_of(tmp_path / "s")
    _assert_identity(flow)
    assert set(flow.loc[flow["stage"] == "not_analysed", "reason"]) <= {"no_start_score", "alone_in_stratum", "not_estimable"}
    table = consort_table(flow, 5)
    assert not any(str(v).isdigit() and 0 < int(v) < 5 for v in table["n"])
    _assert_nothing_recoverable(flow, table)
    shown = table.set_index(["stage", "group", "cell", "reason"])["n"]
    for key, v in flow.set_index(["stage", "group", "cell", "reason"])["n"].items():  # shown counts are the true ones
        if str(shown[key]).isdigit():
            assert int(shown[key]) == v


def _hand_written_study():
    """Thirteen pilot families, four comparison families and one excluded, with known fates.

    Strata ``a`` (9 families, two or three per cell) and ``b`` (4 families, one per cell). In cell
    frame_only/no_teaming: p01 lost (no end score), p02 and p13 analysed, p09 no start score. In
    frame_only/teaming: p03 analysed, p04 analysed, p10 alone in stratum ``b`` among the complete
    cases (the other ``b`` families have no end or no start score). Comparison: c1 lost, c2 no
    start score, c3 and c4 analysed.
    """
    #            id     stratum frame        teaming     start  end
    rows = [("p01", "a", "frame_only", "no_teaming", 5.0, np.nan),
            ("p02", "a", "frame_only", "no_teaming", 5.0, 6.0),
            ("p03", "a", "frame_only", "teaming", 4.0, 5.0),
            ("p04", "a", "frame_only", "teaming", 6.0, 6.5),
            ("p05", "a", "frame_shares", "no_teaming", 5.0, 5.5),
            ("p06", "a", "frame_shares", "no_teaming", 4.5, 6.0),
            ("p07", "a", "frame_shares", "teaming", 5.5, 7.0),
            ("p08", "a", "frame_shares", "teaming", 3.5, 4.0),
            ("p09", "b", "frame_only", "no_teaming", np.nan, 6.0),
            ("p10", "b", "frame_only", "teaming", 5.0, 5.0),
            ("p11", "b", "frame_shares", "no_teaming", 5.0, np.nan),
            ("p12", "b", "frame_shares", "teaming", np.nan, np.nan),
            ("p13", "a", "frame_only", "no_teaming", 4.0, 5.5)]
    fam = pd.DataFrame([{"client_id": r[0], "group": "pilot", "stratum": r[1], "frame_arm": r[2], "teaming_arm": r[3],
                         "exclusion_reason": None} for r in rows]
                       + [{"client_id": f"c{i}", "group": "comparison", "stratum": None, "frame_arm": None,
                           "teaming_arm": None, "exclusion_reason": None} for i in range(1, 5)]
                       + [{"client_id": "x1", "group": "excluded", "stratum": None, "frame_arm": None, "teaming_arm": None,
                           "exclusion_reason": "declined"}])
    scores = pd.DataFrame({"kykyviisari_total_start": [r[4] for r in rows] + [5.0, np.nan, 4.0, 6.0, np.nan],
                           "kykyviisari_total_end": [r[5] for r in rows] + [np.nan, 5.0, 5.0, 7.0, np.nan]},
                          index=pd.Index([r[0] for r in rows] + ["c1", "c2", "c3", "c4", "x1"], name="client_id"))
    budgets = pd.DataFrame({"client_id": [r[0] for r in rows], "confirmed_on": ["2025-01-01"] * 11 + [None, "2025-01-01"]})
    meetings = pd.DataFrame({"client_id": ["p03", "p07", "p08"]})
    return fam, scores, budgets, meetings


def test_identity_and_reasons_of_a_hand_written_study():
    fam, scores, budgets, meetings = _hand_written_study()
    flow = consort_flow(fam, scores, budgets, meetings, "kykyviisari_total")
    _assert_identity(flow)
    n = flow.set_index(["stage", "group", "cell", "reason"])["n"]
    fo_nt, fo_t, fs_nt, fs_t = CELLS
    assert n[("allocated", "pilot", fo_nt, "")] == 4
    assert n[("lost_to_follow_up", "pilot", fo_nt, "")] == 1  # p01
    assert n[("not_analysed", "pilot", fo_nt, "no_start_score")] == 1  # p09
    assert n[("analysed", "pilot", fo_nt, "")] == 2  # p02, p13
    assert n[("not_analysed", "pilot", fo_t, "alone_in_stratum")] == 1  # p10
    assert n[("analysed", "pilot", fo_t, "")] == 2  # p03, p04
    assert n[("lost_to_follow_up", "pilot", fs_nt, "")] == 1  # p11
    assert n[("lost_to_follow_up", "pilot", fs_t, "")] == 1  # p12 (no end score, no start score: lost first)
    assert n[("received", "pilot", fo_t, "")] == 1  # teaming cells need a meeting: p03 only
    assert n[("received", "pilot", fs_t, "")] == 2  # p07, p08 (p12 has no confirmed budget)
    assert n[("analysed", "pilot", fs_t, "")] == 2
    assert n[("assessed", "comparison", "all", "")] == 4
    assert n[("lost_to_follow_up", "comparison", "all", "")] == 1  # c1
    assert n[("not_analysed", "comparison", "all", "no_start_score")] == 1  # c2
    assert n[("analysed", "comparison", "all", "")] == 2  # c3, c4
    assert n[("assessed", "pilot", "all", "")] == 14 and n[("excluded", "pilot", "all", "all reasons")] == 1
    # the analysed families are exactly those of the primary estimate (analysis_status)
    assert int(flow.loc[(flow["stage"] == "analysed") & (flow["group"] == "pilot"), "n"].sum()) == 8
    # with min_cell 2 the single-family counts are suppressed, and none can be got back
    table = consort_table(flow, 2)
    _assert_nothing_recoverable_k(flow, table, 2)


def _assert_nothing_recoverable_k(flow: pd.DataFrame, table: pd.DataFrame, k: int) -> None:
    table = table.reset_index(drop=True)
    own = _flow_expressions(table.assign(n=flow["n"].to_numpy()))
    ext = _published_elsewhere(table.assign(n=flow["n"].to_numpy()))
    hidden = {i for i, v in enumerate(table["n"]) if not str(v).isdigit()}
    single = {next(iter(e)): int(flow["n"].iloc[i]) for i, e in enumerate(own) if len(e) == 1}
    for j, e in enumerate(ext):
        if 0 < sum(single.get(x, 0) for x in e) < k:
            hidden.add(len(own) + j)
    assert hidden
    assert not [i for i in determined(own + ext, hidden) if i < len(own)]


def test_a_small_not_analysed_count_cannot_be_got_back_by_differencing():
    """allocated − lost − analysed is the cell's not-analysed count: when that is below the
    threshold, one more count of the cell goes (and a second cell's, since the analysed add up
    to the primary estimate's n)."""
    rows = []
    for cell, (a, lost, na, s) in zip(CELLS, [(30, 8, 3, 19), (30, 6, 0, 24), (30, 7, 6, 17), (30, 5, 0, 25)]):
        rows += [{"stage": "allocated", "group": "pilot", "cell": cell, "reason": "", "n": a},
                 {"stage": "lost_to_follow_up", "group": "pilot", "cell": cell, "reason": "", "n": lost},
                 {"stage": "not_analysed", "group": "pilot", "cell": cell, "reason": "no_start_score", "n": na},
                 {"stage": "analysed", "group": "pilot", "cell": cell, "reason": "", "n": s}]
    flow = pd.DataFrame(rows)
    _assert_identity(flow)
    table = consort_table(flow, 5)
    shown = table.set_index(["stage", "cell"])["n"]
    assert shown[("not_analysed", CELLS[0])] == "<5"
    assert shown[("analysed", CELLS[0])] == "suppressed"
    assert shown[("analysed", CELLS[2])] == "suppressed" and shown[("not_analysed", CELLS[2])] == "suppressed"
    assert shown[("allocated", CELLS[0])] == "30" and shown[("lost_to_follow_up", CELLS[0])] == "8"
    _assert_nothing_recoverable(flow, table)
