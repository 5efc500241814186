"""The multiple-imputation rows of ``cea.csv`` and ``rosi.csv`` (issue 15).

* With no between-imputation variance (every completed data set the same) Rubin's rules give
  the complete-data answer, so the MI row's ΔC, ΔE and Fieller interval equal the complete-case
  row of :func:`hbeval.economics.cea.cea_analysis` on the same families (1e-8).
* With imputation noise, ΔC and ΔE are the means of the per-imputation estimates and Fieller's
  interval is wider than with the within-imputation variance alone.
* ROSI's MI rows repeat the complete-case rows of the randomised comparisons, labelled and
  with a note saying why (register costs are never missing); with missing costs they are empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbeval.arms import CELLS
from hbeval.economics import cea, rosi

N = 200


def _data(seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stratum = np.repeat(["s1", "s2", "s3", "s4"], N // 4)
    cell = np.concatenate([rng.permutation(np.tile(np.arange(4), N // 16 + 1))[: N // 4] for _ in range(4)])
    start = rng.normal(5, 1, N)
    pre = np.exp(rng.normal(8, 0.6, N))
    end = 1 + 0.8 * start + 0.5 * (cell // 2) + 0.4 * (cell % 2) + rng.normal(0, 0.7, N)
    cost = 0.7 * pre + 900 * (cell // 2) - 300 * (cell % 2) + rng.normal(0, 800, N)
    return pd.DataFrame({"group": "pilot", "cell": np.asarray(CELLS, dtype=object)[cell], "code": cell, "stratum": stratum,
                         "cost": cost, "cost_pre": pre, "start": start, "end": end})


def _mi(d: pd.DataFrame, end: np.ndarray, start: np.ndarray, cost: np.ndarray) -> pd.DataFrame:
    return cea.cea_mi_rows(d["code"].to_numpy(), d["stratum"].to_numpy(), d["cost_pre"].to_numpy(), end, start, cost,
                           method="multiple imputation (test)", wtp_reference=1000.0, level=0.95, outcome="score", min_cell=5)


def test_no_imputation_variance_gives_the_complete_case_row() -> None:
    d = _data()
    m = 5
    rep = lambda c: np.repeat(d[c].to_numpy(float)[None, :], m, axis=0)  # noqa: E731
    mi = _mi(d, rep("end"), rep("start"), rep("cost"))
    cc = cea.cea_analysis(d, (0, 1000), 1000.0, 200, 1, outcome="score", min_cell=5).to_frame()
    assert list(mi.columns) == list(cc.columns)
    assert (mi["ci_method"] == cea.CI_METHOD_MI).all() and len(mi) == 6
    assert mi["ci_note"].str.startswith("multiple imputation (test)").all()
    f = cc[cc["ci_method"] == "fieller"].set_index("contrast")
    for r in mi.itertuples():
        ref = f.loc[r.contrast]
        assert r.delta_cost_eur == pytest.approx(ref["delta_cost_eur"], rel=1e-8)
        assert r.delta_effect == pytest.approx(ref["delta_effect"], rel=1e-6)
        assert r.quadrant == ref["quadrant"]
        for c in ("icer", "icer_ci_low", "icer_ci_high"):
            if np.isfinite(ref[c]):
                assert getattr(r, c) == pytest.approx(ref[c], rel=1e-6), (r.contrast, c)
            else:
                assert not np.isfinite(getattr(r, c))
    assert mi["share_ne"].isna().all() and mi["prob_cost_effective"].isna().all()
    assert (mi["n"] == str(N)).all()


def test_imputation_noise_is_pooled_by_rubins_rules() -> None:
    d = _data()
    rng = np.random.default_rng(8)
    m = 10
    miss = rng.random(N) < 0.25
    end = d["end"].to_numpy()[None, :] + np.where(miss, rng.normal(0, 0.7, (m, N)), 0.0)
    cost = np.repeat(d["cost"].to_numpy()[None, :], m, axis=0)
    start = np.repeat(d["start"].to_numpy()[None, :], m, axis=0)
    mi = _mi(d, end, start, cost).set_index("contrast")
    # ΔE is the mean over imputations of the complete-data ΔE
    per = []
    for k in range(m):
        dk = d.assign(end=end[k])
        per.append(cea.cea_analysis(dk, (0,), 1000.0, 100, 1, outcome="score", min_cell=5).contrasts["frame_shares"].delta_effect)
    assert mi.loc["frame_shares", "delta_effect"] == pytest.approx(np.mean(per), abs=1e-6)
    # the ΔE interval is wider than with no imputation noise
    rep = lambda a: np.repeat(a[None, :], m, axis=0)  # noqa: E731
    flat = _mi(d, rep(end.mean(axis=0)), start, cost).set_index("contrast")
    w_mi = mi.loc["teaming", "delta_effect_ci_high"] - mi.loc["teaming", "delta_effect_ci_low"]
    w_flat = flat.loc["teaming", "delta_effect_ci_high"] - flat.loc["teaming", "delta_effect_ci_low"]
    assert w_mi > w_flat


def _rosi_table() -> pd.DataFrame:
    names = list(rosi.COMPARISONS)
    return pd.DataFrame({"comparison": names, "intervention_cost_eur": 100.0, "avoided_cost_eur": 50.0, "rosi": -0.5,
                         "ci_low": -0.9, "ci_high": 0.1, "gross_avoided_year1_eur": 50.0,
                         "rosi_note": ["" if i % 2 else "x" for i in range(len(names))]})


def test_rosi_mi_rows_repeat_the_randomised_rows_with_a_note() -> None:
    tab = _rosi_table()
    out = rosi.rosi_mi_rows(tab, 0, "chained equations, m=40")
    assert list(out["comparison"]) == ["frame_shares vs frame_only (multiple imputation)", "teaming vs no_teaming (multiple imputation)"]
    assert list(out.columns) == list(tab.columns)
    assert (out["rosi"] == -0.5).all()
    assert out["rosi_note"].str.contains("no follow-up cost is missing").all()
    assert out["rosi_note"].str.contains("m=40").all()
    missing_costs = rosi.rosi_mi_rows(tab, 3, "m=40")
    assert missing_costs["rosi"].isna().all() and missing_costs["rosi_note"].str.startswith("not computed").all()
