"""Cost-effectiveness from trial data: ΔC, ΔE, ICER with Fieller and bootstrap CIs, the CE
plane, the CEAC, the incremental net benefit and the net-monetary-benefit regression.

Estimands (one per contrast of ``effects.csv``):

* ``ΔE`` — the primary outcome's end score under the contract's primary specification:
  OLS of the end score on ``frame_shares``, ``teaming``, the start score and stratum fixed
  effects (margins); the same with the product term for the interaction and the
  inside-the-table cells; ``pilot_vs_comparison`` is an ANCOVA with a ``pilot`` indicator,
  the start score and stratum fixed effects (a regression adjustment only: the
  propensity-weighted estimate is in ``comparison.csv``).
* ``ΔC`` — total follow-up cost per family (every category of :mod:`hbeval.costs.engine`), with
  the same models, the pre-period total cost taking the place of the start score.

The sample is the families with both scores of the primary outcome (the ``n`` of
``effects.csv``) and singleton strata left out, so costs and effects come from the same
families and their correlation is kept.

Uncertainty. The bootstrap resamples families within arms (the four cells and the
comparison group) ``n_reps`` times; each replicate refits every model, vectorised: the
replicate's cross-products are assembled from its resampling counts summed over the cells
arm × stratum (and from the counts times the baselines, the outcomes and their products),
drawn a memory-bounded chunk of replicates at a time (:func:`hbeval.stats.bootstrap.bootstrap_counts`),
and the normal equations of the replicates are solved as a batch. The ICER's bootstrap
CIs are taken on the angle ``atan2(ΔC, ΔE)`` around the point estimate (the ICER is
``tan`` of it, monotone on each half-plane), so a cloud that crosses ``ΔE = 0`` gives an
interval reported as unbounded rather than a misleading number (Glick et al. 2014,
*Economic Evaluation in Clinical Trials*, ch. 7). BCa uses the jackknife acceleration
of the angle (leave-one-out OLS coefficients in closed form). Fieller's interval uses the
HC2 sandwich variances and covariance of ``ΔC`` and ``ΔE`` (the fits and the sandwich are those
of :mod:`hbeval.stats.ols`, the estimator of ``effects.csv``).

A dominated (``ΔE < 0, ΔC > 0``) or dominant (``ΔE > 0, ΔC < 0``) or undefined
(``ΔE = 0``) ICER is reported as such: ``icer`` empty and ``icer_note`` saying which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hbeval.arms import CELLS, SEEDS
from hbeval.costs.engine import CONTRASTS, FamilyCosts, wide_family_costs
from hbeval.stats.dist import t_ppf, t_sf
from hbeval.stats.icer import bootstrap_ols, fieller_interval, icer_bootstrap_ci, icer_point, quadrant
from hbeval.stats.mi import pool_covariance, rubin
from hbeval.stats.ols import LinearFit, drop_singleton_strata, hc2_cov_full, jackknife_coef, ols_fit, strata_dummies
from hbeval.stats.ri import blas_single_thread
from hbeval.study.scoring import score

if TYPE_CHECKING:  # pragma: no cover
    from hbeval.study.store import Study

SEED_CEA = SEEDS["cea_bootstrap"]
Z95 = 1.959963984540054


# --------------------------------------------------------------------------- analysis
@dataclass
class ContrastCE:
    contrast: str
    n: int
    delta_cost: float
    delta_effect: float
    var_cost: float
    var_effect: float
    cov: float
    reps_cost: np.ndarray
    reps_effect: np.ndarray
    jack_cost: np.ndarray
    jack_effect: np.ndarray
    nmb: dict[float, tuple[float, float, float, float]] = field(default_factory=dict)  # λ -> est, lo, hi, p


@dataclass
class CEAResult:
    """Everything of a CEA: per-contrast estimates and replicates, and the tables."""

    contrasts: dict[str, ContrastCE]
    wtp: tuple[float, ...]
    wtp_reference: float
    level: float
    n_reps: int
    outcome: str
    min_cell: int

    def quadrant_shares(self, contrast: str) -> dict[str, float]:
        c = self.contrasts[contrast]
        q = np.where(c.reps_effect > 0, np.where(c.reps_cost > 0, "NE", "SE"),
                     np.where(c.reps_effect < 0, np.where(c.reps_cost >= 0, "NW", "SW"), "none"))
        return {k: float(np.mean(q == k)) for k in ("NE", "SE", "SW", "NW")}

    def to_frame(self) -> pd.DataFrame:
        """``cea.csv``: one row per contrast and interval method."""
        rows = []
        a = 1 - self.level
        lam = self.wtp_reference
        for name, c in self.contrasts.items():
            icer, note = icer_point(c.delta_cost, c.delta_effect)
            shares = self.quadrant_shares(name)
            inb_reps = lam * c.reps_effect - c.reps_cost
            base = {
                "contrast": name, "delta_cost_eur": c.delta_cost, "delta_effect": c.delta_effect, "icer": icer,
                "icer_note": note, "quadrant": quadrant(c.delta_cost, c.delta_effect),
                "delta_cost_ci_low": np.quantile(c.reps_cost, a / 2), "delta_cost_ci_high": np.quantile(c.reps_cost, 1 - a / 2),
                "delta_effect_ci_low": np.quantile(c.reps_effect, a / 2),
                "delta_effect_ci_high": np.quantile(c.reps_effect, 1 - a / 2),
                "share_ne": shares["NE"], "share_se": shares["SE"], "share_sw": shares["SW"], "share_nw": shares["NW"],
                "wtp_reference_eur": lam, "inb_eur": lam * c.delta_effect - c.delta_cost,
                "inb_ci_low": np.quantile(inb_reps, a / 2), "inb_ci_high": np.quantile(inb_reps, 1 - a / 2),
                "prob_cost_effective": float(np.mean(inb_reps > 0)),
                "n": c.n, "n_reps": self.n_reps, "outcome": self.outcome,
            }
            cis = {"fieller": fieller_interval(c.delta_cost, c.delta_effect, c.var_cost, c.var_effect, c.cov, self.level)}
            cis.update(icer_bootstrap_ci(c.delta_cost, c.delta_effect, c.reps_cost, c.reps_effect, self.level,
                                         c.jack_cost, c.jack_effect))
            for method in ("fieller", "bootstrap_percentile", "bootstrap_bca"):
                lo, hi, cnote = cis[method]
                if math.isnan(icer):  # dominant, dominated or undefined: no misleading interval either
                    lo, hi = math.nan, math.nan
                    cnote = "not reported: " + note.split(":")[0]
                rows.append({**base, "icer_ci_low": lo, "icer_ci_high": hi, "ci_method": method, "ci_note": cnote})
        df = pd.DataFrame(rows)
        cols = ["contrast", "delta_cost_eur", "delta_effect", "icer", "icer_ci_low", "icer_ci_high", "ci_method",
                "icer_note", "ci_note", "quadrant", "delta_cost_ci_low", "delta_cost_ci_high", "delta_effect_ci_low",
                "delta_effect_ci_high", "share_ne", "share_se", "share_sw", "share_nw", "wtp_reference_eur", "inb_eur",
                "inb_ci_low", "inb_ci_high", "prob_cost_effective", "n", "n_reps", "outcome"]
        df = df[cols] if len(df) else pd.DataFrame(columns=cols)
        return _round(_suppress(df, self.min_cell))

    def ceac_frame(self) -> pd.DataFrame:
        """``ceac.csv``: probability cost-effective and INB over the WTP grid, plus the
        net-monetary-benefit regression's INB with its HC2 CI."""
        rows = []
        a = 1 - self.level
        for name, c in self.contrasts.items():
            for lam in self.wtp:
                inb = lam * c.reps_effect - c.reps_cost
                est, lo, hi, p = c.nmb.get(float(lam), (np.nan,) * 4)
                rows.append({"contrast": name, "wtp_eur": float(lam), "prob_cost_effective": float(np.mean(inb > 0)),
                             "inb_eur": lam * c.delta_effect - c.delta_cost, "inb_ci_low": np.quantile(inb, a / 2),
                             "inb_ci_high": np.quantile(inb, 1 - a / 2), "nmb_reg_inb_eur": est, "nmb_reg_ci_low": lo,
                             "nmb_reg_ci_high": hi, "nmb_reg_p_value": p, "n": c.n})
        cols = ["contrast", "wtp_eur", "prob_cost_effective", "inb_eur", "inb_ci_low", "inb_ci_high", "nmb_reg_inb_eur",
                "nmb_reg_ci_low", "nmb_reg_ci_high", "nmb_reg_p_value", "n"]
        df = pd.DataFrame(rows, columns=cols)
        return _round(_suppress(df, self.min_cell))


