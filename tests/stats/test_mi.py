"""Multiple imputation (chained equations), Rubin's rules and the tipping-point root-find.

Peers and simulations:

* **Rubin's rules** against mice 3.15's ``pool()`` (``tests/R/mice_expected.csv``): from its
  ``ubar``, ``b``, ``m`` and ``dfcom`` our formulas give its ``t``, ``df`` (Barnard–Rubin),
  ``riv``, ``lambda`` and ``fmi`` to 1e-10 (deterministic).
* **Pooled estimates** against mice on ``tests/R/mi_data.csv``: the random draws of R cannot be
  reproduced, so the pooled estimates agree only within Monte-Carlo error. The difference of two
  independent MI estimates (ours with ``m`` imputations, mice's with 50) has variance about
  ``b (1/m + 1/50)``; we allow 4 such SDs (a false alarm has probability < 1e-4), using mice's
  ``b``. Standard errors agree to 15 % (the between-imputation part is itself noisy).
* **Simulation** (MAR through an auxiliary variable that is in the imputation model but not in
  the analysis model): complete cases are biased, MI is not, and MI's 95 % CI covers the truth
  93–97 % of the time; under MCAR the two agree. n = 40 and n = 400.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbeval.stats import mi as mi_module
from hbeval.stats.mi import (
    ancova_contrast,
    ancova_fit,
    barnard_rubin_df,
    imputation_block,
    mice,
    pool_covariance,
    rubin,
    rubin_batch,
    tipping_point,
)
from hbeval.stats.ols import ols_hc2
from hbeval.stats.ri import blas_single_thread

R_DIR = Path(__file__).resolve().parents[1] / "R"
M_PEER = 50


@pytest.fixture(scope="module")
def mi_data() -> pd.DataFrame:
    return pd.read_csv(R_DIR / "mi_data.csv")


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    return pd.read_csv(R_DIR / "mice_expected.csv")


def _designs(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    S = pd.get_dummies(d["stratum"], drop_first=True).to_numpy(float)  # east is the reference, as factor() in R
    imp_X = np.column_stack([d.frame_shares, d.teaming, S, d.start, d.pre_cost]).astype(float)
    one = np.ones(len(d))
    X_end = np.column_stack([one, d.frame_shares, d.teaming, d.start, S])
    X_cost = np.column_stack([one, d.frame_shares, d.teaming, d.pre_cost, S])
    return imp_X, X_end, X_cost


# ---------------------------------------------------------------------------- Rubin's rules vs mice::pool
def test_rubin_formulas_match_mice_pool(expected: pd.DataFrame) -> None:
    e = expected[expected["model"].str.startswith("mi_")]
    assert len(e) == 14
    m = e["m"].to_numpy(float)
    ubar, b, dfcom = e["ubar"].to_numpy(float), e["b"].to_numpy(float), e["dfcom"].to_numpy(float)
    t = ubar + (1 + 1 / m) * b
    np.testing.assert_allclose(np.sqrt(t), e["std_error"], rtol=1e-10)
    df = barnard_rubin_df(50, b, t, 193.0)
    np.testing.assert_allclose(df, e["df"], rtol=1e-10)
    riv = (1 + 1 / m) * b / ubar
    np.testing.assert_allclose(riv, e["riv"], rtol=1e-10)
    np.testing.assert_allclose((1 + 1 / m) * b / t, e["lambda"], rtol=1e-10)
    np.testing.assert_allclose((riv + 2 / (df + 3)) / (1 + riv), e["fmi"], rtol=1e-10)
    assert (dfcom == 193).all()


def test_rubin_result_from_estimates() -> None:
    q = np.array([1.0, 1.2, 0.9, 1.1, 1.05])
    u = np.array([0.04, 0.05, 0.045, 0.05, 0.04])
    r = rubin(q, u, dfcom=100)
    b = q.var(ddof=1)
    assert r.estimate == pytest.approx(q.mean())
    assert r.t == pytest.approx(u.mean() + 1.2 * b)
    assert r.df == pytest.approx(float(barnard_rubin_df(5, b, r.t, 100)))
    lo, hi = r.ci()
    assert lo < r.estimate < hi
    assert 0 < r.p_value < 1
    batch = rubin_batch(q[:, None], u[:, None], dfcom=100)
    assert batch["ci_low"][0] == pytest.approx(lo) and batch["std_error"][0] == pytest.approx(r.std_error)
    # no between-imputation variance: the complete-data answer, df -> dfcom-ish
    r0 = rubin(np.ones(5), u, dfcom=100)
    assert r0.b == 0 and r0.t == pytest.approx(u.mean())
    # vector pooling: the diagonal is the scalar rule
    Q = np.column_stack([q, 2 * q])
    U = np.stack([np.diag([ui, 4 * ui]) for ui in u])
    mean, T = pool_covariance(Q, U)
    assert mean[1] == pytest.approx(2 * q.mean()) and T[0, 0] == pytest.approx(r.t) and T[0, 1] == pytest.approx(2.4 * b)


# ---------------------------------------------------------------------------- pooled estimates vs mice
@pytest.mark.parametrize("method", ["norm", "pmm"])
def test_pooled_estimates_match_mice_within_monte_carlo_error(mi_data, expected, method) -> None:
    d = mi_data
    imp_X, X_end, X_cost = _designs(d)
    m = 50
    # mice's predictor matrix: end and cost are each imputed from the complete predictors only
    end = mice(d[["end"]].to_numpy(), imp_X, np.random.default_rng([20261126, 1]), m=m, method=method, columns=("end",))
    cost = mice(d[["cost"]].to_numpy(), imp_X, np.random.default_rng([20261126, 2]), m=m, method=method, columns=("cost",))
    assert np.isfinite(end.values).all() and end.missing.sum() == 45 and cost.missing.sum() == 20
    checked = 0
    models = [("mi_end", X_end, end.column("end"), "start"), ("mi_cost", X_cost, cost.column("cost"), "pre_cost")]
    if method == "pmm":
        # pmm draws observed (skewed, positive) costs where mice's norm draws normal ones (≈ 11 %
        # negative): a different imputation model, not Monte-Carlo error, so only the end score
        # (normal errors: both models are right) is compared
        models = models[:1]
    for model, X, y, third in models:
        for j, term in ((1, "frame_shares"), (2, "teaming"), (3, third)):
            L = np.zeros(X.shape[1])
            L[j] = 1.0
            est, var, dfres = ancova_contrast(X, y, L, se_type="classical")  # mice pools lm's classical SEs
            assert dfres == 193
            r = rubin(est, var, dfcom=dfres)
            row = expected[(expected["model"] == model) & (expected["term"] == term)].iloc[0]
            tol = 4 * np.sqrt(row["b"] * (1 / m + 1 / M_PEER))
            assert abs(r.estimate - row["estimate"]) < tol, (model, term, r.estimate, row["estimate"], tol)
            if method == "norm":  # mice's own method: the SEs agree too
                assert r.std_error == pytest.approx(row["std_error"], rel=0.15)
            checked += 1
    assert checked == 3 * len(models)


def test_complete_data_analysis_matches_lm(mi_data, expected) -> None:
    """With nothing imputed the analysis step is lm: the complete-case rows of the fixture."""
    d = mi_data[mi_data["end"].notna()].reset_index(drop=True)
    _, X_end, _ = _designs(d)
    for j, term in ((1, "frame_shares"), (2, "teaming"), (3, "start")):
        L = np.zeros(X_end.shape[1])
        L[j] = 1
        est, var, dfres = ancova_contrast(X_end, d["end"].to_numpy()[None, :], L, se_type="classical")
        row = expected[(expected["model"] == "cc_end") & (expected["term"] == term)].iloc[0]
        assert est[0] == pytest.approx(row["estimate"], rel=1e-10)
        assert np.sqrt(var[0]) == pytest.approx(row["std_error"], rel=1e-10)
        assert dfres == row["df"]


def test_hc2_variance_matches_ols_hc2() -> None:
    rng = np.random.default_rng(5)
    X = np.column_stack([np.ones(30), rng.integers(0, 2, 30), rng.normal(size=30)])
    y = X @ [1, 0.5, 0.3] + rng.normal(size=30) * (1 + X[:, 1])
    est, var, _ = ancova_contrast(X, y[None, :], np.array([0, 1.0, 0]))
    ref = ols_hc2(y, X).row("x1")
    assert est[0] == pytest.approx(ref["estimate"], rel=1e-10)
    assert np.sqrt(var[0]) == pytest.approx(ref["std_error"], rel=1e-10)


# ---------------------------------------------------------------------------- reproducibility and input checks
def test_same_seed_same_bytes_and_observed_values_kept(mi_data) -> None:
    imp_X, _, _ = _designs(mi_data)
    Y = mi_data[["end", "cost"]].to_numpy()
    for method in ("norm", "pmm"):
        a = mice(Y, imp_X, np.random.default_rng(7), m=20, iterations=5, method=method)
        b = mice(Y, imp_X, np.random.default_rng(7), m=20, iterations=5, method=method)
        c = mice(Y, imp_X, np.random.default_rng(8), m=20, iterations=5, method=method)
        assert a.values.tobytes() == b.values.tobytes()
        assert a.values.tobytes() != c.values.tobytes()
        obs = np.isfinite(Y)
        assert (a.values[:, obs] == Y[obs]).all()
        assert a.iterations == 5 and a.m == 20
    pm = mice(Y, imp_X, np.random.default_rng(7), m=20, method="pmm")
    # pmm imputes observed values only
    assert np.isin(pm.values[:, pm.missing[:, 0], 0], Y[~pm.missing[:, 0], 0]).all()
    summary = pm.to_frame()
    assert list(summary["n_missing"]) == [45, 20]


def _three_incomplete(n: int = 240, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    Y = X @ rng.normal(size=(3, 3)) + rng.normal(size=(n, 3))
    Y[rng.random((n, 3)) < 0.25] = np.nan  # three incomplete columns: every sweep chains them
    return Y, X


@pytest.mark.parametrize("method", ["norm", "pmm"])
def test_imputations_do_not_depend_on_the_block_size(method, monkeypatch) -> None:
    """Issue 17: at national scale the imputations run a block at a time; every random number
    is drawn for all m at once, so any block size (1, 3, m, more than m, the default) gives the
    same bytes, and so does chunking pmm's distance matrix by a few missing rows."""
    Y, X = _three_incomplete()
    ref = mice(Y, X, np.random.default_rng(11), m=7, iterations=4, method=method, block=7)
    for block in (1, 3, 50, None):
        other = mice(Y, X, np.random.default_rng(11), m=7, iterations=4, method=method, block=block)
        assert other.values.tobytes() == ref.values.tobytes(), block
    monkeypatch.setattr(mi_module, "BLOCK_BYTES", 8 * 7 * 200 * 3)  # pmm: 3 missing rows per chunk
    tiny = mice(Y, X, np.random.default_rng(11), m=7, iterations=4, method=method, block=2)
    assert tiny.values.tobytes() == ref.values.tobytes()
    # and the blocks are not all the same: another seed changes them
    assert mice(Y, X, np.random.default_rng(12), m=7, iterations=4, method=method, block=2).values.tobytes() != ref.values.tobytes()


