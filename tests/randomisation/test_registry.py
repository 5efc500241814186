"""The allocation registry: keyed hash chain, every kind of tampering detected, receipts, v1 files, export."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from hbeval.randomisation import registry

KEY = b"registry-test-key-Zq3v8KJx0fW2pLm7Tn4s"


def _row(i: int) -> dict:
    cell = i % 4
    return {"client_id": f"C{i:03d}", "cell": cell, "frame_arm": ("frame_only", "frame_shares")[cell // 2],
            "teaming_arm": ("no_teaming", "teaming")[cell % 2], "stratum": "A|home_help", "method": "blocks",
            "batch": None, "stratum_seq": i, "seed": None, "key_id": "abc", "algorithm": "hbeval-blocks/1 sizes=4,8",
            "assigned_on": "2025-01-02", "recorded_at": "2025-01-02T10:00:00"}


@pytest.fixture
def reg(tmp_path):
    path = tmp_path / "allocation.sqlite"
    conn = registry.connect(path, key=KEY)
    conn.execute("BEGIN IMMEDIATE")
    registry.append(conn, [_row(i) for i in range(1, 11)], KEY)
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
    assert df["prev_hash"].iloc[0] == registry.genesis(registry.key_fingerprint(KEY))
    assert (df["prev_hash"].iloc[1:].to_numpy() == df["row_hash"].iloc[:-1].to_numpy()).all()


def test_the_chain_starts_from_the_key_s_fingerprint(tmp_path, reg):
    other = tmp_path / "other.sqlite"
    registry.connect(other, key=b"other-key-" + KEY).close()
    h, h_other = registry.head_of(reg), registry.head_of(other)
    assert h_other["seq"] == 0 and h_other["head"] == registry.genesis(registry.key_fingerprint(b"other-key-" + KEY))
    assert registry.read(reg)["prev_hash"].iloc[0] != h_other["head"]
    assert registry.verify(other, key=b"other-key-" + KEY)[0] and registry.verify(other, head=h_other["receipt"])[0]
    assert not registry.verify(other, head=f"0:{registry.genesis(registry.key_fingerprint(KEY))[:20]}")[0]
    assert h["seq"] == 10


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
    fake["row_mac"] = "0" * 64  # a forger without the key cannot make it
    cols = [*registry.FIELDS, "row_hash", "row_mac"]
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
    fake["row_mac"] = "0" * 64  # a forger without the key cannot make it
    cols = [*registry.FIELDS, "row_hash", "row_mac"]
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
        registry.append(conn, [_row(3)], KEY)
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


def _sealed_registry(tmp_path, key=KEY):
    path = tmp_path / "sealed.sqlite"
    conn = registry.connect(path, key=key)
    for i in range(1, 9):
        conn.execute("BEGIN IMMEDIATE")
        registry.append(conn, [_row(i)], key)
        conn.execute("COMMIT")
    conn.close()
    return path


def _rewrite_chain_from(path, seq):
    """What an informed forger does: edit a row, recompute every hash after it and the head."""
    df = registry.read(path)
    df.loc[df["seq"] == seq, "cell"] = (df.loc[df["seq"] == seq, "cell"] + 1) % 4
    c = sqlite3.connect(path)
    prev = df["prev_hash"].iloc[0]  # the chain's start (public: it names the key's fingerprint)
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
    ok, msg = registry.verify(path, key=KEY)
    assert ok and "8 seals verified" in msg
    _rewrite_chain_from(path, 5)
    assert registry.verify(path)[0]  # the bare chain cannot see a full rewrite ...
    ok, msg = registry.verify(path, key=KEY)
    assert not ok and "row 5" in msg  # ... the keyed chain can
    assert not registry.verify(path, key=b"wrong-key-" + KEY)[0]


def test_unsealed_keyed_row_detected(tmp_path):
    path = _sealed_registry(tmp_path)
    _exec(path, "UPDATE allocations SET row_mac = '' WHERE seq = 6")
    ok, msg = registry.verify(path, key=KEY)
    assert not ok and "row 6" in msg and "MAC" in msg


def test_every_row_and_the_head_carry_a_mac_of_the_key(reg):
    c = sqlite3.connect(reg)
    macs = c.execute("SELECT row_hash, row_mac FROM allocations ORDER BY seq").fetchall()
    meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
    c.close()
    assert all(m == registry.row_mac(KEY, h) for h, m in macs)
    assert meta["schema"] == "hbeval-registry/2" and meta["n_rows"] == "10"
    assert meta["head_mac"] == registry.head_mac(KEY, 10, macs[-1][0])
    assert meta["key_id"] == registry.key_fingerprint(KEY) and KEY.hex() not in str(meta)


def test_append_needs_the_registry_s_own_key(reg):
    conn = registry.connect(reg)
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(registry.RegistryError, match="another|not with"):
        registry.append(conn, [_row(11)], b"another-key-" + KEY)
    conn.execute("ROLLBACK")
    conn.close()
    assert registry.verify(reg, key=KEY)[0]


def test_creating_a_registry_needs_a_key(tmp_path):
    with pytest.raises(registry.RegistryError, match="key"):
        registry.connect(tmp_path / "allocation.sqlite")


def test_truncation_with_fixed_count_and_head_caught_by_the_head_mac(reg):
    df = registry.read(reg)
    _exec(reg, "DELETE FROM allocations WHERE seq = 10", "UPDATE meta SET value = '9' WHERE key = 'n_rows'",
          f"UPDATE meta SET value = '{df['row_hash'].iloc[8]}' WHERE key = 'head_hash'")
    assert registry.verify(reg)[0]  # the bare chain is a valid 9-row chain ...
    ok, msg = registry.verify(reg, key=KEY)
    assert not ok and "row 10" in msg and "cut off" in msg  # ... the keyed head is not for 9 rows


@pytest.mark.parametrize("text, want", [
    ("412:3f9a0c1d2e3f40516273", (412, "3f9a0c1d2e3f40516273")),
    ("seq 412 head 3f9a0c1d2e3f4051…", (412, "3f9a0c1d2e3f4051")),
    ("receipt: seq 7 head 3F9A0C1D2E3F4051", (7, "3f9a0c1d2e3f4051")),
    ("3f9a0c1d2e3f40516273", (None, "3f9a0c1d2e3f40516273")),
])
def test_parse_receipt(text, want):
    assert registry.parse_receipt(text) == want


@pytest.mark.parametrize("text", ["412:3f9a0c1d", "", "412:xyz0c1d2e3f40516273", "seq 4 head"])
def test_short_or_garbled_receipt_refused(text):
    with pytest.raises(ValueError, match="16 hex"):
        registry.parse_receipt(text)


def test_receipt_pins_the_chain_up_to_its_row(reg):
    h = registry.head_of(reg)
    assert h is not None and h["seq"] == 10 and h["receipt"] == f"10:{h['head'][:20]}"
    assert registry.verify(reg, head=h["receipt"])[0]
    assert registry.verify(reg, head=h["head"][:16])[0]  # without the seq: some row has it
    fifth = registry.read(reg)["row_hash"].iloc[4]
    ok, msg = registry.verify(reg, head=f"5:{fifth[:16]}")
    assert ok and "receipt 5:" in msg  # later rows are fine
    ok, msg = registry.verify(reg, head=f"11:{fifth[:16]}")
    assert not ok and "row 11" in msg and "10 rows" in msg
    ok, msg = registry.verify(reg, head=f"4:{fifth[:16]}")
    assert not ok and "row 4" in msg
    ok, msg = registry.verify(reg, head="10:" + "0" * 20)
    assert not ok and "row 10" in msg
    assert not registry.verify(reg, head="10:3f")[0]  # too short to pin anything
    assert registry.head_of(reg.parent / "nope.sqlite") is None


# ---------------------------------------------------------------- hbeval-registry/1 files
_V1_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE seals (seq INTEGER PRIMARY KEY, key_id TEXT NOT NULL, mac TEXT NOT NULL);
CREATE TABLE allocations (seq INTEGER PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, cell INTEGER NOT NULL,
    frame_arm TEXT NOT NULL, teaming_arm TEXT NOT NULL, stratum TEXT NOT NULL, method TEXT NOT NULL, batch INTEGER,
    stratum_seq INTEGER, seed TEXT, key_id TEXT, algorithm TEXT NOT NULL, assigned_on TEXT NOT NULL,
    recorded_at TEXT NOT NULL, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);
"""


