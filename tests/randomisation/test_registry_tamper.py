"""Issue 16: someone with file access rewrites the registry; the key or a receipt catches it.

A study is randomised the way a pilot does it (a batch, then families enrolled one by one),
the coordinator keeps the receipt, and each attack below is made on a copy of the folder by a
forger who has the file and hbeval's source but not the allocation key. Every attack must fail
``assign --verify`` with the key; the ones that cut the registry or replace it must also fail
against the receipt alone (``--verify --head``, no key).
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbeval.cli import main
from hbeval.randomisation import allocate as assign
from hbeval.randomisation import registry

NOW = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)
KEY = "tamper-test-key-9fQz2LwX7nB4kR1vT8mY3cD6"
OTHER_KEY = "another-studys-key-Hq5Rt2Wm8Zx3Lp7Vc1Nb"


def _clients(n: int, prefix: str) -> pd.DataFrame:
    rng = np.random.default_rng(len(prefix) + n)
    return pd.DataFrame({"client_id": [f"{prefix}{i:03d}" for i in range(n)], "site": rng.choice(["A", "B"], n),
                         "service_line": "home_help", "group": "pilot"})


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, str]:
    """30 families in one batch, then 6 enrolled one by one; returns the folder and the receipt."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HBEVAL_ALLOCATION_KEY", KEY)
    root = tmp_path_factory.mktemp("tamper") / "study"
    root.mkdir()
    (root / "study.toml").write_text('[study]\nname = "t"\nseed = 7\n\n[design]\nstrata = ["site"]\n', encoding="utf-8")
    _clients(30, "C").to_csv(root / "clients.csv", index=False)
    assign.assign_all(root, now=NOW)
    late = _clients(6, "L")
    pd.concat([_clients(30, "C"), late]).to_csv(root / "clients.csv", index=False)
    for cid in late["client_id"]:
        assign.assign_one(root, cid, now=NOW + dt.timedelta(days=10))
    head = registry.head_of(root / registry.REGISTRY_NAME)
    mp.undo()
    assert head is not None and head["seq"] == 36
    return root, head["receipt"]


# ---------------------------------------------------------------- the forger's tools
def _rows(path: Path) -> list[dict]:
    c = sqlite3.connect(path)
    c.row_factory = sqlite3.Row
    rows = [dict(r) for r in c.execute("SELECT * FROM allocations ORDER BY seq")]
    c.close()
    return rows


def _write(path: Path, rows: list[dict], *, rechain: bool = True) -> None:
    """Replace every row; with ``rechain`` recompute the plain hash chain and the meta head, as
    anyone can (the MACs need the key: the forger keeps the old ones or writes garbage)."""
    c = sqlite3.connect(path)
    c.execute("DELETE FROM allocations")
    prev = registry.chain_start(dict(c.execute("SELECT key, value FROM meta").fetchall()))  # public
    for i, r in enumerate(rows, start=1):
        if rechain:
            r = r | {"seq": i, "prev_hash": prev}
            r["row_hash"] = registry.row_hash(r)
        cols = list(r)
        c.execute(f"INSERT INTO allocations ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", [r[k] for k in cols])
        prev = r["row_hash"]
    if rechain:
        c.execute("UPDATE meta SET value = ? WHERE key = 'n_rows'", (str(len(rows)),))
        c.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (prev,))
    c.commit()
    c.close()


