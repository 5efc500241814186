"""Scoring the instruments: domain scores and totals per family and timepoint.

The definitions come from ``data_schema/instruments/*.json``. The total of an instrument
(``kykyviisari_total``, ``kompassi_total``, ``satisfaction_total``) is the mean of the
answered total domains, and missing when fewer than ``min_answered_share`` of them (80 %:
4 of 5, 5 of 6) are answered. Domains are reported as ``<instrument>_<item>``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hbeval.study.schema import instruments

TIMEPOINTS = ("start", "end")


def outcome_names() -> list[str]:
    """Every scored outcome: each instrument's total, then its domains."""
    out = []
    for ins in instruments().values():
        out.append(ins.total)
        out += [f"{ins.instrument}_{it}" for it in ins.items]
    return out


def score(measurements: pd.DataFrame) -> pd.DataFrame:
    """Wide scores: one row per family, columns ``<outcome>_start``, ``<outcome>_end``.

    Parameters
    ----------
    measurements : the canonical ``measurements`` table (long format).

    Returns
    -------
    DataFrame indexed by ``client_id`` (sorted) with a ``<outcome>_<timepoint>`` column for
    every outcome of :func:`outcome_names` and timepoint, NaN where not measured, plus
    ``<outcome>_change`` (end − start).
    """
    m = measurements[["client_id", "instrument", "timepoint", "item", "score"]]
    m = m[m["score"].notna()]
    wide = m.pivot_table(index="client_id", columns=["instrument", "timepoint", "item"], values="score", aggfunc="mean")
    cols: dict[str, pd.Series] = {}
    idx = wide.index
    for ins in instruments().values():
        for tp in TIMEPOINTS:
            def col(item: str) -> pd.Series:
                key = (ins.instrument, tp, item)
                return wide[key] if key in wide.columns else pd.Series(np.nan, index=idx)

            dom = pd.concat([col(it) for it in ins.total_items], axis=1)
            answered = dom.notna().sum(axis=1)
            total = dom.mean(axis=1).where(answered >= ins.min_answered())
            cols[f"{ins.total}_{tp}"] = total
            for it in ins.items:
                cols[f"{ins.instrument}_{it}_{tp}"] = col(it)
    out = pd.DataFrame(cols, index=idx).sort_index()
    for name in outcome_names():
        out[f"{name}_change"] = out[f"{name}_end"] - out[f"{name}_start"]
    out.index.name = "client_id"
    return out