def _v1_registry(path, key=None, n=6):
    """A registry as hbeval wrote it before hbeval-registry/2 (seals on keyed rows when ``key``)."""
    c = sqlite3.connect(path)
    c.executescript(_V1_DDL)
    prev = registry.GENESIS
    kid = registry._v1_key_id(key) if key else None
    for i in range(1, n + 1):
        row = _row(i) | {"seq": i, "prev_hash": prev, "key_id": kid}
        row["row_hash"] = registry.row_hash(row, "hbeval-registry/1")
        cols = [*registry.FIELDS, "row_hash"]
        c.execute(f"INSERT INTO allocations ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                  [row[k] for k in cols])
        if key:
            c.execute("INSERT INTO seals VALUES (?, ?, ?)", (i, kid, registry.seal_mac(key, i, row["row_hash"])))
        prev = row["row_hash"]
    c.executemany("INSERT INTO meta VALUES (?, ?)",
                  [("schema", "hbeval-registry/1"), ("n_rows", str(n)), ("head_hash", prev)])
    c.commit()
    c.close()
    return path


def test_v1_registry_fails_verify_unless_accepted_explicitly(tmp_path):
    """An unkeyed chain can be rewritten by anyone with the file: an intact one shows nothing, so verify fails
    and says why, unless the legacy file is accepted explicitly (allow_v1, --allow-legacy-registry)."""
    path = _v1_registry(tmp_path / "allocation.sqlite", key=KEY)
    h = registry.head_of(path)
    for kw in ({}, {"key": KEY}, {"head": h["receipt"]}):
        ok, msg = registry.verify(path, **kw)
        assert not ok and "legacy hbeval-registry/1" in msg and "unkeyed" in msg and "--allow-legacy-registry" in msg


def test_v1_registry_still_verifies_when_accepted_and_says_it_is_only_plain_hash_chained(tmp_path):
    path = _v1_registry(tmp_path / "allocation.sqlite", key=KEY)
    ok, msg = registry.verify(path, allow_v1=True)
    assert ok and "hbeval-registry/1" in msg and "plain-hash" in msg
    ok, msg = registry.verify(path, key=KEY, allow_v1=True)
    assert ok and "6 seals verified" in msg and "plain-hash" in msg
    assert len(registry.read(path)) == 6
    h = registry.head_of(path)
    assert h["schema"] == "hbeval-registry/1" and registry.verify(path, head=h["receipt"], allow_v1=True)[0]
    _exec(path, "UPDATE allocations SET cell = 0, frame_arm = 'frame_only', teaming_arm = 'no_teaming' WHERE seq = 5")
    ok, msg = registry.verify(path, allow_v1=True)
    assert not ok and "row 5 " in msg


def test_v1_seals_still_catch_a_rewrite_and_hbeval_does_not_append_to_v1(tmp_path):
    path = _v1_registry(tmp_path / "allocation.sqlite", key=KEY)
    df = registry.read(path)
    c = sqlite3.connect(path)
    prev = registry.GENESIS
    for _, r in df.iterrows():  # rewrite row 3 and recompute the v1 chain
        row = {f: (None if pd.isna(r[f]) else r[f]) for f in registry.FIELDS} | {"prev_hash": prev}
        if row["seq"] == 3:
            row["cell"] = (row["cell"] + 1) % 4
        h = registry.row_hash(row, "hbeval-registry/1")
        c.execute("UPDATE allocations SET cell = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
                  (int(row["cell"]), prev, h, int(row["seq"])))
        prev = h
    c.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (prev,))
    c.commit()
    c.close()
    assert registry.verify(path, allow_v1=True)[0]
    assert not registry.verify(path)[0]
    ok, msg = registry.verify(path, key=KEY, allow_v1=True)
    assert not ok and "row 3" in msg and "seal" in msg
    conn = registry.connect(path, key=KEY)
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(registry.RegistryError, match="hbeval-registry/1"):
        registry.append(conn, [_row(7)], KEY)
    conn.execute("ROLLBACK")
    conn.close()


def test_assign_verify_exits_1_on_a_v1_registry_unless_the_legacy_flag_is_given(tmp_path, capsys, monkeypatch):
    from hbeval.cli import main

    s = tmp_path / "study"
    s.mkdir()
    (s / "study.toml").write_text('[study]\nname = "legacy"\n', encoding="utf-8")
    _v1_registry(s / registry.REGISTRY_NAME)
    monkeypatch.delenv("HBEVAL_ALLOCATION_KEY", raising=False)
    assert main(["assign", str(s), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "legacy hbeval-registry/1" in err and "can change an arm and recompute the chain" in err
    rc = main(["assign", str(s), "--verify", "--allow-legacy-registry"])
    out = capsys.readouterr()
    assert "legacy hbeval-registry/1" not in out.err and "plain-hash" in out.out + out.err
    assert rc == 0 and out.out.startswith("OK: "), out
    assert main(["assign", str(s), "--all", "--allow-legacy-registry"]) == 2
    assert "--allow-legacy-registry goes with --verify" in capsys.readouterr().err
