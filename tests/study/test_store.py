"""The study store's read side: how ``open_study`` found the store (and says so), and the
read-only connections' DuckDB settings."""

from __future__ import annotations

import io
import os

import duckdb
import pytest

from hbeval.study import store as st
from hbeval.study.ingest import DUCKDB_MEMORY_LIMIT
from hbeval.study.store import open_study, read_config


def _bytes(setting: str) -> float:
    """DuckDB's ``memory_limit`` text (``1.8 GiB``, ``2.0 GB``) in bytes."""
    num, unit = setting.split()
    return float(num) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


def test_open_study_says_when_it_rebuilds_the_store_and_why(study_copy):
    err = io.StringIO()
    s = open_study(study_copy, progress=err)
    assert "no study store yet" in err.getvalue() and "rebuilding" in err.getvalue() and "done in" in err.getvalue()
    assert s.opened.startswith("study store rebuilt (no study store yet)")
    err = io.StringIO()
    s = open_study(study_copy, progress=err)
    assert err.getvalue() == ""  # a current store: nothing to say while it works
    assert s.opened.startswith("study store current:") and f"{len(s.input_hashes)} input files" in s.opened
    with open(study_copy / "clients.csv", "a", encoding="utf-8") as f:  # the same rows, one more byte
        f.write("\n")
    err = io.StringIO()
    s = open_study(study_copy, progress=err)
    assert "input files changed since the store was written" in err.getvalue()
    assert "input files changed" in s.opened


def test_a_stale_code_fingerprint_is_named(study_copy, monkeypatch):
    open_study(study_copy)
    monkeypatch.setattr(st, "code_fingerprint", lambda: "another")
    meta, why = st._store_state(study_copy)
    assert meta is None and "hbeval version" in why


def test_read_connections_have_the_ingest_memory_limit(study_copy):
    s = open_study(study_copy)
    with s.connect() as con:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        # DuckDB shows the limit in its own units; the default would be 80 % of the machine
        assert _bytes(limit) == pytest.approx(_bytes(DUCKDB_MEMORY_LIMIT.replace("GB", " GB")), rel=0.1)
        # a second connection (and the currency check) while one is open: same settings, so
        # DuckDB accepts them and the store is not rebuilt by mistake
        with s.connect() as con2:
            assert con2.execute("SELECT count(*) FROM clients").fetchone()[0] > 0
        assert st._store_state(study_copy)[0] is not None
        assert open_study(study_copy).opened.startswith("study store current")


def test_read_connections_spill_under_a_folder_of_this_process():
    cfg = read_config()
    assert cfg["memory_limit"] == DUCKDB_MEMORY_LIMIT
    assert str(cfg["temp_directory"]).endswith(f"hbeval-spill-{os.getpid()}")


def test_a_query_larger_than_the_limit_spills_and_the_folder_goes(tmp_path):
    """A read-only connection with a small limit still answers a large aggregate: DuckDB
    spills it into the spill folder, which it makes only then and removes when it closes."""
    db = tmp_path / "s.duckdb"
    with duckdb.connect(str(db)) as c:
        c.execute("CREATE TABLE t AS SELECT i, i % 500000 AS k, i * 0.5 AS v FROM range(1000000) t(i)")
    spill = tmp_path / "spill"
    cfg = {**read_config(), "memory_limit": "20MB", "temp_directory": str(spill)}
    with duckdb.connect(str(db), read_only=True, config=cfg) as con:
        con.execute("CREATE TEMP TABLE g AS SELECT k, sum(v) AS s, count(*) AS n FROM t GROUP BY k")
        assert con.execute("SELECT count(*), sum(n), sum(s) FROM g").fetchone() == (500000, 1000000, 0.5 * 999999 * 1000000 / 2)
        assert spill.is_dir()  # it did spill
    assert not spill.exists()
