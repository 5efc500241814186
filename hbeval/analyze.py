"""``hbeval analyze``: every result table of the evaluation, written atomically.

Each step is a function of the :class:`~hbeval.study.store.Study` in the module named after the
evaluation step; this module only orders them, shows progress, and writes the tables.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from hbeval.economics.cea import write_ce_plane_replicates
from hbeval.manifest import build_manifest, write_manifest
from hbeval.outdir import building
from hbeval.privacy import neutralise_formulas
from hbeval.study.store import Study

#: ``results/*.csv`` of the contract, in the order they are computed.
RESULT_TABLES = ("data_quality", "consort", "baseline", "balance", "effects", "process", "attrition", "comparison",
                 "costs", "cost_differences", "cea", "ceac", "rosi", "rosi_sensitivity", "cheers")


def _steps() -> list[tuple[str, Callable[[Study], dict[str, pd.DataFrame]]]]:
    from hbeval.outcomes import attrition
    from hbeval.randomisation import balance
    from hbeval.economics import cea
    from hbeval.economics import cheers
    from hbeval.outcomes import comparison
    from hbeval.randomisation import consort
    from hbeval.costs import engine as costs
    from hbeval.outcomes import effects
    from hbeval.economics import rosi

    def quality(s: Study) -> dict[str, pd.DataFrame]:
        return {"data_quality": s.data_quality()}

    def flow(s: Study) -> dict[str, pd.DataFrame]:
        c, b = consort.consort_results(s)
        return {"consort": c, "baseline": b}

    def outcome_effects(s: Study) -> dict[str, pd.DataFrame]:
        comp, comp_effects = comparison.comparison_results(s)
        eff = effects.effects_results(s)
        eff = pd.concat([eff, comp_effects], ignore_index=True) if len(comp_effects) else eff
        return {"effects": eff, "comparison": comp, "process": effects.process_results(s),
                "attrition": attrition.attrition_results(s)}

    def cost_tables(s: Study) -> dict[str, pd.DataFrame]:
        return {"costs": costs.costs_results(s), "cost_differences": costs.cost_differences(s)}

    def economics(s: Study) -> dict[str, pd.DataFrame]:
        cea_df, ceac_df = cea.cea_results(s)
        return {"cea": cea_df, "ceac": ceac_df, "rosi": rosi.rosi_results(s),
                "rosi_sensitivity": rosi.rosi_sensitivity_results(s), "cheers": cheers.cheers_results(s)}

    return [
        ("data quality", quality),
        ("CONSORT flow and baseline", flow),
        ("balance", lambda s: {"balance": balance.balance_results(s)}),
        ("outcomes, attrition and the comparison group", outcome_effects),
        ("costs", cost_tables),
        ("cost-effectiveness and ROSI", economics),
    ]


def compute(study: Study, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Every result table, by name."""
    results: dict[str, pd.DataFrame] = {}
    steps = _steps()
    for i, (label, fn) in enumerate(steps, 1):
        t0 = time.perf_counter()
        if progress:
            print(f"[{i}/{len(steps)}] {label} ...", file=sys.stderr, flush=True)
        results.update(fn(study))
        if progress:
            print(f"      done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return results


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Deterministic CSV: UTF-8, ``\\n`` line ends, floats to 10 significant digits; text cells
    that a spreadsheet would run as a formula are neutralised (:func:`hbeval.privacy.neutralise_formulas`)."""
    neutralise_formulas(df).to_csv(path, index=False, lineterminator="\n", float_format="%.10g", encoding="utf-8")


def write_results(results: dict[str, pd.DataFrame], out: Path) -> None:
    (out / "results").mkdir(parents=True, exist_ok=True)
    for name, df in sorted(results.items()):
        write_csv(df, out / "results" / f"{name}.csv")


def run(study: Study, out: str | Path, command: list[str] | None = None, progress: bool = True) -> Path:
    """Compute every table and write ``OUT/results/*.csv`` and ``OUT/manifest.json``
    atomically (built in a temporary folder beside ``OUT``, then moved into place; see
    :mod:`hbeval.outdir` for what ``OUT`` may be)."""
    with building(out, study.path) as tmp:
        results = compute(study, progress=progress)
        write_results(results, tmp)
        write_ce_plane_replicates(study, tmp)  # OUT/replicates/ce_plane.csv, for the report's CE planes
        write_manifest(build_manifest(study, tmp, command or ["hbeval", "analyze"]), tmp)
    return Path(out).resolve()
