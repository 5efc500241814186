"""Suppression that holds across every published table: no suppressed count can be derived.

Each table suppresses its own counts below ``min_cell`` (the *primary* rule, shown ``<k``).
That alone is not enough: a total minus its published parts, a margin minus the other cells,
``n_assigned − n_observed`` or a share times a published ``n`` gives a suppressed count back.
This module models every published count of families as a linear expression in unknown
*latent* counts (the families of a cell, of a level of a covariate in a cell, with an end
score in a cell, …), so that the relations between published counts (totals, margins,
differences, the same count in two tables) are implied by shared latents, and suppresses
further published counts (*complementary* suppression, shown ``suppressed``) until no
suppressed count is determined by the published ones.

Two layers:

* :func:`protect` — the generic solver: expressions and values in, the cells to suppress out.
  numpy only. :func:`pinned` — the generic bounds audit: what a reader knows as equalities and
  bounds in, the suppressed counts it pins out (scipy's HiGHS).
* :func:`protect_results` — reads the result tables :func:`hbeval.pipeline.compute` makes,
  builds the expressions of their counts (:func:`table_cells`), calls :func:`protect`, marks
  the chosen cells, runs the bounds audit (:func:`bounds_audit`) and adds a ``suppression``
  column that says, for every row with a suppressed value, which value is hidden and why.

Notes
-----
Let the published counts be :math:`y = P z` and a suppressed count :math:`s = f^\\top z`,
where :math:`z` are the latent counts and the rows of :math:`P` and :math:`f` are known
(they follow from the table's structure). :math:`s` is determined by :math:`y` exactly when
:math:`f` lies in the row space of :math:`P`, i.e. when

.. math:: \\lVert f - V V^\\top f \\rVert = 0,

with :math:`V` an orthonormal basis of the row space (from the SVD of :math:`P`). While some
suppressed :math:`s` is determined, a direction :math:`z` with :math:`f^\top z \ne 0` is
chosen — one latent of :math:`s`, or a swap of it with a latent that shares a cell with it
(one family moved between two cells of the same total) — and every published count with
:math:`p^\top z \ne 0` is suppressed too (shown ``suppressed``). :math:`z` is then in the null
space of what stays published, so neither :math:`s` nor any newly suppressed count is
determined. The cheapest direction is taken (the sum of the counts it suppresses; a count
shown in many tables costs each time; a zero is the last resort, since a reader often knows it
is 0). Zero counts are not sensitive: a published 0 stays.

Effect estimates of 0/1 outcomes (the 0/1 process measures of ``process.csv``, risk
differences) are differences of shares, :math:`p_c = x_c / n_c`, so they are modelled too
(:meth:`_Builder.estimate_expr`, kind ``estimate``): when one would give a hidden count back,
the estimate and its statistics are blanked (costlier than any count: :data:`ESTIMATE_COST`),
unless a move that raises every cell's share alike (:func:`share_moves`, which leaves every
difference unchanged) hides the count more cheaply by suppressing the shares and the ``all`` row.
A table with no rule of its own has its ``n``/``n_*`` counts modelled by
:meth:`_Builder.generic` (a ``subgroup`` row as the baseline's level count).

*Bounds.* The linear test does not see that a ``<k`` count is 1 to k − 1 (zeros print as 0):
four cells shown ``<5`` whose total shows ``<5`` (or a published 4) hold one family each, though
no equality determines them. After the complementary suppression, :func:`bounds_audit` computes
for every suppressed count its feasible interval — min and max under every published count, the
bounds of every ``<k`` mark, counts ≥ 0, a share's count ≤ its ``n`` and each 0/1 effect estimate
known to :data:`ESTIMATE_RESOLUTION` of a family beyond its least misfit — in the components that
hold a mark (:func:`pinned`: latents the equalities fix are substituted, a few feasible points
clear most counts, one linear program settles the rest). Where an interval is narrower than
:data:`PROTECTION` (one family), one mark of the component is shown as the complementary marker
instead (a reader then knows only that the count is ≥ 0), and the audit repeats until no count is
pinned. No new marker: the weakened count reads ``suppressed`` like any complementary one, with a
note of the same form (it does not say that the count is small). It takes 0.1–0.3 s for a study.

``tests/test_disclosure.py`` attacks the published CSVs with linear programs written
independently of this module (min and max of every hidden count under every published equality,
counts ≥ 0, every ``<k`` mark as 1 to k − 1, a share's count ≤ its ``n``, each 0/1 effect estimate
known to a fifth of a family): every hidden count keeps an interval at least one family wide, for
the demo and for 24- and 40-family studies.

Out of scope (said here so that nobody relies on it): integrality (the audit's interval is that of
real-valued counts; the integer one lies inside it, so a width of one family leaves at least two
values); an attacker who knows the audit's rule and so reads a ``suppressed`` count next to ``<k``
marks as probably small; statistics that are not counts (means, estimates of continuous outcomes)
beyond the shares that are a count divided by a published ``n``; and relations through families the
tables do not publish (subgroup effect rows are modelled as their own totals).
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
from scipy import sparse
from scipy.optimize import linprog

from hbeval.stats.ri import blas_single_thread

#: How a complementary-suppressed count is shown (primary ones show ``<k``).
COMPLEMENTARY = "suppressed"
#: The column, added to a table that holds a suppressed value, that explains each one.
NOTE_COLUMN = "suppression"
#: What suppressing a published 0 costs in :func:`_choose`: a zero is a poor complement (a
#: reader often knows it is 0, e.g. no meetings in a cell without teaming), so it is the last resort.
ZERO_COST = 1e6
#: What blanking an effect estimate costs in :func:`_choose` (a margin or the interaction three or
#: two times this): a statistic of the analysis goes only when no count of the descriptive tables will do.
ESTIMATE_COST = 1e4
#: The statistics of an ``effects.csv`` row that reveal its estimate, blanked with it.
EFFECT_STATS = ("estimate", "std_error", "ci_low", "ci_high", "p_value", "p_value_ri", "ri_ci_low", "ri_ci_high",
                "p_value_adj", "p_value_holm", "hedges_g", "g_ci_low", "g_ci_high", "estimate_sd_units")
CELLS = ("frame_only/no_teaming", "frame_only/teaming", "frame_shares/no_teaming", "frame_shares/teaming")

Expr = Mapping[Any, float]


# ============================================================================ the solver
def _key(expr: Expr) -> tuple:
    return tuple(sorted(((repr(k), float(v)) for k, v in expr.items() if v != 0)))


class _Space:
    """The row space of the published expressions, for membership tests."""

    def __init__(self, rows: list[Expr], index: dict[Hashable, int]) -> None:
        self.index = index
        if not rows:
            self.basis = np.zeros((0, len(index)))
            return
        P = np.zeros((len(rows), len(index)))
        for i, r in enumerate(rows):
            for k, v in r.items():
                P[i, index[k]] = v
        try:
            _, sv, vt = np.linalg.svd(P, full_matrices=False)
        except np.linalg.LinAlgError:  # gesdd can fail to converge (seen with OpenBLAS's Haswell kernels)
            _, sv, vt = scipy.linalg.svd(P, full_matrices=False, lapack_driver="gesvd")
        tol = max(P.shape) * np.finfo(float).eps * (sv[0] if len(sv) else 0.0) * 100
        self.basis = vt[sv > tol]

    def contains(self, expr: Expr) -> bool:
        f = np.zeros(len(self.index))
        for k, v in expr.items():
            f[self.index[k]] = v
        if not f.any():
            return True
        r = f - self.basis.T @ (self.basis @ f)
        return bool(np.linalg.norm(r) <= 1e-7 * max(1.0, float(np.linalg.norm(f))))


def _reduce_index(rows: Sequence[Expr], targets: Sequence[Expr]) -> list[int]:
    """The indices of the ``rows`` kept when those that hold a latent no other row and no target holds are
    dropped (such a row only fixes its own latent and says nothing about the others), repeated until none is
    left. A row that may go stays removable while other rows go (it is still the only holder of its latent),
    so what is left does not depend on the order of removal."""
    counts: dict[Hashable, int] = defaultdict(int)
    holders: dict[Hashable, list[int]] = defaultdict(list)
    for i, e in enumerate(rows):
        for k in e:
            counts[k] += 1
            holders[k].append(i)
    for e in targets:
        for k in e:
            counts[k] += 1
    alive = [True] * len(rows)
    queue = [i for i, e in enumerate(rows) if any(counts[k] == 1 for k in e)]
    while queue:
        i = queue.pop()
        if not alive[i]:
            continue
        alive[i] = False
        for k in rows[i]:
            counts[k] -= 1
            if counts[k] == 1:
                queue.extend(j for j in holders[k] if alive[j])
    return [i for i, a in enumerate(alive) if a]


def _exact(expr: Expr, key: tuple) -> tuple:
    """``expr`` as a key that also holds its zero coefficients (``key``, its :func:`_key`, when it has none):
    two expressions with the same exact key give the same row of a matrix over the same latents."""
    if len(key) == len(expr):
        return key
    return ("with zeros", tuple(sorted((repr(k), float(v)) for k, v in expr.items())))


@dataclass
class _Cache:
    """What :func:`_determined_among` learns, kept between its calls while the published set shrinks:
    the row space of each set of rows (by the rows' exact keys, in order: the same rows give the same
    matrix, so the same basis) and whether a target lies in it. Only the spaces of the components that
    a complementary suppression changed are computed again."""

    spaces: dict[tuple, tuple[int, _Space]] = field(default_factory=dict)
    member: dict[tuple[int, tuple], bool] = field(default_factory=dict)


def _roots(rows: Sequence[Expr]) -> dict[Hashable, Hashable]:
    """Union-find over the latents: latents in one row are connected. The root of a component is
    set by the unions alone (each row's later latents join its first one), not by path compression."""
    parent: dict[Hashable, Hashable] = {}

    def find(k: Hashable) -> Hashable:
        r = k
        while parent[r] != r:
            r = parent[r]
        while parent[k] != r:
            parent[k], k = r, parent[k]
        return r

    for e in rows:
        it = iter(e)
        k0 = next(it)
        if k0 not in parent:
            parent[k0] = k0
        for k in it:
            if k not in parent:
                parent[k] = k
            ra, rb = find(k0), find(k)
            if ra != rb:
                parent[rb] = ra
    return {k: find(k) for k in list(parent)}


def _determined_among(published: Sequence[Expr], targets: Sequence[Expr], keys: Sequence[tuple] | None = None,
                      target_keys: Sequence[tuple] | None = None, cache: _Cache | None = None,
                      first: bool = False) -> list[bool]:
    """For each target expression, whether the published expressions determine it.

    ``keys``/``target_keys``: the :func:`_key` of each published and target expression, when the caller
    has them; ``cache``: row spaces kept between calls (:class:`_Cache`); ``first``: stop at the first
    determined target (the flags after it are ``False``)."""
    if keys is None:
        keys = [_key(e) for e in published]
    seen: dict[tuple, int] = {}  # the first of each distinct non-empty expression
    for i, (k, e) in enumerate(zip(keys, published)):
        if e:
            seen.setdefault(k, i)
    uniq = list(seen.values())
    kept = [uniq[j] for j in _reduce_index([published[i] for i in uniq], targets)]
    rows = [published[i] for i in kept]
    exact = [_exact(published[i], keys[i]) for i in kept]
    root = _roots(rows)
    by_root: dict[Hashable, list[int]] = defaultdict(list)
    for j, e in enumerate(rows):
        by_root[root[next(iter(e))]].append(j)
    cache = cache if cache is not None else _Cache()
    spaces: dict[frozenset, tuple[int, _Space]] = {}
    out: list[bool] = []
    for t, f in enumerate(targets):
        if first and out and out[-1]:
            break
        comp = frozenset(root[k] for k in f if k in root)
        if not f or not comp:
            out.append(False)
            continue
        if comp not in spaces:
            idx = [j for c in sorted(comp, key=repr) for j in by_root[c]]
            ck = tuple(exact[j] for j in idx)
            if ck not in cache.spaces:
                rs = [rows[j] for j in idx]
                latents = sorted({k for e in rs for k in e}, key=repr)
                cache.spaces[ck] = (len(cache.spaces), _Space(rs, {k: j for j, k in enumerate(latents)}))
            spaces[comp] = cache.spaces[ck]
        sid, sp = spaces[comp]
        mk = (sid, _exact(f, target_keys[t] if target_keys is not None else _key(f)))
        if mk not in cache.member:
            # a latent of f that no published row holds is free, and so is f
            cache.member[mk] = all(k in sp.index for k in f) and sp.contains(f)
        out.append(cache.member[mk])
    return out + [False] * (len(targets) - len(out))


def _determined_groups(exprs: Sequence[Expr], hidden: set[int], keys: Sequence[tuple], cache: _Cache | None,
                       first: bool) -> list[int]:
    published = [i for i in range(len(exprs)) if i not in hidden]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i in sorted(hidden):
        groups[keys[i]].append(i)
    flags = _determined_among([exprs[i] for i in published], [exprs[g[0]] for g in groups.values()],
                              [keys[i] for i in published], list(groups), cache, first)
    return sorted(i for f, g in zip(flags, groups.values()) if f for i in g)


def determined(exprs: Sequence[Expr], hidden: set[int]) -> list[int]:
    """Indices of the hidden expressions that the published ones (all others) determine.

    Parameters
    ----------
    exprs : every count as ``{latent: coefficient}``.
    hidden : indices of the suppressed counts.
    """
    return _determined_groups(exprs, hidden, [_key(e) for e in exprs], None, first=False)


@dataclass
class Protection:
    """The result of :func:`protect`: ``complementary`` maps each newly suppressed index to
    the index of the suppressed count it protects."""

    complementary: dict[int, int] = field(default_factory=dict)


def protect(exprs: Sequence[Expr], values: Sequence[float | None],
            costs: Sequence[float | None] | None = None, directions: Sequence[Expr] = ()) -> Protection:
    """Complementary suppression over a set of published counts.

    Parameters
    ----------
    exprs : every count as a linear expression ``{latent: coefficient}`` in latent counts.
        Counts with the same latents are related: ``a = x + y``, ``b = x`` and ``c = y``
        say ``a = b + c``.
    values : the published value of each count; ``None`` for a count already suppressed.
    costs : what suppressing each one costs (default: its value, a zero :data:`ZERO_COST`);
        ``None`` entries take the default.
    directions : more moves of the latent counts for :func:`_choose` to try, beside one latent
        and a swap of two: e.g. every cell's count of a 0/1 outcome up in proportion to the
        cell's size, which moves every share alike and leaves each difference of shares (an
        effect estimate) as it was.

    Returns
    -------
    :class:`Protection`; no suppressed count (given or added) is then determined by the
    published ones (see the module's Notes for the test).

    Notes
    -----
    Each round suppresses more counts for the first (lowest-index) determined one. Only the row
    spaces of the components those counts touch change, so the others are kept between rounds
    (:class:`_Cache`), and a round's test stops at the first determined count.
    """
    return _protect(exprs, values, costs, directions, _Cache())


def _protect(exprs: Sequence[Expr], values: Sequence[float | None], costs: Sequence[float | None] | None,
             directions: Sequence[Expr], cache: _Cache) -> Protection:
    """:func:`protect` with the caller's :class:`_Cache` (:func:`protect_results` keeps one between its rounds)."""
    hidden = {i for i, v in enumerate(values) if v is None}
    keys = [_key(e) for e in exprs]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    static = _Static.of(exprs, values, costs)
    prot = Protection()
    while True:
        det = _determined_groups(exprs, hidden, keys, cache, first=True)
        if not det:
            return prot
        s = det[0]
        chosen = _choose(s, exprs, values, hidden, groups, costs, directions, static)
        for j in chosen:
            hidden.add(j)
            prot.complementary[j] = s


@dataclass
class _Static:
    """What :func:`_choose` needs that does not change while :func:`protect` runs: each latent's
    siblings (the latents it shares a count with, itself excluded, by ``repr``), each count's cost,
    and whether every cost is a whole number (then a sum of costs is exact in any order)."""

    related: dict[Hashable, set[Hashable]]
    cost: list[float]
    whole: bool
    _sorted: dict[Hashable, list[Hashable]] = field(default_factory=dict)

    def siblings(self, k: Hashable) -> list[Hashable]:
        if k not in self._sorted:
            self._sorted[k] = sorted(self.related[k] - {k}, key=repr)
        return self._sorted[k]

    @classmethod
    def of(cls, exprs: Sequence[Expr], values: Sequence[float | None],
           costs: Sequence[float | None] | None) -> _Static:
        sib: dict[Hashable, set[Hashable]] = defaultdict(set)
        for e in exprs:
            for k in e:
                sib[k].update(e)
        cost = [_cost(c, values, costs) for c in range(len(exprs))]
        return cls(sib, cost,
                   all(x.is_integer() and abs(x) < 2.0 ** 40 for x in cost))


def _choose(s: int, exprs: Sequence[Expr], values: Sequence[float | None], hidden: set[int],
            groups: Mapping[tuple, list[int]], costs: Sequence[float | None] | None = None,
            directions: Sequence[Expr] = (), static: _Static | None = None) -> list[int]:
    """The published cells to suppress so that ``s`` is no longer determined.

    A direction ``z`` in the latent counts is chosen with ``f_s · z ≠ 0``; every published
    cell whose expression ``p`` has ``p · z ≠ 0`` is suppressed. Then ``z`` is in the null
    space of what stays published, so ``s`` and every cell just suppressed can move along
    ``z`` unseen: nothing chosen here is itself derivable. The directions tried are one
    latent of ``s`` (``z = e_k``) and a swap of it with a latent that shares a cell with it
    (``z = e_k − e_j``, one family moved between two cells of the same total: the classic
    complementary cell). The cheapest is taken: the sum over the cells suppressed of their
    count (a zero counts :data:`ZERO_COST`: it is the last resort), ties by the order of the cells.
    ``static``: :meth:`_Static.of` the arguments, when the caller keeps it between calls."""
    st = static if static is not None else _Static.of(exprs, values, costs)
    pub_groups = [[j for j in m if j not in hidden] for m in groups.values()]
    pub_groups = [m for m in pub_groups if m]
    by_latent: dict[Hashable, list[int]] = defaultdict(list)
    for g, m in enumerate(pub_groups):
        for k in exprs[m[0]]:
            by_latent[k].append(g)
    group_cost = [sum(st.cost[c] for c in m) for m in pub_groups] if st.whole else []
    f = exprs[s]
    best: tuple[tuple[float, int], list[int]] | None = None
    moves: list[Expr] = [{k: 1.0} if j is None else {k: 1.0, j: -1.0}
                         for k in sorted(f, key=repr) for j in [None, *st.siblings(k)]]
    moves += [d for d in directions if any(k in f for k in d)]
    for z in moves:
        if abs(sum(f.get(x, 0.0) * v for x, v in z.items())) < 1e-12:
            continue
        touched = {g for x in z for g in by_latent.get(x, [])}
        hit = [g for g in sorted(touched) if abs(sum(exprs[pub_groups[g][0]].get(x, 0.0) * v for x, v in z.items())) > 1e-12]
        if st.whole:  # whole numbers: the sum by groups is the sum by cells; the cells only for the best
            cost = (sum(group_cost[g] for g in hit), min((pub_groups[g][0] for g in hit), default=-1))
            if best is None or cost < best[0]:
                best = (cost, hit)
            continue
        cells = sorted(c for g in hit for c in pub_groups[g])
        cost = (sum(st.cost[c] for c in cells), min(cells, default=-1))
        if best is None or cost < best[0]:
            best = (cost, cells)
    if best is None:
        return []
    return sorted(c for g in best[1] for c in pub_groups[g]) if st.whole else best[1]


def _cost(c: int, values: Sequence[float | None], costs: Sequence[float | None] | None) -> float:
    if costs is not None and costs[c] is not None:
        return float(costs[c])  # type: ignore[arg-type]
    return float(values[c] or 0) or ZERO_COST


# ============================================================================ the bounds audit
#: How well the attacker of :func:`pinned` is taken to know the counts behind an effect estimate of a 0/1
#: outcome, in families (beyond the least misfit of the estimates with the published counts).
ESTIMATE_RESOLUTION = 0.2
#: The width, in families, every suppressed count's feasible interval must keep under the bounds audit.
PROTECTION = 1.0

Row = tuple[Expr, float, float]


def _components(exprs: Sequence[Expr]) -> list[int]:
    """The connected component (an index) of each expression: expressions that share a latent are connected."""
    root = _roots([e for e in exprs if e])
    ids: dict[Hashable, int] = {}
    return [ids.setdefault(root[next(iter(e))], len(ids)) if e else -1 for e in exprs]


def _fixed(rows: Sequence[Row]) -> dict[Hashable, float]:
    """The latents that the equalities among ``rows`` determine, with their values. An equality
    with one unknown left fixes it (propagated); the rest by the row space of each component (a
    latent is fixed when its unit vector lies in it)."""
    value: dict[Hashable, float] = {}
    eq = [(e, lo) for e, lo, hi in rows if lo == hi and e]
    rhs = [b for _, b in eq]
    unknown = [len(e) for e, _ in eq]
    by_latent: dict[Hashable, list[int]] = defaultdict(list)
    for i, (e, _) in enumerate(eq):
        for k in e:
            by_latent[k].append(i)
    queue = deque(i for i, n in enumerate(unknown) if n == 1)
    while queue:
        i = queue.popleft()
        if unknown[i] != 1:
            continue
        k = next(x for x in eq[i][0] if x not in value)
        value[k] = rhs[i] / eq[i][0][k]
        for j in by_latent[k]:
            rhs[j] -= eq[j][0][k] * value[k]
            unknown[j] -= 1
            if unknown[j] == 1:
                queue.append(j)
    rest = [({k: v for k, v in e.items() if k not in value}, rhs[i]) for i, (e, _) in enumerate(eq) if unknown[i] > 1]
    comp = _components([e for e, _ in rest])
    groups: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(comp):
        groups[c].append(i)
    for rs in groups.values():
        lat = sorted({k for i in rs for k in rest[i][0]}, key=repr)
        col = {k: j for j, k in enumerate(lat)}
        A = np.zeros((len(rs), len(lat)))
        bv = np.array([rest[i][1] for i in rs])
        for r, i in enumerate(rs):
            for k, v in rest[i][0].items():
                A[r, col[k]] = v
        try:
            u, sv, vt = np.linalg.svd(A, full_matrices=False)
        except np.linalg.LinAlgError:
            u, sv, vt = scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesvd")
        tol = max(A.shape) * np.finfo(float).eps * (sv[0] if len(sv) else 0.0) * 100
        keep = sv > tol
        V = vt[keep]
        x = V.T @ ((u[:, keep].T @ bv) / sv[keep])  # the least-norm solution
        fixed = 1.0 - (V ** 2).sum(axis=0) < 1e-9  # e_k in the row space
        value.update({k: float(x[j]) for k, j in col.items() if fixed[j]})
    return value


def _eliminate(rows: Sequence[Row], targets: Sequence[Expr], value: Mapping[Hashable, float] | None = None
               ) -> tuple[list[Row], list[Expr]]:
    """Rows and targets with every latent that the equalities determine (:func:`_fixed`, or
    ``value``) replaced by its value: the published sizes of the cells fix most latents, and what
    stays free splits into small components."""
    if value is None:
        value = _fixed(rows)

    def free(e: Expr) -> tuple[dict[Any, float], float]:
        return {k: v for k, v in e.items() if k not in value}, sum(v * value[k] for k, v in e.items() if k in value)

    out: list[Row] = []
    for row, lo, hi in rows:
        f, known = free(row)
        out.append((f, lo - known, hi - known))  # an empty ``f``: the row says nothing more
    return out, [free(t)[0] for t in targets]


def _soft_misfit(rows: Sequence[Row], soft: Sequence[int]) -> dict[int, float]:
    """The least widening of the ``soft`` rows (effect estimates: model-based, not exact functions of the
    counts) that makes the rows consistent with latents ≥ 0 (one LP, Σ widening minimised)."""
    lat = sorted({k for e, _, _ in rows for k in e}, key=repr)
    col = {k: j for j, k in enumerate(lat)}
    sl = {r: len(lat) + j for j, r in enumerate(soft)}
    ub: list[tuple[int, int, float]] = []  # (row, column, coefficient)
    eqs: list[tuple[int, int, float]] = []
    b: list[float] = []
    beq: list[float] = []
    for r, (e, lo, hi) in enumerate(rows):
        if lo == hi and r not in sl:
            eqs += [(len(beq), col[x], v) for x, v in e.items()]
            beq.append(lo)
            continue
        for sign, bound in ((1.0, hi), (-1.0, -lo)):
            if np.isfinite(bound):
                ub += [(len(b), col[x], sign * v) for x, v in e.items()]
                if r in sl:
                    ub.append((len(b), sl[r], -1.0))
                b.append(bound)
    k, m = len(b), len(beq)
    ri, ci, vals = (list(t) for t in zip(*ub)) if ub else ([], [], [])
    eqi, eqc, eqv = (list(t) for t in zip(*eqs)) if eqs else ([], [], [])
    nv = len(lat) + len(soft)
    c = np.r_[np.zeros(len(lat)), np.ones(len(soft))]
    res = linprog(c, A_ub=sparse.csr_matrix((vals, (ri, ci)), shape=(k, nv)) if k else None, b_ub=b or None,
                  A_eq=sparse.csr_matrix((eqv, (eqi, eqc)), shape=(m, nv)) if m else None, b_eq=beq or None,
                  bounds=(0, None), method="highs")
    if res.status != 0:
        return {r: 0.0 for r in soft}
    return {r: float(res.x[sl[r]]) for r in soft}


def pinned(rows: Sequence[Row], targets: Sequence[Expr], width: float = PROTECTION,
           soft: Sequence[int] = (), focus: Sequence[int] | None = None) -> list[int]:
    """The targets whose feasible interval is narrower than ``width``: a *bounds* attack.

    Parameters
    ----------
    rows : what a reader knows, each as ``(expr, lo, hi)``: ``lo ≤ expr · z ≤ hi`` over the latent
        counts ``z ≥ 0`` (a published count: ``lo = hi``; a ``<k`` mark: ``1 ≤ · ≤ k − 1``; a count
        at most a published ``n``: ``−∞ ≤ · ≤ n``).
    targets : the suppressed counts.
    soft : rows that are known only approximately (effect estimates): each is widened first by the
        least amount (:func:`_soft_misfit`) that makes all rows consistent.
    focus : the rows whose components are examined (default: every inequality); the audit of
        :func:`bounds_audit` examines the components of the ``<k`` marks only.

    Returns
    -------
    Indices of the pinned targets. Latents that the equalities fix are substituted first
    (:func:`_eliminate`); only the components of the ``focus`` rows are examined (without an
    inequality, the linear test of :func:`protect` decides); all of them in one linear program: for each
    target ``t`` two copies ``z⁺, z⁻`` of its component's latents and ``d_t ≤ min(width,
    f_t · (z⁺ − z⁻))``, ``Σ d_t`` maximised, so ``d_t`` is ``min(width, max f_t − min f_t)``.
    """
    return _audit(rows, targets, width, soft, focus)[0]


def _audit(rows: Sequence[Row], targets: Sequence[Expr], width: float = PROTECTION,
           soft: Sequence[int] = (), focus: Sequence[int] | None = None,
           fixed: Mapping[Hashable, float] | None = None) -> tuple[list[int], list[int], list[int]]:
    """:func:`pinned`, and the component (after elimination) of every row and of every target;
    ``fixed``: :func:`_fixed` of the rows when the caller has it."""
    rows, free = _eliminate(rows, targets, fixed)
    out = [i for i, f in enumerate(free) if not f]  # determined: a width of 0
    comp = _components([e for e, _, _ in rows] + list(free))
    rc, tc = comp[: len(rows)], comp[len(rows):]
    if focus is None:
        focus = [r for r, (e, lo, hi) in enumerate(rows) if lo < hi]
    examined = {rc[r] for r in focus if rows[r][0]}
    soft = [r for r in soft if rows[r][0] and rc[r] in examined]
    if soft:  # widen the estimates by their least misfit, found in the components that hold them
        near = {rc[r] for r in soft}
        idx = [r for r, x in enumerate(rc) if x in near and rows[r][0]]
        miss = _soft_misfit([rows[r] for r in idx], [idx.index(r) for r in soft])
        for r in soft:
            e, lo, hi = rows[r]
            tol = miss[idx.index(r)] + 1e-9
            rows[r] = (e, lo - tol, hi + tol)
    rows_of: dict[int, list[Row]] = defaultdict(list)
    for r, x in enumerate(rc):
        if x in examined and rows[r][0]:
            rows_of[x].append(rows[r])
    targets_of: dict[int, list[int]] = defaultdict(list)
    for i, x in enumerate(tc):
        if x in examined and free[i]:
            targets_of[x].append(i)
    blocks: list[tuple[sparse.csr_matrix, np.ndarray, np.ndarray, np.ndarray, list[int]]] = []
    for c in sorted(examined):
        ts = targets_of[c]
        if not ts:
            continue
        rs = rows_of[c]
        lat = sorted({k for e, _, _ in rs for k in e} | {k for i in ts for k in free[i]}, key=repr)
        col = {k: j for j, k in enumerate(lat)}
        ri, ci, vv = zip(*[(r, col[k], v) for r, (e, _, _) in enumerate(rs) for k, v in e.items()])
        A = sparse.csr_matrix((vv, (ri, ci)), shape=(len(rs), len(lat)))
        F = np.zeros((len(ts), len(lat)))
        for j, i in enumerate(ts):
            for k, v in free[i].items():
                F[j, col[k]] = v
        blocks.append((A, np.array([lo for _, lo, _ in rs]), np.array([hi for _, _, hi in rs]), F, ts))
    if not blocks:
        return sorted(out), rc, tc
    # screening: a few feasible points per component (the targets not yet spread all up, all down,
    # alternate ones up and down), in rounds; a target they spread by ``width`` is safe
    def weights(n: int) -> np.ndarray:
        alt = (-1.0) ** np.arange(n)
        return np.array([np.ones(n), -np.ones(n), alt, -alt])

    left = blocks
    for _ in range(3):
        res = _copies_lp(left, [4] * len(left), [(weights(len(b[4])) @ b[3]).ravel() for b in left])
        if res is None:  # inconsistent bounds (cannot happen for true counts): treat every target as at risk
            return sorted(set(out) | {i for *_, ts in blocks for i in ts}), rc, tc
        nxt, at = [], 0
        for b in left:
            m = b[0].shape[1]
            seen = b[3] @ res[at: at + 4 * m].reshape(4, m).T  # each target at the four points
            at += 4 * m
            open_ = (seen.max(axis=1) - seen.min(axis=1)) < width - 1e-7
            if open_.any():
                nxt.append((b[0], b[1], b[2], b[3][open_], [i for i, o in zip(b[4], open_) if o]))
        done = sum(len(ts) for *_, ts in nxt) == sum(len(ts) for *_, ts in left)
        left = nxt
        if not left or done:
            break
    if not left:
        return sorted(out), rc, tc
    # exact: for each target left, z⁺ and z⁻ (copies t⁺ for all t, then t⁻), and d_t ≤ f_t (z⁺ − z⁻), d_t ≤ width
    n_d = sum(len(ts) for *_, ts in left)
    D = sparse.block_diag([sparse.hstack([-sparse.block_diag([F[t: t + 1] for t in range(len(ts))]),
                                          sparse.block_diag([F[t: t + 1] for t in range(len(ts))])])
                           for _, _, _, F, ts in left], format="csr")
    res = _copies_lp(left, [2 * len(ts) for *_, ts in left], None, D, width)
    order = [i for *_, ts in left for i in ts]
    if res is None:
        return sorted(set(out) | set(order)), rc, tc
    d = res[len(res) - n_d:]
    return sorted(set(out) | {i for i, x in zip(order, d) if x < width - 1e-7}), rc, tc


def _copies_lp(blocks: Sequence[tuple], copies: Sequence[int], cost: Sequence[np.ndarray] | None,
               D: sparse.csr_matrix | None = None, width: float = PROTECTION) -> np.ndarray | None:
    """One linear program over ``copies[b]`` copies of the latents of each block ``(A, lo, hi, …)``
    (``lo ≤ A z ≤ hi``, ``z ≥ 0``). With ``cost``: each block's costs over its copies, minimised.
    With ``D``: extra variables ``d`` (one per row of ``D``), ``D [z; d] ≤ 0`` with ``d`` in
    ``[0, width]`` and ``Σ d`` maximised. The solution, ``None`` when infeasible."""
    ri, ci, vv = [], [], []
    r0 = c0 = 0
    for b, n in zip(blocks, copies):  # block_diag of kron(eye(n), A), built at once
        A = b[0].tocoo()
        R, C = A.shape
        ri.append((A.row[None, :] + (r0 + np.arange(n) * R)[:, None]).ravel())
        ci.append((A.col[None, :] + (c0 + np.arange(n) * C)[:, None]).ravel())
        vv.append(np.tile(A.data, n))
        r0, c0 = r0 + n * R, c0 + n * C
    M = sparse.csr_matrix((np.concatenate(vv), (np.concatenate(ri), np.concatenate(ci))), shape=(r0, c0))
    lo = np.concatenate([np.tile(b[1], n) for b, n in zip(blocks, copies)])
    hi = np.concatenate([np.tile(b[2], n) for b, n in zip(blocks, copies)])
    nz, n_d = M.shape[1], (D.shape[0] if D is not None else 0)
    eqr, up, down = lo == hi, (lo != hi) & np.isfinite(hi), (lo != hi) & np.isfinite(lo)
    pad = sparse.csr_matrix((0, n_d))
    ub = [M[up], -M[down]]
    if n_d:
        ub = [sparse.hstack([u, sparse.csr_matrix((u.shape[0], n_d))]) for u in ub] + [sparse.hstack([D, sparse.eye(n_d)])]
        pad = sparse.csr_matrix((int(eqr.sum()), n_d))
    A_ub = sparse.vstack(ub, format="csr")
    b_ub = np.concatenate([hi[up], -lo[down], np.zeros(n_d)])
    A_eq = sparse.hstack([M[eqr], pad], format="csr") if n_d else M[eqr]
    c = np.concatenate([*(cost or [np.zeros(nz)]), -np.ones(n_d)])
    bounds = np.zeros((nz + n_d, 2))
    bounds[:nz, 1] = np.inf
    bounds[nz:, 1] = width
    res = linprog(c, A_ub=A_ub if A_ub.shape[0] else None, b_ub=b_ub if A_ub.shape[0] else None,
                  A_eq=A_eq if eqr.any() else None, b_eq=lo[eqr] if eqr.any() else None, bounds=bounds, method="highs")
    return res.x if res.status == 0 else None


# ============================================================================ the tables
@dataclass
class Cell:
    """A published count: where it is, its expression, its value (``None`` when suppressed).

    ``kind`` is ``count`` (the column holds the count), ``share`` (the column holds the
    count divided by the row's ``n``), ``text`` (the count is written inside text) or
    ``estimate`` (an effect estimate that is a linear function of counts, such as a difference
    of two shares; it is not sensitive itself, so it is a cell only while it is published).
    ``blank`` are the other columns of the row that reveal it and go with it; ``cost`` what
    suppressing it costs (default: its value); ``bound`` a published number the count cannot
    exceed (a share's ``n``), for the bounds audit.
    """

    table: str
    row: int
    column: str
    expr: dict[Any, float]
    value: float | None
    kind: str = "count"
    blank: tuple[str, ...] = ()
    cost: float | None = None
    bound: float | None = None


_PLAIN = (int, float, bool, np.integer, np.floating, np.bool_)


def _rows(df: pd.DataFrame) -> Iterator[tuple[Any, Any]]:
    """``df.iterrows()`` as ``(index, {column: value})``, without a Series per row (the tables are read
    several times). The values are those ``iterrows`` gives: a row of an object array keeps its objects
    when it holds a number other than NaN and nothing but numbers, text and missing values (``None``,
    ``NA``, NaN); a row of text and missing values only is read by pandas as text, with NaN for every
    missing value (done here too); any other row goes through pandas as in ``iterrows``."""
    cols = list(df.columns)
    values = df.values
    if len(set(cols)) != len(cols) or (values.dtype != object and values.dtype.kind not in "iufb"):
        yield from df.iterrows()  # a column name twice (``r[name]`` is a Series), dates, …
        return
    if values.dtype != object:  # numbers only: the row's values as numpy scalars, as in ``iterrows``
        for i, v in zip(df.index, values):
            yield i, dict(zip(cols, v))
        return
    for i, v in zip(df.index, values):
        number = text = other = False
        for x in v:
            if isinstance(x, str):
                text = True
            elif isinstance(x, _PLAIN):
                number = number or x == x
            elif not (x is None or x is pd.NA):
                other = True
                break
        if other or not (number or text):
            r = pd.Series(v, index=cols)
            yield i, {c: r[c] for c in cols}
        elif number:
            yield i, dict(zip(cols, v))
        else:  # text and missing values (None, NA, NaN) only
            yield i, {c: (x if isinstance(x, str) else np.nan) for c, x in zip(cols, v)}


def _count(v: object) -> float | None:
    """A published count, ``None`` when it is suppressed (text such as ``<5``)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    s = str(v).strip()
    if re.fullmatch(r"-?\d+(\.0+)?", s):
        return float(s)
    return None


def _num(v: object) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if np.isnan(x) else x


def _sum(*exprs: Expr, sign: float = 1.0) -> dict[Any, float]:
    out: dict[Any, float] = defaultdict(float)
    for e in exprs:
        for k, v in e.items():
            out[k] += sign * v
    return {k: v for k, v in out.items() if v != 0}


def _neg(e: Expr) -> dict[Any, float]:
    return {k: -v for k, v in e.items()}


class _Builder:
    """Collects the :class:`Cell` objects of the result tables."""

    def __init__(self, results: Mapping[str, pd.DataFrame]) -> None:
        self.r = results
        self.cells: list[Cell] = []
        consort = results.get("consort")
        self.unassigned = consort is not None and bool((consort["cell"] == "not yet allocated").any())
        self.primary = self._primary()
        self.shares = self._binary_shares()

    def _primary(self) -> str:
        eff = self.r.get("effects")
        if eff is not None and "family" in eff.columns and (eff["family"] == "primary").any():
            return str(eff.loc[eff["family"] == "primary", "outcome"].iloc[0])
        att = self.r.get("attrition")
        if att is not None and "outcome" in att.columns and len(att):
            return str(att["outcome"].iloc[0])
        return "primary"

    def _binary_shares(self) -> dict[str, tuple[tuple[Hashable, ...], dict[str, float]]]:
        """The outcomes whose effect estimates are differences of shares of families, with
        the latent key of their counts and each cell's number of families: the 0/1 process
        measures (their share of ones is published in ``process.csv``) and the outcomes
        estimated as risk differences (their counts are published nowhere else)."""
        out: dict[str, tuple[tuple[Hashable, ...], dict[str, float]]] = {}
        proc = self.r.get("process")
        if proc is not None and len(proc) and {"measure", "cell", "n", "mean", "share_nonzero"} <= set(proc.columns):
            rows_of: dict[Any, list[int]] = {}  # ``groupby("measure", sort=False)``, without its overhead
            for j, m in enumerate(proc["measure"].tolist()):
                if pd.notna(m):
                    rows_of.setdefault(m, []).append(j)
            mean, share, cell, n = (proc[c].tolist() for c in ("mean", "share_nonzero", "cell", "n"))
            for m, js in rows_of.items():
                # 0/1: where the share shows, the mean is the share; where it is hidden, so is the mean
                # (a count's mean would stay); with every row hidden it may be, and is taken to be
                means = [(_num(mean[j]), _num(share[j])) for j in js]
                if all(a == b for a, b in means):
                    ns = {str(cell[j]): _count(n[j]) for j in js}
                    out[str(m)] = (("process_nonzero", str(m)), {c: v for c, v in ns.items() if v})
        eff, con = self.r.get("effects"), self.r.get("consort")
        if eff is not None and con is not None and "method" in eff.columns:
            alloc = con[(con["stage"] == "allocated") & (con["group"] == "pilot")]
            sizes = {str(c): _count(n) for c, n in zip(alloc["cell"], alloc["n"])}
            for o in eff.loc[eff["method"].astype(str).str.startswith("risk_difference"), "outcome"].unique():
                out.setdefault(str(o), (("binary", str(o)), {c: v for c, v in sizes.items() if v}))
        return out

    def estimate_expr(self, outcome: str, contrast: str) -> dict[Any, float]:
        """An effect estimate of a 0/1 outcome as a linear function of its counts per cell:
        :math:`p_c = x_c / n_c`; a cell contrast is :math:`p_c - p_{00}`, a margin the mean of
        its two simple effects, the interaction :math:`p_{11} - p_{10} - p_{01} + p_{00}`.
        The model's estimates (stratum fixed effects) differ from these by far less than a
        family, so the attacker of the tests treats them as known to within a fifth of a family.
        Empty when a cell's number of families is not published (the relation is then not linear)."""
        key, ns = self.shares[outcome]
        if not all(c in ns for c in CELLS):
            return {}
        fo_nt, fo_t, fs_nt, fs_t = CELLS
        w: dict[str, float]
        if contrast.startswith("cell:") and contrast[5:] in CELLS[1:]:
            w = {contrast[5:]: 1.0, fo_nt: -1.0}
        elif contrast == "frame_shares":
            w = {fs_nt: 0.5, fs_t: 0.5, fo_nt: -0.5, fo_t: -0.5}
        elif contrast == "teaming":
            w = {fo_t: 0.5, fs_t: 0.5, fo_nt: -0.5, fs_nt: -0.5}
        elif contrast == "frame_shares:teaming":
            w = {fs_t: 1.0, fs_nt: -1.0, fo_t: -1.0, fo_nt: 1.0}
        else:
            return {}
        return {key + (c,): v / ns[c] for c, v in w.items()}

    # -- the groups of families, as sums over cells
    def group(self, g: str, key: tuple) -> dict[Any, float]:
        """The families of group ``g`` (a cell, a margin, ``pilot``, ``comparison``) with the
        latent ``key + (cell,)``."""
        if g in CELLS:
            return {key + (g,): 1.0}
        if g == "comparison":
            return {key + ("comparison",): 1.0}
        if g in ("pilot", "all", "all cells"):
            e = {key + (c,): 1.0 for c in CELLS}
            if self.unassigned and g == "pilot" and key == ("size",):
                e[key + ("unassigned",)] = 1.0
            return e
        if g in ("frame_only", "frame_shares"):
            return {key + (c,): 1.0 for c in CELLS if c.startswith(g + "/")}
        if g in ("no_teaming", "teaming"):
            return {key + (c,): 1.0 for c in CELLS if c.endswith("/" + g)}
        if g == "diagonal":
            return {key + (CELLS[0],): 1.0, key + (CELLS[3],): 1.0}
        if g == "off_diagonal":
            return {key + (CELLS[1],): 1.0, key + (CELLS[2],): 1.0}
        return {key + (g,): 1.0}

    def size(self, g: str) -> dict[Any, float]:
        return self.group(g, ("size",))

    def add(self, table: str, row: int, column: str, expr: Expr, raw: object, kind: str = "count",
            blank: Sequence[str] = ()) -> None:
        if not expr:
            return
        self.cells.append(Cell(table, row, column, dict(expr), _count(raw), kind, tuple(blank)))

    def share(self, table: str, row: int, column: str, expr: Expr, share: object, n: object,
              blank: Sequence[str] = ()) -> None:
        """A count published as ``share × n`` (``n`` another published count of the row)."""
        nn, sh = _count(n), _num(share)
        if nn == 0:
            return  # an empty group: nothing to hide
        value = None if nn is None or sh is None else float(round(sh * nn))
        self.cells.append(Cell(table, row, column, dict(expr), value, "share", tuple(blank), bound=nn))

    # -- the tables
    def consort(self, df: pd.DataFrame) -> None:
        p = self.primary
        reasons = df.index[(df["stage"] == "excluded") & (df["reason"].astype(str) != "all reasons")]
        excl = {("excluded", str(df.at[i, "reason"])): 1.0 for i in reasons} or {("excluded", "*"): 1.0}
        for i, r in _rows(df):
            st, g, c = r["stage"], r["group"], r["cell"]
            if g == "comparison":
                e = {"assessed": self.size("comparison"),
                     "lost_to_follow_up": _sum(self.size("comparison"), _neg(self.group("comparison", ("obs", p)))),
                     "analysed": self.group("comparison", ("both", p))}.get(st, {("consort", st, g, c): 1.0})
            elif st == "assessed":
                e = _sum(excl, self.size("pilot"))
            elif st == "excluded":
                e = excl if r["reason"] == "all reasons" else {("excluded", str(r["reason"])): 1.0}
            elif st == "allocated":
                e = {("size", "unassigned"): 1.0} if c == "not yet allocated" else self.size(c)
            elif st == "lost_to_follow_up":
                e = _sum(self.size(c), _neg(self.group(c, ("obs", p))))
            elif st == "analysed":
                e = self.group(c, ("both", p))
            else:
                e = self.group(c, ("consort", st))
            self.add("consort", i, "n", e, r["n"])

    def baseline(self, df: pd.DataFrame) -> None:
        levels = df[df["level"].astype(str).str.len() > 0].groupby("variable")["level"].unique()
        for i, r in _rows(df):
            v, lev, g = r["variable"], str(r["level"]) if pd.notna(r["level"]) else "", r["group"]
            if lev:
                n = self.group(g, ("level", v, lev))
                miss = _sum(self.size(g), *[_neg(self.group(g, ("level", v, str(x)))) for x in levels[v]])
            else:
                n = self.group(g, ("nonmissing", v))
                miss = _sum(self.size(g), _neg(n))
            self.add("baseline", i, "n", n, r["n"], blank=("percent",))
            self.add("baseline", i, "missing", miss, r["missing"])

    def balance(self, df: pd.DataFrame) -> None:
        stats = [c for c in ("mean_a", "mean_b", "sd_a", "sd_b", "difference", "std_error", "normalized_difference",
                             "statistic", "p_value", "p_value_ri") if c in df.columns]
        for i, r in _rows(df):
            var = str(r["variable"])
            for side in ("a", "b"):
                g = str(r[f"group_{side}"])
                if r.get("row_type") != "covariate":
                    self.add("balance", i, f"n_{side}", self.size(g), r[f"n_{side}"])
                    continue
                if var.endswith(" (missing)"):
                    ones = _sum(self.size(g), _neg(self.group(g, ("nonmissing", var[: -len(" (missing)")]))))
                    n = self.size(g)
                elif "=" in var:
                    v, lev = var.split("=", 1)
                    ones = self.group(g, ("level", v, lev) if lev != "(other)" else ("level", v, lev, "balance"))
                    n = self.size(g)
                else:
                    ones, n = {}, self.group(g, ("nonmissing", var))
                self.add("balance", i, f"n_{side}", n, r[f"n_{side}"])
                if ones:
                    self.share("balance", i, f"mean_{side}", ones, r[f"mean_{side}"], r[f"n_{side}"], blank=stats)

    def process(self, df: pd.DataFrame) -> None:
        for i, r in _rows(df):
            m, g = r["measure"], r["cell"]
            self.add("process", i, "n", self.group(g, ("process_n", m)), r["n"])
            binary = _num(r["mean"]) is not None and _num(r["mean"]) == _num(r["share_nonzero"])
            self.share("process", i, "share_nonzero", self.group(g, ("process_nonzero", m)), r["share_nonzero"], r["n"],
                       blank=("mean", "sd", "median") if binary else ())

    def attrition(self, df: pd.DataFrame) -> None:
        p = self.primary
        for i, r in _rows(df):
            sec, c = r["section"], r.get("cell")
            if sec == "rate":
                self.add("attrition", i, "n_assigned", self.size(c), r["n_assigned"], blank=("attrition_rate",))
                self.add("attrition", i, "n_observed", self.group(c, ("obs", p)), r["n_observed"], blank=("attrition_rate",))
                continue
            # the model-based rows drop the families of singleton strata: their n is a count of its own
            ancova = self.group("all", ("effects", p, "ancova"))
            n = {"lee_bounds": self.group("all", ("obs", p)), "complete_cases": ancova, "ipw": ancova,
                 "differential": self.size("all") if r.get("contrast") == "cells (joint)" else {("attrition", sec): 1.0},
                 }.get(sec, {("attrition", sec): 1.0})
            self.add("attrition", i, "n", n, r["n"])
            m = re.search(r"(\S+) missing starts", str(r.get("method", "")))
            if m:
                self.add("attrition", i, "method", _sum(n, _neg(ancova)), m.group(1), kind="text")

    def effects(self, df: pd.DataFrame) -> None:
        for i, r in _rows(df):
            o, method = str(r["outcome"]), str(r.get("method", ""))
            sub = str(r.get("subgroup", "")) if pd.notna(r.get("subgroup", None)) else ""
            if r["contrast"] == "pilot_vs_comparison":
                e = _sum({("cmp_pilot", o): 1.0}, {("cmp_comparison", o): 1.0})
            elif sub:
                e = {("effects_subgroup", o, sub, method): 1.0}
            elif "imputation" in method or "tipping" in method:
                e = {("effects_sensitivity", o, method): 1.0}
            else:
                e = self.group("all", ("effects", o, "end" if "no_baseline" in method else "ancova"))
            self.add("effects", i, "n", e, r["n"])
            est = _num(r.get("estimate"))
            if o in self.shares and not sub and est is not None and "imputation" not in method and "tipping" not in method:
                x = self.estimate_expr(o, str(r["contrast"]))
                if x:
                    weight = 3.0 if r["contrast"] in ("frame_shares", "teaming") else 2.0 if ":" in str(r["contrast"]) and \
                        not str(r["contrast"]).startswith("cell:") else 1.0
                    self.cells.append(Cell("effects", i, "estimate", x, est, "estimate",
                                           tuple(c for c in EFFECT_STATS if c != "estimate"), weight * ESTIMATE_COST))

    def comparison(self, df: pd.DataFrame) -> None:
        sizes = {str(r["group"]): r["n"] for _, r in _rows(df[df["section"] == "overlap"])}
        hist = df[df["section"] == "overlap_hist"]
        last = {g: sub.index[-1] for g, sub in hist.groupby("group")}
        for i, r in _rows(df):
            sec, item = r["section"], str(r["item"])
            if sec == "overlap":
                g = str(r["group"])
                self.add("comparison", i, "n", self.size(g), r["n"])
                self.add("comparison", i, "n_trimmed", {("trimmed", g): 1.0}, r["n_trimmed"])
            elif sec == "overlap_hist":
                g = str(r["group"])
                e = {("hist", g, item): 1.0}
                if i == last[g]:  # the bins add up to the group
                    others = hist[(hist["group"] == g) & (hist.index != i)]["item"]
                    e = _sum(self.size(g), *[{("hist", g, str(x)): -1.0} for x in others])
                self.add("comparison", i, "n", e, r["n"])
            elif sec in ("estimate", "placebo"):
                pe, ce = {("cmp_pilot", item): 1.0}, {("cmp_comparison", item): 1.0}
                self.add("comparison", i, "n", _sum(pe, ce), r["n"])
                self.add("comparison", i, "n_pilot", pe, r["n_pilot"])
                self.add("comparison", i, "n_comparison", ce, r["n_comparison"])
            elif sec == "balance":
                m = re.fullmatch(r"(.+)\[(.+)\]", item)
                if m:
                    for g, col in (("pilot", "mean_pilot"), ("comparison", "mean_comparison")):
                        self.share("comparison", i, col, self.group(g, ("level", m.group(1), m.group(2))), r[col],
                                   sizes.get(g), blank=("mean_pilot", "mean_comparison", "mean_comparison_weighted"))

    def costs(self, df: pd.DataFrame) -> None:
        for i, r in _rows(df):
            g = "comparison" if r["group"] == "comparison" else ("pilot" if r["cell"] == "all" else r["cell"])
            self.add("costs", i, "n", self.size(g), r["n"], blank=("total_eur",))

    def subgroup_costs(self, df: pd.DataFrame) -> None:
        """Families of a subgroup level by group and cell (``subgroup = "var=level"``): the same
        latents as the baseline table's level counts (the same families)."""
        for i, r in _rows(df):
            var, _, lev = str(r["subgroup"]).partition("=")
            key = ("level", var, lev) if lev != "(missing)" else ("level", var, lev, "subgroup_costs")
            g = "comparison" if r["group"] == "comparison" else ("pilot" if r["cell"] == "all" else r["cell"])
            self.add("subgroup_costs", i, "n", self.group(g, key), r["n"])

    def generic(self, table: str, df: pd.DataFrame) -> None:
        """The counts of a table this module has no rule for (a table added later, e.g. costs by
        subgroup): a row with a ``subgroup`` (``variable=level``) and a ``cell`` or ``group`` counts
        the families of that level in that group, the latent of ``baseline.csv``'s level count;
        any other count is a latent of its own (related to nothing: register a rule for it here)."""
        counts = [c for c in df.columns if c == "n" or (c.startswith("n_") and c not in ("n_reps",))]
        gcol = next((c for c in ("cell", "group", "arm") if c in df.columns), None)
        keys = [c for c in df.columns if df[c].dtype == object and c not in counts and c != NOTE_COLUMN]
        for i, r in _rows(df):
            sub = str(r["subgroup"]) if "subgroup" in df.columns and pd.notna(r["subgroup"]) else ""
            for col in counts:
                if col == "n" and "=" in sub and gcol is not None and pd.notna(r[gcol]):
                    v, lev = sub.split("=", 1)
                    g = str(r[gcol])
                    e = self.group("pilot" if g == "all" else g, ("level", v, lev))
                else:
                    e = {(table, col, *(str(r[k]) for k in keys)): 1.0}
                self.add(table, i, col, e, r[col])

    def pairs(self, table: str, df: pd.DataFrame, key: str) -> None:
        """``n_a``/``n_b`` of the tables that compare two groups (cost differences, ROSI)."""
        for i, r in _rows(df):
            a, b = _groups(str(r[key]))
            self.add(table, i, "n_a", self.size(a), r["n_a"])
            self.add(table, i, "n_b", self.size(b), r["n_b"])

    def cea(self, df: pd.DataFrame, table: str = "cea") -> None:
        for i, r in _rows(df):
            o = str(r.get("outcome", self.primary))
            e = {("cea_pvc", o): 1.0} if r["contrast"] == "pilot_vs_comparison" else self.group("all", ("effects", o, "ancova"))
            self.add(table, i, "n", e, r["n"])

    def ceac(self, df: pd.DataFrame) -> None:
        """The CEAC's ``n`` is its contrast's ``n`` in ``cea.csv``."""
        self.cea(df, "ceac")


def _groups(contrast: str) -> tuple[str, str]:
    """The two groups ``(a, b)`` a contrast or a ROSI comparison compares."""
    if " vs " in contrast:
        a, b = contrast.split(" vs ", 1)
        return a.strip(), b.strip()
    if contrast.startswith("cell:"):
        return contrast[5:], CELLS[0]
    return {"frame_shares": ("frame_shares", "frame_only"), "teaming": ("teaming", "no_teaming"),
            "frame_shares:teaming": ("diagonal", "off_diagonal"),
            "pilot_vs_comparison": ("pilot", "comparison")}.get(contrast, (contrast + ":a", contrast + ":b"))


#: The tables with a rule of their own in :func:`table_cells`; the counts (``n``, ``n_*``) of any
#: other table are modelled by :meth:`_Builder.generic`.
MODELLED = ("consort", "baseline", "balance", "process", "attrition", "effects", "comparison", "costs", "cea", "ceac",
            "subgroup_costs", "cost_differences", "rosi")


def share_moves(results: Mapping[str, pd.DataFrame]) -> list[dict[Any, float]]:
    """For each 0/1 outcome whose effect estimates are modelled (:meth:`_Builder.estimate_expr`):
    every cell's count up by the cell's number of families, which leaves every difference of
    shares unchanged (see ``directions`` of :func:`protect`)."""
    return _moves(_Builder(results))


def _moves(b: _Builder) -> list[dict[Any, float]]:
    return [{key + (c,): ns[c] for c in CELLS} for key, ns in b.shares.values() if all(c in ns for c in CELLS)]


def table_cells(results: Mapping[str, pd.DataFrame]) -> list[Cell]:
    """Every published count of the result tables, with its expression in latent counts."""
    return _build(results).cells


def _build(results: Mapping[str, pd.DataFrame]) -> _Builder:
    """The builder of :func:`table_cells`, with its cells (and its 0/1 outcomes, for :func:`_moves`)."""
    b = _Builder(results)
    for name in ("consort", "baseline", "balance", "process", "attrition", "effects", "comparison", "costs", "cea",
                 "ceac", "subgroup_costs"):
        df = results.get(name)
        if df is not None and len(df):
            getattr(b, name)(df)
    for name, key in (("cost_differences", "contrast"), ("rosi", "comparison")):
        df = results.get(name)
        if df is not None and len(df) and {"n_a", "n_b", key} <= set(df.columns):
            b.pairs(name, df, key)
    for name, df in results.items():
        if name not in MODELLED and df is not None and len(df) and any(c == "n" or c.startswith("n_") for c in df.columns):
            b.generic(name, df)
    return b


# ============================================================================ applying it
def _label(table: str, df: pd.DataFrame, row: int, column: str) -> str:
    keys = [c for c in ("stage", "section", "variable", "measure", "outcome", "contrast", "subgroup", "comparison", "group",
                        "cell", "level", "reason", "category", "period", "item") if c in df.columns]
    parts = [str(df.at[row, c]) for c in keys if pd.notna(df.at[row, c]) and str(df.at[row, c])]
    return f"{table}.csv [{', '.join(parts)}] {column}"


#: A count below the threshold as a table shows it: ``<k`` (a cell of its own, or a word of a text).
_MARK = re.compile(r"(?<!\S)<(\d+)(?!\S)")


def _mark(tables: Mapping[str, pd.DataFrame], c: Cell, columns: dict[tuple[str, str], dict] | None = None) -> int | None:
    """``k`` when cell ``c`` shows ``<k`` (so a reader knows the count is 1 to k − 1), else ``None``.
    ``columns``: a cache of the tables' columns as ``{row: value}`` (``.at`` is slow in a loop)."""
    if c.value is not None or c.kind not in ("count", "text"):
        return None
    if columns is None:
        shown = str(tables[c.table].at[c.row, c.column]).strip()
    else:
        if (c.table, c.column) not in columns:
            df = tables[c.table]
            columns[(c.table, c.column)] = dict(zip(df.index, df[c.column]))
        shown = str(columns[(c.table, c.column)][c.row]).strip()
    m = _MARK.fullmatch(shown) if c.kind == "count" else _MARK.search(shown)
    return int(m.group(1)) if m else None


def bounds_rows(cells: Sequence[Cell], tables: Mapping[str, pd.DataFrame]
                ) -> tuple[list[Row], list[int], list[Expr], dict[tuple, list[int]]]:
    """What a reader of the published tables knows, for :func:`pinned`.

    Returns
    -------
    rows : every published count (an equality), every ``<k`` mark (``1 ≤ count ≤ k − 1``: zeros print
        as 0), every share's count at most its published ``n``, and every effect estimate of a 0/1
        outcome as a band of :data:`ESTIMATE_RESOLUTION` families;
    soft : the indices of the estimate rows;
    targets : the suppressed counts, one per distinct expression;
    marks : for each distinct expression shown ``<k`` somewhere, the rows of ``rows`` it gives.
    """
    rows: list[Row] = []
    soft: list[int] = []
    targets: dict[tuple, Expr] = {}
    marks: dict[tuple, list[int]] = defaultdict(list)
    columns: dict[tuple[str, str], dict] = {}
    for c in cells:
        if c.kind == "estimate":
            if c.value is not None:
                tol = ESTIMATE_RESOLUTION * min(abs(v) for v in c.expr.values())
                soft.append(len(rows))
                rows.append((c.expr, c.value - tol, c.value + tol))
            continue
        if c.value is not None:
            rows.append((c.expr, c.value, c.value))
        else:
            targets.setdefault(_key(c.expr), c.expr)
            k = _mark(tables, c, columns)
            if k is not None:
                marks[_key(c.expr)].append(len(rows))
                rows.append((c.expr, 1.0, k - 1.0))
        if c.bound is not None:
            rows.append((c.expr, -np.inf, c.bound))
    return rows, soft, list(targets.values()), dict(marks)


def bounds_audit(tables: dict[str, pd.DataFrame], why: dict[tuple[str, int, str], str] | None = None,
                 width: float = PROTECTION, cells: list[Cell] | None = None) -> list[Cell]:
    """Weaken ``<k`` marks (in place) until no suppressed count is pinned by them.

    A ``<k`` mark tells a reader the count is 1 to k − 1. Together with the published counts that
    can pin a suppressed count although no equality determines it: four cells shown ``<5`` whose
    total shows ``<5`` (or a published 4) hold one family each. :func:`pinned` finds every
    suppressed count whose feasible interval (min and max under every published count, every mark,
    counts ≥ 0, shares' counts ≤ their ``n`` and the effect estimates of 0/1 outcomes) is narrower
    than ``width`` families. In each component with such a count one mark is shown as the
    complementary marker instead (:data:`COMPLEMENTARY`: a reader then knows only that the count is
    ≥ 0; the same count is marked so in every table): the mark of a pinned count first, of the
    count with the most latents (a total) first, ties by table order. Repeated until none is pinned.

    Returns the cells whose mark was weakened; ``why`` gets, for each, the label of a count it protects.
    ``cells``: :func:`table_cells` of ``tables`` when the caller has them (weakening a mark changes
    no cell: the count stays suppressed, only the reader's bounds change).
    """
    weakened: list[Cell] = []
    cells = cells if cells is not None else table_cells(tables)
    by_key: dict[tuple, list[Cell]] = defaultdict(list)
    first: dict[tuple, int] = {}
    for i, c in enumerate(cells):
        by_key[_key(c.expr)].append(c)
        first.setdefault(_key(c.expr), i)
    fixed: dict[Hashable, float] | None = None  # weakening a mark leaves the equalities as they are
    for _ in range(200):
        rows, soft, targets, marks = bounds_rows(cells, tables)
        if not marks:
            break
        fixed = _fixed(rows) if fixed is None else fixed
        pins, rc, tc = _audit(rows, targets, width, soft, [r for rs in marks.values() for r in rs], fixed)
        if not pins:
            break
        pinned_keys = {_key(targets[p]) for p in pins}
        done: set[int] = set()
        changed = False
        for p in pins:
            comp = tc[p]
            if comp in done:
                continue
            done.add(comp)
            cand = [k for k, rs in marks.items() if any(rc[r] == comp for r in rs)]
            if not cand:  # pinned by equalities alone (not for this audit) or by marks outside its component
                continue
            k = min(cand, key=lambda k: (k not in pinned_keys, -len(k), first[k]))
            other = [q for q in pins if tc[q] == comp and _key(targets[q]) != k]
            for c in by_key[k]:
                if _mark(tables, c) is not None:
                    _hide(tables[c.table], c)
                    weakened.append(c)
                    if why is not None and other:
                        q = next(x for x in by_key[_key(targets[other[0]])] if x.value is None)
                        why[(c.table, c.row, c.column)] = _label(q.table, tables[q.table], q.row, q.column)
                    changed = True
        if not changed:
            break
    return weakened


def protect_results(results: Mapping[str, pd.DataFrame], min_cell: int) -> dict[str, pd.DataFrame]:
    """The result tables with complementary suppression across all of them, and a
    ``suppression`` column in every table that holds a suppressed value.

    Parameters
    ----------
    results : the tables of :func:`hbeval.pipeline.compute`, primary suppression applied.
    min_cell : the study's suppression threshold (for the explanations).

    Returns
    -------
    New tables (the given ones are not changed): each complementary-suppressed count shows
    ``suppressed`` (a share or a statistic that reveals it is blanked), and the row's
    ``suppression`` says so (``n: suppressed so that consort.csv [...] n cannot be derived``);
    a primary one says ``n: <5 (fewer than 5 families)``.
    """
    out = {k: v.copy() for k, v in results.items()}
    why: dict[tuple[str, int, str], str] = {}
    labels: dict[tuple[str, int, str], str] = {}  # _hide writes no column a label reads
    fresh: list[Cell] | None = None  # table_cells(out), while it is up to date
    cache = _Cache()  # the row spaces of the components a round leaves as they were serve the next
    for _ in range(20):  # hiding an ``n`` hides the shares computed from it: go again until nothing moves
        built = _build(out)
        cells = built.cells
        with blas_single_thread():  # many small SVDs: OpenBLAS threads made them 30× slower on a loaded machine
            prot = _protect([c.expr for c in cells], [c.value for c in cells], [c.cost for c in cells], _moves(built),
                            cache)
        if not prot.complementary:
            fresh = cells
            break
        for j, sj in prot.complementary.items():
            c, s = cells[j], cells[sj]
            _hide(out[c.table], c)
            if (s.table, s.row, s.column) not in labels:
                labels[(s.table, s.row, s.column)] = _label(s.table, out[s.table], s.row, s.column)
            why[(c.table, c.row, c.column)] = labels[(s.table, s.row, s.column)]
    with blas_single_thread():  # "<k" marks that pin a suppressed count by its bounds show the complementary marker
        bounds_audit(out, why, cells=fresh)
    notes: dict[tuple[str, int], list[str]] = defaultdict(list)
    for (t, r, col), what in why.items():  # a blanked estimate is no longer a cell: say it here
        if _num(out[t].at[r, col]) is None and col == "estimate":
            notes[(t, r)].append(f"{col} and its statistics: blank so that {what} cannot be derived from the other "
                                 "published numbers (the estimate is a difference of shares of families)")
    columns: dict[tuple[str, str], dict] = {}  # ``{row: value}`` of each column read (``.at`` is slow in a loop)
    for c in fresh if fresh is not None else table_cells(out):
        if (c.table, c.column) not in columns:
            columns[(c.table, c.column)] = dict(zip(out[c.table].index, out[c.table][c.column]))
        shown = columns[(c.table, c.column)][c.row]
        if (c.table, c.row, c.column) in why:
            notes[(c.table, c.row)].append(f"{c.column}: suppressed so that {why[(c.table, c.row, c.column)]}"
                                           " cannot be derived from the other published counts")
        elif c.value is None and c.kind == "count" and str(shown).startswith("<"):
            notes[(c.table, c.row)].append(f"{c.column}: <{min_cell} (fewer than {min_cell} families)")
        elif c.value is None and c.kind == "count" and str(shown) == COMPLEMENTARY:
            notes[(c.table, c.row)].append(f"{c.column}: suppressed so that a count below {min_cell} cannot be derived")
        elif c.value is None and c.kind == "share" and _num(shown) is None:
            notes[(c.table, c.row)].append(f"{c.column}: blank (a count of fewer than {min_cell} families)")
        elif c.value is None and c.kind == "share":
            notes[(c.table, c.row)].append(f"{c.column}: a share whose number of families is suppressed, so its count "
                                           "cannot be worked out")
        elif c.value is None and c.kind == "text":
            notes[(c.table, c.row)].append(f"{c.column}: a count below {min_cell} shown as <{min_cell}")
    for name, df in out.items():
        rows = {r: n for (t, r), n in notes.items() if t == name}
        if rows:
            df[NOTE_COLUMN] = ["; ".join(dict.fromkeys(rows.get(i, []))) for i in df.index]
    return out


def _hide(df: pd.DataFrame, c: Cell) -> None:
    """Suppress cell ``c`` of ``df`` (in place) and blank what reveals it."""
    if c.kind == "count":
        _as_object(df, c.column)
        df.at[c.row, c.column] = COMPLEMENTARY
    elif c.kind == "text":
        df.at[c.row, c.column] = re.sub(r"\S+ missing starts", f"{COMPLEMENTARY} missing starts", str(df.at[c.row, c.column]))
    elif c.kind == "estimate":  # keep the float columns float (their CSV format stays the same)
        for b in (c.column, *c.blank):
            if b in df.columns:
                if pd.api.types.is_float_dtype(df[b]):
                    df.at[c.row, b] = np.nan
                else:
                    _as_object(df, b)
                    df.at[c.row, b] = None
        return
    else:
        _as_object(df, c.column)
        df.at[c.row, c.column] = None
    for b in c.blank:
        if b in df.columns:
            _as_object(df, b)
            df.at[c.row, b] = None
    if "suppressed" in df.columns and df["suppressed"].dtype == bool:
        df.at[c.row, "suppressed"] = True


def _as_object(df: pd.DataFrame, column: str) -> None:
    """Column ``column`` of ``df`` as objects (in place), so that it can hold a marker or ``None``."""
    if df[column].dtype != object:
        df[column] = df[column].astype(object)