def test_ancova_contrast_does_not_depend_on_the_block_or_a_reused_fit() -> None:
    Y, X = _three_incomplete()
    imp = mice(Y, X, np.random.default_rng(5), m=6, iterations=3)
    n = len(Y)
    shared = np.column_stack([np.ones(n), X])
    per_imp = np.concatenate([np.broadcast_to(shared, (6, n, 4)), imp.column("y1")[:, :, None]], axis=2)
    y = imp.column("y0")
    for Xd, L in ((shared, np.array([0, 1.0, 0, 0])), (per_imp, np.array([0, 0, 1.0, 0, 0]))):
        for se_type in ("HC2", "classical"):
            est, var, df = ancova_contrast(Xd, y, L, se_type, block=6)
            fit = ancova_fit(Xd, m=6, block=1)
            for b in (1, 4, None):
                e2, v2, d2 = ancova_contrast(Xd, y, L, se_type, block=b)
                assert (e2.tobytes(), v2.tobytes(), d2) == (est.tobytes(), var.tobytes(), df)
            e3, v3, _ = fit.contrast(y, L, se_type)  # the same factors, reused
            assert (e3.tobytes(), v3.tobytes()) == (est.tobytes(), var.tobytes())
            # and each imputation's fit is its own OLS: compare with the classical/HC2 formula directly
            Xi = Xd if Xd.ndim == 2 else Xd[2]
            beta = np.linalg.lstsq(Xi, y[2], rcond=None)[0]
            assert est[2] == pytest.approx(float(L @ beta), rel=1e-10, abs=1e-12)


