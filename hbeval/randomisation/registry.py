"""The allocation registry ``STUDY/allocation.sqlite``: append-only, hash-chained, keyed.

Every allocation is one row of table ``allocations``. A row carries the SHA-256 of the
previous row (``prev_hash``; row 1 points to :func:`genesis`, a hash of the key's fingerprint)
and its own hash (``row_hash``) over all its fields, so that any edit, deletion, insertion or
reordering breaks the chain at the first changed row. Since
``hbeval-registry/2`` every row, batch or sequential, also carries ``row_mac``, an
HMAC-SHA-256 of its hash under the study's allocation key, and table ``meta`` keeps the number
of rows, the head hash and ``head_mac`` (the same HMAC over both), written in the same
transaction as the rows. So:

* with the key, :func:`verify` catches an edited, inserted, reordered, appended or deleted
  row even when the plain hash chain was recomputed (the forger cannot make the MACs), a row
  cut off the end (the head MAC names the old head), and a registry replaced by one made with
  another key;
* without the key, a *receipt* (the sequence number and head hash that hbeval prints after
  every allocation, kept outside the study folder) pins every row up to it: the head hash
  commits to the whole chain before it, so a truncation, a replacement or a rewrite of an
  earlier row no longer contains the receipt's head at its sequence number. This is the
  published tree head of Certificate Transparency, for a chain.

What neither check can see is a registry rolled back to an older copy of itself (kept by
someone with file access) after which no receipt was taken: keep the latest receipt.

``hbeval-registry/1`` files (a plain SHA-256 chain; keyed seals on sequential rows only) are
still read and verified, with a message that their chain alone does not prove anything against
someone who can rewrite the file; hbeval does not append to them.

Writers take SQLite's write lock with ``BEGIN IMMEDIATE`` (:func:`begin`) before they read the state they
decide on, so concurrent coordinators are serialised: no family is assigned twice and a
block's position is never taken twice. The file uses the rollback journal (no WAL side
files) and holds no wall-clock value other than the ``recorded_at`` the caller passes, so its
bytes depend only on the allocations, the key and the injected clock.

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
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

REGISTRY_NAME = "allocation.sqlite"
SCHEMA_VERSION = "hbeval-registry/2"
SCHEMA_V1 = "hbeval-registry/1"
#: The ``prev_hash`` of the first row of an ``hbeval-registry/1`` file (``/2``: :func:`genesis`).
GENESIS = "0" * 64
#: ``meta`` key of the SHA-256 of the sealed analysis plan that opened the registry (absent: none).
PLAN_KEY = "plan_sha256"
#: Hex digits of the head hash printed on a receipt (80 bits); ``--head`` needs at least 16.
RECEIPT_HEX = 20
MIN_RECEIPT_HEX = 16

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
    "key_id",  # fingerprint of the key the arm was drawn with (keyed methods), else NULL
    "algorithm",  # algorithm and version, with its parameters
    "assigned_on",  # ISO date
    "recorded_at",  # ISO timestamp
    "prev_hash",
)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
    row_hash TEXT NOT NULL,
    row_mac TEXT NOT NULL
);
"""

EXPORT_COLUMNS = ["client_id", "frame_arm", "teaming_arm", "stratum", "assigned_on"]


class RegistryError(ValueError):
    """A registry that hbeval must not append to (older format, another key)."""


