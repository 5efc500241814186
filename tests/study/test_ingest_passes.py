"""The single-pass reading of a CSV table: row counts, exact repeats, row numbers, the
encoding scan's ASCII fast path, and the checks evaluated in the typing pass."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import pytest

from hbeval.study import ingest as ing
from hbeval.study.pseudonym import pseudonym


def _brute_repeats(text: str) -> tuple[int, int]:
    rows = [tuple(c if c != "" else None for c in r)  # DuckDB reads an empty cell as NULL
            for r in list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))[1:]]
    return len(rows), len(rows) - len(set(rows))


def _count(tmp_path: Path, text: str) -> tuple[int, int]:
    p = tmp_path / "t.csv"
    p.write_bytes(text.encode("utf-8"))
    ncol = len(next(csv.reader([text.lstrip("\ufeff").splitlines()[0]])))
    cols = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(ncol)) + "}"
    rel = f"read_csv('{p}', header=true, auto_detect=false, quote='\"', escape='\"', columns={cols}, strict_mode=true)"
    with duckdb.connect() as con:
        return ing._count_repeats(con, rel, ncol)


CASES = {
    "header only": "a,b\n",
    "one row": "a,b\n1,2\n",
    "all repeated": "a,b\n1,2\n1,2\n1,2\n1,2\n",
    "export sent twice": "a,b\n" + "".join(f"{i},x{i}\n" for i in range(50)) * 2,
    "empty cells are equal": "a,b,c\n1,,3\n1,,3\n,,\n,,\n1,,\n",
    "empty is not a space": 'a,b\n1," "\n1,\n',
    "quoted newlines": 'a,b\n"x\ny",1\n"x\ny",1\n"x y",1\n',
    "BOM": "\ufeffa,b\n1,2\n1,2\n",
    "no repeats": "a,b\n" + "".join(f"{i},{i % 7}\n" for i in range(200)),
    "same cells, other columns": "a,b\n1,2\n2,1\n12,\n1,2\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_count_repeats_equals_a_brute_force_count(tmp_path: Path, name: str) -> None:
    assert _count(tmp_path, CASES[name]) == _brute_repeats(CASES[name])


def test_count_repeats_when_hashes_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that only share a hash are not repeats: the second pass compares the cells."""
    text = "a,b\n1,2\n3,4\n1,2\n5,6\n"
    p = tmp_path / "t.csv"
    p.write_text(text, encoding="utf-8")
    rel = f"read_csv('{p}', header=true, auto_detect=false, columns={{'c0': 'VARCHAR', 'c1': 'VARCHAR'}})"
    with duckdb.connect() as con:
        # every row gets the same "hash": all are candidates, and only the true repeat counts
        con.create_function("same_hash", lambda a, b: 7, ["varchar", "varchar"], "ubigint")
        monkeypatch.setattr(ing, "_ROW_HASH", "same_hash")
        assert ing._count_repeats(con, rel, 2) == (4, 1)


@pytest.mark.parametrize("text", [b"a,b\n" + b"1,2\n" * 1000, "a,b\nä,ö\n".encode() * 3, b"a,b\n1,\xe4\n",
                                  b"a,b\n" + b"x" * 10 + "é".encode() + b"\n"])
def test_scan_bytes_ascii_fast_path_agrees_with_decoding(tmp_path: Path, text: bytes,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of plain ASCII are not decoded; a multibyte character cut by a chunk boundary
    (the decoder holds its first bytes) is still decoded whole."""
    p = tmp_path / "t.csv"
    p.write_bytes(text)
    want = ing._scan_bytes(p)
    for chunk in (1, 2, 3, 5, 64):
        monkeypatch.setattr(ing, "_CHUNK", chunk)
        assert ing._scan_bytes(p) == want


def test_scan_bytes_mixed_encodings_found_after_ascii_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes("a,b\nä,1\n".encode() + b"x,1\n" * 20 + b"\xe4,2\n")
    monkeypatch.setattr(ing, "_CHUNK", 8)
    enc, bad = ing._scan_bytes(p)
    assert enc == "cp1252" and bad is not None and "mixed encodings" in bad.problem


def _study(tmp_path: Path, events: str) -> Path:
    d = tmp_path / "s"
    d.mkdir()
    (d / "study.toml").write_text('[study]\nname = "t"\n', encoding="utf-8")
    (d / "clients.csv").write_text(
        "client_id,site,service_line,group,exclusion_reason,enrolled_on,household_size,n_children,youngest_child_age\n"
        "a1,S,home_help,comparison,,2024-01-01,2,1,3\n", encoding="utf-8")
    (d / "service_events.csv").write_text(events, encoding="utf-8")
    return d


def test_row_numbers_and_errors_across_quoted_newlines_and_a_bom(tmp_path: Path) -> None:
    """Errors of the one-pass checks name the spreadsheet row (header = 1; a quoted newline
    keeps its record one row), every rule of a row is kept, and the store keeps file order."""
    events = ("\ufeffclient_id,event_date,service_code,quantity,visit_content\n"
              "a1,2024-02-01,home_visit,1,\"support\nvisit\"\n"
              "a1,2024-02-02,home_visit,-1,other\n"
              "a1,not a date,home_visit,x,other\n"
              "a1,2024-02-03,home_visit,2,otherx\n")
    res = ing.ingest(_study(tmp_path, events))
    errs = sorted((r, c, v, rule) for f, r, c, v, rule in res.ledger.error_rows() if f == "service_events.csv")
    assert errs == [(3, "quantity", "-1", "below the minimum 0"),
                    (4, "event_date", "not a date", "not a date (use YYYY-MM-DD or D.M.YYYY)"),
                    (4, "quantity", "x", "not a number"),
                    (5, "visit_content", "otherx", "unknown value (allowed: assessment, examination, support_visit, "
                                                   "guidance, decision, other)")]
    assert res.store is None
    assert res.ledger.counts[("service_events.csv", "quantity", "not a number")] == 1


def test_store_keeps_file_order_and_source_rows(tmp_path: Path) -> None:
    """Storage order is file order, also across DuckDB's parallel row groups (122,880 rows each)."""
    n = 300_000
    rows = "".join(f"a1,2024-02-{1 + i % 28:02d},home_visit,{i % 9973},other\n" for i in range(n))
    d = _study(tmp_path, "client_id,event_date,service_code,quantity,visit_content\n" + rows + rows.splitlines(keepends=True)[0])
    res = ing.ingest(d)
    assert res.store is not None and not res.ledger.has_errors()
    with duckdb.connect(str(res.store), read_only=True) as con:
        cols = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'service_events' "
                                          "ORDER BY column_index").fetchall()]
        got = con.execute("SELECT quantity, _source_row FROM service_events").fetchall()
    assert cols[-1] == "_source_row" and "__errs" not in cols and not any(c.startswith("__raw_") for c in cols)
    assert got == [(float(i % n % 9973), i + 2) for i in range(n + 1)]
    notes = [m for (f, m, _n) in res.ledger.notes if f == "service_events.csv"]
    lines = (rows + rows.splitlines(keepends=True)[0]).splitlines()
    assert any(f"{len(lines) - len(set(lines))} of {n + 1} rows repeat an earlier row exactly" in m for m in notes)


