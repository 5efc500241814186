"""Pilot families against the non-randomised comparison group.

**This contrast is not randomised.** Families chose HB; the comparison group is clients of
the same target group and services who did not. The estimate is an average effect on the
treated (ATT) under the assumption that, given the baseline score, service line, family
composition, area and pre-period register costs, the choice is unrelated to potential
outcomes (no unmeasured confounding). With one pre-period, parallel trends cannot be
tested; the pre-period register costs serve as a placebo outcome instead.

Pure statistics first (propensity model, ATT weights, trimming, SMD, ESS, the doubly robust
estimate), then the Study glue (:func:`comparison_results`, :func:`comparison_effect_rows`)
and the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

METHOD_DR = "dr_att_ipw_regression (not randomised)"
NOT_RANDOMISED = "not randomised: propensity-weighted observational comparison"
HIST_BINS = np.linspace(0, 1, 21)


# ---------------------------------------------------------------------------- propensity
def logit_fit(X: np.ndarray, t: np.ndarray, ridge: float = 1e-6, max_iter: int = 100) -> np.ndarray:
    """Logistic regression by Newton–Raphson (IRLS) with a tiny ridge for separation.

    Parameters
    ----------
    X : (n, p) design including an intercept column (column 0, not penalised)
    t : (n,) 0/1

    Returns
    -------
    (p,) coefficients.

    Notes
    -----
    Maximises ``Σ t log π + (1−t) log(1−π) − ridge/2 ‖β_{1:}‖²`` with step halving. Columns
    are standardised internally for conditioning.
    """
    X = np.asarray(X, dtype=float)
    t = np.asarray(t, dtype=float)
    mu = X[:, 1:].mean(axis=0)
    sd = X[:, 1:].std(axis=0)
    sd[sd == 0] = 1.0
    Z = np.empty(X.shape)  # standardised in place: one n x p copy (a national study has ~1 M rows)
    Z[:, 0] = 1.0
    np.subtract(X[:, 1:], mu, out=Z[:, 1:])
    Z[:, 1:] /= sd
    p = Z.shape[1]
    pen = np.full(p, ridge)
    pen[0] = 0.0
    b = np.zeros(p)
    b[0] = np.log(max(t.mean(), 1e-9) / max(1 - t.mean(), 1e-9))

    def ll(beta):
        eta = Z @ beta
        return float(np.sum(t * eta - np.logaddexp(0, eta)) - 0.5 * np.sum(pen * beta**2))

    cur = ll(b)
    for _ in range(max_iter):
        eta = Z @ b
        pi = 1 / (1 + np.exp(-eta))
        g = Z.T @ (t - pi) - pen * b
        # H = Z' diag(π(1−π)) Z in the A'A form, for which numpy calls a symmetric rank-k
        # update (syrk), ~10x a general product at 1 M rows. Square-root weights under 1e-100
        # (units the model already separates) are set to 0: their terms are < 1e-200, and as
        # subnormal numbers they would slow the product a hundredfold.
        sw = np.sqrt(pi * (1 - pi))
        sw[sw < 1e-100] = 0.0
        Zs = Z * sw[:, None]
        H = Zs.T @ Zs + np.diag(pen)
        step = np.linalg.solve(H + 1e-12 * np.eye(p), g)
        s = 1.0
        while s > 1e-8:
            nb = b + s * step
            new = ll(nb)
            if new >= cur - 1e-12:
                break
            s /= 2
        b, prev, cur = nb, cur, new
        if abs(cur - prev) < 1e-10 * (1 + abs(cur)):
            break
    beta = b.copy()
    beta[1:] = b[1:] / sd
    beta[0] = b[0] - np.sum(b[1:] * mu / sd)
    return beta


def propensity(X: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fitted ``P(pilot | x)`` from :func:`logit_fit` (intercept added here)."""
    Xi = np.column_stack([np.ones(len(X)), X])
    return 1 / (1 + np.exp(-(Xi @ logit_fit(Xi, t))))


