"""The allocation registry ``STUDY/allocation.sqlite``: append-only, hash-chained.

Every allocation is one row of table ``allocations``. A row carries the SHA-256 of the
previous row (``prev_hash``) and its own hash (``row_hash``) over all its fields, so that any
edit, deletion, insertion or reordering breaks the chain at the first changed row. Table
``meta`` keeps the number of rows and the head hash, written in the same transaction as the
rows, so that a row cut off the end is noticed too.

Writers take SQLite's write lock with ``BEGIN IMMEDIATE`` (:func:`begin`) before they read the state they
decide on, so concurrent coordinators are serialised: no family is assigned twice and a
block's position is never taken twice. The file uses the rollback journal (no WAL side
files) and holds no wall-clock value other than the ``recorded_at`` the caller passes, so its
bytes depend only on the allocations and the injected clock.

This module knows nothing about designs or studies: rows in, rows out, chain checks.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

REGISTRY_NAME = "allocation.sqlite"
SCHEMA_VERSION = "hbeval-registry/1"
GENESIS = "0" * 64

#: Fields of one allocation, in hashing order (``row_hash`` excluded).
FIELDS: tuple[str, ...] = (
    "seq",  # 1, 2, ... in the order of allocation
    "client_id",
    "cell",  # 0..3 (see hbeval.randomisation.design)
    "frame_arm",
    "teaming_arm",
    "stratum",
    "method",  # batch | blocks | minimisation
    "batch",  # batch run number (batch rows), else NULL
    "stratum_seq",  # 1-based position among the rows of the same method and stratum
    "seed",  # the public seed of a batch run, else NULL
    "key_id",  # fingerprint of the allocation key (keyed methods), else NULL
    "algorithm",  # algorithm and version, with its parameters
    "assigned_on",  # ISO date
    "recorded_at",  # ISO timestamp
    "prev_hash",
)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seals (seq INTEGER PRIMARY KEY, key_id TEXT NOT NULL, mac TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS allocations (
    seq INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    cell INTEGER NOT NULL CHECK (cell BETWEEN 0 AND 3),
    frame_arm TEXT NOT NULL,
    teaming_arm TEXT NOT NULL,
    stratum TEXT NOT NULL,
    method TEXT NOT NULL,
    batch INTEGER,
    stratum_seq INTEGER,
    seed TEXT,
    key_id TEXT,
    algorithm TEXT NOT NULL,
    assigned_on TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL
);
"""

EXPORT_COLUMNS = ["client_id", "frame_arm", "teaming_arm", "stratum", "assigned_on"]


def row_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a row's fields in :data:`FIELDS` order, as canonical JSON.

    Notes
    -----
    ``sha256("hbeval-registry/1\\n" + json.dumps([row[f] for f in FIELDS]))`` with sorted,
    compact, UTF-8 JSON; integers stay integers and NULL is ``null``.
    """
    vals = [_norm(row.get(f)) for f in FIELDS]
    payload = SCHEMA_VERSION + "\n" + json.dumps(vals, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _norm(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def connect(path: str | Path, create: bool = True, timeout: float = 120.0) -> sqlite3.Connection:
    """Open (and create) a registry; autocommit mode, transactions are explicit."""
    path = Path(path)
    if not create and not path.exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA busy_timeout=%d" % int(timeout * 1000))  # readers wait for a commit to finish
    if create and not _has_tables(conn):
        begin(conn, timeout)
        try:
            for stmt in _DDL.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('n_rows', '0')")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('head_hash', ?)", (GENESIS,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return conn


def begin(conn: sqlite3.Connection, timeout: float = 120.0) -> None:
    """``BEGIN IMMEDIATE``, retrying with short random waits while another writer holds the lock.

    SQLite's own busy handler backs off to 100 ms sleeps, which wastes most of the time when
    several coordinators enrol at once; a retry every few milliseconds keeps the queue moving.
    """
    deadline = time.monotonic() + timeout
    rnd = random.Random()
    (old,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(rnd.uniform(0.001, 0.006))
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(old)}")


def _has_tables(conn: sqlite3.Connection) -> bool:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"meta", "allocations", "seals"} <= names


def seal_mac(key: bytes, seq: int, row_hash_: str) -> str:
    """``HMAC-SHA-256(key, "hbeval-seal/1:<seq>:<row_hash>")`` (hex)."""
    return hmac.new(key, f"hbeval-seal/1:{int(seq)}:{row_hash_}".encode(), hashlib.sha256).hexdigest()


def seal(conn: sqlite3.Connection, key: bytes, key_id: str, rows: list[dict[str, Any]]) -> None:
    """Seal the last of ``rows`` (the new head) with a keyed MAC; same transaction as the rows.

    The hash chain shows any change to a row unless someone rewrites every hash after it; a
    seal cannot be rewritten without the allocation key, so a rewritten chain fails at the
    first seal after the change (checked by :func:`verify` when the key is at hand).
    """
    if rows:
        last = rows[-1]
        conn.execute("INSERT INTO seals VALUES (?, ?, ?)", (last["seq"], key_id, seal_mac(key, last["seq"], last["row_hash"])))


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    """``(last seq, last row_hash)`` (``(0, GENESIS)`` when empty)."""
    r = conn.execute("SELECT seq, row_hash FROM allocations ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS) if r is None else (int(r[0]), str(r[1]))


def append(conn: sqlite3.Connection, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Append rows to the chain; call inside the caller's ``BEGIN IMMEDIATE`` transaction.

    ``seq`` and ``prev_hash`` are filled in here. Returns the rows as written.
    """
    seq, prev = head(conn)
    written = []
    for r in rows:
        seq += 1
        row = {f: _norm(r.get(f)) for f in FIELDS}
        row["seq"] = seq
        row["prev_hash"] = prev
        row["row_hash"] = row_hash(row)
        prev = row["row_hash"]
        written.append(row)
    if written:
        cols = list(FIELDS) + ["row_hash"]
        conn.executemany(
            f"INSERT INTO allocations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(w[c] for c in cols) for w in written],
        )
        conn.execute("UPDATE meta SET value = ? WHERE key = 'n_rows'", (str(seq),))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (prev,))
    return written


