"""The family-level outcome frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbeval.outcomes.frame import (
    InMemoryStudy,
    budget_outcomes,
    outcome_columns,
    outcome_frame,
    prevention_outcomes,
    teaming_outcomes,
)


@pytest.fixture(scope="module")
def study():
    return InMemoryStudy.from_demo(n_pilot=160, n_comparison=120, seed=21)


@pytest.fixture(scope="module")
def frame(study):
    return outcome_frame(study)


def test_one_row_per_family(study, frame):
    assert frame["client_id"].is_unique
    assert len(frame) == len(study.table("clients"))
    assert frame["client_id"].tolist() == sorted(frame["client_id"])


def test_every_declared_outcome_has_an_end_column(study, frame):
    for fam, outs in study.config.families.items():
        for o in outs:
            end, start = outcome_columns(frame, o)
            assert end is not None, o
            if fam in ("primary",) or o.startswith(("kykyviisari", "kompassi")):
                assert start is not None, o
    assert outcome_columns(frame, "satisfaction_total")[1] is None  # measured at end only


def test_scores_agree_with_scoring(study, frame):
    from hbeval.study.scoring import score

    sc = score(study.table("measurements"))
    f = frame.set_index("client_id")
    common = sc.index.intersection(f.index)
    pd.testing.assert_series_equal(f.loc[common, "kykyviisari_total_end"], sc.loc[common, "kykyviisari_total_end"], check_names=False)


def test_budget_outcomes_by_hand():
    b = pd.DataFrame({
        "client_id": ["a", "a", "b", "b", "c"],
        "category": ["x", "y", "x", "y", "x"],
        "proposed_eur": [100.0, 200, 100, 200, 50],
        "confirmed_eur": [100.0, 200, 120, 150, np.nan],
        "proposed_on": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-03", "2024-01-01"]),
        "confirmed_on": pd.to_datetime(["2024-01-06", "2024-01-06", "2024-01-20", "2024-01-21", None]),
        "revisions": [0, 0, 2, 2, 1],
    })
    o = budget_outcomes(b)
    assert o.loc["a"].tolist() == [1.0, 0.0, 0.0, 5.0]
    assert o.loc["b", "budget_accepted_unchanged_end"] == 0
    assert o.loc["b", "budget_abs_change_eur_end"] == 70
    assert o.loc["b", "days_to_confirmation_end"] == 20
    assert o.loc["c", "budget_accepted_unchanged_end"] == 0  # never confirmed: not accepted
    assert np.isnan(o.loc["c", "days_to_confirmation_end"])


def test_teaming_outcomes_zero_when_no_meeting():
    m = pd.DataFrame({"client_id": ["a", "a", "b"], "phase": ["before_start", "evaluation", "before_start"],
                      "providers_present": [3, 2, 1]})
    o = teaming_outcomes(m, pd.Index(["a", "b", "z"]))
    assert o.loc["a", "meetings_before_start_end"] == 1 and o.loc["a", "providers_present_evaluation_end"] == 2
    assert (o.loc["z"] == 0).all()


def test_prevention_window():
    fam = pd.DataFrame({"client_id": ["a", "b", "c", "d"], "enrolled_on": pd.to_datetime(["2024-01-01"] * 3 + [None])})
    cw = pd.DataFrame({"client_id": ["a", "b", "b", "c"], "event": ["new_clienthood", "new_clienthood", "notification", "new_clienthood"],
                       "date": pd.to_datetime(["2024-12-30", "2025-01-01", "2024-02-01", "2023-06-01"])})
    o = prevention_outcomes(cw, fam, 365)
    assert o.loc["a", "new_child_welfare_clienthood_end"] == 1  # day 364: inside
    assert o.loc["b", "new_child_welfare_clienthood_end"] == 0  # day 366: outside
    assert o.loc["c", "new_child_welfare_clienthood_pre"] == 1
    assert np.isnan(o.loc["d", "new_child_welfare_clienthood_end"])


def test_process_outcomes_only_for_assigned(frame):
    comp = frame[frame["group"] == "comparison"]
    assert comp["meetings_before_start_end"].isna().all()
    assert comp["budget_revisions_end"].isna().all()
    assigned = frame[frame["cell"].notna()]
    assert assigned["meetings_before_start_end"].notna().all()


def test_works_on_an_opened_study(tmp_path):
    from hbeval.demo import write_demo
    from hbeval.study.store import open_study

    write_demo(tmp_path / "s", n_pilot=40, n_comparison=30, seed=4)
    s = open_study(tmp_path / "s")
    f = outcome_frame(s)
    assert len(f) == len(s.families())
    assert f["kykyviisari_total_end"].notna().sum() > 20
    assert set(f["cell"].dropna().astype(int)) == {0, 1, 2, 3}
