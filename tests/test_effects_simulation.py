"""Simulation checks of the primary estimator and of randomisation inference on the demo
generator (``hbeval.demo.simulate_families``) with known effects.

Vectorised design of the simulation: one call of ``simulate_families`` generates a large
trial (R × ~400 families, completely randomised within strata, the truth of ``DemoEffects``
built in). It is then split into R independent replications of ~400 families: in every
stratum each replication takes the same number ``m_s`` of families from each of the four
cells (disjoint, at random). Within a replication the assignment is therefore, given the
families, a uniformly random allocation with exactly ``m_s`` families per cell in each
stratum: complete randomisation within strata, the design ``batch_draws`` re-draws. The
per-replication fits are cheap (a few ms), so R = 500 replications run in seconds instead of
calling the generator 500 times.

Stated tolerances:
* bias: |mean estimate − truth| < 3 Monte-Carlo SEs and < 0.03 points (the effect sizes are
  0.1–0.4 points; the SE of one estimate is ≈ 0.1);
* coverage of the 95 % t interval (HC2) within [0.93, 0.97] for each contrast;
* RI p-values under the sharp null: Kolmogorov–Smirnov against U(0, 1), p > 0.01. Inside the
  simulation RI uses 500 draws per replication (not the 10,000 of a real analysis), so
  p-values move in steps of 1/501.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hbeval.demo import DemoEffects, simulate_families
from hbeval.design import batch_draws
from hbeval.effects import factorial_data, fit_interaction, fit_main
from hbeval.inference import blas_single_thread, ri_factorial, ri_pvalue

ITEMS = ("osallisuus", "mieli", "arki", "taidot", "keho")
R = 500
PER_REP = 400


def _totals(f: pd.DataFrame, tp: str) -> np.ndarray:
    m = f[[f"kyky_{i}_{tp}" for i in ITEMS]].to_numpy(float)
    ok = np.isfinite(m)
    s = np.where(ok, m, 0.0).sum(axis=1)
    c = ok.sum(axis=1)
    return np.where(c >= 4, s / np.maximum(c, 1), np.nan)


def _replications(effects: DemoEffects, seed: int):
    """Big trial → (end, start, cell, stratum) arrays and an (R, n_r) index of replications."""
    f = simulate_families(R * PER_REP, 0, seed=seed, effects=effects, n_excluded=0)
    cell = 2 * (f["frame_arm"] == "frame_shares").to_numpy(int) + (f["teaming_arm"] == "teaming").to_numpy(int)
    stratum = f["stratum"].astype(str).to_numpy()
    rng = np.random.default_rng([seed, 1])
    blocks = []
    for s in sorted(set(stratum)):
        per_cell = [rng.permutation(np.flatnonzero((stratum == s) & (cell == k))) for k in range(4)]
        m = min(len(p) for p in per_cell) // R
        if m == 0:
            continue
        blocks.append(np.concatenate([p[: m * R].reshape(R, m) for p in per_cell], axis=1))
    idx = np.concatenate(blocks, axis=1)  # (R, n_r)
    return _totals(f, "end"), _totals(f, "start"), cell, stratum, idx


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    with blas_single_thread():
        yield


@pytest.fixture(scope="module")
def effect_run():
    eff = DemoEffects()
    end, start, cell, stratum, idx = _replications(eff, seed=101)
    rows: list[dict] = []
    for r in range(R):
        i = idx[r]
        d = factorial_data(end[i], cell[i], stratum[i], start[i])
        m = fit_main(d)
        it = fit_interaction(d)
        for name, row in (("frame_shares", m.row("frame_shares")), ("teaming", m.row("teaming")),
                          ("frame_shares:teaming", it.row("frame_shares:teaming"))):
            rows.append({"rep": r, "contrast": name, **row, "n": d.n})
    return pd.DataFrame(rows), eff.margins(), idx.shape[1], (end, start, cell, stratum, idx)


def test_replications_are_the_size_of_a_pilot(effect_run):
    res, _, n_r, _ = effect_run
    assert 360 <= n_r <= 400
    assert res["rep"].nunique() == R


@pytest.mark.parametrize("contrast", ["frame_shares", "teaming", "frame_shares:teaming"])
def test_bias_is_negligible(effect_run, contrast):
    res, truth, _, _ = effect_run
    est = res.loc[res["contrast"] == contrast, "estimate"].to_numpy()
    bias = est.mean() - truth[contrast]
    mcse = est.std(ddof=1) / np.sqrt(len(est))
    assert abs(bias) < 3 * mcse, (contrast, bias, mcse)
    assert abs(bias) < 0.03


@pytest.mark.parametrize("contrast", ["frame_shares", "teaming", "frame_shares:teaming"])
def test_ci_coverage_is_nominal(effect_run, contrast):
    res, truth, _, _ = effect_run
    sub = res[res["contrast"] == contrast]
    cover = ((sub["ci_low"] <= truth[contrast]) & (truth[contrast] <= sub["ci_high"])).mean()
    assert 0.93 <= cover <= 0.97, (contrast, cover)


def test_hc2_se_tracks_the_sampling_sd(effect_run):
    res, _, _, _ = effect_run
    for c in ("frame_shares", "teaming"):
        sub = res[res["contrast"] == c]
        ratio = sub["std_error"].mean() / sub["estimate"].std(ddof=1)
        assert 0.9 < ratio < 1.15, (c, ratio)


@pytest.fixture(scope="module")
def null_run():
    end, start, cell, stratum, idx = _replications(DemoEffects(frame_shares=0.0, teaming=0.0, interaction=0.0), seed=202)
    p_ri = {"frame_shares": [], "teaming": [], "frame_shares:teaming": []}
    p_t = {k: [] for k in p_ri}
    for r in range(R):
        i = idx[r]
        d = factorial_data(end[i], cell[i], stratum[i], start[i])
        # the design of a replication: complete randomisation within strata of all its families
        draws = batch_draws(stratum[i], 500, np.random.default_rng([202, r]))[:, d.mask]
        null = ri_factorial(d, draws)
        m = fit_main(d)
        it = fit_interaction(d)
        obs = {"frame_shares": m.row("frame_shares"), "teaming": m.row("teaming"), "frame_shares:teaming": it.row("frame_shares:teaming")}
        for c in p_ri:
            p_ri[c].append(ri_pvalue(obs[c]["estimate"], null[c]))
            p_t[c].append(obs[c]["p_value"])
    return p_ri, p_t


@pytest.mark.parametrize("contrast", ["frame_shares", "teaming", "frame_shares:teaming"])
def test_ri_pvalues_uniform_under_null(null_run, contrast):
    p_ri, _ = null_run
    p = np.asarray(p_ri[contrast])
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.02 <= (p <= 0.05).mean() <= 0.08  # size of a 5 % test


def test_analytic_pvalues_uniform_under_null(null_run):
    _, p_t = null_run
    for c, p in p_t.items():
        assert stats.kstest(np.asarray(p), "uniform").pvalue > 0.01, c


def test_ri_detects_a_real_effect(effect_run):
    """The uniformity test above could pass with a broken statistic that ignores the data:
    with the default effects, RI rejects for teaming in almost every replication."""
    end, start, cell, stratum, idx = effect_run[3]
    rej = 0
    n = 40
    for r in range(n):
        i = idx[r]
        d = factorial_data(end[i], cell[i], stratum[i], start[i])
        null = ri_factorial(d, batch_draws(stratum[i], 200, np.random.default_rng([303, r]))[:, d.mask])
        rej += ri_pvalue(fit_main(d).row("teaming")["estimate"], null["teaming"]) <= 0.05
    assert rej / n > 0.8
