"""The allocation registry: hash chain, every kind of tampering detected, export."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from hbeval.randomisation import registry


def _row(i: int) -> dict:
    cell = i % 4
    return {"client_id": f"C{i:03d}", "cell": cell, "frame_arm": ("frame_only", "frame_shares")[cell // 2],
            "teaming_arm": ("no_teaming", "teaming")[cell % 2], "stratum": "A|home_help", "method": "blocks",
            "batch": None, "stratum_seq": i, "seed": None, "key_id": "abc", "algorithm": "hbeval-blocks/1 sizes=4,8",
            "assigned_on": "2025-01-02", "recorded_at": "2025-01-02T10:00:00"}


@pytest.fixture
def reg(tmp_path):
    path = tmp_path / "allocation.sqlite"
    conn = registry.connect(path)
    conn.execute("BEGIN IMMEDIATE")
    registry.append(conn, [_row(i) for i in range(1, 11)])
    registry.write_export(conn, tmp_path / "assignments.csv")
    conn.execute("COMMIT")
    conn.close()
    return path


def _exec(path, *sql):
    c = sqlite3.connect(path)
    for s in sql:
        c.execute(s)
    c.commit()
    c.close()


def test_intact_registry_verifies(reg):
    ok, msg = registry.verify(reg, reg.parent / "assignments.csv")
    assert ok, msg
    assert "10 allocations" in msg
    df = registry.read(reg)
    assert list(df["seq"]) == list(range(1, 11))
    assert df["prev_hash"].iloc[0] == registry.GENESIS
    assert (df["prev_hash"].iloc[1:].to_numpy() == df["row_hash"].iloc[:-1].to_numpy()).all()


def test_hash_covers_every_field():
    r = _row(1) | {"seq": 1, "prev_hash": registry.GENESIS}
    h = registry.row_hash(r)
    for f in registry.FIELDS:
        changed = dict(r)
        changed[f] = "x" if not isinstance(r[f], str) else r[f] + "x"
        assert registry.row_hash(changed) != h, f


def test_edit_detected(reg):
    _exec(reg, "UPDATE allocations SET cell = 3, frame_arm = 'frame_shares', teaming_arm = 'teaming' WHERE seq = 5")
    ok, msg = registry.verify(reg)
    assert not ok and "row 5 " in msg


def test_edit_of_date_detected(reg):
    _exec(reg, "UPDATE allocations SET assigned_on = '2024-12-31' WHERE seq = 7")
    ok, msg = registry.verify(reg)
    assert not ok and "row 7 " in msg


def test_deletion_detected(reg):
    _exec(reg, "DELETE FROM allocations WHERE seq = 4")
    ok, msg = registry.verify(reg)
    assert not ok and "row 4 " in msg  # the 4th row is now the former 5th


def test_deletion_with_renumbering_detected(reg):
    _exec(reg, "DELETE FROM allocations WHERE seq = 4", "UPDATE allocations SET seq = seq - 1 WHERE seq > 4")
    ok, msg = registry.verify(reg)
    assert not ok and "row 4 " in msg


def test_deleting_the_last_row_detected(reg):
    _exec(reg, "DELETE FROM allocations WHERE seq = 10")
    ok, msg = registry.verify(reg)
    assert not ok and "row 10" in msg


def test_insertion_detected(reg):
    # a well-formed row with a correct-looking hash, slipped in the middle
    _exec(reg, "UPDATE allocations SET seq = seq + 100 WHERE seq >= 6", "UPDATE allocations SET seq = seq - 99 WHERE seq >= 106")
    df = registry.read(reg)
    prev = df.loc[df["seq"] == 5, "row_hash"].iloc[0]
    fake = _row(99) | {"seq": 6, "prev_hash": prev}
    fake["row_hash"] = registry.row_hash(fake)
    cols = [*registry.FIELDS, "row_hash"]
    c = sqlite3.connect(reg)
    c.execute(f"INSERT INTO allocations ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", [fake[k] for k in cols])
    c.commit()
    c.close()
    ok, msg = registry.verify(reg)
    assert not ok and "row 7 " in msg  # the inserted row chains on; the next one does not


def test_insertion_at_the_end_detected(reg):
    df = registry.read(reg)
    fake = _row(11) | {"seq": 11, "prev_hash": df["row_hash"].iloc[-1]}
    fake["row_hash"] = registry.row_hash(fake)
    cols = [*registry.FIELDS, "row_hash"]
    c = sqlite3.connect(reg)
    c.execute(f"INSERT INTO allocations ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", [fake[k] for k in cols])
    c.commit()
    c.close()
    ok, msg = registry.verify(reg)
    assert not ok and "row 11" in msg


def test_reordering_detected(reg):
    _exec(reg, "UPDATE allocations SET seq = -3 WHERE seq = 3", "UPDATE allocations SET seq = 3 WHERE seq = 8",
          "UPDATE allocations SET seq = 8 WHERE seq = -3")
    ok, msg = registry.verify(reg)
    assert not ok and "row 3 " in msg


def test_export_mismatch_detected(reg):
    csv = reg.parent / "assignments.csv"
    df = pd.read_csv(csv, dtype=str)
    df.loc[2, "teaming_arm"] = "teaming" if df.loc[2, "teaming_arm"] == "no_teaming" else "no_teaming"
    df.to_csv(csv, index=False)
    ok, msg = registry.verify(reg, csv)
    assert not ok and "assignments.csv" in msg and df.loc[2, "client_id"] in msg


def test_unique_family_enforced(reg):
    conn = registry.connect(reg)
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.IntegrityError):
        registry.append(conn, [_row(3)])
    conn.execute("ROLLBACK")
    conn.close()
    assert registry.verify(reg)[0]


def test_not_a_registry(tmp_path):
    p = tmp_path / "allocation.sqlite"
    p.write_bytes(b"not sqlite at all" * 100)
    ok, msg = registry.verify(p)
    assert not ok and "cannot be read" in msg
    assert not registry.verify(tmp_path / "nope.sqlite")[0]


def test_export_is_the_sorted_contract_columns(reg):
    csv = (reg.parent / "assignments.csv").read_bytes()
    want = registry.export_frame(registry.read(reg)).to_csv(index=False, lineterminator="\n").encode("utf-8")
    assert csv == want
    assert csv.startswith(b"client_id,frame_arm,teaming_arm,stratum,assigned_on\n")


def _sealed_registry(tmp_path, key=b"seal-key"):
    path = tmp_path / "sealed.sqlite"
    conn = registry.connect(path)
    for i in range(1, 9):
        conn.execute("BEGIN IMMEDIATE")
        w = registry.append(conn, [_row(i)])
        registry.seal(conn, key, "abc", w)
        conn.execute("COMMIT")
    conn.close()
    return path


def _rewrite_chain_from(path, seq):
    """What an informed forger does: edit a row, recompute every hash after it and the head."""
    df = registry.read(path)
    df.loc[df["seq"] == seq, "cell"] = (df.loc[df["seq"] == seq, "cell"] + 1) % 4
    c = sqlite3.connect(path)
    prev = registry.GENESIS
    for _, r in df.iterrows():
        row = {f: (None if pd.isna(r[f]) else r[f]) for f in registry.FIELDS}
        row["prev_hash"] = prev
        h = registry.row_hash(row)
        c.execute("UPDATE allocations SET cell = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
                  (int(row["cell"]), prev, h, int(row["seq"])))
        prev = h
    c.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (prev,))
    c.commit()
    c.close()


def test_seals_catch_a_rewritten_chain(tmp_path):
    path = _sealed_registry(tmp_path)
    ok, msg = registry.verify(path, key=b"seal-key", key_id="abc")
    assert ok and "8 seals verified" in msg
    _rewrite_chain_from(path, 5)
    assert registry.verify(path)[0]  # the bare chain cannot see a full rewrite ...
    ok, msg = registry.verify(path, key=b"seal-key", key_id="abc")
    assert not ok and "row 5" in msg  # ... the keyed seals can
    assert not registry.verify(path, key=b"wrong-key", key_id="abc")[0]


def test_unsealed_keyed_row_detected(tmp_path):
    path = _sealed_registry(tmp_path)
    _exec(path, "DELETE FROM seals WHERE seq = 6")
    ok, msg = registry.verify(path, key=b"seal-key", key_id="abc")
    assert not ok and "row 6" in msg and "not sealed" in msg