def read(path_or_conn: str | Path | sqlite3.Connection) -> pd.DataFrame:
    """Every row, in ``seq`` order (columns :data:`FIELDS` + ``row_hash``)."""
    conn = path_or_conn if isinstance(path_or_conn, sqlite3.Connection) else connect(path_or_conn, create=False)
    try:
        cur = conn.execute(f"SELECT {', '.join(FIELDS)}, row_hash FROM allocations ORDER BY seq")
        data = cur.fetchall()
    finally:
        if not isinstance(path_or_conn, sqlite3.Connection):
            conn.close()
    df = pd.DataFrame(data, columns=[*FIELDS, "row_hash"])
    for c in ("seq", "cell"):
        df[c] = df[c].astype("int64")
    return df


def export_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """``assignments.csv`` content: the contract's columns, sorted by ``client_id``."""
    out = rows[EXPORT_COLUMNS].astype(str).sort_values("client_id", kind="mergesort")
    return out.reset_index(drop=True)


def write_export(conn: sqlite3.Connection, csv_path: str | Path) -> Path:
    """(Re)write ``assignments.csv`` from the registry, atomically (temp file + rename).

    Plain ``csv`` rather than pandas: it runs inside the write lock, so it must be quick.
    Same bytes as ``export_frame(...).to_csv(index=False, lineterminator="\\n")``.
    """
    csv_path = Path(csv_path)
    rows = conn.execute(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM allocations ORDER BY client_id").fetchall()
    rows.sort(key=lambda r: r[0])  # Python's code-point order, as pandas sorts
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    w.writerows([["" if v is None else str(v) for v in r] for r in rows])
    data = buf.getvalue().encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=".assignments.", suffix=".tmp", dir=csv_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, csv_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return csv_path


def verify(path: str | Path, assignments_csv: str | Path | None = None,
           key: bytes | None = None, key_id: str | None = None) -> tuple[bool, str]:
    """Check the hash chain; name the first bad row.

    Checks, in order: every row's ``seq`` is its position (1, 2, ...), its ``prev_hash`` is the
    previous row's hash, its ``row_hash`` is the hash of its fields; ``meta`` agrees on the
    number of rows and the head hash (a row cut off the end); no family appears twice; and,
    when given, ``assignments.csv`` holds exactly the registry's assignments; and, when the
    allocation ``key`` is given, every seal made with it matches its row and every row drawn
    with that key (``key_id``) is sealed (so a chain rewritten from some row on is caught at
    the first keyed row after it).

    Returns
    -------
    ``(ok, message)``; the message names the first bad row ("row k" is the k-th row in
    ``seq`` order, 1-based) and what is wrong with it.
    """
    path = Path(path)
    if not path.exists():
        return False, f"{path.name} does not exist"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            rows = conn.execute(f"SELECT {', '.join(FIELDS)}, row_hash FROM allocations ORDER BY seq").fetchall()
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            has_seals = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'seals'").fetchone()[0]
            seals = conn.execute("SELECT seq, key_id, mac FROM seals ORDER BY seq").fetchall() if has_seals else []
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return False, f"{path.name} cannot be read as an allocation registry ({e})"
    prev = GENESIS
    seen: dict[str, int] = {}
    for i, vals in enumerate(rows, start=1):
        row = dict(zip([*FIELDS, "row_hash"], vals))
        who = f"row {i} (seq {row['seq']}, client_id {row['client_id']})"
        if row["seq"] != i:
            what = "a row before it was deleted" if isinstance(row["seq"], int) and row["seq"] > i else "rows were inserted or renumbered"
            return False, f"{path.name}: {who}: sequence number should be {i} ({what})"
        if row["prev_hash"] != prev:
            return False, (f"{path.name}: {who}: previous-row hash does not match row {i - 1} "
                           f"(a row was deleted, inserted or moved before it)")
        if row_hash(row) != row["row_hash"]:
            return False, f"{path.name}: {who}: contents do not match the row's hash (edited or moved)"
        if row["client_id"] in seen:
            return False, f"{path.name}: {who}: family already allocated in row {seen[row['client_id']]}"
        seen[row["client_id"]] = i
        prev = row["row_hash"]
    n = len(rows)
    try:
        meta_n = int(meta.get("n_rows", "-1"))
    except ValueError:
        meta_n = -1
    if meta_n != n or meta.get("head_hash") != prev:
        if meta_n > n:
            return False, f"{path.name}: row {n + 1}: missing (the registry recorded {meta_n} rows; rows were cut off the end)"
        return False, f"{path.name}: row {min(n, max(meta_n, 0)) + 1}: not recorded in the registry head (rows added or changed outside hbeval)"
    sealed = ""
    if key is not None and key_id is not None:
        by_seq = {r[0]: r for r in rows}
        mine = {s_[0]: s_ for s_ in seals if s_[1] == key_id}
        for sq, s_ in sorted(mine.items()):
            r = by_seq.get(sq)
            if r is None or not hmac.compare_digest(s_[2], seal_mac(key, sq, r[-1])):
                return False, (f"{path.name}: row {sq}: its seal does not match (the hash chain was rewritten at or "
                               "before this row)")
        unsealed = [r[0] for r in rows if r[FIELDS.index("key_id")] == key_id and r[0] not in mine]
        if unsealed:
            return False, f"{path.name}: row {unsealed[0]}: drawn with the key but not sealed (added or rewritten outside hbeval)"
        sealed = f", {len(mine)} seals verified with the key"
    if assignments_csv is not None and Path(assignments_csv).exists():
        try:
            got = pd.read_csv(assignments_csv, dtype=str, keep_default_na=False, encoding="utf-8")
        except Exception as e:  # noqa: BLE001 - any unreadable export is a failed check
            return False, f"{Path(assignments_csv).name} cannot be read ({e})"
        want = export_frame(pd.DataFrame(rows, columns=[*FIELDS, "row_hash"]) if rows else
                            pd.DataFrame(columns=[*FIELDS, "row_hash"]))
        missing = [c for c in EXPORT_COLUMNS if c not in got.columns]
        if missing:
            return False, f"{Path(assignments_csv).name}: columns {missing} missing"
        got = got[EXPORT_COLUMNS].sort_values("client_id", kind="mergesort").reset_index(drop=True)
        if len(got) != len(want) or not (got.to_numpy() == want.to_numpy()).all():
            bad = _first_difference(got, want)
            return False, f"{Path(assignments_csv).name} differs from {path.name} ({bad}); re-export with hbeval assign"
    return True, f"{path.name}: {n} allocations, hash chain intact (head {prev[:12]}){sealed}"


def _first_difference(got: pd.DataFrame, want: pd.DataFrame) -> str:
    g = {r["client_id"]: tuple(r) for _, r in got.iterrows()}
    w = {r["client_id"]: tuple(r) for _, r in want.iterrows()}
    for cid in sorted(set(g) | set(w)):
        if cid not in w:
            return f"family {cid} is not in the registry"
        if cid not in g:
            return f"family {cid} is missing"
        if g[cid] != w[cid]:
            return f"family {cid} differs"
    return "order"
