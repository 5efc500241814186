"""``hbeval diagnose``: what the study's own design can detect, by simulating it.

The study glue of :mod:`hbeval.stats.power`: it reads the parameters, builds each pilot size's
strata, draws the assignments under the study's procedure and writes the outputs.

* **Parameters** (:func:`parameters`), each from the first of: the ``[diagnose]`` section of
  ``study.toml``; the study's data where it has outcome data (the SD of the primary outcome's
  start scores, its start–end correlation, the share of randomised pilot families without an
  end score); the defaults :data:`DEFAULT_SD`, :data:`DEFAULT_RHO`, :data:`DEFAULT_ATTRITION`.
  True effects default to the study's minimal important change (``[outcomes] mic``) for each
  factor and 0 for the interaction; sizes to the study's pilot families, else
  :data:`DEFAULT_SIZES`.
* **Strata** (:func:`size_strata`): the strata of the pilot families of ``clients.csv``
  (``[design] strata``), allocated to each size in proportion to their shares (largest
  remainders, so the study's own size reproduces its strata exactly); without ``clients.csv``,
  ``[diagnose] strata`` equal-sized strata (default 1). Families enrol in a random order.
* **Assignment** (:func:`assignment_draws`): one assignment per simulation under ``[design]
  assignment`` — complete randomisation within strata (``batch``), stratified permuted blocks
  of the study's block sizes in enrolment order (``blocks``) or Pocock–Simon minimisation over
  the stratification columns (``minimisation``), by the vectorised generators of
  :mod:`hbeval.randomisation.design`. Randomisation inference re-draws the same design.

It works at the design stage (only ``study.toml``, perhaps ``clients.csv``) and on a running
study. Outputs (atomically, :func:`hbeval.outdir.building`): ``OUT/diagnosis.csv``,
``OUT/power_curve.csv``, ``OUT/diagnosis_parameters.json`` and ``OUT/figures/power_curve.png``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from hbeval import __version__, outdir
from hbeval.arms import SEEDS
from hbeval.errors import InputError, UsageError
from hbeval.randomisation.design import batch_draws, blocked_draws, minimisation_draws, stratum_labels
from hbeval.stats import power as pw
from hbeval.stats.ri import blas_single_thread
from hbeval.study.config import (
    DIAGNOSE_DEFAULT_ATTRITION,
    DIAGNOSE_DEFAULT_RHO,
    DIAGNOSE_DEFAULT_SD,
    DIAGNOSE_DEFAULT_SIZES,
    MAX_DIAGNOSE_SIZE,
    MAX_SIMS,
    MIN_DIAGNOSE_SIZE,
    MIN_SIMS,
    StudyConfig,
    load_config,
)

#: the fallbacks of :mod:`hbeval.study.config` (where every default lives): SD, start–end
#: correlation, attrition and pilot sizes when neither study.toml nor the study's data give them
DEFAULT_SD = DIAGNOSE_DEFAULT_SD
DEFAULT_RHO = DIAGNOSE_DEFAULT_RHO
DEFAULT_ATTRITION = DIAGNOSE_DEFAULT_ATTRITION
DEFAULT_SIZES = DIAGNOSE_DEFAULT_SIZES
#: fewest families with scores from which a parameter is estimated from the data
MIN_DATA = 10
#: sub-seed of the diagnosis: ``default_rng([study seed, DIAGNOSE_STREAM, n_pilot, part])``
DIAGNOSE_STREAM = SEEDS["diagnose"]
#: simulated families held at once (simulations × families); larger designs run in chunks
_CHUNK_CELLS = 200_000
#: re-randomisations × families of RI at one size: larger sizes get fewer RI draws (at least 100)
_RI_CELLS = 10_000_000


# ---------------------------------------------------------------------------- the study's data
@dataclass
class StudyData:
    """What the study already holds: its pilot families (with their stratification columns),
    and the primary outcome's start and end scores of the randomised pilot families."""

    pilot: pd.DataFrame | None
    start: np.ndarray | None = None
    end: np.ndarray | None = None


def read_study(study_dir: Path, cfg: StudyConfig) -> StudyData:
    """The pilot families and, on a running study, the primary outcome's scores.

    A study with ``measurements`` is opened whole (:func:`hbeval.study.store.open_study`);
    one with only ``clients.csv`` is read as ``hbeval assign`` reads it; one with neither has
    no data (the design stage).
    """
    from hbeval.study.ingest import find_sources  # the store (DuckDB) loads only when a study has tables

    sources = find_sources(study_dir)
    if "measurements" in sources:
        return _running_study(study_dir, cfg)
    if "clients" not in sources:
        return StudyData(pilot=None)
    from hbeval.randomisation.allocate import load_clients  # the registry glue, only for a clients table

    clients = load_clients(study_dir)
    return StudyData(pilot=clients[clients["group"].astype(str) == "pilot"].reset_index(drop=True))


