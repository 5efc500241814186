"""``hbeval assign``: batch and sequential assignment, the registry glue, re-randomisation.

* :func:`assign_all` — batch: every unassigned ``group = pilot`` family, completely
  randomised within strata by :func:`hbeval.randomisation.design.draw_batch`, seeded from ``study.toml``.
* :func:`assign_one` — sequential: stratified permuted blocks of random size, or
  Pocock–Simon minimisation (``[design] assignment = "minimisation"``), drawn from a generator
  keyed by the study's secret allocation key, so that nothing in the study folder tells the
  next allocation.
* :func:`verify` — the registry's hash chain.
* :func:`redraw` — many assignments redrawn under the procedure that was actually used, for
  randomisation inference; :func:`procedure` describes that procedure for the report.

Every allocation goes to ``STUDY/allocation.sqlite`` (:mod:`hbeval.randomisation.registry`) inside one
``BEGIN IMMEDIATE`` transaction, which also rewrites ``STUDY/assignments.csv`` from it.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hbeval.randomisation import registry
from hbeval.study.config import StudyConfig, load_config
from hbeval.randomisation.design import (
    BATCH_ALGORITHM,
    BLOCKS_ALGORITHM,
    MINIMISATION_ALGORITHM,
    arms_of,
    batch_draws,
    block_sequence,
    blocked_draws,
    draw_batch,
    keyed_rng,
    minimisation_draws,
    pocock_simon_choice,
)
from hbeval.errors import InputError, UsageError

ASSIGNMENTS = "assignments.csv"
from hbeval.arms import GROUPS  # noqa: E402,F401


# ---------------------------------------------------------------------- reading the study
def _study_dir(study: Any) -> Path:
    return Path(study.path) if hasattr(study, "path") else Path(study)


def _now(now: dt.datetime | None) -> dt.datetime:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now


def _load_clients(study_dir: Path) -> pd.DataFrame:
    """The clients table with canonical columns.

    A plain ``clients.csv`` that already has ``client_id`` and ``group`` is read directly
    (``assign`` runs once per enrolling family, and a full ingestion per family would be slow
    and would race between coordinators); anything else (a ``hetu`` column, Finnish headers,
    ``;``-separated, ``.xlsx``) goes through :func:`hbeval.study.store.open_study`.
    """
    fast = _read_plain_clients(study_dir)
    if fast is not None:
        return fast
    from hbeval.study.store import open_study

    return open_study(study_dir).table("clients")


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
        from hbeval.study.schema import tables

        for f in tables()["clients"].fields:
            if f.enum and f.name in df.columns and not df[f.name].isin([*f.enum, ""]).all():
                return None
    except Exception:  # noqa: BLE001 - no schema: keep the plain reading
        pass
    return df.replace({"": None})


def _family(clients: pd.DataFrame, client_id: str) -> pd.Series:
    hit = clients[clients["client_id"].astype(str) == str(client_id)]
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


def _key(cfg: StudyConfig, study_dir: Path) -> bytes:
    key = cfg.allocation_key(study_dir)
    if not key:
        where = f"the key file {cfg.allocation_key_file}" if cfg.allocation_key_file else f"environment variable {cfg.allocation_key_env}"
        raise InputError(
            f"no allocation key: sequential assignment needs the study's secret key in {where} "
            "(hbeval never uses a default key; keep the key outside the study folder)",
            file="study.toml", column="design.key_env",
        )
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
    ``STUDY/allocation.sqlite`` gets one row per family and ``STUDY/assignments.csv`` is
    rewritten from it; both depend only on the inputs and ``now``.
    """
    study_dir = Path(study_dir)
    cfg = load_config(study_dir)
    clients = _load_clients(study_dir)
    _check_strata(clients, cfg)
    _refuse_supplied(study_dir)
    now = _now(now)
    pilot = clients[clients["group"].astype(str) == "pilot"]
    conn = registry.connect(study_dir / registry.REGISTRY_NAME)
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
            arms = draw_batch(todo, list(cfg.strata), seed)
            rows = [
                {
                    "client_id": r.client_id, "cell": int(r.cell), "frame_arm": r.frame_arm, "teaming_arm": r.teaming_arm,
                    "stratum": r.stratum, "method": "batch", "batch": b, "stratum_seq": None,
                    "seed": ",".join(str(s) for s in np.atleast_1d(seed)), "key_id": None,
                    "algorithm": f"{BATCH_ALGORITHM} strata={','.join(cfg.strata)}",
                    "assigned_on": now.date().isoformat(), "recorded_at": now.isoformat(timespec="seconds"),
                }
                for r in arms.itertuples(index=False)
            ]
            written = registry.append(conn, rows)  # public seed, no key: not sealed (bytes independent of env)
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
    clients = _load_clients(study_dir)
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
    now = _now(now)
    stratum = "|".join("(missing)" if pd.isna(fam[s]) else str(fam[s]) for s in cfg.strata) or "all"
    conn = registry.connect(study_dir / registry.REGISTRY_NAME)
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
                        "stratum": stratum, "batch": None, "seed": None, "key_id": StudyConfig.key_id(key),
                        "assigned_on": now.date().isoformat(), "recorded_at": now.isoformat(timespec="seconds")})
            written = registry.append(conn, [row])
            registry.seal(conn, key, StudyConfig.key_id(key), written)
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


