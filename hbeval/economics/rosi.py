"""ROSI — return on social investment — per pilot arm and per factor contrast.

The seeds' figure of merit (Siun sote / Sitra impact lab):

.. math:: ROSI = \\frac{A - I}{I}

with ``I`` the intervention costs and ``A`` the avoided costs. Here, per family and in
euros of the study's price year:

* ``I`` — incremental intervention costs: the mean of the categories named in
  ``economics.intervention_costs`` (default ``budget_spending``, ``staff_time``,
  ``teaming``) in the follow-up year, arm minus its comparator;
* gross avoided costs in year 1 — counterfactual minus actual service costs (every other
  category: by default ``usual_services``, ``purchased_services``, ``income_support``).
  Against the non-randomised comparison group the counterfactual is the arm's own
  pre-period cost moved by the comparison group's change (difference in differences):
  ``(S̄_R,fu − S̄_R,pre) − (S̄_T,fu − S̄_T,pre)``. For the randomised factor contrasts the
  other level is the counterfactual: ``S̄_R,fu − S̄_T,fu``;
* SROI adjustments (``study.toml [economics]``): ``A₁ = gross × (1 − deadweight) ×
  (1 − attribution) × (1 − displacement)``; years ``t = 0 … H−1`` of the horizon keep
  ``(1 − drop_off)^t`` of it and are discounted by ``(1 + r)^t`` (the first year is not
  discounted; the intervention is paid once, in the first year):
  ``A = A₁ Σ_t (1 − d)^t / (1 + r)^t``.

Against a comparison group the deadweight is already netted out by the comparison, so
its default is 0; a value entered is applied on top (and stated in the table).

A bootstrap CI resamples families within arms (cells and comparison group); a one-way
sensitivity analysis varies each parameter over a stated range (tornado plot). When the
incremental intervention cost is not positive the ratio has no meaning: ``rosi`` is empty
and ``rosi_note`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from hbeval.arms import CELLS, SEEDS
from hbeval.costs.engine import CATEGORIES, FamilyCosts, arm_labels, wide_family_costs
from hbeval.stats.bootstrap import bootstrap_arm_means

if TYPE_CHECKING:  # pragma: no cover
    from hbeval.study.store import Study

SEED_ROSI = SEEDS["rosi_bootstrap"]

#: comparisons of rosi.csv: name -> (treated arms, reference arms, method)
COMPARISONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    **{f"{c} vs comparison": ((c,), ("comparison",), "did") for c in CELLS},
    "pilot vs comparison": (CELLS, ("comparison",), "did"),
    "frame_shares vs frame_only": ((CELLS[2], CELLS[3]), (CELLS[0], CELLS[1]), "randomised"),
    "teaming vs no_teaming": ((CELLS[1], CELLS[3]), (CELLS[0], CELLS[2]), "randomised"),
}


def rosi(avoided: float | np.ndarray, intervention: float | np.ndarray) -> float | np.ndarray:
    """ROSI = (avoided − intervention) / intervention (a ratio: 0.42 is 42 %).

    Examples
    --------
    >>> rosi(142.0, 100.0)
    0.42
    """
    if np.ndim(avoided) == 0 and np.ndim(intervention) == 0:
        return (float(avoided) - float(intervention)) / float(intervention)
    a, i = np.asarray(avoided, dtype=float), np.asarray(intervention, dtype=float)
    return (a - i) / i


@dataclass(frozen=True)
class RosiParams:
    """The SROI adjustments and horizon (defaults as ``study.toml``)."""

    horizon_years: int = 1
    discount_rate: float = 0.035
    deadweight: float = 0.0
    attribution: float = 0.0
    displacement: float = 0.0
    drop_off: float = 0.0
    avoided_scale: float = 1.0  # sensitivity only: unit costs of the avoided services
    intervention_scale: float = 1.0  # sensitivity only: intervention costs

    def factor(self) -> float:
        """``(1−dw)(1−att)(1−disp) Σ_{t<H} (1−d)^t/(1+r)^t`` × ``avoided_scale``."""
        years = sum(((1 - self.drop_off) ** t) / ((1 + self.discount_rate) ** t) for t in range(int(self.horizon_years)))
        return (1 - self.deadweight) * (1 - self.attribution) * (1 - self.displacement) * years * self.avoided_scale

    @classmethod
    def from_config(cls, cfg) -> RosiParams:
        return cls(cfg.horizon_years, cfg.discount_rate, cfg.deadweight, cfg.attribution, cfg.displacement, cfg.drop_off)


def adjusted_rosi(gross_avoided: float | np.ndarray, intervention: float | np.ndarray,
                  params: RosiParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(avoided, intervention, rosi)`` after the adjustments of ``params`` (arrays; 0-d for scalars)."""
    a = np.asarray(gross_avoided, dtype=float) * params.factor()
    i = np.asarray(intervention, dtype=float) * params.intervention_scale
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(i > 0, (a - i) / np.where(i > 0, i, 1.0), np.nan)
    return a, i, r


