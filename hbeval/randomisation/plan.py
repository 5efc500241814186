"""The sealed analysis plan: ``STUDY/analysis_plan.json`` (and its readable ``analysis_plan.md``).

``hbeval plan STUDY`` fixes, before the first family is randomised, what the evaluation will
analyse: the outcomes and their families, the contrasts and the estimator, the strata and the
assignment procedure, the RI draws, the MIC, the WTP grid and the ROSI assumptions, the
subgroups, and the design diagnosis (:mod:`hbeval.diagnose`).

* **The seal.** The plan is written as canonical JSON (sorted keys, one-space indent, UTF-8,
  a final newline, no wall-clock value except the date ``sealed_on``); its SHA-256 is the
  SHA-256 of the file's bytes, so ``sha256sum analysis_plan.json`` checks it without hbeval.
* **It opens the registry.** The allocation registry records the plan's SHA-256 in ``meta``
  when it is created and binds it into the start of its keyed chain
  (:func:`hbeval.randomisation.registry.genesis`), so every receipt names the plan.
  ``assign`` refuses to start without a plan when ``[plan] required = true``
  (:func:`opening_hash`), and refuses to append under a plan edited after sealing.
* **Re-sealing.** A plan may be sealed again as long as no family has been allocated (an
  empty registry is re-opened with the new hash, which needs the allocation key); once the
  registry holds a row, :func:`seal` refuses, and the plan stays as it was sealed.
* **Deviations.** :func:`deviations` lists every difference between the sealed plan and the
  parameters the analysis ran with (``results/deviations.csv``: ``item, planned, actual``).

This module is data only: the diagnosis is handed in (``hbeval plan`` runs it) and so is the
renderer of the readable Markdown (:func:`hbeval.report.narrative.plan_markdown`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hbeval import __version__
from hbeval.arms import CONTRASTS, PILOT_VS_COMPARISON
from hbeval.errors import InputError
from hbeval.randomisation import registry
from hbeval.stats.power import DiagnosisResult
from hbeval.study.config import StudyConfig

PLAN_JSON = "analysis_plan.json"
PLAN_MD = "analysis_plan.md"
PLAN_SCHEMA = "hbeval-plan/1"
DEVIATION_COLUMNS = ["item", "planned", "actual"]

#: The primary estimator, as the plan states it (``hbeval.outcomes.effects`` implements it).
ESTIMATOR: dict[str, Any] = {
    "model": "OLS of the end score on the arm indicators (frame_shares, teaming), the start score and stratum fixed effects",
    "interaction": "the same model with the product term frame_shares × teaming",
    "covariates": ["start score of the outcome", "stratum fixed effects"],
    "standard_errors": "HC2",
    "intervals": "t-based 95 % on the residual degrees of freedom",
    "randomisation_inference": "re-randomisation under the assignment procedure actually used, within strata",
    "multiplicity": "Westfall–Young step-down maxT within each outcome family",
    "comparison_group": "doubly robust ATT with propensity-score weights (not randomised)",
    "alpha": 0.05,
}

#: ``study.toml`` keys (``section.key``) the plan fixes, and the :class:`StudyConfig` field of each.
SETTINGS: dict[str, str] = {
    "study.price_year": "price_year",
    "study.follow_up_days": "follow_up_days",
    "study.seed": "seed",
    "design.strata": "strata",
    "design.assignment": "assignment_method",
    "design.block_sizes": "block_sizes",
    "design.minimisation_p": "minimisation_p",
    "outcomes.primary": "primary",
    "outcomes.mic": "mic",
    "outcomes.ri_draws": "ri_draws",
    "outcomes.subgroups": "subgroups",
    "privacy.min_cell": "min_cell",
    "economics.wtp_eur": "wtp_eur",
    "economics.wtp_reference_eur": "wtp_reference_eur",
    "economics.discount_rate": "discount_rate",
    "economics.horizon_years": "horizon_years",
    "economics.deadweight": "deadweight",
    "economics.attribution": "attribution",
    "economics.displacement": "displacement",
    "economics.drop_off": "drop_off",
    "economics.intervention_costs": "intervention_categories",
    "economics.perspective": "perspective",
    "economics.bootstrap_reps": "bootstrap_reps",
}


# ---------------------------------------------------------------------------- building
def _clean(v: Any) -> Any:
    """JSON-ready and canonical: tuples → lists, numpy scalars → Python, integral floats → int,
    other floats to 6 significant digits, NaN and infinities → ``None``."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return int(v) if v.is_integer() and abs(v) < 2**53 else float(f"{v:.6g}")
    return str(v)


