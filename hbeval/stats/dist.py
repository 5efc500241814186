"""The few distribution functions hbeval needs, without importing :mod:`scipy.stats`.

``scipy.stats`` takes about 1.5 s to import (most of it parsing the docstrings of its hundred
distributions), which is a third of the analysis of a small study. The functions here call the
same :mod:`scipy.special` kernels (``stdtr``, ``stdtrit``, ``ndtr``, ``ndtri``, ``fdtrc``,
``chdtrc``) with the same argument checks, support handling and ``NaN`` placement as
``scipy.stats.<dist>.<method>`` (``rv_continuous.cdf``/``sf``/``ppf``, default ``loc = 0``,
``scale = 1``), so every value is bit-for-bit the one ``scipy.stats`` returns, and the return
type matches too (a NumPy scalar for scalar input, an array otherwise).
``tests/stats/test_dist.py`` checks this on a grid of edge values against ``scipy.stats``.

Rules copied from ``scipy.stats._distn_infrastructure.rv_continuous`` (scipy 1.17):

* a shape parameter (degrees of freedom) that is not ``> 0`` (including ``NaN``) gives ``NaN``;
* ``cdf``/``sf`` at ``NaN`` give ``NaN``; at or beyond the ends of the support they give the
  limiting 0 or 1 without calling the kernel (the support of *F* and χ² starts at 0);
* ``ppf`` outside ``[0, 1]`` or at ``NaN`` gives ``NaN``; ``ppf(0)`` and ``ppf(1)`` are the ends
  of the support; inside, the kernel's value ``+ 0.0`` (scipy adds ``loc``, which turns
  ``-0.0`` into ``0.0``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import special

__all__ = ["chi2_sf", "f_sf", "norm_cdf", "norm_ppf", "norm_sf", "pearson_chi2", "t_cdf", "t_ppf", "t_sf"]

_Kernel = Callable[..., Any]


def _args_ok(args: tuple[np.ndarray, ...]) -> Any:
    """scipy's default ``_argcheck``: every shape parameter ``> 0``."""
    ok: Any = True
    for a in args:
        ok = np.logical_and(ok, a > 0)
    return ok


def _out(output: np.ndarray) -> Any:
    return output[()] if output.ndim == 0 else output


#: the scalar types of the fast path (``type(v) in``: not ``bool``, not another NumPy type)
_SCALARS = (float, int, np.float64)


def _regular_scalars(v: Any, args: tuple[Any, ...], lower: float, upper: float) -> tuple[Any, ...] | None:
    """``v`` and ``args`` as the NumPy scalars the array path hands the kernel (``v`` as
    float64, each shape parameter with its ``np.asarray`` type), when all are plain scalars,
    every shape parameter ``> 0`` and ``lower < v < upper``; else ``None`` (the array path).

    A p-value or a quantile of one statistic at a time is most calls: this skips the dozen
    array operations of the general path (~90 µs a call) for the kernel alone (~3 µs), with
    the same loop of the same ufunc on the same values, so the same bits and type."""
    if type(v) not in _SCALARS or not all(type(a) in _SCALARS for a in args):
        return None
    if not (lower < v < upper) or not all(a > 0 for a in args):  # NaN fails both
        return None
    return (np.float64(v), *(np.asarray(a)[()] for a in args))


def _prob(kernel: _Kernel, x: Any, args: tuple[Any, ...], lower: float, upper: float, tail: str) -> Any:
    """``cdf`` (``tail="cdf"``) or ``sf`` of a continuous distribution on ``(lower, upper)``."""
    fast = _regular_scalars(x, args, lower, upper)
    if fast is not None:
        return np.float64(kernel(*fast))
    xa = np.asarray(x)
    xa = np.asarray(xa, dtype=np.promote_types(xa.dtype, np.float64))
    sh = tuple(np.asarray(a) for a in args)
    ok = _args_ok(sh)
    with np.errstate(invalid="ignore"):
        inside = (lower < xa) & (xa < upper)
    limit = (xa >= upper) & ok if tail == "cdf" else ok & (xa <= lower)
    cond = ok & inside
    output = np.zeros(np.shape(cond), xa.dtype)
    np.place(output, np.logical_not(ok) | np.isnan(xa), np.nan)
    np.place(output, limit, 1.0)
    if np.any(cond):
        good = [np.extract(cond, np.broadcast_to(v, cond.shape)) for v in (xa, *sh)]
        np.place(output, cond, kernel(*good))
    return _out(output)


