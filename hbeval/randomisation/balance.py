"""Baseline balance of the randomised arms, following iebaltab (``results/balance.csv``).

:func:`balance_table` is pure (a DataFrame of families in, a tidy table out);
:func:`balance_results` is the glue ``hbeval analyze`` calls; the love plot of the normalised
differences is :func:`hbeval.report.plots.plot_love`.

Comparisons (``group_a`` → ``group_b``; differences are ``b − a``):

* the two margins of the 2×2: ``frame_only → frame_shares`` and ``no_teaming → teaming``;
* each cell against the reference cell ``frame_only/no_teaming``.

Rows (``row_type``):

* ``covariate`` — one per variable and comparison: means, SDs and observed counts of both
  groups, the difference with its standard error and t-test p-value, and the normalised
  difference;
* ``joint_f`` — per comparison, the joint orthogonality test: OLS of the group-``b``
  indicator on every covariate (missing values mean-imputed with a missing indicator, so no
  row is dropped), F test that all slopes are zero; for the margins also its
  randomisation-inference p-value;
* ``omnibus_ri`` — one row: the sum over covariates of the one-way ANOVA F across the four
  cells, referred to its distribution over re-randomisations of the procedure actually used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hbeval.arms import CELLS, SEEDS, cell_code
from hbeval.privacy import pool_rare_levels, suppress_count
from hbeval.randomisation.redraw import redraw
from hbeval.stats.dist import f_sf, t_sf
from hbeval.stats.ols import blocks
from hbeval.study.scoring import score

DEFAULT_COVARIATES = ("household_size", "n_children", "youngest_child_age", "site", "service_line", "area")
MISSING_LEVEL = "(missing)"

#: (comparison, group_a label, group_b label, cells in a, cells in b)
COMPARISONS: tuple[tuple[str, str, str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("frame_shares", "frame_only", "frame_shares", (0, 1), (2, 3)),
    ("teaming", "no_teaming", "teaming", (0, 2), (1, 3)),
    *((f"cell:{CELLS[c]}", CELLS[0], CELLS[c], (0,), (c,)) for c in (1, 2, 3)),
)

COLUMNS = [
    "variable", "comparison", "group_a", "group_b", "row_type", "n_a", "n_b", "mean_a", "mean_b", "sd_a", "sd_b",
    "difference", "std_error", "normalized_difference", "statistic", "df1", "df2", "p_value", "p_value_ri", "n_draws",
    "suppressed",
]
_STATS = ["mean_a", "mean_b", "sd_a", "sd_b", "difference", "std_error", "normalized_difference", "statistic", "p_value",
          "p_value_ri"]


# ---------------------------------------------------------------------- covariates
def expand_covariates(families: pd.DataFrame, covariates: Sequence[str],
                      min_cell: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The variables shown and the matrix of the joint test.

    Returns
    -------
    ``(shown, joint)``. ``shown`` has one column per displayed variable: a numeric covariate
    as is (NaN where missing) plus ``<name> (missing)`` (0/1) when anything is missing; a
    categorical covariate as one 0/1 column ``<name>=<level>`` per level, missing values as
    level ``(missing)``. ``joint`` is the regressor matrix of the joint test: numeric
    covariates with missing values replaced by the observed mean (the missing indicator
    carries the difference), categorical ones without their first level; constant columns
    dropped.
    """
    shown: dict[str, pd.Series] = {}
    joint: dict[str, pd.Series] = {}
    idx = families.index
    for c in covariates:
        s = families[c]
        if pd.api.types.is_bool_dtype(s):
            s = s.astype("float")
        if pd.api.types.is_numeric_dtype(s):
            x = pd.to_numeric(s, errors="coerce").astype(float)
            shown[c] = x
            miss = x.isna()
            joint[c] = x.fillna(x.mean() if miss.sum() < len(x) else 0.0)
            if miss.any():
                shown[f"{c} {MISSING_LEVEL}"] = miss.astype(float)
                joint[f"{c} {MISSING_LEVEL}"] = miss.astype(float)
        else:
            lab = pool_rare_levels(s, min_cell)
            lab = lab.where(s.notna(), MISSING_LEVEL).astype(str)
            levels = sorted(lab.unique())
            for j, lev in enumerate(levels):
                d = (lab == lev).astype(float)
                shown[f"{c}={lev}"] = d
                if j > 0:
                    joint[f"{c}={lev}"] = d
    shown_df = pd.DataFrame(shown, index=idx)
    joint_df = pd.DataFrame(joint, index=idx)
    joint_df = joint_df.loc[:, joint_df.nunique(dropna=False) > 1]
    return shown_df, joint_df