def settings_of(cfg: StudyConfig) -> dict[str, Any]:
    """The parameters a plan fixes, by ``study.toml`` key (:data:`SETTINGS`), canonical."""
    out: dict[str, Any] = {k: _clean(getattr(cfg, f, None)) for k, f in SETTINGS.items()}
    out["outcomes.families"] = _clean(cfg.families)
    return out


def build_plan(cfg: StudyConfig, diagnosis: DiagnosisResult | None, sealed_on: dt.date) -> dict[str, Any]:
    """The analysis plan of a study.

    Parameters
    ----------
    cfg : the study's configuration
    diagnosis : the design diagnosis (:func:`hbeval.diagnose.diagnose`), or ``None``
    sealed_on : the date of sealing (the only time in the plan)

    Returns
    -------
    ``schema, study, sealed_on, hbeval_version, settings, outcomes, contrasts, estimator,
    diagnosis``; ``outcomes`` lists every outcome with its family, primary first.
    """
    diag = None
    if diagnosis is not None:
        diag = {"parameters": _clean(diagnosis.parameters),
                "table": _clean(diagnosis.table.to_dict(orient="records"))}
    return {
        "schema": PLAN_SCHEMA,
        "study": cfg.name,
        "sealed_on": sealed_on.isoformat(),
        "hbeval_version": __version__,
        "settings": settings_of(cfg),
        "outcomes": [{"outcome": o, "family": cfg.family_of(o)} for o in cfg.outcomes()],
        "contrasts": [*CONTRASTS, PILOT_VS_COMPARISON],
        "estimator": _clean(ESTIMATOR),
        "diagnosis": diag,
    }


