"""A validated study: the store that every analysis reads.

``open_study(path)`` ingests the folder when its inputs changed since the store was
written (hashes of every input file, the hbeval version and the key id are kept in the
store) and raises :class:`~hbeval.errors.InputError` with the ledger summary when any row
was rejected.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import duckdb
import pandas as pd

from hbeval import __version__
from hbeval.arms import cell_code
from hbeval.errors import InputError
from hbeval.study.config import StudyConfig, load_config
from hbeval.study.ingest import (
    DUCKDB_MEMORY_LIMIT,
    IngestResult,
    code_fingerprint,
    fetch_row,
    file_sha256,
    ingest,
    input_files,
    store_path,
)
from hbeval.study.quality import Ledger
from hbeval.study.schema import tables


@dataclass
class Study:
    """A study folder whose inputs passed validation."""

    path: Path
    config: StudyConfig
    store: Path
    ledger: Ledger | None = None
    input_hashes: dict[str, str] = field(default_factory=dict)
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    #: how :func:`open_study` found the store and how long that took (the first line of
    #: ``hbeval analyze``'s progress): a national study's inputs take seconds to hash, and a
    #: rebuild (changed inputs or hbeval code) takes minutes
    opened: str = ""

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the study store (tables as in the contract), with
        DuckDB's memory limited as in ingestion (:func:`read_config`)."""
        return duckdb.connect(str(self.store), read_only=True, config=read_config())

    def table(self, name: str) -> pd.DataFrame:
        """A canonical table as pandas (dates as ``datetime64``); a copy, so callers may
        change it. An absent optional table comes back empty with its columns."""
        if name not in self._cache:
            if name not in tables() and name not in ("unit_costs_all", "price_index_all"):
                raise KeyError(f"no table {name}")
            with self.connect() as con:
                df = con.execute(f'SELECT * FROM "{name}"').df()
            df = df.drop(columns=["_source_row"], errors="ignore")
            for c in df.columns:
                if str(df[c].dtype).startswith("datetime64"):
                    df[c] = df[c].astype("datetime64[ns]")
            self._cache[name] = df
        return self._cache[name].copy()

    def unit_costs(self) -> pd.DataFrame:
        """The catalogue in force: the study's rows over the packaged ones (``origin``)."""
        return self.table("unit_costs_all")

    def price_index(self) -> pd.DataFrame:
        return self.table("price_index_all")

    def families(self) -> pd.DataFrame:
        """One row per family: ``clients`` with the arms (``frame_arm``, ``teaming_arm``,
        ``stratum``, ``assigned_on``) and ``cell`` (Int8 code, <NA> when not assigned)."""
        cl = self.table("clients")
        a = self.table("assignments")[["client_id", "frame_arm", "teaming_arm", "stratum", "assigned_on"]]
        fam = cl.merge(a, on="client_id", how="left", validate="one_to_one")
        code = pd.array(cell_code(fam["frame_arm"].fillna(""), fam["teaming_arm"].fillna("")), dtype="Int8")
        code[fam["frame_arm"].isna().to_numpy() | fam["teaming_arm"].isna().to_numpy()] = pd.NA
        fam["cell"] = code
        return fam.sort_values("client_id", kind="mergesort").reset_index(drop=True)

    def data_quality(self) -> pd.DataFrame:
        """The ledger's counts as ``results/data_quality.csv`` shows them."""
        with self.connect() as con:
            return con.execute("SELECT * FROM _data_quality ORDER BY file, severity, \"column\", rule").df()

    def meta(self) -> dict:
        with self.connect() as con:
            row = con.execute("SELECT v FROM _meta WHERE k = 'meta'").fetchone()
        if row is None:
            raise InputError("the study store has no meta record (damaged?): remove it and run again; "
                             "hbeval rebuilds it from the study folder", file=str(self.store))
        return json.loads(row[0])


def read_config() -> dict[str, str | bool | int | float | list[str]]:
    """Settings of every read-only connection to a study store: DuckDB's memory limited to
    :data:`~hbeval.study.ingest.DUCKDB_MEMORY_LIMIT` as in ingestion (without it DuckDB may
    take 80 % of the machine's memory before spilling; a national study's cost query held
    ~3 GB), spilling to a folder of this process in the system's temporary folder (DuckDB
    makes it only when it spills and removes it when the last connection closes). The same
    settings in every connection of a process: DuckDB refuses a second connection to an open
    file with other settings."""
    return {"memory_limit": DUCKDB_MEMORY_LIMIT,
            "temp_directory": str(Path(tempfile.gettempdir()) / f"hbeval-spill-{os.getpid()}")}


def _store_state(study_dir: Path) -> tuple[dict | None, str]:
    """``(meta, "")`` of a store that is current, else ``(None, why it is not)``."""
    sp = store_path(study_dir)
    if not sp.exists():
        return None, "no study store yet"
    try:
        with duckdb.connect(str(sp), read_only=True, config=read_config()) as con:
            (v,) = fetch_row(con, "SELECT v FROM _meta WHERE k = 'meta'")
        meta = json.loads(v)
    except Exception:
        return None, "the study store is unreadable"
    if meta.get("hbeval_version") != __version__ or meta.get("code") != code_fingerprint():
        return None, "the store was written by another hbeval version or ingestion code"
    try:
        now = {n: file_sha256(p) for n, p in input_files(study_dir).items()}
    except InputError:
        return None, "an input file cannot be read"
    cfg = load_config(study_dir)
    key = cfg.pseudonym_key(study_dir)
    if now != meta.get("inputs"):
        return None, "input files changed since the store was written"
    if meta.get("key_id") != (StudyConfig.key_id(key) if key else None):
        return None, "the pseudonym key changed since the store was written"
    return meta, ""


def validate(study_dir: str | Path, *, today: dt.date | None = None) -> IngestResult:
    """Ingest and validate; the store is replaced only when nothing was rejected."""
    return ingest(Path(study_dir), today=today)


def open_study(study_dir: str | Path, *, today: dt.date | None = None, refresh: bool = False,
               progress: TextIO | None = None) -> Study:
    """The validated study, ingesting first when its inputs changed.

    ``progress`` (e.g. ``sys.stderr``) is told when the store is rebuilt, and why: that takes
    minutes at a national study's size. :attr:`Study.opened` says the same afterwards.

    Raises
    ------
    InputError
        When any input row is rejected; the message holds the ledger summary.
    """
    study_dir = Path(study_dir)
    t0 = time.perf_counter()
    meta, why = (None, "a rebuild was asked for") if refresh else _store_state(study_dir)
    if meta is not None:
        return Study(path=study_dir, config=load_config(study_dir), store=store_path(study_dir),
                     input_hashes=meta["inputs"], opened=f"study store current: {len(meta['inputs'])} input files "
                     f"checked against it in {time.perf_counter() - t0:.1f} s")
    if progress is not None:
        print(f"study store: {why}; validating the inputs and rebuilding it ...", file=progress, flush=True)
    res = ingest(study_dir, today=today)
    if res.ledger.has_errors():
        raise InputError("the study has data errors:\n" + res.ledger.summary(), file=str(study_dir))
    if res.store is None:  # ingest writes the store whenever the ledger has no error
        raise RuntimeError(f"internal error: no study store was written for {study_dir}")
    seconds = time.perf_counter() - t0
    if progress is not None:
        print(f"      done in {seconds:.1f} s", file=progress, flush=True)
    return Study(path=study_dir, config=res.config, store=res.store, ledger=res.ledger, input_hashes=res.input_hashes,
                 opened=f"study store rebuilt ({why}): inputs validated and stored in {seconds:.1f} s")
