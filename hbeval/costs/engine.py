"""Costs per family from register exports and the unit-cost catalogue, in DuckDB.

The cost rule (``contract.md``): the cost of a family in a period is

.. math::

    C = \\sum_{events} q \\cdot p_{code} \\;(\\text{or the direct } cost\\_eur)
        + \\sum spending + \\sum income\\ support
        + \\sum minutes \\cdot p_{staff:role} / 60
        + \\sum minutes \\cdot (present \\cdot p_{staff:provider} + p_{staff:hb\\_worker}) / 60,

every amount moved to the study's price year ``Y`` with the price index ``I``: catalogue
prices are in their ``price_year`` (factor ``I_Y / I_{price\\_year}``), direct amounts
(``cost_eur``, spending, income support) are nominal in the year of their date (factor
``I_Y / I_{year(date)}``). A dated row counts in the follow-up window
``[enrolled_on, enrolled_on + follow_up_days)`` or in the pre-period of the same length
before ``enrolled_on``; rows outside both are ignored.

Everything that touches events runs as SQL in DuckDB (:func:`family_costs_sql`): events are
first aggregated per family, period, service code and year inside the database, so a
national-register export of tens of millions of rows is never loaded into pandas. Only
the per-family result (families × periods × categories rows) comes back.

Errors (:class:`hbeval.errors.InputError`): a counted event whose ``service_code`` has no
catalogue row and no ``cost_eur``; a catalogue row marked as a direct cost (``source``
starting with ``direct cost``) used without ``cost_eur``; a staff role without a
``staff:<role>`` row; a year (of a date, of a catalogue price, or the study's price year)
missing from the price index; duplicated catalogue or index rows.

Public entry points
-------------------
* :func:`family_costs` (internal, never written out): long table, one row per family,
  period and category, columns ``client_id, group, cell, stratum, period, category,
  cost_eur`` (``cell`` is ``<frame_arm>/<teaming_arm>`` or missing for families without an
  assignment). :func:`wide_costs` turns it into one row per family with a column per
  ``<period>_<category>`` and ``<period>_total``.
* :func:`costs_results` → ``results/costs.csv``: the categories above, then a ``total``
  row; after ``income_support`` come its parts ``income_support:basic``,
  ``income_support:supplementary``, ``income_support:preventive`` (a breakdown, not added
  again into ``total``).
* :func:`cost_differences` → ``results/cost_differences.csv`` (differences per contrast,
  bootstrap CIs, gamma-log GLM check).
* the figure is :func:`hbeval.report.plots.plot_costs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

from hbeval import arms
from hbeval.arms import CELLS
from hbeval.errors import InputError
from hbeval.privacy import suppress_small_groups
from hbeval.randomisation.design import stratum_labels
from hbeval.stats.bootstrap import bootstrap_arm_means, bootstrap_means, percentile_ci
from hbeval.stats.glm import gamma_log_glm

if TYPE_CHECKING:  # pragma: no cover
    from hbeval.study.store import Study

CATEGORIES = ("usual_services", "purchased_services", "budget_spending", "income_support", "staff_time", "teaming")
PERIODS = ("follow_up", "pre")
#: income support by kind: breakdown rows ``income_support:<kind>`` of ``costs.csv`` (not
#: added again into ``total``)
INCOME_KINDS = ("basic", "supplementary", "preventive")
CONTRASTS_RANDOMISED = arms.CONTRASTS
CONTRASTS = CONTRASTS_RANDOMISED + (arms.PILOT_VS_COMPARISON,)

#: sub-seed constants (``np.random.default_rng([seed, CONST])``)
SEED_COSTS = arms.SEEDS["cost_bootstrap"]
SEED_DIFF = arms.SEEDS["cost_difference_bootstrap"]

_EMPTY = {
    "service_events": "SELECT NULL::VARCHAR AS client_id, NULL::DATE AS event_date, NULL::VARCHAR AS service_code, "
    "NULL::DOUBLE AS quantity, NULL::DOUBLE AS cost_eur WHERE false",
    "budget_spending": "SELECT NULL::VARCHAR AS client_id, NULL::DATE AS date, NULL::DOUBLE AS amount_eur WHERE false",
    "income_support": "SELECT NULL::VARCHAR AS client_id, NULL::DATE AS date, NULL::VARCHAR AS kind, "
    "NULL::DOUBLE AS amount_eur WHERE false",
    "worker_time": "SELECT NULL::VARCHAR AS client_id, NULL::DATE AS date, NULL::VARCHAR AS role, "
    "NULL::DOUBLE AS minutes WHERE false",
    "teaming_meetings": "SELECT NULL::VARCHAR AS client_id, NULL::DATE AS date, NULL::DOUBLE AS providers_present, "
    "NULL::DOUBLE AS minutes WHERE false",
}


# --------------------------------------------------------------------------- helpers
def _relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables UNION SELECT view_name FROM duckdb_views()"
    ).fetchall()
    out = {r[0] for r in rows}
    try:  # DataFrames registered with con.register() are not always listed above
        out |= {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    except duckdb.Error:  # pragma: no cover
        pass
    return out


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    return [d[0] for d in con.execute(f'SELECT * FROM "{name}" LIMIT 0').description]


def _source(con: duckdb.DuckDBPyConnection, name: str, rels: set[str]) -> tuple[str, list[str]]:
    """A FROM-clause expression for table ``name`` (an empty typed relation when absent)."""
    if name in rels:
        return f'"{name}"', _columns(con, name)
    return f"({_EMPTY[name]})", ["client_id"]


def _period(date_expr: str) -> str:
    return (
        f"CASE WHEN {date_expr} >= f.enrolled_on AND {date_expr} < f.enrolled_on + f.fu THEN 'follow_up' "
        f"WHEN {date_expr} >= f.enrolled_on - f.fu AND {date_expr} < f.enrolled_on THEN 'pre' END"
    )


def _fmt(values: list[Any], k: int = 8) -> str:
    vals = [str(v) for v in values[:k]]
    return ", ".join(vals) + (f" and {len(values) - k} more" if len(values) > k else "")


def _check_catalogue(unit_costs: pd.DataFrame, price_index: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    uc = unit_costs.copy()
    need = {"service_code", "unit_cost_eur", "price_year"}
    if not need <= set(uc.columns):
        raise InputError(f"unit cost catalogue lacks columns {sorted(need - set(uc.columns))}", file="unit_costs.csv")
    dup = uc["service_code"][uc["service_code"].duplicated()].astype(str).tolist()
    if dup:
        raise InputError(f"service_code listed twice in the unit-cost catalogue: {_fmt(sorted(set(dup)))}",
                         file="unit_costs.csv", column="service_code")
    if "source" not in uc.columns:
        uc["source"] = ""
    uc = pd.DataFrame(
        {
            "service_code": uc["service_code"].astype(str).to_numpy(dtype=object),
            "unit_cost_eur": pd.to_numeric(uc["unit_cost_eur"], errors="coerce").to_numpy(float),
            "price_year": pd.to_numeric(uc["price_year"], errors="coerce").to_numpy(float),
            "direct_only": uc["source"].fillna("").astype(str).str.strip().str.lower().str.startswith("direct cost").to_numpy(bool),
        }
    )
    pi = price_index.copy()
    if not {"year", "index"} <= set(pi.columns):
        raise InputError("price index needs columns year and index", file="price_index.csv")
    pi = pd.DataFrame({"year": pd.to_numeric(pi["year"], errors="coerce").to_numpy(float),
                       "idx": pd.to_numeric(pi["index"], errors="coerce").to_numpy(float)})
    if pi["year"].isna().any() or pi["idx"].isna().any() or (pi["idx"] <= 0).any():
        raise InputError("price index has a missing year or a missing or non-positive index", file="price_index.csv")
    if pi["year"].duplicated().any():
        raise InputError(f"year listed twice in the price index: {_fmt(sorted(set(pi['year'][pi['year'].duplicated()].astype(int))))}",
                         file="price_index.csv", column="year")
    pi["year"] = pi["year"].astype(int)
    return uc, pi


# --------------------------------------------------------------------------- core SQL
def family_costs_sql(
    con: duckdb.DuckDBPyConnection,
    families: pd.DataFrame,
    unit_costs: pd.DataFrame,
    price_index: pd.DataFrame,
    price_year: int,
    follow_up_days: int,
    detail: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Per-family costs by period and category, aggregated in DuckDB (long form of
    :func:`family_costs_wide_sql`, whose parameters it takes).

    Parameters
    ----------
    con : DuckDB connection holding (some of) the tables ``service_events``,
        ``budget_spending``, ``income_support``, ``worker_time``, ``teaming_meetings``
        with the canonical columns (absent tables count as empty). It may be read-only:
        only temporary objects are created.
    families : one row per family with ``client_id`` and ``enrolled_on``; families without
        ``enrolled_on`` have no window and are left out.
    unit_costs : the catalogue (``service_code, unit_cost_eur, price_year[, source]``).
    price_index : ``year, index``.
    price_year, follow_up_days : from the study's configuration.

    Returns
    -------
    DataFrame ``client_id, period, category, cost_eur`` with a row for every family,
    period (``follow_up``, ``pre``) and category of :data:`CATEGORIES` (zero when the
    family has none), in euros of ``price_year``, sorted. With ``detail=True`` a pair: that table and the
    income-support breakdown (same columns, ``category`` ``income_support:<kind>``, a row
    for every family, period and kind of :data:`INCOME_KINDS` plus any other kind seen).

    Notes
    -----
    Events are reduced to sums per ``(client_id, period, service_code, year, direct)``
    in one scan, then priced: ``Σq · p · I_Y/I_{py}`` for catalogue rows and
    ``Σcost_eur · I_Y/I_{year}`` for direct ones, so the work on the events is one hash
    aggregation whatever the catalogue's size.
    """
    values, kinds = family_costs_wide_sql(con, families, unit_costs, price_index, price_year, follow_up_days)
    out = _long(values, CATEGORIES)
    return (out, _long(values, kinds)) if detail else out