def plan_bytes(plan: dict[str, Any]) -> bytes:
    """The canonical bytes of a plan: sorted keys, one-space indent, UTF-8, final newline."""
    return (json.dumps(plan, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def plan_sha256(plan: dict[str, Any]) -> str:
    """SHA-256 (hex) of :func:`plan_bytes`: the hash that opens the allocation registry."""
    return hashlib.sha256(plan_bytes(plan)).hexdigest()


# ---------------------------------------------------------------------------- reading
def file_sha256(study_dir: str | Path) -> str | None:
    """SHA-256 of ``STUDY/analysis_plan.json`` as it is on disk, or ``None`` when there is none."""
    p = Path(study_dir) / PLAN_JSON
    if not p.is_file():
        return None
    return hashlib.sha256(p.read_bytes()).hexdigest()


def read_plan(study_dir: str | Path) -> dict[str, Any] | None:
    """The sealed plan of a study, or ``None`` when it has none.

    Raises
    ------
    InputError
        The file is not a JSON object of :data:`PLAN_SCHEMA`.
    """
    p = Path(study_dir) / PLAN_JSON
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a readable analysis plan ({e}); seal it again with hbeval plan", file=PLAN_JSON) from e
    if not isinstance(doc, dict) or doc.get("schema") != PLAN_SCHEMA or not isinstance(doc.get("settings"), dict):
        raise InputError(f"not an analysis plan of {PLAN_SCHEMA}", file=PLAN_JSON, column="schema")
    return doc


# ---------------------------------------------------------------------------- the registry
def _registry_state(study_dir: Path) -> tuple[int, str | None] | None:
    """``(rows, plan hash recorded)`` of the study's registry, or ``None`` when there is none."""
    path = study_dir / registry.REGISTRY_NAME
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", "allocations"} <= names:
            return None
        (n,) = conn.execute("SELECT count(*) FROM allocations").fetchone()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()
    return int(n), meta.get(registry.PLAN_KEY)


def opening_hash(study_dir: str | Path, cfg: StudyConfig) -> str | None:
    """The plan hash ``assign`` opens (or appends to) the registry with.

    Returns ``None`` when there is no plan (allowed unless ``[plan] required = true``).

    Raises
    ------
    InputError
        ``[plan] required = true`` and no sealed plan; a plan edited after it opened the
        registry; or a plan that appeared after the registry was opened without one.
    """
    study_dir = Path(study_dir)
    current = file_sha256(study_dir)
    state = _registry_state(study_dir)
    recorded = state[1] if state else None
    if state is not None and state[0] > 0:
        if recorded is not None and current != recorded:
            what = "is missing" if current is None else f"was edited after sealing (SHA-256 now {current[:16]})"
            raise InputError(f"{PLAN_JSON} {what}; the registry was opened by the plan {recorded[:16]}: restore the "
                             "sealed plan (allocation stops under a changed plan)", file=PLAN_JSON)
        if recorded is None and cfg.plan_required:
            raise InputError("[plan] required = true, but this registry was opened without a sealed analysis plan",
                             file="study.toml", column="plan.required")
        return recorded
    if current is None and cfg.plan_required:
        raise InputError(f"[plan] required = true and there is no sealed analysis plan ({PLAN_JSON}): run "
                         "hbeval plan STUDY before the first allocation", file=PLAN_JSON)
    return current


def check_against_registry(study_dir: str | Path, recorded: str | None, cfg: StudyConfig) -> tuple[bool, str]:
    """Whether the study's plan file is the one that opened its registry (``assign --verify``).

    The rules: a registry opened by a plan needs that plan, byte for byte; a registry opened
    without a plan fails when a plan file now exists (it was sealed after allocation began,
    so it does not precede randomisation) or when ``[plan] required = true``; with neither, it
    passes.
    """
    current = file_sha256(study_dir)
    if recorded is not None:
        if current is None:
            return False, f"{PLAN_JSON} is missing; the registry was opened by the plan {recorded[:16]}"
        if current != recorded:
            return False, (f"{PLAN_JSON} was edited after sealing: its SHA-256 is {current[:16]}, the registry was "
                           f"opened by {recorded[:16]}")
        return True, f"analysis plan {recorded[:16]} is the one that opened the registry"
    if current is not None:
        return False, (f"{PLAN_JSON} exists but the registry was opened without a plan: it was sealed after "
                       "allocation began, so it does not precede randomisation")
    if cfg.plan_required:
        return False, "[plan] required = true, but the registry was opened without a sealed analysis plan"
    return True, "no sealed analysis plan"


# ---------------------------------------------------------------------------- sealing
def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the plan is read by everyone who reads the study
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_sealable(study_dir: str | Path, key: bytes | None) -> tuple[int, str | None] | None:
    """Refuse to seal once the registry holds an allocation (or when an empty registry exists and
    there is no ``key`` to re-open it); returns the registry's state (:func:`_registry_state`)."""
    state = _registry_state(Path(study_dir))
    if state is not None and state[0] > 0:
        sealed = f"the plan {state[1][:16]} stays as it was sealed" if state[1] else "it was opened without a plan"
        raise InputError(f"the allocation registry already holds {state[0]} allocation(s): a plan sealed now would "
                         f"not precede randomisation; {sealed}", file=registry.REGISTRY_NAME)
    if state is not None and key is None:
        raise InputError("an empty allocation registry exists: re-opening it with the new plan needs the allocation "
                         "key", file=registry.REGISTRY_NAME)
    return state


def seal(study_dir: str | Path, plan: dict[str, Any], markdown: Callable[[dict[str, Any]], str],
         key: bytes | None = None) -> str:
    """Write ``analysis_plan.md`` and ``analysis_plan.json`` atomically; returns the plan's SHA-256.

    Parameters
    ----------
    study_dir : the study folder
    plan : :func:`build_plan`'s plan
    markdown : renders the readable plan (:func:`hbeval.report.narrative.plan_markdown`)
    key : the allocation key; needed only to re-open an empty registry with the new hash

    Raises
    ------
    InputError
        The registry already holds allocations (the plan must precede randomisation), or an
        empty registry exists and there is no key to re-open it.
    """
    study_dir = Path(study_dir)
    state = check_sealable(study_dir, key)
    data = plan_bytes(plan)
    sha = hashlib.sha256(data).hexdigest()
    _write_atomic(study_dir / PLAN_MD, markdown(plan).encode("utf-8"))
    _write_atomic(study_dir / PLAN_JSON, data)
    if state is not None and key is not None:
        conn = registry.connect(study_dir / registry.REGISTRY_NAME, create=False)
        try:
            registry.reopen(conn, key, sha)
        finally:
            conn.close()
    return sha


def check_subgroups(cfg: StudyConfig, columns: list[str]) -> None:
    """Every ``[outcomes] subgroups`` entry is a column of ``clients.csv``.

    Raises
    ------
    InputError
        Naming ``study.toml`` and ``outcomes.subgroups``.
    """
    missing = [s for s in cfg.subgroups if s not in columns]
    if missing:
        raise InputError(f"outcomes.subgroups names {missing[0]!r}, which is not a column of clients.csv",
                         file="study.toml", column="outcomes.subgroups")


# ---------------------------------------------------------------------------- deviations
def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(_text(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_text(x)}" for k, x in v.items())
    return str(v)


def deviations(plan: dict[str, Any] | None, cfg: StudyConfig, plan_changed: tuple[str, str] | None = None) -> pd.DataFrame:
    """Every difference between the sealed ``plan`` and the parameters ``cfg`` the analysis ran with.

    Parameters
    ----------
    plan : the sealed plan (:func:`read_plan`); ``None``: no plan, no rows
    cfg : the configuration of the analysis
    plan_changed : ``(hash that opened the registry, hash of the file now)`` when they differ

    Returns
    -------
    ``item, planned, actual``: one row per changed setting (``outcomes.primary``,
    ``design.strata``, ``outcomes.mic`` ...), one per outcome whose family changed
    (``outcome <name>``, ``(not planned)`` / ``(dropped)`` for an added or removed outcome),
    one when the estimator changed, and ``analysis_plan.json`` when the file differs from
    the one that opened the registry. Empty, with these columns, when nothing differs.
    """
    rows: list[tuple[str, str, str]] = []
    if plan is not None:
        if plan_changed is not None:
            rows.append((PLAN_JSON, f"sha256 {plan_changed[0][:16]}", f"sha256 {plan_changed[1][:16]} (edited after sealing)"))
        planned, actual = plan.get("settings", {}), settings_of(cfg)
        for k in [*SETTINGS, *(k for k in planned if k not in SETTINGS and k != "outcomes.families")]:
            if k in planned and _clean(planned.get(k)) != actual.get(k):
                rows.append((k, _text(planned.get(k)), _text(actual.get(k))))
        rows += _outcome_rows(plan, cfg)
        if _clean(plan.get("estimator")) != _clean(ESTIMATOR):
            rows.append(("estimator", _text(plan.get("estimator")), _text(ESTIMATOR)))
    return pd.DataFrame(rows, columns=DEVIATION_COLUMNS)


def _outcome_rows(plan: dict[str, Any], cfg: StudyConfig) -> list[tuple[str, str, str]]:
    before = {str(r.get("outcome")): str(r.get("family")) for r in plan.get("outcomes", []) if isinstance(r, dict)}
    after = {o: cfg.family_of(o) for o in cfg.outcomes()}
    order = [*before, *(o for o in after if o not in before)]
    return [(f"outcome {o}", before.get(o, "(not planned)"), after.get(o, "(dropped)"))
            for o in order if before.get(o) != after.get(o)]


def study_deviations(study_dir: str | Path, cfg: StudyConfig) -> pd.DataFrame:
    """:func:`deviations` of a study folder: its sealed plan (if any) against ``cfg``, and
    whether the plan file is still the one that opened the registry."""
    study_dir = Path(study_dir)
    plan = read_plan(study_dir)
    state = _registry_state(study_dir)
    current = file_sha256(study_dir)
    changed = None
    if state is not None and state[1] is not None and current is not None and current != state[1]:
        changed = (state[1], current)
    return deviations(plan, cfg, changed)


def manifest_entry(study_dir: str | Path) -> dict[str, Any] | None:
    """What ``manifest.json`` records of the plan: ``file, sha256, sealed_on, registry_plan``
    (the hash that opened the registry), or ``None`` when the study has no plan."""
    study_dir = Path(study_dir)
    sha = file_sha256(study_dir)
    if sha is None:
        return None
    try:
        sealed_on = (read_plan(study_dir) or {}).get("sealed_on")
    except InputError:
        sealed_on = None
    state = _registry_state(study_dir)
    return {"file": PLAN_JSON, "sha256": sha, "sealed_on": sealed_on, "registry_plan": state[1] if state else None}
