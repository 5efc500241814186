"""The subgroup kernel (:mod:`hbeval.stats.heterogeneity`): against R, against direct fits, and
by simulation (size of the HC2 F test and of its randomisation version, power with a true
effect in one service line only).

``tests/R/heterogeneity_expected.csv`` was written by ``tests/R/heterogeneity_fixtures.R``
(estimatr ``lm_robust(se_type = "HC2")`` and ``car::linearHypothesis`` with the HC2 covariance)
from ``tests/R/fixture_data.csv``; the last test re-runs the script live when R is present.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from hbeval.randomisation.design import batch_draws
from hbeval.stats.heterogeneity import (
    _arms,
    _contrast,
    _covariates,
    batched_wald,
    covariate_basis,
    heterogeneity,
    htz_eta,
)
from hbeval.stats.ols import EXACT_LEVERAGE, bm_df

HERE = Path(__file__).resolve().parents[1] / "R"
RTOL = 1e-8
#: simulation tolerance on a rejection rate at α = 0.05 (about 3 Monte-Carlo SEs at 1000 reps)
SIZE_TOL = 0.025


# ---------------------------------------------------------------------------- R fixture
@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    d = pd.read_csv(HERE / "fixture_data.csv")
    d["service_line"] = d["stratum"].str.split("|").str[1]
    q = np.quantile(d["w"], [0, 1 / 3, 2 / 3, 1])  # R's quantile type 7, cut(include.lowest = TRUE)
    d["wgroup"] = pd.cut(d["w"], q, include_lowest=True, right=True, labels=["low", "mid", "high"]).astype(str)
    return d


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    return pd.read_csv(HERE / "heterogeneity_expected.csv", keep_default_na=True)


def _levels(d: pd.DataFrame, var: str) -> tuple[np.ndarray, list[str]]:
    names = sorted(d[var].unique()) if var != "wgroup" else ["low", "mid", "high"]  # R's factor level order
    return d[var].map({v: i for i, v in enumerate(names)}).to_numpy(), names


@pytest.mark.parametrize("var", ["service_line", "wgroup"])
@pytest.mark.parametrize("margin", ["frame_shares", "teaming"])
def test_matches_estimatr_and_car(data, expected, var, margin):
    code, names = _levels(data, var)
    cell = (2 * data["frame_shares"] + data["teaming"]).to_numpy()
    res = heterogeneity(data["end"].to_numpy(), cell, code, data["stratum"].to_numpy(object), data["start"].to_numpy(),
                        margin, level_names=names)
    e = expected[(expected["variable"] == var) & (expected["margin"] == margin)].set_index("level")
    assert [lv.level for lv in res.levels] == names
    for lv in res.levels:
        assert lv.estimate == pytest.approx(e.at[lv.level, "estimate"], rel=RTOL)
        assert lv.std_error == pytest.approx(e.at[lv.level, "std_error"], rel=RTOL)
        assert lv.df == e.at[lv.level, "df"]
    t = e.loc["(heterogeneity)"]
    assert res.statistic_f == pytest.approx(t["statistic"], rel=RTOL)  # naive F: car::linearHypothesis
    assert (res.df_num, res.df_resid) == (t["df_num"], t["df_den"])
    assert res.p_value_f == pytest.approx(t["p_value"], rel=1e-7)
    assert res.statistic == pytest.approx(t["statistic_htz"], rel=1e-7)  # HTZ: clubSandwich::Wald_test
    assert res.df_den == pytest.approx(t["df_den_htz"], rel=1e-7)
    assert res.p_value == pytest.approx(t["p_value_htz"], rel=1e-6)
    assert res.n == len(data) and sum(lv.n for lv in res.levels) == len(data)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not installed")
def test_live_r_reproduces_fixture(tmp_path, expected):
    out = tmp_path / "het.csv"
    r = subprocess.run(["Rscript", str(HERE / "heterogeneity_fixtures.R"), str(HERE / "fixture_data.csv"), str(out)],
                       capture_output=True, text=True, cwd=HERE.parents[1], timeout=120)
    if r.returncode != 0 and ("there is no package" in r.stderr or "no package called" in r.stderr):
        pytest.skip("estimatr or car not installed")
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out), expected, rtol=1e-12)


# ---------------------------------------------------------------------------- the vectorised statistic
def _sim_design(n: int, shares: tuple[float, ...], n_sites: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """Levels (service lines) in the given shares and strata = site × level, as the demo."""
    level = np.repeat(np.arange(len(shares)), np.round(np.array(shares) * n).astype(int))[:n]
    level = np.concatenate([level, np.zeros(n - len(level), dtype=int)])
    site = rng.integers(0, n_sites, n)
    return level, np.array([f"s{a}|l{b}" for a, b in zip(site, level)], dtype=object)


def _statsmodels_wald(y, M, Ot, level, G, start, stratum) -> float:
    X = pd.DataFrame({f"M{g}": M * (level == g) for g in range(G)})
    X["Ot"] = Ot
    X["start"] = start
    X = pd.concat([X, pd.get_dummies(pd.Series(level), prefix="g", drop_first=True, dtype=float),
                   pd.get_dummies(pd.Series(stratum), drop_first=True, dtype=float)], axis=1)
    X.insert(0, "const", 1.0)
    # drop aliased columns (level dummies inside the strata) the way a careful analyst would
    keep: list[str] = []
    for c in X.columns:
        if np.linalg.matrix_rank(X[[*keep, c]].to_numpy()) > len(keep):
            keep.append(c)
    fit = sm.OLS(y, X[keep]).fit(cov_type="HC2")
    R = np.zeros((G - 1, len(keep)))
    for g in range(1, G):
        R[g - 1, keep.index("M0")] = -1.0
        R[g - 1, keep.index(f"M{g}")] = 1.0
    return float(fit.wald_test(R, use_f=False, scalar=True).statistic)


def test_batched_wald_equals_direct_fits_per_draw():
    """The vectorised statistic of every draw equals a statsmodels HC2 Wald test of that draw's
    own fit, with one outcome for all draws and one outcome per draw."""
    rng = np.random.default_rng(5)
    n, G = 90, 3
    level, stratum = _sim_design(n, (0.5, 0.3, 0.2), 2, rng)
    start = rng.normal(size=n)
    W = _covariates(start, level, G, stratum)
    Q = covariate_basis(W)
    draws = batch_draws(stratum, 6, rng)
    M, Ot = (draws // 2).astype(float), (draws % 2).astype(float)
    y1 = start + rng.normal(size=n) * (1 + level)
    Y = start[None, :] + rng.normal(size=(6, n))
    got1 = batched_wald(y1, M, Ot, level, G, Q, _contrast(G))
    got2 = batched_wald(Y, M, Ot, level, G, Q, _contrast(G))
    for b in range(6):
        assert got1[b] == pytest.approx(_statsmodels_wald(y1, M[b], Ot[b], level, G, start, stratum), rel=1e-9)
        assert got2[b] == pytest.approx(_statsmodels_wald(Y[b], M[b], Ot[b], level, G, start, stratum), rel=1e-9)


def test_ri_null_includes_the_observed_statistic_and_an_empty_arm_is_left_out():
    rng = np.random.default_rng(11)
    n = 60
    level, stratum = _sim_design(n, (0.4, 0.3, 0.3), 2, rng)
    start = rng.normal(size=n)
    cell = batch_draws(stratum, 1, rng)[0]
    y = start + 0.5 * (cell // 2) + rng.normal(size=n)
    bad = cell.copy()
    bad[level == 2] = bad[level == 2] % 2  # frame_only everywhere in level 2: the frame margin's arm is empty there
    draws = np.vstack([cell, bad, batch_draws(stratum, 50, rng)])
    res = heterogeneity(y, cell, level, stratum, start, "frame_shares", draws=draws, level_names=["a", "b", "c"])
    # the observed assignment re-drawn gives the observed statistic (y and y − τ̂M − β̂Ot have the same Wald)
    assert res.null[0] == pytest.approx(res.wald, rel=1e-9)
    assert np.isnan(res.null[1]) and res.n_draws == 51
    hits = int(np.sum(res.null[np.isfinite(res.null)] >= res.wald * (1 - 1e-4)))
    assert res.p_value_ri == pytest.approx((1 + hits) / (1 + 51))
    ex = heterogeneity(y, cell, level, stratum, start, "frame_shares", draws=draws[[0, *range(2, 52)]], exact=True,
                       level_names=["a", "b", "c"])
    assert ex.p_value_ri == pytest.approx(hits / 51)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="two levels"):
        heterogeneity(np.ones(8), np.arange(8) % 4, np.zeros(8, dtype=int), np.zeros(8))
    with pytest.raises(ValueError, match="margin"):
        heterogeneity(np.arange(8.0), np.arange(8) % 4, np.arange(8) % 2, np.zeros(8), margin="cell")


def test_htz_with_one_restriction_is_bell_mccaffrey():
    rng = np.random.default_rng(2)
    n = 40
    level, stratum = _sim_design(n, (0.6, 0.4), 2, rng)
    start = rng.normal(size=n)
    cell = batch_draws(stratum, 1, rng)[0]
    X = np.column_stack([_arms((cell // 2).astype(float), (cell % 2).astype(float), np.eye(2)[level]),
                         _covariates(start, level, 2, stratum)])
    c = np.zeros(X.shape[1])
    c[:2] = [-1.0, 1.0]
    assert htz_eta(X, c[None, :]) == pytest.approx(bm_df(X, c), rel=1e-10)


# ---------------------------------------------------------------------------- simulation
def _simulate(n: int, shares: tuple[float, ...], reps: int, delta: float, seed: int) -> tuple:
    """``reps`` trials of the demo's shape: strata site × service line, complete randomisation
    within strata, start score, heteroskedastic errors (SD 1.5 in the first service line, else 1),
    effects 0.4 (frame) and 0.3 (teaming) in every line, plus ``delta`` for frame in line 0 only."""
    rng = np.random.default_rng(seed)
    level, stratum = _sim_design(n, shares, 2, rng)
    cell = batch_draws(stratum, reps, rng)
    F, T = (cell // 2).astype(float), (cell % 2).astype(float)
    start = rng.normal(5, 1.5, n)
    sd = np.where(level == 0, 1.5, 1.0)
    y = 2 + 0.6 * start + 0.3 * level + 0.4 * F + 0.3 * T + delta * F * (level == 0) + rng.normal(size=(reps, n)) * sd
    return level, stratum, start, cell, F, T, y, rng


def _htz_eta_batched(F, T, level, G, Q, Rk, chunk: int = 25) -> np.ndarray:
    """:func:`htz_eta` of every trial's design ``[arms, W]`` at once (the same formula, vectorised
    over trials): ``W``'s basis ``Q`` is shared, only the arms' part ``Z̃ = M_W Z = Q_a R_a`` changes,
    so ``X``'s basis is ``[Q, Q_a]``, ``L = Q_a R_a^{-T} R'`` and ``h = ‖Q_i‖² + ‖Q_a,i‖²``. A trial
    whose arms are not of full rank after ``W`` is left to :func:`htz_eta` itself."""
    reps, n = F.shape
    Z = _arms(F, T, np.eye(G)[level])  # (reps, n, G + 1)
    Zt = Z - Q @ (Q.T @ Z)
    Qa, Ra = np.linalg.qr(Zt)
    d = np.abs(np.diagonal(Ra, axis1=1, axis2=2))
    full = d.min(axis=1) > 1e-8 * np.maximum(d.max(axis=1), 1e-300)
    Ra = np.where(full[:, None, None], Ra, np.eye(G + 1))
    L = Qa @ np.linalg.solve(np.swapaxes(Ra, 1, 2), np.broadcast_to(Rk.T, (reps, *Rk.T.shape)))  # (reps, n, q)
    h = np.sum(Q * Q, axis=1)[None, :] + np.sum(Qa * Qa, axis=2)
    ok = h < 1.0 - EXACT_LEVERAGE
    w, v = np.linalg.eigh(np.swapaxes(L, 1, 2) @ L)
    pos = np.all(w > 0, axis=1)
    root = (v / np.sqrt(np.where(w > 0, w, 1.0))[:, None, :]) @ np.swapaxes(v, 1, 2)
    g = np.where(ok[..., None], (L @ root) / np.sqrt(np.where(ok, 1.0 - h, 1.0))[..., None], 0.0)
    gg = np.sum(g * g, axis=2)
    first = np.sum(np.where(ok, (1.0 - 2.0 * h) * gg**2, 0.0), axis=1)
    q = Rk.shape[0]
    second = np.empty(reps)
    for a in range(0, reps, chunk):  # ‖Σ_i vec(Q_iQ_i') vec(g_ig_i')'‖² with X's basis Q_i = [Q, Q_a]_i
        Qx = np.concatenate([np.broadcast_to(Q, (len(Qa[a : a + chunk]), *Q.shape)), Qa[a : a + chunk]], axis=2)
        Tm = (g[a : a + chunk, :, :, None] * g[a : a + chunk, :, None, :]).reshape(len(Qx), n, q * q)
        S = np.swapaxes(Qx, 1, 2) @ (Qx[..., :, None] * Tm[..., None, :]).reshape(len(Qx), n, -1)
        second[a : a + chunk] = np.sum(S * S, axis=(1, 2))
    eta = np.where(pos, q * (q + 1) / (2.0 * (first + second)), np.nan)
    if not full.all():
        W = Q  # the span of W is all htz_eta needs of it
        Rfull = np.zeros((q, G + 1 + W.shape[1]))
        Rfull[:, : G + 1] = Rk
        for r in np.flatnonzero(~full):
            eta[r] = htz_eta(np.column_stack([Z[r], W]), Rfull)
    return eta


def _rejections(level, stratum, start, F, T, y) -> tuple[float, float]:
    """Rejection rates at 5 % of the HTZ test (the reported one) and of the naive F test."""
    G = int(level.max()) + 1
    W = _covariates(start, level, G, stratum)
    Q = covariate_basis(W)
    Rk = _contrast(G)
    wald = batched_wald(y, F, T, level, G, Q, Rk)
    q, df = G - 1, len(level) - (G + 1) - Q.shape[1]
    p_f = stats.f.sf(wald / q, q, df)
    eta = _htz_eta_batched(F, T, level, G, Q, Rk)
    # the batched η is the kernel's own (a few trials checked against htz_eta on the full design)
    L = np.eye(G)[level]
    Rfull = np.zeros((q, G + 1 + W.shape[1]))
    Rfull[:, : G + 1] = Rk
    for r in range(3):
        assert eta[r] == pytest.approx(htz_eta(np.column_stack([_arms(F[r], T[r], L), W]), Rfull), rel=1e-9)
    p_htz = stats.f.sf((eta - q + 1) / (eta * q) * wald, q, eta - q + 1)
    return float(np.mean(p_htz < 0.05)), float(np.mean(p_f < 0.05))


SHARES_DEMO = (0.27, 0.24, 0.21, 0.18, 0.10)  # home help, family work, counselling, disability, child welfare


def test_wald_test_size_and_power_by_simulation():
    """No heterogeneity: the HC2 Wald test (HTZ) rejects 5 % ± 2.5 points (600 trials of 400
    families in 5 service lines × 2 sites; the Monte-Carlo SE is 0.9 points). A true extra frame
    effect of +1.0 point (the demo's MIC) in home help only (the largest line, 27 %, also the
    noisiest): the power is printed and must be well above the size. The naive F's rates are
    printed beside."""
    reps = 600
    sim = _simulate(400, SHARES_DEMO, reps, 0.0, 20261126)
    size = _rejections(*sim[:3], *sim[4:7])
    sim = _simulate(400, SHARES_DEMO, reps, 1.0, 20261127)
    power = _rejections(*sim[:3], *sim[4:7])
    print(f"\nHC2 Wald, n = 400, 5 service lines, {reps} trials (HTZ / naive F): size {size[0]:.3f} / {size[1]:.3f}; "
          f"power +1.0 in home help {power[0]:.3f} / {power[1]:.3f}")
    assert abs(size[0] - 0.05) <= SIZE_TOL
    assert power[0] > 0.5 and power[0] > 5 * size[0]


def test_wald_test_size_small_study():
    """At 120 families in 3 lines (smallest 24) the HTZ test's size stays within 5 % ± 2.5 points."""
    sim = _simulate(120, (0.5, 0.3, 0.2), 1000, 0.0, 77)
    size = _rejections(*sim[:3], *sim[4:7])
    print(f"\nHC2 Wald, n = 120, 3 lines, 1000 trials (HTZ / naive F): size {size[0]:.3f} / {size[1]:.3f}")
    assert abs(size[0] - 0.05) <= SIZE_TOL