def att_weights(ps: np.ndarray, t: np.ndarray) -> np.ndarray:
    """ATT weights: 1 for the treated, ``e/(1−e)`` for the comparison units, the latter
    normalised to sum to the number of treated (Hirano, Imbens & Ridder 2003)."""
    ps = np.asarray(ps, dtype=float)
    t = np.asarray(t).astype(bool)
    w = np.where(t, 1.0, ps / (1 - ps))
    if (~t).any() and w[~t].sum() > 0:
        w[~t] *= t.sum() / w[~t].sum()
    return w


def common_support(ps: np.ndarray, t: np.ndarray, ps_max: float | None = None) -> np.ndarray:
    """Keep-mask after trimming to common support (Dehejia & Wahba 1999): comparison
    units below the lowest treated propensity and treated units above the highest
    comparison propensity are dropped; optionally also every unit with ``e > ps_max``
    (Crump et al. 2009 style)."""
    ps = np.asarray(ps, dtype=float)
    t = np.asarray(t).astype(bool)
    keep = np.ones(len(ps), bool)
    if t.any() and (~t).any():
        keep &= ~(~t & (ps < ps[t].min()))
        keep &= ~(t & (ps > ps[~t].max()))
    if ps_max is not None:
        keep &= ps <= ps_max
    return keep


def smd(x: np.ndarray, t: np.ndarray, w: np.ndarray | None = None) -> float:
    """Standardised mean difference ``(x̄_T − x̄_C^w) / sqrt((s_T² + s_C²)/2)``; the
    denominator uses the unweighted SDs, so before and after are on one scale (Austin 2009)."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(t).astype(bool)
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=float)
    m1 = np.average(x[t], weights=w[t])
    m0 = np.average(x[~t], weights=w[~t])
    s = np.sqrt((x[t].var(ddof=1) + x[~t].var(ddof=1)) / 2)
    return float((m1 - m0) / s) if s > 0 else 0.0


def ess(w: np.ndarray) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²``."""
    w = np.asarray(w, dtype=float)
    return float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0


@dataclass
class ATTEstimate:
    """A doubly robust ATT with its pieces."""

    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float
    ipw: float
    naive: float
    n_treated: int
    n_control: int

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.__dict__])


def dr_att(y: np.ndarray, t: np.ndarray, X: np.ndarray, ps: np.ndarray, level: float = 0.95) -> ATTEstimate:
    """Doubly robust ATT: weighted outcome regression on the comparison units, augmented.

    Parameters
    ----------
    y : outcome; t : 0/1 treated; X : (n, p) outcome-model covariates (no intercept);
    ps : propensity scores

    Notes
    -----
    With ATT weights ``w_i = e_i/(1−e_i)`` on the comparison units and ``m_0(x)`` the
    weighted least-squares fit of ``y`` on ``x`` among them,

    .. math:: \\hat\\tau = \\frac{1}{n_1}\\sum_{T_i=1} (y_i − m_0(x_i)) − \\frac{\\sum_{T_i=0} w_i (y_i − m_0(x_i))}{\\sum_{T_i=0} w_i},

    consistent when either the propensity or the outcome model is right (Robins, Rotnitzky
    & Zhao 1994; Sant'Anna & Zhao 2020, the ATT form; with an intercept in ``m_0`` the second
    term is zero). The SE is from the estimated influence function
    ``ψ_i = [T_i (r_i − τ) − (1−T_i) w_i r_i] / p̂``, ``r = y − m_0(x)``, treating the
    propensity as known; normal-based interval.
    """
    y = np.asarray(y, dtype=float)
    t = np.asarray(t).astype(bool)
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    w = np.where(t, 1.0, ps / (1 - ps))
    Xi = np.column_stack([np.ones(len(y)), X])
    c = ~t
    sw = np.sqrt(w[c])
    beta, *_ = np.linalg.lstsq(Xi[c] * sw[:, None], y[c] * sw, rcond=None)
    r = y - Xi @ beta
    n = len(y)
    n1 = int(t.sum())
    wc = w[c] / w[c].sum() * n1
    tau = r[t].mean() - np.sum(wc * r[c]) / n1
    psi = np.zeros(n)
    psi[t] = r[t] - r[t].mean()
    psi[c] = -(wc * (r[c] - np.sum(wc * r[c]) / n1))
    se = float(np.sqrt(np.sum(psi**2)) / n1)
    ipw = float(y[t].mean() - np.sum(wc * y[c]) / n1)
    naive = float(y[t].mean() - y[c].mean())
    z = stats.norm.ppf(0.5 + level / 2)
    p = float(2 * stats.norm.sf(abs(tau / se))) if se > 0 else np.nan
    return ATTEstimate(float(tau), se, float(tau - z * se), float(tau + z * se), p, ipw, naive, n1, int(c.sum()))


