"""Complementary suppression across tables (hbeval.disclosure): the solver on small systems
with known answers, and a differencing attack, written here independently of the solver, that
must recover no suppressed count."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbeval import disclosure as D


def _attack(exprs: list[dict], values: list[float | None]) -> list[int]:
    """Indices of suppressed counts that the published ones pin down exactly: a count is pinned
    when no vector of the null space of the published rows moves it (SVD, not the solver's code)."""
    latents = sorted({k for e in exprs for k in e}, key=repr)
    col = {k: j for j, k in enumerate(latents)}
    A = np.zeros((len(exprs), len(latents)))
    for i, e in enumerate(exprs):
        for k, v in e.items():
            A[i, col[k]] = v
    pub = A[[v is not None for v in values]]
    if len(pub):
        _, sv, vt = np.linalg.svd(pub)
        rank = int((sv > 1e-9).sum())
        null = vt[rank:].T
    else:
        null = np.eye(len(latents))
    return [i for i, v in enumerate(values) if v is None and np.abs(A[i] @ null).max(initial=0.0) < 1e-9]


def _run(exprs: list[dict], values: list[float | None]) -> list[float | None]:
    prot = D.protect(exprs, values)
    return [None if i in prot.complementary else v for i, v in enumerate(values)]


def test_one_suppressed_part_of_a_total_takes_a_complement() -> None:
    # total = a + b + c with a suppressed: b or c must go too (the smaller one)
    exprs = [{"a": 1, "b": 1, "c": 1}, {"a": 1}, {"b": 1}, {"c": 1}]
    values: list[float | None] = [30, None, 8, 19]
    assert _attack(exprs, values) == [1]
    prot = D.protect(exprs, values)
    assert set(prot.complementary) == {2} and prot.complementary[2] == 1
    assert _attack(exprs, _run(exprs, values)) == []


def test_two_suppressed_parts_are_safe_as_they_are() -> None:
    exprs = [{"a": 1, "b": 1, "c": 1}, {"a": 1}, {"b": 1}, {"c": 1}]
    values: list[float | None] = [30, None, None, 19]
    assert D.protect(exprs, values).complementary == {}


def test_a_published_zero_stays_and_a_total_alone_is_not_suppressed() -> None:
    exprs = [{"a": 1, "b": 1}, {"a": 1}, {"b": 1}]
    values: list[float | None] = [3, None, 0]
    prot = D.protect(exprs, values)
    assert prot.complementary  # 3 − 0 gives a: something must go
    assert _attack(exprs, _run(exprs, values)) == []


def test_chain_across_two_tables() -> None:
    # table 1: allocated per cell x, y and lost per cell (x − ox, y − oy); table 2: observed ox, oy
    # and their total. lost_x is small: hiding it alone leaves x − ox from table 2.
    # The cell sizes are repeated in three more tables (costs, balance, ...), so giving them up
    # costs more than the observed counts.
    exprs = [{"x": 1}, {"y": 1}, {"x": 1, "ox": -1}, {"y": 1, "oy": -1},   # consort-like
             {"ox": 1}, {"oy": 1}, {"ox": 1, "oy": 1}]                       # attrition-like
    exprs += [{"x": 1}, {"y": 1}] * 3
    values: list[float | None] = [101, 98, None, 13, 98, 85, 183] + [101, 98] * 3
    assert _attack(exprs, values) == [2]
    out = _run(exprs, values)
    assert _attack(exprs, out) == []
    assert out[0] == 101 and out[1] == 98 and out[6] == 183  # sizes and the total stay
    assert out[4] is None and out[5] is None  # the observed counts swap


def test_same_count_in_several_tables_is_suppressed_everywhere() -> None:
    exprs = [{"x": 1}, {"x": 1}, {"x": 1, "y": 1}, {"y": 1}]
    values: list[float | None] = [None, 4, 12, 8]
    out = _run(exprs, values)
    assert out[1] is None
    assert _attack(exprs, out) == []


def test_swap_between_cells_keeps_shared_totals() -> None:
    # a 2×2 table with margins: one small interior cell needs complements in its row and column
    exprs = [{"a": 1}, {"b": 1}, {"c": 1}, {"d": 1},
             {"a": 1, "b": 1}, {"c": 1, "d": 1}, {"a": 1, "c": 1}, {"b": 1, "d": 1}, {"a": 1, "b": 1, "c": 1, "d": 1}]
    values: list[float | None] = [None, 20, 30, 40, 22, 70, 32, 60, 92]
    out = _run(exprs, values)
    assert _attack(exprs, out) == []
    assert out[8] == 92 and out[4] == 22  # the total and the margin the swap stays inside
    assert out[1] is None  # the swap partner of the small cell


def _tables() -> dict[str, pd.DataFrame]:
    """A small study's consort and attrition tables, primary suppression applied."""
    cells = D.CELLS
    consort = pd.DataFrame(
        [("assessed", "pilot", "all", "", "42"), ("excluded", "pilot", "all", "all reasons", "<5"),
         ("excluded", "pilot", "all", "(other)", "<5")]
        + [("allocated", "pilot", c, "", str(n)) for c, n in zip(cells, (12, 10, 9, 9))]
        + [("lost_to_follow_up", "pilot", c, "", "<5") for c in cells]
        + [("analysed", "pilot", c, "", str(n)) for c, n in zip(cells, (10, 9, 8, 8))]
        + [("assessed", "comparison", "all", "", "40"), ("lost_to_follow_up", "comparison", "all", "", "6"),
           ("analysed", "comparison", "all", "", "34")],
        columns=["stage", "group", "cell", "reason", "n"])
    attrition = pd.DataFrame(
        [("rate", c, "", str(a), str(o), 1 - o / a, "") for c, a, o in zip(cells, (12, 10, 9, 9), (11, 9, 8, 8))]
        + [("rate", "all", "", "40", "36", 0.1, ""), ("lee_bounds", "", "frame_shares", "", "", np.nan, "36")],
        columns=["section", "cell", "contrast", "n_assigned", "n_observed", "attrition_rate", "n"])
    attrition["method"] = ""
    attrition["outcome"] = "kykyviisari_total"
    return {"consort": consort, "attrition": attrition}


def test_tables_issue_attacks_fail_after_protection() -> None:
    res = _tables()
    cells = D.table_cells(res)
    exprs, values = [c.expr for c in cells], [c.value for c in cells]
    before = _attack(exprs, values)
    labels = {(cells[i].table, cells[i].row) for i in before}
    # assessed − Σ allocated gives the excluded total; n_assigned − n_observed the lost counts
    assert ("consort", 1) in labels and ("consort", 7) in labels
    out = D.protect_results(res, 5)
    after = D.table_cells(out)
    assert _attack([c.expr for c in after], [c.value for c in after]) == []
    # every suppressed value is explained in its row
    for name, df in out.items():
        for c in after:
            if c.table == name and c.value is None:
                assert c.column in df.at[c.row, D.NOTE_COLUMN]
    # what was published stays as it was where it could
    assert (out["consort"].loc[out["consort"]["stage"] == "allocated", "n"] != D.COMPLEMENTARY).any()
    assert (res["consort"]["n"] == _tables()["consort"]["n"]).all()  # inputs untouched


def test_hidden_count_blanks_what_reveals_it() -> None:
    out = D.protect_results(_tables(), 5)
    att = out["attrition"]
    hidden = att["n_observed"].astype(str).eq(D.COMPLEMENTARY) | att["n_assigned"].astype(str).eq(D.COMPLEMENTARY)
    assert hidden.any()
    assert att.loc[hidden, "attrition_rate"].isna().all()


# ------------------------------------------------------------------ whole studies
def _num(v: object) -> float | None:
    s = str(v).strip()
    return float(s) if s.replace(".", "", 1).isdigit() else None


@pytest.fixture(scope="module")
def small_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The published tables of a 40-family study (where small cells abound)."""
    from hbeval.demo import write_demo
    from hbeval.pipeline import compute
    from hbeval.study.store import open_study

    d = tmp_path_factory.mktemp("d40") / "study"
    write_demo(d, n_pilot=40, n_comparison=40, seed=1)
    return compute(open_study(d), progress=False).tables


@pytest.fixture(scope="module")
def demo_tables(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    from hbeval.pipeline import compute
    from hbeval.study.store import open_study

    d = tmp_path_factory.mktemp("demo-copy") / "study"
    shutil.copytree(demo_dir, d, ignore=shutil.ignore_patterns(".hbeval"))
    return compute(open_study(d), progress=False).tables


@pytest.mark.parametrize("which", ["small_tables", "demo_tables"])
def test_differencing_recovers_no_suppressed_count(which: str, request: pytest.FixtureRequest) -> None:
    tables = request.getfixturevalue(which)
    cells = D.table_cells(tables)
    hidden = [i for i, c in enumerate(cells) if c.value is None]
    assert hidden  # both studies have small cells
    assert _attack([c.expr for c in cells], [c.value for c in cells]) == []
    for c in cells:  # every suppressed value is explained in its row
        if c.value is None and str(tables[c.table].at[c.row, c.column]) not in ("", "nan", "None"):
            assert c.column in str(tables[c.table].at[c.row, D.NOTE_COLUMN])


def test_the_five_attacks_of_the_issue_fail(small_tables: dict[str, pd.DataFrame]) -> None:
    con, att, base = small_tables["consort"], small_tables["attrition"], small_tables["baseline"]
    pilot = con[con["group"] == "pilot"]

    def n(stage: str, cell: str = "all", reason: str | None = None) -> float | None:
        rows = pilot[(pilot["stage"] == stage) & (pilot["cell"] == cell)]
        if reason is not None:
            rows = rows[rows["reason"] == reason]
        return _num(rows["n"].iloc[0])

    cells = list(D.CELLS)
    # 1. assessed − Σ allocated gives the excluded total
    if n("excluded", reason="all reasons") is None:
        assert n("assessed") is None or any(n("allocated", c) is None for c in cells)
    # 2. attrition n_assigned − n_observed gives lost-to-follow-up counts
    rate = att[att["section"] == "rate"].set_index("cell")
    for c in cells:
        if n("lost_to_follow_up", c) is None:
            assert _num(rate.at[c, "n_assigned"]) is None or _num(rate.at[c, "n_observed"]) is None
    # 3. baseline pilot total − other cells gives a site count
    for _, g in base[base["level"].astype(str).str.len() > 0].groupby(["variable", "level"]):
        by = dict(zip(g["group"], g["n"].map(_num)))
        if any(by[c] is None for c in cells):
            assert by["pilot"] is None or sum(by[c] is None for c in cells) >= 2
    # 4. allocated − n gives the missing counts
    for _, r in base[base["level"].astype(str).str.len() == 0].iterrows():
        if r["group"] in cells and _num(r["missing"]) is None:
            assert _num(r["n"]) is None or n("allocated", r["group"]) is None
    # 5. the exclusion reasons: one suppressed reason is not the total minus the others
    reasons = pilot[(pilot["stage"] == "excluded") & (pilot["reason"] != "all reasons")]
    hid = reasons["n"].map(_num).isna()
    if hid.sum() == 1:
        assert n("excluded", reason="all reasons") is None