# ---------------------------------------------------------------------- statistics
def _diff_stats(xa: np.ndarray, xb: np.ndarray) -> dict[str, float]:
    xa = xa[~np.isnan(xa)]
    xb = xb[~np.isnan(xb)]
    na, nb = len(xa), len(xb)
    out: dict[str, float] = {"n_a": na, "n_b": nb}
    ma = xa.mean() if na else np.nan
    mb = xb.mean() if nb else np.nan
    va = xa.var(ddof=1) if na > 1 else np.nan
    vb = xb.var(ddof=1) if nb > 1 else np.nan
    out.update(mean_a=ma, mean_b=mb, sd_a=np.sqrt(va), sd_b=np.sqrt(vb), difference=mb - ma)
    se = np.sqrt(va / na + vb / nb) if na > 1 and nb > 1 else np.nan
    out["std_error"] = se
    pooled = np.sqrt((va + vb) / 2)
    out["normalized_difference"] = (mb - ma) / pooled if pooled > 0 else (0.0 if mb == ma else np.nan)
    df = na + nb - 2
    if se > 0 and df > 0:
        t = (mb - ma) / se
        out.update(statistic=t, df1=df, p_value=2 * t_sf(abs(t), df))
    else:
        out.update(statistic=np.nan, df1=df if df > 0 else np.nan,
                   p_value=np.nan if not (se == 0 and mb == ma) else 1.0)
    return out


