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
  numpy only.
* :func:`protect_results` — reads the result tables :func:`hbeval.pipeline.compute` makes,
  builds the expressions of their counts (:func:`table_cells`), calls :func:`protect`, marks
  the chosen cells and adds a ``suppression`` column that says, for every row with a
  suppressed value, which value is hidden and why.

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

``tests/test_disclosure.py`` attacks the published CSVs with linear programs (min and max of
every hidden count under every published equality, counts ≥ 0, a share's count ≤ its ``n``,
each 0/1 effect estimate known to a fifth of a family): every hidden count keeps an interval
at least one family wide, for the demo and for 24- and 40-family studies.

Out of scope (said here so that nobody relies on it): *bounds* attacks that use that a "<k"
count is 1 to k − 1 (four "<5" cells that add up to a published 4 are each 1; the test lists
the baseline level counts that such an attack pins in two small studies — the remedy, pooling
such a level or showing those cells as ``suppressed``, is not built); statistics that are not
counts (means, estimates of continuous outcomes) beyond the shares that are a count divided by
a published ``n``; and relations through families the tables do not publish (subgroup effect
rows are modelled as their own totals).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

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


def _reduce(rows: list[Expr], targets: Sequence[Expr]) -> list[Expr]:
    """``rows`` without those that hold a latent no other row and no target holds: such a
    row only fixes its own latent and says nothing about the others (repeated until none)."""
    counts: dict[Hashable, int] = defaultdict(int)
    for e in [*rows, *targets]:
        for k in e:
            counts[k] += 1
    keep = list(rows)
    changed = True
    while changed:
        changed = False
        nxt = []
        for e in keep:
            if any(counts[k] == 1 for k in e):
                for k in e:
                    counts[k] -= 1
                changed = True
            else:
                nxt.append(e)
        keep = nxt
    return keep


def _unique(exprs: Sequence[Expr]) -> list[Expr]:
    seen: dict[tuple, Expr] = {}
    for e in exprs:
        if e:
            seen.setdefault(_key(e), e)
    return list(seen.values())


def _roots(rows: Sequence[Expr]) -> dict[Hashable, Hashable]:
    """Union-find over the latents: latents in one row are connected."""
    parent: dict[Hashable, Hashable] = {}

    def find(k: Hashable) -> Hashable:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for e in rows:
        ks = list(e)
        find(ks[0])
        for k in ks[1:]:
            ra, rb = find(ks[0]), find(k)
            if ra != rb:
                parent[rb] = ra
    return {k: find(k) for k in list(parent)}


def _determined_among(published: Sequence[Expr], targets: Sequence[Expr]) -> list[bool]:
    """For each target expression, whether the published expressions determine it."""
    rows = _reduce(_unique(published), targets)
    root = _roots(rows)
    by_root: dict[Hashable, list[Expr]] = defaultdict(list)
    for e in rows:
        by_root[root[next(iter(e))]].append(e)
    spaces: dict[frozenset, _Space] = {}
    out = []
    for f in targets:
        comp = frozenset(root[k] for k in f if k in root)
        if not f or not comp:
            out.append(False)
            continue
        if comp not in spaces:
            rs = [e for c in sorted(comp, key=repr) for e in by_root[c]]
            latents = sorted({k for e in rs for k in e}, key=repr)
            spaces[comp] = _Space(rs, {k: j for j, k in enumerate(latents)})
        sp = spaces[comp]
        # a latent of f that no published row holds is free, and so is f
        out.append(all(k in sp.index for k in f) and sp.contains(f))
    return out


