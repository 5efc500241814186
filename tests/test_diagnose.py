"""``hbeval diagnose`` end to end: the design stage (only study.toml, or study.toml and
clients.csv), a running study (the demo), the batch, blocks and minimisation procedures, and
the contract's columns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbeval import diagnose as dg
from hbeval.arms import CONTRASTS
from hbeval.cli import main
from hbeval.randomisation.design import is_block_sequence
from hbeval.stats.power import COLUMNS
from hbeval.study.config import load_config

SERVICE_LINES = ("home_help", "family_work", "family_counselling")


def _study(tmp_path: Path, design: str = "", diagnose: str = "", clients: int = 0) -> Path:
    d = tmp_path / "study"
    d.mkdir(parents=True)
    (d / "study.toml").write_text(f'[study]\nname = "design stage"\n\n[design]\n{design}\n\n[diagnose]\n{diagnose}\n',
                                  encoding="utf-8")
    if clients:
        rows = [{"client_id": f"c{i:03d}", "site": ("north", "south")[i % 2],
                 "service_line": SERVICE_LINES[(i // 2) % 3 if i % 5 else 0], "group": "pilot",
                 "enrolled_on": "2026-01-05"} for i in range(clients)]
        rows += [{"client_id": f"k{i:03d}", "site": "north", "service_line": "home_help", "group": "comparison",
                  "enrolled_on": "2026-01-05"} for i in range(10)]
        pd.DataFrame(rows).to_csv(d / "clients.csv", index=False)
    return d


def _run(study: Path, out: Path, *args: str) -> int:
    return main(["diagnose", str(study), "--out", str(out), *args])


def _check_contract(tab: pd.DataFrame, sizes: list[int], sims: int) -> None:
    assert list(tab.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(tab) == len(CONTRASTS) * len(sizes)
    assert sorted(tab["n_pilot"].unique()) == sorted(sizes)
    for n in sizes:
        assert list(tab.loc[tab["n_pilot"] == n, "contrast"]) == list(CONTRASTS)
    assert (tab["sims"] == sims).all()
    for c in ("power", "coverage", "rejection_rate_null"):
        assert tab[c].between(0, 1).all(), c
    assert (tab["mde"] > 0).all()


def test_design_stage_with_only_study_toml(tmp_path, capsys):
    study = _study(tmp_path, diagnose="sd = 1.6\nrho = 0.8\nattrition = 0.2\n"
                                      "effects = { frame_shares = 0.5, teaming = 0.5, interaction = 0.0 }\n"
                                      "ri_draws = 200\nstrata = 2\n")
    out = tmp_path / "out"
    assert _run(study, out, "--n-pilot", "40", "160", "--sims", "300") == 0
    err = capsys.readouterr().err
    assert "[diagnose] n=40: 300 simulations" in err and "done in" in err
    tab = pd.read_csv(out / "diagnosis.csv")
    _check_contract(tab, [40, 160], 300)
    assert (tab["method"] == "ancova_hc2_t; batch; ri 200 draws").all()
    assert (out / "figures" / "power_curve.png").stat().st_size > 10_000
    m = tab.set_index(["contrast", "n_pilot"])
    # four times the families: the margin's MDE halves (within simulation error), power rises
    assert 0.4 < m.loc[("frame_shares", 160), "mde"] / m.loc[("frame_shares", 40), "mde"] < 0.6
    assert m.loc[("frame_shares", 160), "power"] > m.loc[("frame_shares", 40), "power"]
    # the interaction is unpowered against its margins: its MDE is about twice theirs
    assert 1.6 < m.loc[("frame_shares:teaming", 160), "mde"] / m.loc[("frame_shares", 160), "mde"] < 2.4
    assert (m.xs("frame_shares:teaming", level="contrast")["effect"] == 0).all()
    assert tab["rejection_rate_null"].between(0.01, 0.11).all()
    assert tab["rejection_rate_null_ri"].between(0.01, 0.11).all()
    par = json.loads((out / "diagnosis_parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert par["sd_from"] == "study.toml [diagnose]" and par["n_pilot_from"] == "--n-pilot"


def test_defaults_at_the_design_stage_and_reproducible(tmp_path, capsys):
    """No [diagnose] at all: the stated defaults, effects = the MIC, and the same bytes twice."""
    study = _study(tmp_path, diagnose="sims = 100\nri_draws = 0\n")
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(study, a, "--n-pilot", "40") == 0
    assert _run(study, b, "--n-pilot", "40") == 0
    assert (a / "diagnosis.csv").read_bytes() == (b / "diagnosis.csv").read_bytes()
    assert (a / "figures" / "power_curve.png").read_bytes() == (b / "figures" / "power_curve.png").read_bytes()
    tab = pd.read_csv(a / "diagnosis.csv")
    _check_contract(tab, [40], 100)
    assert tab["rejection_rate_null_ri"].isna().all() and (tab["method"] == "ancova_hc2_t; batch; no ri").all()
    par = json.loads((a / "diagnosis_parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert (par["sd"], par["rho"], par["attrition"]) == (dg.DEFAULT_SD, dg.DEFAULT_RHO, dg.DEFAULT_ATTRITION)
    assert par["effects"] == {"frame_shares": 1.0, "teaming": 1.0, "interaction": 0.0}
    assert tab.set_index("contrast").loc["frame_shares", "effect"] == 1.0


@pytest.mark.parametrize("procedure", ["batch", "blocks", "minimisation"])
def test_each_assignment_procedure_with_clients(tmp_path, procedure):
    """Sequential designs are diagnosed as well as the batch one: the study's pilot families'
    strata (the default size), their procedure, and its method label."""
    design = f'strata = ["site", "service_line"]\nassignment = "{procedure}"\nblock_sizes = [4, 8]\n'
    study = _study(tmp_path, design=design, diagnose="sims = 200\nri_draws = 100\nrho = 0.6\n", clients=60)
    out = tmp_path / "out"
    assert _run(study, out) == 0
    tab = pd.read_csv(out / "diagnosis.csv")
    _check_contract(tab, [60], 200)
    assert (tab["method"] == f"ancova_hc2_t; {procedure}; ri 100 draws").all()
    assert tab["rejection_rate_null"].between(0.0, 0.13).all()
    assert (tab["coverage"] > 0.85).all()


def test_simulated_assignments_follow_the_procedure(tmp_path):
    """Blocks: every stratum's sequence cuts into balanced blocks; batch: cells balanced within
    strata; minimisation: margins nearly balanced. Strata at the study's own size are its own."""
    design = 'strata = ["site", "service_line"]\nassignment = "blocks"\nblock_sizes = [4, 8]\n'
    study = _study(tmp_path, design=design, clients=60)
    cfg = load_config(study)
    data = dg.read_study(study, cfg)
    pool = dg.strata_pool(cfg, data)
    assert pool["count"].sum() == 60
    rng = np.random.default_rng(1)
    size = dg.size_strata(pool, 60, rng)
    got = pd.Series(size.labels).value_counts().sort_index()
    assert got.to_dict() == pool.set_index("label")["count"].to_dict()
    draws = dg.assignment_draws(cfg, size, 50, rng)
    for row in draws:
        for g in np.unique(size.stratum):
            assert is_block_sequence(row[size.stratum == g], (4, 8))
    batch = dg.assignment_draws(dataclasses.replace(cfg, assignment_method="batch"), size, 50, rng)
    for g in np.unique(size.stratum):
        counts = np.stack([np.bincount(r[size.stratum == g], minlength=4) for r in batch])
        assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()
    mini = dg.assignment_draws(dataclasses.replace(cfg, assignment_method="minimisation"), size, 50, rng)
    frame = (mini >= 2).sum(axis=1)
    assert (np.abs(frame - 30) <= 6).all()
    scaled = dg.size_strata(pool, 200, rng)
    share = pd.Series(scaled.labels).value_counts(normalize=True).sort_index()
    np.testing.assert_allclose(share.to_numpy(), (pool.set_index("label")["count"] / 60).sort_index().to_numpy(),
                               atol=1 / 200)


