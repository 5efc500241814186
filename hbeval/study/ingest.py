"""Ingestion: messy office exports in, a validated DuckDB study store and a ledger out.

This module is the I/O boundary. It reads each table of the study folder from CSV
(comma or semicolon, decimal comma, UTF-8 with or without BOM, or CP1252) or ``.xlsx``,
maps Finnish headers and values to the canonical ones (``data_schema/aliases.json``),
drops direct-identifier columns, replaces ``hetu`` by a keyed pseudonym, and validates
every cell against the Frictionless schema in ``data_schema/tables``. The checks are
compiled from the schema into SQL and run inside DuckDB, so a national-register export of
tens of millions of rows is never loaded into pandas.

Every input row is accounted for in the :class:`~hbeval.study.quality.Ledger`: accepted, or
rejected with file, spreadsheet row, column, value and rule. When nothing is rejected the
store ``STUDY/.hbeval/store.duckdb`` is replaced atomically; otherwise the previous store
stays as it was.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from hbeval import __version__
from hbeval.errors import InputError
from hbeval.outdir import TMP_MARKER, _alive
from hbeval.privacy import IDENTITY_CODE_PREFILTER_RE2, has_identity_code
from hbeval.study.config import StudyConfig, load_config, regular_file
from hbeval.study.pseudonym import check_hetu, pseudonym, weak_key_message
from hbeval.study.quality import Ledger
from hbeval.study.schema import (
    TABLE_ORDER,
    Instrument,
    TableSchema,
    column_alias_map,
    data_schema_dir,
    instruments,
    is_direct_identifier,
    normalise_name,
    study_instrument_files,
    table_schema,
    tables,
    value_alias_map,
)

WORK_DIR = ".hbeval"
#: DuckDB column type of each Frictionless field type.
SQL_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "date": "DATE"}
STORE_NAME = "store.duckdb"
PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"
#: Dates later than this many days after the run are implausible.
FUTURE_DAYS = 366
EARLIEST_DATE = "1900-01-01"
_CP1252_UNDEFINED = {0x81, 0x8D, 0x8F, 0x90, 0x9D}
_CHUNK = 1 << 24
#: A table with more columns is refused: the checks compiled per column grow with the
#: square of their number (10,000 columns took over 15 minutes), and no export needs more.
MAX_COLUMNS = 500
#: A worksheet whose used area (rows × columns, declared or found) is larger is refused
#: before it is read: the reader allocates the whole rectangle (``A1:XFD1048576`` is 512 GiB).
MAX_XLSX_CELLS = 10_000_000
#: Untagged ``.hbeval/ingest-*`` folders older than this (seconds) are left by an earlier version.
_STALE_UNTAGGED = 3600


def work_dir(study_dir: Path) -> Path:
    return Path(study_dir) / WORK_DIR


def store_path(study_dir: Path) -> Path:
    return work_dir(study_dir) / STORE_NAME


# ------------------------------------------------------------------ sources
@dataclass(frozen=True)
class Source:
    table: str
    path: Path
    sheet: str | None = None  # for .xlsx

    @property
    def label(self) -> str:
        return f"{self.path.name}[{self.sheet}]" if self.sheet and self.path.stem != self.table else self.path.name


def find_sources(study_dir: Path) -> dict[str, Source]:
    """Locate each table: ``<table>.csv``, ``<table>.xlsx`` or a sheet ``<table>`` of a workbook."""
    study_dir = Path(study_dir)
    found: dict[str, list[Source]] = {}
    for name in TABLE_ORDER:
        for ext in (".csv", ".xlsx"):
            p = study_dir / f"{name}{ext}"
            if os.path.lexists(p):  # a dangling link is an error below, not a missing table
                regular_file(p)
                found.setdefault(name, []).append(Source(name, p, name if ext == ".xlsx" else None))
    for wb in sorted(study_dir.glob("*.xlsx")):
        if wb.stem in TABLE_ORDER or wb.name.startswith("~$"):
            continue
        regular_file(wb)
        for sheet in _sheet_names(wb):
            t = normalise_name(sheet)
            if t in TABLE_ORDER:
                found.setdefault(t, []).append(Source(t, wb, sheet))
    out: dict[str, Source] = {}
    for name, srcs in found.items():
        if len(srcs) > 1:
            raise InputError(
                f"table {name} is given more than once ({', '.join(s.label for s in srcs)}); keep one", file=srcs[0].path.name
            )
        out[name] = srcs[0]
    return out


def _workbook(path: Path):
    from python_calamine import CalamineWorkbook

    try:
        return CalamineWorkbook.from_path(str(path))
    except Exception as e:
        raise InputError(f"not a readable .xlsx workbook ({type(e).__name__}: {e})", file=path.name, row=1, column="A") from e


def _sheet_names(path: Path) -> list[str]:
    return list(_workbook(path).sheet_names)


_XML_ATTR = r'\b{}\s*=\s*"([^"]*)"'
_CELL_REF = re.compile(r"([A-Z]{1,3})?([0-9]+)")
_ROW_OR_CELL = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(row|c)\b([^<>]*)>")
_R_ATTR = re.compile(rb'\br\s*=\s*"([A-Z]{0,3})([0-9]+)"')


def _col_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def _sheet_xml(zf: zipfile.ZipFile, sheet: str) -> str | None:
    """Path inside the workbook of the worksheet named ``sheet`` (None when not found)."""
    try:
        book = zf.read("xl/workbook.xml")[: 1 << 20].decode("utf-8", "replace")
        rels = zf.read("xl/_rels/workbook.xml.rels")[: 1 << 20].decode("utf-8", "replace")
    except KeyError:
        return None
    targets = {}
    for m in re.finditer(r"<Relationship\b[^>]*>", rels):
        rid, tgt = re.search(_XML_ATTR.format("Id"), m.group(0)), re.search(_XML_ATTR.format("Target"), m.group(0))
        if rid and tgt:
            targets[rid.group(1)] = tgt.group(1)
    for m in re.finditer(r"<(?:\w+:)?sheet\b[^>]*>", book):
        name, rid = re.search(_XML_ATTR.format("name"), m.group(0)), re.search(_XML_ATTR.format(r"r:id"), m.group(0))
        if name and rid and html_unescape(name.group(1)) == sheet and rid.group(1) in targets:
            target = targets[rid.group(1)]
            return target.lstrip("/") if target.startswith("/") else "xl/" + target
    return None


def _sheet_extent(zf: zipfile.ZipFile, member: str) -> tuple[int, int, int, int, int]:
    """``(declared rows, declared columns, rows, columns, row of the rightmost cell)`` of a
    worksheet's XML: the ``<dimension ref>`` it declares, and the bounding box of the rows and
    cells it holds (a cell without an ``r`` attribute follows the one before it, as readers
    place it). Streamed: the XML is never held whole."""
    decl_rows = decl_cols = rows = cols = right_row = 0
    row, col, tail, head = 0, 0, b"", True
    with zf.open(member) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            buf = tail + chunk
            if head:
                d = re.search(rb'<(?:\w+:)?dimension\b[^>]*\bref\s*=\s*"([^"]*)"', buf)
                if d:
                    last = d.group(1).decode("ascii", "replace").split(":")[-1]
                    ref = _CELL_REF.fullmatch(last.replace("$", ""))
                    if ref:
                        decl_rows, decl_cols = int(ref.group(2)), _col_number(ref.group(1) or "A")
                head = b"<sheetData" not in buf and len(buf) < (4 << 20)
            cut = buf.rfind(b"<")
            body, tail = (buf[:cut], buf[cut:]) if cut >= 0 and b">" not in buf[cut:] else (buf, b"")
            for m in _ROW_OR_CELL.finditer(body):
                r = _R_ATTR.search(m.group(2))
                if m.group(1) == b"row":
                    row = int(r.group(2)) if r else row + 1
                    col = 0
                else:
                    col = _col_number(r.group(1).decode()) if r and r.group(1) else col + 1
                    if r:
                        row = int(r.group(2))
                if col > cols:
                    cols, right_row = col, row
                rows = max(rows, row)
    return decl_rows, decl_cols, rows, cols, right_row


def _check_xlsx_extent(path: Path, sheet: str, label: str) -> None:
    """Refuse a sheet whose declared or used area is beyond :data:`MAX_COLUMNS` columns or
    :data:`MAX_XLSX_CELLS` cells, before the reader allocates it."""
    try:
        with zipfile.ZipFile(path) as zf:
            member = _sheet_xml(zf, sheet)
            if member is None or member not in zf.namelist():
                return  # let the reader say what is wrong
            extent = _sheet_extent(zf, member)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return  # not readable as a zip: the reader's own error names the file
    decl_rows, decl_cols, rows, cols, right_row = extent
    fix = "delete the rows and columns beyond the table (or save the sheet as CSV)"
    for n_rows, n_cols, at_row, how in ((decl_rows, decl_cols, 1, "declares a range reaching"),
                                        (rows, cols, right_row, "has a cell in")):
        letter = _col_letter(max(n_cols, 1) - 1)
        if n_cols > MAX_COLUMNS:
            raise InputError(f"sheet {sheet} {how} column {letter} ({n_cols:,} columns; hbeval reads at most "
                             f"{MAX_COLUMNS}): {fix}", file=label, row=max(at_row, 1), column=letter)
        if n_rows * n_cols > MAX_XLSX_CELLS:
            raise InputError(f"sheet {sheet} {how} row {n_rows:,} ({n_rows:,} rows × {n_cols} columns, more than the "
                             f"{MAX_XLSX_CELLS:,} cells hbeval reads from a sheet): {fix}", file=label, row=n_rows,
                             column=letter)


def _check_width(header: list[str], label: str) -> None:
    if len(header) > MAX_COLUMNS:
        raise InputError(f"{len(header):,} columns, more than the {MAX_COLUMNS} hbeval reads: keep the table's own "
                         "columns and remove the rest", file=label, row=1, column=_col_letter(MAX_COLUMNS))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ raw reading
@dataclass(frozen=True)
class _BadByte:
    offset: int
    problem: str


def _scan_bytes(path: Path) -> tuple[str, _BadByte | None]:
    """One pass over the raw bytes: the encoding (``utf-8`` or ``cp1252``) and the first
    byte that makes the file unreadable (a NUL, a byte that is neither UTF-8 nor
    Windows-1252, or a Windows-1252 row in an otherwise UTF-8 file)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16", _BadByte(0, "UTF-16 text (a byte-order mark FF FE); save the file as UTF-8 CSV")
    dec = codecs.getincrementaldecoder("utf-8")()
    first_bad: int | None = None
    has_multibyte = False
    pos = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            nul = chunk.find(b"\x00")
            if nul >= 0:
                return "binary", _BadByte(pos + nul, "a NUL byte: binary data or UTF-16 text, not a CSV export")
            if first_bad is None and chunk.isascii() and not dec.getstate()[0]:
                pass  # plain ASCII after whole characters: valid UTF-8 with no multibyte sequence
            elif first_bad is None:
                try:
                    dec.decode(chunk)
                except UnicodeDecodeError as e:
                    first_bad = pos + e.start
                    has_multibyte = has_multibyte or bool(_UTF8_MULTI.search(chunk, 0, e.start))
                else:
                    has_multibyte = has_multibyte or bool(_UTF8_MULTI.search(chunk))
            if first_bad is not None:
                bad = [chunk.find(bytes([b])) for b in _CP1252_UNDEFINED]
                bad = [i for i in bad if i >= 0]
                if bad:
                    return "cp1252", _BadByte(pos + min(bad), f"byte 0x{chunk[min(bad)]:02X} is neither UTF-8 nor "
                                                              "Windows-1252 text; save the file as UTF-8 CSV")
            pos += len(chunk)
    if first_bad is None:
        try:
            dec.decode(b"", final=True)
            return "utf-8", None
        except UnicodeDecodeError:
            first_bad = pos - 1
    if has_multibyte:
        return "cp1252", _BadByte(first_bad, "mixed encodings: this row is Windows-1252 (Latin-1) text while earlier "
                                             "rows are UTF-8; re-export the whole file as UTF-8 CSV")
    return "cp1252", None