def test_imputation_block_keeps_to_the_memory_budget() -> None:
    # 50,000 families, 32 predictors: 4 arrays of 12.8 MB per imputation -> 5 in 256 MB
    assert imputation_block(40, 50_000, 32) == 5
    assert imputation_block(40, 50_000, 32) * 4 * 8 * 50_000 * 32 <= mi_module.BLOCK_BYTES
    assert imputation_block(40, 100, 5) == 40  # small studies: one block
    assert imputation_block(40, 10**9, 50) == 1  # never fewer than one
    with pytest.raises(ValueError, match="shape"):
        ancova_fit(np.ones((5, 2)), m=2).contrast(np.ones((3, 5)), np.array([1.0, 0]))


def test_bad_input_is_refused() -> None:
    X = np.ones((10, 1))
    with pytest.raises(ValueError, match="method"):
        mice(np.ones(10), X, np.random.default_rng(0), method="cart")
    with pytest.raises(ValueError, match="at least 2"):
        mice(np.ones(10), X, np.random.default_rng(0), m=1)
    y = np.full(10, np.nan)
    y[:2] = 1.0
    with pytest.raises(ValueError, match="too few"):
        mice(y, X, np.random.default_rng(0))
    with pytest.raises(ValueError, match="finite"):
        mice(np.ones(10), np.full((10, 1), np.nan), np.random.default_rng(0))