def _long(values: pd.DataFrame, categories: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """``client_id, period, category, cost_eur`` from :func:`family_costs_wide_sql`'s
    columns ``<period>_<category>``: per family, the periods × categories in order."""
    ids = values.index.to_numpy(dtype=object)
    cats = list(categories)
    cols = [f"{p}_{c}" for p in PERIODS for c in cats]
    k = len(cols)
    return pd.DataFrame({
        "client_id": np.repeat(ids, k),
        "period": np.tile(np.array([p for p in PERIODS for _ in cats], dtype=object), len(ids)),
        "category": np.tile(np.array(cats * len(PERIODS), dtype=object), len(ids)),
        "cost_eur": values[cols].to_numpy(dtype=float).reshape(-1),
    })


def family_costs_wide_sql(
    con: duckdb.DuckDBPyConnection,
    families: pd.DataFrame,
    unit_costs: pd.DataFrame,
    price_index: pd.DataFrame,
    price_year: int,
    follow_up_days: int,
) -> tuple[pd.DataFrame, list[str]]:
    """Per-family costs, one row per family, computed and pivoted in DuckDB.

    Returns
    -------
    ``(values, kinds)``: ``values`` is indexed by ``client_id`` (every family with an
    ``enrolled_on``, sorted) with a column ``<period>_<category>`` for every period and
    category of :data:`CATEGORIES` and ``<period>_income_support:<kind>`` for every kind
    of ``kinds`` (:data:`INCOME_KINDS` plus any other kind seen), zero when the family has
    none, in euros of ``price_year`` rounded to a millionth of a euro. Only this table
    (one row per family) leaves the database: at a million families and 50 million events
    it is ~200 MB, where a long table would be 14 million rows.
    """
    uc, pi = _check_catalogue(unit_costs, price_index)
    fam = families[["client_id", "enrolled_on"]].copy()
    fam = fam[fam["enrolled_on"].notna()]
    fam = pd.DataFrame({"client_id": fam["client_id"].astype(str).to_numpy(dtype=object),
                        "enrolled_on": pd.to_datetime(fam["enrolled_on"]).to_numpy("datetime64[ns]")})
    if fam["client_id"].duplicated().any():
        raise InputError("a client_id appears twice among the families", file="clients.csv", column="client_id")
    fu = int(follow_up_days)
    rels = _relations(con)
    ev, ev_cols = _source(con, "service_events", rels)
    bs, _ = _source(con, "budget_spending", rels)
    inc, _ = _source(con, "income_support", rels)
    wt, _ = _source(con, "worker_time", rels)
    tm, _ = _source(con, "teaming_meetings", rels)
    cost_col = "TRY_CAST(e.cost_eur AS DOUBLE)" if "cost_eur" in ev_cols else "CAST(NULL AS DOUBLE)"

    con.register("_hb_fam_df", fam)
    con.register("_hb_uc_df", uc)
    con.register("_hb_pi_df", pi)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _hb_fam AS SELECT CAST(client_id AS VARCHAR) AS client_id, "
            f"CAST(enrolled_on AS DATE) AS enrolled_on, {fu} AS fu FROM _hb_fam_df"
        )
        con.execute("CREATE OR REPLACE TEMP TABLE _hb_uc AS SELECT * FROM _hb_uc_df")
        con.execute("CREATE OR REPLACE TEMP TABLE _hb_pi AS SELECT CAST(year AS INTEGER) AS year, idx FROM _hb_pi_df")
        # 1. one scan of the events, priced row by row against the (small) catalogue and
        # price index, with two groupings: costs per family, period and direct/catalogue
        # (g = 0; a few rows per family), and row counts per code, year and direct/catalogue
        # (g = 1) for the pricing checks. Pricing before the reduction keeps the hash table
        # at a few groups per family: grouping by code and year too made it ~30 M groups
        # (5 GB) at 50 M events.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _hb_evagg AS
            SELECT a.client_id, a.period, a.service_code, a.yr, a.direct, GROUPING(a.client_id) AS g,
                   sum(CASE WHEN a.direct THEN a.amount * tgt.t / pe.idx
                            ELSE a.qty * u.unit_cost_eur * tgt.t / pu.idx END) AS cost,
                   count(*) AS n_rows
            FROM (
                SELECT f.client_id, {_period('d')} AS period, CAST(e.service_code AS VARCHAR) AS service_code,
                       year(d) AS yr, c IS NOT NULL AS direct,
                       CASE WHEN c IS NULL THEN CAST(e.quantity AS DOUBLE) END AS qty, c AS amount
                FROM (SELECT *, CAST(event_date AS DATE) AS d, {cost_col} AS c FROM {ev} e) e
                JOIN _hb_fam f ON CAST(e.client_id AS VARCHAR) = f.client_id
            ) a
            LEFT JOIN (SELECT idx AS t FROM _hb_pi WHERE year = {int(price_year)}) tgt ON true
            LEFT JOIN _hb_uc u ON u.service_code = a.service_code
            LEFT JOIN _hb_pi pe ON pe.year = a.yr
            LEFT JOIN _hb_pi pu ON pu.year = u.price_year
            WHERE a.period IS NOT NULL
            GROUP BY GROUPING SETS ((a.client_id, a.period, a.direct), (a.service_code, a.yr, a.direct))
            """
        )
        con.execute("CREATE OR REPLACE TEMP TABLE _hb_ev AS SELECT service_code, yr, direct, n_rows FROM _hb_evagg WHERE g = 1")
        # 2. the other dated tables, reduced the same way
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _hb_other AS
            SELECT client_id, period, category, key, yr, sum(v1) AS v1, sum(v2) AS v2 FROM (
                SELECT f.client_id, {_period('CAST(x.date AS DATE)')} AS period, 'budget_spending' AS category,
                       NULL::VARCHAR AS key, year(CAST(x.date AS DATE)) AS yr, CAST(x.amount_eur AS DOUBLE) AS v1,
                       NULL::DOUBLE AS v2
                FROM {bs} x JOIN _hb_fam f ON CAST(x.client_id AS VARCHAR) = f.client_id
                UNION ALL
                SELECT f.client_id, {_period('CAST(x.date AS DATE)')}, 'income_support', CAST(x.kind AS VARCHAR),
                       year(CAST(x.date AS DATE)), CAST(x.amount_eur AS DOUBLE), NULL
                FROM {inc} x JOIN _hb_fam f ON CAST(x.client_id AS VARCHAR) = f.client_id
                UNION ALL
                SELECT f.client_id, {_period('CAST(x.date AS DATE)')}, 'staff_time', CAST(x.role AS VARCHAR),
                       NULL, CAST(x.minutes AS DOUBLE), NULL
                FROM {wt} x JOIN _hb_fam f ON CAST(x.client_id AS VARCHAR) = f.client_id
                UNION ALL
                SELECT f.client_id, {_period('CAST(x.date AS DATE)')}, 'teaming', NULL, NULL,
                       CAST(x.minutes AS DOUBLE), CAST(x.minutes AS DOUBLE) * CAST(x.providers_present AS DOUBLE)
                FROM {tm} x JOIN _hb_fam f ON CAST(x.client_id AS VARCHAR) = f.client_id
            ) WHERE period IS NOT NULL
            GROUP BY ALL
            """
        )
        _check_prices(con, price_year)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _hb_cost AS
            WITH tgt AS (SELECT idx AS t FROM _hb_pi WHERE year = {int(price_year)}),
            staff AS (SELECT substr(service_code, 7) AS role, unit_cost_eur * tgt.t / p.idx AS per_hour
                      FROM _hb_uc u CROSS JOIN tgt JOIN _hb_pi p ON p.year = u.price_year
                      WHERE service_code LIKE 'staff:%'),
            priced AS (
                SELECT a.client_id, a.period,
                       CASE WHEN a.direct THEN 'purchased_services' ELSE 'usual_services' END AS category,
                       NULL::VARCHAR AS sub, a.cost
                FROM _hb_evagg a WHERE a.g = 0
                UNION ALL
                SELECT o.client_id, o.period, o.category,
                       CASE WHEN o.category = 'income_support' THEN coalesce(o.key, '(missing)') END,
                       CASE o.category
                         WHEN 'staff_time' THEN o.v1 * s.per_hour / 60
                         WHEN 'teaming' THEN (o.v2 * sp.per_hour + o.v1 * sh.per_hour) / 60
                         ELSE o.v1 * tgt.t / p.idx END
                FROM _hb_other o CROSS JOIN tgt
                LEFT JOIN _hb_pi p ON p.year = o.yr
                LEFT JOIN staff s ON o.category = 'staff_time' AND s.role = o.key
                LEFT JOIN staff sp ON sp.role = 'provider'
                LEFT JOIN staff sh ON sh.role = 'hb_worker'
            )
            SELECT client_id, period, category, sub, sum(cost) AS cost_eur FROM priced GROUP BY ALL
            """
        )
        seen = [r[0] for r in con.execute("SELECT DISTINCT sub FROM _hb_cost WHERE sub IS NOT NULL").fetchall()]
        kinds = [f"income_support:{k}" for k in INCOME_KINDS]
        kinds += sorted({f"income_support:{k}" for k in seen} - set(kinds))
        # one row per family: a filtered sum per period and category (and income-support
        # kind); families without any cost get NULLs, made zeros below
        cols, sums = [], []
        for p in PERIODS:
            for c in CATEGORIES:
                cols.append(f"{p}_{c}")
                sums.append(f"sum(c.cost_eur) FILTER (WHERE c.period = '{p}' AND c.category = '{c}')")
            for k in kinds:
                cols.append(f"{p}_{k}")
                sub = _sql_str(k.split(":", 1)[1])
                sums.append(f"sum(c.cost_eur) FILTER (WHERE c.period = '{p}' AND c.sub = {sub})")
        wide = con.execute(
            "SELECT f.client_id, " + ", ".join(f"{e} AS c{i}" for i, e in enumerate(sums))
            + " FROM _hb_fam f LEFT JOIN _hb_cost c ON c.client_id = f.client_id GROUP BY f.client_id"
        ).df()
    finally:
        for t in ("_hb_fam", "_hb_uc", "_hb_pi", "_hb_ev", "_hb_evagg", "_hb_other", "_hb_cost"):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        for v in ("_hb_fam_df", "_hb_uc_df", "_hb_pi_df"):
            con.unregister(v)
    ids = wide["client_id"].astype(str).to_numpy(dtype=object)
    order = np.argsort(ids, kind="stable")  # Python's string order, as sorted() gives
    # DuckDB adds in parallel, so the last bit of a sum can depend on thread timing: round
    # to a millionth of a euro so that the same inputs give byte-identical results
    vals = np.round(np.nan_to_num(wide[[f"c{i}" for i in range(len(cols))]].to_numpy(dtype=float)[order], nan=0.0), 6)
    values = pd.DataFrame(vals, columns=cols, index=pd.Index(ids[order], name="client_id"))
    return values, kinds


def _sql_str(v: str) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def _check_prices(con: duckdb.DuckDBPyConnection, price_year: int) -> None:
    """Raise :class:`InputError` for anything that cannot be priced (see the module doc)."""
    years = {int(r[0]) for r in con.execute("SELECT year FROM _hb_pi").fetchall()}
    if int(price_year) not in years:
        raise InputError(f"the study's price year {price_year} is missing from the price index", file="price_index.csv",
                         column="year")
    bad = con.execute(
        """SELECT a.service_code, sum(a.n_rows) FROM _hb_ev a LEFT JOIN _hb_uc u USING (service_code)
           WHERE NOT a.direct AND u.service_code IS NULL GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    if bad:
        raise InputError(
            "service_code without a unit-cost catalogue row and without cost_eur: "
            + _fmt([f"{c} ({n} rows)" for c, n in bad]),
            file="service_events.csv", column="service_code",
        )
    bad = con.execute(
        """SELECT a.service_code, sum(a.n_rows) FROM _hb_ev a JOIN _hb_uc u USING (service_code)
           WHERE NOT a.direct AND (u.direct_only OR u.unit_cost_eur IS NULL) GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    if bad:
        raise InputError(
            "service_code priced only by its invoice (catalogue says direct cost) but cost_eur is empty: "
            + _fmt([f"{c} ({n} rows)" for c, n in bad]),
            file="service_events.csv", column="cost_eur",
        )
    bad = con.execute(
        """SELECT DISTINCT o.key FROM _hb_other o WHERE o.category = 'staff_time'
           AND NOT EXISTS (SELECT 1 FROM _hb_uc u WHERE u.service_code = 'staff:' || coalesce(o.key, ''))
           ORDER BY 1"""
    ).fetchall()
    if bad:
        raise InputError(
            "staff role without an hourly cost (a catalogue row staff:<role>): " + _fmt([str(r[0]) for r in bad]),
            file="worker_time.csv", column="role",
        )
    if _fetch_row(con, "SELECT count(*) FROM _hb_other WHERE category = 'teaming'")[0]:
        have = {r[0] for r in con.execute("SELECT service_code FROM _hb_uc WHERE service_code IN ('staff:provider','staff:hb_worker')").fetchall()}
        missing = sorted({"staff:provider", "staff:hb_worker"} - have)
        if missing:
            raise InputError(f"teaming meetings need catalogue rows {', '.join(missing)}", file="unit_costs.csv",
                             column="service_code")
    rows = con.execute(
        """
        SELECT y, string_agg(DISTINCT what, ', ' ORDER BY what) FROM (
            SELECT yr AS y, CASE WHEN direct THEN 'service_events.csv (cost_eur dates)' END AS what
              FROM _hb_ev WHERE direct
            UNION ALL SELECT CAST(u.price_year AS INTEGER), 'unit_costs.csv (price_year of ' || u.service_code || ')'
              FROM _hb_uc u WHERE u.service_code IN (SELECT service_code FROM _hb_ev WHERE NOT direct)
                 OR u.service_code LIKE 'staff:%'
            UNION ALL SELECT yr, CASE category WHEN 'budget_spending' THEN 'budget_spending.csv'
                                               ELSE 'income_support.csv' END
              FROM _hb_other WHERE category IN ('budget_spending', 'income_support')
        ) WHERE y IS NOT NULL AND y NOT IN (SELECT year FROM _hb_pi)
        GROUP BY y ORDER BY y
        """
    ).fetchall()
    if rows:
        raise InputError(
            "year missing from the price index, so amounts cannot be moved to the price year "
            f"{price_year}: " + "; ".join(f"{y} (used by {w})" for y, w in rows),
            file="price_index.csv", column="year",
        )
    nulls = _fetch_row(con, "SELECT count(*) FROM _hb_uc WHERE price_year IS NULL AND service_code IN "
                            "(SELECT service_code FROM _hb_ev WHERE NOT direct)")[0]
    if nulls:
        raise InputError("a catalogue row used for pricing has no price_year", file="unit_costs.csv", column="price_year")


# --------------------------------------------------------------------------- tables → costs
def _fetch_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The one row of an aggregate query (``fetchone()`` is typed as optional; no row is a bug)."""
    row = con.execute(sql).fetchone()
    if row is None:
        raise RuntimeError(f"internal error: the query returned no row: {sql[:120]}")
    return row


def connect_tables(tables: dict[str, pd.DataFrame]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with ``tables`` registered (tests, demo data)."""
    con = duckdb.connect()
    for name, df in tables.items():
        if name in _EMPTY:
            con.register(name, df)
    return con


def families_frame(clients: pd.DataFrame, assignments: pd.DataFrame | None = None,
                   strata: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """``client_id, group, cell, stratum, enrolled_on`` from clients (+ assignments).

    ``cell`` is the text label ``<frame_arm>/<teaming_arm>`` (missing when unassigned);
    ``stratum`` is the assignment's stratum where there is one, otherwise the label built
    from the ``strata`` columns of ``clients`` (so comparison families get one too).
    """

    fam = clients[["client_id", "group", "enrolled_on"]].copy()
    fam["client_id"] = fam["client_id"].astype(str)
    have = [s for s in strata if s in clients.columns]
    fam["stratum"] = stratum_labels(clients, have).to_numpy() if have else "all"
    fam["cell"] = None
    if assignments is not None and len(assignments):
        a = assignments.copy()
        a["client_id"] = a["client_id"].astype(str)
        lab = (a["frame_arm"].astype(object) + "/" + a["teaming_arm"].astype(object)).where(
            a["frame_arm"].notna() & a["teaming_arm"].notna())
        m = dict(zip(a["client_id"], lab))
        fam["cell"] = fam["client_id"].map(m)
        if "stratum" in a.columns:
            s = dict(zip(a["client_id"], a["stratum"].astype(object)))
            st = fam["client_id"].map(s)
            fam["stratum"] = st.where(st.notna(), fam["stratum"])
    fam["cell"] = fam["cell"].astype(object).where(fam["cell"].notna(), None)
    fam["group"] = fam["group"].astype(object)
    fam["stratum"] = fam["stratum"].astype(object)
    return fam[["client_id", "group", "cell", "stratum", "enrolled_on"]]


def _study_families(study: Study) -> pd.DataFrame:
    fam = study.families().copy()
    fam["client_id"] = fam["client_id"].astype(str)
    if "cell" in fam.columns and "frame_arm" not in fam.columns:
        codes = pd.array(fam["cell"], dtype="Int8")
        fam["cell"] = [None if pd.isna(c) else CELLS[int(c)] for c in codes]
    elif "frame_arm" in fam.columns:
        lab = fam["frame_arm"].astype(object) + "/" + fam["teaming_arm"].astype(object)
        fam["cell"] = lab.where(fam["frame_arm"].notna() & fam["teaming_arm"].notna(), None)

    strata = [s for s in study.config.strata if s in fam.columns]
    computed = stratum_labels(fam, strata) if strata else pd.Series("all", index=fam.index, dtype=object)
    if "stratum" in fam.columns:
        st = fam["stratum"].astype(object)
        fam["stratum"] = st.where(st.notna(), computed)
    else:
        fam["stratum"] = computed
    fam["cell"] = fam["cell"].astype(object).where(fam["cell"].notna(), None)
    return fam[["client_id", "group", "cell", "stratum", "enrolled_on"]]


def _attach(costs: pd.DataFrame, fam: pd.DataFrame) -> pd.DataFrame:
    out = costs.merge(fam[["client_id", "group", "cell", "stratum"]], on="client_id", how="left")
    return out[["client_id", "group", "cell", "stratum", "period", "category", "cost_eur"]]


def family_costs_from_tables(tables: dict[str, pd.DataFrame], unit_costs: pd.DataFrame, price_index: pd.DataFrame,
                             price_year: int, follow_up_days: int,
                             strata: tuple[str, ...],
                             detail: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`family_costs` for in-memory canonical tables (e.g. ``hbeval.demo.generate().tables``);
    with ``detail=True`` also the income-support breakdown (see :func:`family_costs_sql`)."""
    fam = families_frame(tables["clients"], tables.get("assignments"), strata)
    con = connect_tables(tables)
    try:
        c, det = family_costs_sql(con, fam, unit_costs, price_index, price_year, follow_up_days, detail=True)
    finally:
        con.close()
    return (_attach(c, fam), _attach(det, fam)) if detail else _attach(c, fam)


def family_costs(study: Study) -> pd.DataFrame:
    """Per-family costs of a study (internal; never written out: one row per person).

    Returns
    -------
    Long DataFrame ``client_id, group, cell, stratum, period, category, cost_eur``: every
    family with an ``enrolled_on`` × ``period`` (``follow_up``, ``pre``) × ``category``
    (:data:`CATEGORIES`), in euros of ``study.config.price_year``. The analyses use
    :func:`wide_family_costs` (one row per family) instead.
    """
    w = study_costs(study).wide
    return _attach(_long(w.set_index("client_id"), CATEGORIES), _meta(w))


def income_support_by_kind(study: Study) -> pd.DataFrame:
    """Per-family income support by kind (internal), categories ``income_support:<kind>``."""
    fc = study_costs(study)
    return _attach(_long(fc.income_kinds, fc.kinds), _meta(fc.wide))


def wide_family_costs(study: Study, fc: FamilyCosts | None = None) -> pd.DataFrame:
    """:func:`wide_costs` of the study (internal: one row per family); from ``fc`` when the
    caller built it already (:func:`study_costs`)."""
    return (fc or study_costs(study)).wide.copy()


def _meta(w: pd.DataFrame) -> pd.DataFrame:
    return w[["client_id", "group", "cell", "stratum"]]


@dataclass(frozen=True)
class FamilyCosts:
    """Per-family costs of a study (internal: one row per family; never written out).

    ``wide`` is :func:`wide_costs`' layout; ``income_kinds`` holds the income-support
    breakdown by kind (columns ``<period>_<kind>``) for the families of ``wide``.
    ``hbeval.pipeline`` builds it once (:func:`study_costs`) and hands it to the cost,
    comparison, CEA and ROSI steps.
    """

    wide: pd.DataFrame
    income_kinds: pd.DataFrame
    kinds: list[str]


def study_costs(study: Study) -> FamilyCosts:
    """The :class:`FamilyCosts` of a study: one DuckDB scan of its register tables."""
    cfg = study.config
    fam = _study_families(study)
    con = study.connect()
    try:
        values, kinds = family_costs_wide_sql(con, fam, study.unit_costs(), study.price_index(), cfg.price_year,
                                              cfg.follow_up_days)
    finally:
        con.close()
    return FamilyCosts(_wide_frame(values, fam), values[[f"{p}_{k}" for p in PERIODS for k in kinds]], kinds)


def _wide_frame(values: pd.DataFrame, fam: pd.DataFrame) -> pd.DataFrame:
    """The layout of :func:`wide_costs` from :func:`family_costs_wide_sql`'s values."""
    w = values[[f"{p}_{c}" for p in PERIODS for c in CATEGORIES]].copy()
    for p in PERIODS:
        w[f"{p}_total"] = w[[f"{p}_{c}" for c in CATEGORIES]].sum(axis=1)
    meta = fam.drop_duplicates("client_id").set_index("client_id")[["group", "cell", "stratum"]]
    out = meta.join(w, how="right").reset_index()
    return out[WIDE_COLUMNS]


#: columns of :func:`wide_costs`
WIDE_COLUMNS = ["client_id", "group", "cell", "stratum"] + [f"{p}_{c}" for p in PERIODS for c in (*CATEGORIES, "total")]


def wide_costs(fc: pd.DataFrame) -> pd.DataFrame:
    """One row per family: ``client_id, group, cell, stratum`` and a column per
    ``<period>_<category>`` plus ``follow_up_total`` and ``pre_total``, from long per-family
    costs (:func:`family_costs`)."""
    w = fc.pivot_table(index="client_id", columns=["period", "category"], values="cost_eur", aggfunc="sum", sort=True)
    w.columns = [f"{p}_{c}" for p, c in w.columns]
    for c in (f"{p}_{c}" for p in PERIODS for c in CATEGORIES):
        if c not in w.columns:
            w[c] = 0.0
    return _wide_frame(w, fc).sort_values("client_id", kind="mergesort").reset_index(drop=True)


# --------------------------------------------------------------------------- costs.csv
def summarise_costs(fc: pd.DataFrame, n_reps: int, seed: int, min_cell: int,
                    level: float = 0.95, detail: pd.DataFrame | None = None) -> pd.DataFrame:
    """``costs.csv``: per group, cell, category (+ ``total``) and period.

    Parameters
    ----------
    fc : long per-family costs (:func:`family_costs`).
    n_reps : bootstrap replicates for the CI of the mean (percentile, resampling families).
    detail : optional income-support breakdown (:func:`income_support_by_kind`); its
        ``income_support:<kind>`` rows follow ``income_support`` and are parts of it, not
        added again into ``total``.

    Returns
    -------
    DataFrame ``group, cell, category, period, n, mean_eur, sd_eur, median_eur, ci_low,
    ci_high, total_eur``; ``cell`` is ``all`` or ``<frame_arm>/<teaming_arm>`` (pilot
    only); rows of groups smaller than ``min_cell`` are blanked and ``n`` shown as ``<k``.
    """
    if detail is None or not len(detail):
        return _summarise_wide(wide_costs(fc), n_reps, seed, min_cell, level, None, [])
    kinds = list(pd.unique(detail["category"]))
    dw = detail.pivot_table(index="client_id", columns=["period", "category"], values="cost_eur", aggfunc="sum")
    dw.columns = [f"{p}_{c}" for p, c in dw.columns]
    return _summarise_wide(wide_costs(fc), n_reps, seed, min_cell, level, dw, kinds)


def _summarise_wide(w: pd.DataFrame, n_reps: int, seed: int, min_cell: int, level: float,
                    dw: pd.DataFrame | None, kinds: list[str]) -> pd.DataFrame:
    """:func:`summarise_costs` of the wide costs ``w``; ``dw`` (indexed by ``client_id``,
    columns ``<period>_income_support:<kind>``) and ``kinds`` are the optional breakdown."""
    cats: tuple[str, ...] = (*CATEGORIES, "total")
    if dw is not None and kinds:
        w = w.merge(dw, left_on="client_id", right_index=True, how="left")
        for p in PERIODS:
            for kind in kinds:
                col = f"{p}_{kind}"
                w[col] = w[col].fillna(0.0) if col in w.columns else 0.0
        i = CATEGORIES.index("income_support") + 1
        cats = (*CATEGORIES[:i], *kinds, *CATEGORIES[i:], "total")
    w = w[w["group"].isin(["pilot", "comparison"])]
    rng = np.random.default_rng([seed, SEED_COSTS])
    units: list[tuple[str, str, pd.DataFrame]] = []
    for g in ("pilot", "comparison"):
        sub = w[w["group"] == g]
        units.append((g, "all", sub))
        if g == "pilot":
            for cell in CELLS:
                units.append((g, cell, sub[sub["cell"] == cell]))
    rows = []
    k = len(cats)
    for g, cell, sub in units:
        # both periods of a unit from one set of draws (a family is resampled with both)
        xx = sub[[f"{p}_{c}" for p in PERIODS for c in cats]].to_numpy(float)
        n = len(xx)
        if n:
            lo2, hi2 = percentile_ci(bootstrap_means(xx, n_reps, rng), level)
        for q, p in enumerate(PERIODS):
            x = xx[:, q * k : (q + 1) * k]
            if n:
                lo, hi = lo2[q * k : (q + 1) * k], hi2[q * k : (q + 1) * k]
            for j, c in enumerate(cats):
                rows.append(
                    {"group": g, "cell": cell, "category": c, "period": p, "n": n,
                     "mean_eur": x[:, j].mean() if n else np.nan,
                     "sd_eur": x[:, j].std(ddof=1) if n > 1 else np.nan,
                     "median_eur": float(np.median(x[:, j])) if n else np.nan,
                     "ci_low": lo[j] if n else np.nan, "ci_high": hi[j] if n else np.nan,
                     "total_eur": x[:, j].sum() if n else np.nan}
                )
    out = pd.DataFrame(rows)
    num = ["mean_eur", "sd_eur", "median_eur", "ci_low", "ci_high", "total_eur"]
    out[num] = out[num].round(2)
    return suppress_small_groups(out, "n", num, min_cell)


def contrast_weights(sizes: dict[str, int]) -> dict[str, dict[str, float]]:
    """Each contrast as weights over arm means (arms: the four cells and ``comparison``).

    Margins pool the families of each level (so resampling within cells keeps them
    linear in the cell means); the interaction is ``m3 − m2 − m1 + m0``; cells are
    against ``frame_only/no_teaming``; ``pilot_vs_comparison`` pools the pilot cells.
    """
    c0, c1, c2, c3 = CELLS
    n = {k: sizes.get(k, 0) for k in (*CELLS, "comparison")}

    def pooled(pos: tuple[str, ...], neg: tuple[str, ...]) -> dict[str, float]:
        sp, sn = sum(n[k] for k in pos), sum(n[k] for k in neg)
        w = {k: (n[k] / sp if sp else np.nan) for k in pos}
        w.update({k: (-n[k] / sn if sn else np.nan) for k in neg})
        return w

    return {
        "frame_shares": pooled((c2, c3), (c0, c1)),
        "teaming": pooled((c1, c3), (c0, c2)),
        "frame_shares:teaming": {c3: 1.0, c2: -1.0, c1: -1.0, c0: 1.0},
        "cell:frame_only/teaming": {c1: 1.0, c0: -1.0},
        "cell:frame_shares/no_teaming": {c2: 1.0, c0: -1.0},
        "cell:frame_shares/teaming": {c3: 1.0, c0: -1.0},
        "pilot_vs_comparison": pooled(CELLS, ("comparison",)),
    }


def arm_labels(w: pd.DataFrame) -> np.ndarray:
    """Resampling arm of each family: its cell (pilot) or ``comparison``."""
    codes, uniq = pd.factorize(w["cell"].to_numpy(object), use_na_sentinel=False)
    lab = np.array([a if isinstance(a, str) else "" for a in uniq], dtype=object)
    arm = lab[codes]  # a cell label, or "" for a family without one
    arm[w["group"].to_numpy(object) == "comparison"] = "comparison"
    return arm


def difference_table(fc: pd.DataFrame, n_reps: int, seed: int, min_cell: int,
                     level: float = 0.95, glm: bool = True) -> pd.DataFrame:
    """Cost differences per contrast and category (follow-up), with bootstrap CIs.

    Returns
    -------
    DataFrame ``contrast, category, period, n_a, n_b, mean_a_eur, mean_b_eur,
    difference_eur, ci_low, ci_high, ci_method, glm_ratio, glm_ci_low, glm_ci_high,
    glm_p_value, glm_note`` (``a`` is the first-named level, ``b`` its reference; for the
    interaction ``a`` counts the cells entering with +1, ``frame_only/no_teaming`` and
    ``frame_shares/teaming``, and the means are left empty). The GLM columns are filled on
    the ``total`` rows.

    Notes
    -----
    The difference is a linear combination of arm means (:func:`contrast_weights`);
    its bootstrap resamples families within the four cells and the comparison group
    (``n_reps`` replicates, percentile CI). The gamma-log GLM check
    (:func:`hbeval.stats.glm.gamma_log_glm`: statsmodels' fit, bit for bit; robust HC1
    covariance) regresses each family's cost on the contrast's indicator(s) and gives
    the ratio of means ``exp(β)`` with its CI; zero costs are outside the gamma support,
    so families with zero cost are left out of the GLM and counted in ``glm_note``.
    Reference: Thompson & Barber (2000) BMJ 320:1197; Barber & Thompson (2004) Stat Med
    23:1421 (GLMs for costs).
    """
    return _difference_table_wide(wide_costs(fc), n_reps, seed, min_cell, level, glm)


def _difference_table_wide(w: pd.DataFrame, n_reps: int, seed: int, min_cell: int, level: float,
                           glm: bool) -> pd.DataFrame:
    w = w[w["group"].isin(["pilot", "comparison"])].reset_index(drop=True)
    arm = arm_labels(w)
    keep = arm != ""
    w, arm = w[keep].reset_index(drop=True), arm[keep]
    cats = (*CATEGORIES, "total")
    rng = np.random.default_rng([seed, SEED_DIFF])
    arms_order = [*CELLS, "comparison"]
    masks = {k: arm == k for k in arms_order}
    sizes = {k: int(masks[k].sum()) for k in arms_order}
    weights = contrast_weights(sizes)
    rows = []
    for p in ("follow_up",):
        x = w[[f"{p}_{c}" for c in cats]].to_numpy(float)
        means = np.array([x[masks[k]].mean(axis=0) if sizes[k] else np.full(len(cats), np.nan) for k in arms_order])
        reps = bootstrap_arm_means(x, arm, arms_order, n_reps, rng)  # (B, arms, categories)
        for con, cw in weights.items():
            vec = np.array([cw.get(k, 0.0) for k in arms_order])
            if np.isnan(vec).any() or any(sizes[k] == 0 for k in cw):
                continue
            pos = [k for k in cw if cw[k] > 0]
            neg = [k for k in cw if cw[k] < 0]
            est = vec @ means
            d = np.einsum("a,bak->bk", vec, reps)
            lo, hi = percentile_ci(d, level)
            ma = np.logical_or.reduce([masks[k] for k in pos])
            mb = np.logical_or.reduce([masks[k] for k in neg])
            for j, c in enumerate(cats):
                row = {"contrast": con, "category": c, "period": p,
                       "n_a": sum(sizes[k] for k in pos), "n_b": sum(sizes[k] for k in neg),
                       "mean_a_eur": np.nan, "mean_b_eur": np.nan,
                       "difference_eur": est[j], "ci_low": lo[j], "ci_high": hi[j],
                       "ci_method": f"bootstrap percentile ({n_reps} replicates, within arms)"}
                if con != "frame_shares:teaming":
                    row["mean_a_eur"] = x[ma, j].mean()
                    row["mean_b_eur"] = x[mb, j].mean()
                if glm and c == "total":
                    row.update(_gamma_glm(x[:, j], masks, con))
                rows.append(row)
    cols = ["contrast", "category", "period", "n_a", "n_b", "mean_a_eur", "mean_b_eur", "difference_eur", "ci_low",
            "ci_high", "ci_method", "glm_ratio", "glm_ci_low", "glm_ci_high", "glm_p_value", "glm_note"]
    out = pd.DataFrame(rows)
    for c in cols:
        if c not in out.columns:
            out[c] = np.nan
    out = out[cols]
    num = ["mean_a_eur", "mean_b_eur", "difference_eur", "ci_low", "ci_high"]
    out[num] = out[num].round(2)
    out[["glm_ratio", "glm_ci_low", "glm_ci_high"]] = out[["glm_ratio", "glm_ci_low", "glm_ci_high"]].round(4)
    small = (out["n_a"] < min_cell) | (out["n_b"] < min_cell)
    out.loc[small, num + ["glm_ratio", "glm_ci_low", "glm_ci_high", "glm_p_value"]] = np.nan
    for c in ("n_a", "n_b"):
        out[c] = [f"<{min_cell}" if 0 < v < min_cell else str(int(v)) for v in out[c]]
    return out


def _gamma_glm(y: np.ndarray, masks: dict[str, np.ndarray], contrast: str) -> dict[str, Any]:
    """Gamma GLM with log link for one contrast: ratio of means exp(β) and its CI
    (``masks``: the families of each cell and of ``comparison``, every family in one)."""
    c0, c1, c2, c3 = CELLS
    if contrast == "pilot_vs_comparison":
        sel = np.ones(len(y), bool)
        X = np.column_stack([np.ones(len(y)), ~masks["comparison"]])
        coef = 1
    else:
        sel = ~masks["comparison"]
        fs = (masks[c2] | masks[c3]).astype(float)
        tm = (masks[c1] | masks[c3]).astype(float)
        if contrast == "frame_shares":
            X, coef = np.column_stack([np.ones(len(y)), fs, tm]), 1
        elif contrast == "teaming":
            X, coef = np.column_stack([np.ones(len(y)), fs, tm]), 2
        elif contrast == "frame_shares:teaming":
            X, coef = np.column_stack([np.ones(len(y)), fs, tm, fs * tm]), 3
        else:
            target = contrast.split(":", 1)[1]
            sel = masks[c0] | masks[target]
            X, coef = np.column_stack([np.ones(len(y)), masks[target]]), 1
    pos = sel & (y > 0)
    n_zero = int((sel & (y <= 0)).sum())
    note = "gamma GLM, log link, HC1" + (f"; {n_zero} families with zero cost left out" if n_zero else "")
    try:
        res = gamma_log_glm(y[pos], X[pos].astype(float))  # statsmodels' GLM(Gamma(Log())).fit(cov_type="HC1"), bit for bit
        b, se = res.params[coef], res.bse[coef]
        return {"glm_ratio": float(np.exp(b)), "glm_ci_low": float(np.exp(b - 1.959963984540054 * se)),
                "glm_ci_high": float(np.exp(b + 1.959963984540054 * se)), "glm_p_value": float(res.pvalues[coef]),
                "glm_note": note}
    except Exception as e:  # noqa: BLE001 - a failed check is reported, not fatal
        return {"glm_ratio": np.nan, "glm_ci_low": np.nan, "glm_ci_high": np.nan, "glm_p_value": np.nan,
                "glm_note": f"GLM did not converge: {type(e).__name__}"}


def costs_results(study: Study, fc: FamilyCosts | None = None) -> pd.DataFrame:
    """``results/costs.csv`` of a study (bootstrap seeded from ``config.seed``)."""
    cfg = study.config
    fc = fc or study_costs(study)
    return _summarise_wide(fc.wide.copy(), cfg.bootstrap_reps, cfg.seed, cfg.min_cell, 0.95, fc.income_kinds, fc.kinds)


def cost_differences(study: Study, fc: FamilyCosts | None = None) -> pd.DataFrame:
    """``results/cost_differences.csv``: follow-up cost differences per contrast and
    category with bootstrap CIs, and the gamma-log GLM check on the total."""
    cfg = study.config
    return _difference_table_wide(wide_family_costs(study, fc), cfg.bootstrap_reps, cfg.seed, cfg.min_cell, 0.95, True)