def determined(exprs: Sequence[Expr], hidden: set[int]) -> list[int]:
    """Indices of the hidden expressions that the published ones (all others) determine.

    Parameters
    ----------
    exprs : every count as ``{latent: coefficient}``.
    hidden : indices of the suppressed counts.
    """
    published = [e for i, e in enumerate(exprs) if i not in hidden]
    order = sorted(hidden)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i in order:
        groups[_key(exprs[i])].append(i)
    targets = [exprs[g[0]] for g in groups.values()]
    flags = _determined_among(published, targets)
    return sorted(i for f, g in zip(flags, groups.values()) if f for i in g)


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
    """
    hidden = {i for i, v in enumerate(values) if v is None}
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, e in enumerate(exprs):
        groups[_key(e)].append(i)
    prot = Protection()
    while True:
        det = determined(exprs, hidden)
        if not det:
            return prot
        s = det[0]
        chosen = _choose(s, exprs, values, hidden, groups, costs, directions)
        for j in chosen:
            hidden.add(j)
            prot.complementary[j] = s


def _choose(s: int, exprs: Sequence[Expr], values: Sequence[float | None], hidden: set[int],
            groups: Mapping[tuple, list[int]], costs: Sequence[float | None] | None = None,
            directions: Sequence[Expr] = ()) -> list[int]:
    """The published cells to suppress so that ``s`` is no longer determined.

    A direction ``z`` in the latent counts is chosen with ``f_s · z ≠ 0``; every published
    cell whose expression ``p`` has ``p · z ≠ 0`` is suppressed. Then ``z`` is in the null
    space of what stays published, so ``s`` and every cell just suppressed can move along
    ``z`` unseen: nothing chosen here is itself derivable. The directions tried are one
    latent of ``s`` (``z = e_k``) and a swap of it with a latent that shares a cell with it
    (``z = e_k − e_j``, one family moved between two cells of the same total: the classic
    complementary cell). The cheapest is taken: the sum over the cells suppressed of their
    count (a zero counts :data:`ZERO_COST`: it is the last resort), ties by the order of the cells."""
    pub_groups = [[j for j in m if j not in hidden] for m in groups.values()]
    pub_groups = [m for m in pub_groups if m]
    by_latent: dict[Hashable, list[int]] = defaultdict(list)
    for g, m in enumerate(pub_groups):
        for k in exprs[m[0]]:
            by_latent[k].append(g)
    siblings: dict[Hashable, set[Hashable]] = defaultdict(set)
    for e in exprs:
        for k in e:
            siblings[k].update(e)
    f = exprs[s]
    best: tuple[tuple[float, int], list[int]] | None = None
    moves: list[Expr] = [{k: 1.0} if j is None else {k: 1.0, j: -1.0}
                         for k in sorted(f, key=repr) for j in [None, *sorted(siblings[k] - {k}, key=repr)]]
    moves += [d for d in directions if any(k in f for k in d)]
    for z in moves:
        if abs(sum(f.get(x, 0.0) * v for x, v in z.items())) < 1e-12:
            continue
        touched = {g for x in z for g in by_latent.get(x, [])}
        hit = [pub_groups[g] for g in sorted(touched)
               if abs(sum(exprs[pub_groups[g][0]].get(x, 0.0) * v for x, v in z.items())) > 1e-12]
        cells = sorted(c for m in hit for c in m)
        cost = (sum(_cost(c, values, costs) for c in cells), min(cells, default=-1))
        if best is None or cost < best[0]:
            best = (cost, cells)
    return best[1] if best else []


def _cost(c: int, values: Sequence[float | None], costs: Sequence[float | None] | None) -> float:
    if costs is not None and costs[c] is not None:
        return float(costs[c])  # type: ignore[arg-type]
    return float(values[c] or 0) or ZERO_COST


# ============================================================================ the tables
@dataclass
class Cell:
    """A published count: where it is, its expression, its value (``None`` when suppressed).

    ``kind`` is ``count`` (the column holds the count), ``share`` (the column holds the
    count divided by the row's ``n``), ``text`` (the count is written inside text) or
    ``estimate`` (an effect estimate that is a linear function of counts, such as a difference
    of two shares; it is not sensitive itself, so it is a cell only while it is published).
    ``blank`` are the other columns of the row that reveal it and go with it; ``cost`` what
    suppressing it costs (default: its value).
    """

    table: str
    row: int
    column: str
    expr: dict[Any, float]
    value: float | None
    kind: str = "count"
    blank: tuple[str, ...] = ()
    cost: float | None = None


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
            for m, g in proc.groupby("measure", sort=False):
                # 0/1: where the share shows, the mean is the share; where it is hidden, so is the mean
                # (a count's mean would stay); with every row hidden it may be, and is taken to be
                means = [(_num(a), _num(b)) for a, b in zip(g["mean"], g["share_nonzero"])]
                if all(a == b for a, b in means):
                    ns = {str(c): _count(n) for c, n in zip(g["cell"], g["n"])}
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
        self.cells.append(Cell(table, row, column, dict(expr), value, "share", tuple(blank)))

    # -- the tables
    def consort(self, df: pd.DataFrame) -> None:
        p = self.primary
        reasons = df.index[(df["stage"] == "excluded") & (df["reason"].astype(str) != "all reasons")]
        excl = {("excluded", str(df.at[i, "reason"])): 1.0 for i in reasons} or {("excluded", "*"): 1.0}
        for i, r in df.iterrows():
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
        for i, r in df.iterrows():
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
        for i, r in df.iterrows():
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
        for i, r in df.iterrows():
            m, g = r["measure"], r["cell"]
            self.add("process", i, "n", self.group(g, ("process_n", m)), r["n"])
            binary = _num(r["mean"]) is not None and _num(r["mean"]) == _num(r["share_nonzero"])
            self.share("process", i, "share_nonzero", self.group(g, ("process_nonzero", m)), r["share_nonzero"], r["n"],
                       blank=("mean", "sd", "median") if binary else ())

    def attrition(self, df: pd.DataFrame) -> None:
        p = self.primary
        for i, r in df.iterrows():
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
        for i, r in df.iterrows():
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
        sizes = {str(r["group"]): r["n"] for _, r in df[df["section"] == "overlap"].iterrows()}
        hist = df[df["section"] == "overlap_hist"]
        last = {g: sub.index[-1] for g, sub in hist.groupby("group")}
        for i, r in df.iterrows():
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
        for i, r in df.iterrows():
            g = "comparison" if r["group"] == "comparison" else ("pilot" if r["cell"] == "all" else r["cell"])
            self.add("costs", i, "n", self.size(g), r["n"], blank=("total_eur",))

    def subgroup_costs(self, df: pd.DataFrame) -> None:
        """Families of a subgroup level by group and cell (``subgroup = "var=level"``): the same
        latents as the baseline table's level counts (the same families)."""
        for i, r in df.iterrows():
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
        for i, r in df.iterrows():
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
        for i, r in df.iterrows():
            a, b = _groups(str(r[key]))
            self.add(table, i, "n_a", self.size(a), r["n_a"])
            self.add(table, i, "n_b", self.size(b), r["n_b"])

    def cea(self, df: pd.DataFrame, table: str = "cea") -> None:
        for i, r in df.iterrows():
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
    b = _Builder(results)
    return [{key + (c,): ns[c] for c in CELLS} for key, ns in b.shares.values() if all(c in ns for c in CELLS)]


def table_cells(results: Mapping[str, pd.DataFrame]) -> list[Cell]:
    """Every published count of the result tables, with its expression in latent counts."""
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
    return b.cells


# ============================================================================ applying it
def _label(table: str, df: pd.DataFrame, row: int, column: str) -> str:
    keys = [c for c in ("stage", "section", "variable", "measure", "outcome", "contrast", "subgroup", "comparison", "group",
                        "cell", "level", "reason", "category", "period", "item") if c in df.columns]
    parts = [str(df.at[row, c]) for c in keys if pd.notna(df.at[row, c]) and str(df.at[row, c])]
    return f"{table}.csv [{', '.join(parts)}] {column}"


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
    for _ in range(20):  # hiding an ``n`` hides the shares computed from it: go again until nothing moves
        cells = table_cells(out)
        with blas_single_thread():  # many small SVDs: OpenBLAS threads made them 30× slower on a loaded machine
            prot = protect([c.expr for c in cells], [c.value for c in cells], [c.cost for c in cells], share_moves(out))
        if not prot.complementary:
            break
        for j, sj in prot.complementary.items():
            c, s = cells[j], cells[sj]
            _hide(out[c.table], c)
            why[(c.table, c.row, c.column)] = _label(s.table, out[s.table], s.row, s.column)
    notes: dict[tuple[str, int], list[str]] = defaultdict(list)
    for (t, r, col), what in why.items():  # a blanked estimate is no longer a cell: say it here
        if _num(out[t].at[r, col]) is None and col == "estimate":
            notes[(t, r)].append(f"{col} and its statistics: blank so that {what} cannot be derived from the other "
                                 "published numbers (the estimate is a difference of shares of families)")
    for c in table_cells(out):
        shown = out[c.table].at[c.row, c.column]
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
        df[c.column] = df[c.column].astype(object)
        df.at[c.row, c.column] = COMPLEMENTARY
    elif c.kind == "text":
        df.at[c.row, c.column] = re.sub(r"\S+ missing starts", f"{COMPLEMENTARY} missing starts", str(df.at[c.row, c.column]))
    elif c.kind == "estimate":  # keep the float columns float (their CSV format stays the same)
        for b in (c.column, *c.blank):
            if b in df.columns:
                if pd.api.types.is_float_dtype(df[b]):
                    df.at[c.row, b] = np.nan
                else:
                    df[b] = df[b].astype(object)
                    df.at[c.row, b] = None
        return
    else:
        df[c.column] = df[c.column].astype(object)
        df.at[c.row, c.column] = None
    for b in c.blank:
        if b in df.columns:
            df[b] = df[b].astype(object)
            df.at[c.row, b] = None
    if "suppressed" in df.columns and df["suppressed"].dtype == bool:
        df.at[c.row, "suppressed"] = True
