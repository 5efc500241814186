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
drawn a memory-bounded chunk of replicates at a time (:func:`hbeval.costs.engine.bootstrap_counts`),
and the normal equations of the replicates are solved as a batch. The ICER's bootstrap
CIs are taken on the angle ``atan2(ΔC, ΔE)`` around the point estimate (the ICER is
``tan`` of it, monotone on each half-plane), so a cloud that crosses ``ΔE = 0`` gives an
interval reported as unbounded rather than a misleading number (Glick et al. 2014,
*Economic Evaluation in Clinical Trials*, ch. 7). BCa uses the jackknife acceleration
of the angle (leave-one-out OLS coefficients in closed form). Fieller's interval uses the
HC2 sandwich variances and covariance of ``ΔC`` and ``ΔE``.

A dominated (``ΔE < 0, ΔC > 0``) or dominant (``ΔE > 0, ΔC < 0``) or undefined
(``ΔE = 0``) ICER is reported as such: ``icer`` empty and ``icer_note`` saying which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from hbeval.costs.engine import (
    BOOT_CHUNK_BYTES,
    CONTRASTS,
    arm_members,
    block_matmul,
    bootstrap_counts,
    wide_family_costs,
)
from hbeval.arms import CELLS, SEEDS
from hbeval.stats.ri import blas_single_thread

if TYPE_CHECKING:  # pragma: no cover
    from hbeval.study.store import Study

SEED_CEA = SEEDS["cea_bootstrap"]
Z95 = 1.959963984540054


# --------------------------------------------------------------------------- pure pieces
def fieller_interval(delta_cost: float, delta_effect: float, var_cost: float, var_effect: float, cov: float,
                     level: float = 0.95) -> tuple[float, float, str]:
    """Fieller's confidence interval of the ratio ``R = ΔC / ΔE``.

    Returns
    -------
    ``(low, high, note)``; ``low``/``high`` are NaN when the set is unbounded.

    Notes
    -----
    The interval is the set of ``R`` with ``(ΔC − R ΔE)² ≤ z² (v_C − 2 R c + R² v_E)``, the
    roots of ``a R² − 2 b R + c₀ = 0`` with ``a = ΔE² − z² v_E``, ``b = ΔE ΔC − z² c`` and
    ``c₀ = ΔC² − z² v_C``:

    .. math:: R_{\\pm} = \\frac{b \\pm \\sqrt{b^2 - a c_0}}{a}.

    It is bounded only when ``a > 0``, i.e. ``ΔE`` is significantly different from zero at
    the chosen level (Fieller 1954; Willan & O'Brien 1996, Health Econ 5:297).
    """
    z = stats.norm.ppf(0.5 + level / 2)
    a = delta_effect**2 - z**2 * var_effect
    b = delta_effect * delta_cost - z**2 * cov
    c0 = delta_cost**2 - z**2 * var_cost
    disc = b * b - a * c0
    if a <= 0:
        if disc < 0:
            return math.nan, math.nan, "Fieller: unbounded (the whole real line): ΔE not significantly different from 0"
        return math.nan, math.nan, "Fieller: unbounded (two disjoint rays): ΔE not significantly different from 0"
    r = math.sqrt(max(disc, 0.0))
    return (b - r) / a, (b + r) / a, ""


def quadrant(delta_cost: float, delta_effect: float) -> str:
    """CE-plane quadrant: ``NE`` (more effective, costlier), ``SE`` (dominant), ``NW``
    (dominated), ``SW`` (less effective, cheaper) or ``none`` when ``ΔE = 0``."""
    if delta_effect > 0:
        return "NE" if delta_cost > 0 else "SE"
    if delta_effect < 0:
        return "NW" if delta_cost >= 0 else "SW"
    return "none"


def icer_point(delta_cost: float, delta_effect: float) -> tuple[float, str]:
    """``(icer, note)``; ``icer`` is NaN for a dominant, dominated or undefined ICER."""
    q = quadrant(delta_cost, delta_effect)
    if q == "NE":
        return delta_cost / delta_effect, "NE: extra € per extra point of the outcome"
    if q == "SW":
        return delta_cost / delta_effect, "SW: € saved per point of the outcome lost"
    if q == "SE":
        return math.nan, "dominant: more effective and not more costly (ICER not reported)"
    if q == "NW":
        return math.nan, "dominated: less effective and not less costly (ICER not reported)"
    return math.nan, "undefined: ΔE = 0"


