"""Lee (2009) bounds on an effect under differential attrition, with a bootstrap interval for
the identified set."""

from __future__ import annotations

from typing import Any

import numpy as np


def _trimmed_means(ys: np.ndarray, m: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise means of the ``m−k`` smallest and the ``m−k`` largest of the first ``m``
    (sorted, NaN-last) values of each row of ``ys``."""
    B = ys.shape[0]
    cs = np.concatenate([np.zeros((B, 1)), np.cumsum(np.nan_to_num(ys), axis=1)], axis=1)
    keep = np.maximum(m - k, 1)
    rows = np.arange(B)
    low = cs[rows, keep] / keep
    high = (cs[rows, m] - cs[rows, k]) / keep
    return low, high


def _mean(a: np.ndarray) -> float:
    """The mean, NaN for no values (a group with no observed outcome), without numpy's warning."""
    return float(a.mean()) if len(a) else float("nan")


def lee_bounds(y: np.ndarray, observed: np.ndarray, treat: np.ndarray) -> dict[str, Any]:
    """Lee (2009) sharp bounds on the effect for the always-observed.

    Parameters
    ----------
    y : outcome (NaN where not observed)
    observed : bool, outcome observed
    treat : bool, treated group

    Returns
    -------
    dict with ``lower``, ``upper``, ``trim_share`` and ``trimmed`` (``"treated"`` or
    ``"control"``: the group with the higher observation rate, whose observed outcomes are
    trimmed).

    Notes
    -----
    With observation rates ``p_1`` (treated) and ``p_0``, and ``p_1 ≥ p_0``, the share
    ``q = (p_1 − p_0)/p_1`` of the treated observed outcomes is trimmed from the top (lower
    bound) or the bottom (upper bound); ``k = round(q m_1)`` of the ``m_1`` observed values.
    The bounds are the trimmed treated means minus the control mean (and symmetrically when
    ``p_0 > p_1``). Assumes monotone selection (treatment moves observation one way only).
    """
    y = np.asarray(y, dtype=float)
    obs = np.asarray(observed).astype(bool) & np.isfinite(y)
    t = np.asarray(treat).astype(bool)
    p1, p0 = obs[t].mean(), obs[~t].mean()
    y1 = np.sort(y[t & obs])
    y0 = np.sort(y[~t & obs])
    if p1 >= p0:
        q = (p1 - p0) / p1 if p1 > 0 else 0.0
        k = int(round(q * len(y1)))
        lo, hi = _trimmed_means(y1[None, :], np.array([len(y1)]), np.array([k]))
        return {"lower": float(lo[0] - _mean(y0)), "upper": float(hi[0] - _mean(y0)), "trim_share": float(q), "trimmed": "treated"}
    q = (p0 - p1) / p0
    k = int(round(q * len(y0)))
    lo, hi = _trimmed_means(y0[None, :], np.array([len(y0)]), np.array([k]))
    return {"lower": float(_mean(y1) - hi[0]), "upper": float(_mean(y1) - lo[0]), "trim_share": float(q), "trimmed": "control"}


def lee_bounds_bootstrap(y: np.ndarray, observed: np.ndarray, treat: np.ndarray, n_reps: int, rng: np.random.Generator,
                         level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval for the identified set: the ``(1−level)/2`` quantile of
    the lower bound and the ``(1+level)/2`` quantile of the upper bound over ``n_reps``
    resamples drawn within the two groups (vectorised: one sort per group and replicate
    row, trimmed means from cumulative sums). Conservative for the parameter (Horowitz &
    Manski 2000)."""
    y = np.asarray(y, dtype=float)
    obs = np.asarray(observed).astype(bool) & np.isfinite(y)
    t = np.asarray(treat).astype(bool)
    yy = np.where(obs, y, np.nan)
    g1, g0 = yy[t], yy[~t]
    s1 = g1[rng.integers(0, len(g1), (n_reps, len(g1)))]
    s0 = g0[rng.integers(0, len(g0), (n_reps, len(g0)))]
    m1 = np.isfinite(s1).sum(axis=1)
    m0 = np.isfinite(s0).sum(axis=1)
    p1, p0 = m1 / len(g1), m0 / len(g0)
    s1.sort(axis=1)
    s0.sort(axis=1)
    cs1 = np.nan_to_num(s1).sum(axis=1)
    cs0 = np.nan_to_num(s0).sum(axis=1)
    mean1 = cs1 / np.maximum(m1, 1)
    mean0 = cs0 / np.maximum(m0, 1)
    q1 = np.where(p1 >= p0, (p1 - p0) / np.where(p1 > 0, p1, 1), 0.0)
    q0 = np.where(p0 > p1, (p0 - p1) / np.where(p0 > 0, p0, 1), 0.0)
    k1 = np.round(q1 * m1).astype(int)
    k0 = np.round(q0 * m0).astype(int)
    lo1, hi1 = _trimmed_means(s1, m1, k1)
    lo0, hi0 = _trimmed_means(s0, m0, k0)
    lower = np.where(p1 >= p0, lo1 - mean0, mean1 - hi0)
    upper = np.where(p1 >= p0, hi1 - mean0, mean1 - lo0)
    a = (1 - level) / 2
    return float(np.nanquantile(lower, a)), float(np.nanquantile(upper, 1 - a))