def _factor_levels(clients: pd.DataFrame, ids: Sequence[str], factors: Sequence[str]) -> np.ndarray:
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
    lev = _factor_levels(clients, ids, factors)
    cells = done["cell"].to_numpy()
    counts = np.zeros((lev.shape[1], 4), dtype=np.int64)
    for f in range(lev.shape[1]):
        same = lev[:-1, f] == lev[-1, f]
        counts[f] = np.bincount(cells[same], minlength=4)
    n_min = int((done["method"] == "minimisation").sum())
    u = keyed_rng(key, MINIMISATION_ALGORITHM, n_min).random(2)
    cell = pocock_simon_choice(counts, cfg.minimisation_p, u)
    return {"method": "minimisation", "stratum_seq": n_min + 1, "cell": cell,
            "algorithm": f"{MINIMISATION_ALGORITHM} p={cfg.minimisation_p:g} factors={','.join(factors)}"}


# ---------------------------------------------------------------------- verify and run
def verify(study_dir: str | Path) -> tuple[bool, str]:
    """Check ``allocation.sqlite``'s hash chain and that ``assignments.csv`` matches it.

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
    ok, msg = registry.verify(reg, study_dir / ASSIGNMENTS, key=key, key_id=StudyConfig.key_id(key) if key else None)
    if ok and not key:
        msg += " (no allocation key at hand: seals not checked)"
    return ok, msg


def run(study_dir: str | Path, *, all: bool = False, client: str | None = None, verify: bool = False,
        now: dt.datetime | None = None) -> int:
    """The body of ``hbeval assign STUDY --all | --client ID | --verify``; returns the exit code."""
    study_dir = Path(study_dir)
    if sum([bool(all), client is not None, bool(verify)]) != 1:
        raise UsageError("give exactly one of --all, --client ID, --verify")
    if verify:
        ok, msg = globals()["verify"](study_dir)
        print(("OK: " if ok else "FAILED: ") + msg, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if not study_dir.is_dir():
        raise InputError("study folder does not exist", file=str(study_dir))
    if all:
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
            print(f"registry head: {_head(study_dir)} (note it outside the study folder: it pins the registry)")
        return 0
    cfg = load_config(study_dir)
    if _key_inside(cfg, study_dir):
        print("warning: the allocation key file is inside the study folder; anyone with the folder can read "
              "the coming allocations. Keep it elsewhere.", file=sys.stderr)
    res = assign_one(study_dir, client, now=now)
    if res["new"]:
        print(f"family {res['client_id']}: {res['frame_arm']} / {res['teaming_arm']} (stratum {res['stratum']}, "
              f"assigned on {res['assigned_on']}); registry head {_head(study_dir)}")
    else:
        print(f"family {res['client_id']} was already assigned on {res['assigned_on']}: {res['frame_arm']} / "
              f"{res['teaming_arm']} (stratum {res['stratum']}); not re-drawn")
    return 0


def _head(study_dir: Path) -> str:
    conn = registry.connect(study_dir / registry.REGISTRY_NAME, create=False)
    try:
        return registry.head(conn)[1][:16]
    finally:
        conn.close()


# ---------------------------------------------------------------------- procedure and redraws
def _algorithm_params(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", text or ""))


def _registry_rows(study_dir: Path) -> pd.DataFrame | None:
    reg = study_dir / registry.REGISTRY_NAME
    return registry.read(reg) if reg.exists() else None


def _supplied(study: Any) -> pd.DataFrame:
    if hasattr(study, "table"):
        a = study.table("assignments")
    else:
        p = _study_dir(study) / ASSIGNMENTS
        if not p.exists():
            raise InputError("no allocation.sqlite and no assignments.csv: the study has no assignment", file=ASSIGNMENTS)
        a = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    return a


def procedure(study: Any) -> dict[str, Any]:
    """The assignment procedure actually used, as recorded (for the report and manifest).

    Keys: ``method`` (``batch``, ``blocks``, ``minimisation``, ``mixed`` or ``supplied``),
    ``n_assigned``, ``strata`` (the stratification columns, from the algorithm record),
    ``n_strata``, ``block_sizes``, ``minimisation_p``, ``seeds`` (public batch seeds),
    ``key_ids`` (fingerprints of allocation keys), ``algorithms``, ``registry_head`` (hash of
    the last row) and ``description`` (one sentence).
    """
    study_dir = _study_dir(study)
    rows = _registry_rows(study_dir)
    if rows is None:
        a = _supplied(study)
        return {"method": "supplied", "n_assigned": int(len(a)), "n_strata": int(a["stratum"].nunique()) if len(a) else 0,
                "strata": None, "block_sizes": None, "minimisation_p": None, "seeds": [], "key_ids": [],
                "algorithms": [], "registry_head": None,
                "description": "assignments supplied by the pilot (assignments.csv); re-randomisation treats them as "
                               "complete randomisation within the given strata"}
    methods = sorted(rows["method"].unique())
    method = methods[0] if len(methods) == 1 else ("mixed" if methods else "none")
    algs = sorted(rows["algorithm"].unique())
    params: dict[str, str] = {}
    for a in algs:
        params.update(_algorithm_params(a))
    sizes = [int(x) for x in params["sizes"].split(",")] if "sizes" in params else None
    p = float(params["p"]) if "p" in params else None
    strata = params.get("strata", params.get("factors"))
    desc = {
        "batch": "complete randomisation of the four cells within strata (randomizr's rule for misfits)",
        "blocks": f"stratified permuted blocks of random size {sizes} in enrolment order, concealed by a keyed generator",
        "minimisation": f"Pocock-Simon minimisation over {strata} with probability {p} of a minimising cell",
        "mixed": "a mix of procedures: " + ", ".join(methods),
        "none": "no allocation recorded",
    }[method]
    return {
        "method": method,
        "n_assigned": int(len(rows)),
        "strata": strata.split(",") if strata else [],
        "n_strata": int(rows["stratum"].nunique()),
        "block_sizes": sizes,
        "minimisation_p": p,
        "seeds": sorted(rows["seed"].dropna().unique().tolist()),
        "key_ids": sorted(rows["key_id"].dropna().unique().tolist()),
        "algorithms": algs,
        "registry_head": str(rows["row_hash"].iloc[-1]) if len(rows) else None,
        "description": desc,
    }


def redraw(study: Any, client_ids: Sequence[str], n_draws: int,
           seed: int | Sequence[int] | np.random.Generator) -> np.ndarray:
    """Assignments redrawn ``n_draws`` times under the procedure actually used.

    Parameters
    ----------
    study : a :class:`hbeval.study.store.Study` or a study folder path
    client_ids : the families whose codes are returned (columns, in this order); each must be
        assigned
    n_draws : number of redraws
    seed : seed, seed sequence or generator

    Returns
    -------
    ``int8`` array ``(n_draws, len(client_ids))`` of cell codes.

    Notes
    -----
    The procedure is read from the registry, row by row:

    * ``batch`` rows: complete randomisation within (batch run × stratum), misfit rule
      included (:func:`hbeval.randomisation.design.batch_draws`, vectorised over draws);
    * ``blocks`` rows: permuted blocks of random size (the recorded sizes) within each stratum,
      in enrolment order (``seq``), vectorised (:func:`hbeval.randomisation.design.blocked_draws`);
    * ``minimisation`` rows: Pocock–Simon with the recorded ``p`` simulated in enrolment order
      (vectorised over draws); families assigned by other procedures enter as fixed starting
      counts (exact when they were assigned first).

    A study that supplied its own ``assignments.csv`` (no registry) is redrawn as complete
    randomisation within its ``stratum`` column, the only procedure its file can describe.
    The whole design is redrawn (every assigned family) and then the requested columns are
    taken, so the draws respect the design even when only a subset is analysed.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    study_dir = _study_dir(study)
    rows = _registry_rows(study_dir)
    if rows is None:
        a = _supplied(study)
        ids = a["client_id"].astype(str).to_numpy()
        strat = a["stratum"].astype(object).where(a["stratum"].notna(), "(missing)").astype(str).to_numpy()
        codes = batch_draws(strat, n_draws, rng)
    else:
        ids = rows["client_id"].astype(str).to_numpy()
        codes = np.empty((n_draws, len(rows)), dtype=np.int8)
        method = rows["method"].to_numpy()
        b = np.flatnonzero(method == "batch")
        if len(b):
            lab = (rows["batch"].iloc[b].astype("Int64").astype(str) + "\x1f" + rows["stratum"].iloc[b].astype(str)).to_numpy()
            codes[:, b] = batch_draws(lab, n_draws, rng)
        k = np.flatnonzero(method == "blocks")  # already in seq (enrolment) order
        if len(k):
            sub = rows.iloc[k]
            for sizes_txt, grp in sub.groupby(sub["algorithm"].map(lambda a: _algorithm_params(a).get("sizes", "4,8")), sort=True):
                sizes = tuple(int(x) for x in sizes_txt.split(","))
                pos = k[np.isin(sub.index, grp.index)]
                codes[:, pos] = blocked_draws(rows["stratum"].iloc[pos].astype(str).to_numpy(), n_draws, sizes, rng)
        m = np.flatnonzero(method == "minimisation")
        if len(m):
            params = _algorithm_params(rows["algorithm"].iloc[m[0]])
            p = float(params.get("p", "0.8"))
            factors = [f for f in params.get("factors", "").split(",") if f]
            clients = study.table("clients") if hasattr(study, "table") else _load_clients(study_dir)
            lev = _factor_levels(clients, list(ids), factors)
            other = np.setdiff1d(np.arange(len(rows)), m)
            n_lev = int(lev.max()) + 1
            start = np.zeros((lev.shape[1], n_lev, 4), dtype=np.int64)
            for f in range(lev.shape[1]):
                np.add.at(start[f], (lev[other, f], rows["cell"].to_numpy()[other]), 1)
            codes[:, m] = minimisation_draws(lev[m], n_draws, p, rng, start_counts=start)
    where = {c: i for i, c in enumerate(ids)}
    want = [str(c) for c in client_ids]
    missing = [c for c in want if c not in where]
    if missing:
        raise InputError(f"{len(missing)} families are not assigned (e.g. {missing[0]}): cannot redraw their arms",
                         file=ASSIGNMENTS)
    return codes[:, [where[c] for c in want]]