_NB, _NNB = "\u00a0", "\u202f"
#: Cells for the cleaning's fast path: ASCII with and without spaces at either end, other
#: whitespace (kept by ``trim``), no-break and other Unicode spaces (made plain or trimmed).
_CELLS = ["a", "", " ", "  ", " a", "a ", " a b ", "a b", "\ta\t", "\na", "a\r", "\x0ba\x0c", "a\x1f", "\x00",
          f"{_NB}a{_NB}", f"1{_NNB}234,5", f"{_NB}", f"{_NB} {_NNB}", "\u2003a\u3000", "\u1680a", "ä", " ä ",
          "e\u0301", "a\u00a0b", "1 234,50", "12\u00a0345", "x" * 300 + " ", " " + "y" * 300, None]


def test_clean_fast_path_equals_the_full_cleaning() -> None:
    """A cell taken as it is (ASCII, no space at either end) is one the full cleaning (no-break
    spaces made plain, ``trim``, empty as NULL) would not change: the result is the same for
    every cell, and for each ASCII character at either end of a cell."""
    cells = _CELLS + [f"{chr(i)}a{chr(i)}" for i in range(128)] + [chr(i) for i in range(128)]
    full = f"NULLIF(trim(replace(replace(x, '{_NB}', ' '), '{_NNB}', ' ')), '')"
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t(i INTEGER, x VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(cells)))
        got = con.execute(f"SELECT i, {ing._clean('x')}, {full} FROM t ORDER BY i").fetchall()
    assert len(got) == len(cells)
    assert [(i, a) for i, a, _ in got] == [(i, b) for i, _, b in got]
    assert dict((i, a) for i, a, _ in got)[cells.index(f"{_NB}a{_NB}")] == "a"  # the slow path ran


def test_pseudonymised_clients_keep_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pseudonyms are joined to the rows (a hash join, which does not keep the rows'
    order): the stored clients are still in file order, each row with its own pseudonym."""
    key = "Vq3xN8rT0bLwZ5yHcE1uKd7gJm2fPa9sQo4iXe6Rh"
    monkeypatch.setenv("HB_TEST_KEY", key)
    hetus = []
    for day in range(1, 29):
        for n in range(2, 302):
            ddmmyy = f"{day:02d}0385"
            hetus.append(f"{ddmmyy}-{n:03d}" + "0123456789ABCDEFHJKLMNPRSTUVWXY"[int(ddmmyy + f"{n:03d}") % 31])
    d = tmp_path / "s"
    d.mkdir()
    (d / "study.toml").write_text('[study]\nname = "t"\n[privacy]\nkey_env = "HB_TEST_KEY"\n', encoding="utf-8")
    (d / "clients.csv").write_text(
        "henkilötunnus,site,service_line,group,exclusion_reason,enrolled_on,household_size,n_children,youngest_child_age\n"
        + "".join(f"{h},S{i},home_help,comparison,,2024-01-01,2,1,3\n" for i, h in enumerate(hetus)), encoding="utf-8")
    res = ing.ingest(d)
    assert res.store is not None and not res.ledger.has_errors()
    with duckdb.connect(str(res.store), read_only=True) as con:
        got = con.execute("SELECT site, client_id, _source_row FROM clients").fetchall()
    assert got == [(f"S{i}", pseudonym(h, key.encode()), i + 2) for i, h in enumerate(hetus)]
