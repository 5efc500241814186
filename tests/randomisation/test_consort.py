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