# ---------------------------------------------------------------------------- design
def covariate_matrix(frame: pd.DataFrame, numeric: list[str], categorical: list[str], missing_dummy: bool = True) -> tuple[np.ndarray, list[str]]:
    """Covariates for the propensity and outcome models: numeric columns (missing values set
    to the mean with a missing-indicator, McKenzie's approach, when any is missing) and
    treatment-coded categorical columns (first level in sorted order left out)."""
    cols, names = [], []
    for c in numeric:
        if c not in frame.columns:
            continue
        v = pd.to_numeric(frame[c], errors="coerce").to_numpy(float)
        miss = ~np.isfinite(v)
        if miss.all():
            continue
        if miss.any() and missing_dummy:
            v = np.where(miss, np.nanmean(v), v)
            cols += [v, miss.astype(float)]
            names += [c, f"{c}_missing"]
        else:
            cols.append(v)
            names.append(c)
    for c in categorical:
        if c not in frame.columns:
            continue
        lab = frame[c].astype(object).where(frame[c].notna(), "(missing)").astype(str)
        codes, uniq = pd.factorize(lab, sort=False)
        order = sorted(range(len(uniq)), key=lambda i: uniq[i])  # levels in sorted order
        for i in order[1:]:
            cols.append((codes == i).astype(float))
            names.append(f"{c}[{uniq[i]}]")
    X = np.column_stack(cols) if cols else np.empty((len(frame), 0))
    # drop constant columns (no information, break the logit)
    keep = [j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]
    return X[:, keep], [names[j] for j in keep]


NUMERIC_COVARIATES = ["household_size", "n_children", "youngest_child_age", "pre_total_eur", "new_child_welfare_clienthood_pre"]
CATEGORICAL_COVARIATES = ["service_line", "area"]


def pre_costs(study) -> pd.Series | None:
    """Pre-period register costs per family (``pre_total`` of :func:`hbeval.costs.engine.wide_costs`)
    or ``None`` when they cannot be computed (the covariate is then left out)."""
    try:
        from hbeval.costs.engine import family_costs_from_tables, wide_costs, wide_family_costs

        if hasattr(study, "connect"):
            w = wide_family_costs(study)
        else:
            cfg = study.config
            w = wide_costs(family_costs_from_tables(study.tables, study.unit_costs(), study.price_index(), cfg.price_year,
                                                    cfg.follow_up_days, tuple(cfg.strata)))
        # rounded to the cent: the database sums in parallel, so the last bits of a float
        # sum can differ between runs; cents make the covariate (and every result) stable
        return w.set_index(w["client_id"].astype(str))["pre_total"].astype(float).round(2)
    except Exception:  # noqa: BLE001 - the covariate is optional by design
        return None


def _pilot_comparison(study, frame: pd.DataFrame) -> pd.DataFrame:
    pc = frame[frame["group"].astype(str).isin(["pilot", "comparison"])].copy()
    pc = pc.sort_values("client_id", kind="mergesort").reset_index(drop=True)
    pc["_t"] = (pc["group"].astype(str) == "pilot").astype(int)
    if "pre_total_eur" not in pc.columns:
        pcost = pre_costs(study)
        pc["pre_total_eur"] = pc["client_id"].astype(str).map(pcost) if pcost is not None else np.nan
    return pc


@dataclass
class ComparisonFit:
    """The propensity model of pilot vs comparison, trimmed to common support."""

    frame: pd.DataFrame  # pilot and comparison families (internal: one row per family)
    X: np.ndarray
    names: list[str]
    ps: np.ndarray
    keep: np.ndarray
    weights: np.ndarray  # ATT weights on the kept units (0 for trimmed)