def _suppress(df: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    df = df.copy()
    small = (df["n"] > 0) & (df["n"] < min_cell)
    num = [c for c in df.columns if c not in ("contrast", "ci_method", "icer_note", "ci_note", "quadrant", "outcome", "n",
                                              "wtp_eur", "wtp_reference_eur", "n_reps")]
    df[num] = df[num].astype(float)
    df.loc[small, num] = np.nan
    df["n"] = [f"<{min_cell}" if 0 < v < min_cell else str(int(v)) for v in df["n"]]
    return df


def _round(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in df.columns:
        if df[c].dtype.kind == "f":
            df[c] = df[c].round(6 if c.startswith(("delta_effect", "share", "prob")) or c.endswith("p_value") else 4)
    return df


def cea_analysis(data: pd.DataFrame, wtp: tuple[float, ...] | list[float],
                 wtp_reference: float, n_reps: int, seed: int, level: float = 0.95,
                 outcome: str = "outcome", *, min_cell: int) -> CEAResult:
    """Cost-effectiveness of every contrast from family-level data.

    Parameters
    ----------
    data : one row per family with ``group`` (``pilot``/``comparison``), ``cell``
        (``<frame_arm>/<teaming_arm>`` for pilot families), ``stratum``, ``cost`` (follow-up
        total), ``cost_pre`` (pre-period total), ``start`` and ``end`` (primary outcome).
    wtp : the willingness-to-pay grid (€ per point) for the CEAC and NMB regression.
    n_reps : bootstrap replicates (≥ 5,000 recommended), resampled within arms.

    Returns
    -------
    :class:`CEAResult` (``to_frame()`` → ``cea.csv``, ``ceac_frame()`` → ``ceac.csv``).

    Notes
    -----
    Net-monetary-benefit regression (Hoch, Briggs & Willan 2002, Health Econ 11:415):
    ``NMB_i(λ) = λ E_i − C_i`` regressed on the contrast's design, both baselines (start
    score and pre-period cost) and stratum fixed effects; the coefficient is the INB at
    ``λ``, with HC2 standard errors and a t interval.
    """
    with blas_single_thread():  # skinny products (n × p, p ≈ 30): BLAS threads only add overhead
        return _cea_analysis(data, wtp, wtp_reference, n_reps, seed, level, outcome, min_cell)


def _cea_analysis(data: pd.DataFrame, wtp, wtp_reference: float, n_reps: int, seed: int, level: float, outcome: str,
                  min_cell: int) -> CEAResult:
    rng = np.random.default_rng([seed, SEED_CEA])
    d = data.reset_index(drop=True)
    group = d["group"].astype(object).to_numpy()
    cell = d["cell"].astype(object).to_numpy()
    cell = np.array([c if isinstance(c, str) else "" for c in cell], dtype=object)
    stratum = d["stratum"].astype(object).to_numpy()
    ok = np.isfinite(d["end"].to_numpy(float)) & np.isfinite(d["start"].to_numpy(float)) & np.isfinite(d["cost"].to_numpy(float))
    ok &= np.isfinite(d["cost_pre"].to_numpy(float))
    contrasts: dict[str, ContrastCE] = {}
    samples = {
        "randomised": ok & (group == "pilot") & np.isin(cell, CELLS),
        "pilot_vs_comparison": ok & (((group == "pilot") & np.isin(cell, CELLS)) | (group == "comparison")),
    }
    for sname, m in samples.items():
        m = drop_singleton_strata(m, stratum)
        sub = d[m]
        n = int(m.sum())
        if n == 0:
            continue
        arm = np.where(group[m] == "comparison", "comparison", cell[m])
        S, _ = strata_dummies(stratum[m])
        one = np.ones(n)
        E, E0 = sub["end"].to_numpy(float), sub["start"].to_numpy(float)
        C, C0 = sub["cost"].to_numpy(float), sub["cost_pre"].to_numpy(float)
        if sname == "randomised":
            if len(set(arm)) < 4:
                continue
            fs = np.isin(arm, CELLS[2:]).astype(float)
            tm = np.isin(arm, (CELLS[1], CELLS[3])).astype(float)
            models = {"main": np.column_stack([one, fs, tm]), "inter": np.column_stack([one, fs, tm, fs * tm])}
            spec = {
                "frame_shares": ("main", [0, 1, 0]),
                "teaming": ("main", [0, 0, 1]),
                "frame_shares:teaming": ("inter", [0, 0, 0, 1]),
                "cell:frame_only/teaming": ("inter", [0, 0, 1, 0]),
                "cell:frame_shares/no_teaming": ("inter", [0, 1, 0, 0]),
                "cell:frame_shares/teaming": ("inter", [0, 1, 1, 1]),
            }
        else:
            if (arm == "comparison").sum() == 0 or (arm != "comparison").sum() == 0:
                continue
            models = {"pvc": np.column_stack([one, (arm != "comparison").astype(float)])}
            spec = {"pilot_vs_comparison": ("pvc", [0, 1])}
        designs, ys, keys = [], [], []
        fits: dict[tuple[str, str], LinearFit] = {}
        for mk, D in models.items():
            for outc, y, base in (("cost", C, C0), ("effect", E, E0)):
                X = np.column_stack([D, base, S])
                designs.append(X)
                ys.append(y)
                keys.append((mk, outc))
                fits[(mk, outc)] = ols_fit(X, y)
        boots = dict(zip(keys, bootstrap_ols(designs, ys, arm, n_reps, rng, groups=stratum[m])))
        per_model: dict[str, tuple] = {}
        for cname, (mk, wv) in spec.items():
            L = np.zeros(models[mk].shape[1] + 1 + S.shape[1])
            L[: len(wv)] = wv
            fc, fe = fits[(mk, "cost")], fits[(mk, "effect")]
            if mk not in per_model:  # everything that depends on the model only, once
                Xn = np.column_stack([models[mk], E0, C0, S])  # NMB regression: both baselines
                fE, fC = ols_fit(Xn, E), ols_fit(Xn, C)
                dfree = max(n - np.linalg.matrix_rank(Xn), 1)
                per_model[mk] = (
                    (hc2_cov_full(fc, fill=0.0), hc2_cov_full(fe, fill=0.0), hc2_cov_full(fc, fe, fill=0.0)),
                    fc.embed(jackknife_coef(fc), 0.0), fe.embed(jackknife_coef(fe), 0.0),
                    fE.embed(fE.coef, 0.0), fC.embed(fC.coef, 0.0),
                    (hc2_cov_full(fE, fill=0.0), hc2_cov_full(fE, fC, fill=0.0), hc2_cov_full(fC, fill=0.0)), dfree,
                )
            (Vcc, Vee, Vce), jkc, jke, bE, bC, (Qee, Qec, Qcc), dfree = per_model[mk]
            jc, je = jkc @ L, jke @ L
            okj = np.isfinite(jc) & np.isfinite(je)
            cc = ContrastCE(
                contrast=cname, n=n, delta_cost=float(L @ fc.embed(fc.coef, 0.0)), delta_effect=float(L @ fe.embed(fe.coef, 0.0)),
                var_cost=float(L @ Vcc @ L), var_effect=float(L @ Vee @ L), cov=float(L @ Vce @ L),
                reps_cost=boots[(mk, "cost")] @ L, reps_effect=boots[(mk, "effect")] @ L,
                jack_cost=jc[okj], jack_effect=je[okj],
            )
            Ln = np.zeros(len(bE))
            Ln[: len(wv)] = wv
            tq = t_ppf(0.5 + level / 2, dfree)
            qee, qec, qcc = float(Ln @ Qee @ Ln), float(Ln @ Qec @ Ln), float(Ln @ Qcc @ Ln)
            for lam in wtp:
                # NMB_i = λE_i − C_i: coefficients λb_E − b_C; its HC2 meat is quadratic in λ
                est = float(Ln @ (lam * bE - bC))
                se = float(np.sqrt(max(lam * lam * qee - 2 * lam * qec + qcc, 0.0)))
                p = float(2 * t_sf(abs(est) / se, dfree)) if se > 0 else np.nan
                cc.nmb[float(lam)] = (est, est - tq * se, est + tq * se, p)
            contrasts[cname] = cc
    order = {c: i for i, c in enumerate(CONTRASTS)}
    contrasts = dict(sorted(contrasts.items(), key=lambda kv: order.get(kv[0], 99)))
    return CEAResult(contrasts, tuple(float(w) for w in wtp), float(wtp_reference), level, n_reps, outcome, min_cell)


# --------------------------------------------------------------------------- study glue
def cea_data(study: Study, fc: FamilyCosts | None = None) -> pd.DataFrame:
    """Family-level inputs of :func:`cea_analysis` (internal: one row per family)."""

    cfg = study.config
    w = wide_family_costs(study, fc)
    sc = score(study.table("measurements"), cfg.instruments)
    prim = cfg.primary
    cols = {f"{prim}_start": "start", f"{prim}_end": "end"}
    sc = sc.reindex(columns=list(cols)).rename(columns=cols)
    sc.index = sc.index.astype(str)
    d = w[["client_id", "group", "cell", "stratum", "follow_up_total", "pre_total"]].rename(
        columns={"follow_up_total": "cost", "pre_total": "cost_pre"})
    d = d.merge(sc, left_on="client_id", right_index=True, how="left")
    return d[d["group"].isin(["pilot", "comparison"])].sort_values("client_id", kind="mergesort").reset_index(drop=True)


def cea_analysis_of(study: Study, fc: FamilyCosts | None = None) -> CEAResult:
    """The :class:`CEAResult` of a study (≥ 5,000 replicates, seeded from ``config.seed``):
    ``hbeval.pipeline`` computes it once, writes ``cea.csv``/``ceac.csv`` from it and the CE
    plane's replicates (:func:`ce_plane_replicates`)."""
    cfg = study.config
    return cea_analysis(cea_data(study, fc), cfg.wtp_eur, cfg.wtp_reference_eur, max(cfg.bootstrap_reps, 5000),
                        cfg.seed, outcome=cfg.primary, min_cell=cfg.min_cell)


def cea_results(study: Study, fc: FamilyCosts | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(cea.csv, ceac.csv)`` of a study (≥ 5,000 replicates, seeded from ``config.seed``)."""
    res = cea_analysis_of(study, fc)
    return res.to_frame(), res.ceac_frame()


# --------------------------------------------------------------------------- replicates of the CE plane
#: replicates per contrast that ``replicates/ce_plane.csv`` keeps (what the report's CE plane draws)
CE_PLANE_POINTS = 2000
CE_PLANE_FILE = "replicates/ce_plane.csv"


def ce_plane_replicates(result: CEAResult, max_per_contrast: int = CE_PLANE_POINTS) -> pd.DataFrame:
    """The first ``max_per_contrast`` bootstrap replicates of ΔC and ΔE of every contrast that
    ``cea.csv`` reports (contrasts it suppresses are left out), in the order they were drawn.

    Columns ``contrast``, ``replicate`` (0, 1, ...), ``delta_cost``, ``delta_effect``.
    """
    parts = []
    for name, c in result.contrasts.items():
        if 0 < c.n < result.min_cell:
            continue
        k = min(max_per_contrast, len(c.reps_cost))
        parts.append(pd.DataFrame({"contrast": name, "replicate": np.arange(k), "delta_cost": c.reps_cost[:k],
                                   "delta_effect": c.reps_effect[:k]}))
    cols = ["contrast", "replicate", "delta_cost", "delta_effect"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def write_ce_plane_replicates(replicates: pd.DataFrame, out: Path) -> Path:
    """Write ``out/replicates/ce_plane.csv`` (:func:`ce_plane_replicates` of the study's CEA) for
    the report's CE planes. Not a result table: ``manifest.json`` does not hash it. Floats are
    written in full, so the plane drawn from the file is the plane drawn from the replicates."""
    path = Path(out) / CE_PLANE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    replicates.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- multiple imputation (issue 15)
#: ``ci_method`` of the MI rows of ``cea.csv``
CI_METHOD_MI = "fieller_multiple_imputation"


def cea_mi_rows(cell: np.ndarray, stratum: np.ndarray, cost_pre: np.ndarray, end: np.ndarray, start: np.ndarray | None,
                cost: np.ndarray, method: str, wtp_reference: float, level: float, outcome: str,
                min_cell: int) -> pd.DataFrame:
    """MI rows of ``cea.csv``: ΔC, ΔE, ICER and Fieller's interval of every randomised contrast
    from ``m`` completed data sets, pooled by Rubin's rules (``ci_method`` = :data:`CI_METHOD_MI`).

    Parameters
    ----------
    cell : (n,) cell codes 0–3 of the randomised families (every one, imputed or not)
    stratum, cost_pre : (n,) stratum labels and pre-period total costs (complete)
    end, start, cost : (m, n) completed end score, start score (``None``: no baseline) and
        follow-up total cost, imputed jointly (:mod:`hbeval.outcomes.missing`)
    method : the imputation's description, written into ``ci_note``

    Notes
    -----
    In each completed data set the models of :func:`cea_analysis` (the primary ANCOVA for ΔE, the
    same with the pre-period cost for ΔC; HC2 covariance and cross-covariance) give
    ``(ΔC_l, ΔE_l)`` and ``U_l``; Rubin's rules give ``(ΔC, ΔE)`` = their mean and
    ``T = Ū + (1 + 1/m) B`` (:func:`hbeval.stats.mi.pool_covariance`), on which Fieller's
    interval is taken. ΔC, ΔE and the INB at ``wtp_reference`` have t intervals on the
    Barnard–Rubin df (:func:`hbeval.stats.mi.rubin`). No bootstrap: quadrant shares and the
    probability of cost-effectiveness are left empty.
    """
    with blas_single_thread():  # m × 4 skinny fits: BLAS threads only add overhead
        return _cea_mi_rows(cell, stratum, cost_pre, end, start, cost, method, wtp_reference, level, outcome, min_cell)


def _cea_mi_rows(cell: np.ndarray, stratum: np.ndarray, cost_pre: np.ndarray, end: np.ndarray, start: np.ndarray | None,
                 cost: np.ndarray, method: str, wtp_reference: float, level: float, outcome: str,
                 min_cell: int) -> pd.DataFrame:
    m, n = end.shape
    fs, tm = (cell // 2).astype(float), (cell % 2).astype(float)
    S, _ = strata_dummies(stratum)
    one = np.ones(n)
    models = {"main": np.column_stack([one, fs, tm]), "inter": np.column_stack([one, fs, tm, fs * tm])}
    spec = {
        "frame_shares": ("main", [0, 1, 0]), "teaming": ("main", [0, 0, 1]),
        "frame_shares:teaming": ("inter", [0, 0, 0, 1]), "cell:frame_only/teaming": ("inter", [0, 0, 1, 0]),
        "cell:frame_shares/no_teaming": ("inter", [0, 1, 0, 0]), "cell:frame_shares/teaming": ("inter", [0, 1, 1, 1]),
    }
    q: dict[str, list] = {c: [] for c in spec}
    u: dict[str, list] = {c: [] for c in spec}
    dfcom = {}
    for k in range(m):
        for mk, D in models.items():
            Xe = np.column_stack([D, S]) if start is None else np.column_stack([D, start[k], S])
            Xc = np.column_stack([D, cost_pre, S])
            fc, fe = ols_fit(Xc, cost[k]), ols_fit(Xe, end[k])
            dfcom[mk] = n - max(fc.rank, fe.rank)
            bc, be = fc.embed(fc.coef, 0.0), fe.embed(fe.coef, 0.0)
            Vcc, Vee, Vce = hc2_cov_full(fc, fill=0.0), hc2_cov_full(fe, fill=0.0), hc2_cov_full(fc, fe, fill=0.0)
            for cname, (mk2, wv) in spec.items():
                if mk2 != mk:
                    continue
                Lc, Le = np.zeros(len(bc)), np.zeros(len(be))
                Lc[: len(wv)] = wv
                Le[: len(wv)] = wv
                q[cname].append((Lc @ bc, Le @ be))
                u[cname].append(((Lc @ Vcc @ Lc, Lc @ Vce @ Le), (Lc @ Vce @ Le, Le @ Vee @ Le)))
    rows = []
    lam = float(wtp_reference)
    for cname, (mk, _) in spec.items():
        Q, U = np.asarray(q[cname], float), np.asarray(u[cname], float)
        (dc, de), T = pool_covariance(Q, U)
        rc, re_ = rubin(Q[:, 0], U[:, 0, 0], dfcom[mk]), rubin(Q[:, 1], U[:, 1, 1], dfcom[mk])
        inb = rubin(lam * Q[:, 1] - Q[:, 0], lam * lam * U[:, 1, 1] - 2 * lam * U[:, 0, 1] + U[:, 0, 0], dfcom[mk])
        icer, note = icer_point(dc, de)
        lo, hi, cnote = fieller_interval(dc, de, T[0, 0], T[1, 1], T[0, 1], level)
        if math.isnan(icer):
            lo, hi, cnote = math.nan, math.nan, "not reported: " + note.split(":")[0]
        (cl, ch), (el, eh), (il, ih) = rc.ci(level), re_.ci(level), inb.ci(level)
        rows.append({
            "contrast": cname, "delta_cost_eur": dc, "delta_effect": de, "icer": icer, "icer_ci_low": lo, "icer_ci_high": hi,
            "ci_method": CI_METHOD_MI, "icer_note": note, "ci_note": "; ".join(x for x in (method, cnote) if x),
            "quadrant": quadrant(dc, de), "delta_cost_ci_low": cl, "delta_cost_ci_high": ch, "delta_effect_ci_low": el,
            "delta_effect_ci_high": eh, "share_ne": math.nan, "share_se": math.nan, "share_sw": math.nan,
            "share_nw": math.nan, "wtp_reference_eur": lam, "inb_eur": inb.estimate, "inb_ci_low": il, "inb_ci_high": ih,
            "prob_cost_effective": math.nan, "n": n, "n_reps": math.nan, "outcome": outcome,
        })
    return _round(_suppress(pd.DataFrame(rows), min_cell))
