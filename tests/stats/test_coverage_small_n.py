"""Coverage and size at n = 24 and n = 400: HC2-t on the residual df, HC2-t on the
Bell–McCaffrey df, the randomisation-inference interval (hbeval.stats.ri.ri_ci), and the RI
test's size under the sharp null.

Design: 4 strata of equal size (6 families each at n = 24: the misfit rule is in play),
complete randomisation of the four cells within strata (``batch_draws``), end = start +
effects + error with heteroskedastic errors (SD ``0.5 + |start|``: the variance depends on a
covariate, so effects are constant and the sharp hypotheses hold); 400 RI draws per
replication. ``pytest -s`` prints the table. Tolerances: 3 Monte-Carlo SEs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hbeval.arms import CONTRASTS
from hbeval.randomisation.design import batch_draws
from hbeval.stats.factorial import bm_dfs, factorial_data, fit_interaction, fit_main
from hbeval.stats.ri import blas_single_thread, ri_factorial, ri_inversions, ri_pvalue

EFFECTS = {"frame_shares": 0.5, "teaming": 0.3, "frame_shares:teaming": 0.4}
ALPHA = 0.05
DRAWS = 400
CELL_W = {"cell:frame_only/teaming": {"teaming": 1.0}, "cell:frame_shares/no_teaming": {"frame_shares": 1.0},
          "cell:frame_shares/teaming": {"frame_shares": 1.0, "teaming": 1.0, "frame_shares:teaming": 1.0}}


def _truth(effects: dict[str, float]) -> dict[str, float]:
    f, t, i = effects["frame_shares"], effects["teaming"], effects["frame_shares:teaming"]
    # the main-effects model's margins average the simple effects over the (balanced) other factor
    return {"frame_shares": f + i / 2, "teaming": t + i / 2, "frame_shares:teaming": i,
            "cell:frame_only/teaming": t, "cell:frame_shares/no_teaming": f, "cell:frame_shares/teaming": f + t + i}


def simulate(n: int, reps: int, effects: dict[str, float], seed: int) -> pd.DataFrame:
    """One row per replication and contrast: covered by each interval, rejected by each test."""
    rng = np.random.default_rng(seed)
    strata = np.repeat(np.array(["a", "b", "c", "d"]), n // 4)
    truth = _truth(effects)
    rows = []
    for _ in range(reps):
        cell = batch_draws(strata, 1, rng)[0]
        start = rng.normal(size=n)
        f, t = (cell >= 2).astype(float), (cell % 2).astype(float)
        y = (start + effects["frame_shares"] * f + effects["teaming"] * t + effects["frame_shares:teaming"] * f * t
             + rng.normal(size=n) * (0.5 + np.abs(start)))
        d = factorial_data(y, cell, strata, start)
        main, inter = fit_main(d), fit_interaction(d)
        fits = {c: main.row(c) for c in ("frame_shares", "teaming")}
        fits["frame_shares:teaming"] = inter.row("frame_shares:teaming")
        fits.update({c: inter.contrast(w) for c, w in CELL_W.items()})
        dfs = bm_dfs(d)
        draws = batch_draws(strata, DRAWS, rng)
        null = ri_factorial(d, draws)
        inv = ri_inversions(d, draws)
        for c in CONTRASTS:
            est, se = fits[c]["estimate"], fits[c]["std_error"]
            q_res, q_bm = stats.t.ppf(0.975, fits[c]["df"]), stats.t.ppf(0.975, dfs[c])
            lo, hi = inv[c].bound(-1, ALPHA), inv[c].bound(+1, ALPHA)
            rows.append({
                "n": n, "contrast": c,
                "cover_hc2_t": abs(est - truth[c]) <= q_res * se,
                "cover_hc2_bm": abs(est - truth[c]) <= q_bm * se,
                "cover_ri_ci": lo <= truth[c] <= hi,
                "reject_hc2_t": fits[c]["p_value"] <= ALPHA,
                "reject_hc2_bm": 2 * stats.t.sf(abs(est / se), dfs[c]) <= ALPHA,
                "reject_ri": ri_pvalue(est, null[c]) <= ALPHA,
                "df_bm": dfs[c],
            })
    return pd.DataFrame(rows)


def _table(cov: pd.DataFrame, size: pd.DataFrame) -> pd.DataFrame:
    a = cov.groupby(["n", "contrast"], sort=False)[["cover_hc2_t", "cover_hc2_bm", "cover_ri_ci", "df_bm"]].mean()
    b = size.groupby(["n", "contrast"], sort=False)[["reject_hc2_t", "reject_hc2_bm", "reject_ri"]].mean()
    b.columns = ["size_hc2_t", "size_hc2_bm", "size_ri"]
    return a.join(b)


@pytest.mark.slow
@pytest.mark.parametrize("n,reps", [(24, 500), (400, 120)])
def test_coverage_and_size(n: int, reps: int) -> None:
    with blas_single_thread():
        cov = simulate(n, reps, EFFECTS, seed=20261126 + n)
        size = simulate(n, reps, dict.fromkeys(EFFECTS, 0.0), seed=20261127 + n)
    tab = _table(cov, size)
    print(f"\n[coverage of 95 % intervals and size of 5 % tests; {reps} replications, {DRAWS} RI draws]\n"
          f"{tab.round(3).to_string()}")
    se = np.sqrt(0.95 * 0.05 / reps)  # MC SE of a 95 % coverage
    se_size = np.sqrt(0.05 * 0.95 / reps)  # MC SE of a 5 % rejection rate
    pooled = tab.mean()
    # the RI test is exact under the sharp null: size <= 5 % + 3 MC SE pooled over the six
    # contrasts (their tests share the data, so this is conservative), + 4 MC SE for each
    assert pooled["size_ri"] <= ALPHA + 3 * se_size
    assert (tab["size_ri"] <= ALPHA + 4 * se_size).all()
    # the interval the report leads with, HC2-t on the Bell–McCaffrey df: >= 93 % − 3 MC SE per contrast
    assert (tab["cover_hc2_bm"] >= 0.93 - 3 * se).all()
    assert pooled["cover_hc2_bm"] >= 0.95 - 3 * se
    # the RI interval: >= 93 % − 3 MC SE per contrast (the nuisance plug-in makes it approximate)
    assert (tab["cover_ri_ci"] >= 0.93 - 3 * se).all()
    if n >= 400:  # large n: every interval is close to nominal
        assert (tab[["cover_hc2_t", "cover_hc2_bm", "cover_ri_ci"]] >= 0.95 - 3 * se - 0.01).all().all()