def _running_study(study_dir: Path, cfg: StudyConfig) -> StudyData:
    from hbeval.outcomes.frame import outcome_frame  # ingestion (DuckDB), only for a study with outcome data
    from hbeval.study.store import open_study  # the same: only for a running study

    frame = outcome_frame(open_study(study_dir))
    pilot = frame[frame["group"].astype(str) == "pilot"].reset_index(drop=True)
    rand = pilot[pilot["cell"].notna()] if pilot["cell"].notna().any() else pilot
    s, e = f"{cfg.primary}_start", f"{cfg.primary}_end"
    start = pd.to_numeric(rand[s], errors="coerce").to_numpy(float) if s in rand else None
    end = pd.to_numeric(rand[e], errors="coerce").to_numpy(float) if e in rand else None
    return StudyData(pilot=pilot, start=start, end=end)


def parameters(cfg: StudyConfig, data: StudyData, sizes: Sequence[int] | None = None,
               sims: int | None = None) -> dict[str, Any]:
    """The parameters of the diagnosis and where each came from (``<name>_from``).

    Parameters
    ----------
    cfg : the study's configuration (``[diagnose]``)
    data : the study's data (:func:`read_study`)
    sizes, sims : command-line overrides (``--n-pilot``, ``--sims``)
    """
    p: dict[str, Any] = {}
    est = _from_data(data)
    for k, default in (("sd", DEFAULT_SD), ("rho", DEFAULT_RHO), ("attrition", DEFAULT_ATTRITION)):
        given = getattr(cfg, f"diagnose_{k}")
        if given is not None:
            p[k], p[f"{k}_from"] = float(given), "study.toml [diagnose]"
        elif k in est:
            p[k], p[f"{k}_from"] = est[k], est[f"{k}_from"]
        else:
            p[k], p[f"{k}_from"] = default, "default"
    eff = {"frame_shares": cfg.mic, "teaming": cfg.mic, "interaction": 0.0}
    eff.update({k: float(v) for k, v in cfg.diagnose_effects.items()})
    p["effects"] = eff
    p["effects_from"] = "study.toml [diagnose]" if cfg.diagnose_effects else "default ([outcomes] mic for each factor)"
    n_pilot = 0 if data.pilot is None else len(data.pilot)
    if sizes:
        p["n_pilot"], p["n_pilot_from"] = [int(v) for v in sizes], "--n-pilot"
    elif cfg.diagnose_n_pilot:
        p["n_pilot"], p["n_pilot_from"] = list(cfg.diagnose_n_pilot), "study.toml [diagnose]"
    elif n_pilot >= 8:
        p["n_pilot"], p["n_pilot_from"] = [n_pilot], "clients.csv (the pilot families)"
    else:
        p["n_pilot"], p["n_pilot_from"] = list(DEFAULT_SIZES), "default"
    p["sims"] = int(sims) if sims is not None else cfg.diagnose_sims
    p["ri_draws"] = cfg.diagnose_ri_draws
    p["procedure"] = cfg.assignment_method
    return p


def _from_data(data: StudyData) -> dict[str, Any]:
    """SD, correlation and attrition estimated from the randomised pilot families' scores.

    Notes
    -----
    ``sd`` is the SD of the start scores (``ddof = 1``); ``rho`` the Pearson correlation of
    the start and end scores of families with both, clipped to ``[0, 0.99]``; ``attrition``
    the share of families with a start score but no end score, clipped to ``[0, 0.95]``.
    Each needs :data:`MIN_DATA` families. On a study still in follow-up, attrition counts the
    families not yet measured at the end too: set ``[diagnose] attrition`` there.
    """
    out: dict[str, Any] = {}
    if data.start is None or data.end is None:
        return out
    x, y = data.start, data.end
    has_x = np.isfinite(x)
    both = has_x & np.isfinite(y)
    src = "the study's data (randomised pilot families)"
    if has_x.sum() >= MIN_DATA and np.std(x[has_x]) > 0:
        out["sd"], out["sd_from"] = float(np.std(x[has_x], ddof=1)), src
    if both.sum() >= MIN_DATA and np.std(x[both]) > 0 and np.std(y[both]) > 0:
        out["rho"], out["rho_from"] = float(np.clip(np.corrcoef(x[both], y[both])[0, 1], 0.0, 0.99)), src
    if has_x.sum() >= MIN_DATA:
        out["attrition"], out["attrition_from"] = float(np.clip(1 - both.sum() / has_x.sum(), 0.0, 0.95)), src
    return out