_UTF8_MULTI = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


def _locate(path: Path, offset: int) -> tuple[int, bytes, bytes]:
    """Spreadsheet row of byte ``offset`` (header = row 1), the bytes of its line before the
    offset, and the header line."""
    with open(path, "rb") as f:
        header = f.readline()
        f.seek(0)
        row, done, prefix = 1, 0, b""
        while done <= offset:
            chunk = f.read(min(_CHUNK, offset - done + 1))
            if not chunk:
                break
            part = chunk[: offset - done]
            row += part.count(b"\n")
            nl = part.rfind(b"\n")
            prefix = part[nl + 1:] if nl >= 0 else prefix + part
            done += len(chunk)
    return row, prefix, header


def _fail_at(path: Path, bad: _BadByte) -> InputError:
    """An :class:`InputError` naming the row and column of a bad byte."""
    row, prefix, header = _locate(path, bad.offset)
    htext = header.decode("latin-1").lstrip("\ufeff\u00ef\u00bb\u00bf").rstrip("\r\n")
    delim = _sniff_delimiter(htext)
    k = prefix.count(delim.encode())
    names = next(csv.reader([htext], delimiter=delim), []) if row > 1 else []
    column = names[k] if k < len(names) and names[k].isascii() and names[k].strip() else _col_letter(k)
    return InputError(bad.problem, file=path.name, row=row, column=column)


def _detect_encoding(path: Path) -> str:
    """``utf-8`` (BOM or not) when the whole file decodes, else ``cp1252``; raises
    :class:`InputError` naming row and column of the first unreadable byte."""
    enc, bad = _scan_bytes(path)
    if bad is not None:
        raise _fail_at(path, bad)
    return enc


def _header_line(path: Path, encoding: str) -> str:
    with open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as f:
        line = f.readline()
    return line.rstrip("\r\n")


