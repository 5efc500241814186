"""The design-diagnosis kernel (:mod:`hbeval.stats.power`): equal to the primary estimator and
its RI to rounding, and in agreement with normal theory for the ANCOVA margins, the
interaction and the cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from hbeval.arms import CONTRASTS
from hbeval.randomisation.design import batch_draws
from hbeval.stats import power as pw
from hbeval.stats.factorial import factorial_data, factorial_effects
from hbeval.stats.ri import ri_factorial, ri_pvalue

SD, RHO = 1.6, 0.6
SIGMA_E = SD * np.sqrt(1 - RHO**2)  # residual SD of the end score given the start score


def _sims(n: int, sims: int, seed: int, effects: dict[str, float], strata: int = 1, attrition: float = 0.0,
          ri: int = 0) -> pw.SizeSims:
    rng = np.random.default_rng(seed)
    stratum = np.arange(n) % strata
    cells = batch_draws(stratum, sims, rng)
    ri_draws = batch_draws(stratum, ri, rng) if ri else None
    return pw.simulate_chunk(rng, stratum, cells, sd=SD, rho=RHO, attrition=attrition, effects=effects,
                             ri_draws=ri_draws)


# ---------------------------------------------------------------------------- the estimator
def _reference(end: np.ndarray, cell: np.ndarray, stratum: np.ndarray, start: np.ndarray) -> pd.DataFrame:
    d = factorial_data(end, cell, stratum.astype(str).astype(object), start)
    t = factorial_effects(d)
    return t[t["method"] == "ancova_hc2"].set_index("contrast").loc[list(CONTRASTS)], d


def test_vectorised_fits_equal_the_primary_estimator_and_its_ri():
    """Estimates, HC2 SEs, df and RI p-values of every contrast equal hbeval.stats.factorial /
    hbeval.stats.ri on simulated data with strata, attrition and a singleton stratum."""
    rng = np.random.default_rng(11)
    n, S, R = 60, 6, 60
    stratum = np.repeat(np.arange(6), 10)
    stratum[-3:] = 6
    cells = batch_draws(stratum, S, rng)
    start, end, observed = pw.outcome_draws(rng, S, n, SD, RHO, 0.25)
    observed[0, stratum == 6] = [True, False, False]  # a family alone in its stratum: dropped
    end = end + pw.effect_shift(cells, {"frame_shares": 0.4, "teaming": -0.3, "interaction": 0.7})
    part = pw.partial_covariates(start, observed, stratum)
    fits = pw.ancova_sims(part, cells, end)
    ri_draws = batch_draws(stratum, R, rng)
    (p_ri,) = pw.ri_pvalues(part, [end], [fits.est], ri_draws)
    for s in range(S):
        ref, d = _reference(np.where(observed[s], end[s], np.nan), cells[s], stratum, start[s])
        np.testing.assert_allclose(fits.est[s], ref["estimate"].to_numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(fits.se[s], ref["std_error"].to_numpy(), rtol=0, atol=1e-10)
        np.testing.assert_array_equal(fits.df_of()[s], ref["df"].to_numpy())
        assert fits.n_obs[s] == d.n
        null = ri_factorial(d, ri_draws[:, d.mask], precision="float64")
        expect = [ri_pvalue(float(ref.loc[c, "estimate"]), null[c]) for c in CONTRASTS]
        np.testing.assert_allclose(p_ri[s], expect, rtol=0, atol=1e-12)


def test_a_constant_effect_shifts_the_estimate_and_leaves_the_se():
    """The key to power(δ) from null simulations: δ on a contrast moves its estimate by δ exactly."""
    rng = np.random.default_rng(3)
    stratum = np.arange(48) % 3
    cells = batch_draws(stratum, 20, rng)
    start, end, observed = pw.outcome_draws(rng, 20, 48, SD, RHO, 0.1)
    part = pw.partial_covariates(start, observed, stratum)
    base = pw.ancova_sims(part, cells, end)
    moved = pw.ancova_sims(part, cells, end + pw.effect_shift(cells, {"frame_shares": 0.7}))
    np.testing.assert_allclose(moved.est[:, 0] - base.est[:, 0], 0.7, atol=1e-10)
    np.testing.assert_allclose(moved.se, base.se, atol=1e-10)


def test_mde_is_the_smallest_effect_with_the_target_power():
    sims = _sims(60, 400, seed=5, effects={})
    crit = pw.t_crit(sims.null.df_of())
    for j in range(len(CONTRASTS)):
        e, s, c = sims.null.est[:, j], sims.null.se[:, j], crit[:, j]
        m = pw.mde(e, s, c)
        assert np.isfinite(m) and m > 0
        above, below = pw.power_curve(e, s, c, np.array([m + 1e-9, m - 1e-9]))
        assert above >= 0.8 > below


# ---------------------------------------------------------------------------- normal theory
#: theoretical SE of each contrast for a balanced 2×2 of n analysed families, in units of σ_e/√n:
#: a margin compares n/2 with n/2 (2), the interaction a difference of differences of four cells
#: of n/4 (4), a cell contrast n/4 with n/4 (√8)
SE_FACTOR = {"frame_shares": 2.0, "interaction": 4.0, "cell": np.sqrt(8.0)}


def _theory_power(delta: float, se: float, df: int) -> float:
    """Power of the two-sided t-test: ``P(|T| > t_{0.975, df})`` with T noncentral t, ``λ = δ/SE``."""
    q = stats.t.ppf(0.975, df)
    lam = delta / se
    lower = float(np.nan_to_num(stats.nct.cdf(-q, df, lam)))  # ~0, and NaN in scipy for a large λ
    return float(stats.nct.sf(q, df, lam)) + lower


@pytest.mark.parametrize("n", [80, 200])
def test_power_and_mde_of_an_ancova_margin_agree_with_normal_theory(n):
    """SD 1.6, start–end correlation 0.6, no attrition, one stratum, batch assignment: the
    margin's SE is σ_e·2/√n with σ_e = SD·√(1−ρ²); power and MDE equal the (noncentral) t
    values within 3 simulation SEs."""
    S = 4000
    se_theory = SE_FACTOR["frame_shares"] * SIGMA_E / np.sqrt(n)
    df = n - 4  # intercept, start, two arms
    delta = 2.5 * se_theory  # power ≈ 0.70
    sims = _sims(n, S, seed=n, effects={"frame_shares": delta, "teaming": delta})
    tab = pw.summarise(sims, n, {"frame_shares": delta, "teaming": delta}, "test")
    p_theory = _theory_power(delta, se_theory, df)
    mde_theory = optimize.brentq(lambda d: _theory_power(d, se_theory, df) - 0.8, 0, 6 * se_theory)
    slope = (_theory_power(mde_theory * 1.01, se_theory, df) - _theory_power(mde_theory * 0.99, se_theory, df)) / (
        0.02 * mde_theory)
    mc_power = np.sqrt(p_theory * (1 - p_theory) / S)
    mc_mde = np.sqrt(0.8 * 0.2 / S) / slope
    for con in ("frame_shares", "teaming"):
        row = tab.set_index("contrast").loc[con]
        assert abs(row["power"] - p_theory) < 3 * mc_power, (con, row["power"], p_theory)
        assert abs(row["mde"] - mde_theory) < 3 * mc_mde, (con, row["mde"], mde_theory)
        assert abs(row["mean_se"] / se_theory - 1) < 0.02
        assert abs(row["bias"]) < 3 * se_theory / np.sqrt(S)
        assert abs(row["coverage"] - 0.95) < 3 * np.sqrt(0.95 * 0.05 / S)


@pytest.mark.parametrize("n", [80, 200])
def test_interaction_and_cells_agree_with_normal_theory(n):
    S = 2000
    sims = _sims(n, S, seed=1000 + n, effects={})
    tab = pw.summarise(sims, n, {"frame_shares": 0.0, "teaming": 0.0}, "test").set_index("contrast")
    df = n - 5  # intercept, start, three cell indicators
    for con in CONTRASTS[2:]:
        factor = SE_FACTOR["interaction"] if con == "frame_shares:teaming" else SE_FACTOR["cell"]
        se = factor * SIGMA_E / np.sqrt(n)
        mde_theory = optimize.brentq(lambda d, se=se: _theory_power(d, se, df) - 0.8, 0, 6 * se)
        assert abs(tab.loc[con, "mean_se"] / se - 1) < 0.03, con
        assert abs(tab.loc[con, "mde"] / mde_theory - 1) < 0.08, (con, tab.loc[con, "mde"], mde_theory)


def test_null_rejection_rate_is_five_percent():
    """With no effect, the t-test and the RI test reject 5 % ± 3 simulation SEs (strata and attrition)."""
    S = 2000
    sims = _sims(100, S, seed=77, effects={}, strata=4, attrition=0.2, ri=200)
    tab = pw.summarise(sims, 100, {}, "test")
    tol = 3 * np.sqrt(0.05 * 0.95 / S)
    assert (np.abs(tab["rejection_rate_null"] - 0.05) < tol).all(), tab[["contrast", "rejection_rate_null"]]
    assert (np.abs(tab["rejection_rate_null_ri"] - 0.05) < tol).all(), tab[["contrast", "rejection_rate_null_ri"]]
    assert (tab["power"] == tab["rejection_rate_null"]).all()  # no stated effect: power is the null rate


def test_result_object_looks_good_in_a_notebook():
    sims = _sims(40, 50, seed=2, effects={"frame_shares": 1.0})
    table = pw.summarise(sims, 40, {"frame_shares": 1.0}, "test")
    res = pw.DiagnosisResult(table=table, curve=pw.curve_frame(sims, 40, np.linspace(0, 2, 5)),
                             parameters={"sd": SD, "rho": RHO, "attrition": 0.0})
    assert list(res.to_frame().columns[: len(pw.COLUMNS)]) == list(pw.COLUMNS)
    assert "<table" in res._repr_html_() and "Design diagnosis" in res._repr_html_()
    assert pw.true_effects({"frame_shares": 1.0, "teaming": 0.5, "interaction": 0.2}) == pytest.approx(
        dict(zip(CONTRASTS, (1.1, 0.6, 0.2, 0.5, 1.0, 1.7))))