def row_hash(row: Mapping[str, Any], version: str = SCHEMA_VERSION) -> str:
    """SHA-256 (hex) of a row's fields in :data:`FIELDS` order, as canonical JSON.

    Notes
    -----
    ``sha256(version + "\\n" + json.dumps([row[f] for f in FIELDS]))`` with compact, UTF-8
    JSON; integers stay integers and NULL is ``null``. ``version`` is the registry's schema
    (``hbeval-registry/2``; ``/1`` to check an old file), so a hash of one format never passes
    for the other.
    """
    vals = [_norm(row.get(f)) for f in FIELDS]
    payload = version + "\n" + json.dumps(vals, ensure_ascii=False, separators=(",", ":"))
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


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """A short public name of an allocation key: 16 hex of ``HMAC-SHA-256(key, "hbeval-registry/2 key-id")``.

    Notes
    -----
    The fingerprint lets :func:`verify` say "this registry was chained with another key"
    instead of failing at row 1. It is a keyed PRF of the key, so it says nothing about the key
    except by trying keys one by one; that is why hbeval refuses keys of fewer than 128 bits
    (:func:`hbeval.study.config.key_problem`) before any fingerprint is stored: 2^128 trials
    are out of reach, whereas a fingerprint of a short or low-entropy key (a plain hash or an
    HMAC alike) would give the key away to a dictionary search.
    """
    return _mac(key, "hbeval-registry/2 key-id")[:16]


def genesis(key_id: str, plan_sha256: str | None = None) -> str:
    """The ``prev_hash`` of row 1 of an ``hbeval-registry/2`` chain: ``sha256("hbeval-registry/2 genesis:" + key_id)``,
    or, for a registry opened by a sealed analysis plan, ``sha256("hbeval-registry/2 genesis:" + key_id + ":plan:" +
    plan_sha256)``.

    Binding the key's fingerprint into the start of the chain makes every head, and so every
    receipt, name the key the registry was chained with: a registry re-made with another key
    does not hold the receipt's head even when its rows are the same. Binding the plan's hash
    (:mod:`hbeval.randomisation.plan`) makes every head name the plan too: the plan recorded
    in ``meta`` cannot be swapped without breaking the chain at row 1.
    """
    tail = f":plan:{plan_sha256}" if plan_sha256 else ""
    return hashlib.sha256(f"{SCHEMA_VERSION} genesis:{key_id}{tail}".encode()).hexdigest()


def chain_start(meta: Mapping[str, str]) -> str:
    """Where a registry's chain starts: :func:`genesis` of its key and plan (``/2``), else :data:`GENESIS`."""
    if meta.get("schema") != SCHEMA_VERSION:
        return GENESIS
    return genesis(meta.get("key_id", ""), meta.get(PLAN_KEY))


def row_mac(key: bytes, row_hash_: str) -> str:
    """``HMAC-SHA-256(key, "hbeval-registry/2 row:" + row_hash)`` (hex); the row hash covers ``seq`` and ``prev_hash``."""
    return _mac(key, f"{SCHEMA_VERSION} row:{row_hash_}")


def head_mac(key: bytes, n_rows: int, head_hash: str) -> str:
    """``HMAC-SHA-256(key, "hbeval-registry/2 head:<n_rows>:<head_hash>")`` (hex): the keyed registry head."""
    return _mac(key, f"{SCHEMA_VERSION} head:{int(n_rows)}:{head_hash}")


def seal_mac(key: bytes, seq: int, row_hash_: str) -> str:
    """The ``hbeval-registry/1`` seal of a sequential row: ``HMAC-SHA-256(key, "hbeval-seal/1:<seq>:<row_hash>")``."""
    return _mac(key, f"hbeval-seal/1:{int(seq)}:{row_hash_}")


def connect(path: str | Path, create: bool = True, timeout: float = 120.0,
            key: bytes | None = None, plan_sha256: str | None = None) -> sqlite3.Connection:
    """Open a registry; autocommit mode, transactions are explicit.

    With ``create`` a missing registry is made (tables and a keyed empty head), which needs the
    allocation ``key``; ``plan_sha256``, the hash of the sealed analysis plan, opens it
    (recorded in ``meta`` as :data:`PLAN_KEY` and bound into :func:`genesis`). An existing
    registry is opened as it is.
    """
    path = Path(path)
    if not create and not path.exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")  # readers wait for a commit to finish
    if create and not _has_tables(conn):
        if key is None:
            conn.close()
            raise RegistryError("creating an allocation registry needs the allocation key")
        begin(conn, timeout)
        try:
            for stmt in _DDL.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            kid = key_fingerprint(key)
            start = genesis(kid, plan_sha256)
            plan = ((PLAN_KEY, plan_sha256),) if plan_sha256 else ()
            for k, v in (("schema", SCHEMA_VERSION), ("n_rows", "0"), ("head_hash", start),
                         ("key_id", kid), ("head_mac", head_mac(key, 0, start)), *plan):
                conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (k, v))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return conn


