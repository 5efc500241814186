"""``hbeval assign``: batch and sequential assignment, the registry glue.

* :func:`assign_all` — batch: every unassigned ``group = pilot`` family, completely
  randomised within strata by :func:`hbeval.randomisation.design.draw_batch`, seeded from ``study.toml``.
* :func:`assign_one` — sequential: stratified permuted blocks of random size, or
  Pocock–Simon minimisation (``[design] assignment = "minimisation"``), drawn from a generator
  keyed by the study's secret allocation key, so that nothing in the study folder tells the
  next allocation.
* :func:`verify` — the registry's keyed hash chain, and a receipt against it.

Both batch and sequential assignment need the study's allocation key (``HBEVAL_ALLOCATION_KEY``
or ``[design] key_file``): it keys the registry's chain (an HMAC over every row) so that
nobody without it can rewrite the registry unseen, and it conceals the sequential draws. Keys
that hold fewer than 128 bits are refused (:func:`hbeval.study.config.key_problem`). Every
allocation prints a receipt (the sequence number and the head hash) to keep outside the study
folder; ``hbeval assign --verify --head RECEIPT`` checks the registry against it.

Re-randomisation (the procedure actually used, and its redraws) is in
:mod:`hbeval.randomisation.redraw`.

Every allocation goes to ``STUDY/allocation.sqlite`` (:mod:`hbeval.randomisation.registry`) inside one
``BEGIN IMMEDIATE`` transaction, which also rewrites ``STUDY/assignments.csv`` from it.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hbeval.arms import GROUPS  # noqa: F401  (the vocabulary, named here for callers of this module)
from hbeval.errors import InputError, UsageError
from hbeval.privacy import has_identity_code, mask_identity_codes
from hbeval.randomisation import plan as analysis_plan
from hbeval.randomisation import registry
from hbeval.randomisation.design import (
    BATCH_ALGORITHM,
    BLOCKS_ALGORITHM,
    MIN_EXPECTED_PER_STRATUM,
    MINIMISATION_ALGORITHM,
    arms_of,
    block_sequence,
    coarsen_strata,
    draw_batch,
    keyed_rng,
    pocock_simon_choice,
    small_strata,
    stratum_labels,
)
from hbeval.study import ingest
from hbeval.study.config import KEY_HOWTO, StudyConfig, key_problem, load_config
from hbeval.study.quality import Ledger
from hbeval.study.schema import tables

ASSIGNMENTS = "assignments.csv"


# ---------------------------------------------------------------------- reading the study
def study_dir_of(study: Any) -> Path:
    """The folder of ``study`` (a :class:`~hbeval.study.store.Study`, or the folder itself)."""
    return Path(study.path) if hasattr(study, "path") else Path(study)


def _now(now: dt.datetime | None) -> dt.datetime:
    now = now or dt.datetime.now(dt.UTC)
    return now


def load_clients(study_dir: Path) -> pd.DataFrame:
    """The clients table with canonical columns.

    A plain ``clients.csv`` that already has ``client_id`` and ``group`` is read directly
    (``assign`` runs once per enrolling family, and a full ingestion per family would be slow
    and would race between coordinators); anything else (a ``hetu`` column, Finnish headers,
    ``;``-separated, ``.xlsx``) is ingested alone (:func:`_ingest_clients`: the same reading,
    typing and pseudonymisation as the study's ingestion, without the other tables), and only a
    clients table with errors goes through :func:`hbeval.study.store.open_study`, whose ledger
    names them.
    """
    fast = _read_plain_clients(study_dir)
    if fast is not None:
        return fast
    alone = _ingest_clients(study_dir)
    if alone is not None:
        return alone
    from hbeval.study.store import open_study  # local: the full ingestion is the rare path

    return open_study(study_dir).table("clients")


def _ingest_clients(study_dir: Path) -> pd.DataFrame | None:
    """The clients table ingested on its own, in memory; ``None`` when any row has an error.

    Every ``assign --client`` changes ``assignments.csv``, an input of the study store, so
    going through :func:`hbeval.study.store.open_study` would re-ingest the whole study (every
    register table) for each enrolled family.
    """
    import tempfile  # local: only this path needs them, and ingest pulls in duckdb

    import duckdb


    try:
        cfg = load_config(study_dir)
        src = ingest.find_sources(study_dir).get("clients")
        if src is None:
            return None
        ledger = Ledger()
        with tempfile.TemporaryDirectory(prefix="hbeval-assign-") as tmp, duckdb.connect() as con:
            ingest.load_table(con, src, tables()["clients"], ledger, cfg.pseudonym_key(study_dir), Path(tmp),
                               dt.date.today(), strata=tuple(cfg.strata))
            (n_errors,) = con.execute("SELECT count(*) FROM _errs").fetchone() or (0,)
            if ledger.has_errors() or n_errors:
                return None
            df = con.execute("SELECT * FROM typed_clients ORDER BY _row").df()
    except Exception:  # noqa: BLE001 - anything unusual: the full ingestion reads it and explains
        return None
    df = df[[c for c in df.columns if c != "_row" and not c.startswith("__raw_")]]
    if df["client_id"].isna().any() or df["client_id"].duplicated().any():
        return None
    for c in df.columns:
        if str(df[c].dtype).startswith("datetime64"):
            df[c] = df[c].astype("datetime64[ns]")
    return df


def _read_plain_clients(study_dir: Path) -> pd.DataFrame | None:
    p = study_dir / "clients.csv"
    if not p.exists():
        return None
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception:  # noqa: BLE001 - not plain: let ingestion read it and explain
        return None
    if not {"client_id", "group"} <= set(df.columns) or {"hetu", "henkilotunnus", "henkilötunnus"} & set(df.columns):
        return None
    df = df.apply(lambda c: c.str.strip())
    if not df["group"].isin(GROUPS).all() or (df["client_id"] == "").any() or df["client_id"].duplicated().any():
        return None
    # any value ingestion would translate (a Finnish enum value, say) sends the file through it,
    # so that strata are labelled exactly as the Study sees them
    try:

        for f in tables()["clients"].fields:
            if f.enum and f.name in df.columns and not df[f.name].isin([*f.enum, ""]).all():
                return None
    except Exception:  # noqa: BLE001 - no schema: keep the plain reading
        pass
    return df.replace({"": None})


def _family(clients: pd.DataFrame, client_id: str) -> pd.Series:
    hit = clients[clients["client_id"].astype(str) == str(client_id)]
    if hit.empty and has_identity_code(client_id):
        raise InputError(f"{mask_identity_codes(client_id)} looks like a hetu (henkilötunnus), which is not a client_id: "
                         "ingestion replaces every hetu with a pseudonymous client_id. Give the family's client_id, or "
                         "put the family (with its hetu) in clients.csv first", file="clients.csv", column="client_id")
    if hit.empty:
        raise InputError(f"family {client_id} is not in clients.csv: add it there before assigning it",
                         file="clients.csv", column="client_id")
    fam = hit.iloc[0]
    group = str(fam["group"])
    if group == "excluded":
        reason = fam.get("exclusion_reason")
        why = f" (reason: {reason})" if isinstance(reason, str) and reason.strip() else ""
        raise InputError(f"family {client_id} is excluded{why}: excluded families are not randomised",
                         file="clients.csv", column="group")
    if group == "comparison":
        raise InputError(f"family {client_id} is in the comparison group: only pilot families are randomised",
                         file="clients.csv", column="group")
    if group != "pilot":
        raise InputError(f"family {client_id} has group {group!r}: only pilot families are randomised",
                         file="clients.csv", column="group")
    return fam


def _check_strata(clients: pd.DataFrame, cfg: StudyConfig) -> None:
    missing = [s for s in cfg.strata if s not in clients.columns]
    if missing:
        raise InputError(f"stratification column(s) {missing} named in design.strata are not in clients.csv",
                         file="study.toml", column="design.strata")


def _refuse_supplied(study_dir: Path) -> None:
    if (study_dir / ASSIGNMENTS).exists() and not (study_dir / registry.REGISTRY_NAME).exists():
        raise InputError(
            "this study supplied its own assignments.csv (there is no allocation.sqlite): hbeval assign would "
            "overwrite it. Move assignments.csv away first to randomise with hbeval instead.",
            file=ASSIGNMENTS,
        )


def _key(cfg: StudyConfig, study_dir: Path, what: str = "sequential assignment") -> bytes:
    """The allocation key, refused when missing or weaker than 128 bits (the message says how to make one)."""
    key = cfg.allocation_key(study_dir)
    where = f"the key file {cfg.allocation_key_file}" if cfg.allocation_key_file else f"environment variable {cfg.allocation_key_env}"
    column = "design.key_file" if cfg.allocation_key_file else "design.key_env"
    if not key:
        raise InputError(
            f"no allocation key: {what} needs the study's secret key in {where}, which keys the allocation "
            f"registry (hbeval never uses a default key; keep the key outside the study folder); {KEY_HOWTO}",
            file="study.toml", column=column,
        )
    weak = key_problem(key)
    if weak:
        raise InputError(f"the allocation key in {where} is too weak: {weak}; {KEY_HOWTO}", file="study.toml",
                         column=column)
    return key


def _key_inside(cfg: StudyConfig, study_dir: Path) -> bool:
    if not cfg.allocation_key_file:
        return False
    p = Path(cfg.allocation_key_file)
    p = p if p.is_absolute() else study_dir / p
    try:
        p.resolve().relative_to(study_dir.resolve())
        return True
    except ValueError:
        return False


def _connect(path: Path, key: bytes, plan_sha256: str | None = None) -> Any:
    """Open (and with the key create, opened by the sealed plan's hash) the registry; a registry
    hbeval must not extend is bad input."""
    try:
        return registry.connect(path, key=key, plan_sha256=plan_sha256)
    except registry.RegistryError as e:
        raise InputError(str(e), file=registry.REGISTRY_NAME) from e


def _append(conn: Any, rows: list[dict[str, Any]], key: bytes) -> list[dict[str, Any]]:
    try:
        return registry.append(conn, rows, key)
    except registry.RegistryError as e:
        raise InputError(str(e), file=registry.REGISTRY_NAME) from e


# ---------------------------------------------------------------------- batch
def assign_all(study_dir: str | Path, now: dt.datetime | None = None) -> pd.DataFrame:
    """Batch assignment of every unassigned pilot family.

    The families not yet in the registry are randomised together by
    :func:`hbeval.randomisation.design.draw_batch` within ``config.strata``. The first batch uses
    ``config.seed`` itself (so the result is exactly ``draw_batch(pilot, strata, seed)``);
    a later batch ``b`` (families added after the first run) uses the seed ``[seed, b]``.

    Returns
    -------
    The newly assigned families: ``client_id, frame_arm, teaming_arm, stratum, assigned_on,
    cell`` sorted by ``client_id`` (empty when every pilot family was already assigned).
    ``STUDY/allocation.sqlite`` gets one row per family, chained with the allocation key, and
    ``STUDY/assignments.csv`` is rewritten from it; both depend only on the inputs, the key and
    ``now``.

    Raises
    ------
    InputError
        No allocation key, or a weak one: the arms are drawn from the public seed, but the
        registry's chain is keyed, so that nobody without the key can rewrite it unseen.
    """
    study_dir = Path(study_dir)
    cfg = load_config(study_dir)
    clients = load_clients(study_dir)
    _check_strata(clients, cfg)
    _refuse_supplied(study_dir)
    key = _key(cfg, study_dir, "batch assignment")
    plan_sha = analysis_plan.opening_hash(study_dir, cfg)  # refuses without a required plan, or under an edited one
    now = _now(now)
    pilot = clients[clients["group"].astype(str) == "pilot"]
    conn = _connect(study_dir / registry.REGISTRY_NAME, key, plan_sha)
    try:
        registry.begin(conn)
        try:
            done = registry.read(conn)
            todo = pilot[~pilot["client_id"].astype(str).isin(set(done["client_id"]))]
            if todo.empty:
                registry.write_export(conn, study_dir / ASSIGNMENTS)
                conn.execute("COMMIT")
                return _new_frame([])
            batches = done.loc[done["method"] == "batch", "batch"].dropna()
            b = int(batches.max()) + 1 if len(batches) else 1
            seed: int | list[int] = cfg.seed if b == 1 else [cfg.seed, b]
            arms = draw_batch(*_batch_strata(todo, cfg), seed)
            rows = [
                {
                    "client_id": r.client_id, "cell": int(r.cell), "frame_arm": r.frame_arm, "teaming_arm": r.teaming_arm,
                    "stratum": r.stratum, "method": "batch", "batch": b, "stratum_seq": None,
                    "seed": ",".join(str(s) for s in np.atleast_1d(seed)), "key_id": None,
                    "algorithm": f"{BATCH_ALGORITHM} strata={','.join(cfg.strata)}" + _coarsening_text(cfg),
                    "assigned_on": now.date().isoformat(), "recorded_at": now.isoformat(timespec="seconds"),
                }
                for r in arms.itertuples(index=False)
            ]
            written = _append(conn, rows, key)  # drawn from the public seed; chained with the key
            registry.write_export(conn, study_dir / ASSIGNMENTS)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return _new_frame(written)


def _new_frame(rows: list[dict]) -> pd.DataFrame:
    cols = ["client_id", "frame_arm", "teaming_arm", "stratum", "assigned_on", "cell"]
    df = pd.DataFrame(rows, columns=[*cols, "seq"])[cols] if rows else pd.DataFrame({c: [] for c in cols})
    df["cell"] = df["cell"].astype("int8")
    return df.sort_values("client_id", kind="mergesort").reset_index(drop=True)


# ---------------------------------------------------------------------- sequential
def assign_one(study_dir: str | Path, client_id: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Sequential assignment of one newly enrolled pilot family.

    ``[design] assignment = "minimisation"`` uses Pocock–Simon minimisation over the
    stratification columns with probability ``minimisation_p`` of a minimising cell; any other
    setting uses stratified permuted blocks whose sizes are drawn from ``block_sizes``.

    Returns
    -------
    ``dict`` with ``client_id, frame_arm, teaming_arm, stratum, assigned_on, cell, new``; ``new``
    is False when the family was already assigned (its existing arm comes back, never
    re-drawn).

    Raises
    ------
    InputError
        Unknown, excluded or comparison family; no allocation key; a supplied
        ``assignments.csv``.

    Notes
    -----
    Concealment: allocation ``j`` of stratum ``s`` is cell ``j`` of
    ``block_sequence(key, s, ...)``, whose randomness is ``HMAC-SHA-256(key, s, block)``; the
    registry stores only past allocations and a key fingerprint. Concurrency: the position
    in the stratum is read and the row written under one ``BEGIN IMMEDIATE`` transaction, so
    concurrent coordinators queue and never take the same position.
    """
    study_dir = Path(study_dir)
    cfg = load_config(study_dir)
    clients = load_clients(study_dir)
    _check_strata(clients, cfg)
    fam = _family(clients, client_id)
    _refuse_supplied(study_dir)
    client_id = str(fam["client_id"])
    reg = study_dir / registry.REGISTRY_NAME
    if reg.exists():  # an assigned family gets its arm back, key or no key
        conn = registry.connect(reg, create=False)
        try:
            prev = _existing(conn, client_id) if registry._has_tables(conn) else None
        finally:
            conn.close()
        if prev is not None:
            return prev
    key = _key(cfg, study_dir)
    plan_sha = analysis_plan.opening_hash(study_dir, cfg)  # refuses without a required plan, or under an edited one
    now = _now(now)
    stratum = "|".join("(missing)" if pd.isna(fam[s]) else str(fam[s]) for s in cfg.strata) or "all"
    conn = _connect(study_dir / registry.REGISTRY_NAME, key, plan_sha)
    try:
        registry.begin(conn)
        try:
            prev = _existing(conn, client_id)
            if prev is not None:
                conn.execute("ROLLBACK")
                return prev
            if cfg.assignment_method == "minimisation":
                row = _minimisation_row(conn, clients, fam, cfg, key)
            else:
                (pos,) = conn.execute(
                    "SELECT count(*) FROM allocations WHERE method = 'blocks' AND stratum = ?", (stratum,)
                ).fetchone()
                cell = int(block_sequence(key, stratum, pos + 1, cfg.block_sizes)[pos])
                row = {"method": "blocks", "stratum_seq": pos + 1, "cell": cell,
                       "algorithm": f"{BLOCKS_ALGORITHM} sizes={','.join(map(str, cfg.block_sizes))}"}
            frame, team = arms_of(np.array([row["cell"]]))
            row.update({"client_id": client_id, "frame_arm": str(frame[0]), "teaming_arm": str(team[0]),
                        "stratum": stratum, "batch": None, "seed": None, "key_id": registry.key_fingerprint(key),
                        "assigned_on": now.date().isoformat(), "recorded_at": now.isoformat(timespec="seconds")})
            _append(conn, [row], key)
            registry.write_export(conn, study_dir / ASSIGNMENTS)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return {k: row[k] for k in ("client_id", "frame_arm", "teaming_arm", "stratum", "assigned_on", "cell")} | {"new": True}


def _existing(conn, client_id: str) -> dict[str, Any] | None:
    r = conn.execute(
        "SELECT cell, frame_arm, teaming_arm, stratum, assigned_on FROM allocations WHERE client_id = ?", (client_id,)
    ).fetchone()
    if r is None:
        return None
    return {"client_id": client_id, "frame_arm": r[1], "teaming_arm": r[2], "stratum": r[3], "assigned_on": r[4],
            "cell": int(r[0]), "new": False}


def factor_levels(clients: pd.DataFrame, ids: Sequence[str], factors: Sequence[str]) -> np.ndarray:
    """``(len(ids), n_factors)`` integer level codes (levels sorted by text, missing its own level)."""
    cl = clients.set_index(clients["client_id"].astype(str))
    if not factors:
        return np.zeros((len(ids), 1), dtype=np.int64)
    out = np.empty((len(ids), len(factors)), dtype=np.int64)
    for j, f in enumerate(factors):
        vals = cl[f].astype(object).where(cl[f].notna(), "(missing)").astype(str)
        levels = {v: i for i, v in enumerate(sorted(vals.unique()))}
        out[:, j] = [levels[vals.loc[i]] for i in ids]
    return out


def _minimisation_row(conn, clients: pd.DataFrame, fam: pd.Series, cfg: StudyConfig, key: bytes) -> dict:
    done = registry.read(conn)
    factors = list(cfg.strata)
    ids = [*done["client_id"].astype(str), str(fam["client_id"])]
    lev = factor_levels(clients, ids, factors)
    cells = done["cell"].to_numpy()
    counts = np.zeros((lev.shape[1], 4), dtype=np.int64)
    for f in range(lev.shape[1]):
        same = lev[:-1, f] == lev[-1, f]
        counts[f] = np.bincount(cells[same], minlength=4)
    n_min = int((done["method"] == "minimisation").sum())
    u = keyed_rng(key, MINIMISATION_ALGORITHM, n_min).random(2)
    cell = pocock_simon_choice(counts, cfg.minimisation_p, u.tolist())
    return {"method": "minimisation", "stratum_seq": n_min + 1, "cell": cell,
            "algorithm": f"{MINIMISATION_ALGORITHM} p={cfg.minimisation_p:g} factors={','.join(factors)}"}


# ---------------------------------------------------------------------- verify and run
def verify(study_dir: str | Path, head: str | None = None, allow_legacy: bool = False) -> tuple[bool, str]:
    """Check ``allocation.sqlite`` (its chain; with the allocation key every row's MAC and the
    head's; with ``head``, a receipt, that the chain still holds it), that ``assignments.csv``
    matches it, and that ``analysis_plan.json`` is the plan that opened it
    (:func:`hbeval.randomisation.plan.check_against_registry`).

    Returns ``(ok, message)``; the message names the first bad row.
    """
    study_dir = Path(study_dir)
    reg = study_dir / registry.REGISTRY_NAME
    if not reg.exists():
        if (study_dir / ASSIGNMENTS).exists():
            return False, ("no allocation.sqlite: this study supplied its own assignments.csv, so there is no "
                           "registry to verify")
        return False, "no allocation.sqlite: nothing has been assigned with hbeval assign"
    cfg = load_config(study_dir)
    try:
        key = cfg.allocation_key(study_dir)
    except InputError:
        key = None
    ok, msg = registry.verify(reg, study_dir / ASSIGNMENTS, key=key, head=head, allow_v1=allow_legacy)
    if ok:  # the sealed plan: the file must be the one whose hash opened the registry
        ok, plan_msg = analysis_plan.check_against_registry(study_dir, registry.plan_of(reg), cfg)
        msg = f"{msg}; {plan_msg}" if ok else plan_msg
    if ok and not key:
        msg += (" (no allocation key at hand: the rows' MACs were not checked"
                + ("; the receipt pins every row up to it)" if head else
                   "; give the key, or a receipt with --head, to check that no row was rewritten)"))
    return ok, msg


def _batch_strata(todo: pd.DataFrame, cfg: StudyConfig) -> tuple[pd.DataFrame, list[str]]:
    """The families and stratification columns :func:`draw_batch` randomises within: ``config.strata``,
    or with ``[design] min_stratum_size`` one column of the coarsened labels (:func:`coarsen_strata`)."""
    if cfg.min_stratum_size is None:
        return todo, list(cfg.strata)
    return todo.assign(_stratum=coarsen_strata(todo, cfg.strata, cfg.min_stratum_size)), ["_stratum"]


def _coarsening_text(cfg: StudyConfig) -> str:
    """The coarsening rule as recorded in the registry's ``algorithm`` (empty without one)."""
    if cfg.min_stratum_size is None:
        return ""
    return (f" min_stratum_size={cfg.min_stratum_size} (strata below it: last variable dropped, then the rest "
            "pooled as '(pooled)')")


def strata_warning(study_dir: str | Path) -> str | None:
    """A warning when the pilot's strata are too fine for four cells: fewer than
    :data:`~hbeval.randomisation.design.MIN_EXPECTED_PER_STRATUM` families expected per stratum
    (``None`` otherwise). It names the small strata and the coarsening rule."""
    study_dir = Path(study_dir)
    cfg = load_config(study_dir)
    clients = load_clients(study_dir)
    pilot = clients[clients["group"].astype(str) == "pilot"]
    if pilot.empty or any(s not in pilot.columns for s in cfg.strata):
        return None
    if cfg.min_stratum_size is not None:
        labels = coarsen_strata(pilot, cfg.strata, cfg.min_stratum_size)
    else:
        labels = stratum_labels(pilot, cfg.strata)
    expected, small = small_strata(labels)
    if expected >= MIN_EXPECTED_PER_STRATUM:
        return None
    shown = ", ".join(small[:10]) + (f" and {len(small) - 10} more" if len(small) > 10 else "")
    rule = (f"strata below {cfg.min_stratum_size} families are merged by [design] min_stratum_size"
            if cfg.min_stratum_size is not None else
            "set [design] min_stratum_size (e.g. 8) in study.toml before assigning to merge small strata by a "
            "pre-specified rule (the last stratification variable is dropped first, then the rest are pooled), "
            "or stratify on fewer variables")
    return (f"warning: {len(pilot)} pilot families in {labels.nunique()} strata, {expected:.1f} expected per stratum: "
            f"too fine for the four cells (fewer than {MIN_EXPECTED_PER_STRATUM}); strata below "
            f"{MIN_EXPECTED_PER_STRATUM}: {shown}. Families alone in their stratum will not contribute to the "
            f"estimates; {rule}.")


def run(study_dir: str | Path, *, all: bool = False, client: str | None = None, verify: bool = False,
        head: str | None = None, now: dt.datetime | None = None, allow_legacy: bool = False) -> int:
    """The body of ``hbeval assign STUDY --all | --client ID | --verify [--head RECEIPT]``; returns the exit code."""
    study_dir = Path(study_dir)
    if sum([bool(all), client is not None, bool(verify)]) != 1:
        raise UsageError("give exactly one of --all, --client ID, --verify")
    if head is not None and not verify:
        raise UsageError("--head RECEIPT goes with --verify")
    if allow_legacy and not verify:
        raise UsageError("--allow-legacy-registry goes with --verify")
    if verify:
        ok, msg = globals()["verify"](study_dir, head=head, allow_legacy=allow_legacy)
        print(("OK: " if ok else "FAILED: ") + msg, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if not study_dir.is_dir():
        raise InputError("study folder does not exist", file=str(study_dir))
    if all:
        warning = strata_warning(study_dir)
        if warning:
            print(warning, file=sys.stderr)
        new = assign_all(study_dir, now=now)
        total = len(registry.read(study_dir / registry.REGISTRY_NAME))
        if new.empty:
            print(f"every pilot family was already assigned ({total} in the registry); nothing drawn")
        else:
            counts = new.groupby(["frame_arm", "teaming_arm"]).size()
            print(f"assigned {len(new)} pilot families within {new['stratum'].nunique()} strata "
                  f"({total} in the registry); wrote {ASSIGNMENTS}")
            for (f, t), n in counts.items():
                print(f"  {f}/{t}: {n}")
        _print_receipt(study_dir)
        return 0
    cfg = load_config(study_dir)
    if _key_inside(cfg, study_dir):
        print("warning: the allocation key file is inside the study folder; anyone with the folder can read "
              "the coming allocations. Keep it elsewhere.", file=sys.stderr)
    res = assign_one(study_dir, str(client), now=now)
    if res["new"]:
        print(f"family {res['client_id']}: {res['frame_arm']} / {res['teaming_arm']} (stratum {res['stratum']}, "
              f"assigned on {res['assigned_on']})")
    else:
        print(f"family {res['client_id']} was already assigned on {res['assigned_on']}: {res['frame_arm']} / "
              f"{res['teaming_arm']} (stratum {res['stratum']}); not re-drawn")
    _print_receipt(study_dir)
    return 0


def _print_receipt(study_dir: Path) -> None:
    """``receipt: seq N head HEX``: to keep outside the study folder (e-mail, a case note)."""
    h = registry.head_of(study_dir / registry.REGISTRY_NAME)
    if h is None:
        return
    print(f"receipt: seq {h['seq']} head {h['head'][:registry.RECEIPT_HEX]}")
    print(f"  keep it outside the study folder (e-mail, a case note); check the registry against it with "
          f"hbeval assign {study_dir} --verify --head {h['receipt']}")
