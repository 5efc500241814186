"""``hbeval analyze``: every result table of the evaluation, written atomically.

Each step calls the study glue of the stage it is named after. This module orders the steps,
builds the inputs several steps share once (:class:`SharedInputs`: the outcome frame, the
family costs, the re-randomisations), shows progress, and writes the tables.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hbeval.costs import engine as costs
from hbeval.costs.engine import FamilyCosts
from hbeval.disclosure import protect_results
from hbeval.economics import cea, cheers, rosi
from hbeval.manifest import build_manifest, write_manifest
from hbeval.outcomes import attrition, comparison, effects, missing, subgroups
from hbeval.outcomes.frame import outcome_frame
from hbeval.outdir import building
from hbeval.privacy import neutralise_formulas
from hbeval.randomisation import balance, consort, plan
from hbeval.randomisation.redraw import RIDraws, ri_draws
from hbeval.study.store import Study, open_study

#: ``results/*.csv`` of the contract, in the order they are computed.
RESULT_TABLES = ("data_quality", "deviations", "consort", "baseline", "balance", "effects", "process", "attrition", "comparison",
                 "costs", "cost_differences", "subgroup_costs", "cea", "ceac", "rosi", "rosi_sensitivity", "cheers")


@dataclass(frozen=True)
class SharedInputs:
    """What several steps read, built once per analysis and handed to them (never written
    out: each holds a row per family)."""

    frame: pd.DataFrame  #: the outcome frame (:func:`hbeval.outcomes.frame.outcome_frame`)
    costs: FamilyCosts  #: per-family costs (:func:`hbeval.costs.engine.study_costs`)
    ri: RIDraws  #: the re-randomisations (:func:`hbeval.randomisation.redraw.ri_draws`)


@dataclass
class Analysis:
    """Every result table by name (``results/<name>.csv``), and the replicates the report's
    figures draw (``replicates/``, not hashed by the manifest)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    ce_plane: pd.DataFrame | None = None


Step = Callable[[Study, SharedInputs, Analysis], None]


def _quality(s: Study, sh: SharedInputs, a: Analysis) -> None:
    a.tables["data_quality"] = s.data_quality()
    a.tables["deviations"] = plan.study_deviations(s.path, s.config)  # the analysis against the sealed plan


def _flow(s: Study, sh: SharedInputs, a: Analysis) -> None:
    a.tables["consort"], a.tables["baseline"] = consort.consort_results(s)


def _balance(s: Study, sh: SharedInputs, a: Analysis) -> None:
    a.tables["balance"] = balance.balance_results(s)


def _outcomes(s: Study, sh: SharedInputs, a: Analysis) -> None:
    comp, comp_effects = comparison.comparison_results(s, sh.frame, sh.costs)
    eff = effects.effects_results(s, frame=sh.frame, ri=sh.ri)
    a.tables["effects"] = pd.concat([eff, comp_effects], ignore_index=True) if len(comp_effects) else eff
    # [outcomes] subgroups: the `subgroup` column on every row, the subgroup and heterogeneity rows appended
    a.tables["effects"] = subgroups.add_subgroup_rows(s, a.tables["effects"], sh.frame, sh.ri)
    a.tables["comparison"] = comp
    a.tables["process"] = effects.process_results(s, sh.frame)
    a.tables["attrition"] = attrition.attrition_results(s, sh.frame)


def _costs(s: Study, sh: SharedInputs, a: Analysis) -> None:
    a.tables["costs"] = costs.costs_results(s, sh.costs)
    a.tables["cost_differences"] = costs.cost_differences(s, sh.costs)
    a.tables["subgroup_costs"] = subgroups.subgroup_costs_results(s, sh.costs)


def _economics(s: Study, sh: SharedInputs, a: Analysis) -> None:
    res = cea.cea_analysis_of(s, sh.costs)
    a.tables["cea"], a.tables["ceac"] = res.to_frame(), res.ceac_frame()
    a.ce_plane = cea.ce_plane_replicates(res)
    a.tables["rosi"] = rosi.rosi_results(s, sh.costs)
    a.tables["rosi_sensitivity"] = rosi.rosi_sensitivity_results(s, sh.costs)
    a.tables["cheers"] = cheers.cheers_results(s)