def reopen(conn: sqlite3.Connection, key: bytes, plan_sha256: str) -> None:
    """Re-open an empty ``hbeval-registry/2`` registry with a newly sealed plan: ``meta`` gets the
    plan's hash, the new chain start (:func:`genesis`) as its head and the head's MAC.

    Raises
    ------
    RegistryError
        The registry holds allocations, is not ``hbeval-registry/2``, or was made with another key.
    """
    begin(conn)
    try:
        meta = _meta(conn)
        (n,) = conn.execute("SELECT count(*) FROM allocations").fetchone()
        if n:
            raise RegistryError(f"the registry holds {n} allocation(s): its plan can no longer change")
        if meta.get("schema") != SCHEMA_VERSION or meta.get("key_id") != key_fingerprint(key):
            raise RegistryError("this registry is not one hbeval can re-open with this key")
        start = genesis(meta["key_id"], plan_sha256)
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (PLAN_KEY, plan_sha256))
        for k, v in (("head_hash", start), ("head_mac", head_mac(key, 0, start))):
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (v, k))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def plan_of(path: str | Path) -> str | None:
    """The SHA-256 of the analysis plan that opened the registry at ``path`` (``None``: none, or no registry)."""
    path = Path(path)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        if not _has_tables(conn):
            return None
        r = conn.execute("SELECT value FROM meta WHERE key = ?", (PLAN_KEY,)).fetchone()
    finally:
        conn.close()
    return None if r is None else str(r[0])


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
    return {"meta", "allocations"} <= names


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    """``(last seq, last row_hash)`` (``(0, chain start)`` when empty)."""
    r = conn.execute("SELECT seq, row_hash FROM allocations ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, chain_start(_meta(conn))) if r is None else (int(r[0]), str(r[1]))


def head_of(path: str | Path) -> dict[str, Any] | None:
    """The registry head as a receipt carries it, or ``None`` when there is no readable registry.

    Returns
    -------
    ``{"schema", "seq", "head", "receipt"}``: the number of rows, the full head hash (the last
    row's ``row_hash``) and the receipt text ``"<seq>:<first 20 hex of head>"``, which
    ``hbeval assign --verify --head`` accepts.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            if not _has_tables(conn):
                return None
            seq, h = head(conn)
            (schema,) = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() or (SCHEMA_V1,)
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    return {"schema": str(schema), "seq": seq, "head": h, "receipt": receipt(seq, h)}


def receipt(seq: int, head_hash: str) -> str:
    """The receipt of a registry head: ``"<seq>:<first RECEIPT_HEX hex of the head hash>"``."""
    return f"{int(seq)}:{head_hash[:RECEIPT_HEX]}"


def parse_receipt(text: str) -> tuple[int | None, str]:
    """``(seq or None, hex prefix)`` from ``"412:3f9a…"``, ``"seq 412 head 3f9a…"`` or ``"3f9a…"``.

    Raises
    ------
    ValueError
        When there are fewer than :data:`MIN_RECEIPT_HEX` hex digits.
    """
    t = text.strip().lower().replace("…", "").replace("...", "")
    m = re.fullmatch(r"(?:receipt:\s*)?(?:seq\s+)?(?:(\d+)\s*(?::|\s+head\s+|\s+))?([0-9a-f]+)", t)
    if not m or len(m.group(2)) < MIN_RECEIPT_HEX:
        raise ValueError(f"a receipt is '<seq>:<hex>' with at least {MIN_RECEIPT_HEX} hex digits of the head "
                         f"(as hbeval assign printed it), not {text!r}")
    return (int(m.group(1)) if m.group(1) else None), m.group(2)


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def append(conn: sqlite3.Connection, rows: Iterable[Mapping[str, Any]], key: bytes) -> list[dict[str, Any]]:
    """Append rows to the keyed chain; call inside the caller's ``BEGIN IMMEDIATE`` transaction.

    ``seq``, ``prev_hash``, ``row_hash`` and ``row_mac`` are filled in here, and ``meta`` gets
    the new head and its MAC. Returns the rows as written.

    Raises
    ------
    RegistryError
        The registry is ``hbeval-registry/1`` or was chained with another key.
    """
    meta = _meta(conn)
    if meta.get("schema") != SCHEMA_VERSION:
        raise RegistryError(f"this allocation registry is {meta.get('schema', SCHEMA_V1)} (a plain-hash chain) and "
                            f"hbeval now writes only {SCHEMA_VERSION}; keep the hbeval version that started this study "
                            "for its allocations, or start a new registry")
    if meta.get("key_id") != key_fingerprint(key):
        raise RegistryError(f"this allocation registry was chained with the key {meta.get('key_id')}, not with the "
                            f"allocation key at hand ({key_fingerprint(key)}): use the study's key")
    seq, prev = head(conn)
    written = []
    for r in rows:
        seq += 1
        row = {f: _norm(r.get(f)) for f in FIELDS}
        row["seq"] = seq
        row["prev_hash"] = prev
        row["row_hash"] = row_hash(row)
        row["row_mac"] = row_mac(key, row["row_hash"])
        prev = row["row_hash"]
        written.append(row)
    if written:
        cols = [*FIELDS, "row_hash", "row_mac"]
        conn.executemany(
            f"INSERT INTO allocations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(w[c] for c in cols) for w in written],
        )
        for k, v in (("n_rows", str(seq)), ("head_hash", prev), ("head_mac", head_mac(key, seq, prev))):
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (v, k))
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


def _v1_key_id(key: bytes) -> str:
    """The key fingerprint ``hbeval-registry/1`` stored beside its seals."""
    return hashlib.sha256(b"hbeval-key-id:" + key).hexdigest()[:12]


def _load(path: Path) -> tuple[list[dict[str, Any]], dict[str, str], list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(allocations)")}
        mac = "row_mac" if "row_mac" in cols else "NULL"
        names = [*FIELDS, "row_hash", "row_mac"]
        rows = [dict(zip(names, v)) for v in
                conn.execute(f"SELECT {', '.join(FIELDS)}, row_hash, {mac} FROM allocations ORDER BY seq").fetchall()]
        meta = _meta(conn)
        has_seals = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'seals'").fetchone()[0]
        seals = conn.execute("SELECT seq, key_id, mac FROM seals ORDER BY seq").fetchall() if has_seals else []
    finally:
        conn.close()
    return rows, meta, seals


def verify(path: str | Path, assignments_csv: str | Path | None = None, key: bytes | None = None,
           key_id: str | None = None, head: str | None = None, allow_v1: bool = False) -> tuple[bool, str]:
    """Check the registry: its chain, with the allocation ``key`` its MACs, against a receipt its head.

    Checks, in order:

    1. every row's ``seq`` is its position (1, 2, ...), its ``prev_hash`` is the previous row's
       hash, its ``row_hash`` is the hash of its fields, no family appears twice, and (with the
       ``key``, ``hbeval-registry/2``) its ``row_mac`` is the HMAC of its hash;
    2. ``meta`` agrees on the number of rows and the head hash (a row cut off the end), and with
       the key ``head_mac`` is the HMAC of both (a truncation whose count and head were fixed);
    3. for an ``hbeval-registry/1`` file with the key: every seal made with it (``key_id``,
       default the v1 fingerprint of ``key``) matches and every row drawn with it is sealed;
    4. with a receipt ``head`` (:func:`parse_receipt`): the row at the receipt's ``seq`` has a
       hash starting with the receipt's digits (without a ``seq``: some row has). Later rows
       are fine; a truncation, a replacement or any rewrite up to that row is not;
    5. when given, ``assignments.csv`` holds exactly the registry's assignments;
    6. an ``hbeval-registry/1`` file fails even when every check above passes, unless
       ``allow_v1``: its chain is a plain SHA-256 chain (batch rows carry no seal), which anyone
       with the file can recompute after changing an arm, so an intact chain shows nothing.
       ``hbeval assign --verify --allow-legacy-registry`` accepts it, with the warning.

    Returns
    -------
    ``(ok, message)``; the message names the first bad row ("row k" is the k-th row in
    ``seq`` order, 1-based) and what is wrong with it, or what was checked.
    """
    path = Path(path)
    if not path.exists():
        return False, f"{path.name} does not exist"
    try:
        rows, meta, seals = _load(path)
    except sqlite3.DatabaseError as e:
        return False, f"{path.name} cannot be read as an allocation registry ({e})"
    schema = meta.get("schema", SCHEMA_V1)
    if schema not in (SCHEMA_V1, SCHEMA_VERSION):
        return False, f"{path.name}: unknown registry format {schema!r}"
    mac_key = key if schema == SCHEMA_VERSION else None  # the key that made this file's MACs, if it is /2
    if mac_key is not None and meta.get("key_id") != key_fingerprint(mac_key):
        return False, (f"{path.name}: chained with the key {meta.get('key_id')}, not with the allocation key at hand "
                       f"({key_fingerprint(mac_key)}): the registry was replaced, or the key is not this study's")
    start = chain_start(meta)
    bad = _check_rows(path.name, rows, schema, start, mac_key) or _check_head(path.name, rows, meta, start, mac_key)
    if bad:
        return False, bad
    extra = ""
    if key is not None and schema == SCHEMA_V1:
        bad, extra = _check_v1_seals(path.name, rows, seals, key, key_id or _v1_key_id(key))
        if bad:
            return False, bad
    if mac_key is not None:
        extra = f", {len(rows)} seals verified with the key"
    if head is not None:
        try:
            bad = _check_receipt(path.name, rows, start, *parse_receipt(head))
        except ValueError as e:
            return False, str(e)
        if bad:
            return False, bad
        extra += f", receipt {head.strip()} found in the chain"
    if assignments_csv is not None and Path(assignments_csv).exists():
        bad = _check_export(path.name, rows, Path(assignments_csv))
        if bad:
            return False, bad
    n, prev = len(rows), (rows[-1]["row_hash"] if rows else start)
    msg = f"{path.name}: {n} allocations, hash chain intact (head {receipt(n, prev)}){extra}"
    if schema == SCHEMA_V1:
        msg += (f" [{SCHEMA_V1}: a plain-hash chain with seals on sequential rows only, which anyone with the file "
                "can recompute for batch rows; only a receipt kept outside the folder (--head) pins it]")
        if not allow_v1:
            return False, (f"{path.name} is a legacy {SCHEMA_V1} registry, refused: its chain is unkeyed, so anyone "
                           "with the file can change an arm and recompute the chain (batch rows carry no seal), and an "
                           "intact chain shows nothing. Check it against a receipt kept outside the study folder "
                           "(--head) and accept it explicitly with --allow-legacy-registry. What was checked: " + msg)
    return True, msg


def _check_rows(name: str, rows: list[dict[str, Any]], schema: str, start: str, key: bytes | None) -> str | None:
    prev = start
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        who = f"row {i} (seq {row['seq']}, client_id {row['client_id']})"
        if row["seq"] != i:
            what = "a row before it was deleted" if isinstance(row["seq"], int) and row["seq"] > i else "rows were inserted or renumbered"
            return f"{name}: {who}: sequence number should be {i} ({what})"
        if row["prev_hash"] != prev:
            return (f"{name}: {who}: previous-row hash does not match row {i - 1} "
                    f"(a row was deleted, inserted or moved before it)")
        if row_hash(row, schema) != row["row_hash"]:
            return f"{name}: {who}: contents do not match the row's hash (edited or moved)"
        if key is not None and not hmac.compare_digest(str(row["row_mac"] or ""), row_mac(key, row["row_hash"])):
            return (f"{name}: {who}: its MAC does not match the allocation key (the row was edited, added or "
                    "re-chained outside hbeval)")
        if row["client_id"] in seen:
            return f"{name}: {who}: family already allocated in row {seen[row['client_id']]}"
        seen[row["client_id"]] = i
        prev = row["row_hash"]
    return None


def _check_head(name: str, rows: list[dict[str, Any]], meta: dict[str, str], start: str,
                key: bytes | None) -> str | None:
    n, prev = len(rows), (rows[-1]["row_hash"] if rows else start)
    try:
        meta_n = int(meta.get("n_rows", "-1"))
    except ValueError:
        meta_n = -1
    if meta_n != n or meta.get("head_hash") != prev:
        if meta_n > n:
            return f"{name}: row {n + 1}: missing (the registry recorded {meta_n} rows; rows were cut off the end)"
        return f"{name}: row {min(n, max(meta_n, 0)) + 1}: not recorded in the registry head (rows added or changed outside hbeval)"
    if key is not None and not hmac.compare_digest(meta.get("head_mac", ""), head_mac(key, n, prev)):
        return (f"{name}: row {n + 1}: the head ({n} rows) was not recorded with the allocation key (rows were cut off "
                "the end, or the head was rewritten outside hbeval)")
    return None


def _check_v1_seals(name: str, rows: list[dict[str, Any]], seals: list[tuple[Any, ...]], key: bytes,
                    key_id: str) -> tuple[str | None, str]:
    by_seq = {r["seq"]: r for r in rows}
    mine = {s_[0]: s_ for s_ in seals if s_[1] == key_id}
    for sq, s_ in sorted(mine.items()):
        r = by_seq.get(sq)
        if r is None or not hmac.compare_digest(s_[2], seal_mac(key, sq, r["row_hash"])):
            return f"{name}: row {sq}: its seal does not match (the hash chain was rewritten at or before this row)", ""
    unsealed = [r["seq"] for r in rows if r["key_id"] == key_id and r["seq"] not in mine]
    if unsealed:
        return f"{name}: row {unsealed[0]}: drawn with the key but not sealed (added or rewritten outside hbeval)", ""
    return None, f", {len(mine)} seals verified with the key"


def _check_receipt(name: str, rows: list[dict[str, Any]], start: str, seq: int | None, digest: str) -> str | None:
    if seq is None:
        if any(str(h).startswith(digest) for h in [start, *(r["row_hash"] for r in rows)]):
            return None
        return (f"{name}: no row has the receipt's head {digest}: the registry was replaced, cut off or rewritten "
                "before the receipt's row")
    if seq > len(rows):
        return (f"{name}: row {len(rows) + 1}: missing; the receipt is for row {seq} but the registry has {len(rows)} "
                "rows (rows were cut off the end, or the registry was replaced)")
    h = start if seq == 0 else str(rows[seq - 1]["row_hash"])
    if not h.startswith(digest):
        return (f"{name}: row {seq}: its hash {h[:len(digest)]} is not the receipt's {digest} (the registry was replaced, "
                "or a row up to this one was rewritten)")
    return None


def _check_export(name: str, rows: list[dict[str, Any]], csv_path: Path) -> str | None:
    try:
        got = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    except Exception as e:  # noqa: BLE001 - any unreadable export is a failed check
        return f"{csv_path.name} cannot be read ({e})"
    want = export_frame(pd.DataFrame(rows, columns=[*FIELDS, "row_hash", "row_mac"]))
    missing = [c for c in EXPORT_COLUMNS if c not in got.columns]
    if missing:
        return f"{csv_path.name}: columns {missing} missing"
    got = got[EXPORT_COLUMNS].sort_values("client_id", kind="mergesort").reset_index(drop=True)
    if len(got) != len(want) or not (got.to_numpy() == want.to_numpy()).all():
        return f"{csv_path.name} differs from {name} ({_first_difference(got, want)}); re-export with hbeval assign"
    return None


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