def _ri_pvalues(level, stratum, start, cell, y, D, rng) -> np.ndarray:
    """RI p-values of every trial, as :func:`heterogeneity` computes them, vectorised over trials:
    the null model's τ̂, β̂ by Frisch–Waugh–Lovell, then every trial's draws in one batch."""
    reps, n = y.shape
    G = int(level.max()) + 1
    Q = covariate_basis(_covariates(start, level, G, stratum))
    Rk = _contrast(G)
    F, T = (cell // 2).astype(float), (cell % 2).astype(float)
    Z0 = np.stack([F, T], axis=2)  # (reps, n, 2)
    Zt = Z0 - Q @ (Q.T @ Z0)
    coef = np.linalg.solve(np.swapaxes(Zt, 1, 2) @ Zt, np.einsum("rnk,rn->rk", Zt, y)[..., None])[..., 0]
    y0 = y - coef[:, :1] * F - coef[:, 1:] * T
    obs = batched_wald(y, F, T, level, G, Q, Rk)
    draws = batch_draws(stratum, reps * D, rng)
    null = np.concatenate([batched_wald(np.repeat(y0[a : a + 10], D, axis=0), (draws[a * D : (a + 10) * D] // 2).astype(float),
                                        (draws[a * D : (a + 10) * D] % 2).astype(float), level, G, Q, Rk)
                           for a in range(0, reps, 10)]).reshape(reps, D)
    hits = np.sum(null >= obs[:, None] * (1 - 1e-4), axis=1)
    # the kernel itself gives the same p-values (two trials)
    for r in range(2):
        res = heterogeneity(y[r], cell[r], level, stratum, start, "frame_shares", draws=draws[r * D : (r + 1) * D])
        assert res.p_value_ri == pytest.approx((1 + hits[r]) / (1 + D))
    return (1 + hits) / (1 + D)


def test_ri_test_size_and_power_by_simulation():
    """The randomisation p-value (39 re-randomisations per trial under the batch procedure,
    sharp null at the pooled estimate) rejects 5 % ± 2.5 points with no heterogeneity (1000
    trials of 160 families in 3 service lines × 2 sites); with +0.8 points in the first line
    only its power is printed and well above the size."""
    reps, D, n, shares = 1000, 39, 160, (0.5, 0.3, 0.2)  # P(p ≤ 0.05) = 2/40 exactly under the null
    out = {}
    for delta, seed in ((0.0, 3), (0.8, 4)):
        level, stratum, start, cell, _, _, y, rng = _simulate(n, shares, reps, delta, seed)
        out[delta] = float(np.mean(_ri_pvalues(level, stratum, start, cell, y, D, rng) <= 0.05))
    print(f"\nRI ({D} draws), n = {n}, 3 lines, {reps} trials: size {out[0.0]:.3f}, power (+0.8 in line 0) {out[0.8]:.3f}")
    assert abs(out[0.0] - 0.05) <= SIZE_TOL
    assert out[0.8] > 0.3 and out[0.8] > 5 * out[0.0]