# ---------------------------------------------------------------------------- simulation: MAR via an auxiliary
def _simulate(n: int, reps: int, mechanism: str, rng: np.random.Generator, m: int = 20):
    """Trial: arm z (half each), baseline x, auxiliary a correlated with the outcome but not in
    the analysis model; y = 1 + 0.5 z + 0.5 x + 0.8 a + e, true effect 0.5. MAR: y is missing
    with probability expit(−1.4 + 1.6 a) in the treated arm (so complete cases over-sample low a
    among the treated: biased); MCAR: 30 % at random. Analysis: y ~ z + x (HC2)."""
    with blas_single_thread():  # small batched products: BLAS threads only add overhead
        return _simulate_reps(n, reps, mechanism, rng, m)


def _simulate_reps(n: int, reps: int, mechanism: str, rng: np.random.Generator, m: int):
    est_cc, est_mi, lo_mi, hi_mi = (np.empty(reps) for _ in range(4))
    for r in range(reps):
        z = np.zeros(n)
        z[rng.permutation(n)[: n // 2]] = 1
        x = rng.normal(size=n)
        a = 0.6 * x + 0.8 * rng.normal(size=n)
        y = 1 + 0.5 * z + 0.5 * x + 0.8 * a + rng.normal(size=n)
        if mechanism == "mar":
            p = np.where(z == 1, 1 / (1 + np.exp(1.4 - 1.6 * a)), 0.15)
        else:
            p = np.full(n, 0.3)
        miss = rng.random(n) < p
        for arm in (0, 1):  # keep ≥ 4 observed per arm (a tiny trial could lose an arm)
            idx = np.flatnonzero((z == arm) & miss)
            if ((z == arm) & ~miss).sum() < 4:
                miss[idx[:4]] = False
        yobs = np.where(miss, np.nan, y)
        X = np.column_stack([np.ones(n), z, x])
        L = np.array([0, 1.0, 0])
        ok = ~miss
        e, _, _ = ancova_contrast(X[ok], y[ok][None, :], L)
        est_cc[r] = e[0]
        imp = mice(yobs, np.column_stack([z, x, a, z * a]), rng, m=m)
        q, u, dfres = ancova_contrast(X, imp.column("y0"), L)
        pooled = rubin_batch(q, u, dfcom=dfres)
        est_mi[r], lo_mi[r], hi_mi[r] = pooled["estimate"], pooled["ci_low"], pooled["ci_high"]
    return est_cc, est_mi, (lo_mi <= 0.5) & (0.5 <= hi_mi)


@pytest.mark.parametrize("n,reps", [(400, 400), (40, 1000)])
def test_mar_mi_unbiased_where_complete_cases_are_not(n: int, reps: int) -> None:
    cc, mi, cover = _simulate(n, reps, "mar", np.random.default_rng([20261126, n]))
    se_cc, se_mi = cc.std(ddof=1) / np.sqrt(reps), mi.std(ddof=1) / np.sqrt(reps)
    bias_cc, bias_mi = cc.mean() - 0.5, mi.mean() - 0.5
    # complete cases: the treated who stay have low a, so the effect is underestimated (≈ −0.18)
    assert bias_cc < -0.1 and abs(bias_cc) > 5 * se_cc, (bias_cc, se_cc)
    # MI: unbiased within 3.5 simulation SEs (and small in absolute terms)
    assert abs(bias_mi) < max(3.5 * se_mi, 0.02), (bias_mi, se_mi)
    # 95 % CI coverage 93–97 % (simulation SE of a 95 % coverage: 1.1 % at 400 reps, 0.7 % at 1000)
    assert 0.93 <= cover.mean() <= 0.97, cover.mean()


def test_mcar_mi_agrees_with_complete_cases() -> None:
    reps = 300
    cc, mi, cover = _simulate(400, reps, "mcar", np.random.default_rng([20261126, 9]))
    # both unbiased; per data set the two estimates differ by far less than the SE (≈ 0.12)
    assert abs(cc.mean() - 0.5) < 3.5 * cc.std(ddof=1) / np.sqrt(reps)
    assert abs(mi.mean() - 0.5) < 3.5 * mi.std(ddof=1) / np.sqrt(reps)
    assert np.mean(np.abs(mi - cc)) < 0.05
    assert abs(cover.mean() - 0.95) < 3 * np.sqrt(0.95 * 0.05 / reps)  # 0.927 at this seed: −1.8 simulation SEs


# ---------------------------------------------------------------------------- tipping point
def test_tipping_point_finds_the_root_of_a_monotone_statistic() -> None:
    calls: list[float] = []

    def f(d: float) -> float:
        calls.append(d)
        return 0.3 + 0.2 * d + 0.01 * d**2  # root at −1.6148 on the way down

    tp = tipping_point(f, direction=-1, max_shift=5, step=0.1)
    assert tp.found and tp.shift == pytest.approx(-10 + np.sqrt(70), abs=1e-6)
    assert tp.value_at_zero == pytest.approx(0.3)
    assert all(c <= 0 for c in calls)
    # deterministic
    assert tipping_point(f, -1, 5, 0.1).shift == tp.shift
    # none within the range
    none = tipping_point(f, -1, 1.0, 0.1)
    assert not none.found and none.searched_to == 1.0
