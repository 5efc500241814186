"""hbeval assign: batch, sequential (blocks, minimisation), concurrency, concealment, redraws."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbeval.randomisation import allocate as assign
from hbeval.randomisation import registry
from hbeval.randomisation.design import block_sequence, draw_batch, is_block_sequence
from hbeval.errors import InputError, UsageError

NOW = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.timezone.utc)
KEY = "a-test-allocation-key-0123456789"
SITES = ("Hämeenlinna", "Siun sote")
LINES = ("home_help", "family_work", "family_counselling")


def _clients(n: int = 90, seed: int = 0, prefix: str = "C") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "client_id": [f"{prefix}{i:04d}" for i in range(n)],
        "site": rng.choice(SITES, n),
        "service_line": rng.choice(LINES, n),
        "group": rng.choice(["pilot", "pilot", "pilot", "comparison", "excluded"], n),
        "exclusion_reason": "",
        "household_size": rng.integers(2, 7, n),
    })


def _study(path: Path, clients: pd.DataFrame, design: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "study.toml").write_text(f'[study]\nname = "t"\nseed = 99\n{design}', encoding="utf-8")
    clients.to_csv(path / "clients.csv", index=False)
    return path


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("HBEVAL_ALLOCATION_KEY", KEY)
    return KEY.encode()


# ---------------------------------------------------------------- batch
def test_assign_all_is_draw_batch_of_the_pilot_families(tmp_path):
    cl = _clients()
    st = _study(tmp_path / "s", cl)
    new = assign.assign_all(st, now=NOW)
    pilot = cl[cl["group"] == "pilot"]
    want = draw_batch(pilot, ["site", "service_line"], 99)
    assert list(new["client_id"]) == list(want["client_id"])
    assert (new["cell"].to_numpy() == want["cell"].to_numpy()).all()
    csv = pd.read_csv(st / "assignments.csv", dtype=str)
    assert list(csv.columns) == ["client_id", "frame_arm", "teaming_arm", "stratum", "assigned_on"]
    assert list(csv["client_id"]) == sorted(pilot["client_id"])
    assert set(csv["assigned_on"]) == {"2025-03-01"}
    assert assign.verify(st)[0]
    # comparison and excluded families are never assigned
    assert not set(csv["client_id"]) & set(cl.loc[cl["group"] != "pilot", "client_id"])


def test_assign_all_twice_draws_nothing_and_later_families_get_a_new_batch(tmp_path):
    cl = _clients()
    st = _study(tmp_path / "s", cl)
    first = assign.assign_all(st, now=NOW)
    assert assign.assign_all(st, now=NOW).empty
    more = pd.concat([cl, _clients(12, seed=5, prefix="N").assign(group="pilot")])
    more.to_csv(st / "clients.csv", index=False)
    second = assign.assign_all(st, now=NOW + dt.timedelta(days=30))
    assert set(second["client_id"]) == {f"N{i:04d}" for i in range(12)}
    rows = registry.read(st / "allocation.sqlite")
    old = rows[rows["client_id"].isin(first["client_id"])]
    assert (old.set_index("client_id").loc[first["client_id"], "cell"].to_numpy() == first["cell"].to_numpy()).all()
    assert sorted(rows["batch"].unique()) == [1, 2]
    assert set(rows.loc[rows["batch"] == 2, "seed"]) == {"99,2"}
    assert assign.verify(st)[0]


def test_outputs_depend_only_on_inputs_and_now(tmp_path):
    cl = _clients()
    a = _study(tmp_path / "a", cl)
    b = _study(tmp_path / "b", cl.sample(frac=1, random_state=1))  # other row order
    assign.assign_all(a, now=NOW)
    assign.assign_all(b, now=NOW)
    assert (a / "assignments.csv").read_bytes() == (b / "assignments.csv").read_bytes()
    assert (a / "allocation.sqlite").read_bytes() == (b / "allocation.sqlite").read_bytes()
    assert not any(p.name.endswith(("-wal", "-shm", "-journal")) for p in a.iterdir())


def test_run_messages_and_exit_codes(tmp_path, capsys, key):
    st = _study(tmp_path / "s", _clients())
    assert assign.run(st, all=True, now=NOW) == 0
    out = capsys.readouterr().out
    assert "assigned" in out and "frame_shares/teaming" in out
    assert assign.run(st, verify=True) == 0
    with pytest.raises(UsageError):
        assign.run(st)
    with pytest.raises(UsageError):
        assign.run(st, all=True, verify=True)
    c = __import__("sqlite3").connect(st / "allocation.sqlite")
    c.execute("UPDATE allocations SET stratum = 'x' WHERE seq = 3")
    c.commit()
    c.close()
    assert assign.run(st, verify=True) == 1
    assert "row 3 " in capsys.readouterr().err


def test_missing_stratum_column_is_an_input_error(tmp_path):
    st = _study(tmp_path / "s", _clients().drop(columns=["service_line"]))
    with pytest.raises(InputError, match="service_line"):
        assign.assign_all(st, now=NOW)


def test_supplied_assignments_are_not_overwritten(tmp_path, key):
    cl = _clients()
    st = _study(tmp_path / "s", cl)
    pilot = cl[cl["group"] == "pilot"]
    supplied = draw_batch(pilot, ["site"], 5)[["client_id", "frame_arm", "teaming_arm", "stratum"]].assign(assigned_on="2024-05-01")
    supplied.to_csv(st / "assignments.csv", index=False)
    before = (st / "assignments.csv").read_bytes()
    with pytest.raises(InputError, match="supplied its own"):
        assign.assign_all(st, now=NOW)
    with pytest.raises(InputError, match="supplied its own"):
        assign.assign_one(st, pilot["client_id"].iloc[0], now=NOW)
    assert (st / "assignments.csv").read_bytes() == before
    ok, msg = assign.verify(st)
    assert not ok and "supplied" in msg
    # downstream: redraws within the supplied stratum column
    ids = list(supplied["client_id"])
    d = assign.redraw(st, ids, 2000, 1)
    assert d.shape == (2000, len(ids)) and d.dtype == np.int8
    for lab in supplied["stratum"].unique():
        m = (supplied["stratum"] == lab).to_numpy()
        c = np.stack([(d[:, m] == k).sum(axis=1) for k in range(4)], axis=1)
        assert (c.max(axis=1) - c.min(axis=1) <= 1).all()
    assert assign.procedure(st)["method"] == "supplied"


# ---------------------------------------------------------------- sequential
def test_refusals_name_the_family(tmp_path, key):
    cl = _clients()
    cl.loc[cl["group"] == "excluded", "exclusion_reason"] = "moved away"
    st = _study(tmp_path / "s", cl)
    exc = cl.loc[cl["group"] == "excluded", "client_id"].iloc[0]
    cmp_ = cl.loc[cl["group"] == "comparison", "client_id"].iloc[0]
    with pytest.raises(InputError, match=f"{exc} is excluded .*moved away"):
        assign.assign_one(st, exc, now=NOW)
    with pytest.raises(InputError, match=f"{cmp_} is in the comparison group"):
        assign.assign_one(st, cmp_, now=NOW)
    with pytest.raises(InputError, match="NOPE is not in clients.csv"):
        assign.assign_one(st, "NOPE", now=NOW)
    assert not (st / "allocation.sqlite").exists() or registry.read(st / "allocation.sqlite").empty


def test_no_key_no_sequential_assignment(tmp_path, monkeypatch):
    monkeypatch.delenv("HBEVAL_ALLOCATION_KEY", raising=False)
    cl = _clients()
    st = _study(tmp_path / "s", cl)
    pid = cl.loc[cl["group"] == "pilot", "client_id"].iloc[0]
    with pytest.raises(InputError, match="no allocation key"):
        assign.assign_one(st, pid, now=NOW)
    assert not (st / "assignments.csv").exists()


def test_already_assigned_family_gets_its_arm_back(tmp_path, key, capsys, monkeypatch):
    cl = _clients()
    st = _study(tmp_path / "s", cl)
    pid = cl.loc[cl["group"] == "pilot", "client_id"].iloc[0]
    first = assign.assign_one(st, pid, now=NOW)
    again = assign.assign_one(st, pid, now=NOW + dt.timedelta(days=3))
    assert first["new"] and not again["new"]
    assert (again["frame_arm"], again["teaming_arm"], again["assigned_on"]) == (first["frame_arm"], first["teaming_arm"], "2025-03-01")
    assert assign.run(st, client=pid, now=NOW) == 0
    assert "already assigned" in capsys.readouterr().out
    monkeypatch.delenv("HBEVAL_ALLOCATION_KEY")  # giving an existing arm back needs no key
    assert assign.assign_one(st, pid)["frame_arm"] == first["frame_arm"]
    assert len(registry.read(st / "allocation.sqlite")) == 1


def test_sequential_blocks_follow_the_keyed_sequence(tmp_path, key):
    cl = _clients(120)
    st = _study(tmp_path / "s", cl)
    pilot = cl[cl["group"] == "pilot"]
    for cid in pilot["client_id"]:
        assign.assign_one(st, cid, now=NOW)
    rows = registry.read(st / "allocation.sqlite")
    for lab, g in rows.groupby("stratum"):
        assert (g["cell"].to_numpy() == block_sequence(key, lab, len(g))).all()
        assert list(g["stratum_seq"]) == list(range(1, len(g) + 1))
    assert assign.verify(st)[0]
    p = assign.procedure(st)
    assert p["method"] == "blocks" and p["block_sizes"] == [4, 8] and len(p["key_ids"]) == 1
    assert KEY not in str(p)


def test_concurrent_coordinators(tmp_path, key):
    """8 processes enrol 200 families at once: no duplicates, balanced blocks, registry verifies."""
    rng = np.random.default_rng(7)
    n = 200
    cl = pd.DataFrame({"client_id": [f"P{i:04d}" for i in range(n)], "site": rng.choice(SITES, n),
                       "service_line": rng.choice(LINES[:2], n), "group": "pilot"})
    st = _study(tmp_path / "s", cl)
    worker = textwrap.dedent(
        """
        import sys, datetime as dt
        from hbeval.randomisation.allocate import assign_one
        study, ids = sys.argv[1], sys.argv[2].split(",")
        for cid in ids:
            assign_one(study, cid, now=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))
            assign_one(study, ids[0])  # a repeated enrolment never re-draws (and takes no lock)
        """
    )
    ids = list(cl["client_id"])
    env = os.environ | {"HBEVAL_ALLOCATION_KEY": KEY}
    procs = [subprocess.Popen([sys.executable, "-c", worker, str(st), ",".join(ids[k::8])], env=env,
                              stderr=subprocess.PIPE) for k in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    rows = registry.read(st / "allocation.sqlite")
    assert len(rows) == n and rows["client_id"].is_unique and set(rows["client_id"]) == set(ids)
    ok, msg = assign.verify(st)
    assert ok and "200 seals verified" in msg, msg
    for lab, g in rows.groupby("stratum"):
        # each stratum's allocations, in registry order, are exactly its keyed block sequence
        assert (g["cell"].to_numpy() == block_sequence(key, lab, len(g))).all(), lab
        assert list(g["stratum_seq"]) == list(range(1, len(g) + 1))
        c = np.bincount(g["cell"], minlength=4)
        assert c.max() - c.min() <= 2  # at most one open block of size ≤ 8
    csv = pd.read_csv(st / "assignments.csv", dtype=str)
    assert len(csv) == n and csv["client_id"].is_unique


# ---------------------------------------------------------------- concealment
def _min_count_guess_accuracy(seqs) -> float:
    """Blackwell–Hodges guessing: predict the cell with fewest allocations so far."""
    hit = tot = 0.0
    for s in seqs:
        c = np.zeros(4, int)
        for x in s:
            g = np.flatnonzero(c == c.min())
            hit += (x in g) / len(g)
            tot += 1
            c[x] += 1
    return hit / tot


def test_folder_does_not_reveal_the_next_allocation(tmp_path, key):
    cl = pd.DataFrame({"client_id": [f"Q{i:03d}" for i in range(41)], "site": "A", "service_line": "home_help",
                       "group": "pilot"})
    st = _study(tmp_path / "s", cl)
    for cid in cl["client_id"][:40]:
        assign.assign_one(st, cid, now=NOW)
    # 1. no key material anywhere in the study folder
    blobs = b"".join(p.read_bytes() for p in st.rglob("*") if p.is_file())
    for form in (key, key.hex().encode(), base64.b64encode(key)):
        assert form not in blobs
    # 2. every value in the folder that could pass for a secret does not reproduce the sequence
    rows = registry.read(st / "allocation.sqlite")
    actual = rows["cell"].to_numpy()
    assert (block_sequence(key, "A|home_help", 41)[:40] == actual).all()  # the key does
    candidates = {str(v) for v in rows[["key_id", "row_hash", "prev_hash", "algorithm", "seed"]].to_numpy().ravel() if v}
    candidates |= {"99", "t", "", "hbeval", str(st)}
    matches = [np.mean(block_sequence(c.encode() or b"\0", "A|home_help", 40) == actual) for c in candidates]
    assert max(matches) < 0.6 and np.mean(matches) < 0.35  # chance agreement is 1/4
    # 3. the next allocation under the true key vs under look-alike keys: not determined by the folder
    true_next = block_sequence(key, "A|home_help", 41)[40]
    others = np.array([block_sequence(f"{KEY}-{i}".encode(), "A|home_help", 41)[40] for i in range(300)])
    assert 40 < (others == true_next).sum() < 110  # about 1/4 of other keys agree (75 ± 7.5)


def test_past_allocations_give_only_the_design_s_inherent_guessing_edge():
    """With random block sizes the best simple guesser (fewest so far) stays near 0.48, far from
    the certainty a revealed sequence would give; with the key, prediction is exact."""
    seqs = [block_sequence(f"k{i}".encode(), "s", 40) for i in range(150)]
    acc = _min_count_guess_accuracy(seqs)
    assert 0.40 < acc < 0.52
    fixed4 = _min_count_guess_accuracy([block_sequence(f"k{i}".encode(), "s", 40, (4,)) for i in range(150)])
    assert acc < fixed4  # random sizes make block ends harder to guess than fixed blocks of 4


# ---------------------------------------------------------------- minimisation
def test_minimisation_balances_margins_and_redraws(tmp_path, key):
    rng = np.random.default_rng(3)
    n = 80
    cl = pd.DataFrame({"client_id": [f"M{i:03d}" for i in range(n)], "site": rng.choice(SITES, n),
                       "service_line": rng.choice(LINES, n), "group": "pilot"})
    st = _study(tmp_path / "s", cl, '\n[design]\nassignment = "minimisation"\nminimisation_p = 0.9\n')
    for cid in cl["client_id"]:
        assert assign.assign_one(st, cid, now=NOW)["new"]
    rows = registry.read(st / "allocation.sqlite")
    assert set(rows["method"]) == {"minimisation"} and assign.verify(st)[0]
    fam = cl.set_index("client_id").loc[rows["client_id"]]
    for f in ("site", "service_line"):
        for lev in fam[f].unique():
            c = np.bincount(rows["cell"].to_numpy()[(fam[f] == lev).to_numpy()], minlength=4)
            assert c.max() - c.min() <= 3, (f, lev, c)
    p = assign.procedure(st)
    assert p["method"] == "minimisation" and p["minimisation_p"] == 0.9 and p["strata"] == ["site", "service_line"]
    d = assign.redraw(st, list(cl["client_id"]), 300, 1)
    assert d.shape == (300, n) and not (d == d[0]).all()


# ---------------------------------------------------------------- redraws
def test_redraw_batch_respects_strata_and_order_of_ids(tmp_path):
    cl = _clients(150)
    st = _study(tmp_path / "s", cl)
    new = assign.assign_all(st, now=NOW)
    ids = list(new["client_id"])[::-1]
    d = assign.redraw(st, ids, 4000, 2)
    assert d.dtype == np.int8 and d.shape == (4000, len(ids))
    strat = new.set_index("client_id").loc[ids, "stratum"].to_numpy()
    for lab in np.unique(strat):
        m = strat == lab
        c = np.stack([(d[:, m] == k).sum(axis=1) for k in range(4)], axis=1)
        assert (c.max(axis=1) - c.min(axis=1) <= 1).all()
    freq = np.stack([(d == k).mean(axis=0) for k in range(4)])
    assert np.abs(freq - 0.25).max() < 0.04
    same = assign.redraw(st, ids, 10, 2)
    assert (same == d[:10]).all() or same.shape == (10, len(ids))
    assert (assign.redraw(st, ids, 50, 9) == assign.redraw(st, ids, 50, 9)).all()
    with pytest.raises(InputError, match="not assigned"):
        assign.redraw(st, ids + ["ZZZ"], 5, 1)


def test_redraw_blocks_in_enrolment_order(tmp_path, key):
    cl = pd.DataFrame({"client_id": [f"B{i:03d}" for i in range(30)], "site": "A", "service_line": "home_help",
                       "group": "pilot"})
    st = _study(tmp_path / "s", cl)
    order = list(np.random.default_rng(0).permutation(cl["client_id"]))
    for cid in order:
        assign.assign_one(st, cid, now=NOW)
    d = assign.redraw(st, order, 500, 3)  # columns in enrolment order
    assert all(is_block_sequence(r) for r in d)
    assert not all(is_block_sequence(r) for r in assign.redraw(st, sorted(order), 200, 3))
