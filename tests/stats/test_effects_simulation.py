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
  simulation RI uses 250 draws per replication (not the 10,000 of a real analysis), so
  p-values move in steps of 1/251.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hbeval.demo import DemoEffects, simulate_families
from hbeval.randomisation.design import batch_draws
from hbeval.stats.factorial import factorial_data, fit_interaction, fit_main
from hbeval.stats.ri import blas_single_thread, ri_factorial, ri_pvalue

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


def test_effect_run_bias_coverage_and_se(effect_run):
    """One test (not parametrised), so that under pytest-xdist the 500 replications run in
    one worker only. Every check is evaluated and all failures reported together."""
    res, truth, n_r, data = effect_run
    assert 360 <= n_r <= 400
    assert res["rep"].nunique() == R
    problems = []
    for contrast in ("frame_shares", "teaming", "frame_shares:teaming"):
        sub = res[res["contrast"] == contrast]
        est = sub["estimate"].to_numpy()
        bias = est.mean() - truth[contrast]
        mcse = est.std(ddof=1) / np.sqrt(len(est))
        if not (abs(bias) < 3 * mcse and abs(bias) < 0.03):
            problems.append(f"{contrast}: bias {bias:+.4f} (MCSE {mcse:.4f})")
        cover = ((sub["ci_low"] <= truth[contrast]) & (truth[contrast] <= sub["ci_high"])).mean()
        if not 0.93 <= cover <= 0.97:
            problems.append(f"{contrast}: coverage {cover:.3f}")
        ratio = sub["std_error"].mean() / est.std(ddof=1)
        if not 0.9 < ratio < 1.15:
            problems.append(f"{contrast}: mean SE / SD {ratio:.3f}")
    assert not problems, problems
    # RI has power: with the default effects it rejects for teaming in almost every
    # replication (the null test below could otherwise pass with a statistic that ignores
    # the data)
    end, start, cell, stratum, idx = data
    rej = 0
    n = 40
    for r in range(n):
        i = idx[r]
        d = factorial_data(end[i], cell[i], stratum[i], start[i])
        null = ri_factorial(d, batch_draws(stratum[i], 200, np.random.default_rng([303, r]))[:, d.mask])
        rej += ri_pvalue(fit_main(d).row("teaming")["estimate"], null["teaming"]) <= 0.05
    assert rej / n > 0.8


@pytest.fixture(scope="module")
def null_run():
    end, start, cell, stratum, idx = _replications(DemoEffects(frame_shares=0.0, teaming=0.0, interaction=0.0), seed=202)
    p_ri = {"frame_shares": [], "teaming": [], "frame_shares:teaming": []}
    p_t = {k: [] for k in p_ri}
    for r in range(R):
        i = idx[r]
        d = factorial_data(end[i], cell[i], stratum[i], start[i])
        # the design of a replication: complete randomisation within strata of all its families
        draws = batch_draws(stratum[i], 250, np.random.default_rng([202, r]))[:, d.mask]
        null = ri_factorial(d, draws)
        m = fit_main(d)
        it = fit_interaction(d)
        obs = {"frame_shares": m.row("frame_shares"), "teaming": m.row("teaming"), "frame_shares:teaming": it.row("frame_shares:teaming")}
        for c in p_ri:
            p_ri[c].append(ri_pvalue(obs[c]["estimate"], null[c]))
            p_t[c].append(obs[c]["p_value"])
    return p_ri, p_t


def test_ri_and_analytic_pvalues_uniform_under_null(null_run):
    """RI p-values (250 draws each) and HC2 t-test p-values over 500 null replications:
    Kolmogorov–Smirnov against U(0, 1), and the size of a 5 % test."""
    p_ri, p_t = null_run
    problems = []
    for c in p_ri:
        p = np.asarray(p_ri[c])
        ks = stats.kstest(p, "uniform").pvalue
        size = (p <= 0.05).mean()
        if not (ks > 0.01 and 0.02 <= size <= 0.08):
            problems.append(f"RI {c}: KS p {ks:.3f}, size {size:.3f}")
        ks_t = stats.kstest(np.asarray(p_t[c]), "uniform").pvalue
        if not ks_t > 0.01:
            problems.append(f"t-test {c}: KS p {ks_t:.3f}")
    assert not problems, problems
