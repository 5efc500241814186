"""Every study size from 8 pilot families runs (issue 12, "Real pilots").

``hbeval demo`` studies of 8–40 pilot families over several seeds (the seeds that crashed
before among them) go through ``hbeval analyze`` in-process: exit 0, every primary margin has a
finite estimate or a note that says why not, and CONSORT accounts for every allocated family
(allocated = lost_to_follow_up + not_analysed + analysed in every cell). The strata
coarsening rule (``[design] min_stratum_size``) and the report of the smallest study are
checked here too.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbeval.arms import CELLS
from hbeval.cli import main
from hbeval.randomisation.design import POOLED, coarsen_strata
from hbeval.stats.factorial import REASON_ALONE, REASON_NO_START, analysis_status, factorial_data

#: (pilot families, comparison families, seed): the crashes of the issue (24 × seeds 2, 3, 5,
#: 6, 8 and 12 × seed 9) and the sizes 8, 16, 40 over a few seeds
CASES = [
    (8, 10, 1), (8, 10, 5), (8, 10, 7),
    (12, 16, 1), (12, 16, 9),
    (16, 12, 1), (16, 12, 4),
    (24, 30, 2), (24, 30, 3), (24, 30, 5), (24, 30, 6), (24, 30, 8),
    (40, 12, 1), (40, 12, 3),
]
PRIMARY_MARGINS = ("frame_shares", "teaming")


def _demo(tmp: Path, n_pilot: int, n_comparison: int, seed: int) -> Path:
    study = tmp / f"study_{n_pilot}_{seed}"
    assert main(["demo", str(study), "--n-pilot", str(n_pilot), "--n-comparison", str(n_comparison),
                 "--seed", str(seed)]) == 0
    # fewer draws keep the suite quick; 2000 re-randomisations still hit the draws that left a
    # cell empty or aliased with the strata (the LinAlgError of the issue)
    toml = (study / "study.toml").read_text(encoding="utf-8")
    toml = toml.replace("[outcomes]\n", "[outcomes]\nri_draws = 2000\n").replace("[economics]\n", "[economics]\nbootstrap_reps = 200\n")
    (study / "study.toml").write_text(toml, encoding="utf-8")
    return study


def _analyze(study: Path, out: Path) -> dict[str, pd.DataFrame]:
    assert main(["analyze", str(study), "--out", str(out)]) == 0
    return {p.stem: pd.read_csv(p, dtype={"n": str}, keep_default_na=False) for p in (out / "results").glob("*.csv")}


def _check_primary_margins(effects: pd.DataFrame) -> None:
    prim = effects[(effects["outcome"] == "kykyviisari_total") & (effects["spec"] == "primary")]
    for c in PRIMARY_MARGINS:
        row = prim[prim["contrast"] == c]
        assert len(row) == 1, c
        est = pd.to_numeric(row["estimate"], errors="coerce").iloc[0]
        note = str(row["note"].iloc[0]).strip()
        assert math.isfinite(est) or note, f"{c}: no estimate and no note"
        if not math.isfinite(est):
            assert note.startswith(("not estimable", "no data", "n: ")), note


def _count(v: object) -> int | None:
    """A consort count, ``None`` when suppressed."""
    try:
        return int(str(v))
    except ValueError:
        return None


def _check_consort_identity(consort: pd.DataFrame) -> None:
    pilot = consort[consort["group"] == "pilot"]
    for cell in CELLS:
        rows = pilot[pilot["cell"] == cell]
        alloc = _count(rows.loc[rows["stage"] == "allocated", "n"].iloc[0])
        parts = [_count(v) for v in rows.loc[rows["stage"].isin(["lost_to_follow_up", "not_analysed", "analysed"]), "n"]]
        if alloc is None or any(p is None for p in parts):
            continue  # suppressed: the identity is checked on the unsuppressed flow below
        assert alloc == sum(p for p in parts if p is not None), cell


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("small")


@pytest.mark.parametrize(("n_pilot", "n_comparison", "seed"), CASES)
def test_small_study_analyses(tmp_root: Path, n_pilot: int, n_comparison: int, seed: int) -> None:
    study = _demo(tmp_root, n_pilot, n_comparison, seed)
    out = tmp_root / f"out_{n_pilot}_{seed}"
    tables = _analyze(study, out)
    _check_primary_margins(tables["effects"])
    _check_consort_identity(tables["consort"])
    shutil.rmtree(out)
    shutil.rmtree(study)


def test_consort_flow_accounts_for_every_family(tmp_root: Path) -> None:
    """The unsuppressed flow: allocated = lost + not analysed + analysed in every cell, and the
    analysed families are exactly those of the primary estimate."""
    from hbeval.randomisation.consort import consort_flow
    from hbeval.study.scoring import score
    from hbeval.study.store import open_study

    for n_pilot, seed in ((24, 2), (12, 9), (40, 1)):
        s = open_study(_demo(tmp_root, n_pilot, 12, seed))
        fam = s.families()
        scores = score(s.table("measurements"), s.config.instruments)
        flow = consort_flow(fam, scores, s.table("budgets"), s.table("teaming_meetings"), s.config.primary)
        pilot = flow[flow["group"] == "pilot"]
        for cell in CELLS:
            rows = pilot[pilot["cell"] == cell]
            alloc = int(rows.loc[rows["stage"] == "allocated", "n"].sum())
            rest = int(rows.loc[rows["stage"].isin(["lost_to_follow_up", "not_analysed", "analysed"]), "n"].sum())
            assert alloc == rest, (n_pilot, seed, cell)
        assert set(pilot.loc[pilot["stage"] == "not_analysed", "reason"]) <= {REASON_NO_START, REASON_ALONE, "not_estimable"}


def test_analysis_status_matches_the_analysis_sample() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(4, 40))
        end = np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))
        start = np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))
        cell = rng.integers(0, 4, n).astype(float)
        stratum = rng.choice(list("abcdefg"), n).astype(object)
        status = analysis_status(end, cell, stratum, start)
        d = factorial_data(end, cell, stratum, start)
        assert np.array_equal(status == "", d.mask)
        assert set(status) <= {"", "no_end_score", REASON_NO_START, REASON_ALONE}


def test_alone_in_stratum_is_named_in_the_note() -> None:
    from hbeval.outcomes.effects import contribution_note

    status = np.array(["", "", REASON_ALONE, REASON_ALONE, REASON_ALONE, REASON_NO_START, "no_end_score"], dtype=object)
    note = contribution_note(status, min_cell=1)
    assert note == "3 families alone in their stratum and 1 family without a start score did not contribute" or \
        note == "1 family without a start score and 3 families alone in their stratum did not contribute"
    assert "<5 families alone in their stratum" in contribution_note(status, min_cell=5)
    assert contribution_note(np.array(["", "no_end_score"], dtype=object), 5) == ""


def test_coarsen_strata_rule() -> None:
    clients = pd.DataFrame({
        "site": ["A"] * 9 + ["B"] * 3,
        "line": ["x"] * 6 + ["y", "y", "z"] + ["x", "y", "z"],
    })
    lab = coarsen_strata(clients, ["site", "line"], 4)
    assert list(lab[:6]) == ["A|x"] * 6  # large enough: untouched
    assert list(lab[6:9]) == ["A|(pooled)"] * 3 or list(lab[6:9]) == [POOLED] * 3
    assert (lab.value_counts() >= 3).all()
    # the rule depends on the labels only, not on the row order
    perm = np.random.default_rng(0).permutation(len(clients))
    again = coarsen_strata(clients.iloc[perm].reset_index(drop=True), ["site", "line"], 4)
    assert list(again) == list(lab.iloc[perm])
    # the second pass pools what stays small
    assert set(lab[6:]) == {POOLED}


def test_assign_warns_and_records_coarsening(tmp_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hbeval.randomisation import registry

    study = _demo(tmp_root, 24, 8, 3)
    (study / "allocation.sqlite").unlink()
    (study / "assignments.csv").unlink()
    capsys.readouterr()
    assert main(["assign", str(study), "--all"]) == 0
    err = capsys.readouterr().err
    assert "too fine for the four cells" in err and "min_stratum_size" in err
    toml = (study / "study.toml").read_text(encoding="utf-8")
    (study / "study.toml").write_text(toml.replace("[design]\n", "[design]\nmin_stratum_size = 6\n"), encoding="utf-8")
    (study / "allocation.sqlite").unlink()
    (study / "assignments.csv").unlink()
    assert main(["assign", str(study), "--all"]) == 0
    rows = registry.read(study / "allocation.sqlite")
    assert rows["algorithm"].str.contains("min_stratum_size=6").all()
    assert (rows["stratum"].value_counts() >= 6).all()
    a = pd.read_csv(study / "assignments.csv", dtype=str)
    assert (a["stratum"].value_counts() >= 6).all()
    assert main(["assign", str(study), "--verify"]) == 0
    tables = _analyze(study, tmp_root / "out_coarse")
    _check_primary_margins(tables["effects"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_pilot=st.integers(min_value=8, max_value=40), seed=st.integers(min_value=1, max_value=10_000))
def test_analyze_never_raises(tmp_root: Path, n_pilot: int, seed: int) -> None:
    study = _demo(tmp_root, n_pilot, 8, seed)
    out = tmp_root / f"prop_{n_pilot}_{seed}"
    tables = _analyze(study, out)
    _check_primary_margins(tables["effects"])
    _check_consort_identity(tables["consort"])
    shutil.rmtree(out)
    shutil.rmtree(study)


@pytest.mark.slow
def test_report_of_the_smallest_study(tmp_root: Path) -> None:
    study = _demo(tmp_root, 8, 10, 1)
    out = tmp_root / "report_8"
    assert main(["report", str(study), "--out", str(out), "--lang", "en"]) == 0
    assert (out / "report.html").exists()


def test_ri_draw_with_an_empty_cell_has_no_estimate() -> None:
    """A re-drawn assignment that empties a cell (or aliases it with the strata) among the
    analysed families gives NaN, not a LinAlgError; the RI p-value and Westfall–Young leave it out."""
    from hbeval.stats.ri import ri_factorial, ri_pvalue, westfall_young

    rng = np.random.default_rng(1)
    n = 16
    cell = np.tile(np.arange(4), 4).astype(float)
    stratum = np.repeat(["a", "b"], 8).astype(object)
    d = factorial_data(rng.normal(size=n), cell, stratum, rng.normal(size=n))
    good = np.tile(np.arange(4, dtype=np.int8), 4)
    empty = good.copy()
    empty[empty == 3] = 0  # no family in cell 3
    aliased = np.where(np.arange(n) < 8, np.int8(3), good % 3).astype(np.int8)  # cell 3 is stratum a
    null = ri_factorial(d, np.vstack([good, empty, aliased, good[::-1]]))
    for c, v in null.items():
        assert np.isfinite(v[[0, 3]]).all(), c
    assert np.isnan(null["cell:frame_shares/teaming"][1]) and np.isnan(null["cell:frame_shares/teaming"][2])
    assert np.isnan(null["frame_shares:teaming"][1])
    p = ri_pvalue(0.1, null["cell:frame_shares/teaming"])
    assert 0 < p <= 1
    wy = westfall_young([0.1, 0.2], np.column_stack([null["frame_shares"], null["cell:frame_shares/teaming"]]))
    assert np.isfinite(wy).all()