@dataclass
class RosiInputs:
    """Per-arm mean costs and their bootstrap replicates."""

    arms: tuple[str, ...]
    sizes: dict[str, int]
    means: np.ndarray  # (arms, 3): intervention fu, service fu, service pre
    reps: np.ndarray  # (B, arms, 3)
    intervention_categories: tuple[str, ...]
    service_categories: tuple[str, ...]

    def gross(self, name: str, which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(gross_avoided, intervention)`` of comparison ``name`` (point or replicates)."""
        t, r, method = COMPARISONS[name]
        m = self.means if which is None else which
        idx = {a: k for k, a in enumerate(self.arms)}

        def pooled(arms: tuple[str, ...]) -> np.ndarray:
            tot = sum(self.sizes[a] for a in arms)
            return cast(np.ndarray, sum(m[..., idx[a], :] * (self.sizes[a] / tot) for a in arms))

        T, R = pooled(t), pooled(r)
        interv = T[..., 0] - R[..., 0]
        if method == "did":
            avoided = (R[..., 1] - R[..., 2]) - (T[..., 1] - T[..., 2])
        else:
            avoided = R[..., 1] - T[..., 1]
        return avoided, interv


def rosi_inputs(w: pd.DataFrame, intervention_categories: tuple[str, ...], n_reps: int,
                seed: int) -> RosiInputs:
    """Arm means and within-arm bootstrap replicates from wide per-family costs."""
    w = w[w["group"].isin(["pilot", "comparison"])].reset_index(drop=True)
    arm = arm_labels(w)
    keep = arm != ""
    w, arm = w[keep].reset_index(drop=True), arm[keep]
    ic = tuple(c for c in CATEGORIES if c in intervention_categories)
    sc = tuple(c for c in CATEGORIES if c not in intervention_categories)
    x = np.column_stack([
        w[[f"follow_up_{c}" for c in ic]].sum(axis=1).to_numpy(float) if ic else np.zeros(len(w)),
        w[[f"follow_up_{c}" for c in sc]].sum(axis=1).to_numpy(float) if sc else np.zeros(len(w)),
        w[[f"pre_{c}" for c in sc]].sum(axis=1).to_numpy(float) if sc else np.zeros(len(w)),
    ])
    arms = (*CELLS, "comparison")
    masks = {a: arm == a for a in arms}
    sizes = {a: int(masks[a].sum()) for a in arms}
    means = np.array([x[masks[a]].mean(axis=0) if sizes[a] else np.full(3, np.nan) for a in arms])
    reps = bootstrap_arm_means(x, arm, arms, n_reps, np.random.default_rng([seed, SEED_ROSI]))
    return RosiInputs(arms, sizes, means, reps, ic, sc)


def rosi_table(inp: RosiInputs, params: RosiParams, price_year: int, perspective: str,
               level: float = 0.95, *, min_cell: int) -> pd.DataFrame:
    """``rosi.csv`` from :func:`rosi_inputs` (one row per comparison; € per family)."""
    rows = []
    a = 1 - level
    for name, (t, r, method) in COMPARISONS.items():
        n_t, n_r = sum(inp.sizes[x] for x in t), sum(inp.sizes[x] for x in r)
        if n_t == 0 or n_r == 0:
            continue
        g, i = inp.gross(name)
        av, iv, ro = adjusted_rosi(g, i, params)
        gb, ib = inp.gross(name, inp.reps)
        _, _, rb = adjusted_rosi(gb, ib, params)
        ok = np.isfinite(rb)
        note = ""
        lo = hi = math.nan
        if not np.isfinite(ro):
            note = "incremental intervention cost is not positive: ROSI undefined"
        else:
            if ok.mean() < 1 - a / 2:
                note = f"CI not reported: {100 * (1 - ok.mean()):.1f} % of replicates have a non-positive intervention cost"
            else:
                lo, hi = np.quantile(rb[ok], [a / 2, 1 - a / 2])
        small = n_t < min_cell or n_r < min_cell
        rows.append({
            "comparison": name, "intervention_cost_eur": float(iv), "avoided_cost_eur": float(av), "rosi": float(ro),
            "ci_low": lo, "ci_high": hi, "horizon_years": params.horizon_years, "discount_rate": params.discount_rate,
            "deadweight": params.deadweight, "attribution": params.attribution, "drop_off": params.drop_off,
            "price_year": price_year, "displacement": params.displacement, "gross_avoided_year1_eur": float(g),
            "perspective": perspective, "intervention_categories": "+".join(inp.intervention_categories),
            "avoided_categories": "+".join(inp.service_categories),
            "avoided_method": ("difference in differences against the comparison group (pre-period)"
                               if method == "did" else "randomised: difference of follow-up means"),
            "unit": "EUR per family", "rosi_note": note if not small else "suppressed: fewer families than min_cell",
            "n_a": n_t, "n_b": n_r, "n_reps": len(rb),
        })
        if small:
            for c in ("intervention_cost_eur", "avoided_cost_eur", "rosi", "ci_low", "ci_high", "gross_avoided_year1_eur"):
                rows[-1][c] = math.nan
    cols = ["comparison", "intervention_cost_eur", "avoided_cost_eur", "rosi", "ci_low", "ci_high", "horizon_years",
            "discount_rate", "deadweight", "attribution", "drop_off", "price_year", "displacement",
            "gross_avoided_year1_eur", "perspective", "intervention_categories", "avoided_categories", "avoided_method",
            "unit", "rosi_note", "n_a", "n_b", "n_reps"]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("n_a", "n_b"):
        df[c] = [f"<{min_cell}" if 0 < v < min_cell else str(int(v)) for v in df[c]]
    for c in ("intervention_cost_eur", "avoided_cost_eur", "gross_avoided_year1_eur"):
        df[c] = df[c].round(2)
    for c in ("rosi", "ci_low", "ci_high"):
        df[c] = df[c].astype(float).round(6)
    return df


#: one-way sensitivity ranges: parameter -> (low, high)
SENSITIVITY_RANGES: dict[str, tuple[float, float]] = {
    "deadweight": (0.0, 0.3),
    "attribution": (0.0, 0.3),
    "displacement": (0.0, 0.2),
    "drop_off": (0.0, 0.5),
    "discount_rate": (0.0, 0.07),
    "horizon_years": (1, 5),
    "avoided_scale": (0.75, 1.25),
    "intervention_scale": (0.75, 1.25),
}


def rosi_sensitivity(inp: RosiInputs, params: RosiParams,
                     ranges: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """One-way sensitivity of ROSI: each parameter at its low and high value, the others
    at their base values.

    Returns
    -------
    DataFrame ``comparison, parameter, base_value, low_value, high_value, rosi_base,
    rosi_at_low, rosi_at_high, swing`` (``swing = |rosi_at_high − rosi_at_low|``), sorted
    by comparison and decreasing swing (the tornado's order).
    """
    ranges = ranges or SENSITIVITY_RANGES
    rows = []
    for name in COMPARISONS:
        t, r, _ = COMPARISONS[name]
        if sum(inp.sizes[x] for x in t) == 0 or sum(inp.sizes[x] for x in r) == 0:
            continue
        g, i = inp.gross(name)
        base = float(adjusted_rosi(g, i, params)[2])
        for p, (lo, hi) in ranges.items():
            vals = []
            for v in (lo, hi):
                kw = {p: int(v) if p == "horizon_years" else v}
                vals.append(float(adjusted_rosi(g, i, _replace(params, **kw))[2]))
            rows.append({"comparison": name, "parameter": p, "base_value": getattr(params, p), "low_value": lo,
                         "high_value": hi, "rosi_base": base, "rosi_at_low": vals[0], "rosi_at_high": vals[1],
                         "swing": abs(vals[1] - vals[0]) if all(np.isfinite(vals)) else math.nan})
    df = pd.DataFrame(rows, columns=["comparison", "parameter", "base_value", "low_value", "high_value", "rosi_base",
                                     "rosi_at_low", "rosi_at_high", "swing"])
    if len(df):
        df["_o"] = df["comparison"].map({c: k for k, c in enumerate(COMPARISONS)})
        df = df.sort_values(["_o", "swing", "parameter"], ascending=[True, False, True], kind="mergesort").drop(columns="_o")
    return df.reset_index(drop=True).round(6)


def _replace(p: RosiParams, **kw) -> RosiParams:
    from dataclasses import replace

    return replace(p, **kw)


# --------------------------------------------------------------------------- study glue
def _inputs_of(study: Study, n_reps: int | None = None, fc: FamilyCosts | None = None) -> RosiInputs:
    cfg = study.config
    reps = cfg.bootstrap_reps if n_reps is None else n_reps
    return rosi_inputs(wide_family_costs(study, fc), tuple(cfg.intervention_categories), reps, cfg.seed)


def rosi_results(study: Study, fc: FamilyCosts | None = None) -> pd.DataFrame:
    """``results/rosi.csv``: ROSI per pilot arm vs the comparison group and per factor
    contrast, with bootstrap CI, in euros of ``config.price_year`` per family."""
    cfg = study.config
    return rosi_table(_inputs_of(study, fc=fc), RosiParams.from_config(cfg), cfg.price_year, cfg.perspective,
                      min_cell=cfg.min_cell)


def rosi_sensitivity_results(study: Study, fc: FamilyCosts | None = None) -> pd.DataFrame:
    """``results/rosi_sensitivity.csv`` (the tornado's data)."""
    return rosi_sensitivity(_inputs_of(study, n_reps=0, fc=fc), RosiParams.from_config(study.config))  # point values only


# --------------------------------------------------------------------------- multiple imputation (issue 15)
#: suffix of the ``comparison`` label of the MI rows of ``rosi.csv``
MI_SUFFIX = " (multiple imputation)"
NOTE_MI_NOTHING_MISSING = ("multiple imputation: no follow-up cost is missing (register costs count for every family "
                           "whether or not its end score exists), so the imputed ROSI equals the complete-case row")


def rosi_mi_rows(rosi: pd.DataFrame, n_missing_costs: int, method: str) -> pd.DataFrame:
    """MI rows of ``rosi.csv`` for the randomised comparisons, labelled ``<comparison> (multiple
    imputation)``.

    ROSI uses costs only, and the register costs of :mod:`hbeval.costs.engine` exist for every
    family in its window, so the imputation of end scores does not enter it: with
    ``n_missing_costs == 0`` the MI row repeats the complete-case row (point and bootstrap CI)
    and ``rosi_note`` says so, so that the reader sees that the ROSI is unaffected by missing
    outcomes. Imputed follow-up costs (``n_missing_costs > 0``) are not pooled into ROSI yet:
    the row is then left empty and ``rosi_note`` says so.
    """
    randomised = [c for c, (_, _, how) in COMPARISONS.items() if how == "randomised"]
    out = rosi[rosi["comparison"].isin(randomised)].copy()
    out["comparison"] = out["comparison"] + MI_SUFFIX
    note = f"{NOTE_MI_NOTHING_MISSING} ({method})"
    if n_missing_costs:
        out[["intervention_cost_eur", "avoided_cost_eur", "rosi", "ci_low", "ci_high", "gross_avoided_year1_eur"]] = np.nan
        note = f"not computed: {n_missing_costs} follow-up costs are missing and ROSI does not pool imputed costs yet"
        out["rosi_note"] = ""
    out["rosi_note"] = [note if not str(n) else f"{n}; {note}" for n in out["rosi_note"].fillna("")]
    return out.reset_index(drop=True)
