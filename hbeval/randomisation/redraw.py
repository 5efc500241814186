"""Re-randomisation: the assignment procedure actually used, and many assignments redrawn under it.

This is the only reader of the allocation registry for randomisation inference: the RI
kernels of :mod:`hbeval.stats.ri` take the draws of :func:`redraw` as an argument.

* :func:`procedure` — the procedure as recorded (for the report and the manifest);
  :func:`procedure_label` its short name (for the ``method`` column).
* :func:`redraw` — assignments redrawn ``n_draws`` times under that procedure;
  :func:`ri_draws` the draws of one analysis (:class:`RIDraws`);
* :func:`enumerate_assignments` — every assignment the procedure could have produced, when
  they are few enough to list (exact randomisation inference).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hbeval.arms import SEEDS
from hbeval.errors import InputError
from hbeval.randomisation import registry
from hbeval.randomisation.allocate import ASSIGNMENTS, factor_levels, load_clients, study_dir_of
from hbeval.randomisation.design import batch_draws, blocked_draws, minimisation_draws


def _in_memory(study: Any) -> bool:
    """A study object without a folder (built in memory by a test or a notebook)."""
    return not isinstance(study, (str, Path)) and getattr(study, "path", None) is None


def _algorithm_params(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", text or ""))


def _registry_rows(study_dir: Path) -> pd.DataFrame | None:
    reg = study_dir / registry.REGISTRY_NAME
    return registry.read(reg) if reg.exists() else None


def _supplied(study: Any) -> pd.DataFrame:
    if hasattr(study, "table"):
        a = study.table("assignments")
    else:
        p = study_dir_of(study) / ASSIGNMENTS
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
    study_dir = study_dir_of(study)
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


def procedure_label(study: Any) -> str:
    """Short name of the assignment procedure the re-draws follow (for ``method``)."""
    if not _in_memory(study):
        try:
            return str(procedure(study)["method"])
        except Exception:  # noqa: BLE001 - a label only
            pass
    return "batch"


def _supplied_strata(study: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(client ids, stratum labels)`` of a supplied ``assignments.csv`` (no registry): the
    randomisation units :func:`redraw` redraws and :func:`enumerate_assignments` lists."""
    a = _supplied(study)
    strat = a["stratum"].astype(object).where(a["stratum"].notna(), "(missing)").astype(str).to_numpy()
    return a["client_id"].astype(str).to_numpy(), strat


def _batch_strata(rows: pd.DataFrame) -> np.ndarray:
    """The randomisation units of registry ``batch`` rows: batch run × stratum."""
    return (rows["batch"].astype("Int64").astype(str) + "\x1f" + rows["stratum"].astype(str)).to_numpy()