def _wrap(x: np.ndarray) -> np.ndarray:
    return (x + np.pi) % (2 * np.pi) - np.pi


def _angle_interval(center: float, lo_d: float, hi_d: float) -> tuple[float, float, str]:
    t_lo, t_hi = center + lo_d, center + hi_d
    k_lo = math.floor((t_lo - math.pi / 2) / math.pi)
    k_hi = math.floor((t_hi - math.pi / 2) / math.pi)
    if k_lo != k_hi:
        return math.nan, math.nan, "unbounded: the interval crosses ΔE = 0 (see the CEAC)"
    a, b = math.tan(t_lo), math.tan(t_hi)
    note = ""
    if (a < 0) != (b < 0) or (a < 0 and b < 0):
        note = "the interval reaches the dominant or dominated quadrant (negative ratios)"
    return min(a, b), max(a, b), note


def icer_bootstrap_ci(delta_cost: float, delta_effect: float, reps_cost: np.ndarray, reps_effect: np.ndarray,
                      level: float = 0.95, jack_cost: np.ndarray | None = None,
                      jack_effect: np.ndarray | None = None) -> dict[str, tuple[float, float, str]]:
    """Percentile and (with jackknife values) BCa intervals of the ICER on the angle scale.

    Notes
    -----
    ``d_b = wrap(atan2(ΔC_b, ΔE_b) − atan2(ΔC, ΔE))``; percentile bounds are the
    ``α/2, 1−α/2`` quantiles of ``d``; BCa (Efron 1987) moves them to
    ``Φ(z₀ + (z₀ + z_α)/(1 − â(z₀ + z_α)))`` with ``z₀ = Φ⁻¹(#{d_b < 0}/B)`` and the
    jackknife acceleration ``â = Σ(θ̄ − θ_i)³ / (6 [Σ(θ̄ − θ_i)²]^{3/2})``. The ratio is
    ``tan`` of the angle, so an angle interval that contains ``±π/2`` is unbounded.
    """
    c = math.atan2(delta_cost, delta_effect)
    d = _wrap(np.arctan2(reps_cost, reps_effect) - c)
    alpha = 1 - level
    out = {"bootstrap_percentile": _angle_interval(c, *np.quantile(d, [alpha / 2, 1 - alpha / 2]))}
    if jack_cost is not None and jack_effect is not None:
        p0 = np.mean(d < 0) + 0.5 * np.mean(d == 0)
        p0 = min(max(p0, 1 / (len(d) + 1)), 1 - 1 / (len(d) + 1))
        z0 = stats.norm.ppf(p0)
        th = _wrap(np.arctan2(jack_cost, jack_effect) - c)
        th = th[np.isfinite(th)]
        u = th.mean() - th
        den = 6 * (np.sum(u**2) ** 1.5)
        acc = float(np.sum(u**3) / den) if den > 0 else 0.0
        qs = []
        for za in (stats.norm.ppf(alpha / 2), stats.norm.ppf(1 - alpha / 2)):
            qs.append(stats.norm.cdf(z0 + (z0 + za) / (1 - acc * (z0 + za))))
        out["bootstrap_bca"] = _angle_interval(c, *np.quantile(d, qs))
    return out


# --------------------------------------------------------------------------- OLS pieces
@dataclass
class _Fit:
    b: np.ndarray
    resid: np.ndarray
    A: np.ndarray  # (X'X)^-1
    h: np.ndarray  # leverages
    X: np.ndarray


def _ols(X: np.ndarray, y: np.ndarray) -> _Fit:
    A = np.linalg.pinv(X.T @ X)
    b = A @ (X.T @ y)
    e = y - X @ b
    h = ((X @ A) * X).sum(axis=1)
    return _Fit(b, e, A, h, X)


def _hc2_cov(f1: _Fit, f2: _Fit) -> np.ndarray:
    """HC2 (cross-)covariance of the coefficients of two OLS fits on the same rows."""
    s1 = f1.resid / np.sqrt(np.clip(1 - f1.h, 1e-12, None))
    s2 = f2.resid / np.sqrt(np.clip(1 - f2.h, 1e-12, None))
    return f1.A @ ((f1.X.T * (s1 * s2)) @ f2.X) @ f2.A