# ---------------------------------------------------------------------------- strata and assignment
@dataclass
class SizeDesign:
    """One pilot size: its families' strata in enrolment order, as integer codes and labels,
    and each family's level of every stratification factor (for minimisation)."""

    stratum: np.ndarray  # (n,) int codes
    labels: np.ndarray  # (n,) text
    levels: np.ndarray  # (n, n_factors) int codes

    @property
    def n(self) -> int:
        return len(self.stratum)


def strata_pool(cfg: StudyConfig, data: StudyData) -> pd.DataFrame:
    """One row per stratum: ``label``, ``count`` and the factor levels ``level_0 …``.

    From the pilot families of ``clients.csv`` (``[design] strata``); without them,
    ``[diagnose] strata`` equal strata of one factor.
    """
    pilot = data.pilot
    if pilot is None or len(pilot) == 0:
        k = cfg.diagnose_strata or 1
        return pd.DataFrame({"label": [f"s{i + 1}" for i in range(k)], "count": 1, "level_0": np.arange(k)})
    missing = [s for s in cfg.strata if s not in pilot.columns]
    if missing:
        raise InputError(f"[design] strata names {missing[0]!r}, which is not a column of clients.csv",
                         file="clients.csv", column=missing[0])
    lab = stratum_labels(pilot, list(cfg.strata)).astype(str)
    pool = pd.DataFrame({"label": lab})
    factors = list(cfg.strata) or []
    for j, f in enumerate(factors):
        vals = pilot[f].astype(object).where(pilot[f].notna(), "(missing)").astype(str)
        codes = {v: i for i, v in enumerate(sorted(vals.unique()))}
        pool[f"level_{j}"] = vals.map(codes).to_numpy()
    if not factors:
        pool["level_0"] = 0
    g = pool.groupby("label", sort=True)
    out = g.first().reset_index()
    out.insert(1, "count", g.size().to_numpy())
    return out


def size_strata(pool: pd.DataFrame, n: int, rng: np.random.Generator) -> SizeDesign:
    """The strata of ``n`` families: ``pool``'s strata in proportion to their counts (largest
    remainders, ties to the larger stratum, then the first label), in a random enrolment order."""
    share = pool["count"].to_numpy(float) / pool["count"].sum()
    raw = share * n
    base = np.floor(raw).astype(int)
    rest = n - base.sum()
    order = np.lexsort((np.arange(len(raw)), -share, -(raw - base)))
    base[order[:rest]] += 1
    idx = np.repeat(np.arange(len(pool)), base)
    idx = idx[rng.permutation(len(idx))]
    level_cols = [c for c in pool.columns if c.startswith("level_")]
    return SizeDesign(stratum=idx.astype(np.int64), labels=pool["label"].to_numpy(str)[idx],
                      levels=pool[level_cols].to_numpy(np.int64)[idx])


def assignment_draws(cfg: StudyConfig, design: SizeDesign, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_draws, n)`` cell codes drawn under the study's procedure (``[design] assignment``)."""
    if cfg.assignment_method == "blocks":
        return blocked_draws(design.labels, n_draws, cfg.block_sizes, rng)
    if cfg.assignment_method == "minimisation":
        return minimisation_draws(design.levels, n_draws, cfg.minimisation_p, rng)
    return batch_draws(design.labels, n_draws, rng)


# ---------------------------------------------------------------------------- the diagnosis
def diagnose(study: str | Path, sizes: Sequence[int] | None = None, sims: int | None = None,
             progress: TextIO | None = None) -> pw.DiagnosisResult:
    """Diagnose the study's design at each pilot size.

    Parameters
    ----------
    study : the study folder (``study.toml``; ``clients.csv`` and outcome data when present)
    sizes, sims : overrides of ``[diagnose] n_pilot`` and ``sims``
    progress : where progress lines go (``None``: nowhere)

    Returns
    -------
    DiagnosisResult
    """
    study_dir = Path(study)
    cfg = load_config(study_dir)
    data = read_study(study_dir, cfg)
    par = parameters(cfg, data, sizes, sims)
    pool = strata_pool(cfg, data)
    tables: list[pd.DataFrame] = []
    sims_of: dict[int, pw.SizeSims] = {}
    seconds: dict[int, float] = {}
    for n in par["n_pilot"]:
        t0 = time.perf_counter()
        n_ri = ri_draws_at(par["ri_draws"], n)
        ri = f"ri {n_ri} draws" if n_ri else "no ri"
        if progress is not None:
            print(f"[diagnose] n={n}: {par['sims']} simulations ({cfg.assignment_method}, {ri}) ...", end="",
                  file=progress, flush=True)
        sims_of[n] = _simulate_size(cfg, par, pool, n, n_ri)
        tab = pw.summarise(sims_of[n], n, par["effects"], f"ancova_hc2_t; {cfg.assignment_method}; {ri}")
        tables.append(tab)
        seconds[n] = time.perf_counter() - t0
        if progress is not None:
            print(f" done in {seconds[n]:.1f} s", file=progress, flush=True)
    table = pd.concat(tables, ignore_index=True)
    for k in ("sd", "rho", "attrition"):
        table[k] = par[k]
    deltas = _delta_grid(table)
    curve = pd.concat([pw.curve_frame(sims_of[n], n, deltas) for n in par["n_pilot"]], ignore_index=True)
    return pw.DiagnosisResult(table=table, curve=curve, parameters=par, seconds=seconds)


