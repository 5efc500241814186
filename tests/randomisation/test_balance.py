"""Balance table against a hand-computed fixture, missing indicators, suppression (the love plot: tests/report/test_plots.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from hbeval.randomisation.balance import COLUMNS, balance_table, expand_covariates, omnibus_statistic

CONTRACT = ["variable", "group_a", "group_b", "mean_a", "mean_b", "difference", "std_error", "normalized_difference",
            "p_value"]


@pytest.fixture
def fam() -> pd.DataFrame:
    return pd.DataFrame({
        "client_id": [f"c{i}" for i in range(8)],
        "cell": [0, 0, 1, 1, 2, 2, 3, 3],
        "x": [1, 3, 2, 4, 5, 7, 6, np.nan],
        "g": ["u", "v", "u", "u", "v", "v", "u", "v"],
    })


def _row(bt, variable, comparison):
    r = bt[(bt["variable"] == variable) & (bt["comparison"] == comparison)]
    assert len(r) == 1
    return r.iloc[0]


def test_hand_computed_fixture(fam):
    bt = balance_table(fam, ["x", "g"], min_cell=1)
    assert set(CONTRACT) <= set(bt.columns) and list(bt.columns) == COLUMNS
    # frame margin, x: a = {1,3,2,4}, b = {5,7,6} (one missing, reported by its indicator)
    r = _row(bt, "x", "frame_shares")
    assert (r["group_a"], r["group_b"]) == ("frame_only", "frame_shares")
    assert (r["n_a"], r["n_b"]) == ("4", "3")
    assert r["mean_a"] == pytest.approx(2.5) and r["mean_b"] == pytest.approx(6.0)
    assert r["sd_a"] == pytest.approx(np.sqrt(5 / 3)) and r["sd_b"] == pytest.approx(1.0)
    assert r["difference"] == pytest.approx(3.5)
    assert r["std_error"] == pytest.approx(np.sqrt(0.75))  # sqrt(5/3/4 + 1/3)
    assert r["statistic"] == pytest.approx(4.041451884327381)
    assert r["df1"] == 5
    assert r["p_value"] == pytest.approx(0.009908526200492223)
    assert r["normalized_difference"] == pytest.approx(3.5 / np.sqrt(4 / 3))  # 3.0310889
    # missing indicator: 0 of 4 vs 1 of 4
    r = _row(bt, "x (missing)", "frame_shares")
    assert r["mean_a"] == 0 and r["mean_b"] == pytest.approx(1 / 4) and r["n_b"] == "4"
    # categorical dummies: g=u is 3/4 vs 1/4
    r = _row(bt, "g=u", "frame_shares")
    assert r["mean_a"] == pytest.approx(0.75) and r["mean_b"] == pytest.approx(0.25)
    assert r["std_error"] == pytest.approx(np.sqrt(0.25 / 4 + 0.25 / 4))
    assert r["p_value"] == pytest.approx(0.20703125)
    assert r["normalized_difference"] == pytest.approx(-1.0)
    # teaming margin, x: a = cells 0,2 = {1,3,5,7}, b = cells 1,3 = {2,4,6}
    r = _row(bt, "x", "teaming")
    assert r["mean_a"] == pytest.approx(4.0) and r["mean_b"] == pytest.approx(4.0) and r["difference"] == pytest.approx(0)
    # a cell against the reference: cell 3 = {6} observed vs cell 0 = {1,3}
    r = _row(bt, "x", "cell:frame_shares/teaming")
    assert (r["group_a"], r["group_b"]) == ("frame_only/no_teaming", "frame_shares/teaming")
    assert r["mean_b"] == 6 and np.isnan(r["std_error"])  # one observed value: no SE


def test_joint_f_matches_statsmodels_and_drops_no_row(fam):
    bt = balance_table(fam, ["x", "g"], min_cell=1)
    _, joint = expand_covariates(fam, ["x", "g"], min_cell=1)
    assert list(joint.columns) == ["x", "x (missing)", "g=v"]
    assert joint["x"].iloc[7] == pytest.approx(4.0)  # observed mean imputed
    for comp, cells_b, sub in (("frame_shares", (2, 3), slice(None)), ("teaming", (1, 3), slice(None)),
                               ("cell:frame_shares/no_teaming", (2,), [0, 1, 4, 5])):
        f = fam.iloc[sub] if not isinstance(sub, slice) else fam
        y = f["cell"].isin(cells_b).astype(float)
        X = joint.loc[f.index]
        X = X.loc[:, X.nunique() > 1]
        fit = sm.OLS(y.to_numpy(), sm.add_constant(X.to_numpy(), has_constant="add")).fit()
        r = _row(bt, "joint_f_test", comp)
        assert r["statistic"] == pytest.approx(fit.fvalue)
        assert r["p_value"] == pytest.approx(fit.f_pvalue)
        assert r["df2"] == len(f) - X.shape[1] - 1  # every family used


def test_randomisation_inference_p_values(fam):
    rng = np.random.default_rng(0)
    draws = np.stack([rng.permutation(fam["cell"].to_numpy()) for _ in range(30)]).astype(np.int8)
    bt = balance_table(fam, ["x", "g"], min_cell=1, draws=draws)
    _, joint = expand_covariates(fam, ["x", "g"], min_cell=1)
    X = sm.add_constant(joint.to_numpy(), has_constant="add")
    y = fam["cell"].isin((2, 3)).to_numpy(float)
    r2 = sm.OLS(y, X).fit().rsquared
    r2d = np.array([sm.OLS(np.isin(d, (2, 3)).astype(float), X).fit().rsquared for d in draws])
    r = _row(bt, "joint_f_test", "frame_shares")
    assert r["p_value_ri"] == pytest.approx((1 + np.sum(r2d >= r2 - 1e-9)) / 31)
    assert r["n_draws"] == 30
    # omnibus: the sum of one-way ANOVA F across the four cells
    x = joint.to_numpy()
    t_obs = sum(stats.f_oneway(*[x[fam["cell"] == c, j] for c in range(4)]).statistic for j in range(x.shape[1]))
    assert omnibus_statistic(x, fam["cell"].to_numpy())[0] == pytest.approx(t_obs)
    t_d = omnibus_statistic(x, draws)
    t_d0 = sum(stats.f_oneway(*[x[draws[0] == c, j] for c in range(4)]).statistic for j in range(x.shape[1]))
    assert t_d[0] == pytest.approx(t_d0)
    o = bt[bt["row_type"] == "omnibus_ri"].iloc[0]
    assert o["statistic"] == pytest.approx(t_obs)
    assert o["p_value"] == pytest.approx((1 + np.sum(t_d >= t_obs - 1e-9 * t_obs)) / 31)


def test_ri_statistics_do_not_depend_on_the_draw_block(fam, monkeypatch):
    """The RI statistics run over blocks of draws (bounded memory); a block of one draw
    and one block of all draws give the same table."""
    import hbeval.randomisation.balance as hb

    rng = np.random.default_rng(1)
    draws = np.stack([rng.permutation(fam["cell"].to_numpy()) for _ in range(40)]).astype(np.int8)
    whole = balance_table(fam, ["x", "g"], min_cell=1, draws=draws)
    monkeypatch.setattr(hb, "BLOCK_BYTES", 8 * len(fam))  # one draw per block
    assert len(hb._draw_blocks(40, len(fam))) == 40
    blocked = balance_table(fam, ["x", "g"], min_cell=1, draws=draws)
    pd.testing.assert_frame_equal(whole, blocked, check_exact=False, rtol=1e-12)
    assert blocked["p_value_ri"].notna().sum() >= 3


def test_small_cells_are_suppressed(fam):
    bt = balance_table(fam, ["x", "g"], min_cell=3)
    cells = bt[bt["comparison"].str.startswith("cell:")]
    assert cells["suppressed"].all() and cells["mean_a"].isna().all() and cells["p_value"].isna().all()
    assert set(cells.loc[cells["row_type"] == "covariate", "n_a"]) == {"<3"}
    # a dummy with a single family in a group would reveal a count: suppressed
    assert _row(bt, "g=u", "frame_shares")["suppressed"]
    assert _row(bt, "x (missing)", "frame_shares")["suppressed"]
    # a continuous variable with enough families is shown
    r = _row(bt, "x", "frame_shares")
    assert not r["suppressed"] and r["mean_a"] == pytest.approx(2.5)


def test_unassigned_rows_are_left_out_and_arm_columns_accepted(fam):
    f = fam.assign(frame_arm=np.where(fam["cell"] >= 2, "frame_shares", "frame_only"),
                   teaming_arm=np.where(fam["cell"] % 2 == 1, "teaming", "no_teaming")).drop(columns="cell")
    extra = pd.DataFrame({"client_id": ["z"], "x": [100.0], "g": ["u"], "frame_arm": [None], "teaming_arm": [None]})
    bt = balance_table(pd.concat([f, extra], ignore_index=True), ["x", "g"], min_cell=1)
    ref = balance_table(fam, ["x", "g"], min_cell=1)
    pd.testing.assert_frame_equal(bt, ref)


def test_on_a_simulated_pilot():
    from hbeval.demo import simulate_families
    from hbeval.randomisation.design import batch_draws, cell_code

    f = simulate_families(200, 0, seed=3)
    f = f[f["group"] == "pilot"].copy()
    f["cell"] = cell_code(f["frame_arm"], f["teaming_arm"])
    f.loc[f.index[:7], "youngest_child_age"] = np.nan
    draws = batch_draws(f["stratum"].to_numpy(), 500, 1)
    bt = balance_table(f, ["household_size", "n_children", "youngest_child_age", "site", "service_line", "area"],
                       min_cell=5, draws=draws)
    assert "youngest_child_age (missing)" in set(bt["variable"])
    j = bt[bt["row_type"] == "joint_f"]
    assert j["p_value"].between(0, 1).all()
    assert j.loc[j["comparison"].isin(["frame_shares", "teaming"]), "p_value_ri"].between(0, 1).all()
    # stratified randomisation: the strata's own dummies are balanced at the margins
    s = bt[bt["variable"].str.startswith("site=") & (bt["comparison"] == "frame_shares")]
    assert (s["normalized_difference"].abs() < 0.1).all()
