"""HC2 with Bell–McCaffrey degrees of freedom against R's clubSandwich (tests/R/clubsandwich_*)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hbeval.stats.ols import bm_df, ols_hc2

R_DIR = Path(__file__).resolve().parents[1] / "R"
CONTRAST = "cell:frame_shares/teaming"
CONTRAST_TERMS = ("frame_shares", "teaming", "frame_shares:teaming")


def _design(d: pd.DataFrame, terms: list[str]) -> np.ndarray:
    cols = {
        "(Intercept)": np.ones(len(d)),
        "frame_shares": d["frame_shares"].to_numpy(float),
        "teaming": d["teaming"].to_numpy(float),
        "frame_shares:teaming": (d["frame_shares"] * d["teaming"]).to_numpy(float),
        "start": d["start"].to_numpy(float),
    }
    for s in sorted(d["stratum"].unique())[1:]:
        cols[f"factor(stratum){s}"] = (d["stratum"] == s).to_numpy(float)
    return np.column_stack([cols[t] for t in terms])


def _cases() -> list[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    data = pd.read_csv(R_DIR / "small_sample_data.csv")
    exp = pd.read_csv(R_DIR / "clubsandwich_expected.csv")
    out = []
    for (ds, model), ex in exp.groupby(["dataset", "model"], sort=True):
        out.append((str(ds), str(model), data[data["dataset"] == ds], ex))
    return out


CASES = _cases()


@pytest.mark.parametrize("ds,model,data,ex", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bm_df_and_hc2_match_clubsandwich(ds: str, model: str, data: pd.DataFrame, ex: pd.DataFrame) -> None:
    terms = [t for t in ex["term"] if t != CONTRAST]
    X = _design(data, terms)
    y = data["end"].to_numpy(float)
    w = data["w"].to_numpy(float)
    weights = None if np.all(w == 1.0) else w
    fit = ols_hc2(y, X, terms, weights)
    for r in ex.itertuples(index=False):
        if r.term == CONTRAST:
            c = np.array([float(t in CONTRAST_TERMS) for t in terms])
            row = fit.contrast({t: 1.0 for t in CONTRAST_TERMS})
        else:
            c = np.eye(len(terms))[terms.index(r.term)]
            row = fit.row(r.term)
        df = bm_df(X, c, weights)
        assert df == pytest.approx(r.df_bm, rel=1e-8), (ds, model, r.term)
        assert row["estimate"] == pytest.approx(r.estimate, rel=1e-8, abs=1e-12)
        assert row["std_error"] == pytest.approx(r.se_hc2, rel=1e-8)
        # the t interval on the BM df is clubSandwich's conf_int / coef_test
        q = stats.t.ppf(0.975, df)
        assert row["estimate"] - q * row["std_error"] == pytest.approx(r.ci_low, rel=1e-7, abs=1e-10)
        assert row["estimate"] + q * row["std_error"] == pytest.approx(r.ci_high, rel=1e-7, abs=1e-10)
        p = 2 * stats.t.sf(abs(row["estimate"] / row["std_error"]), df)
        assert p == pytest.approx(r.p_value, rel=1e-6)


def test_fixture_covers_every_row() -> None:
    assert sum(len(c[3]) for c in CASES) == 76


def test_bm_df_below_residual_df_and_invariant_to_scale() -> None:
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(30), rng.integers(0, 2, 30), rng.normal(size=30)])
    c = np.array([0.0, 1.0, 0.0])
    df = bm_df(X, c)
    assert 1 < df < 30 - 3
    assert bm_df(X, 5 * c) == pytest.approx(df, rel=1e-12)
    # a balanced two-group design without covariates: Welch-like df = n - 2
    X2 = np.column_stack([np.ones(20), np.repeat([0.0, 1.0], 10)])
    assert bm_df(X2, np.array([0.0, 1.0])) == pytest.approx(18.0, rel=1e-10)


def test_bm_df_nan_when_leverage_is_one() -> None:
    X = np.column_stack([np.ones(6), [1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0.0]])
    assert np.isnan(bm_df(X, np.array([0.0, 0.0, 1.0])))
