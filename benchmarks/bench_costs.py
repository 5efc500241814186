"""Per-family costs of 10 million register events: hbeval's DuckDB engine vs pandas and a bare DuckDB query.

Writes a synthetic ``service_events.csv`` of N events (default 10,000,000) for 20,000
families over three years (catalogue codes, some invoices with ``cost_eur``), then runs,
each in its own subprocess so that its peak memory (max RSS) is its own, the contenders in
alternating order for ``--rounds`` rounds:

* ``duckdb-csv``   — :func:`hbeval.costs.engine.family_costs_sql` on a DuckDB view of the CSV
  (read, window, price and aggregate inside DuckDB);
* ``duckdb-store`` — the same on a DuckDB store file (as after ingestion: what
  ``hbeval analyze`` does), opened read-only; the ingestion itself is not timed here (see
  ``scale.py``), so this is not comparable with the CSV readers;
* ``bare-duckdb``  — the floor: one hand-written DuckDB query over the CSV doing the same
  windowing and pricing (no checks, no per-code pricing diagnostics, no category split
  beyond direct vs catalogue costs);
* ``pandas``       — ``pd.read_csv`` (pyarrow engine when pyarrow is installed, else the C
  engine, said in the output) + merges + ``groupby`` doing the same pricing; it does no
  checks either.

Prints per contender and round the wall time, CPU time (user + system, all threads) and
peak RSS; the per-round ratios against ``duckdb-csv`` (min / median / max), and checks that
the per-family totals agree.

Usage: ``python benchmarks/bench_costs.py [N_EVENTS] [--keep DIR] [--rounds R]``
(``--keep DIR`` keeps, or reuses, the generated data in DIR).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_FAMILIES = 20_000


def make_data(d: Path, n_events: int) -> None:
    import duckdb
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    enrol = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, N_FAMILIES), unit="D")
    fam = pd.DataFrame({"client_id": [f"p{i:08d}" for i in range(N_FAMILIES)], "enrolled_on": enrol})
    fam.to_csv(d / "families.csv", index=False)
    uc = pd.read_csv(HERE.parent / "hbeval" / "data" / "unit_costs.csv")
    codes = [c for c in uc["service_code"] if not c.startswith("staff:") and c != "purchased_service"]
    con = duckdb.connect()
    codes_sql = "[" + ",".join(f"'{c}'" for c in codes) + "]"
    con.execute(
        f"""
        COPY (
          SELECT 'p' || lpad(CAST(CAST(floor(random() * {N_FAMILIES}) AS BIGINT) AS VARCHAR), 8, '0') AS client_id,
                 DATE '2023-01-01' + CAST(floor(random() * 1095) AS INTEGER) AS event_date,
                 CASE WHEN random() < 0.05 THEN 'purchased_service'
                      ELSE {codes_sql}[1 + CAST(floor(random() * {len(codes)}) AS INTEGER)] END AS service_code,
                 CAST(1 + floor(random() * 3) AS DOUBLE) AS quantity
          FROM range({n_events})
        ) TO '{d / "events_raw.csv"}' (HEADER)
        """
    )
    con.execute(
        f"""COPY (SELECT *, CASE WHEN service_code = 'purchased_service' THEN round(50 + random() * 900, 2) END AS cost_eur
                  FROM read_csv('{d / "events_raw.csv"}')) TO '{d / "service_events.csv"}' (HEADER)"""
    )
    os.remove(d / "events_raw.csv")
    store = duckdb.connect(str(d / "store.duckdb"))
    store.execute(f"CREATE TABLE service_events AS SELECT * FROM read_csv('{d / 'service_events.csv'}')")
    store.close()


def run_duckdb(d: Path, source: str) -> dict:
    import duckdb
    import pandas as pd

    from hbeval.costs.engine import family_costs_sql

    uc = pd.read_csv(HERE.parent / "hbeval" / "data" / "unit_costs.csv")
    pi = pd.read_csv(HERE.parent / "hbeval" / "data" / "price_index.csv")
    t0 = time.perf_counter()
    fam = pd.read_csv(d / "families.csv", parse_dates=["enrolled_on"])
    if source == "csv":
        con = duckdb.connect()
        con.execute(f"CREATE VIEW service_events AS SELECT * FROM read_csv('{d / 'service_events.csv'}')")
    else:
        con = duckdb.connect(str(d / "store.duckdb"), read_only=True)
    fc = family_costs_sql(con, fam, uc, pi, 2024, 365)
    secs = time.perf_counter() - t0
    tot = fc.groupby(["client_id", "period"])["cost_eur"].sum()
    return {"seconds": secs, "checksum": float(tot.sum()), "families": int(fc["client_id"].nunique()),
            "per_family": tot.round(6).head(50).to_dict()}


def run_pandas(d: Path) -> dict:
    import numpy as np
    import pandas as pd

    uc = pd.read_csv(HERE.parent / "hbeval" / "data" / "unit_costs.csv")
    pi = pd.read_csv(HERE.parent / "hbeval" / "data" / "price_index.csv")
    t0 = time.perf_counter()
    fam = pd.read_csv(d / "families.csv", parse_dates=["enrolled_on"])
    ev = pd.read_csv(d / "service_events.csv", parse_dates=["event_date"], engine=_pandas_engine())
    ev = ev.merge(fam, on="client_id", how="inner")
    fu = pd.Timedelta(days=365)
    period = np.where((ev["event_date"] >= ev["enrolled_on"]) & (ev["event_date"] < ev["enrolled_on"] + fu), "follow_up",
                      np.where((ev["event_date"] >= ev["enrolled_on"] - fu) & (ev["event_date"] < ev["enrolled_on"]), "pre", ""))
    ev["period"] = period
    ev = ev[ev["period"] != ""]
    idx = dict(zip(pi["year"], pi["index"]))
    tgt = idx[2024]
    ev = ev.merge(uc[["service_code", "unit_cost_eur", "price_year"]], on="service_code", how="left")
    direct = ev["cost_eur"].notna()
    f_cat = tgt / ev["price_year"].map(idx)
    f_dir = tgt / ev["event_date"].dt.year.map(idx)
    ev["cost"] = np.where(direct, ev["cost_eur"] * f_dir, ev["quantity"] * ev["unit_cost_eur"] * f_cat)
    ev["category"] = np.where(direct, "purchased_services", "usual_services")
    fc = ev.groupby(["client_id", "period", "category"], sort=True)["cost"].sum().reset_index()
    secs = time.perf_counter() - t0
    tot = fc.groupby(["client_id", "period"])["cost"].sum()
    return {"seconds": secs, "checksum": float(tot.sum()), "families": int(fc["client_id"].nunique()),
            "per_family": tot.round(6).head(50).to_dict()}


def _pandas_engine() -> str:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return "c"
    return "pyarrow"


def run_bare_duckdb(d: Path) -> dict:
    """The floor: the same windowing and pricing as one DuckDB query over the CSV."""
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    uc, pi = HERE.parent / "hbeval" / "data" / "unit_costs.csv", HERE.parent / "hbeval" / "data" / "price_index.csv"
    tot = con.execute(f"""
        WITH fam AS (SELECT client_id, CAST(enrolled_on AS DATE) AS t0 FROM read_csv('{d / "families.csv"}')),
             pi AS (SELECT year, "index" AS ix FROM read_csv('{pi}')),
             ev AS (
               SELECT e.client_id, e.event_date, e.service_code, e.quantity, e.cost_eur,
                      CASE WHEN e.event_date >= f.t0 AND e.event_date < f.t0 + INTERVAL 365 DAY THEN 'follow_up'
                           WHEN e.event_date >= f.t0 - INTERVAL 365 DAY AND e.event_date < f.t0 THEN 'pre' END AS period
               FROM read_csv('{d / "service_events.csv"}') e JOIN fam f USING (client_id))
        SELECT ev.client_id, ev.period,
               sum(CASE WHEN ev.cost_eur IS NOT NULL THEN ev.cost_eur * (SELECT ix FROM pi WHERE year = 2024) / py.ix
                        ELSE ev.quantity * u.unit_cost_eur * (SELECT ix FROM pi WHERE year = 2024) / pc.ix END) AS cost
        FROM ev LEFT JOIN read_csv('{uc}') u USING (service_code)
                LEFT JOIN pi pc ON pc.year = u.price_year
                LEFT JOIN pi py ON py.year = year(ev.event_date)
        WHERE ev.period IS NOT NULL
        GROUP BY ALL ORDER BY ALL""").df()
    secs = time.perf_counter() - t0
    t = tot.set_index(["client_id", "period"])["cost"]
    return {"seconds": secs, "checksum": float(t.sum()), "families": int(tot["client_id"].nunique()),
            "per_family": t.round(6).head(50).to_dict()}


def child(kind: str, d: Path) -> None:
    sys.path.insert(0, str(HERE.parent))
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    if kind == "pandas":
        out = run_pandas(d)
        out["engine"] = _pandas_engine()
    elif kind == "bare-duckdb":
        out = run_bare_duckdb(d)
    else:
        out = run_duckdb(d, "csv" if kind == "duckdb-csv" else "store")
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["per_family"] = {f"{k[0]}|{k[1]}": v for k, v in out["per_family"].items()}
    print("RESULT " + json.dumps(out))


def main() -> None:
    import argparse

    import numpy as np

    ap = argparse.ArgumentParser()
    ap.add_argument("n_events", nargs="?", type=int, default=10_000_000)
    ap.add_argument("--keep", metavar="DIR", help="keep (or reuse) the generated data in DIR")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    n, keep = a.n_events, a.keep
    d = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="hbeval_bench_costs_"))
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "service_events.csv").exists():
        t = time.perf_counter()
        make_data(d, n)
        print(f"wrote {n:,} events ({(d / 'service_events.csv').stat().st_size / 1e6:.0f} MB CSV) "
              f"for {N_FAMILIES:,} families in {time.perf_counter() - t:.1f} s")
    else:
        print(f"reusing {d / 'service_events.csv'} ({(d / 'service_events.csv').stat().st_size / 1e6:.0f} MB)")
    kinds = ["duckdb-csv", "duckdb-store", "bare-duckdb", "pandas"]
    rounds: list[dict] = []
    for r in range(a.rounds):
        res = {}
        for kind in (kinds if r % 2 == 0 else kinds[::-1]):
            p = subprocess.run([sys.executable, __file__, "--child", kind, str(d)], capture_output=True, text=True)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if p.returncode or not line:
                print(f"{kind} failed:\n{p.stderr[-2000:]}")
                continue
            res[kind] = json.loads(line[0][7:])
            x = res[kind]
            eng = f" (read_csv engine {x['engine']})" if "engine" in x else ""
            print(f"round {r + 1} {kind:13s} {x['seconds']:8.2f} s wall  {x['cpu_seconds']:8.2f} s CPU   "
                  f"peak RSS {x['max_rss_mb']:8.0f} MB   families {x['families']:,}{eng}")
        rounds.append(res)
    ref = "duckdb-csv"
    print(f"per-round ratios against hbeval ({ref}), min / median / max (> 1: slower than hbeval):")
    for kind in kinds:
        ok = [x for x in rounds if kind in x and ref in x]
        if kind == ref or not ok:
            continue
        for what, key in (("wall", "seconds"), ("CPU", "cpu_seconds"), ("peak RSS", "max_rss_mb")):
            v = [x[kind][key] / x[ref][key] for x in ok]
            print(f"  {kind:13s} {what:8s} {min(v):.2f} / {float(np.median(v)):.2f} / {max(v):.2f}")
    last = rounds[-1]
    b = last.get(ref)
    for kind in ("pandas", "bare-duckdb"):
        x = last.get(kind)
        if x and b:
            keys = set(x["per_family"]) & set(b["per_family"])
            diff = max(abs(x["per_family"][k] - b["per_family"][k]) for k in keys) if keys else float("nan")
            print(f"check: total {x['checksum']:.2f} ({kind}) vs {b['checksum']:.2f} (hbeval); "
                  f"max per-family difference over {len(keys)} shared keys {diff:.2e} EUR")
    if not keep:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