def redraw(study: Any, client_ids: Sequence[str], n_draws: int,
           seed: int | Sequence[int] | np.random.Generator) -> np.ndarray:
    """Assignments redrawn ``n_draws`` times under the procedure actually used.

    Parameters
    ----------
    study : a :class:`hbeval.study.store.Study` (on disk or in memory) or a study folder path
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
    randomisation within its ``stratum`` column, the only procedure its file can describe; an
    in-memory study without a folder (tests, notebooks) likewise, within the strata of its
    families (:func:`hbeval.randomisation.design.batch_draws`).
    The whole design is redrawn (every assigned family) and then the requested columns are
    taken, so the draws respect the design even when only a subset is analysed.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if _in_memory(study):
        fam = study.families().set_index("client_id")
        return batch_draws(fam.loc[list(client_ids), "stratum"].astype(str).to_numpy(), n_draws, rng)
    study_dir = study_dir_of(study)
    rows = _registry_rows(study_dir)
    if rows is None:
        ids, strat = _supplied_strata(study)
        codes = batch_draws(strat, n_draws, rng)
    else:
        ids = rows["client_id"].astype(str).to_numpy()
        codes = np.empty((n_draws, len(rows)), dtype=np.int8)
        method = rows["method"].to_numpy()
        b = np.flatnonzero(method == "batch")
        if len(b) == len(rows):  # every family by batch: no scatter of the (n_draws, n) matrix
            codes = batch_draws(_batch_strata(rows), n_draws, rng)
        elif len(b):
            codes[:, b] = batch_draws(_batch_strata(rows.iloc[b]), n_draws, rng)
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
            clients = study.table("clients") if hasattr(study, "table") else load_clients(study_dir)
            lev = factor_levels(clients, list(ids), factors)
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
    # np.take gathers the columns ~4x faster than fancy indexing (the same values)
    return np.take(codes, np.array([where[c] for c in want], dtype=np.intp), axis=1)


@dataclass(frozen=True)
class RIDraws:
    """The re-randomisations of one analysis: ``draws[k, j]`` is the cell code of family
    ``client_ids[j]`` in redraw ``k`` (None when no family is assigned); ``procedure`` is the
    short name of the procedure (:func:`procedure_label`). ``exact``: the rows are every
    possible assignment, each once and equiprobable (:func:`enumerate_assignments`), the
    observed one among them; otherwise independent random draws."""

    client_ids: np.ndarray
    draws: np.ndarray | None
    procedure: str
    exact: bool = False


def ri_draws(study: Any, frame: pd.DataFrame) -> RIDraws:
    """The re-randomisations of the assigned families of the outcome ``frame`` (sorted by
    ``client_id``), built once per analysis and handed to every randomised contrast: every
    possible assignment when there are at most ``config.ri_draws`` of them
    (:func:`enumerate_assignments`), else ``config.ri_draws`` redraws seeded
    ``[config.seed, SEEDS["ri"]]``."""
    cfg = study.config
    assigned = frame.loc[frame["cell"].notna(), "client_id"].astype(str).sort_values(kind="mergesort").to_numpy()
    if not len(assigned):
        return RIDraws(assigned, None, procedure_label(study))
    exact = enumerate_assignments(study, assigned, cfg.ri_draws)
    if exact is not None:
        return RIDraws(assigned, exact, procedure_label(study), exact=True)
    draws = redraw(study, assigned, cfg.ri_draws, np.random.default_rng([cfg.seed, SEEDS["ri"]]))
    return RIDraws(assigned, draws, procedure_label(study))


# ---------------------------------------------------------------------------- exact enumeration
def _stratum_counts(n: int) -> list[tuple[int, ...]]:
    """The cell counts a stratum of ``n`` families can get under the batch rule: ``n // 4`` in
    every cell plus one more in each of ``n % 4`` distinct cells."""
    base, r = divmod(n, 4)
    return [tuple(base + (k in extra) for k in range(4)) for extra in itertools.combinations(range(4), r)]


def batch_support_size(stratum: np.ndarray | Sequence[str]) -> int:
    """Number of distinct assignments complete randomisation within strata can produce.

    Notes
    -----
    A stratum of ``n = 4b + r`` families has ``C(4, r)`` possible count vectors (``b + 1`` in
    ``r`` distinct cells, ``b`` in the others), each with the multinomial number
    ``n! / ((b+1)!^r b!^{4-r})`` of orderings; the study's count is the product over strata
    (an exact integer, however large).
    """
    lab = pd.Series(np.asarray(stratum, dtype=object)).astype(str)
    total = 1
    for n in lab.value_counts().to_numpy():
        counts = _stratum_counts(int(n))
        total *= len(counts) * math.factorial(int(n)) // math.prod(math.factorial(c) for c in counts[0])
    return total


def _multiset_permutations(counts: tuple[int, ...]) -> np.ndarray:
    """Every distinct sequence of cell codes with the given counts, ``(K, Σcounts)`` int8."""
    rows = np.zeros((1, 0), dtype=np.int8)
    rem = np.array([counts], dtype=np.int64)
    for _ in range(sum(counts)):
        new_rows, new_rem = [], []
        for k in range(4):
            ok = rem[:, k] > 0
            new_rows.append(np.column_stack([rows[ok], np.full((int(ok.sum()), 1), k, dtype=np.int8)]))
            r = rem[ok].copy()
            r[:, k] -= 1
            new_rem.append(r)
        rows, rem = np.vstack(new_rows), np.vstack(new_rem)
    return rows


def enumerate_batch(stratum: np.ndarray | Sequence[str]) -> np.ndarray:
    """Every assignment of complete randomisation within strata (misfit rule included).

    Returns
    -------
    ``int8`` array ``(K, n)``, ``K =`` :func:`batch_support_size`, one row per assignment.

    Notes
    -----
    Under the batch rule (:func:`hbeval.randomisation.design.batch_codes`) a stratum draws one
    of its ``C(4, r)`` count vectors uniformly and then a uniform ordering of it; every count
    vector has the same number of orderings, so every assignment in the support has the same
    probability ``1 / K`` and the rows need no weights. Strata are independent: the rows are
    the Cartesian product of the strata's lists.
    """
    lab = pd.Series(np.asarray(stratum, dtype=object)).astype(str)
    groups = list(lab.groupby(lab, sort=True).indices.values())
    per = [np.vstack([_multiset_permutations(c) for c in _stratum_counts(len(idx))]) for idx in groups]
    sizes = [len(p) for p in per]
    grid = np.indices(sizes).reshape(len(sizes), -1) if sizes else np.zeros((0, 1), dtype=int)
    out = np.empty((grid.shape[1], len(lab)), dtype=np.int8)
    for g, idx in enumerate(groups):
        out[:, idx] = per[g][grid[g]]
    return out


def enumerate_assignments(study: Any, client_ids: Sequence[str], budget: int) -> np.ndarray | None:
    """Every assignment the procedure actually used could have produced, when there are at
    most ``budget`` of them and the procedure is simple enough to list; else ``None``.

    Returns
    -------
    ``int8`` array ``(K, len(client_ids))`` (columns as :func:`redraw`'s), every row
    equiprobable (:func:`enumerate_batch`), or ``None``.

    Notes
    -----
    Listed: complete randomisation within strata — registry ``batch`` rows (within batch run ×
    stratum), a supplied ``assignments.csv`` and an in-memory study, as :func:`redraw` redraws
    them. Permuted blocks and minimisation are always drawn (their supports are not
    equiprobable and are seldom small). The whole design is listed and then the requested
    columns taken, so a subset is weighted by how many full assignments give it.
    """
    if _in_memory(study):
        fam = study.families().set_index("client_id")
        lab = fam.loc[list(client_ids), "stratum"].astype(str).to_numpy()
        return enumerate_batch(lab) if batch_support_size(lab) <= budget else None
    study_dir = study_dir_of(study)
    rows = _registry_rows(study_dir)
    if rows is None:
        ids, lab = _supplied_strata(study)
    else:
        if not len(rows) or (rows["method"] != "batch").any():
            return None
        ids, lab = rows["client_id"].astype(str).to_numpy(), _batch_strata(rows)
    if batch_support_size(lab) > budget:
        return None
    where = {c: i for i, c in enumerate(ids)}
    want = [str(c) for c in client_ids]
    if any(c not in where for c in want):
        return None  # redraw() names the unassigned families
    return enumerate_batch(lab)[:, [where[c] for c in want]]