def ri_draws_at(ri_draws: int, n: int) -> int:
    """RI draws per simulation at size ``n``: ``ri_draws``, fewer (never under 100) where
    ``draws × n`` would pass :data:`_RI_CELLS` (the ``method`` column says how many)."""
    return min(ri_draws, max(100, _RI_CELLS // n)) if ri_draws else 0


def _simulate_size(cfg: StudyConfig, par: dict[str, Any], pool: pd.DataFrame, n: int, n_ri: int) -> pw.SizeSims:
    """Every simulation of one size, in chunks of at most :data:`_CHUNK_CELLS` families."""
    def rng(part: int) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, DIAGNOSE_STREAM, n, part])

    design = size_strata(pool, n, rng(0))
    g_assign, g_out = rng(1), rng(2)
    ri_draws = assignment_draws(cfg, design, n_ri, rng(3)) if n_ri else None
    chunk = max(1, _CHUNK_CELLS // n)
    parts = []
    with blas_single_thread():
        for a in range(0, par["sims"], chunk):
            b = min(a + chunk, par["sims"])
            cells = assignment_draws(cfg, design, b - a, g_assign)
            parts.append(pw.simulate_chunk(g_out, design.stratum, cells, sd=par["sd"], rho=par["rho"],
                                           attrition=par["attrition"], effects=par["effects"], ri_draws=ri_draws))
    return pw.SizeSims.concat(parts)


def _delta_grid(table: pd.DataFrame, points: int = 61) -> np.ndarray:
    """Effects from 0 to 1.5 × the largest finite MDE (or the largest effect), ``points`` of them."""
    top = np.nanmax(np.r_[table["mde"].to_numpy(float), np.abs(table["effect"].to_numpy(float)), 1e-9])
    grid: np.ndarray = np.linspace(0.0, 1.5 * float(top), points)
    return grid


# ---------------------------------------------------------------------------- writing
def write(result: pw.DiagnosisResult, out: Path, lang: str = "en", mic: float | None = None) -> None:
    """``diagnosis.csv``, ``power_curve.csv``, ``diagnosis_parameters.json`` and
    ``figures/power_curve.png`` into the folder ``out``."""
    from hbeval.pipeline import write_csv  # analyze loads every step; only its CSV writer is needed here
    from hbeval.report.plots.power import plot_power_curve  # matplotlib only when writing
    from hbeval.report.plots.style import save  # matplotlib only when writing

    write_csv(result.table, out / "diagnosis.csv")
    write_csv(result.curve, out / "power_curve.csv")
    doc = {"hbeval": __version__, "parameters": result.parameters,
           "seconds": {str(k): round(v, 3) for k, v in result.seconds.items()}}
    (out / "diagnosis_parameters.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    save(plot_power_curve(result.curve, result.table, lang=lang, mic=mic), out / "figures" / "power_curve.png")


def run(study: str | Path, out: str | Path, sizes: Sequence[int] | None = None, sims: int | None = None,
        lang: str = "en") -> Path:
    """``hbeval diagnose STUDY --out OUT``: diagnose and write ``OUT`` atomically; progress on stderr."""
    if sizes and any(not MIN_DIAGNOSE_SIZE <= v <= MAX_DIAGNOSE_SIZE for v in sizes):
        raise UsageError(f"--n-pilot must be between {MIN_DIAGNOSE_SIZE} and {MAX_DIAGNOSE_SIZE:,}")
    if sims is not None and not MIN_SIMS <= sims <= MAX_SIMS:
        raise UsageError(f"--sims must be between {MIN_SIMS} and {MAX_SIMS:,}")
    outdir.check_out(out, study)  # refuse before simulating
    cfg = load_config(study)
    result = diagnose(study, sizes=sorted(set(sizes)) if sizes else None, sims=sims, progress=sys.stderr)
    with outdir.building(out, study) as tmp:
        write(result, tmp, lang=lang, mic=cfg.mic)
    return outdir.check_out(out, study)