def test_on_a_running_study_the_parameters_come_from_its_data(study_copy, tmp_path):
    out = tmp_path / "out"
    assert _run(study_copy, out, "--sims", "100", "--n-pilot", "60", "120") == 0
    tab = pd.read_csv(out / "diagnosis.csv")
    _check_contract(tab, [60, 120], 100)
    par = json.loads((out / "diagnosis_parameters.json").read_text(encoding="utf-8"))["parameters"]
    for k in ("sd", "rho", "attrition"):
        assert par[f"{k}_from"].startswith("the study's data"), (k, par)
    assert 0.3 < par["sd"] < 5 and 0 <= par["rho"] < 1 and 0 <= par["attrition"] < 0.5
    np.testing.assert_allclose(tab["sd"], par["sd"], rtol=1e-9)  # the CSV keeps 10 significant digits


def test_bad_parameters_are_refused(tmp_path, capsys):
    study = _study(tmp_path, diagnose="rho = 1.2\n")
    assert _run(study, tmp_path / "out") == 1
    assert "diagnose.rho" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    ok = _study(tmp_path / "b", diagnose="sims = 100\n")
    assert _run(ok, tmp_path / "out", "--sims", "5") == 2
    assert _run(ok, tmp_path / "out", "--n-pilot", "4") == 2
    assert _run(ok, ok / "inside") == 1  # never inside the study
    bad_effect = _study(tmp_path / "c", diagnose="effects = { frames = 1.0 }\n")
    assert _run(bad_effect, tmp_path / "out") == 1
    assert "diagnose.effects" in capsys.readouterr().err