def fit_comparison(pc: pd.DataFrame, primary: str, exclude: tuple[str, ...] = ()) -> ComparisonFit:
    """Propensity of being a pilot family from the baseline of the primary outcome, service
    line, family composition, area and pre-period costs (and pre-period child-welfare
    clienthood), then common-support trimming and ATT weights."""
    numeric = [f"{primary}_start", *[c for c in NUMERIC_COVARIATES if c not in exclude]]
    X, names = covariate_matrix(pc, numeric, [c for c in CATEGORICAL_COVARIATES if c not in exclude])
    t = pc["_t"].to_numpy()
    ps = propensity(X, t)
    keep = common_support(ps, t)
    w = np.zeros(len(ps))
    w[keep] = att_weights(ps[keep], t[keep])
    return ComparisonFit(pc, X, names, ps, keep, w)


def balance_table(fit: ComparisonFit, min_cell: int = 5) -> pd.DataFrame:
    """SMD of every propensity covariate before (all units) and after weighting (kept units).

    For an indicator covariate held by fewer than ``min_cell`` (but some) families of a
    group, the group means are blanked: a share times the group size would reveal the
    small count. The SMDs stay."""
    t = fit.frame["_t"].to_numpy().astype(bool)
    k = fit.keep
    rows = []
    for j, nm in enumerate(fit.names):
        x = fit.X[:, j]
        binary = bool(np.isin(x, (0.0, 1.0)).all())
        small = binary and any(0 < x[m].sum() < min_cell or 0 < (1 - x[m]).sum() < min_cell for m in (t, ~t))
        if small:
            rows.append({"section": "balance", "item": nm, "mean_pilot": np.nan, "mean_comparison": np.nan,
                         "mean_comparison_weighted": np.nan, "smd_before": smd(x, t), "smd_after": smd(x[k], t[k], fit.weights[k])})
            continue
        rows.append({
            "section": "balance", "item": nm,
            "mean_pilot": float(x[t].mean()), "mean_comparison": float(x[~t].mean()),
            "mean_comparison_weighted": float(np.average(x[k & ~t], weights=fit.weights[k & ~t])),
            "smd_before": smd(x, t), "smd_after": smd(x[k], t[k], fit.weights[k]),
        })
    return pd.DataFrame(rows)


def overlap_table(fit: ComparisonFit, min_cell: int) -> pd.DataFrame:
    """Propensity overlap by group: counts, trimmed, ESS, quantiles; and binned counts (a
    histogram over [0, 1] in 0.05 bins, counts below ``min_cell`` suppressed)."""
    from hbeval.privacy import suppress_count

    t = fit.frame["_t"].to_numpy().astype(bool)
    rows = []
    for g, m in (("pilot", t), ("comparison", ~t)):
        p = fit.ps[m]
        rows.append({
            "section": "overlap", "item": "propensity", "group": g, "n": int(m.sum()),
            "n_trimmed": int((m & ~fit.keep).sum()), "ess": ess(fit.weights[m & fit.keep]),
            "ps_p05": float(np.quantile(p, 0.05)), "ps_median": float(np.median(p)), "ps_p95": float(np.quantile(p, 0.95)),
        })
    for g, m in (("pilot", t), ("comparison", ~t)):
        cnt, _ = np.histogram(fit.ps[m], bins=HIST_BINS)
        for lo, hi, c in zip(HIST_BINS[:-1], HIST_BINS[1:], cnt):
            rows.append({"section": "overlap_hist", "item": f"[{lo:.2f},{hi:.2f})", "group": g, "bin_low": lo, "bin_high": hi, "n": int(c)})
    out = pd.DataFrame(rows)
    out["n"] = [suppress_count(v, min_cell) for v in out["n"]]
    out["n_trimmed"] = [suppress_count(v, min_cell) if pd.notna(v) else "" for v in out["n_trimmed"]]
    return out


def estimate_outcome(fit: ComparisonFit, outcome: str) -> dict | None:
    """DR ATT of ``outcome`` (ANCOVA form: its start score enters the outcome model when it
    exists, McKenzie dummy for a missing start). Families without the end value drop out;
    the propensity is not refitted (weights are renormalised within the observed)."""
    pc = fit.frame
    end = f"{outcome}_end"
    if end not in pc.columns:
        return None
    y = pd.to_numeric(pc[end], errors="coerce").to_numpy(float)
    ok = np.isfinite(y) & fit.keep
    t = pc["_t"].to_numpy()
    if ok.sum() < 4 or t[ok].sum() < 2 or (1 - t[ok]).sum() < 2:
        return None
    Xo = fit.X
    start = f"{outcome}_start"
    if start in pc.columns and pd.to_numeric(pc[start], errors="coerce").notna().any() and start not in fit.names:
        Xs, _ = covariate_matrix(pc, [start], [])
        Xo = np.column_stack([Xo, Xs])
    est = dr_att(y[ok], t[ok], Xo[ok], fit.ps[ok])
    return {"outcome": outcome, **est.__dict__}