def _jackknife(f: _Fit) -> np.ndarray:
    """Leave-one-out coefficients ``b − A x_i e_i / (1 − h_i)``: ``(n, p)``; NaN where h = 1."""
    g = (f.X @ f.A) * (f.resid / (1 - f.h))[:, None]
    g[f.h > 1 - 1e-10] = np.nan
    return f.b[None, :] - g


def bootstrap_ols(designs: list[np.ndarray], ys: list[np.ndarray], arms: np.ndarray, n_reps: int,
                  rng: np.random.Generator, groups: np.ndarray | None = None,
                  max_bytes: float = BOOT_CHUNK_BYTES) -> list[np.ndarray]:
    """Coefficients of OLS fits refitted on ``n_reps`` within-arm bootstrap samples.

    Parameters
    ----------
    designs, ys : pairs ``(X_k, y_k)`` on the same rows; every replicate resamples the rows
        once and refits every pair on that sample (so estimates of different models keep
        their joint distribution).
    arms : resampling strata (each keeps its size).
    groups : optional labels that split the arms further (e.g. the randomisation strata).
        Only speed depends on it: design columns constant within every arm × group cell
        (intercept, arm and stratum indicators) cost nothing per family.
    max_bytes : memory bound of the resampling counts held at once (no result depends on it).

    Returns
    -------
    list of ``(n_reps, p_k)`` arrays.

    Notes
    -----
    Replicate ``b`` solves ``(Σ_i w_bi x_i x_iᵀ) β = Σ_i w_bi x_i y_i`` for the resampling
    counts ``w_b`` of :func:`hbeval.costs.engine.bootstrap_counts`. The rows are sorted into cells
    (arm × group); a column ``d`` constant within each cell enters only through the cell's
    resampled count ``Σ_{i∈k} w_bi``, a column ``u`` that varies through ``Σ_{i∈k} w_bi u_i``,
    and two varying columns through ``Σ_i w_bi u_i v_i``. So each replicate needs one small
    matrix product per cell with the columns ``[1, u…, u·v…]``, whatever the number of
    indicator columns; the normal equations are assembled from those sums and solved as a
    batch (pseudo-inverse for a replicate that loses a cell).
    """
    n = len(arms)
    members = arm_members(arms)[1]
    gcode = (np.zeros(n, dtype=np.intp) if groups is None
             else pd.factorize(np.asarray(groups, dtype=object), use_na_sentinel=False)[0])
    # rows sorted into cells: within each arm (in the engine's order) by group
    perms, segs, order = [], [], []  # per arm: local order; per cell: (arm, start, end)
    for g, idx in enumerate(members):
        perm = np.argsort(gcode[idx], kind="stable")
        rows = idx[perm]
        cut = np.flatnonzero(np.diff(gcode[rows])) + 1
        bounds = [0, *cut.tolist(), len(rows)]
        segs += [(g, s, e) for s, e in zip(bounds[:-1], bounds[1:])]
        perms.append(None if (perm == np.arange(len(perm))).all() else perm)
        order.append(rows)
    R = np.concatenate(order) if order else np.zeros(0, dtype=np.intp)
    offset = np.cumsum([0] + [len(i) for i in members])
    first = np.array([R[offset[g] + s] for g, s, _ in segs], dtype=np.intp)  # a row of each cell
    lengths = np.array([e - s for _, s, e in segs])
    # columns: constant within every cell (entering through the cell's count) or varying
    U: list[np.ndarray] = []  # distinct varying columns and outcomes, rows in the order R

    def u_index(v: np.ndarray) -> int:
        for j, u in enumerate(U):
            if np.array_equal(u, v):
                return j
        U.append(v)
        return len(U) - 1

    plans = []
    for X, y in zip(designs, ys):
        XR = X[R]
        const = np.array([np.array_equal(XR[:, j], np.repeat(X[first, j], lengths)) for j in range(X.shape[1])],
                         dtype=bool)
        dpos, cpos = np.flatnonzero(const), np.flatnonzero(~const)
        plans.append((dpos, cpos, [u_index(XR[:, j]) for j in cpos], u_index(np.asarray(y, dtype=float)[R])))
    pairs: dict[tuple[int, int], int] = {}
    for _, _, cu, yu in plans:
        for a in range(len(cu)):
            for b in range(a, len(cu)):
                pairs.setdefault((cu[a], cu[b]), len(pairs))
            pairs.setdefault((cu[a], yu), len(pairs))
    V = np.column_stack([np.ones(n), *U, *[U[a] * U[b] for a, b in pairs]])  # (n, J), order R
    J = V.shape[1]
    ones_k = np.ones((len(segs), 1))
    outs = [np.empty((n_reps, X.shape[1])) for X in designs]
    with blas_single_thread():  # skinny products: BLAS threads only add overhead
        for start, parts in bootstrap_counts(arms, n_reps, rng, max_bytes):
            c = len(parts[0])
            cnt = [p if perm is None else np.take(p, perm, axis=1) for p, perm in zip(parts, perms)]
            S = np.empty((J, c, len(segs)))  # S[j, b, k] = Σ_{i ∈ cell k} w_bi V_ij
            for k, (g, s, e) in enumerate(segs):
                S[:, :, k] = block_matmul(cnt[g][:, s:e], V[offset[g] + s : offset[g] + e]).T
            for (dpos, cpos, cu, yu), X, out in zip(plans, designs, outs):
                p = X.shape[1]
                Dk = X[first][:, dpos]
                M = np.empty((c, p, p))
                r = np.empty((c, p))
                M[:, dpos[:, None], dpos[None, :]] = block_matmul(
                    S[0], (Dk[:, :, None] * Dk[:, None, :]).reshape(len(segs), -1)).reshape(c, len(dpos), len(dpos))
                r[:, dpos] = block_matmul(S[1 + yu], Dk)
                for a, (ja, ua) in enumerate(zip(cpos, cu)):
                    M[:, dpos, ja] = M[:, ja, dpos] = block_matmul(S[1 + ua], Dk)
                    for jb, ub in zip(cpos[a:], cu[a:]):
                        M[:, ja, jb] = M[:, jb, ja] = block_matmul(S[1 + len(U) + pairs[(ua, ub)]], ones_k)[:, 0]
                    r[:, ja] = block_matmul(S[1 + len(U) + pairs[(ua, yu)]], ones_k)[:, 0]
                out[start : start + c] = _solve_batch(M, r)
    return outs