def _arm(r: dict, cell: int) -> dict:
    return r | {"cell": cell, "frame_arm": ("frame_only", "frame_shares")[cell // 2],
                "teaming_arm": ("no_teaming", "teaming")[cell % 2]}


def swap_two_batch_arms_and_rechain(p: Path) -> None:
    rows = _rows(p)
    i = 0
    j = next(k for k in range(1, 30) if rows[k]["cell"] != rows[0]["cell"])
    a, b = rows[i]["cell"], rows[j]["cell"]
    rows[i], rows[j] = _arm(rows[i], b), _arm(rows[j], a)
    _write(p, rows)


def rearm_the_last_keyed_row_and_drop_its_mac(p: Path) -> None:
    rows = _rows(p)
    rows[-1] = _arm(rows[-1], (rows[-1]["cell"] + 1) % 4) | {"row_mac": ""}
    _write(p, rows)


def append_a_forged_row(p: Path) -> None:
    rows = _rows(p)
    rows.append(_arm(rows[-1], 3) | {"client_id": "FORGED", "row_mac": "f" * 64})
    _write(p, rows)


def delete_the_last_row_and_fix_the_count(p: Path) -> None:
    _write(p, _rows(p)[:-1])


def replace_with_a_fresh_registry_all_in_one_arm(p: Path) -> None:
    rows = _rows(p)
    p.unlink()
    conn = registry.connect(p, key=OTHER_KEY.encode())
    conn.execute("BEGIN IMMEDIATE")
    registry.append(conn, [_arm(r, 3) for r in rows], OTHER_KEY.encode())
    conn.execute("COMMIT")
    conn.close()


def replace_with_a_fresh_registry_made_with_another_key(p: Path) -> None:
    rows = _rows(p)
    p.unlink()
    conn = registry.connect(p, key=OTHER_KEY.encode())
    conn.execute("BEGIN IMMEDIATE")
    registry.append(conn, rows, OTHER_KEY.encode())  # the same arms, chained with another key
    conn.execute("COMMIT")
    conn.close()


def edit_an_arm(p: Path) -> None:
    rows = _rows(p)
    rows[11] = _arm(rows[11], (rows[11]["cell"] + 2) % 4)
    _write(p, rows, rechain=False)


def delete_a_middle_row(p: Path) -> None:
    rows = _rows(p)
    _write(p, rows[:17] + rows[18:], rechain=False)


def reorder_two_rows(p: Path) -> None:
    rows = _rows(p)
    rows[4], rows[9] = rows[9] | {"seq": 5}, rows[4] | {"seq": 10}
    _write(p, rows, rechain=False)


def edit_a_sequential_row_and_recompute_the_plain_chain(p: Path) -> None:
    rows = _rows(p)
    rows[32] = _arm(rows[32], (rows[32]["cell"] + 1) % 4)
    _write(p, rows)


def truncate_to_empty(p: Path) -> None:
    _write(p, [])


ATTACKS: dict[str, tuple[Callable[[Path], None], bool, str]] = {
    # name: (attack, cuts or replaces the registry so that the receipt alone must catch it, what the key says)
    "swap two batch arms, recompute the plain chain": (swap_two_batch_arms_and_rechain, False, "row 1 (seq 1"),
    "re-arm the last keyed row, drop its MAC": (rearm_the_last_keyed_row_and_drop_its_mac, False, "row 36 (seq 36"),
    "append a forged row": (append_a_forged_row, False, "row 37 (seq 37, client_id FORGED): its MAC"),
    "delete the last row, fix the count and head": (delete_the_last_row_and_fix_the_count, True, "row 36: the head"),
    "replace with a fresh registry, every family in one arm": (replace_with_a_fresh_registry_all_in_one_arm, True,
                                                               "not with the allocation key at hand"),
    "replace with a fresh registry made with another key": (replace_with_a_fresh_registry_made_with_another_key, True,
                                                            "not with the allocation key at hand"),
    "edit an arm": (edit_an_arm, False, "row 12 "),
    "delete a middle row": (delete_a_middle_row, False, "row 18 "),
    "reorder two rows": (reorder_two_rows, False, "row 5 "),
    "edit a sequential row, recompute the plain chain": (edit_a_sequential_row_and_recompute_the_plain_chain, False,
                                                         "row 33 (seq 33, client_id L002): its MAC"),
    "truncate to empty": (truncate_to_empty, True, "row 1: the head (0 rows)"),
}


@pytest.fixture
def copy(study, tmp_path) -> tuple[Path, str]:
    root, receipt = study
    dst = tmp_path / "study"
    shutil.copytree(root, dst)
    return dst, receipt


def test_the_untouched_registry_verifies_with_the_key_and_against_the_receipt(copy, monkeypatch, capsys):
    root, receipt = copy
    monkeypatch.setenv("HBEVAL_ALLOCATION_KEY", KEY)
    ok, msg = assign.verify(root, head=receipt)
    assert ok and "36 seals verified with the key" in msg and "receipt" in msg, msg
    monkeypatch.delenv("HBEVAL_ALLOCATION_KEY")
    assert main(["assign", str(root), "--verify", "--head", receipt]) == 0
    assert "MACs were not checked" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_caught(name, copy, monkeypatch, capsys):
    root, receipt = copy
    attack, cuts, why = ATTACKS[name]
    reg = root / registry.REGISTRY_NAME
    attack(reg)
    registry.write_export(sqlite3.connect(reg), root / "assignments.csv")  # the forger re-exports too
    monkeypatch.setenv("HBEVAL_ALLOCATION_KEY", KEY)
    ok, msg = assign.verify(root)
    assert not ok, f"{name}: passed verify with the key: {msg}"
    assert why in msg, msg
    assert main(["assign", str(root), "--verify"]) == 1
    assert "FAILED" in capsys.readouterr().err
    monkeypatch.delenv("HBEVAL_ALLOCATION_KEY")
    ok, msg = assign.verify(root, head=receipt)
    if cuts:
        assert not ok, f"{name}: passed verify against the receipt: {msg}"
        assert main(["assign", str(root), "--verify", "--head", receipt]) == 1


def test_a_later_allocation_keeps_an_old_receipt_valid(copy, monkeypatch, capsys):
    root, receipt = copy
    monkeypatch.setenv("HBEVAL_ALLOCATION_KEY", KEY)
    pd.concat([pd.read_csv(root / "clients.csv"), _clients(1, "Z")]).to_csv(root / "clients.csv", index=False)
    assert assign.run(root, client="Z000", now=NOW) == 0
    out = capsys.readouterr().out
    new = registry.head_of(root / registry.REGISTRY_NAME)
    assert f"receipt: seq 37 head {new['head'][:20]}" in out and f"--head {new['receipt']}" in out
    assert assign.verify(root, head=receipt)[0] and assign.verify(root, head=new["receipt"])[0]
    monkeypatch.delenv("HBEVAL_ALLOCATION_KEY")
    assert assign.verify(root, head=receipt)[0]


def test_rolling_back_to_an_older_copy_is_caught_by_the_newer_receipt(copy, monkeypatch, tmp_path):
    root, old_receipt = copy
    monkeypatch.setenv("HBEVAL_ALLOCATION_KEY", KEY)
    saved = (root / registry.REGISTRY_NAME).read_bytes(), (root / "assignments.csv").read_bytes()
    pd.concat([pd.read_csv(root / "clients.csv"), _clients(1, "Z")]).to_csv(root / "clients.csv", index=False)
    assign.assign_one(root, "Z000", now=NOW)
    new_receipt = registry.head_of(root / registry.REGISTRY_NAME)["receipt"]
    (root / registry.REGISTRY_NAME).write_bytes(saved[0])
    (root / "assignments.csv").write_bytes(saved[1])
    assert assign.verify(root)[0]  # an older copy is a registry the key once wrote ...
    assert assign.verify(root, head=old_receipt)[0]
    ok, msg = assign.verify(root, head=new_receipt)  # ... which only the latest receipt can tell
    assert not ok and "row 37" in msg


def test_head_needs_verify_and_enough_hex(copy, monkeypatch, capsys):
    root, receipt = copy
    assert main(["assign", str(root), "--all", "--head", receipt]) == 2
    assert main(["assign", str(root), "--verify", "--head", "36:abc"]) == 1
    assert "16 hex" in capsys.readouterr().err
