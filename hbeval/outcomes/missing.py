"""Missing end scores: multiple imputation and the delta-adjusted tipping point (issue 15).

Study glue of :mod:`hbeval.stats.mi` for the randomised families:

* **Multiple imputation** (:func:`impute_outcome`). For each outcome of the primary and secondary
  families, chained equations impute, jointly, the end score, the start score (when some are
  missing) and the follow-up total cost (when some are missing; otherwise it is a predictor),
  from complete predictors: the cell indicators (so the imputations keep the interaction),
  stratum dummies and the pre-period total cost. Bayesian linear regression (mice's ``norm``),
  :data:`M_IMPUTATIONS` imputations, :data:`ITERATIONS` sweeps, seeded from
  ``[config.seed, SEEDS["multiple_imputation"]]`` and the outcome's position (one stream per
  outcome, so adding an outcome changes no other outcome's draws).
* **Rows of** ``effects.csv`` (:func:`mi_effect_rows`). The primary ANCOVA (end on
  ``frame_shares``, ``teaming``, start, stratum fixed effects, HC2) is fitted in every completed
  data set and its margins are pooled by Rubin's rules (Barnard–Rubin df, ``dfcom`` = residual
  df); ``spec`` = ``sensitivity``, the method named in ``method``.
* **Tipping point** (:func:`tipping_rows`). Under MNAR the families without an end score may do
  worse (or better) than MAR predicts: their imputed end scores are shifted by ``δ`` outcome
  points, (a) in the treated arm of the margin only, (b) in both arms in opposite directions
  (treated ``+δ``, untreated ``−δ``). The tipping point is the ``δ`` nearest 0, moving against
  the estimate, at which the primary conclusion changes: the 95 % CI of the margin comes to
  include 0 when it excluded it, or the pooled estimate changes sign when the CI already
  included 0. The same imputations are used for every ``δ`` (deterministic root-find,
  :func:`hbeval.stats.mi.tipping_point`). Reported in ``estimate`` (outcome points).

Nothing here is written per family: the rows are pooled estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hbeval.arms import CONTRASTS_MAIN, SEEDS
from hbeval.outcomes.frame import outcome_columns
from hbeval.privacy import suppress_count
from hbeval.stats.factorial import MIN_PER_CELL
from hbeval.stats.mi import AncovaFit, Imputations, RubinResult, TippingPoint, ancova_fit, mice, rubin, tipping_point
from hbeval.stats.ols import drop_singleton_strata, ols_fit, strata_dummies
from hbeval.stats.ri import blas_single_thread

M_IMPUTATIONS = 40
ITERATIONS = 10
IMPUTATION_METHOD = "norm"
SPEC_SENSITIVITY = "sensitivity"
SEED_MI = SEEDS["multiple_imputation"]
#: the families whose outcomes are imputed
MI_FAMILIES = ("primary", "secondary")
#: tipping-point scenarios: name -> (shift of the treated arm, shift of the untreated arm) per unit δ
SCENARIOS: dict[str, tuple[float, float]] = {"treated_arm": (1.0, 0.0), "both_arms_opposite": (1.0, -1.0)}
SCENARIO_TEXT = {
    "treated_arm": "imputed end scores of the treated arm's families without an end score shifted by delta",
    "both_arms_opposite": ("imputed end scores of the families without an end score shifted by delta in the treated arm "
                           "and by -delta in the other arm"),
}


def mi_method(m: int = M_IMPUTATIONS, iterations: int = ITERATIONS) -> str:
    """The ``method`` text of an MI row."""
    return (f"multiple imputation (chained equations, m={m}, {iterations} iterations, Bayesian linear regression "
            f"[mice norm]; Rubin's rules, Barnard-Rubin df); ancova_hc2")


def tipping_method(scenario: str, m: int = M_IMPUTATIONS) -> str:
    """The ``method`` text of a tipping-point row."""
    return (f"tipping point (delta adjustment under MNAR, {scenario.replace('_', ' ')}) of the multiple imputation "
            f"(chained equations, m={m}, Rubin's rules)")


@dataclass
class OutcomeImputation:
    """The imputations of one outcome for the randomised families (internal: per family)."""

    outcome: str
    client_id: np.ndarray
    frame_shares: np.ndarray  # 0/1
    teaming: np.ndarray  # 0/1
    stratum: np.ndarray
    cost_pre: np.ndarray
    imputations: Imputations  # columns "end", "cost" and, when some are missing, "start"
    start_observed: np.ndarray | None  # the complete start score when it is a predictor
    _design: tuple[np.ndarray, list[str]] | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return len(self.client_id)

    @property
    def n_missing_end(self) -> int:
        return self.n_missing("end")

    def n_missing(self, column: str) -> int:
        """How many entries of ``column`` (``end``, ``start``, ``cost``) were imputed (0 when it
        was not imputed)."""
        if column not in self.imputations.columns:
            return 0
        return int(self.imputations.missing[:, self.imputations.columns.index(column)].sum())

    def cea_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """``(cell, stratum, cost_pre, end, start, cost)`` for :func:`hbeval.economics.cea.cea_mi_rows`
        (``end``, ``start``, ``cost``: (m, n) completed)."""
        cell = (2 * self.frame_shares + self.teaming).astype(np.int64)
        return (cell, self.stratum, self.cost_pre, self.imputations.column("end"), self.start(),
                self.imputations.column("cost"))

    def start(self) -> np.ndarray | None:
        """(m, n) start scores (imputed where missing), or ``None`` when the outcome has none."""
        if "start" in self.imputations.columns:
            return self.imputations.column("start")
        if self.start_observed is None:
            return None
        return np.broadcast_to(self.start_observed, (self.imputations.m, self.n))

    def design(self) -> tuple[np.ndarray, list[str]]:
        """(m, n, p) primary ANCOVA designs ``[1, frame_shares, teaming, start, strata]`` (aliased
        columns dropped) and their names (built once). When the start score is not imputed every
        imputation has the same design, and the array is a read-only broadcast of one (n, p)
        design (no copy per imputation)."""
        if self._design is not None:
            return self._design
        S, snames = strata_dummies(self.stratum)
        st = self.start()
        m = self.imputations.m
        parts = [np.ones((self.n, 1)), self.frame_shares[:, None], self.teaming[:, None]]
        names = ["(Intercept)", "frame_shares", "teaming"]
        if st is not None:
            parts.append(st[0][:, None])
            names.append("start")
        parts.append(S)
        X0 = np.concatenate(parts, axis=1)
        keep = ols_fit(X0, np.zeros(self.n)).keep
        allnames = names + snames
        kept = [allnames[k] for k in keep]
        X2 = np.ascontiguousarray(X0[:, keep])
        if "start" in self.imputations.columns and "start" in kept:
            X = np.empty((m, self.n, len(keep)))  # one design per imputation: its start column differs
            X[:] = X2[None]
            X[:, :, kept.index("start")] = self.imputations.column("start")
        else:
            X = np.broadcast_to(X2[None], (m, self.n, len(keep)))
        self._design = (X, kept)
        return self._design

    def fit(self) -> AncovaFit:
        """The QR factors of :meth:`design` (computed once per call: keep the result while it is
        needed, e.g. over a tipping-point search, and let it go after)."""
        return ancova_fit(self.design()[0])


def _rand_sample(frame: pd.DataFrame, costs_wide: pd.DataFrame) -> pd.DataFrame:
    rand = frame[frame["cell"].notna()].sort_values("client_id", kind="mergesort").reset_index(drop=True)
    c = costs_wide[["client_id", "follow_up_total", "pre_total"]].copy()
    c["client_id"] = c["client_id"].astype(str)
    rand = rand.assign(client_id=rand["client_id"].astype(str)).merge(c, on="client_id", how="left")
    keep = drop_singleton_strata(np.ones(len(rand), bool), rand["stratum"].astype(str).to_numpy())
    return rand[keep].reset_index(drop=True)


def impute_outcome(frame: pd.DataFrame, costs_wide: pd.DataFrame, outcome: str, rng: np.random.Generator,
                   m: int = M_IMPUTATIONS, iterations: int = ITERATIONS) -> OutcomeImputation | None:
    """Chained-equations imputations of one outcome (with the follow-up cost, jointly) for the
    randomised families; ``None`` when the outcome has no end score or too few to impute from.

    ``frame`` is :func:`hbeval.outcomes.frame.outcome_frame`; ``costs_wide`` has ``client_id``,
    ``follow_up_total`` and ``pre_total`` (:attr:`hbeval.costs.engine.FamilyCosts.wide`).
    """
    rand = _rand_sample(frame, costs_wide)
    end_col, start_col = outcome_columns(rand, outcome)
    if end_col is None or not len(rand):
        return None
    end = pd.to_numeric(rand[end_col], errors="coerce").to_numpy(float)
    cell = rand["cell"].astype(int).to_numpy()
    counts = np.bincount(cell[np.isfinite(end)], minlength=4)
    if counts.min() < MIN_PER_CELL or np.nanstd(end) == 0:
        return None
    cost = pd.to_numeric(rand["follow_up_total"], errors="coerce").to_numpy(float)
    pre = pd.to_numeric(rand["pre_total"], errors="coerce").to_numpy(float)
    ok_pre = np.isfinite(pre)
    pre = np.where(ok_pre, pre, np.nanmean(pre) if ok_pre.any() else 0.0)
    stratum = rand["stratum"].astype(str).to_numpy()
    S, _ = strata_dummies(stratum)
    dummies = np.column_stack([(cell == k).astype(float) for k in (1, 2, 3)])
    X = np.column_stack([dummies, S, pre, (~ok_pre).astype(float)]) if (~ok_pre).any() else np.column_stack([dummies, S, pre])
    ycols, names = [end, cost], ["end", "cost"]
    start_obs = None
    if start_col is not None:
        start = pd.to_numeric(rand[start_col], errors="coerce").to_numpy(float)
        if np.isfinite(start).all():
            X = np.column_stack([X, start])
            start_obs = start
        else:
            ycols.append(start)
            names.append("start")
    try:
        imp = mice(np.column_stack(ycols), X, rng, m=m, iterations=iterations, method=IMPUTATION_METHOD,
                   columns=tuple(names))
    except (ValueError, np.linalg.LinAlgError):
        return None
    return OutcomeImputation(outcome, rand["client_id"].to_numpy(str), (cell // 2).astype(float), (cell % 2).astype(float),
                             stratum, pre, imp, start_obs)


def pooled_margin(oi: OutcomeImputation, contrast: str, shift: np.ndarray | None = None, fit: AncovaFit | None = None
                  ) -> RubinResult:
    """Rubin's-rules margin ``contrast`` (``frame_shares`` or ``teaming``) of the primary ANCOVA
    (HC2) over the completed data sets; ``shift`` (n,) is added to the imputed end scores;
    ``fit`` is ``oi.fit()`` when the caller already has it."""
    X, names = oi.design()
    y = oi.imputations.column("end")
    if shift is not None:
        y = y + np.where(oi.imputations.missing[:, oi.imputations.columns.index("end")], shift, 0.0)[None, :]
    L = np.zeros(X.shape[2])
    L[names.index(contrast)] = 1.0
    est, var, df = (fit if fit is not None else oi.fit()).contrast(y, L, se_type="HC2")
    return rubin(est, var, dfcom=df)


def scenario_shift(oi: OutcomeImputation, contrast: str, scenario: str) -> np.ndarray:
    """Per family, the shift per unit ``δ`` of scenario ``scenario`` for margin ``contrast``."""
    treated = oi.frame_shares if contrast == "frame_shares" else oi.teaming
    a, b = SCENARIOS[scenario]
    return np.where(treated == 1, a, b)


def _conclusion_statistic(r: RubinResult) -> tuple[str, float]:
    lo, hi = r.ci()
    if lo > 0:
        return "ci_low", lo
    if hi < 0:
        return "ci_high", hi
    return "estimate", r.estimate


def find_tipping_point(oi: OutcomeImputation, contrast: str, scenario: str, step: float | None = None,
                       max_shift: float | None = None, fit: AncovaFit | None = None) -> tuple[TippingPoint, str]:
    """The tipping point of margin ``contrast`` under ``scenario`` and which statistic crosses 0
    (``ci_low``/``ci_high`` when the MI interval excludes 0, else ``estimate``).

    The search moves against the estimate (``δ`` of the opposite sign) in steps of ``step``
    (default 1/20 of the SD of the observed end scores) up to ``max_shift`` (default 10 SDs).
    The design is factorised once for the whole search (``fit``, or ``oi.fit()``).
    """
    fit = fit if fit is not None else oi.fit()
    base = pooled_margin(oi, contrast, fit=fit)
    which, _ = _conclusion_statistic(base)
    unit = scenario_shift(oi, contrast, scenario)
    end = oi.imputations.column("end")[0][~oi.imputations.missing[:, oi.imputations.columns.index("end")]]
    sd = float(np.std(end, ddof=1)) if len(end) > 1 else 1.0
    step = step if step is not None else sd / 20
    max_shift = max_shift if max_shift is not None else 10 * sd

    def stat(delta: float) -> float:
        r = pooled_margin(oi, contrast, unit * delta, fit=fit)
        if which == "estimate":
            return r.estimate
        lo, hi = r.ci()
        return lo if which == "ci_low" else hi

    direction = -1.0 if base.estimate > 0 else 1.0
    return tipping_point(stat, direction, max_shift, step), which


# ---------------------------------------------------------------------------- rows of effects.csv
def _row(family: str, outcome: str, contrast: str, n: int, method: str, note: str, min_cell: int,
         r: RubinResult | None = None, estimate: float = math.nan) -> dict:
    lo, hi = r.ci() if r is not None else (math.nan, math.nan)
    return {"family": family, "outcome": outcome, "contrast": contrast,
            "estimate": r.estimate if r is not None else estimate, "std_error": r.std_error if r is not None else math.nan,
            "ci_low": lo, "ci_high": hi, "p_value": r.p_value if r is not None else math.nan,
            "n": suppress_count(n, min_cell), "method": method, "spec": SPEC_SENSITIVITY, "note": note or np.nan,
            "df": r.df if r is not None else math.nan, "baseline": "start"}


def imputed_note(oi: OutcomeImputation, min_cell: int) -> str:
    k = oi.n_missing_end
    parts = [f"{suppress_count(k, min_cell)} of {suppress_count(oi.n, min_cell)} randomised families' end scores imputed"]
    for col, what in (("start", "start scores"), ("cost", "follow-up costs")):
        if col in oi.imputations.columns:
            j = int(oi.imputations.missing[:, oi.imputations.columns.index(col)].sum())
            if j:
                parts.append(f"{suppress_count(j, min_cell)} {what} imputed")
    return "; ".join(parts)


def study_imputations(frame: pd.DataFrame, costs_wide: pd.DataFrame, families: dict[str, list[str]], seed: int,
                      m: int = M_IMPUTATIONS, iterations: int = ITERATIONS) -> dict[str, OutcomeImputation | None]:
    """The imputations of every outcome of :data:`MI_FAMILIES`, each from its own stream
    ``default_rng([seed, SEED_MI, k])`` (``k`` its position)."""
    out: dict[str, OutcomeImputation | None] = {}
    k = 0
    for fam in MI_FAMILIES:
        for outcome in families.get(fam, []):
            if outcome in out:
                continue
            out[outcome] = impute_outcome(frame, costs_wide, outcome, np.random.default_rng([seed, SEED_MI, k]), m, iterations)
            k += 1
    return out


def mi_effect_rows(imps: dict[str, OutcomeImputation | None], families: dict[str, list[str]], *, min_cell: int,
                   m: int = M_IMPUTATIONS, iterations: int = ITERATIONS) -> pd.DataFrame:
    """MI rows of ``effects.csv``: the margins of every imputed outcome (``spec`` = ``sensitivity``)."""
    rows = []
    for fam in MI_FAMILIES:
        for outcome in families.get(fam, []):
            oi = imps.get(outcome)
            fit = None  # the previous outcome's factors go before this one's are computed
            fit = oi.fit() if oi is not None else None
            for c in CONTRASTS_MAIN:
                if oi is None:
                    rows.append(_row(fam, outcome, c, 0, mi_method(m, iterations) + " (not estimable)",
                                     "not estimable: too few end scores to impute from", min_cell))
                    continue
                r = pooled_margin(oi, c, fit=fit)
                small = oi.n < min_cell
                rows.append(_row(fam, outcome, c, oi.n, mi_method(m, iterations), imputed_note(oi, min_cell), min_cell,
                                 None if small else r))
    return pd.DataFrame(rows)


def tipping_rows(imps: dict[str, OutcomeImputation | None], primary: str, mic: float, *, min_cell: int,
                 m: int = M_IMPUTATIONS) -> pd.DataFrame:
    """Tipping-point rows of ``effects.csv`` for the primary outcome's margins, one per scenario:
    ``estimate`` = the shift ``δ`` in outcome points (empty when none within ±10 SDs)."""
    oi = imps.get(primary)
    fit = oi.fit() if oi is not None and oi.n >= min_cell and oi.n_missing_end else None
    rows = []
    for c in CONTRASTS_MAIN:
        for sc in SCENARIOS:
            method = tipping_method(sc, m)
            if oi is None or oi.n < min_cell:
                rows.append(_row("primary", primary, c, 0 if oi is None else oi.n, method + " (not estimable)",
                                 "not estimable: too few end scores to impute from", min_cell))
                continue
            if oi.n_missing_end == 0:
                rows.append(_row("primary", primary, c, oi.n, method, "no end score is missing: nothing to shift", min_cell))
                continue
            tp, which = find_tipping_point(oi, c, sc, fit=fit)
            arm = c
            what = {"ci_low": "the 95 % CI of the margin comes to include 0 (its lower bound reaches 0)",
                    "ci_high": "the 95 % CI of the margin comes to include 0 (its upper bound reaches 0)",
                    "estimate": "the pooled estimate changes sign (its 95 % CI already included 0)"}[which]
            note = (f"{SCENARIO_TEXT[sc]} (treated arm: {arm}); the conclusion changes when {what}; "
                    f"estimate = delta in outcome points (MIC {mic:g})")
            if not tp.found:
                note += f"; no tipping point within |delta| <= {tp.searched_to:.4g}"
            rows.append(_row("primary", primary, c, oi.n, method, note, min_cell, estimate=tp.shift))
    return pd.DataFrame(rows)


def missing_data_rows(frame: pd.DataFrame, costs_wide: pd.DataFrame, config) -> tuple[pd.DataFrame, dict[str, OutcomeImputation | None]]:
    """Every MI and tipping-point row of ``effects.csv`` (columns of the table it is appended to
    are filled by the caller) and the imputations (the primary outcome's feed the CEA's MI row)."""
    with blas_single_thread():  # small batched products: BLAS threads only add overhead
        imps = study_imputations(frame, costs_wide, config.families, config.seed)
        rows = pd.concat([mi_effect_rows(imps, config.families, min_cell=config.min_cell),
                          tipping_rows(imps, config.primary, config.mic, min_cell=config.min_cell)], ignore_index=True)
    return rows, imps
