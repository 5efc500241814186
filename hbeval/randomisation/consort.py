"""The CONSORT flow (with the comparison group's flow) and the baseline table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hbeval.arms import CELLS
from hbeval.disclosure import COMPLEMENTARY, protect
from hbeval.privacy import exclusion_reason_code, pool_rare_levels, suppress_count, suppress_small_groups
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
    # ``analysed``: the complete cases (the comparison families of the CEA). The doubly robust
    # comparison estimate also keeps the families without a start score (with a missing-start
    # indicator) and leaves out those outside common support: its n is in comparison.csv.
    add("not_analysed", "comparison", "all", (comp & has_end & ~both).sum(), REASON_NO_START)
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


SECONDARY = COMPLEMENTARY  # how a count suppressed only to protect another is shown
#: stand-in value of a count published in another table (never chosen as a complement here)
_ELSEWHERE = 1e12


def _flow_expressions(flow: pd.DataFrame) -> list[dict]:
    """Each count of ``flow`` as a linear expression in latent counts of families.

    Latents: the excluded families by reason, the not-yet-allocated ones, and per cell (and for
    the comparison group) the lost, the not-analysed by reason and the analysed families, and
    the families that received the intervention. Then ``allocated`` is the sum of a cell's lost,
    not-analysed and analysed families (the identity of the flow), ``assessed`` the sum of the
    excluded and the allocated, and so on: every relation between the published counts is
    implied by shared latents (see :mod:`hbeval.disclosure`).
    """
    reasons = flow.index[(flow["stage"] == "excluded") & (flow["reason"].astype(str) != "all reasons")]
    excl: dict[tuple, float] = {("E", str(flow.at[i, "reason"])): 1.0 for i in reasons} or {("E", "*"): 1.0}

    def parts(group: str, cell: str) -> dict:
        m = (flow["group"] == group) & (flow["cell"].astype(str) == cell)
        e: dict = {("L", group, cell): 1.0, ("S", group, cell): 1.0}
        for r in flow.loc[m & (flow["stage"] == "not_analysed"), "reason"].astype(str):
            e[("N", group, cell, r)] = 1.0
        return e

    cells = [c for c in flow.loc[(flow["stage"] == "allocated") & (flow["group"] == "pilot"), "cell"].astype(str)]
    out = []
    for _, r in flow.iterrows():
        st, g, c, why = r["stage"], str(r["group"]), str(r["cell"]), str(r["reason"])
        e: dict[tuple, float]
        if st == "excluded":
            e = excl if why == "all reasons" else {("E", why): 1.0}
        elif st == "assessed" and g == "pilot":
            e = dict(excl)
            for cc in cells:
                e.update(parts("pilot", cc) if cc != "not yet allocated" else {("U",): 1.0})
        elif st == "assessed" or (st == "allocated" and c != "not yet allocated"):
            e = parts(g, c)
        elif st == "allocated":
            e = {("U",): 1.0}
        elif st == "lost_to_follow_up":
            e = {("L", g, c): 1.0}
        elif st == "not_analysed":
            e = {("N", g, c, why): 1.0}
        elif st == "analysed":
            e = {("S", g, c): 1.0}
        else:
            e = {(st, g, c, why): 1.0}
        out.append(e)
    return out


def _published_elsewhere(flow: pd.DataFrame) -> list[dict]:
    """Counts of the flow that other result tables publish in another form: per cell the families
    with the end score (``attrition.csv``: lost + not analysed + analysed minus the lost), all
    analysed families (the primary estimate's ``n`` in ``effects.csv`` and ``cea.csv``)."""
    cells = [str(c) for c in flow.loc[(flow["stage"] == "analysed") & (flow["group"] == "pilot"), "cell"]]
    exprs = _flow_expressions(flow)
    out = []
    for c in cells:
        m = (flow["group"] == "pilot") & (flow["cell"].astype(str) == c) & (flow["stage"] == "allocated")
        if m.any():
            e = dict(exprs[int(np.flatnonzero(m.to_numpy())[0])])
            e.pop(("L", "pilot", c), None)
            out.append(e)
    if cells:
        out.append({("S", "pilot", c): 1.0 for c in cells})
    return out


def _complements_of_not_analysed(flow: pd.DataFrame, hidden: set[int]) -> set[int]:
    """Rows to suppress so that no suppressed ``not_analysed`` count of a pilot cell follows from
    the families with the end score (published per cell in ``attrition.csv``) minus the other
    ``not_analysed`` counts and the analysed ones, nor the analysed count of a cell from their
    total (the primary estimate's ``n``).

    In a cell with a suppressed reason, the smallest other non-zero reason is suppressed too,
    or else the cell's ``analysed``; a cell whose ``analysed`` is suppressed needs a second one,
    in the cell with the smallest analysed count that has a non-zero reason to suppress with it
    (else a zero one: a reader may guess it, so it is the last resort).
    """
    out: set[int] = set()
    pilot = flow["group"] == "pilot"
    cells = list(dict.fromkeys(flow.loc[pilot & (flow["stage"] == "analysed"), "cell"].astype(str)))
    n = flow["n"].astype(float)

    def rows(cell: str, stage: str) -> list[int]:
        m = pilot & (flow["cell"].astype(str) == cell) & (flow["stage"] == stage)
        return list(flow.index[m])

    for c in cells:
        na = rows(c, "not_analysed")
        gone = [i for i in na if i in hidden | out]
        if not gone or len(gone) >= 2:
            continue
        others = sorted((i for i in na if i not in gone and n[i] > 0), key=lambda i: (n[i], i))
        out |= {others[0]} if others else set(rows(c, "analysed"))
    anal_hidden = [c for c in cells if set(rows(c, "analysed")) & (hidden | out)]
    if len(anal_hidden) == 1:
        # a cell with a non-zero reason to suppress along; else one with a zero (the last resort)
        spare = [c for c in cells if c not in anal_hidden and rows(c, "not_analysed")]
        if spare:
            c = min(spare, key=lambda c: (not any(n[i] > 0 for i in rows(c, "not_analysed")),
                                          float(n[rows(c, "analysed")].sum()), cells.index(c)))
            na = sorted(rows(c, "not_analysed"), key=lambda i: (n[i] == 0, n[i], i))
            out |= set(rows(c, "analysed")) | {na[0]}
    return out


def consort_table(flow: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """``results/consort.csv``: the flow with counts below ``min_cell`` shown as ``<k``.

    The counts add up (the exclusion reasons to their total; in every cell, allocated = lost +
    not analysed + analysed; assessed = excluded + allocated), so a small count could be got back
    by differencing. Further counts are suppressed (shown ``suppressed``) until none can: the
    complements of :func:`_complements_of_not_analysed`, then :func:`hbeval.disclosure.protect`
    over the flow's own relations (:func:`_flow_expressions`) with the counts that other tables
    publish (:func:`_published_elsewhere`), which are never chosen as complements here.
    """
    out = flow.copy().reset_index(drop=True)
    out["reason"] = out["reason"].fillna("").astype(str)
    own = _flow_expressions(out)
    ext = _published_elsewhere(out)

    def small(v: float) -> bool:
        return 0 < v < min_cell

    hidden = {i for i, v in enumerate(out["n"]) if small(v)}
    hidden |= _complements_of_not_analysed(out, hidden)
    values: list[float | None] = [None if i in hidden else float(v) for i, v in enumerate(out["n"])]
    ext_values: list[float | None] = []
    for e in ext:
        v = float(sum(out["n"].iloc[i] for i, x in enumerate(own) if len(x) == 1 and next(iter(x)) in e))
        ext_values.append(None if small(v) else _ELSEWHERE)
    prot = protect(own + ext, values + ext_values)
    hidden |= {j for j in prot.complementary if j < len(own)}
    out["n"] = [suppress_count(v, min_cell) if small(v) else (SECONDARY if i in hidden else suppress_count(v, min_cell))
                for i, v in enumerate(out["n"])]
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
    (:func:`~hbeval.privacy.pool_rare_levels`, the rule of every other text level).
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