def _orthonormal(X: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of centred ``X`` (rank-revealing)."""
    Xc = X - X.mean(axis=0)
    if Xc.shape[1] == 0:
        return Xc
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    tol = s.max() * max(Xc.shape) * np.finfo(float).eps if len(s) else 0
    return U[:, s > tol]


def joint_r2(Q: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """R² of regressing each column of ``Y`` on an intercept and the basis ``Q``."""
    Yc = Y - Y.mean(axis=0)
    tss = (Yc**2).sum(axis=0)
    ess = ((Q.T @ Yc) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tss > 0, ess / tss, np.nan)


def _f_from_r2(r2: np.ndarray | float, n: int, k: int) -> np.ndarray | float:
    """F = (R²/k) / ((1 − R²)/(n − k − 1)); infinite when R² = 1 (covariates predict the arm
    perfectly, as with many small levels in a small pilot)."""
    r2 = np.asarray(r2, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (r2 / k) / (np.maximum(1 - r2, 0.0) / (n - k - 1))
    return out if out.ndim else float(out)


#: Bytes of one float block of redraws (draws x families); bounds the memory of the RI
#: statistics whatever the pilot's size (50,000 families x 2,000 draws would be 800 MB a copy).
BLOCK_BYTES = 64 * 2**20


def _draw_blocks(n_draws: int, n: int) -> list[slice]:
    return blocks(n_draws, max(1, BLOCK_BYTES // (8 * max(n, 1))))


def omnibus_statistic(X: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Σ_j one-way ANOVA F of column ``j`` of ``X`` across the four cells.

    ``codes`` is ``(n,)`` or ``(n_draws, n)``; returns one value per assignment. Vectorised:
    cell sums are one matrix product per cell, over blocks of draws (bounded memory).
    """
    codes = np.atleast_2d(codes)
    if codes.shape[0] > 1:
        return np.concatenate([_omnibus(X, codes[b]) for b in _draw_blocks(codes.shape[0], codes.shape[1])])
    return _omnibus(X, codes)


def _omnibus(X: np.ndarray, codes: np.ndarray) -> np.ndarray:
    n = X.shape[0]
    m = X.mean(axis=0)
    ss_tot = ((X - m) ** 2).sum(axis=0)
    ss_between = np.zeros((codes.shape[0], X.shape[1]))
    n_groups = np.zeros(codes.shape[0])
    for c in range(4):
        ind = (codes == c).astype(float)
        nc = ind.sum(axis=1)
        sums = ind @ X
        with np.errstate(invalid="ignore", divide="ignore"):
            ss_between += np.where(nc[:, None] > 0, sums**2 / nc[:, None], 0.0)
        n_groups += nc > 0
    ss_between -= n * m**2
    ss_within = ss_tot - ss_between
    dfb = (n_groups - 1)[:, None]
    dfw = (n - n_groups)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (ss_between / dfb) / (ss_within / dfw)
    f = np.where(ss_tot > 0, f, 0.0)
    return np.nansum(f, axis=1)


def _ri_p(observed: float, drawn: np.ndarray) -> float:
    """``(1 + #{T_d ≥ T_obs}) / (1 + D)`` with a relative tolerance for ties."""
    drawn = drawn[~np.isnan(drawn)]
    if np.isnan(observed) or not len(drawn):
        return np.nan
    tol = 1e-9 * max(1.0, abs(observed))
    return float((1 + np.sum(drawn >= observed - tol)) / (1 + len(drawn)))


# ---------------------------------------------------------------------- the table
def balance_table(
    families: pd.DataFrame,
    covariates: Sequence[str],
    min_cell: int,
    *,
    draws: np.ndarray | None = None,
    cell: str = "cell",
) -> pd.DataFrame:
    """An iebaltab-style balance table of the 2×2 arms.

    Parameters
    ----------
    families : one row per randomised family, with ``cell`` (code 0–3; or ``frame_arm`` and
        ``teaming_arm``) and the covariate columns; rows without an assignment are left out
    covariates : numeric or categorical columns (categoricals become one dummy per level)
    min_cell : suppression threshold: a group smaller than this, or a 0/1 variable whose
        count of ones or zeros in a group is between 1 and ``min_cell − 1``, has its
        statistics blanked (``suppressed``); counts below it show as ``"<k"``
    draws : optional ``(n_draws, n)`` cell codes redrawn under the actual procedure, in the
        order of the assigned rows of ``families``; gives ``p_value_ri``
    cell : name of the cell-code column

    Returns
    -------
    DataFrame with :data:`COLUMNS` (see the module docstring for the rows).

    Notes
    -----
    For a variable ``x`` and groups ``a``, ``b`` with ``n_a``, ``n_b`` observed values:
    ``difference = x̄_b − x̄_a``; ``std_error = sqrt(s_a²/n_a + s_b²/n_b)``, which is the HC2
    standard error of the OLS slope of ``x`` on the group-``b`` indicator; ``p_value`` from
    ``t = difference / std_error`` on ``n_a + n_b − 2`` degrees of freedom (estimatr's
    ``lm_robust`` default); ``normalized_difference = difference / sqrt((s_a² + s_b²) / 2)``
    (Imbens & Rubin 2015, ch. 14; iebaltab's ``normdiff``). Joint test:
    ``F = (R²/k) / ((1 − R²)/(n − k − 1))`` of the OLS of the ``b`` indicator on the ``k``
    covariate columns (iebaltab's ``ftest``); ``p_value_ri = (1 + #{R²_d ≥ R²}) / (1 + D)``
    over the redraws (F is monotone in R² for fixed ``n, k``). References: Bruhn & McKenzie
    (2009) and the World Bank DIME ``iebaltab`` documentation.
    """
    fam = families
    if cell in fam.columns:
        codes_all = pd.to_numeric(fam[cell], errors="coerce")
    else:
        codes_all = pd.Series(cell_code(fam["frame_arm"].fillna(""), fam["teaming_arm"].fillna("")), index=fam.index,
                              dtype=float)
        codes_all[fam["frame_arm"].isna() | fam["teaming_arm"].isna()] = np.nan
    keep = codes_all.notna().to_numpy()
    fam = fam.loc[keep]
    codes = codes_all[keep].to_numpy().astype(np.int8)
    if draws is not None:
        draws = np.asarray(draws)
        if draws.shape[1] == len(keep) and keep.sum() != len(keep):
            draws = draws[:, keep]
        if draws.shape[1] != len(fam):
            raise ValueError(f"draws have {draws.shape[1]} columns for {len(fam)} assigned families")
    shown, joint = expand_covariates(fam, list(covariates), min_cell)
    X = joint.to_numpy(float)
    rows: list[dict[str, Any]] = []
    for name, ga, gb, ca, cb in COMPARISONS:
        in_a = np.isin(codes, ca)
        in_b = np.isin(codes, cb)
        na_tot, nb_tot = int(in_a.sum()), int(in_b.sum())
        for var in shown.columns:
            x = shown[var].to_numpy(float)
            r = {"variable": var, "comparison": name, "group_a": ga, "group_b": gb, "row_type": "covariate"}
            r.update(_diff_stats(x[in_a], x[in_b]))
            r["suppressed"] = _small(x[in_a], min_cell) or _small(x[in_b], min_cell) or na_tot < min_cell or nb_tot < min_cell
            rows.append(r)
        # joint orthogonality test
        sub = in_a | in_b
        n = int(sub.sum())
        Q = _orthonormal(X[sub]) if X.shape[1] else np.zeros((n, 0))
        k = Q.shape[1]
        r = {"variable": "joint_f_test", "comparison": name, "group_a": ga, "group_b": gb, "row_type": "joint_f",
             "n_a": na_tot, "n_b": nb_tot, "df1": k, "df2": n - k - 1}
        if k > 0 and n - k - 1 > 0:
            y = in_b[sub].astype(float)
            r2 = float(joint_r2(Q, y[:, None])[0])
            f = float(_f_from_r2(r2, n, k))
            r.update(statistic=f, p_value=float(f_sf(f, k, n - k - 1)))
            if draws is not None and len(ca) == 2:  # margins: every family is in a or b in every draw
                r2_draws = np.concatenate([joint_r2(Q, np.isin(draws[b], cb).T.astype(float))
                                           for b in _draw_blocks(draws.shape[0], draws.shape[1])])
                r["p_value_ri"] = _ri_p(r2, r2_draws)
                r["n_draws"] = int(draws.shape[0])
        r["suppressed"] = na_tot < min_cell or nb_tot < min_cell
        rows.append(r)
    # omnibus across the four cells
    r = {"variable": "omnibus_ri", "comparison": "all_cells", "group_a": "all cells", "group_b": "all cells",
         "row_type": "omnibus_ri", "n_a": len(fam), "n_b": len(fam), "df1": X.shape[1], "suppressed": False}
    if X.shape[1] and len(fam) > 4:
        t_obs = float(omnibus_statistic(X, codes)[0])
        r["statistic"] = t_obs
        if draws is not None:
            p = _ri_p(t_obs, omnibus_statistic(X, draws))
            r.update(p_value=p, p_value_ri=p, n_draws=int(draws.shape[0]))
    rows.append(r)
    out = pd.DataFrame(rows).reindex(columns=COLUMNS)
    sup = out["suppressed"].fillna(False).astype(bool)
    for c in _STATS:
        out[c] = out[c].astype(float)
        out.loc[sup, c] = np.nan
    out["suppressed"] = sup
    for c in ("n_a", "n_b"):
        out[c] = [suppress_count(v, min_cell) for v in out[c]]
    for c in ("df1", "df2", "n_draws"):
        out[c] = out[c].astype("Int64")
    return out


def _small(x: np.ndarray, min_cell: int) -> bool:
    """A 0/1 variable whose count of ones or of zeros is in ``[1, min_cell)``, or fewer than
    ``min_cell`` observed values."""
    x = x[~np.isnan(x)]
    if 0 < len(x) < min_cell:
        return True
    if len(x) and np.isin(x, (0.0, 1.0)).all():
        ones = int(x.sum())
        zeros = len(x) - ones
        return 0 < ones < min_cell or 0 < zeros < min_cell
    return False


# ---------------------------------------------------------------------- study glue
def balance_results(study: Any, n_draws: int | None = None) -> pd.DataFrame:
    """``results/balance.csv`` of a :class:`hbeval.study.store.Study`.

    Pilot families with an assignment; covariates :data:`DEFAULT_COVARIATES` present in
    ``clients`` plus the baseline primary score ``<primary>_start`` when measured;
    randomisation-inference draws from :func:`hbeval.randomisation.redraw.redraw` (``config.ri_draws``
    by default) seeded by ``[config.seed, 31]``.
    """

    cfg = study.config
    fam = study.families()
    fam = fam[(fam["group"].astype(str) == "pilot") & fam["cell"].notna()].copy()
    fam = fam.sort_values("client_id", kind="mergesort").reset_index(drop=True)
    covs = [c for c in DEFAULT_COVARIATES if c in fam.columns]
    try:

        sc = score(study.table("measurements"), cfg.instruments)
        col = f"{cfg.primary}_start"
        if col in sc.columns and sc[col].notna().any():
            fam = fam.merge(sc[[col]], left_on="client_id", right_index=True, how="left")
            covs.append(col)
    except (KeyError, ValueError):
        pass
    draws = None
    if len(fam):
        draws = redraw(study, fam["client_id"].astype(str).tolist(), int(n_draws or cfg.ri_draws),
                       np.random.default_rng([cfg.seed, SEEDS["balance_ri"]]))
    return balance_table(fam, covs, cfg.min_cell, draws=draws)