def comparison_tables(pc: pd.DataFrame, families: dict[str, list[str]], primary: str, min_cell: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pure core of :func:`comparison_results` on a pilot+comparison frame (``_t`` = pilot)."""
    fit = fit_comparison(pc, primary)
    parts = [balance_table(fit, min_cell), overlap_table(fit, min_cell)]
    est_rows, eff_rows = [], []
    for fam, outs in families.items():
        if fam.startswith("process"):
            continue  # budgets and teaming exist only for pilot families
        for o in outs:
            r = estimate_outcome(fit, o)
            if r is None:
                continue
            n = r["n_treated"] + r["n_control"]
            est_rows.append({"section": "estimate", "item": o, "family": fam, "n": n, "n_pilot": r["n_treated"], "n_comparison": r["n_control"],
                             "estimate": r["estimate"], "std_error": r["std_error"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                             "p_value": r["p_value"], "estimate_ipw": r["ipw"], "estimate_naive": r["naive"], "method": METHOD_DR})
            eff_rows.append({"family": fam, "outcome": o, "contrast": "pilot_vs_comparison", "estimate": r["estimate"],
                             "std_error": r["std_error"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p_value": r["p_value"],
                             "n": n, "method": METHOD_DR + "; propensity ATT weights, common-support trimming; influence-function SE"})
    parts.append(pd.DataFrame(est_rows))
    # placebo: outcomes fixed before enrolment, with the variable left out of both models
    for placebo in ("pre_total_eur", "new_child_welfare_clienthood_pre"):
        if placebo not in pc.columns:
            continue
        yp = pd.to_numeric(pc[placebo], errors="coerce")
        if yp.notna().sum() < 4 or yp.nunique() < 2:
            continue  # nothing to test (e.g. no pre-period clienthood at all)
        pfit = fit_comparison(pc, primary, exclude=(placebo,))
        y = pd.to_numeric(pc[placebo], errors="coerce").to_numpy(float)
        ok = np.isfinite(y) & pfit.keep
        t = pc["_t"].to_numpy()
        if t[ok].sum() < 2 or (1 - t[ok]).sum() < 2:
            continue
        e = dr_att(y[ok], t[ok], pfit.X[ok], pfit.ps[ok])
        parts.append(pd.DataFrame([{"section": "placebo", "item": placebo, "n": int(ok.sum()), "n_pilot": e.n_treated, "n_comparison": e.n_control,
                                    "estimate": e.estimate, "std_error": e.std_error, "ci_low": e.ci_low, "ci_high": e.ci_high,
                                    "p_value": e.p_value, "estimate_ipw": e.ipw, "estimate_naive": e.naive,
                                    "method": METHOD_DR + "; placebo: pre-period outcome left out of both models, true effect 0"}]))
    parts.append(pd.DataFrame([{"section": "note", "item": "design", "method": NOT_RANDOMISED + "; one pre-period: parallel trends "
                                "cannot be tested; pre-period outcomes serve as placebos"}]))
    comp = pd.concat([p for p in parts if len(p)], ignore_index=True)
    from hbeval.privacy import suppress_count

    for c in ("n_pilot", "n_comparison"):
        if c in comp.columns:
            comp[c] = [suppress_count(v, min_cell) if pd.notna(v) else "" for v in comp[c]]
    comp["n"] = [v if isinstance(v, str) else (suppress_count(v, min_cell) if pd.notna(v) else "") for v in comp["n"]]
    front = ["section", "item", "group", "family", "n", "n_pilot", "n_comparison", "n_trimmed", "ess", "estimate", "std_error", "ci_low",
             "ci_high", "p_value", "estimate_ipw", "estimate_naive", "mean_pilot", "mean_comparison", "mean_comparison_weighted",
             "smd_before", "smd_after", "ps_p05", "ps_median", "ps_p95", "bin_low", "bin_high", "method"]
    comp = comp[[c for c in front if c in comp.columns]]
    return comp, pd.DataFrame(eff_rows)


def comparison_effect_rows(study, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``pilot_vs_comparison`` rows of ``effects.csv``."""
    return comparison_results(study, frame)[1]


def comparison_results(study, frame: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results/comparison.csv`` and the ``pilot_vs_comparison`` rows of ``effects.csv``.

    Returns
    -------
    (comparison, effect_rows). ``comparison`` has sections ``balance`` (SMD before/after
    weighting per covariate), ``overlap`` (per group: n, trimmed, ESS, propensity
    quantiles), ``overlap_hist`` (binned propensity counts, suppressed below min_cell),
    ``estimate`` (DR, IPW and naive per outcome), ``placebo`` and ``note``. Both are empty
    when the study has no comparison group.
    """
    from hbeval.outcomes.frame import outcome_frame

    cfg = study.config
    if frame is None:
        frame = outcome_frame(study)
    pc = _pilot_comparison(study, frame)
    if pc["_t"].sum() < 2 or (1 - pc["_t"]).sum() < 2:
        return pd.DataFrame(columns=["section", "item", "method"]), pd.DataFrame()
    return comparison_tables(pc, cfg.families, cfg.primary, cfg.min_cell)


# ---------------------------------------------------------------------------- figures
_L = {
    "en": {"smd": "Standardised mean difference", "before": "unweighted", "after": "ATT-weighted", "ps": "Propensity score",
           "n": "Families", "pilot": "pilot", "comparison": "comparison", "love": "Balance: pilot vs comparison (not randomised)",
           "ov": "Propensity overlap (not randomised)"},
    "fi": {"smd": "Standardoitu keskiarvoero", "before": "painottamaton", "after": "ATT-painotettu", "ps": "Osallistumistodennäköisyys",
           "n": "Perheitä", "pilot": "kokeilu", "comparison": "vertailu", "love": "Tasapaino: kokeilu vs vertailuryhmä (ei satunnaistettu)",
           "ov": "Osallistumistodennäköisyyksien päällekkäisyys (ei satunnaistettu)"},
}


def plot_love_comparison(comparison_df: pd.DataFrame, lang: str = "en"):
    """Love plot: |SMD| per covariate before and after ATT weighting (0.1 marked)."""
    from hbeval.report.figures import PALETTE, new_figure

    L = _L.get(lang, _L["en"])
    b = comparison_df[comparison_df["section"] == "balance"]
    fig, ax = new_figure(7.0, 0.3 * max(len(b), 3) + 1.2)
    y = np.arange(len(b))[::-1]
    ax.plot(np.abs(b["smd_before"].astype(float)), y, "o", mfc="white", color=PALETTE["comparison"], label=L["before"])
    ax.plot(np.abs(b["smd_after"].astype(float)), y, "o", color=PALETTE["pilot"], label=L["after"])
    ax.axvline(0.1, color="black", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels(b["item"].astype(str))
    ax.set_xlabel("|" + L["smd"] + "|")
    ax.set_title(L["love"])
    ax.legend(loc="lower right")
    return fig


def plot_overlap(comparison_df: pd.DataFrame, lang: str = "en"):
    """Mirrored histogram of the propensity by group from the binned (suppressed) counts of
    ``comparison.csv``; suppressed bins are drawn empty, so no small count shows."""
    from hbeval.report.figures import PALETTE, new_figure

    L = _L.get(lang, _L["en"])
    h = comparison_df[comparison_df["section"] == "overlap_hist"]
    fig, ax = new_figure(7.0, 4.0)
    for g, sign in (("pilot", 1), ("comparison", -1)):
        s = h[h["group"] == g]
        n = pd.to_numeric(s["n"], errors="coerce").fillna(0).to_numpy()
        lo = s["bin_low"].astype(float).to_numpy()
        ax.bar(lo, sign * n, width=np.diff(HIST_BINS)[0], align="edge", color=PALETTE[g], alpha=0.7, label=L[g])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(L["ps"])
    ax.set_ylabel(L["n"])
    ax.set_title(L["ov"])
    ax.legend()
    return fig