def _solve_batch(M: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solutions of ``M_b β = r_b``; a singular system (a replicate that lost a cell) by
    pseudo-inverse, each replicate on its own so that the result does not depend on the batch."""
    try:
        sol = np.linalg.solve(M, r[:, :, None])[:, :, 0]
        bad = ~np.isfinite(sol).all(axis=1)
    except np.linalg.LinAlgError:
        sol, bad = np.empty_like(r), np.ones(len(r), dtype=bool)
    for b in np.flatnonzero(bad):
        try:
            s = np.linalg.solve(M[b : b + 1], r[b : b + 1, :, None])[0, :, 0]
            if not np.isfinite(s).all():
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            s = np.linalg.pinv(M[b]) @ r[b]
        sol[b] = s
    return sol


def _strata(stratum: np.ndarray) -> np.ndarray:
    codes, uniq = pd.factorize(pd.Series(np.asarray(stratum, dtype=object)).astype(str))
    levels = sorted(uniq)
    if len(levels) <= 1:
        return np.empty((len(codes), 0))
    rank = np.argsort(np.argsort(np.asarray(uniq, dtype=object)))  # level of each code, in sorted order
    return (rank[codes][:, None] == np.arange(1, len(levels))[None, :]).astype(float)


def _drop_singletons(mask: np.ndarray, stratum: np.ndarray) -> np.ndarray:
    lab = pd.Series(np.asarray(stratum, dtype=object)).astype(str)
    counts = lab[mask].value_counts()
    return mask & ~lab.isin(counts.index[counts == 1]).to_numpy()


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
    min_cell: int = 5

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


def cea_analysis(data: pd.DataFrame, wtp: tuple[float, ...] | list[float] = (0, 250, 500, 1000, 2000, 5000),
                 wtp_reference: float = 1000.0, n_reps: int = 5000, seed: int = 0, level: float = 0.95,
                 outcome: str = "outcome", min_cell: int = 5) -> CEAResult:
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
        m = _drop_singletons(m, stratum)
        sub = d[m]
        n = int(m.sum())
        if n == 0:
            continue
        arm = np.where(group[m] == "comparison", "comparison", cell[m])
        S = _strata(stratum[m])
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
        fits: dict[tuple[str, str], _Fit] = {}
        for mk, D in models.items():
            for outc, y, base in (("cost", C, C0), ("effect", E, E0)):
                X = np.column_stack([D, base, S])
                designs.append(X)
                ys.append(y)
                keys.append((mk, outc))
                fits[(mk, outc)] = _ols(X, y)
        boots = dict(zip(keys, bootstrap_ols(designs, ys, arm, n_reps, rng, groups=stratum[m])))
        per_model: dict[str, tuple] = {}
        for cname, (mk, wv) in spec.items():
            L = np.zeros(models[mk].shape[1] + 1 + S.shape[1])
            L[: len(wv)] = wv
            fc, fe = fits[(mk, "cost")], fits[(mk, "effect")]
            if mk not in per_model:  # everything that depends on the model only, once
                Xn = np.column_stack([models[mk], E0, C0, S])  # NMB regression: both baselines
                fE, fC = _ols(Xn, E), _ols(Xn, C)
                dfree = max(n - np.linalg.matrix_rank(Xn), 1)
                per_model[mk] = (
                    (_hc2_cov(fc, fc), _hc2_cov(fe, fe), _hc2_cov(fc, fe)), _jackknife(fc), _jackknife(fe),
                    fE, fC, (_hc2_cov(fE, fE), _hc2_cov(fE, fC), _hc2_cov(fC, fC)), dfree,
                )
            (Vcc, Vee, Vce), jkc, jke, fE, fC, (Qee, Qec, Qcc), dfree = per_model[mk]
            jc, je = jkc @ L, jke @ L
            okj = np.isfinite(jc) & np.isfinite(je)
            cc = ContrastCE(
                contrast=cname, n=n, delta_cost=float(L @ fc.b), delta_effect=float(L @ fe.b),
                var_cost=float(L @ Vcc @ L), var_effect=float(L @ Vee @ L), cov=float(L @ Vce @ L),
                reps_cost=boots[(mk, "cost")] @ L, reps_effect=boots[(mk, "effect")] @ L,
                jack_cost=jc[okj], jack_effect=je[okj],
            )
            Ln = np.zeros(fE.X.shape[1])
            Ln[: len(wv)] = wv
            tq = stats.t.ppf(0.5 + level / 2, dfree)
            qee, qec, qcc = float(Ln @ Qee @ Ln), float(Ln @ Qec @ Ln), float(Ln @ Qcc @ Ln)
            for lam in wtp:
                # NMB_i = λE_i − C_i: coefficients λb_E − b_C; its HC2 meat is quadratic in λ
                est = float(Ln @ (lam * fE.b - fC.b))
                se = float(np.sqrt(max(lam * lam * qee - 2 * lam * qec + qcc, 0.0)))
                p = float(2 * stats.t.sf(abs(est) / se, dfree)) if se > 0 else np.nan
                cc.nmb[float(lam)] = (est, est - tq * se, est + tq * se, p)
            contrasts[cname] = cc
    order = {c: i for i, c in enumerate(CONTRASTS)}
    contrasts = dict(sorted(contrasts.items(), key=lambda kv: order.get(kv[0], 99)))
    return CEAResult(contrasts, tuple(float(w) for w in wtp), float(wtp_reference), level, n_reps, outcome, min_cell)


# --------------------------------------------------------------------------- study glue
def cea_data(study: Study) -> pd.DataFrame:
    """Family-level inputs of :func:`cea_analysis` (internal: one row per family)."""
    from hbeval.study.scoring import score

    cfg = study.config
    w = wide_family_costs(study)
    sc = score(study.table("measurements"))
    prim = cfg.primary
    cols = {f"{prim}_start": "start", f"{prim}_end": "end"}
    sc = sc.reindex(columns=list(cols)).rename(columns=cols)
    sc.index = sc.index.astype(str)
    d = w[["client_id", "group", "cell", "stratum", "follow_up_total", "pre_total"]].rename(
        columns={"follow_up_total": "cost", "pre_total": "cost_pre"})
    d = d.merge(sc, left_on="client_id", right_index=True, how="left")
    return d[d["group"].isin(["pilot", "comparison"])].sort_values("client_id", kind="mergesort").reset_index(drop=True)


def cea_analysis_of(study: Study) -> CEAResult:
    """The :class:`CEAResult` of a study (for :func:`plot_ce_plane`); computed once per
    study store and configuration, so ``cea_results`` and the figures share it."""
    from pathlib import Path

    cfg = study.config
    store = getattr(study, "store", None)
    key = None
    if store is not None and Path(store).exists():
        st = Path(store).stat()
        key = (str(Path(store).resolve()), st.st_mtime_ns, st.st_size, repr(cfg.to_dict()))
        if key in _CEA_CACHE:
            return _CEA_CACHE[key]
    res = cea_analysis(cea_data(study), cfg.wtp_eur, cfg.wtp_reference_eur, max(cfg.bootstrap_reps, 5000), cfg.seed,
                       outcome=cfg.primary, min_cell=cfg.min_cell)
    if key is not None:
        _CEA_CACHE.clear()
        _CEA_CACHE[key] = res
    return res


_CEA_CACHE: dict[tuple, CEAResult] = {}


def cea_results(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(cea.csv, ceac.csv)`` of a study (≥ 5,000 replicates, seeded from ``config.seed``)."""
    res = cea_analysis_of(study)
    return res.to_frame(), res.ceac_frame()


# --------------------------------------------------------------------------- figures
_T = {
    "en": {"dE": "Δ effect (points of {o})", "dC": "Δ cost (€ per family)", "plane": "Cost-effectiveness plane: {c}",
           "wtp": "WTP €{w:,.0f} per point", "ceac": "Cost-effectiveness acceptability curve",
           "x": "Willingness to pay (€ per point)", "y": "Probability cost-effective", "point": "estimate",
           "reps": "bootstrap replicates"},
    "fi": {"dE": "Vaikutuksen ero (pistettä, {o})", "dC": "Kustannusero (€ perhettä kohden)",
           "plane": "Kustannusvaikuttavuustaso: {c}", "wtp": "Maksuhalukkuus {w:,.0f} € / piste",
           "ceac": "Kustannusvaikuttavuuden hyväksyttävyyskäyrä", "x": "Maksuhalukkuus (€ / piste)",
           "y": "Todennäköisyys olla kustannusvaikuttava", "point": "estimaatti", "reps": "bootstrap-toistot"},
}


def plot_ce_plane(result: CEAResult, contrast: str = "pilot_vs_comparison", lang: str = "en", max_points: int = 2000):
    """The CE plane of one contrast: bootstrap cloud, point, WTP line, quadrant shares."""
    from hbeval.report.figures import PALETTE, new_figure

    T = _T["fi" if lang == "fi" else "en"]
    c = result.contrasts[contrast]
    fig, ax = new_figure(6.5, 5)
    k = min(max_points, len(c.reps_cost))
    ax.scatter(c.reps_effect[:k], c.reps_cost[:k], s=4, alpha=0.25, color=PALETTE["neutral"], label=T["reps"])
    ax.scatter([c.delta_effect], [c.delta_cost], s=40, color=PALETTE["pilot"], zorder=3, label=T["point"])
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(0, color="black", lw=0.8)
    xl = np.array(ax.get_xlim())
    ax.plot(xl, result.wtp_reference * xl, ls="--", color=PALETTE["comparison"], label=T["wtp"].format(w=result.wtp_reference))
    ax.set_xlim(xl)
    sh = result.quadrant_shares(contrast)
    for q, (x, y) in {"NE": (0.98, 0.98), "NW": (0.02, 0.98), "SE": (0.98, 0.02), "SW": (0.02, 0.02)}.items():
        ax.text(x, y, f"{q} {100 * sh[q]:.1f} %", transform=ax.transAxes, ha="right" if x > 0.5 else "left",
                va="top" if y > 0.5 else "bottom", fontsize=8)
    ax.set_xlabel(T["dE"].format(o=result.outcome))
    ax.set_ylabel(T["dC"])
    ax.set_title(T["plane"].format(c=contrast))
    ax.legend(fontsize=7, loc="center left")
    return fig


def plot_ceac(ceac: pd.DataFrame, lang: str = "en", contrasts: list[str] | None = None):
    """CEAC lines (``ceac.csv``) for the chosen contrasts (default: all)."""
    from hbeval.report.figures import new_figure

    T = _T["fi" if lang == "fi" else "en"]
    fig, ax = new_figure(7, 4.5)
    names = contrasts or list(dict.fromkeys(ceac["contrast"]))
    for name in names:
        s = ceac[ceac["contrast"] == name]
        ax.plot(s["wtp_eur"].astype(float), pd.to_numeric(s["prob_cost_effective"], errors="coerce"), marker="o", ms=3,
                label=name)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(T["x"])
    ax.set_ylabel(T["y"])
    ax.set_title(T["ceac"])
    ax.legend(fontsize=7)
    return fig
