"""Pre-specified subgroups as the study sees them (:mod:`hbeval.outcomes.subgroups`): effects.csv
rows with the ``subgroup`` column, notes instead of numbers for small subgroups, costs by
subgroup and their suppression, and a 24-family study that analyses with exit 0."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbeval.arms import CELLS
from hbeval.cli import main
from hbeval.disclosure import COMPLEMENTARY, protect_results
from hbeval.errors import InputError
from hbeval.outcomes.subgroups import (
    SPEC_HETEROGENEITY,
    SPEC_SUBGROUP,
    SUBGROUP_COLUMN,
    add_subgroup_rows,
    subgroup_costs,
    subgroup_effects,
    subgroup_values,
)
from hbeval.randomisation.design import batch_draws
from hbeval.randomisation.redraw import RIDraws
from hbeval.stats.heterogeneity import heterogeneity

LINES = ("home_help", "family_work", "family_counselling", "disability_services", "child_welfare_open_care")


def _frame(n: int = 200, seed: int = 1, small_line_n: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An outcome frame of ``n`` assigned families in 5 service lines, the last with only
    ``small_line_n`` families, strata = 2 sites × line; two families have no service line."""
    rng = np.random.default_rng(seed)
    sizes = [(n - small_line_n) // 4] * 4
    sizes[0] += n - small_line_n - sum(sizes)
    line = np.repeat(np.array(LINES, dtype=object), [*sizes, small_line_n])
    site = rng.integers(0, 2, n)
    stratum = np.array([f"site{a}|{b}" for a, b in zip(site, line)], dtype=object)
    cell = batch_draws(stratum, 1, rng)[0]
    start = rng.normal(5, 1.5, n)
    end = 1 + 0.7 * start + 0.4 * (cell // 2) + 0.3 * (cell % 2) + rng.normal(size=n)
    end[rng.random(n) < 0.1] = np.nan
    ids = np.array([f"c{i:04d}" for i in range(n)], dtype=object)
    frame = pd.DataFrame({"client_id": ids, "cell": cell.astype(float), "stratum": stratum,
                          "kykyviisari_total_start": start, "kykyviisari_total_end": end})
    values = pd.DataFrame({"client_id": ids, "service_line": line.copy()})
    values.loc[[3, 4], "service_line"] = None
    return frame, values


def _ri(frame: pd.DataFrame, n_draws: int = 200) -> RIDraws:
    f = frame.sort_values("client_id")
    return RIDraws(f["client_id"].to_numpy(), batch_draws(f["stratum"].to_numpy(), n_draws, 9), "batch")


def test_rows_levels_notes_and_the_test():
    frame, values = _frame()
    ri = _ri(frame)
    out = subgroup_effects(frame, values, ["service_line"], "kykyviisari_total", "primary", ri, min_cell=5)
    assert list(out.columns)[-1] == SUBGROUP_COLUMN
    for margin in ("frame_shares", "teaming"):
        m = out[out["contrast"] == margin]
        lev = m[m["spec"] == SPEC_SUBGROUP]
        assert list(lev[SUBGROUP_COLUMN]) == [f"service_line={v}" for v in sorted(LINES)]
        small = lev[lev[SUBGROUP_COLUMN] == "service_line=child_welfare_open_care"].iloc[0]
        assert np.isnan(small["estimate"]) and small["n"] == "<5" or int(small["n"]) < 10
        assert "no estimate" in small["note"] and "fewer than 10" in small["note"]
        big = lev[lev[SUBGROUP_COLUMN] != "service_line=child_welfare_open_care"]
        assert big["estimate"].notna().all() and big["note"].isna().all()
        test = m[m["spec"] == SPEC_HETEROGENEITY].iloc[0]
        assert test[SUBGROUP_COLUMN] == "service_line" and np.isnan(test["estimate"])
        assert 0 < test["p_value"] < 1 and 0 < test["p_value_ri"] <= 1
        assert "child_welfare_open_care" in test["note"] and "without a value of service_line" in test["note"]
        assert test["method"].startswith("wald_hc2_htz F(3, ") and "ri=200 re-randomisations" in test["method"]
        # the numbers are the kernel's on the sample of the four large lines (complete cases, values present)
        ok = frame["kykyviisari_total_end"].notna() & values["service_line"].isin(LINES[:4])
        good = sorted(LINES[:4])
        lv = values.loc[ok, "service_line"].map({v: i for i, v in enumerate(good)}).to_numpy()
        pos = pd.Index(ri.client_ids).get_indexer(frame.loc[ok, "client_id"])
        res = heterogeneity(frame.loc[ok, "kykyviisari_total_end"].to_numpy(), frame.loc[ok, "cell"].to_numpy().astype(int),
                            lv, frame.loc[ok, "stratum"].to_numpy(), frame.loc[ok, "kykyviisari_total_start"].to_numpy(),
                            margin, draws=ri.draws[:, pos], level_names=good)
        assert test["p_value"] == pytest.approx(res.p_value) and test["p_value_ri"] == pytest.approx(res.p_value_ri)
        assert list(big["estimate"]) == pytest.approx([e.estimate for e in res.levels])
        assert sum(int(x) for x in big["n"]) == res.n == int(test["n"])


def test_too_few_families_gives_notes_not_numbers():
    frame, values = _frame(n=24, small_line_n=4)
    out = subgroup_effects(frame, values, ["service_line"], "kykyviisari_total", "primary", _ri(frame, 50), min_cell=5)
    assert out["estimate"].isna().all() and out["p_value"].isna().all()
    assert out["note"].notna().all()
    assert out[out["spec"] == SPEC_HETEROGENEITY]["note"].str.startswith("no test: fewer than two levels").all()
    assert set(out["n"].astype(str)) <= {"0", "<5", *(str(k) for k in range(5, 25))}


def test_add_subgroup_rows_puts_the_column_on_every_row():
    frame, values = _frame()
    eff = pd.DataFrame({"outcome": ["kykyviisari_total"], "contrast": ["frame_shares"], "spec": ["primary"]})
    cfg = types.SimpleNamespace(subgroups=(), families={"primary": ["kykyviisari_total"]}, primary="kykyviisari_total",
                                min_cell=5)
    out = add_subgroup_rows(types.SimpleNamespace(config=cfg), eff, frame, None)
    assert SUBGROUP_COLUMN in out.columns and len(out) == 1 and out[SUBGROUP_COLUMN].isna().all()


def test_subgroup_values_refuses_an_unknown_column():
    frame, _ = _frame()
    cfg = types.SimpleNamespace(subgroups=("no_such_column",))
    study = types.SimpleNamespace(config=cfg, table=lambda name: pd.DataFrame({"client_id": frame["client_id"]}))
    with pytest.raises(InputError, match="outcomes.subgroups names 'no_such_column'"):
        subgroup_values(study, frame)


def _wide(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 90
    ids = np.array([f"c{i:03d}" for i in range(n)], dtype=object)
    group = np.where(np.arange(n) < 60, "pilot", "comparison")
    cell = np.where(group == "pilot", np.array(CELLS, dtype=object)[np.arange(n) % 4], None)
    wide = pd.DataFrame({"client_id": ids, "group": group, "cell": cell, "follow_up_total": rng.gamma(2, 3000, n)})
    values = pd.DataFrame({"client_id": ids, "service_line": np.where(np.arange(n) % 3 == 0, "home_help", "family_work")})
    values.loc[5, "service_line"] = None
    return wide, values


def test_subgroup_costs_counts_means_and_suppression():
    wide, values = _wide()
    out = subgroup_costs(wide, values, ["service_line"], 500, 7, min_cell=5)
    assert list(out["subgroup"].unique()) == ["service_line=family_work", "service_line=home_help", "service_line=(missing)"]
    fw = out[out["subgroup"] == "service_line=family_work"].set_index(["group", "cell"])
    m = values["service_line"] == "family_work"
    assert int(fw.at[("pilot", "all"), "n"]) == int((m & (wide["group"] == "pilot")).sum())
    assert fw.at[("comparison", "all"), "mean_eur"] == pytest.approx(
        round(wide.loc[m & (wide["group"] == "comparison"), "follow_up_total"].mean(), 2))
    r = fw.loc[("pilot", "all")]
    assert r["ci_low"] < r["mean_eur"] < r["ci_high"]
    miss = out[out["subgroup"] == "service_line=(missing)"]
    assert (miss["n"].isin(["0", "<5"])).all() and miss["mean_eur"].isna().all()  # one family: shown as <5, no mean
    again = subgroup_costs(wide, values, ["service_line"], 500, 7, min_cell=5)
    pd.testing.assert_frame_equal(out, again)  # seeded


def test_subgroup_costs_complementary_suppression_with_the_baseline():
    """A cell count below min_cell cannot be derived from the level's pilot total minus the
    other cells: protect_results suppresses a complement."""
    rows = [{"subgroup": "service_line=home_help", "group": "pilot", "cell": "all", "period": "follow_up", "n": "20"}]
    for c, k in zip(CELLS, ("6", "6", "<5", "5")):
        rows.append({"subgroup": "service_line=home_help", "group": "pilot", "cell": c, "period": "follow_up", "n": k})
    tab = pd.DataFrame(rows).assign(mean_eur=1000.0)
    out = protect_results({"subgroup_costs": tab}, 5)["subgroup_costs"]
    shown = out["n"].astype(str)
    assert (shown == COMPLEMENTARY).any(), out
    assert out["suppression"].str.contains("subgroup_costs.csv").any()


@pytest.fixture(scope="module")
def small_study(tmp_path_factory) -> Path:
    study = tmp_path_factory.mktemp("sub") / "study"
    assert main(["demo", str(study), "--n-pilot", "24", "--n-comparison", "30", "--seed", "3"]) == 0
    return study


def test_a_24_family_study_with_subgroups_analyses_with_notes(small_study, tmp_path):
    assert 'subgroups = ["service_line"]' in (small_study / "study.toml").read_text(encoding="utf-8")
    out = tmp_path / "out"
    assert main(["analyze", str(small_study), "--out", str(out)]) == 0
    eff = pd.read_csv(out / "results" / "effects.csv", dtype={"n": str})
    sub = eff[eff[SUBGROUP_COLUMN].notna()]
    assert len(sub) and sub["estimate"].isna().all() and sub["note"].notna().all()
    assert (eff[SUBGROUP_COLUMN].isna() == ~eff["spec"].isin([SPEC_SUBGROUP, SPEC_HETEROGENEITY])).all()
    costs = pd.read_csv(out / "results" / "subgroup_costs.csv", dtype={"n": str})
    assert len(costs) and set(costs["subgroup"].str.split("=").str[0]) == {"service_line"}
    assert costs.loc[costs["n"] == "<5", "mean_eur"].isna().all()  # a mean of fewer than 5 families is not shown
    assert (costs["n"] == "<5").any()
