"""The family-level outcome frame: one row per family with every declared outcome.

Internal: this frame holds a row per family and is never written out. Results tables
(:mod:`hbeval.outcomes.effects`, :mod:`hbeval.outcomes.attrition`, :mod:`hbeval.outcomes.comparison`) aggregate it.

Columns
-------
* the family's covariates from ``study.families()`` (``client_id``, ``group``, ``site``,
  ``service_line``, ``household_size``, ``n_children``, ``youngest_child_age``, ``area``,
  ``enrolled_on``, ``frame_arm``, ``teaming_arm``, ``stratum``, ``cell``);
* scored instruments (:func:`hbeval.study.scoring.score`): ``<outcome>_start``, ``<outcome>_end``,
  ``<outcome>_change``;
* process outcomes of the frame factor (from ``budgets``), pilot families with a budget:
  ``budget_accepted_unchanged_end`` (1 when the budget was confirmed with no revision and
  confirmed = proposed in every category, to the euro), ``budget_revisions_end`` (the
  family's number of revisions), ``budget_abs_change_eur_end`` (Σ over categories of
  |confirmed − proposed|, when confirmed), ``days_to_confirmation_end`` (last
  ``confirmed_on`` − first ``proposed_on``);
* process outcomes of the teaming factor (from ``teaming_meetings``), every assigned
  family (0 when none was held): ``meetings_<phase>_end`` and
  ``providers_present_<phase>_end`` (sum of providers present) per phase;
* prevention (from ``child_welfare``), every pilot and comparison family:
  ``new_child_welfare_clienthood_end`` (1 when a ``new_clienthood`` event falls in the
  follow-up window ``[enrolled_on, enrolled_on + follow_up_days)``) and
  ``new_child_welfare_clienthood_pre`` (the same in the pre-period).

Process and prevention outcomes have no ``_start`` column: their models have no baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hbeval.arms import cell_code
from hbeval.study.config import StudyConfig
from hbeval.study.scoring import score

PHASES = ("before_start", "after_start", "evaluation")
COVARIATES = ("client_id", "group", "site", "service_line", "household_size", "n_children", "youngest_child_age", "area",
              "referral_reason", "enrolled_on", "frame_arm", "teaming_arm", "stratum", "cell")


def _dt(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, errors="coerce")


def budget_outcomes(budgets: pd.DataFrame) -> pd.DataFrame:
    """Frame-factor process outcomes per family from the ``budgets`` table (index client_id)."""
    cols = ["budget_accepted_unchanged_end", "budget_revisions_end", "budget_abs_change_eur_end", "days_to_confirmation_end"]
    if budgets is None or len(budgets) == 0:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="client_id"), dtype=float)
    b = budgets.copy()
    b["client_id"] = b["client_id"].astype(str)
    b["proposed_eur"] = pd.to_numeric(b["proposed_eur"], errors="coerce")
    b["confirmed_eur"] = pd.to_numeric(b["confirmed_eur"], errors="coerce")
    b["revisions"] = pd.to_numeric(b["revisions"], errors="coerce")
    b["abs_change"] = (b["confirmed_eur"] - b["proposed_eur"]).abs()
    b["proposed_on"] = _dt(b["proposed_on"])
    b["confirmed_on"] = _dt(b["confirmed_on"])
    g = b.groupby("client_id", sort=True)
    # confirmed: every category has a confirmed amount and some confirmation date exists
    # (count() skips missing values, so these are vectorised forms of all()/any() notna)
    confirmed = (g["confirmed_eur"].count() == g.size()) & (g["confirmed_on"].count() > 0)
    revisions = g["revisions"].max()
    abs_change = g["abs_change"].sum(min_count=1).where(confirmed)
    days = (g["confirmed_on"].max() - g["proposed_on"].min()).dt.days.astype(float).where(confirmed)
    unchanged = (confirmed & (revisions.fillna(0) == 0) & (abs_change.fillna(np.inf) < 0.5)).astype(float)
    out = pd.DataFrame(
        {
            "budget_accepted_unchanged_end": unchanged,
            "budget_revisions_end": revisions.astype(float),
            "budget_abs_change_eur_end": abs_change.astype(float),
            "days_to_confirmation_end": days,
        }
    )
    out.index.name = "client_id"
    return out


def teaming_outcomes(meetings: pd.DataFrame, client_ids: pd.Index) -> pd.DataFrame:
    """Teaming-factor process outcomes for ``client_ids`` (0 where no meeting was held)."""
    out = pd.DataFrame(index=pd.Index(client_ids.astype(str), name="client_id"))
    m = meetings.copy() if meetings is not None else pd.DataFrame(columns=["client_id", "phase", "providers_present"])
    m["client_id"] = m["client_id"].astype(str)
    m["providers_present"] = pd.to_numeric(m["providers_present"], errors="coerce").fillna(0)
    for ph in PHASES:
        sub = m[m["phase"].astype(str) == ph]
        cnt = sub.groupby("client_id").size()
        prov = sub.groupby("client_id")["providers_present"].sum()
        out[f"meetings_{ph}_end"] = cnt.reindex(out.index).fillna(0).astype(float).to_numpy()
        out[f"providers_present_{ph}_end"] = prov.reindex(out.index).fillna(0).astype(float).to_numpy()
    return out


def prevention_outcomes(child_welfare: pd.DataFrame, families: pd.DataFrame, follow_up_days: int) -> pd.DataFrame:
    """New child-welfare clienthood in the follow-up window and in the pre-period."""
    fam = families[["client_id", "enrolled_on"]].copy()
    fam["client_id"] = fam["client_id"].astype(str)
    fam["enrolled_on"] = _dt(fam["enrolled_on"])
    cw = child_welfare.copy() if child_welfare is not None else pd.DataFrame(columns=["client_id", "date", "event"])
    cw = cw[cw["event"].astype(str) == "new_clienthood"].copy()
    cw["client_id"] = cw["client_id"].astype(str)
    cw["date"] = _dt(cw["date"])
    j = cw.merge(fam, on="client_id", how="inner")
    off = (j["date"] - j["enrolled_on"]).dt.days
    post = j.loc[(off >= 0) & (off < follow_up_days), "client_id"].unique()
    pre = j.loc[(off < 0) & (off >= -follow_up_days), "client_id"].unique()
    known = fam["enrolled_on"].notna().to_numpy()
    out = pd.DataFrame(index=pd.Index(fam["client_id"], name="client_id"))
    out["new_child_welfare_clienthood_end"] = np.where(known, fam["client_id"].isin(post).astype(float), np.nan)
    out["new_child_welfare_clienthood_pre"] = np.where(known, fam["client_id"].isin(pre).astype(float), np.nan)
    return out


def outcome_frame(study) -> pd.DataFrame:
    """One row per family (pilot, comparison and excluded) with covariates and outcomes.

    Parameters
    ----------
    study : an object with the Study API (``config``, ``table(name)``, ``families()``).

    Returns
    -------
    DataFrame sorted by ``client_id`` (see the module docstring for the columns). Never
    written out: it holds a row per family.
    """
    return _outcome_frame(study)


def _outcome_frame(study) -> pd.DataFrame:
    cfg: StudyConfig = study.config
    fam = study.families().copy()
    fam["client_id"] = fam["client_id"].astype(str)
    keep = [c for c in COVARIATES if c in fam.columns]
    fam = fam[keep].sort_values("client_id", kind="mergesort").reset_index(drop=True)
    if "cell" not in fam.columns:
        fam["cell"] = pd.array(
            np.where(fam["frame_arm"].notna() & fam["teaming_arm"].notna(), cell_code(fam["frame_arm"], fam["teaming_arm"]), -1),
            dtype="Int8",
        )
        fam.loc[fam["cell"] == -1, "cell"] = pd.NA
    out = fam.set_index("client_id")
    meas = study.table("measurements")
    if len(meas):
        sc = score(meas, cfg.instruments)
        sc.index = sc.index.astype(str)
        out = out.join(sc, how="left")
    bud = budget_outcomes(study.table("budgets"))
    out = out.join(bud, how="left")
    assigned = out.index[out["cell"].notna()]
    tm = teaming_outcomes(study.table("teaming_meetings"), assigned)
    out = out.join(tm, how="left")
    prev = prevention_outcomes(study.table("child_welfare"), fam, cfg.follow_up_days)
    out = out.join(prev, how="left")
    out = out.reset_index()
    return out.sort_values("client_id", kind="mergesort").reset_index(drop=True)


def outcome_columns(frame: pd.DataFrame, outcome: str) -> tuple[str | None, str | None]:
    """``(end column, start column)`` of an outcome in :func:`outcome_frame`; ``None`` when
    absent (the start column is also ``None`` when it holds no value at all)."""
    end = f"{outcome}_end" if f"{outcome}_end" in frame.columns else None
    start = f"{outcome}_start" if f"{outcome}_start" in frame.columns else None
    if start is not None and not pd.to_numeric(frame[start], errors="coerce").notna().any():
        start = None
    return end, start


# ---------------------------------------------------------------------------- in-memory study
@dataclass
class InMemoryStudy:
    """A minimal stand-in for :class:`hbeval.study.store.Study` built from canonical tables in
    memory (e.g. ``hbeval.demo.generate().tables``), for tests and notebooks.

    Implements ``config``, ``table(name)`` and ``families()`` as the Study API describes them.
    """

    tables: dict[str, pd.DataFrame]
    config: StudyConfig = field(default_factory=StudyConfig)
    path: object = None

    _DATE_COLS = ("enrolled_on", "assigned_on", "measured_on", "event_date", "proposed_on", "confirmed_on", "date")

    @classmethod
    def from_demo(cls, n_pilot: int = 400, n_comparison: int = 600, seed: int = 20261122, effects=None, **cfg) -> InMemoryStudy:
        from hbeval.demo import generate  # the demo imports this module (a test helper)

        demo = generate(n_pilot, n_comparison, seed, effects)
        return cls(tables=demo.tables, config=StudyConfig(seed=seed, **cfg))

    def table(self, name: str) -> pd.DataFrame:
        t = self.tables.get(name)
        if t is None:
            return pd.DataFrame()
        t = t.copy()
        for c in self._DATE_COLS:
            if c in t.columns:
                t[c] = pd.to_datetime(t[c], errors="coerce")
        return t

    def unit_costs(self) -> pd.DataFrame:
        from pathlib import Path

        return pd.read_csv(Path(__file__).parent.parent / "data" / "unit_costs.csv")

    def price_index(self) -> pd.DataFrame:
        from pathlib import Path

        return pd.read_csv(Path(__file__).parent.parent / "data" / "price_index.csv")

    def families(self) -> pd.DataFrame:
        cl = self.table("clients")
        a = self.table("assignments")
        fam = cl.merge(a, on="client_id", how="left") if len(a) else cl.assign(frame_arm=None, teaming_arm=None, stratum=None, assigned_on=pd.NaT)
        ok = fam["frame_arm"].notna() & fam["teaming_arm"].notna()
        codes = pd.array([pd.NA] * len(fam), dtype="Int8")
        codes[ok.to_numpy()] = cell_code(fam.loc[ok, "frame_arm"], fam.loc[ok, "teaming_arm"])
        fam["cell"] = codes
        return fam.sort_values("client_id", kind="mergesort").reset_index(drop=True)