def _sniff_delimiter(header: str) -> str:
    counts = {d: 0 for d in (";", ",", "\t")}
    in_q = False
    for ch in header:
        if ch == '"':
            in_q = not in_q
        elif not in_q and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def fetch_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The one row of an aggregate query (``SELECT count(*) ...``); DuckDB's ``fetchone()`` is
    typed as optional, and an aggregate without a row is a bug, said as such."""
    row = con.execute(sql).fetchone()
    if row is None:
        raise RuntimeError(f"internal error: the query returned no row: {sql[:120]}")
    return row


@dataclass(frozen=True)
class _Raw:
    """A table read as text: its header, the data rows read (accepted or not), the relation
    (a table name or a subquery) with a ``_row`` column (spreadsheet row) and ``c0``, ``c1``, ...,
    whether that relation is a table of its own, and the exact repeats among its rows."""

    header: list[str]
    n_read: int
    rel: str
    is_table: bool
    rows: int
    repeats: int


def _read_csv(con: duckdb.DuckDBPyConnection, src: Source, raw: str, tmpdir: Path) -> _Raw:
    """Read ``src`` as all-text columns with a ``_row`` column (spreadsheet row).

    One pass over the file counts its rows and exact repeats and finds the rows that cannot
    be split into the header's fields (DuckDB's reject table). The rows are not copied: the
    relation is a subquery over the file, read again by the typing pass; only a file with
    such rows is copied into table ``raw``, its rows numbered around the rejected lines.
    Structural faults are returned through the ``_structural`` table.
    """
    path = src.path
    if path.stat().st_size == 0:
        raise InputError("the file is empty (not even a header row)", file=path.name, row=1, column="A")
    enc = _detect_encoding(path)
    header_text = _header_line(path, enc)
    if not header_text.strip():
        raise InputError("the first row is empty: the header must be on row 1", file=path.name, row=1, column="A")
    delim = _sniff_delimiter(header_text)
    header = next(csv.reader([header_text], delimiter=delim))
    _check_width(header, src.label)
    read_path = path
    if enc == "cp1252":
        read_path = tmpdir / f"{src.table}.utf8.csv"
        with open(path, encoding="cp1252", newline="") as fi, open(read_path, "w", encoding="utf-8", newline="") as fo:
            shutil.copyfileobj(fi, fo, _CHUNK)
    cols = {f"c{i}": "VARCHAR" for i in range(len(header))}
    con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans")
    rel = (
        f"read_csv({_q(str(read_path))}, delim={_q(delim)}, header=true, auto_detect=false, quote='\"', escape='\"', "
        f"columns={_struct(cols)}, store_rejects=true, max_line_size=1048576, strict_mode=true)"
    )
    numbered = f"(SELECT row_number() OVER () + 1 AS _row, * FROM {rel})"
    try:
        n_ok, repeats = _count_repeats(con, rel, len(header))
    except duckdb.Error as e:
        first = str(e).splitlines()[0]
        m = re.search(r"line (\d+)", str(e))
        raise InputError(f"cannot be read as CSV: {first}", file=path.name, row=int(m.group(1)) if m else 1,
                         column="A") from e
    rej = con.execute("SELECT DISTINCT line, error_type, csv_line FROM reject_errors ORDER BY line").fetchall()
    con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans")  # the next read fills them anew
    con.execute("CREATE OR REPLACE TEMP TABLE _structural(_row BIGINT, col VARCHAR, problem VARCHAR, value VARCHAR)")
    if not rej:
        return _Raw(header, n_ok, numbered, False, n_ok, repeats)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS SELECT * FROM {numbered}")
    if con.execute(f"SELECT count(*) FROM {raw}").fetchall() != [(n_ok,)]:
        raise RuntimeError(f"internal error: two reads of {path.name} found different rows")
    lines = np.array([r[0] for r in rej], dtype=np.int64)
    total = n_ok + len(rej)
    all_lines = np.arange(2, total + 2, dtype=np.int64)
    ok_lines = np.setdiff1d(all_lines, lines, assume_unique=True)[:n_ok]
    con.register("_ok_lines", pd.DataFrame({"_k": np.arange(1, n_ok + 1), "_row": ok_lines}))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS SELECT o._row, r.* EXCLUDE (_row) FROM {raw} r "
                f"JOIN _ok_lines o ON o._k = r._row - 1 ORDER BY o._row")
    con.unregister("_ok_lines")
    con.executemany("INSERT INTO _structural VALUES (?, ?, ?, ?)",
                    [(int(line), *_structural_fault(et, csv_line, delim, header)) for line, et, csv_line in rej])
    return _Raw(header, n_ok + len(rej), raw, True, n_ok, repeats)


#: The row hash of :func:`_count_repeats` (a name, so that a test can make every hash collide).
_ROW_HASH = "hash"


def _count_repeats(con: duckdb.DuckDBPyConnection, rel: str, ncol: int) -> tuple[int, int]:
    """``(rows, exact repeats)`` of relation ``rel`` over its text columns ``c0`` ... ``c<ncol-1>``:
    the rows, and the rows whose every cell equals that of an earlier row (NULL equal to NULL).

    Notes
    -----
    The repeats are :math:`n - n_{distinct}`. Two passes keep the large hash table narrow:
    the first groups the rows by a 64-bit hash of their cells (equal rows have equal
    hashes), so a row whose hash occurs once repeats nothing; the second compares the cells
    of the rows whose hash occurs more than once (the repeats, and rows that only share a
    hash), and is skipped when there are none.
    """
    if ncol == 0:
        ((n,),) = con.execute(f"SELECT count(*) FROM {rel}").fetchall()
        return int(n), 0
    cols = ", ".join(f"c{i}" for i in range(ncol))
    # every query here is consumed to its end (no fetchone): the read's reject table is written then
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rep AS SELECT h, k, g FROM (SELECT h, count(*) AS k, grouping(h) AS g "
                f"FROM (SELECT {_ROW_HASH}({cols}) AS h FROM {rel}) GROUP BY GROUPING SETS ((h), ())) WHERE k > 1 OR g = 1")
    rows = con.execute("SELECT g, count(*), sum(k) FROM _rep GROUP BY g").fetchall()
    n = next(int(k) for g, _, k in rows if g == 1)
    if not any(g == 0 for g, _, _ in rows):
        con.execute("DROP TABLE _rep")
        return n, 0
    ((m, groups),) = con.execute(f"SELECT coalesce(sum(k), 0), count(*) FROM (SELECT count(*) AS k FROM {rel} "
                                 f"WHERE {_ROW_HASH}({cols}) IN (SELECT h FROM _rep WHERE g = 0) GROUP BY {cols})").fetchall()
    con.execute("DROP TABLE _rep")
    return n, int(m) - int(groups)


#: The value shown for a row that could not be split into fields: its text may hold a
#: dropped identifier column (a name, a phone number) or free text, so it is never echoed.
_ROW_NOT_SHOWN = "(row text not shown)"


def _structural_fault(error_type: str, csv_line: str | None, delim: str, header: list[str]) -> tuple[str, str, str]:
    """(column, problem, value) of a row DuckDB could not split into the header's fields:
    the first missing column, or the first column beyond the header."""
    line = csv_line or ""
    try:
        n = len(next(csv.reader([line], delimiter=delim)))
    except (csv.Error, StopIteration):
        n = 0
    if "MISSING" in error_type.upper():
        col = header[n] if n < len(header) else _col_letter(n)
        return col, f"row has too few fields ({n} of {len(header)}; truncated?)", _ROW_NOT_SHOWN
    if "TOO MANY" in error_type.upper().replace("_", " ") or n > len(header):
        return _col_letter(len(header)), f"row has too many fields ({n} for {len(header)} columns; a stray separator?)", _ROW_NOT_SHOWN
    q = line.find('"')
    k = line[:q].count(delim) if q >= 0 else 0
    col = header[k] if k < len(header) else _col_letter(k)
    return col, f"row cannot be read as CSV ({error_type.lower()}; an unterminated quote?)", _ROW_NOT_SHOWN


def _read_xlsx(con: duckdb.DuckDBPyConnection, src: Source, raw: str) -> _Raw:
    """Load a sheet (read with python-calamine) as all-text table ``raw`` with ``_row``."""
    wb = _workbook(src.path)
    label = src.label
    name = src.sheet if src.sheet is not None and src.sheet in wb.sheet_names else wb.sheet_names[0]
    _check_xlsx_extent(src.path, name, label)
    try:
        rows = wb.get_sheet_by_name(name).to_python(skip_empty_area=False)
    except Exception as e:
        raise InputError(f"sheet {name} cannot be read ({type(e).__name__}: {e})", file=label, row=1, column="A") from e
    if not rows or all(_blank(v) for v in rows[0]):
        raise InputError("the sheet is empty or its first row is empty: the header must be on row 1", file=label, row=1,
                         column="A")
    header_vals = list(rows[0])
    while header_vals and _blank(header_vals[-1]):
        header_vals.pop()
    if any(_blank(v) for v in header_vals):
        i = next(i for i, v in enumerate(header_vals) if _blank(v))
        raise InputError(
            f"header cell {_col_letter(i)}1 is empty (merged header cells?): one plain header row is required",
            file=label, row=1, column=_col_letter(i),
        )
    header = [str(v).strip() for v in header_vals]
    _check_width(header, label)
    ncol = len(header)
    data: list[list[str | None]] = []
    row_no: list[int] = []
    for r, vals in enumerate(rows[1:], start=2):
        vals = list(vals[:ncol]) + [None] * max(0, ncol - len(vals))
        if all(_blank(v) for v in vals):
            continue
        data.append([_cell_text(v) for v in vals])
        row_no.append(r)
    df = pd.DataFrame(data, columns=[f"c{i}" for i in range(ncol)], dtype=object) if data else pd.DataFrame(
        {f"c{i}": pd.Series([], dtype=object) for i in range(ncol)})
    df.insert(0, "_row", np.array(row_no, dtype=np.int64))
    con.register("_xlsx", df)
    cols = ", ".join(f"CAST(c{i} AS VARCHAR) AS c{i}" for i in range(ncol))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS SELECT CAST(_row AS BIGINT) AS _row, {cols} FROM _xlsx")
    con.unregister("_xlsx")
    con.execute("CREATE OR REPLACE TEMP TABLE _structural(_row BIGINT, col VARCHAR, problem VARCHAR, value VARCHAR)")
    rows, repeats = _count_repeats(con, raw, ncol)
    return _Raw(header, len(df), raw, True, rows, repeats)


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _cell_text(v: object) -> str | None:
    if _blank(v):
        return None
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _col_letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _struct(cols: dict[str, str]) -> str:
    return "{" + ", ".join(f"{_q(k)}: {_q(v)}" for k, v in cols.items()) + "}"


# ------------------------------------------------------------------ headers
@dataclass
class HeaderMap:
    canonical: dict[str, str]  # raw column (c0..) -> canonical name
    extra: dict[str, str]  # raw column -> kept unknown column (normalised name)
    dropped: list[str]  # direct identifier headers dropped
    hetu: str | None  # raw column holding hetu


def map_header(header: list[str], schema: TableSchema, label: str) -> HeaderMap:
    aliases = column_alias_map(schema.name)
    canonical: dict[str, str] = {}
    extra: dict[str, str] = {}
    dropped: list[str] = []
    hetu = None
    seen: dict[str, str] = {}
    for i, h in enumerate(header):
        raw = f"c{i}"
        norm = normalise_name(h)
        if not norm:
            raise InputError(f"column {_col_letter(i)} has an empty header", file=label, row=1, column=_col_letter(i))
        target = aliases.get(norm)
        if target is None and is_direct_identifier(h):
            dropped.append(h)
            continue
        name = target or norm
        if name in seen:
            raise InputError(
                f"duplicate column: '{h}' and '{seen[name]}' both mean {name}", file=label, row=1, column=h
            )
        seen[name] = h
        if target == "hetu":
            hetu = raw
        elif target:
            canonical[raw] = target
        else:
            extra[raw] = norm
    return HeaderMap(canonical, extra, dropped, hetu)


# ------------------------------------------------------------------ SQL for cells
_NBSP = "\u00a0\u202f"  # no-break spaces Finnish Excel puts in numbers
_NUM_RE = r"^[+-]?([0-9]+([.,][0-9]+)?|[.,][0-9]+)([eE][+-]?[0-9]+)?$"


def _clean(x: str) -> str:
    """Trimmed text with no-break spaces made plain, NULL when empty (plain ``replace``:
    a regular expression here cost more than all the checks together).

    Notes
    -----
    Most cells are plain ASCII with no space at either end, and for them the cleaning
    changes nothing: such a cell is taken as it is (DuckDB's ``trim`` removes Unicode space
    separators, and the only one in ASCII is the space; ``strlen`` = ``length`` exactly for
    ASCII text). Building three new strings per cell made the typing pass (one thread) about
    a quarter slower: at 1 M families and 50 M events validate took 184 s before, 150 s after."""
    y = x
    for ch in _NBSP:
        y = f"replace({y}, '{ch}', ' ')"
    return (f"NULLIF(CASE WHEN strlen({x}) = length({x}) AND NOT starts_with({x}, ' ') AND NOT ends_with({x}, ' ') "
            f"THEN {x} ELSE trim({y}) END, '')")


def _number_sql(c: str) -> str:
    """Number of the cleaned text ``c`` (decimal comma, thousands spaces), else NULL."""
    s = f"replace({c}, ' ', '')"
    return f"(CASE WHEN regexp_full_match({s}, '{_NUM_RE[1:-1]}') THEN TRY_CAST(replace({s}, ',', '.') AS DOUBLE) END)"


def _date_sql(c: str) -> str:
    """Date of the cleaned text ``c`` (ISO or D.M.YYYY), else NULL."""
    return (
        f"(CASE WHEN {c} LIKE '____-__-__' THEN (CASE WHEN regexp_full_match({c}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') "
        f"THEN TRY_CAST({c} AS DATE) END) "
        f"WHEN regexp_full_match({c}, '[0-9]{{1,2}}\\.[0-9]{{1,2}}\\.[0-9]{{4}}') THEN CAST(TRY_STRPTIME({c}, '%d.%m.%Y') AS DATE) END)"
    )


def _enum_norm_sql(c: str) -> str:
    return f"trim(regexp_replace(lower(strip_accents({c})), '[\\s\\-/]+', '_', 'g'), '_')"


@dataclass
class _Check:
    column: str  # canonical column the rule is about
    rule: str
    violation: str  # SQL boolean on the typed/raw row
    value: str  # SQL of the offending raw value
    scan: str | None = None  # SQL column whose values are searched for identity codes (see _find_identity_codes)


def _raw_name(name: str) -> str:
    return f"__raw_{name}"


def _field_sql(schema: TableSchema, hm: HeaderMap, today: dt.date
               ) -> tuple[list[str], list[str], list[str], list[_Check]]:
    """SELECT expressions for the typed table, the columns it keeps, and the checks of each cell.

    Two levels: the inner list cleans each raw text column once (``__raw_<column>``), the
    outer list types the cleaned text. Every check is then a cheap comparison on the outer
    level (``typed IS NULL`` where the raw text is present means the text did not parse);
    the kept columns (the schema's fields, then the unknown columns kept) are what the
    typed table stores, with ``_row`` (see :func:`_typed_select`).
    """
    by_canon = {v: k for k, v in hm.canonical.items()}
    inner: list[str] = ["r._row AS _row"]
    outer: list[str] = ["_row"]
    checks: list[_Check] = []
    future = (today + dt.timedelta(days=FUTURE_DAYS)).isoformat()
    for f in schema.fields:
        if f.name == "client_id" and hm.hetu:
            inner.append("_pseud.client_id AS client_id")
            inner.append(f"{_clean('r.' + hm.hetu)} AS {_ident(_raw_name('hetu'))}")
            outer += ["client_id", _ident(_raw_name("hetu"))]
            continue
        raw = by_canon.get(f.name)
        if raw is None:
            typ = SQL_TYPES[f.type]
            outer.append(f"CAST(NULL AS {typ}) AS {_ident(f.name)}")
            continue
        r = f"r.{_ident(raw)}"
        rc = _ident(_raw_name(f.name))  # cleaned raw text in the typed table
        t = _ident(f.name)
        present = f"({rc} IS NOT NULL)"
        inner.append(f"{_clean(r)} AS {rc}")
        outer.append(rc)
        if f.type == "string" and f.enum:
            vmap = value_alias_map(f.name)
            vmap.update({normalise_name(v): v for v in f.enum})
            cases = " ".join(f"WHEN {_q(k)} THEN {_q(v)}" for k, v in sorted(vmap.items()))
            canon = ", ".join(_q(v) for v in f.enum)
            # fast path: the canonical spelling; else normalise and look up the aliases
            typed = f"(CASE WHEN {rc} IN ({canon}) THEN {rc} ELSE (CASE {_enum_norm_sql(rc)} {cases} END) END)"
            checks.append(_Check(f.name, f"unknown value (allowed: {', '.join(f.enum)})", f"{present} AND {t} IS NULL", rc))
        elif f.type == "string":
            typed = rc  # the typed column is the cleaned text: the identity-code scan reads it there
            if f.name not in _NO_FREE_TEXT:
                checks.append(_hetu_check(f.name, t))
            elif f.name == "client_id" and schema.name == "clients":  # the other tables must refer to these
                checks.append(_client_id_check(t))
        elif f.type in ("number", "integer"):
            typed = _number_sql(rc)
            checks.append(_Check(f.name, "not a number", f"{present} AND {t} IS NULL", rc))
            if f.type == "integer":
                checks.append(_Check(f.name, "not a whole number", f"{t} IS NOT NULL AND {t} <> round({t})", rc))
            if f.minimum is not None:
                checks.append(_Check(f.name, f"below the minimum {f.minimum:g}", f"{t} < {f.minimum}", rc))
            if f.maximum is not None:
                checks.append(_Check(f.name, f"above the maximum {f.maximum:g} (implausible)", f"{t} > {f.maximum}", rc))
        else:  # date
            typed = _date_sql(rc)
            checks.append(_Check(f.name, "not a date (use YYYY-MM-DD or D.M.YYYY)", f"{present} AND {t} IS NULL", rc))
            checks.append(
                _Check(f.name, f"implausible date (before {EARLIEST_DATE} or after {future})",
                       f"({t} < DATE '{EARLIEST_DATE}' OR {t} > DATE '{future}')", rc)
            )
        if f.required:
            checks.append(_Check(f.name, "required value missing", f"NOT {present}", rc))
        outer.append(f"{typed} AS {t}")
    for raw, name in hm.extra.items():
        inner.append(f"{_clean('r.' + _ident(raw))} AS {_ident(name)}")
        outer.append(_ident(name))
        checks.append(_hetu_check(name, _ident(name)))
    keep = [_ident(f.name) for f in schema.fields] + [_ident(name) for name in hm.extra.values()]
    return inner, outer, keep, checks


#: The typed table's column of each row's cell errors (a list of ``{c, v, r}``: column, value,
#: rule; NULL when the row has none), dropped once they are copied to ``_errs``.
_ERRS = "__errs"


def _typed_select(rel: str, join: str, inner: list[str], outer: list[str], keep: list[str], checks: list[_Check]) -> str:
    """The one pass that types and checks a table: the kept columns, ``_row``, and the cell
    errors of the row (every check without an identity-code scan; those need the distinct
    values of the whole column first, :func:`_find_identity_codes`).

    The checks are evaluated on the same row as the typing, so the cleaned raw text
    (``__raw_<column>``, the value an error shows) is never stored."""
    cell = [c for c in checks if c.scan is None]
    if cell:
        items = ", ".join(f"CASE WHEN {c.violation} THEN {{'c': {_q(c.column)}, 'v': CAST({c.value} AS VARCHAR), "
                          f"'r': {_q(c.rule)}}} END" for c in cell)
        errs = (f"CASE WHEN {' OR '.join(f'({c.violation})' for c in cell)} THEN "
                f"list_filter([{items}], lambda x: x IS NOT NULL) END")
    else:
        errs = "CAST(NULL AS STRUCT(c VARCHAR, v VARCHAR, r VARCHAR)[])"
    return (f"SELECT {', '.join(keep)}, _row, {errs} AS {_ERRS} FROM (SELECT {', '.join(outer)} FROM "
            f"(SELECT {', '.join(inner)} FROM {rel} r{join}))")


#: String columns that hold codes, not free text: not scanned for identity codes.
_NO_FREE_TEXT = {"client_id", "service_code"}


def _identity_code_violation(name: str, col: str) -> str:
    return f"{col} IN (SELECT v FROM _hetu_hits WHERE c = {_q(name)})"


def _hetu_check(name: str, col: str) -> _Check:
    """A henkilötunnus typed into a free-text column would be kept (and could surface as a
    category label in a results table): reject the row. Any form counts (see
    :func:`hbeval.privacy.find_identity_codes`: dashes, case, spaces, no separator, full-width digits)."""
    return _Check(name, "an identity code (henkilötunnus) in a free-text column; remove it",
                  _identity_code_violation(name, col), "'(masked)'", scan=col)


def _client_id_check(col: str) -> _Check:
    """A ``client_id`` that is a henkilötunnus would be stored, and written to the registry
    and ``assignments.csv``, as it is: refuse it and say how to have it pseudonymised."""
    return _Check("client_id", "client_id looks like an identity code (henkilötunnus): name the column hetu "
                               "(or henkilötunnus) and set the pseudonym key, so that ingestion replaces it by a pseudonym",
                  _identity_code_violation("client_id", col), "'(masked)'", scan=col)


def _find_identity_codes(con: duckdb.DuckDBPyConnection, typed: str, checks: list[_Check]) -> None:
    """``_hetu_hits(c, v)``: the values of the scanned columns that hold an identity code.

    DuckDB narrows each column's distinct values down with a cheap RE2 superset
    (:data:`hbeval.privacy.IDENTITY_CODE_PREFILTER_RE2`); the exact rule
    (:func:`hbeval.privacy.has_identity_code`) runs on what is left, so ingestion and the
    privacy tests use one definition."""
    con.execute("CREATE OR REPLACE TEMP TABLE _hetu_hits(c VARCHAR, v VARCHAR)")
    pre = _q(IDENTITY_CODE_PREFILTER_RE2)
    for chk in checks:
        if chk.scan is None:
            continue
        vals = con.execute(f"SELECT v FROM (SELECT DISTINCT {chk.scan} AS v FROM {typed}) "
                           f"WHERE v IS NOT NULL AND regexp_matches(v, {pre})").fetchall()
        hits = [(chk.column, v) for (v,) in vals if has_identity_code(v)]
        if hits:
            con.executemany("INSERT INTO _hetu_hits VALUES (?, ?)", hits)


# ------------------------------------------------------------------ one table
def load_table(con: duckdb.DuckDBPyConnection, src: Source, schema: TableSchema, ledger: Ledger,
                key: bytes | None, tmpdir: Path, today: dt.date, strata: tuple[str, ...]) -> None:
    label = src.label
    raw = f"raw_{schema.name}"
    con.execute("CREATE OR REPLACE TEMP TABLE _errs(_row BIGINT, col VARCHAR, val VARCHAR, rule VARCHAR)")
    rd = _read_xlsx(con, src, raw) if src.path.suffix.lower() == ".xlsx" else _read_csv(con, src, raw, tmpdir)
    header, n_read = rd.header, rd.n_read
    ledger.start_file(schema.name, label, n_read)
    _note_duplicates(rd.rows, rd.repeats, label, ledger)
    hm = map_header(header, schema, label)
    for h in hm.dropped:
        ledger.note(label, f"direct identifier column '{h}' dropped", n_read)
    missing = [f.name for f in schema.fields if f.required and f.name not in hm.canonical.values()
               and not (f.name == "client_id" and hm.hetu)]
    if missing:
        for m in missing:
            ledger.error(label, 1, m, "", "required column missing")
        ledger.finish_file(label, rejected_rows=n_read)
        return
    if schema.required_table and n_read == 0:
        ledger.error(label, 2, "client_id" if not hm.hetu else "hetu", "",
                     f"no data rows: {schema.name} needs a row per family (only the header was found)")
    if schema.name == "clients":
        have = set(hm.canonical.values()) | set(hm.extra.values())
        for st in strata:
            if normalise_name(st) not in have and st not in have:
                ledger.error(label, 1, st, "", "design.strata in study.toml names a column that clients does not have")
    if hm.hetu and "client_id" in hm.canonical.values():
        raise InputError("both a client_id and a hetu column: give one of them", file=label, row=1, column="hetu")
    if hm.hetu:
        if key is None:
            raise InputError(
                "a hetu (henkilötunnus) column needs a pseudonym key: set the environment variable named by "
                "privacy.key_env (default HBEVAL_PSEUDONYM_KEY) or privacy.key_file in study.toml; there is no default key",
                file=label, row=1, column="hetu",
            )
        weak = weak_key_message(key)
        if weak:
            raise InputError(weak, file=label, row=1, column="hetu")
        hc = _clean(hm.hetu)
        vals = [v for (v,) in con.execute(f"SELECT DISTINCT {hc} FROM {rd.rel} WHERE {hc} IS NOT NULL").fetchall()]
        ok = {v: check_hetu(v) for v in vals}
        mp = pd.DataFrame({"hetu": list(ok), "client_id": [pseudonym(c, key) if c else None for c in ok.values()]}, dtype=object)
        con.register("_pseud_map", mp)
        con.execute("CREATE OR REPLACE TEMP TABLE _pseud AS SELECT * FROM _pseud_map")
        con.unregister("_pseud_map")
    inner, outer, keep, checks = _field_sql(schema, hm, today)
    join = ""
    if hm.hetu:
        join = f" LEFT JOIN _pseud ON _pseud.hetu = {_clean('r.' + hm.hetu)}"
        hr = _ident(_raw_name("hetu"))
        checks.append(_Check("hetu", "required value missing", f"{hr} IS NULL", "NULL"))
        checks.append(_Check("hetu", "not a valid henkilötunnus (check character or date)",
                             f"{hr} IS NOT NULL AND client_id IS NULL", hr))
    typed = f"typed_{schema.name}"
    con.execute(f"DROP TABLE IF EXISTS {typed}")
    # a join (the pseudonyms) does not keep the rows' order: the store keeps file order
    order = " ORDER BY _row" if join else ""
    con.execute(f"CREATE TABLE {typed} AS {_typed_select(rd.rel, join, inner, outer, keep, checks)}{order}")
    con.execute("CREATE OR REPLACE TEMP TABLE _errs(_row BIGINT, col VARCHAR, val VARCHAR, rule VARCHAR)")
    con.execute(f"INSERT INTO _errs SELECT _row, e.c, e.v, e.r FROM (SELECT _row, unnest({_ERRS}) AS e FROM {typed} "
                f"WHERE {_ERRS} IS NOT NULL)")
    con.execute(f"ALTER TABLE {typed} DROP COLUMN {_ERRS}")
    _find_identity_codes(con, typed, checks)
    hit = {c for (c,) in con.execute("SELECT DISTINCT c FROM _hetu_hits").fetchall()}
    scans = [c for c in checks if c.scan is not None and c.column in hit]
    if scans:  # a column without an identity code cannot violate its rule: not scanned again
        union = " UNION ALL ".join(
            f"SELECT _row, {_q(c.column)}, CAST({c.value} AS VARCHAR), {_q(c.rule)} FROM {typed} WHERE {c.violation}"
            for c in scans
        )
        con.execute(f"INSERT INTO _errs {union}")
    con.execute("INSERT INTO _errs SELECT _row, col, value, problem FROM _structural")
    if rd.is_table:
        con.execute(f"DROP TABLE {raw}")
    con.execute("DROP TABLE IF EXISTS _pseud")


def _note_duplicates(n: int, dup: int, label: str, ledger: Ledger) -> None:
    """Warn (a ledger note with its count, in data_quality.csv) when rows repeat an earlier row exactly.

    An export sent twice duplicates every row and doubles the costs; two identical visits on
    one day are real repeats that look the same. hbeval cannot tell them apart, so it keeps
    the rows and reports every exact repeat, however few, for a person to judge.

    Notes
    -----
    ``dup`` is :math:`n - n_{distinct}` of the ``n`` rows read (:func:`_count_repeats`): rows
    whose every cell equals that of an earlier row.
    """
    if dup:
        ledger.note(label, f"warning: {dup} of {n} rows repeat an earlier row exactly (every value equal): an export "
                           "sent twice, or real repeats such as two identical visits on one day? They are kept and "
                           "counted each time; remove the copies if they are not real repeats", dup)


def _finish_table(con: duckdb.DuckDBPyConnection, schema: TableSchema, label: str, ledger: Ledger) -> None:
    """Keep rows without errors as the canonical table and close the file's ledger."""
    typed = f"typed_{schema.name}"
    all_cols = [c for (c,) in con.execute(f"SELECT column_name FROM information_schema.columns WHERE table_name = "
                                          f"'{typed}' ORDER BY ordinal_position").fetchall()]
    cols = [c for c in all_cols if c != "_row" and not c.startswith("__raw_")]
    rejected = fetch_row(con, f"SELECT count(DISTINCT _row) FROM _errs_all WHERE file = {_q(label)}")[0]
    con.execute(f"DROP TABLE IF EXISTS {schema.name}")
    if not rejected and all_cols == [*cols, "_row"]:
        # the typed table is in file order already, its columns in the store's order: rename, no copy
        con.execute(f"ALTER TABLE {typed} RENAME COLUMN _row TO _source_row")
        con.execute(f"ALTER TABLE {typed} RENAME TO {schema.name}")
    else:
        where = f" WHERE _row NOT IN (SELECT _row FROM _errs_all WHERE file = {_q(label)})" if rejected else ""
        con.execute(
            f"CREATE TABLE {schema.name} AS SELECT {', '.join(_ident(c) for c in cols)}, "
            f"_row AS _source_row FROM {typed}{where}"
        )
        con.execute(f"DROP TABLE {typed}")
    ledger.finish_file(label, rejected_rows=rejected)


def _empty_table(con: duckdb.DuckDBPyConnection, schema: TableSchema) -> None:
    cols = ", ".join(f"{_ident(f.name)} {SQL_TYPES[f.type]}" for f in schema.fields)
    con.execute(f"CREATE OR REPLACE TABLE {schema.name} ({cols}, _source_row BIGINT)")


# ------------------------------------------------------------------ cross-table checks
def _cross_checks(con: duckdb.DuckDBPyConnection, labels: dict[str, str], ledger: Ledger,
                  insts: dict[str, Instrument] | None = None) -> None:
    """Keys, references and rules that span rows or tables; recorded as errors. ``insts``:
    the study's instruments (:func:`hbeval.study.schema.instruments`; ``None``: the packaged)."""

    have = {r[0][len("typed_"):] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'typed\\_%' ESCAPE '\\'").fetchall()}
    labels = {k: v for k, v in labels.items() if k in have}  # a table missing a required column has no rows to check

    def add(table: str, sql: str, col: str, rule: str) -> None:
        if table not in labels:
            return
        con.execute(
            f"INSERT INTO _errs_all SELECT {_q(labels[table])}, _row, {_q(col)}, CAST(val AS VARCHAR), {_q(rule)} FROM ({sql})"
        )

    ts = tables()
    for name, schema in ts.items():
        t = f"typed_{name}"
        if name not in labels:
            continue
        if schema.primary_key:
            keys = ", ".join(_ident(k) for k in schema.primary_key)
            first = schema.primary_key[0]
            add(name, f"SELECT _row, {_ident(first)} AS val FROM (SELECT _row, {keys}, "
                      f"row_number() OVER (PARTITION BY {keys} ORDER BY _row) AS k FROM {t} "
                      f"WHERE {' AND '.join(_ident(k) + ' IS NOT NULL' for k in schema.primary_key)}) WHERE k > 1",
                first, f"duplicate key ({', '.join(schema.primary_key)}) of an earlier row")
        if schema.references_clients and "clients" in labels:
            add(name, f"SELECT _row, client_id AS val FROM {t} WHERE client_id IS NOT NULL AND client_id NOT IN "
                      f"(SELECT client_id FROM typed_clients WHERE client_id IS NOT NULL)",
                "client_id", "unknown family (not in clients)")
    if "assignments" in labels and "clients" in labels:
        add("assignments", "SELECT a._row, a.client_id AS val FROM typed_assignments a JOIN typed_clients c USING (client_id) "
                           "WHERE c.\"group\" <> 'pilot'", "client_id", "assignment for a family that is not in the pilot group")
    if "measurements" in labels:
        add("measurements", """
            SELECT e._row, e.measured_on AS val FROM typed_measurements e
            JOIN (SELECT client_id, instrument, max(measured_on) AS s FROM typed_measurements
                  WHERE timepoint = 'start' GROUP BY ALL) st USING (client_id, instrument)
            WHERE e.timepoint = 'end' AND e.measured_on < st.s""", "measured_on", "end measurement before the start measurement")
        insts = instruments() if insts is None else insts
        for ins in insts.values():
            add("measurements", _item_check(ins, insts), "item", _item_rule(ins))
            add("measurements", f"SELECT _row, score AS val FROM typed_measurements WHERE instrument = {_q(ins.instrument)} "
                                f"AND (score < {ins.score_min} OR score > {ins.score_max})", "score",
                f"score outside the {ins.instrument} range {ins.score_min:g}–{ins.score_max:g}")
        if "clients" in labels:
            add("measurements", "SELECT m._row, m.measured_on AS val FROM typed_measurements m JOIN typed_clients c USING (client_id) "
                                "WHERE m.measured_on < c.enrolled_on - INTERVAL 90 DAY", "measured_on",
                "measured more than 90 days before enrolment")
    if "teaming_meetings" in labels:
        add("teaming_meetings", "SELECT _row, providers_present AS val FROM typed_teaming_meetings "
                                "WHERE providers_invited IS NOT NULL AND providers_present > providers_invited",
            "providers_present", "more providers present than invited")
    if "budgets" in labels:
        add("budgets", "SELECT _row, confirmed_on AS val FROM typed_budgets WHERE confirmed_on < proposed_on",
            "confirmed_on", "confirmed before it was proposed")
        add("budgets", "SELECT _row, frame_eur AS val FROM (SELECT _row, frame_eur, count(DISTINCT frame_eur) OVER (PARTITION BY client_id) AS k "
                       "FROM typed_budgets) WHERE k > 1", "frame_eur", "one family has several budget frames")
    # prices: every service code and staff role must be priced (or carry a direct cost)
    if "service_events" in labels:
        add("service_events", "SELECT _row, service_code AS val FROM typed_service_events WHERE cost_eur IS NULL AND "
                              "service_code NOT IN (SELECT service_code FROM unit_costs_all WHERE service_code NOT LIKE 'staff:%')",
            "service_code", "service code has no unit cost in the catalogue and the row has no cost_eur")
    if "worker_time" in labels:
        add("worker_time", "SELECT _row, role AS val FROM typed_worker_time WHERE 'staff:' || role NOT IN "
                           "(SELECT service_code FROM unit_costs_all)", "role", "role has no staff:<role> hourly cost in the catalogue")


def _item_check(ins: Instrument, insts: dict[str, Instrument]) -> str:
    """SQL selecting the rows of ``ins`` whose item it does not define; for an open instrument
    (items of the study's choosing), the items that cannot name an outcome: not a code
    ``[a-z0-9_]``, or ``<instrument>_<item>`` already another outcome."""
    rows = f"SELECT _row, item AS val FROM typed_measurements WHERE instrument = {_q(ins.instrument)} AND item"
    if not ins.open_items:
        return f"{rows} NOT IN ({', '.join(_q(i) for i in ins.items)})"
    taken = [o for other in insts.values() for o in other.outcomes if not (other is ins and o != ins.total)]
    return (f"{rows} NOT IN ({', '.join(_q(i) for i in ins.items)}) AND (NOT regexp_full_match(item, '[a-z0-9][a-z0-9_]*') "
            f"OR {_q(ins.instrument + '_')} || item IN ({', '.join(_q(o) for o in taken)}))")


def _item_rule(ins: Instrument) -> str:
    if not ins.open_items:
        return f"unknown item of {ins.instrument} (see {ins.origin if ins.origin != 'packaged' else 'data_schema/instruments'})"
    return (f"item of {ins.instrument} is not a code of its own (lower-case letters, digits and _, not naming "
            "another outcome)")


# ------------------------------------------------------------------ entry point
@dataclass
class IngestResult:
    ledger: Ledger
    store: Path | None  # None when errors kept the store from being written
    config: StudyConfig
    input_hashes: dict[str, str]


def code_fingerprint() -> str:
    """Hash of what ingestion depends on besides the inputs (its code, the schema, the
    packaged catalogue), so a changed rule re-ingests a study."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    paths = [here / "ingest.py", here / "quality.py", here / "schema.py", here / "pseudonym.py"]
    paths += sorted(data_schema_dir().rglob("*.json")) + sorted(PACKAGE_DATA.glob("*.csv"))
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def input_files(study_dir: Path) -> dict[str, Path]:
    """Every input file of the study (tables, study.toml, ``instruments/*.json``) by name."""
    study_dir = Path(study_dir)
    out = {"study.toml": study_dir / "study.toml"}
    for src in find_sources(study_dir).values():
        out[src.path.name] = src.path
    for p in study_instrument_files(study_dir):
        out[f"{p.parent.name}/{p.name}"] = regular_file(p, label=f"{p.parent.name}/{p.name}")
    return dict(sorted(out.items()))


def ingest(study_dir: str | Path, *, today: dt.date | None = None, write_store: bool = True) -> IngestResult:
    """Read, validate and store a study folder.

    Raises :class:`InputError` for faults that stop reading altogether (no study.toml,
    no clients table, an unreadable file, a hetu column without a key); every other fault
    is an error row in the returned ledger, and the store is only replaced when there are
    none.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise InputError("study folder does not exist", file=str(study_dir))
    config = load_config(study_dir)
    key = config.pseudonym_key(study_dir)
    today = today or dt.date.today()
    sources = find_sources(study_dir)
    for name, schema in tables().items():
        if schema.required_table and name not in sources:
            raise InputError(f"required table {name} is missing ({name}.csv or {name}.xlsx)", file=f"{name}.csv")
    hashes = {n: file_sha256(p) for n, p in input_files(study_dir).items()}
    wd = work_dir(study_dir)
    wd.mkdir(exist_ok=True)
    _sweep_ingest_dirs(wd)
    ledger = Ledger()
    tmpdir = Path(tempfile.mkdtemp(prefix="ingest-", dir=wd))
    tmp_store = tmpdir / STORE_NAME
    try:
        (tmpdir / TMP_MARKER).write_text(str(os.getpid()), encoding="ascii")
        con = duckdb.connect(str(tmp_store), config=duckdb_config(tmpdir))
        con.execute("SET preserve_insertion_order = true")
        con.execute("CREATE TABLE _errs_all(file VARCHAR, _row BIGINT, col VARCHAR, val VARCHAR, rule VARCHAR)")
        labels: dict[str, str] = {}
        for name in TABLE_ORDER:
            schema = table_schema(name, config.instruments)
            if name not in sources:
                continue
            src = sources[name]
            load_table(con, src, schema, ledger, key, tmpdir, today, strata=tuple(config.strata))
            labels[name] = src.label
            con.execute(f"INSERT INTO _errs_all SELECT {_q(src.label)}, _row, col, val, rule FROM _errs")
        _catalogue(con, "unit_costs" in labels, "price_index" in labels)
        _cross_checks(con, labels, ledger, config.instruments)
        for name in TABLE_ORDER:
            if name in labels:
                if fetch_row(con, f"SELECT count(*) FROM information_schema.tables WHERE table_name = 'typed_{name}'")[0]:
                    _finish_table(con, tables()[name], labels[name], ledger)
                else:  # a required column was missing: nothing typed
                    _empty_table(con, tables()[name])
            else:
                _empty_table(con, tables()[name])
        ledger.collect(con)
        con.execute("DROP TABLE _errs_all")
        con.execute("DROP TABLE IF EXISTS _errs")
        meta = {"hbeval_version": __version__, "code": code_fingerprint(), "inputs": hashes, "config": config.to_dict(),
                "key_id": StudyConfig.key_id(key) if key else None}
        dq = ledger.to_frame()
        con.register("_dq", dq)
        con.execute("CREATE TABLE _data_quality AS SELECT * FROM _dq")
        con.unregister("_dq")
        con.execute("CREATE TABLE _meta(k VARCHAR, v VARCHAR)")
        con.execute("INSERT INTO _meta VALUES ('meta', ?)", [json.dumps(meta, sort_keys=True)])
        con.execute("CHECKPOINT")
        con.close()
        store = None
        if write_store and not ledger.has_errors():
            final = store_path(study_dir)
            os.replace(tmp_store, final)
            store = final
        return IngestResult(ledger=ledger, store=store, config=config, input_hashes=hashes)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


#: DuckDB's memory while validating: without a limit it takes up to 80 % of the machine's
#: memory before spilling (6.5 GiB at 1 M families and 50 M events); with one it spills the
#: large sorts and hashes to the ingest folder. Python and pandas come on top (~0.5 GB).
DUCKDB_MEMORY_LIMIT = "2GB"


def duckdb_config(tmpdir: Path) -> dict[str, str | bool | int | float | list[str]]:
    """Settings of the ingest connection: :data:`DUCKDB_MEMORY_LIMIT`, one thread per core
    (DuckDB's default, said explicitly), spill files in ``tmpdir`` (removed at the end)."""
    return {"memory_limit": DUCKDB_MEMORY_LIMIT, "threads": str(os.cpu_count() or 1),
            "temp_directory": str(tmpdir / "spill")}


def _sweep_ingest_dirs(wd: Path) -> None:
    """Remove ``.hbeval/ingest-*`` folders of runs that were killed: they hold copies of the
    inputs. Each carries :data:`hbeval.outdir.TMP_MARKER` with its process id; an untagged one
    (from an earlier version) goes when it is older than an hour."""
    for d in wd.glob("ingest-*"):
        if d.is_symlink() or not d.is_dir():
            continue
        tag = d / TMP_MARKER
        try:
            if tag.is_file():
                dead = not _alive(int(tag.read_text(encoding="ascii").strip()))
            else:
                dead = time.time() - d.stat().st_mtime > _STALE_UNTAGGED
        except (OSError, ValueError):
            continue
        if dead:
            shutil.rmtree(d, ignore_errors=True)


def _catalogue(con: duckdb.DuckDBPyConnection, has_study_costs: bool, has_study_index: bool) -> None:
    """``unit_costs_all``: the study's catalogue rows over the packaged ones, and the same
    for ``price_index_all``."""
    pkg = pd.read_csv(PACKAGE_DATA / "unit_costs.csv", dtype={"service_code": str, "label_fi": str, "label_en": str,
                                                              "unit": str, "source": str})
    con.register("_pkg_costs", pkg)
    if has_study_costs:
        con.execute("""CREATE TABLE unit_costs_all AS
            SELECT service_code, label_fi, label_en, unit, unit_cost_eur, price_year, source, 'study' AS origin FROM typed_unit_costs
            WHERE service_code IS NOT NULL
            UNION ALL BY NAME
            SELECT *, 'packaged' AS origin FROM _pkg_costs WHERE service_code NOT IN
              (SELECT service_code FROM typed_unit_costs WHERE service_code IS NOT NULL)""")
    else:
        con.execute("CREATE TABLE unit_costs_all AS SELECT *, 'packaged' AS origin FROM _pkg_costs")
    con.unregister("_pkg_costs")
    idx = pd.read_csv(PACKAGE_DATA / "price_index.csv", dtype={"source": str})
    con.register("_pkg_index", idx)
    if has_study_index:
        con.execute("""CREATE TABLE price_index_all AS SELECT year, "index", source, 'study' AS origin FROM typed_price_index
                       WHERE year IS NOT NULL ORDER BY year""")
    else:
        con.execute("CREATE TABLE price_index_all AS SELECT *, 'packaged' AS origin FROM _pkg_index ORDER BY year")
    con.unregister("_pkg_index")
