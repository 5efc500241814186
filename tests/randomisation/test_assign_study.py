"""assign and balance on a real study folder (hetu in clients.csv, ingestion by open_study)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("hbeval.study.store")

from hbeval.demo import write_demo  # noqa: E402
from hbeval.randomisation import allocate as assign  # noqa: E402
from hbeval.randomisation.balance import balance_results  # noqa: E402
from hbeval.randomisation.design import draw_batch  # noqa: E402
from hbeval.randomisation.redraw import procedure, redraw  # noqa: E402
from hbeval.study.store import open_study  # noqa: E402

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "study"
    write_demo(root, n_pilot=60, n_comparison=30, seed=17)
    # the demo already ran `assign --all`; start again from an unassigned study
    (root / "assignments.csv").unlink()
    (root / "allocation.sqlite").unlink()
    new = assign.assign_all(root, now=NOW)
    return root, new


def test_assign_all_through_ingestion(demo):
    root, new = demo
    st = open_study(root)
    cl = st.table("clients")
    pilot = cl[cl["group"] == "pilot"]
    want = draw_batch(pilot, list(st.config.strata), st.config.seed)
    assert list(new["client_id"]) == list(want["client_id"])
    assert (new["cell"].to_numpy() == want["cell"].to_numpy()).all()
    ok, msg = assign.verify(root)
    assert ok, msg
    fam = st.families()
    assert fam.loc[fam["group"] == "pilot", "cell"].notna().all()
    assert fam.loc[fam["group"] != "pilot", "cell"].isna().all()
    # the Study object works as well as the path for redraws and the procedure
    ids = list(new["client_id"])
    assert (redraw(st, ids, 20, 3) == redraw(root, ids, 20, 3)).all()
    assert procedure(st)["method"] == "batch"


def test_balance_results_of_the_study(demo):
    root, _ = demo
    st = open_study(root)
    bt = balance_results(st, n_draws=300)
    assert {"variable", "group_a", "group_b", "mean_a", "mean_b", "difference", "std_error", "normalized_difference",
            "p_value"} <= set(bt.columns)
    assert f"{st.config.primary}_start" in set(bt["variable"])
    assert {"joint_f", "omnibus_ri"} <= set(bt["row_type"])
    assert bt.loc[bt["row_type"] == "omnibus_ri", "n_draws"].iloc[0] == 300
    # no identifiers, and counts below the threshold never appear as numbers
    assert not bt.astype(str).apply(lambda c: c.str.contains(r"\bF\d{5}|^[0-9a-f]{16,}$", regex=True)).any().any()
    for c in ("n_a", "n_b"):
        nums = [int(v) for v in bt[c] if isinstance(v, str) and v.isdigit()]
        assert all(v == 0 or v >= st.config.min_cell for v in nums)
    assert np.isfinite(bt.loc[bt["row_type"] == "joint_f", "statistic"].astype(float)).any()


def test_assign_ingests_clients_alone_exactly_as_the_study_does(demo):
    """``assign --client`` reads clients.csv (hetu, names) without ingesting every register table."""
    root, _ = demo
    alone = assign._ingest_clients(root)
    assert alone is not None
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), open_study(root).table("clients").reset_index(drop=True))
    assert not {"hetu", "henkilotunnus", "nimi"} & set(alone.columns)


def test_the_manifest_carries_the_registry_head(demo, tmp_path):
    from hbeval.manifest import build_manifest
    from hbeval.randomisation import registry

    root, _ = demo
    man = build_manifest(open_study(root), tmp_path, ["analyze"])
    head = registry.head_of(root / registry.REGISTRY_NAME)
    assert man["registry"] == head and head["seq"] == len(registry.read(root / registry.REGISTRY_NAME)) > 0
    assert registry.verify(root / registry.REGISTRY_NAME, head=man["registry"]["receipt"])[0]