def _quantile(kernel: _Kernel, q: Any, args: tuple[Any, ...], lower: float, upper: float) -> Any:
    """``ppf`` of a continuous distribution on ``(lower, upper)``."""
    fast = _regular_scalars(q, args, 0.0, 1.0)
    if fast is not None:
        return np.float64(kernel(*fast) + 0.0)  # scipy adds loc = 0: -0.0 becomes 0.0
    qa = np.asarray(q)
    sh = tuple(np.asarray(a) for a in args)
    ok = _args_ok(sh)
    cond = ok & (qa > 0) & (qa < 1)
    output = np.full(np.shape(cond), np.nan, dtype="d")
    np.place(output, (qa == 0) & ok, lower)
    np.place(output, (qa == 1) & ok, upper)
    if np.any(cond):
        good = [np.extract(cond, np.broadcast_to(v, cond.shape)) for v in (qa, *sh)]
        np.place(output, cond, kernel(*good) + 0.0)  # scipy adds loc = 0: -0.0 becomes 0.0
    return _out(output)


def _stdtr_upper(x: np.ndarray, df: np.ndarray) -> Any:
    return special.stdtr(df, -x)


def t_cdf(x: Any, df: Any) -> Any:
    """``scipy.stats.t.cdf(x, df)``."""
    return _prob(lambda v, d: special.stdtr(d, v), x, (df,), -np.inf, np.inf, "cdf")


def t_sf(x: Any, df: Any) -> Any:
    """``scipy.stats.t.sf(x, df)``: the upper tail of Student's *t*."""
    return _prob(_stdtr_upper, x, (df,), -np.inf, np.inf, "sf")


def t_ppf(q: Any, df: Any) -> Any:
    """``scipy.stats.t.ppf(q, df)``: the quantile of Student's *t*."""
    return _quantile(lambda p, d: special.stdtrit(d, p), q, (df,), -np.inf, np.inf)


def norm_cdf(x: Any) -> Any:
    """``scipy.stats.norm.cdf(x)``."""
    return _prob(special.ndtr, x, (), -np.inf, np.inf, "cdf")


def norm_sf(x: Any) -> Any:
    """``scipy.stats.norm.sf(x)``."""
    return _prob(lambda v: special.ndtr(-v), x, (), -np.inf, np.inf, "sf")


def norm_ppf(q: Any) -> Any:
    """``scipy.stats.norm.ppf(q)``."""
    return _quantile(special.ndtri, q, (), -np.inf, np.inf)


def f_sf(x: Any, dfn: Any, dfd: Any) -> Any:
    """``scipy.stats.f.sf(x, dfn, dfd)``: the upper tail of Fisher's *F*."""
    return _prob(lambda v, a, b: special.fdtrc(a, b, v), x, (dfn, dfd), 0.0, np.inf, "sf")


def chi2_sf(x: Any, df: Any) -> Any:
    """``scipy.stats.chi2.sf(x, df)``: the upper tail of χ²."""
    return _prob(lambda v, d: special.chdtrc(d, v), x, (df,), 0.0, np.inf, "sf")


def pearson_chi2(observed: Any) -> tuple[Any, Any, int]:
    """Pearson's χ² test of independence in a contingency table, without continuity correction.

    The statistic, p-value and degrees of freedom of
    ``scipy.stats.chi2_contingency(observed, correction=False)``, computed the same way
    (expected counts from the margins, ``Σ (O − E)² / E`` over the flattened table, upper χ²
    tail), so bit-for-bit equal to it.

    Raises
    ------
    ValueError
        A negative count, an empty table, or a zero expected count (as scipy does).
    """
    obs = np.asarray(observed)
    if np.any(obs < 0):
        raise ValueError("All values in `observed` must be nonnegative.")
    if obs.size == 0:
        raise ValueError("No data; `observed` has size 0.")
    o = np.asarray(obs, dtype=np.float64)
    margins = []
    for k in range(o.ndim):  # scipy's ``margins``: one axis at a time (``np.apply_over_axes``)
        m = o
        for j in range(o.ndim):
            if j != k:
                m = m.sum(axis=j, keepdims=True)
        margins.append(m)
    expected = margins[0]
    for m in margins[1:]:
        expected = expected * m
    expected = expected / o.sum() ** (o.ndim - 1)
    if np.any(expected == 0):
        raise ValueError("The internally computed table of expected frequencies has a zero element.")
    dof = int(expected.size - sum(expected.shape) + expected.ndim - 1)
    if dof == 0:
        return 0.0, 1.0, 0
    terms = ((o - expected) ** 2 / expected).ravel()
    stat = np.sum(terms)
    return stat, special.chdtrc(np.float64(dof), stat), dof
