"""Agreement with R's estimatr::lm_robust (HC2) to 1e-8 relative, on committed fixtures.

``tests/R/estimatr_expected.csv`` was written by ``tests/R/estimatr_fixtures.R`` from
``tests/R/fixture_data.csv`` (see ``tests/R/README.md``). These tests need no R; the last one
re-runs the R script live and is skipped when ``Rscript`` or estimatr is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbeval.stats.factorial import (
    FactorialData,
    factorial_data,
    factorial_effects,
    fit_interaction,
    fit_lin,
    fit_main,
    lin_weights,
)

HERE = Path(__file__).resolve().parents[1] / "R"
RTOL = 1e-8


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(HERE / "fixture_data.csv")


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    e = pd.read_csv(HERE / "estimatr_expected.csv")
    return e.set_index(["model", "term"])


def _fd(data: pd.DataFrame, start: bool = True, y: str = "end") -> FactorialData:
    cell = (2 * data["frame_shares"] + data["teaming"]).to_numpy()
    return factorial_data(data[y].to_numpy(float), cell, data["stratum"].to_numpy(object),
                          data["start"].to_numpy(float) if start else None)


def _check(expected: pd.DataFrame, model: str, term: str, est: float, se: float, df: int | None = None) -> None:
    e = expected.loc[(model, term)]
    assert est == pytest.approx(e["estimate"], rel=RTOL, abs=1e-12), (model, term)
    assert se == pytest.approx(e["std_error"], rel=RTOL), (model, term)
    if df is not None:
        assert df == e["df"], (model, term)


def test_fixture_is_the_complete_case_sample(data):
    d = _fd(data)
    assert d.n == len(data) == 295  # nothing dropped: the fixture is already the analysis sample


@pytest.mark.parametrize("term", ["frame_shares", "teaming", "start"])
def test_main_effects_match_estimatr(data, expected, term):
    fit = fit_main(_fd(data))
    r = fit.row(term)
    _check(expected, "main", term, r["estimate"], r["std_error"], r["df"])
    # estimatr's absorbed fixed effects give the same numbers as the dummies
    _check(expected, "main_fe", term, r["estimate"], r["std_error"])


@pytest.mark.parametrize("term", ["frame_shares", "teaming", "frame_shares:teaming", "start"])
def test_interaction_model_matches_estimatr(data, expected, term):
    fit = fit_interaction(_fd(data))
    r = fit.row(term)
    _check(expected, "interaction", term, r["estimate"], r["std_error"], r["df"])


def test_effects_table_rows_match_estimatr(data, expected):
    tab = factorial_effects(_fd(data)).set_index(["contrast", "method"])
    for contrast, (model, term) in {
        "frame_shares": ("main", "frame_shares"),
        "teaming": ("main", "teaming"),
        "frame_shares:teaming": ("interaction", "frame_shares:teaming"),
        "cell:frame_only/teaming": ("interaction", "teaming"),
        "cell:frame_shares/no_teaming": ("interaction", "frame_shares"),
        "cell:frame_shares/teaming": ("interaction", "cell:frame_shares/teaming"),
    }.items():
        r = tab.loc[(contrast, "ancova_hc2")]
        _check(expected, model, term, r["estimate"], r["std_error"], int(r["df"]))
        # t interval on the residual df
        from scipy import stats

        q = stats.t.ppf(0.975, expected.loc[(model, term), "df"])
        assert r["ci_low"] == pytest.approx(expected.loc[(model, term), "estimate"] - q * expected.loc[(model, term), "std_error"], rel=1e-8)


@pytest.mark.parametrize("term", ["frame_shares", "teaming"])
def test_no_baseline_and_risk_difference_match_estimatr(data, expected, term):
    r = fit_main(_fd(data, start=False)).row(term)
    _check(expected, "main_no_baseline", term, r["estimate"], r["std_error"], r["df"])
    r = fit_main(_fd(data, start=False, y="event")).row(term)
    _check(expected, "risk_difference", term, r["estimate"], r["std_error"], r["df"])


@pytest.mark.parametrize("term", ["frame_shares", "teaming", "start"])
def test_weighted_hc2_matches_estimatr(data, expected, term):
    r = fit_main(_fd(data), weights=data["w"].to_numpy(float)).row(term)
    _check(expected, "main_weighted", term, r["estimate"], r["std_error"], r["df"])


def test_lin_estimator_matches_estimatr(data, expected):
    d = _fd(data)
    fit = fit_lin(d)
    for term in ("c1", "c2", "c3"):
        r = fit.row(term)
        _check(expected, "lin", term, r["estimate"], r["std_error"], r["df"])
    for contrast, w in lin_weights(d).items():
        if contrast.startswith("cell:"):
            continue
        r = fit.contrast(w)
        _check(expected, "lin", contrast, r["estimate"], r["std_error"], r["df"])


def test_hc2_differs_from_classical_se(data, expected):
    """The comparison above can fail: classical OLS SEs differ from HC2 by far more than 1e-8."""
    import statsmodels.api as sm

    d = _fd(data)
    X = np.column_stack([np.ones(d.n), d.frame, d.teaming, d.start, pd.get_dummies(d.stratum, drop_first=True).to_numpy(float)])
    classical = sm.OLS(d.y, X).fit().bse[1]
    assert abs(classical / expected.loc[("main", "frame_shares"), "std_error"] - 1) > 1e-4


def test_live_r_reproduces_fixture(tmp_path):
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("Rscript not installed")
    ok = subprocess.run([rscript, "-e", "library(estimatr)"], capture_output=True)
    if ok.returncode != 0:
        pytest.skip("R package estimatr not installed")
    out = tmp_path / "expected.csv"
    subprocess.run([rscript, str(HERE / "estimatr_fixtures.R"), str(HERE / "fixture_data.csv"), str(out)], check=True, capture_output=True)
    live = pd.read_csv(out)
    committed = pd.read_csv(HERE / "estimatr_expected.csv")
    pd.testing.assert_frame_equal(live, committed, rtol=1e-12)
