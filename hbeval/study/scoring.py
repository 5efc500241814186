"""Scoring the instruments: domain scores and totals per family and timepoint.

The definitions come from ``data_schema/instruments/*.json`` and a study's own
``STUDY/instruments/*.json`` (:func:`hbeval.study.schema.instruments`). The total of an
instrument (``kykyviisari_total``, ``kompassi_total``, ``satisfaction_total``, a study's
``<own>_total``) is the mean of the answered total domains, and missing when fewer than
``min_answered_share`` of them (80 %: 4 of 5, 5 of 6) are answered. Domains are reported as
``<instrument>_<item>``. An instrument with ``open_items`` (the packaged satisfaction
survey) is scored on the items the measurements use (:func:`resolve_instruments`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hbeval.study.schema import ITEM_CODE, Instrument, instruments

TIMEPOINTS = ("start", "end")


def outcome_names(insts: dict[str, Instrument] | None = None) -> list[str]:
    """Every scored outcome: each instrument's total, then its domains.

    Parameters
    ----------
    insts : the study's instruments (``StudyConfig.instruments``); ``None``: the packaged ones.
    """
    out: list[str] = []
    for ins in (instruments() if insts is None else insts).values():
        out += ins.outcomes
    return out


def open_item_outcome(name: str, insts: dict[str, Instrument] | None = None) -> bool:
    """Whether ``name`` is ``<instrument>_<item>`` of an open instrument (its items are the
    study's choice, known only from the measurements)."""
    for ins in (instruments() if insts is None else insts).values():
        rest = name.removeprefix(f"{ins.instrument}_")
        if ins.open_items and rest != name and ITEM_CODE.fullmatch(rest) and name != ins.total:
            return True
    return False


def resolve_instruments(measurements: pd.DataFrame, insts: dict[str, Instrument] | None = None) -> dict[str, Instrument]:
    """The instruments with each open one's items taken from ``measurements``
    (:meth:`hbeval.study.schema.Instrument.with_items`): a study that brings no satisfaction
    definition is scored on the satisfaction items it uses."""
    base = instruments() if insts is None else insts
    used = measurements.groupby("instrument", sort=False, observed=True)["item"].unique() if len(measurements) else {}
    return {name: ins.with_items(used[name] if name in used else ()) for name, ins in base.items()}


def score(measurements: pd.DataFrame, insts: dict[str, Instrument] | None = None) -> pd.DataFrame:
    """Wide scores: one row per family, columns ``<outcome>_start``, ``<outcome>_end``.

    Parameters
    ----------
    measurements : the canonical ``measurements`` table (long format).
    insts : the study's instruments (``StudyConfig.instruments``); ``None``: the packaged ones.

    Returns
    -------
    DataFrame indexed by ``client_id`` (sorted) with a ``<outcome>_<timepoint>`` column for
    every outcome of :func:`outcome_names` (open instruments resolved by
    :func:`resolve_instruments`) and timepoint, NaN where not measured, plus
    ``<outcome>_change`` (end − start).

    Notes
    -----
    For a family, instrument and timepoint with answered total domains :math:`A \\subseteq D`
    (:math:`D` the domains ``in_total``), the total is

    .. math:: T = \\frac{1}{|A|} \\sum_{d \\in A} x_d \\quad \\text{when } |A| \\ge \\lceil s |D| \\rceil,

    and missing otherwise, :math:`s` being ``min_answered_share`` (0.8).
    """
    resolved = resolve_instruments(measurements, insts)
    m = measurements[["client_id", "instrument", "timepoint", "item", "score"]]
    m = m[m["score"].notna()]
    wide = m.pivot_table(index="client_id", columns=["instrument", "timepoint", "item"], values="score", aggfunc="mean")
    cols: dict[str, pd.Series] = {}
    idx = wide.index
    for ins in resolved.values():
        for tp in TIMEPOINTS:
            cols.update(_score_one(wide, ins, tp))
    out = pd.DataFrame(cols, index=idx).sort_index()
    for name in outcome_names(resolved):
        out[f"{name}_change"] = out[f"{name}_end"] - out[f"{name}_start"]
    out.index.name = "client_id"
    return out


def _score_one(wide: pd.DataFrame, ins: Instrument, tp: str) -> dict[str, pd.Series]:
    """The total and domain columns of one instrument at one timepoint."""
    idx = wide.index

    def col(item: str) -> pd.Series:
        key = (ins.instrument, tp, item)
        return wide[key] if key in wide.columns else pd.Series(np.nan, index=idx)

    dom = pd.concat([col(it) for it in ins.total_items], axis=1)
    answered = dom.notna().sum(axis=1)
    cols = {f"{ins.total}_{tp}": dom.mean(axis=1).where(answered >= ins.min_answered())}
    for it in ins.items:
        cols[f"{ins.instrument}_{it}_{tp}"] = col(it)
    return cols
