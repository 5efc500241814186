"""Study glue of multiple imputation and the tipping point (:mod:`hbeval.outcomes.missing`).

* MI rows: named in ``method``, ``spec`` = ``sensitivity``, counts suppressed; with nothing
  missing they equal the complete-case ANCOVA (HC2) exactly.
* The tipping point equals a brute-force grid search written here: every completed data set
  refitted with :func:`hbeval.stats.ols.ols_hc2` (the estimator of ``effects.csv``) and pooled by
  Rubin's rules by hand, on a grid from 0 outward; the root found lies in the first grid step
  where the conclusion changes, and the hand-pooled statistic changes sign across it.
* Byte-reproducible rows for the same seed; another seed gives other rows.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hbeval.report.render as R
from hbeval.outcomes import missing
from hbeval.report import i18n
from hbeval.stats.ols import ols_hc2, strata_dummies
from hbeval.stats.ri import blas_single_thread

N = 160
STRATA = ("a", "b", "c", "d")


def _study(seed: int = 3, miss_end: bool = True, effect: float = 0.6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An outcome frame and wide costs: 160 randomised families in 4 strata (all four cells
    in each), end scores MAR given the pre-period cost (~25 % missing), a second outcome."""
    rng = np.random.default_rng(seed)
    stratum = np.repeat(STRATA, N // 4)
    cell = np.concatenate([rng.permutation(np.tile(np.arange(4), N // 16)) for _ in STRATA])
    fs, tm = cell // 2, cell % 2
    start = rng.normal(5, 1.2, N)
    pre = np.exp(rng.normal(8, 0.7, N))
    end = 1.5 + 0.7 * start + effect * fs + 0.4 * tm + 0.3 * (np.log(pre) - 8) + rng.normal(0, 0.8, N)
    other = 0.5 * end + rng.normal(0, 1, N)
    p_miss = 1 / (1 + np.exp(1.3 - 1.2 * (np.log(pre) - 8)))
    miss = (rng.random(N) < p_miss) if miss_end else np.zeros(N, bool)
    frame = pd.DataFrame({
        "client_id": [f"C{i:04d}" for i in range(N)], "group": "pilot", "cell": pd.array(cell, dtype="Int8"),
        "stratum": stratum, "score_start": start, "score_end": np.where(miss, np.nan, end),
        "other_start": start, "other_end": np.where(miss | (rng.random(N) < 0.1), np.nan, other),
    })
    costs = pd.DataFrame({"client_id": frame["client_id"], "follow_up_total": pre * np.exp(rng.normal(0, 0.3, N)),
                          "pre_total": pre})
    return frame, costs


def _config(seed: int = 11) -> SimpleNamespace:
    return SimpleNamespace(families={"primary": ["score"], "secondary": ["other"]}, seed=seed, min_cell=5,
                           primary="score", mic=1.0)


def test_mi_rows_are_named_sensitivity_rows() -> None:
    frame, costs = _study()
    rows, imps = missing.missing_data_rows(frame, costs, _config())
    mi = rows[~rows["method"].str.startswith("tipping")]
    assert list(mi["outcome"]) == ["score", "score", "other", "other"]
    assert list(mi["contrast"]) == ["frame_shares", "teaming"] * 2
    assert (rows["spec"] == "sensitivity").all()
    assert mi["method"].str.contains("multiple imputation (chained equations, m=40", regex=False).all()
    assert mi["method"].str.contains("Rubin's rules").all()
    oi = imps["score"]
    assert oi is not None and oi.n == N and 0 < oi.n_missing_end < N
    assert mi["note"].iloc[0].startswith(f"{oi.n_missing_end} of {N} randomised families' end scores imputed")
    assert (mi["n"] == str(N)).all()
    assert (mi["ci_low"] < mi["estimate"]).all() and (mi["estimate"] < mi["ci_high"]).all()
    assert np.isfinite(mi["df"]).all()
    tip = rows[rows["method"].str.startswith("tipping")]
    assert len(tip) == 4 and set(tip["contrast"]) == {"frame_shares", "teaming"}
    assert tip["std_error"].isna().all() and tip["note"].str.contains("MIC 1").all()


def test_nothing_missing_gives_the_complete_case_ancova() -> None:
    frame, costs = _study(miss_end=False)
    frame["other_end"] = frame["score_end"]
    rows, imps = missing.missing_data_rows(frame, costs, _config())
    oi = imps["score"]
    assert oi is not None and oi.n_missing_end == 0
    S, _ = strata_dummies(frame["stratum"].to_numpy())
    cell = frame["cell"].astype(int).to_numpy()
    X = np.column_stack([np.ones(N), cell // 2, cell % 2, frame["score_start"], S])
    ref = ols_hc2(frame["score_end"].to_numpy(float), X, names=["(Intercept)", "frame_shares", "teaming", "start", "s1", "s2", "s3"])
    for c in ("frame_shares", "teaming"):
        r = rows[(rows["outcome"] == "score") & (rows["contrast"] == c) & ~rows["method"].str.startswith("tipping")].iloc[0]
        want = ref.row(c)
        assert r["estimate"] == pytest.approx(want["estimate"], rel=1e-10)
        assert r["std_error"] == pytest.approx(want["std_error"], rel=1e-10)
        # B = 0: the Barnard–Rubin df is (dfcom + 1)/(dfcom + 3)·dfcom, a little below the residual df
        assert r["df"] == pytest.approx((want["df"] + 1) / (want["df"] + 3) * want["df"], rel=1e-3)
        assert r["ci_low"] == pytest.approx(want["ci_low"], rel=1e-3)
    tip = rows[rows["method"].str.startswith("tipping")]
    assert tip["estimate"].isna().all() and tip["note"].str.contains("nothing to shift").all()


# ---------------------------------------------------------------------------- tipping point vs brute force
def _hand_pooled(oi: missing.OutcomeImputation, contrast: str, shift: np.ndarray) -> tuple[float, float, float]:
    """Rubin's rules by hand over ols_hc2 fits: (estimate, ci_low, ci_high)."""
    S, _ = strata_dummies(oi.stratum)
    j = oi.imputations.columns.index("end")
    mis = oi.imputations.missing[:, j]
    est, var = [], []
    start = oi.start()
    assert start is not None
    for k in range(oi.imputations.m):
        y = oi.imputations.values[k, :, j] + np.where(mis, shift, 0.0)
        X = np.column_stack([np.ones(oi.n), oi.frame_shares, oi.teaming, start[k], S])
        f = ols_hc2(y, X, names=["1", "frame_shares", "teaming", "start"] + [f"s{i}" for i in range(S.shape[1])])
        r = f.row(contrast)
        est.append(r["estimate"])
        var.append(r["std_error"] ** 2)
        dfcom = f.df_resid
    q, u = np.array(est), np.array(var)
    m = len(q)
    b = q.var(ddof=1)
    t = u.mean() + (1 + 1 / m) * b
    lam = max((1 + 1 / m) * b / t, 1e-4)
    dfold = (m - 1) / lam**2
    dfobs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam)
    df = dfold * dfobs / (dfold + dfobs)
    h = stats.t.ppf(0.975, df) * np.sqrt(t)
    return q.mean(), q.mean() - h, q.mean() + h


@pytest.mark.parametrize("contrast", ["frame_shares", "teaming"])
@pytest.mark.parametrize("scenario", list(missing.SCENARIOS))
def test_tipping_point_equals_brute_force_grid(contrast: str, scenario: str) -> None:
    frame, costs = _study()
    imps = missing.study_imputations(frame, costs, _config().families, seed=11, m=20, iterations=5)
    oi = imps["score"]
    assert oi is not None
    tp, which = missing.find_tipping_point(oi, contrast, scenario)
    assert tp.found
    unit = missing.scenario_shift(oi, contrast, scenario)

    def brute(delta: float) -> float:
        est, lo, hi = _hand_pooled(oi, contrast, unit * delta)
        return {"ci_low": lo, "ci_high": hi, "estimate": est}[which]

    with blas_single_thread():  # 160 × 7 fits: BLAS threads only add overhead
        f0 = brute(0.0)
        assert np.sign(f0) == np.sign(tp.value_at_zero)
        step = 0.04
        direction = np.sign(tp.shift)
        grid = direction * step * np.arange(1, int(abs(tp.shift) / step) + 3)
        first = next(g for g in grid if np.sign(brute(g)) != np.sign(f0))  # brute force: the first grid point past it
        assert abs(first) - step < abs(tp.shift) <= abs(first) + 1e-12
        # and the root itself: the hand-pooled statistic changes sign across it
        assert np.sign(brute(tp.shift - direction * 1e-4)) == np.sign(f0)
        assert np.sign(brute(tp.shift + direction * 1e-4)) != np.sign(f0)


def test_tipping_point_moves_against_the_estimate_and_both_arms_tip_sooner() -> None:
    frame, costs = _study()
    imps = missing.study_imputations(frame, costs, _config().families, seed=11, m=20, iterations=5)
    oi = imps["score"]
    assert oi is not None
    for c in ("frame_shares", "teaming"):
        base = missing.pooled_margin(oi, c)
        one, _ = missing.find_tipping_point(oi, c, "treated_arm")
        both, _ = missing.find_tipping_point(oi, c, "both_arms_opposite")
        assert np.sign(one.shift) == -np.sign(base.estimate)
        assert abs(both.shift) < abs(one.shift)


# ---------------------------------------------------------------------------- reproducibility
def test_mi_rows_are_byte_reproducible() -> None:
    frame, costs = _study()
    a, _ = missing.missing_data_rows(frame, costs, _config(seed=11))
    b, _ = missing.missing_data_rows(frame, costs, _config(seed=11))
    c, _ = missing.missing_data_rows(frame, costs, _config(seed=12))
    csv = lambda d: d.to_csv(index=False, float_format="%.10g").encode()  # noqa: E731
    assert csv(a) == csv(b)
    assert csv(a) != csv(c)
    # each outcome has its own stream: dropping the secondary outcome leaves the primary's rows as they were
    cfg = _config(seed=11)
    cfg.families = {"primary": ["score"]}
    d, _ = missing.missing_data_rows(frame, costs, cfg)
    key = ["outcome", "contrast", "method"]
    merged = a.merge(d, on=key, suffixes=("", "_p"))
    assert len(merged) == len(d) == 6
    assert (merged["estimate"].fillna(-1) == merged["estimate_p"].fillna(-1)).all()


def test_too_few_end_scores_gives_a_note_not_a_number() -> None:
    frame, costs = _study()
    frame.loc[frame["cell"] == 3, "other_end"] = np.nan
    rows, imps = missing.missing_data_rows(frame, costs, _config())
    assert imps["other"] is None
    o = rows[rows["outcome"] == "other"]
    assert o["estimate"].isna().all() and o["note"].str.startswith("not estimable").all()


def test_report_shows_mi_beside_complete_cases_and_the_tipping_points_beside_the_mic() -> None:
    """The report's display of the rows (both languages): CC and MI side by side, δ beside the MIC."""
    frame, costs = _study()
    rows, _ = missing.missing_data_rows(frame, costs, _config())
    cc = rows[~rows["method"].str.startswith("tipping")].assign(spec="primary", estimate=0.5, ci_low=0.1, ci_high=0.9, n="150")
    eff = pd.concat([cc, rows], ignore_index=True)
    for lang in ("en", "fi"):
        tab = R.display_missing_data(eff, ["score", "other"], lang, mic=1.0)
        assert len(tab) == 4 and list(tab["n_cc"]) == ["150"] * 4 and list(tab["n_mi"]) == [str(N)] * 4
        tip = rows[rows["method"].str.startswith("tipping") & (rows["contrast"] == "frame_shares")]["estimate"]
        want = " / ".join(i18n.num(v, lang, 2, sign=True) for v in tip)
        assert tab["tipping_points"].iloc[0] == want and tab["tipping_points"].iloc[2] == ""
        text = " ".join(R.missing_data_sentences(eff, "score", 1.0, lang))
        assert i18n.num(tip.iloc[0], lang, 2, sign=True) in text and i18n.num(1.0, lang, 2) in text
        assert ("40 times" if lang == "en" else "40 kertaa") in text