def _missing(s: Study, sh: SharedInputs, a: Analysis) -> None:
    """Multiple imputation and the tipping point (issue 15): sensitivity rows added to
    ``effects.csv``, ``cea.csv`` and ``rosi.csv`` after their complete-case rows."""
    rows, imps = missing.missing_data_rows(sh.frame, sh.costs.wide, s.config)
    a.tables["effects"] = pd.concat([a.tables["effects"], rows.reindex(columns=a.tables["effects"].columns)], ignore_index=True)
    oi = imps.get(s.config.primary)
    if oi is None:
        return
    c = s.config
    mi_cea = cea.cea_mi_rows(*oi.cea_arrays(), method=missing.mi_method(), wtp_reference=c.wtp_reference_eur, level=0.95,
                             outcome=c.primary, min_cell=c.min_cell)
    a.tables["cea"] = pd.concat([a.tables["cea"], mi_cea[a.tables["cea"].columns]], ignore_index=True)
    a.tables["rosi"] = pd.concat([a.tables["rosi"], rosi.rosi_mi_rows(a.tables["rosi"], oi.n_missing("cost"), missing.mi_method())],
                                 ignore_index=True)


STEPS: tuple[tuple[str, Step], ...] = (
    ("data quality", _quality),
    ("CONSORT flow and baseline", _flow),
    ("balance", _balance),
    ("outcomes, attrition and the comparison group", _outcomes),
    ("costs", _costs),
    ("cost-effectiveness and ROSI", _economics),
    ("missing data: multiple imputation and tipping point", _missing),
)


def shared_inputs(study: Study) -> SharedInputs:
    """The outcome frame, the family costs and the RI draws of ``study``, each built once."""
    frame = outcome_frame(study)
    return SharedInputs(frame=frame, costs=costs.study_costs(study), ri=ri_draws(study, frame))


@contextmanager
def _shown(label: str, progress: bool) -> Iterator[None]:
    """``label ...`` on stderr before the work and ``done in X s`` after it (when ``progress``)."""
    t0 = time.perf_counter()
    if progress:
        print(f"{label} ...", file=sys.stderr, flush=True)
    yield
    if progress:
        print(f"      done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def compute(study: Study, progress: bool = True) -> Analysis:
    """Every result table (and the CE plane's replicates) of ``study``. With ``progress``,
    every part of the work shows its time on stderr (how the store was opened first)."""
    opened: str = getattr(study, "opened", "")  # a stand-in of a Study may not say
    if progress and opened:
        print(opened, file=sys.stderr, flush=True)
    with _shown(f"[0/{len(STEPS)}] shared inputs: outcome frame, family costs, re-randomisations", progress):
        shared = shared_inputs(study)
    analysis = Analysis()
    for i, (label, step) in enumerate(STEPS, 1):
        with _shown(f"[{i}/{len(STEPS)}] {label}", progress):
            step(study, shared, analysis)
    # complementary suppression across all tables at once: no suppressed count can be derived
    with _shown("complementary suppression across all tables", progress):
        analysis.tables = protect_results(analysis.tables, study.config.min_cell)
    return analysis


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Deterministic CSV: UTF-8, ``\\n`` line ends, floats to 10 significant digits; text cells
    that a spreadsheet would run as a formula are neutralised (:func:`hbeval.privacy.neutralise_formulas`)."""
    neutralise_formulas(df).to_csv(path, index=False, lineterminator="\n", float_format="%.10g", encoding="utf-8")


def write_results(analysis: Analysis, out: Path) -> None:
    """``out/results/<name>.csv`` for every table, and ``out/replicates/ce_plane.csv``."""
    (out / "results").mkdir(parents=True, exist_ok=True)
    for name, df in sorted(analysis.tables.items()):
        write_csv(df, out / "results" / f"{name}.csv")
    if analysis.ce_plane is not None:
        cea.write_ce_plane_replicates(analysis.ce_plane, out)  # for the report's CE planes


def run(study: Study, out: str | Path, command: list[str] | None = None, progress: bool = True) -> Path:
    """Compute every table and write ``OUT/results/*.csv`` and ``OUT/manifest.json``
    atomically (built in a temporary folder beside ``OUT``, then moved into place; see
    :mod:`hbeval.outdir` for what ``OUT`` may be)."""
    with building(out, study.path) as tmp:
        analysis = compute(study, progress=progress)
        with _shown("writing results/, replicates/ and manifest.json", progress):
            write_results(analysis, tmp)
            write_manifest(build_manifest(study, tmp, command or ["hbeval", "analyze"]), tmp)
    return Path(out).resolve()


def analyze(study: Study | str | Path, progress: bool = False) -> Analysis:
    """Every result table of a study, in memory (the public face's ``hbeval.analyze``).

    ``study`` is an opened :class:`~hbeval.study.store.Study` or a study folder (opened, and so
    validated, here). Returns the :class:`Analysis`; ``analysis.tables["effects"]`` is the
    ``effects.csv`` table. Nothing is written: :func:`run` writes ``OUT/``.
    """
    if not isinstance(study, Study):
        study = open_study(study, progress=sys.stderr if progress else None)
    return compute(study, progress=progress)
