"""The CONSORT flow (with the comparison group's flow) and the baseline table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hbeval.arms import CELLS
from hbeval.privacy import exclusion_reason_code, suppress_count, suppress_small_groups
from hbeval.randomisation.balance import pool_rare_levels
from hbeval.stats.factorial import (
    REASON_ALONE,
    REASON_NO_START,
    REASON_NOT_ESTIMABLE,
    analysis_status,
    estimable,
    factorial_data,
)
from hbeval.study.schema import exclusion_reason_keywords
from hbeval.study.scoring import score

STAGES = ("assessed", "excluded", "allocated", "received", "lost_to_follow_up", "not_analysed", "analysed")
#: ``reason`` of the ``not_analysed`` rows: families with the end score that do not contribute
NOT_ANALYSED_REASONS = (REASON_NO_START, REASON_ALONE, REASON_NOT_ESTIMABLE)


def consort_flow(families: pd.DataFrame, scores: pd.DataFrame, budgets: pd.DataFrame, meetings: pd.DataFrame,
                 primary: str) -> pd.DataFrame:
    """Counts of the CONSORT flow diagram (unsuppressed; see :func:`consort_table`).

    Stages: ``assessed`` (pilot and excluded families; the comparison group's identified
    families), ``excluded`` (one row per reason), ``allocated`` (per cell), ``received``
    (a confirmed budget; in teaming cells also at least one teaming meeting),
    ``lost_to_follow_up`` (no end score of the primary outcome), ``not_analysed`` (one row per
    reason of :data:`NOT_ANALYSED_REASONS` that applies to any family: the end score but no
    start score; alone in its stratum among the complete cases, so fitted exactly by its
    stratum dummy; or the contrasts of the primary outcome are not estimable at all) and
    ``analysed`` (the families of the primary estimate). In every cell, allocated =
    lost_to_follow_up + not_analysed + analysed. Exclusion reasons are shown as the codes of
    ``data_schema/exclusion_reasons.json`` (see :func:`exclusion_reason_codes`), never as the
    text typed into ``clients.csv``.
    """
    fam = families.set_index("client_id")
    s = scores.reindex(fam.index)
    has_end = s[f"{primary}_end"].notna()
    both = has_end & s[f"{primary}_start"].notna()
    status = _primary_status(fam, s, primary)
    confirmed = set(budgets.loc[budgets["confirmed_on"].notna(), "client_id"])
    met = set(meetings["client_id"])
    fam_cell = pd.Series(
        np.where(fam["frame_arm"].notna(), fam["frame_arm"].astype(object) + "/" + fam["teaming_arm"].astype(object), None),
        index=fam.index,
    )
    rows: list[dict] = []

    def add(stage: str, group: str, cell: str, n: int, reason: str = "") -> None:
        rows.append({"stage": stage, "group": group, "cell": cell, "reason": reason, "n": int(n)})

    pilot_like = fam["group"].isin(["pilot", "excluded"])
    add("assessed", "pilot", "all", pilot_like.sum())
    excl = fam[fam["group"] == "excluded"]
    add("excluded", "pilot", "all", len(excl), "all reasons")
    keywords = exclusion_reason_keywords()
    codes = excl["exclusion_reason"].astype(object).map(lambda r: exclusion_reason_code(r, keywords))
    for reason, n in codes.value_counts().sort_index().items():  # codes only: the free text may name a person
        add("excluded", "pilot", "all", n, str(reason))
    pilot = fam["group"] == "pilot"
    unassigned = pilot & fam_cell.isna()
    if unassigned.any():
        add("allocated", "pilot", "not yet allocated", unassigned.sum())
    for cell in CELLS:
        in_cell = pilot & (fam_cell == cell)
        idx = fam.index[in_cell]
        add("allocated", "pilot", cell, in_cell.sum())
        received = pd.Series(idx.isin(list(confirmed)), index=idx)
        if cell.endswith("/teaming"):
            received &= idx.isin(list(met))
        add("received", "pilot", cell, received.sum())
        add("lost_to_follow_up", "pilot", cell, (in_cell & ~has_end).sum())
        for reason in NOT_ANALYSED_REASONS:
            if (pilot & (status == reason)).any():
                add("not_analysed", "pilot", cell, (in_cell & (status == reason)).sum(), reason)
        add("analysed", "pilot", cell, (in_cell & (status == "")).sum())
    comp = fam["group"] == "comparison"
    add("assessed", "comparison", "all", comp.sum())
    add("lost_to_follow_up", "comparison", "all", (comp & ~has_end).sum())
    add("analysed", "comparison", "all", (comp & both).sum())
    out = pd.DataFrame(rows)
    out["_o"] = out["stage"].map({s: i for i, s in enumerate(STAGES)})
    out["_g"] = (out["group"] == "comparison").astype(int)
    return out.sort_values(["_g", "_o"], kind="mergesort").drop(columns=["_o", "_g"]).reset_index(drop=True)


def _primary_status(fam: pd.DataFrame, s: pd.DataFrame, primary: str) -> pd.Series:
    """Per allocated family (index of ``fam``): ``""`` when in the primary estimate, else why not
    (:func:`hbeval.stats.factorial.analysis_status`, or ``not_estimable`` for every complete
    case when the primary contrasts cannot be estimated); NaN for the others."""
    cell_code = {c: i for i, c in enumerate(CELLS)}
    arms = fam["frame_arm"].astype(object) + "/" + fam["teaming_arm"].astype(object)
    cell = arms.map(cell_code)
    rand = (fam["group"] == "pilot") & cell.notna()
    out = pd.Series(np.nan, index=fam.index, dtype=object)
    if not rand.any():
        return out
    start_col = f"{primary}_start"
    args = (
        pd.to_numeric(s.loc[rand, f"{primary}_end"], errors="coerce").to_numpy(float),
        cell[rand].to_numpy(dtype=float),
        fam.loc[rand, "stratum"].astype(str).to_numpy(),
        pd.to_numeric(s.loc[rand, start_col], errors="coerce").to_numpy(float) if s.loc[rand, start_col].notna().any() else None,
    )
    st = analysis_status(*args)
    if not estimable(factorial_data(*args)):
        st[st == ""] = REASON_NOT_ESTIMABLE
    out[rand] = st
    return out


SECONDARY = "suppressed"


def consort_table(flow: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """``results/consort.csv``: the flow with counts below ``min_cell`` shown as ``<k``.

    The exclusion reasons add up to the total shown above them, so when exactly one reason
    is suppressed the smallest other reason is suppressed as well (shown as
    ``suppressed``): otherwise the total minus the others would give the small count back.
    """
    out = flow.copy()
    shown = [suppress_count(v, min_cell) for v in out["n"]]
    reasons = out.index[(out["stage"] == "excluded") & (out["reason"] != "all reasons")]
    small = [i for i in reasons if 0 < out.at[i, "n"] < min_cell]
    if len(small) == 1:
        others = [i for i in reasons if i not in small and out.at[i, "n"] > 0]
        if others:
            j = min(others, key=lambda i: (out.at[i, "n"], i))
            shown[out.index.get_loc(j)] = SECONDARY
    out["n"] = shown
    return out[["stage", "group", "cell", "reason", "n"]]


BASELINE_NUMERIC = ("household_size", "n_children", "youngest_child_age")
BASELINE_CATEGORICAL = ("site", "service_line", "area", "referral_reason")


def baseline_table(families: pd.DataFrame, scores: pd.DataFrame, outcomes: list[str], min_cell: int) -> pd.DataFrame:
    """``results/baseline.csv``: baseline characteristics by cell, pilot and comparison.

    Numeric variables: n, mean, SD; categorical: n and % per level. Groups with fewer than
    ``min_cell`` families have their statistics blanked and their count suppressed.
    """
    fam = families[families["group"].isin(["pilot", "comparison"])].set_index("client_id")
    s = scores.reindex(fam.index)
    data = fam.copy()
    for o in outcomes:
        col = f"{o}_start"
        if col in s.columns:
            data[col] = s[col]
    groups: list[tuple[str, pd.Series]] = []
    for cell in CELLS:
        f, t = cell.split("/")
        groups.append((cell, (data["group"] == "pilot") & (data["frame_arm"] == f) & (data["teaming_arm"] == t)))
    groups.append(("pilot", data["group"] == "pilot"))
    groups.append(("comparison", data["group"] == "comparison"))
    rows = []
    numeric = list(BASELINE_NUMERIC) + [f"{o}_start" for o in outcomes if f"{o}_start" in data.columns]
    for var in numeric:
        for g, mask in groups:
            x = pd.to_numeric(data.loc[mask, var], errors="coerce")
            rows.append({"variable": var, "level": "", "group": g, "n": int(x.notna().sum()),
                         "missing": int(x.isna().sum()), "mean": x.mean(), "sd": x.std(ddof=1), "percent": np.nan})
    for var in BASELINE_CATEGORICAL:
        if var not in data.columns:
            continue
        col = pool_rare_levels(data[var], min_cell).astype(object)  # a rare level's label could name a family
        levels = sorted(col.dropna().astype(str).unique())
        per_group = []  # (group, counts by level, missing, size): one pass per group, not per level
        for g, mask in groups:
            x = col[mask.to_numpy()]
            per_group.append((g, x.dropna().astype(str).value_counts(), int(x.isna().sum()), len(x)))
        for lev in levels:
            for g, counts, missing, size in per_group:
                k = int(counts.get(lev, 0))
                rows.append({"variable": var, "level": lev, "group": g, "n": k, "missing": missing,
                             "mean": np.nan, "sd": np.nan, "percent": 100.0 * k / max(size, 1)})
    out = pd.DataFrame(rows)
    out = suppress_small_groups(out, "n", ["mean", "sd", "percent"], min_cell)
    out["missing"] = [suppress_count(v, min_cell) for v in out["missing"]]
    return out[["variable", "level", "group", "n", "missing", "mean", "sd", "percent"]]


def exclusion_reason_codes(reasons: pd.Series, min_cell: int) -> pd.Series:
    """Free-text exclusion reasons as documented codes, rare codes pooled.

    Each text is mapped to a code of ``data_schema/exclusion_reasons.json`` by its keywords
    (:func:`hbeval.privacy.exclusion_reason_code`; unmatched text is ``(other)``), and a code
    held by fewer than ``min_cell`` excluded families becomes ``(other)`` too
    (:func:`~hbeval.randomisation.balance.pool_rare_levels`, the rule of every other text level).
    """
    keywords = exclusion_reason_keywords()
    codes = reasons.astype(object).map(lambda r: exclusion_reason_code(r, keywords))
    return pool_rare_levels(codes, min_cell)


def consort_results(study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(consort.csv, baseline.csv)`` for a :class:`~hbeval.study.store.Study`."""
    fam = study.families()
    excluded = fam["group"] == "excluded"
    fam = fam.assign(exclusion_reason=fam["exclusion_reason"].astype(object))
    fam.loc[excluded, "exclusion_reason"] = exclusion_reason_codes(fam.loc[excluded, "exclusion_reason"], study.config.min_cell)
    scores = score(study.table("measurements"), study.config.instruments)
    flow = consort_flow(fam, scores, study.table("budgets"), study.table("teaming_meetings"), study.config.primary)
    outcomes = [study.config.primary] + [o for o in ("kompassi_total",) if o != study.config.primary]
    return consort_table(flow, study.config.min_cell), baseline_table(fam, scores, outcomes, study.config.min_cell)
