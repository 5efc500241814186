"""Complementary suppression across tables (hbeval.disclosure): the solver on small systems
with known answers, and a differencing attack, written here independently of the solver, that
must recover no suppressed count."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg

from hbeval import disclosure as D


def _attack(exprs: list[dict], values: list[float | None]) -> list[int]:
    """Indices of suppressed counts that the published ones pin down exactly: a count is pinned
    when no vector of the null space of the published rows moves it (SVD, not the solver's code)."""
    latents = sorted({k for e in exprs for k in e}, key=repr)
    col = {k: j for j, k in enumerate(latents)}
    A = np.zeros((len(exprs), len(latents)))
    for i, e in enumerate(exprs):
        for k, v in e.items():
            A[i, col[k]] = v
    pub = A[[v is not None for v in values]]
    if len(pub):
        _, sv, vt = np.linalg.svd(pub)
        rank = int((sv > 1e-9).sum())
        null = vt[rank:].T
    else:
        null = np.eye(len(latents))
    return [i for i, v in enumerate(values) if v is None and np.abs(A[i] @ null).max(initial=0.0) < 1e-9]


def _run(exprs: list[dict], values: list[float | None]) -> list[float | None]:
    prot = D.protect(exprs, values)
    return [None if i in prot.complementary else v for i, v in enumerate(values)]


def test_one_suppressed_part_of_a_total_takes_a_complement() -> None:
    # total = a + b + c with a suppressed: b or c must go too (the smaller one)
    exprs = [{"a": 1, "b": 1, "c": 1}, {"a": 1}, {"b": 1}, {"c": 1}]
    values: list[float | None] = [30, None, 8, 19]
    assert _attack(exprs, values) == [1]
    prot = D.protect(exprs, values)
    assert set(prot.complementary) == {2} and prot.complementary[2] == 1
    assert _attack(exprs, _run(exprs, values)) == []


def test_two_suppressed_parts_are_safe_as_they_are() -> None:
    exprs = [{"a": 1, "b": 1, "c": 1}, {"a": 1}, {"b": 1}, {"c": 1}]
    values: list[float | None] = [30, None, None, 19]
    assert D.protect(exprs, values).complementary == {}


def test_a_published_zero_stays_and_a_total_alone_is_not_suppressed() -> None:
    exprs = [{"a": 1, "b": 1}, {"a": 1}, {"b": 1}]
    values: list[float | None] = [3, None, 0]
    prot = D.protect(exprs, values)
    assert prot.complementary  # 3 − 0 gives a: something must go
    assert _attack(exprs, _run(exprs, values)) == []


def test_chain_across_two_tables() -> None:
    # table 1: allocated per cell x, y and lost per cell (x − ox, y − oy); table 2: observed ox, oy
    # and their total. lost_x is small: hiding it alone leaves x − ox from table 2.
    # The cell sizes are repeated in three more tables (costs, balance, ...), so giving them up
    # costs more than the observed counts.
    exprs = [{"x": 1}, {"y": 1}, {"x": 1, "ox": -1}, {"y": 1, "oy": -1},   # consort-like
             {"ox": 1}, {"oy": 1}, {"ox": 1, "oy": 1}]                       # attrition-like
    exprs += [{"x": 1}, {"y": 1}] * 3
    values: list[float | None] = [101, 98, None, 13, 98, 85, 183, 101, 98, 101, 98, 101, 98]
    assert _attack(exprs, values) == [2]
    out = _run(exprs, values)
    assert _attack(exprs, out) == []
    assert out[0] == 101 and out[1] == 98 and out[6] == 183  # sizes and the total stay
    assert out[4] is None and out[5] is None  # the observed counts swap


def test_same_count_in_several_tables_is_suppressed_everywhere() -> None:
    exprs = [{"x": 1}, {"x": 1}, {"x": 1, "y": 1}, {"y": 1}]
    values: list[float | None] = [None, 4, 12, 8]
    out = _run(exprs, values)
    assert out[1] is None
    assert _attack(exprs, out) == []


def test_swap_between_cells_keeps_shared_totals() -> None:
    # a 2×2 table with margins: one small interior cell needs complements in its row and column
    exprs = [{"a": 1}, {"b": 1}, {"c": 1}, {"d": 1},
             {"a": 1, "b": 1}, {"c": 1, "d": 1}, {"a": 1, "c": 1}, {"b": 1, "d": 1}, {"a": 1, "b": 1, "c": 1, "d": 1}]
    values: list[float | None] = [None, 20, 30, 40, 22, 70, 32, 60, 92]
    out = _run(exprs, values)
    assert _attack(exprs, out) == []
    assert out[8] == 92 and out[4] == 22  # the total and the margin the swap stays inside
    assert out[1] is None  # the swap partner of the small cell


# ------------------------------------------------------------------ the bounds audit ("<k" is 1 to k − 1)
FOUR = [{"a": 1}, {"b": 1}, {"c": 1}, {"d": 1}]
TOTAL = {"a": 1, "b": 1, "c": 1, "d": 1}


def test_four_small_cells_with_a_small_total_are_pinned_and_a_free_total_frees_them() -> None:
    # four "<5" cells whose total shows "<5": 4 ≥ total = Σ cells ≥ 4, so every cell is 1 and the total 4
    rows = [(e, 1.0, 4.0) for e in FOUR] + [(TOTAL, 1.0, 4.0)]
    assert D.pinned(rows, [*FOUR, TOTAL]) == [0, 1, 2, 3, 4]
    # the total shown as the complementary marker (≥ 0 only): each cell 1..4, the total 4..16
    rows[4] = (TOTAL, 0.0, np.inf)
    assert D.pinned(rows, [*FOUR, TOTAL]) == []
    # a published total of 9 with one cell 6: the three "<5" cells add up to 3, so each is 1 ...
    rows = [(e, 1.0, 4.0) for e in FOUR[:3]] + [(FOUR[3], 6.0, 6.0), (TOTAL, 9.0, 9.0)]
    assert D.pinned(rows, FOUR[:3]) == [0, 1, 2]
    # ... and with one of them shown as the complementary marker, none is (each keeps two values)
    rows[0] = (FOUR[0], 0.0, np.inf)
    assert D.pinned(rows, FOUR[:3]) == []
    # a count known to within a band (an effect estimate) is widened by its least misfit first
    rows = [(e, 1.0, 4.0) for e in FOUR[:2]] + [({"a": 1, "b": -1}, 2.9, 3.1)]
    assert D.pinned(rows, FOUR[:2], soft=[2]) == [0, 1]  # a − b = 3: a = 4, b = 1
    assert D.pinned(rows[:2], FOUR[:2]) == []


def _small_level(total: str) -> dict[str, pd.DataFrame]:
    """A table the disclosure module has no rule for: the families of one level by cell and in all cells."""
    return {"by_level": pd.DataFrame({"subgroup": ["area=kitee"] * 5, "cell": [*D.CELLS, "all"],
                                      "n": ["<5"] * 4 + [total]})}


@pytest.mark.parametrize("total", ["<5", "4"])
def test_bounds_audit_weakens_a_mark_until_no_count_is_pinned(total: str) -> None:
    res = _small_level(total)
    cells = D.table_cells(res)
    assert D._key(cells[4].expr) == D._key(TOTAL_LEVEL)  # the "all" row is the sum of the cells
    assert lp_attack(res)[0]  # the bounds attack pins the cells
    out = D.protect_results(res, 5)
    shown = list(out["by_level"]["n"])
    assert shown.count(D.COMPLEMENTARY) >= 1 and shown.count("<5") >= 2  # a mark goes, not all of them
    assert lp_attack(out)[0] == [] and lp_attack(out, small=False)[0] == []
    assert shown == list(D.protect_results(_small_level(total), 5)["by_level"]["n"])  # deterministic
    for i, v in enumerate(shown):  # explained, and the note of a weakened mark does not say it is small
        note = out["by_level"].at[i, D.NOTE_COLUMN]
        assert note.startswith("n: ") or v == total != "<5"
        if v == D.COMPLEMENTARY:
            assert "fewer than" not in note and "<5" not in note and "cannot be derived" in note
    assert list(res["by_level"]["n"]) == ["<5"] * 4 + [total]  # the input is not changed


TOTAL_LEVEL = {("level", "area", "kitee", c): 1.0 for c in D.CELLS}


def _tables() -> dict[str, pd.DataFrame]:
    """A small study's consort and attrition tables, primary suppression applied."""
    cells = D.CELLS
    consort = pd.DataFrame(
        [("assessed", "pilot", "all", "", "42"), ("excluded", "pilot", "all", "all reasons", "<5"),
         ("excluded", "pilot", "all", "(other)", "<5")]
        + [("allocated", "pilot", c, "", str(n)) for c, n in zip(cells, (12, 10, 9, 9))]
        + [("lost_to_follow_up", "pilot", c, "", "<5") for c in cells]
        + [("analysed", "pilot", c, "", str(n)) for c, n in zip(cells, (10, 9, 8, 8))]
        + [("assessed", "comparison", "all", "", "40"), ("lost_to_follow_up", "comparison", "all", "", "6"),
           ("analysed", "comparison", "all", "", "34")],
        columns=["stage", "group", "cell", "reason", "n"])
    attrition = pd.DataFrame(
        [("rate", c, "", str(a), str(o), 1 - o / a, "") for c, a, o in zip(cells, (12, 10, 9, 9), (11, 9, 8, 8))]
        + [("rate", "all", "", "40", "36", 0.1, ""), ("lee_bounds", "", "frame_shares", "", "", np.nan, "36")],
        columns=["section", "cell", "contrast", "n_assigned", "n_observed", "attrition_rate", "n"])
    attrition["method"] = ""
    attrition["outcome"] = "kykyviisari_total"
    return {"consort": consort, "attrition": attrition}


def test_tables_issue_attacks_fail_after_protection() -> None:
    res = _tables()
    cells = D.table_cells(res)
    exprs, values = [c.expr for c in cells], [c.value for c in cells]
    before = _attack(exprs, values)
    labels = {(cells[i].table, cells[i].row) for i in before}
    # assessed − Σ allocated gives the excluded total; n_assigned − n_observed the lost counts
    assert ("consort", 1) in labels and ("consort", 7) in labels
    out = D.protect_results(res, 5)
    after = D.table_cells(out)
    assert _attack([c.expr for c in after], [c.value for c in after]) == []
    # every suppressed value is explained in its row
    for name, df in out.items():
        for c in after:
            if c.table == name and c.value is None:
                assert c.column in df.at[c.row, D.NOTE_COLUMN]
    # what was published stays as it was where it could
    assert (out["consort"].loc[out["consort"]["stage"] == "allocated", "n"] != D.COMPLEMENTARY).any()
    assert (res["consort"]["n"] == _tables()["consort"]["n"]).all()  # inputs untouched


def test_hidden_count_blanks_what_reveals_it() -> None:
    out = D.protect_results(_tables(), 5)
    att = out["attrition"]
    hidden = att["n_observed"].astype(str).eq(D.COMPLEMENTARY) | att["n_assigned"].astype(str).eq(D.COMPLEMENTARY)
    assert hidden.any()
    assert att.loc[hidden, "attrition_rate"].isna().all()


# ------------------------------------------------------------------ whole studies
def _num(v: object) -> float | None:
    s = str(v).strip()
    return float(s) if s.replace(".", "", 1).isdigit() else None


@pytest.fixture(scope="module")
def small_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The published tables of a 40-family study (where small cells abound)."""
    from hbeval.demo import write_demo
    from hbeval.pipeline import compute
    from hbeval.study.store import open_study

    d = tmp_path_factory.mktemp("d40") / "study"
    write_demo(d, n_pilot=40, n_comparison=40, seed=1)
    return compute(open_study(d), progress=False).tables


@pytest.fixture(scope="module")
def demo_tables(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    from hbeval.pipeline import compute
    from hbeval.study.store import open_study

    d = tmp_path_factory.mktemp("demo-copy") / "study"
    shutil.copytree(demo_dir, d, ignore=shutil.ignore_patterns(".hbeval"))
    return compute(open_study(d), progress=False).tables


@pytest.mark.parametrize("which", ["small_tables", "demo_tables"])
def test_differencing_recovers_no_suppressed_count(which: str, request: pytest.FixtureRequest) -> None:
    tables = request.getfixturevalue(which)
    cells = D.table_cells(tables)
    hidden = [i for i, c in enumerate(cells) if c.value is None]
    assert hidden  # both studies have small cells
    assert _attack([c.expr for c in cells], [c.value for c in cells]) == []
    for c in cells:  # every suppressed value is explained in its row
        if c.value is None and str(tables[c.table].at[c.row, c.column]) not in ("", "nan", "None"):
            assert c.column in str(tables[c.table].at[c.row, D.NOTE_COLUMN])


def test_the_five_attacks_of_the_issue_fail(small_tables: dict[str, pd.DataFrame]) -> None:
    con, att, base = small_tables["consort"], small_tables["attrition"], small_tables["baseline"]
    pilot = con[con["group"] == "pilot"]

    def n(stage: str, cell: str = "all", reason: str | None = None) -> float | None:
        rows = pilot[(pilot["stage"] == stage) & (pilot["cell"] == cell)]
        if reason is not None:
            rows = rows[rows["reason"] == reason]
        return _num(rows["n"].iloc[0])

    cells = list(D.CELLS)
    # 1. assessed − Σ allocated gives the excluded total
    if n("excluded", reason="all reasons") is None:
        assert n("assessed") is None or any(n("allocated", c) is None for c in cells)
    # 2. attrition n_assigned − n_observed gives lost-to-follow-up counts
    rate = att[att["section"] == "rate"].set_index("cell")
    for c in cells:
        if n("lost_to_follow_up", c) is None:
            assert _num(rate.at[c, "n_assigned"]) is None or _num(rate.at[c, "n_observed"]) is None
    # 3. baseline pilot total − other cells gives a site count
    for _, g in base[base["level"].astype(str).str.len() > 0].groupby(["variable", "level"]):
        by = dict(zip(g["group"], g["n"].map(_num)))
        if any(by[c] is None for c in cells):
            assert by["pilot"] is None or sum(by[c] is None for c in cells) >= 2
    # 4. allocated − n gives the missing counts
    for _, r in base[base["level"].astype(str).str.len() == 0].iterrows():
        if r["group"] in cells and _num(r["missing"]) is None:
            assert _num(r["n"]) is None or n("allocated", r["group"]) is None
    # 5. the exclusion reasons: one suppressed reason is not the total minus the others
    reasons = pilot[(pilot["stage"] == "excluded") & (pilot["reason"] != "all reasons")]
    hid = reasons["n"].map(_num).isna()
    if hid.sum() == 1:
        assert n("excluded", reason="all reasons") is None


# ------------------------------------------------------------------ the whole set of published tables, by LP
# Issue 14/16: no suppressed count may be recovered from all results/*.csv together, effects.csv's estimates of
# 0/1 outcomes included. The attacker here knows every published count and share exactly, each effect estimate of
# a 0/1 outcome to within a fifth of a family (beyond the least misfit the tables allow: the model's estimates
# have stratum fixed effects), that counts are ≥ 0, a "<k" count is in [1, k−1] and a share's count is at most its
# row's n. The protection required: the feasible interval of every suppressed count (LP min and max) is at least
# one family wide, i.e. at least two values stay possible. (Integrality is not used: the LP interval contains the
# integer one.)
def _f(v: object) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if np.isnan(x) else x


RESOLUTION = 0.2  # of a family: how well the attacker is taken to know an effect estimate's counts
PROTECTION = 1.0  # the width, in families, every suppressed count's feasible interval must have


def _ranges(cells: list[D.Cell], tables: dict[str, pd.DataFrame], misfit: dict[int, float] | None = None,
            small: bool = True):
    """Every constraint as (expr, lo, hi), and the suppressed counts to attack (one per distinct expression)."""
    rows: list[tuple[dict, float, float]] = []
    est: list[int] = []
    targets: dict[tuple, int] = {}
    for i, c in enumerate(cells):
        if c.kind == "estimate":
            assert c.value is not None, c  # an estimate is a cell only while it is published
            tol = (misfit or {}).get(i, 0.0) + RESOLUTION * min(abs(v) for v in c.expr.values()) + 1e-9
            rows.append((c.expr, c.value - tol, c.value + tol))
            est.append(len(rows) - 1)
            continue
        if c.value is not None:
            rows.append((c.expr, c.value, c.value))
        else:
            targets.setdefault(D._key(c.expr), i)
            shown = str(tables[c.table].at[c.row, c.column])
            m = re.fullmatch(r"<(\d+)", shown.strip())
            if c.kind == "count" and m and small:
                rows.append((c.expr, 1.0, float(m.group(1)) - 1))
        if c.kind == "share" and c.table == "process":
            n = _f(tables["process"].at[c.row, "n"])
            if n is not None:
                rows.append((c.expr, -np.inf, n))
    return rows, est, targets


def _components(rows: list[tuple[dict, float, float]]) -> dict:
    parent: dict = {}

    def find(k):
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for e, _, _ in rows:
        ks = list(e)
        for k in ks[1:]:
            parent[find(k)] = find(ks[0])
        find(ks[0])
    return {k: find(k) for k in parent}


def _lp(rows: list[tuple[dict, float, float]], latents: list, objective: dict | None = None,
        slack: list[int] | None = None):
    """linprog over ``latents`` (≥ 0) subject to lo ≤ expr ≤ hi; with ``slack`` rows widened by t ≥ 0 and Σ t
    minimised, else ``objective`` minimised. Returns the result."""
    from scipy.optimize import linprog
    from scipy.sparse import lil_matrix

    col = {k: j for j, k in enumerate(latents)}
    nt = len(slack or [])
    nv = len(latents) + nt
    sl = {r: len(latents) + j for j, r in enumerate(slack or [])}
    ub = lil_matrix((2 * len(rows), nv))
    b_ub, eq_r, eq_b, k = [], [], [], 0
    for r, (e, lo, hi) in enumerate(rows):
        if lo == hi and r not in sl:
            eq_r.append(e)
            eq_b.append(lo)
            continue
        for sign, bound in ((1.0, hi), (-1.0, -lo)):
            if np.isfinite(bound):
                for x, v in e.items():
                    ub[k, col[x]] = sign * v
                if r in sl:
                    ub[k, sl[r]] = -1.0
                b_ub.append(bound)
                k += 1
    eq = lil_matrix((len(eq_r), nv))
    for i, e in enumerate(eq_r):
        for x, v in e.items():
            eq[i, col[x]] = v
    c = np.zeros(nv)
    if slack:
        c[len(latents):] = 1.0
    for x, v in (objective or {}).items():
        c[col[x]] = v
    return linprog(c, A_ub=ub[:k].tocsr() if k else None, b_ub=b_ub or None, A_eq=eq.tocsr() if eq_r else None,
                   b_eq=eq_b or None, bounds=(0, None), method="highs")


def lp_attack(tables: dict[str, pd.DataFrame], small: bool = True) -> tuple[list[tuple[str, float, float]], int]:
    """The suppressed counts whose feasible interval is narrower than :data:`PROTECTION`, with the interval,
    and the number of distinct suppressed counts attacked. ``small``: the attacker uses that a "<k" count is at
    least 1 and at most k − 1."""
    cells = D.table_cells(tables)
    rows, est, _ = _ranges(cells, tables, small=small)
    root = _components(rows)
    by_comp: dict = {}
    for r, (e, _, _) in enumerate(rows):
        by_comp.setdefault(root[next(iter(e))], []).append(r)
    # the least misfit of the effect estimates with the counts (they come from models with stratum effects)
    misfit: dict[int, float] = {}
    est_cells = [i for i, c in enumerate(cells) if c.kind == "estimate"]
    if est_cells:
        comps = {root[next(iter(rows[r][0]))] for r in est}
        for comp in comps:
            rs = by_comp[comp]
            lat = sorted({k for r in rs for k in rows[r][0]}, key=repr)
            sub = [rows[r] for r in rs]
            sl = [j for j, r in enumerate(rs) if r in set(est)]
            res = _lp(sub, lat, slack=sl)
            assert res.status == 0, f"the published tables contradict the model: {res.message}"
            for j, r in enumerate(sl):
                misfit[est_cells[est.index(rs[r])]] = float(res.x[len(lat) + j])
    rows, _, targets = _ranges(cells, tables, misfit, small=small)
    failures = []
    for i in targets.values():
        f = cells[i].expr
        comp = {root[k] for k in f if k in root}
        rs = [r for cp in comp for r in by_comp.get(cp, [])]
        lat = sorted({k for r in rs for k in rows[r][0]} | set(f), key=repr)
        sub = [rows[r] for r in rs]
        lo = _lp(sub, lat, objective=f)
        hi = _lp(sub, lat, objective={k: -v for k, v in f.items()})
        assert lo.status in (0, 3) and hi.status in (0, 3), (lo.message, hi.message)
        a = lo.fun if lo.status == 0 else -np.inf
        b = -hi.fun if hi.status == 0 else np.inf
        if b - a < PROTECTION - 1e-6:
            c = cells[i]
            failures.append((D._label(c.table, tables[c.table], c.row, c.column), a, b))
    return failures, len(targets)


def _read_back(tables: dict[str, pd.DataFrame], where: Path) -> dict[str, pd.DataFrame]:
    """The tables as a reader of results/*.csv gets them."""
    from hbeval.pipeline import write_csv

    where.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, df in tables.items():
        write_csv(df, where / f"{name}.csv")
        out[name] = pd.read_csv(where / f"{name}.csv")
    return out


STUDIES = {"demo": None, "40 families, seed 8": (40, 50, 8), "40 families, seed 3": (40, 50, 3),
           "24 families, seed 24": (24, 30, 24)}



@pytest.fixture(scope="module", params=list(STUDIES))
def published(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """results/*.csv of the demo and of small studies (fewer RI draws and bootstrap replicates: suppression does
    not depend on them)."""
    from hbeval.demo import write_demo
    from hbeval.pipeline import compute
    from hbeval.study.store import open_study

    spec = STUDIES[request.param]
    d = tmp_path_factory.mktemp("pub") / "study"
    if spec is None:
        shutil.copytree(request.getfixturevalue("demo_dir"), d, ignore=shutil.ignore_patterns(".hbeval"))
    else:
        write_demo(d, n_pilot=spec[0], n_comparison=spec[1], seed=spec[2])
    t = (d / "study.toml").read_text(encoding="utf-8")
    t = t.replace("[outcomes]\n", "[outcomes]\nri_draws = 200\n", 1).replace("[economics]\n", "[economics]\nbootstrap_reps = 200\n", 1)
    (d / "study.toml").write_text(t, encoding="utf-8")
    tables = compute(open_study(d), progress=False).tables
    out = _read_back(tables, d.parent / "results")
    out["__study__"] = pd.DataFrame({"name": [request.param]})
    return out


def _tables_of(published: dict[str, pd.DataFrame]) -> tuple[str, dict[str, pd.DataFrame]]:
    return str(published["__study__"]["name"].iloc[0]), {k: v for k, v in published.items() if k != "__study__"}


def test_no_suppressed_count_is_determined_by_all_published_tables(published: dict[str, pd.DataFrame]) -> None:
    """Every suppressed count keeps a feasible interval at least one family wide under the published equalities,
    counts ≥ 0, shares' counts ≤ n and the effect estimates of 0/1 outcomes."""
    _, tables = _tables_of(published)
    failures, attacked = lp_attack(tables, small=False)
    assert attacked > 0
    assert failures == [], f"{len(failures)} of {attacked} suppressed counts pinned: {failures[:10]}"


def test_no_suppressed_count_is_pinned_by_the_small_count_bounds(published: dict[str, pd.DataFrame]) -> None:
    """The same with the attacker also using that a "<k" count is between 1 and k − 1 (a bounds attack): the
    bounds audit of :func:`hbeval.disclosure.protect_results` shows such marks as the complementary marker (in
    the 24- and 40-family studies of seeds 24 and 8 a level with "<5" families in every cell once pinned them)."""
    _, tables = _tables_of(published)
    failures, attacked = lp_attack(tables, small=True)
    assert failures == [], f"{len(failures)} of {attacked} suppressed counts pinned: {failures[:10]}"


def _is_binary(g: pd.DataFrame) -> bool:
    """A 0/1 process measure: its mean is its share where the share shows, and hidden with it where not."""
    return all(a == b for a, b in zip(g["mean"].map(_f), g["share_nonzero"].map(_f)))


def test_every_published_count_and_binary_estimate_is_in_the_model(published: dict[str, pd.DataFrame]) -> None:
    """The attack above is only as good as the model: every count of families in every results table is one of
    its cells, and so is every effect estimate of a 0/1 outcome whose counts process.csv publishes."""
    _, published = _tables_of(published)
    cells = D.table_cells(published)
    have = {(c.table, c.row, c.column) for c in cells}
    cols = ("n", "n_a", "n_b", "n_assigned", "n_observed", "n_pilot", "n_comparison", "n_trimmed", "missing")
    for name, df in published.items():
        for col in [c for c in cols if c in df.columns]:
            for i in df.index[df[col].notna()]:
                assert (name, i, col) in have, f"{name}.csv row {i} {col} = {df.at[i, col]} is not modelled"
    proc = published["process"]
    binary = [m for m, g in proc.groupby("measure") if _is_binary(g)]
    assert binary  # every study has 0/1 process measures (meetings, budget accepted unchanged)
    eff = published["effects"]
    rand = eff["outcome"].isin(binary) & eff["contrast"].ne("pilot_vs_comparison") & eff["estimate"].notna()
    if "subgroup" in eff.columns:
        rand &= eff["subgroup"].isna()
    cells_known = {m for m, g in proc[proc["cell"].ne("all")].groupby("measure") if g["n"].map(_f).notna().all()}
    for i in eff.index[rand & eff["outcome"].isin(cells_known)]:  # (a hidden n makes the relation non-linear)
        assert ("effects", i, "estimate") in have, f"effects.csv row {i} ({eff.at[i, 'outcome']}) is not modelled"


def test_issue_14_process_shares_cannot_be_recovered_from_all_column_or_effects(published: dict[str, pd.DataFrame]) -> None:
    """Written out by hand: a hidden share of a 0/1 process measure is neither the "all" count minus the other
    cells nor (estimate of the cell contrast + the reference share) × n."""
    _, published = _tables_of(published)
    proc, eff = published["process"], published["effects"]
    for m, g in proc.groupby("measure"):
        g = g.set_index("cell")
        share = {c: _f(g.at[c, "share_nonzero"]) for c in g.index}
        n = {c: _f(g.at[c, "n"]) for c in g.index}
        if not _is_binary(g.reset_index()):
            continue
        e = eff[(eff["outcome"] == m) & eff["method"].astype(str).str.contains("no_baseline")].set_index("contrast")
        for c in D.CELLS:
            if c not in share or share[c] is not None:
                continue
            others = [x for x in D.CELLS if x != c]
            assert share.get("all") is None or n.get("all") is None or any(share[x] is None or n[x] is None for x in others), \
                f"{m} {c}: the 'all' count minus the other cells gives it"
            if c != D.CELLS[0]:
                est = _f(e.at[f"cell:{c}", "estimate"]) if f"cell:{c}" in e.index else None
                assert est is None or share.get(D.CELLS[0]) is None, f"{m} {c}: (estimate + reference share) × n gives it"
            else:
                for x in others:
                    est = _f(e.at[f"cell:{x}", "estimate"]) if f"cell:{x}" in e.index else None
                    assert est is None or share[x] is None, f"{m} {c}: (share of {x} − estimate) × n gives it"


# ------------------------------------------------------------------ every marker explained where it appears
@pytest.mark.parametrize("lang", ["en", "fi"])
def test_every_table_showing_a_marker_says_what_it_means(lang: str) -> None:
    from hbeval.report import i18n
    from hbeval.report.render import table_html

    shown = pd.DataFrame({"n": ["12", "<5", D.COMPLEMENTARY], "share": ["0,5", "–", "1,0"]})
    h = table_html(shown, lang)
    foot = h.split("</table>", 1)[1]
    assert "table-note" in foot
    assert html_text(i18n.t("fn_small", lang, k=5)) in foot
    assert html_text(i18n.t("fn_complementary", lang, word=i18n.value(D.COMPLEMENTARY, lang))) in foot
    assert html_text(i18n.t("fn_dash", lang)) in foot
    # the marker is in the report's language, and a threshold other than 5 is named as shown
    assert i18n.value(D.COMPLEMENTARY, lang) in h and "fewer than 3" in table_html(pd.DataFrame({"n": ["<3"]}), "en")
    # no marker, no line; a p-value "<0.001" or an inequality in a text is not a marker
    for df in (pd.DataFrame({"n": ["12", "40"]}), pd.DataFrame({"p": ["<0.001", "<0,001", "x < 3"]})):
        assert "table-note" not in table_html(df, lang)


def html_text(s: str) -> str:
    import html

    return html.escape(s)


def test_row_space_survives_an_svd_that_does_not_converge():
    """A 170 x 124 matrix of -1/0/1 from a crash-test study on which LAPACK's gesdd (numpy's
    SVD) does not converge with OpenBLAS's Haswell kernels (the Makefile's setting): the row
    space falls back to gesvd and still holds every published row and nothing outside it."""
    P = np.load(Path(__file__).with_name("disclosure_svd_nonconvergence.npy")).astype(float)
    rows: list[D.Expr] = [{int(j): float(P[i, j]) for j in np.flatnonzero(P[i])} for i in range(P.shape[0])]
    space = D._Space(rows, {j: j for j in range(P.shape[1])})
    sv = scipy.linalg.svd(P, compute_uv=False, lapack_driver="gesvd")
    assert space.basis.shape[0] == int((sv > sv[0] * 1e-10).sum())
    assert all(space.contains(r) for r in rows)
    outside = scipy.linalg.null_space(space.basis)[:, 0]  # orthogonal to every published row
    assert not space.contains({j: outside[j] for j in range(P.shape[1])})


# ---------------------------------------------------------------- the fast paths give what the plain ones give
def _random_system(rng: np.random.Generator, n_latents: int, n_exprs: int) -> tuple[list[dict], list[float | None]]:
    """Counts as sums (and a few differences) of random latents, some suppressed, some zero."""
    exprs: list[dict] = []
    for _ in range(n_exprs):
        ks = rng.choice(n_latents, size=min(n_latents, int(rng.integers(1, 5))), replace=False)
        exprs.append({f"z{k}": (1.0 if rng.random() < 0.85 else -1.0) for k in ks})
    values: list[float | None] = [None if rng.random() < 0.2 else float(rng.integers(0, 12)) for _ in exprs]
    return exprs, values


def _plain_protect(exprs: list[dict], values: list[float | None]) -> dict[int, int]:
    """:func:`protect` as first written: every determined count from scratch each round, no cache."""
    hidden = {i for i, v in enumerate(values) if v is None}
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(exprs):
        groups.setdefault(D._key(e), []).append(i)
    out: dict[int, int] = {}
    while det := D.determined(exprs, hidden):
        for j in D._choose(det[0], exprs, values, hidden, groups):
            hidden.add(j)
            out[j] = det[0]
    return out


def test_protect_with_its_cache_chooses_what_the_plain_loop_chooses() -> None:
    """The row spaces kept between rounds and the stop at the first determined count change no choice."""
    rng = np.random.default_rng(17)
    changed = 0
    for _ in range(60):
        exprs, values = _random_system(rng, int(rng.integers(4, 14)), int(rng.integers(6, 30)))
        got = D.protect(exprs, values).complementary
        assert got == _plain_protect(exprs, values)
        changed += bool(got)
        assert _attack(exprs, [None if i in got else v for i, v in enumerate(values)]) == []
    assert changed > 10  # the systems do need complementary suppression


def test_choose_sums_costs_by_group_only_when_that_is_exact() -> None:
    """Whole-number costs are summed by groups of equal counts; otherwise (and then too, checked here)
    cell by cell in index order: both give the same cells."""
    rng = np.random.default_rng(5)
    for _ in range(40):
        exprs, values = _random_system(rng, 8, 20)
        exprs += exprs[:5]  # the same count in two tables
        values += values[:5]
        hidden = {i for i, v in enumerate(values) if v is None}
        groups: dict[tuple, list[int]] = {}
        for i, e in enumerate(exprs):
            groups.setdefault(D._key(e), []).append(i)
        st = D._Static.of(exprs, values, None)
        assert st.whole
        cellwise = D._Static(st.related, st.cost, whole=False)
        for s in sorted(hidden):
            assert D._choose(s, exprs, values, hidden, groups, static=st) == \
                D._choose(s, exprs, values, hidden, groups, static=cellwise)
    halves = D._Static.of([{"a": 1.0}], [None], [0.5])
    assert not halves.whole


def test_reduce_and_roots_match_their_definitions() -> None:
    """:func:`_reduce_index` (a work list) keeps what repeated passes keep; :func:`_roots` splits the
    latents as a plain connectivity search does."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        exprs, _ = _random_system(rng, int(rng.integers(3, 20)), int(rng.integers(1, 25)))
        rows, targets = exprs[:-3] or exprs, exprs[-3:]
        keep = list(range(len(rows)))
        while True:  # the definition: drop a row with a latent no other row and no target holds, repeat
            count = {k: sum(k in rows[i] for i in keep) + sum(k in t for t in targets) for i in keep for k in rows[i]}
            nxt = [i for i in keep if all(count[k] > 1 for k in rows[i])]
            if nxt == keep:
                break
            keep = nxt
        assert D._reduce_index(rows, targets) == keep
        root = D._roots(rows)
        adj: dict[str, set[str]] = {k: set() for e in rows for k in e}
        for e in rows:
            for k in e:
                adj[k] |= set(e)
        for k in adj:
            seen, todo = {k}, [k]
            while todo:
                for j in adj[todo.pop()] - seen:
                    seen.add(j)
                    todo.append(j)
            assert {j for j in adj if root[j] == root[k]} == seen


def test_rows_are_what_iterrows_gives() -> None:
    """:func:`_rows` reads each row as ``iterrows`` does (pandas reads a row of text and missing values as
    text, with NaN for None and NA; a row with a number keeps None and NA), value by value and type by type."""
    df = pd.DataFrame({
        "name": pd.array(["a", "b", None, "d", "e", "f"], dtype="str"),
        "text": pd.Series(["x", None, "z", None, pd.NA, "w"], dtype=object),
        "mixed": pd.Series([1.5, None, None, pd.NA, None, pd.Timestamp("2024-01-01")], dtype=object),
        "count": pd.Series(["3", "<5", None, "suppressed", "0", "2"], dtype=object),
    })
    numbers = pd.DataFrame({"n": [1, 2], "x": [0.5, np.nan]})
    dates = pd.DataFrame({"d": pd.to_datetime(["2024-01-01", None])})
    for frame in (df, numbers, dates, df.iloc[[1, 3]]):
        got = list(D._rows(frame))
        want = [(i, {c: r[c] for c in frame.columns}) for i, r in frame.iterrows()]
        assert [i for i, _ in got] == [i for i, _ in want]
        for (_, a), (_, b) in zip(got, want):
            assert [(type(a[c]), repr(a[c])) for c in frame.columns] == [(type(b[c]), repr(b[c])) for c in frame.columns]
            assert a.get("absent", "-") == "-"
