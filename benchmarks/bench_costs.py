"""Per-family costs of 10 million register events: DuckDB (hbeval.costs.engine) vs pandas.

Writes a synthetic ``service_events.csv`` of N events (default 10,000,000) for 20,000
families over three years (catalogue codes, some invoices with ``cost_eur``), then runs,
each in its own subprocess so that its peak memory (max RSS) is its own:

* ``duckdb-csv``   — :func:`hbeval.costs.engine.family_costs_sql` on a DuckDB view of the CSV
  (read, window, price and aggregate inside DuckDB);
* ``duckdb-store`` — the same on a DuckDB store file (as after ingestion: what
  ``hbeval analyze`` does), opened read-only;
* ``pandas``       — ``pd.read_csv`` + merges + ``groupby`` doing the same pricing.

Prints the wall time, CPU time (user + system, all threads) and peak RSS of each, the ratios against pandas, and checks that
the per-family totals agree.

Usage: ``python benchmarks/bench_costs.py [N_EVENTS] [--keep DIR]``
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
    ev = pd.read_csv(d / "service_events.csv", parse_dates=["event_date"])
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


def child(kind: str, d: Path) -> None:
    sys.path.insert(0, str(HERE.parent))
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    out = run_pandas(d) if kind == "pandas" else run_duckdb(d, "csv" if kind == "duckdb-csv" else "store")
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["per_family"] = {f"{k[0]}|{k[1]}": v for k, v in out["per_family"].items()}
    print("RESULT " + json.dumps(out))


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 10_000_000
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    d = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="hbeval_bench_costs_"))
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "service_events.csv").exists():
        t = time.perf_counter()
        make_data(d, n)
        print(f"wrote {n:,} events ({(d / 'service_events.csv').stat().st_size / 1e6:.0f} MB CSV) "
              f"for {N_FAMILIES:,} families in {time.perf_counter() - t:.1f} s")
    res = {}
    for kind in ("duckdb-csv", "duckdb-store", "pandas"):
        p = subprocess.run([sys.executable, __file__, "--child", kind, str(d)], capture_output=True, text=True)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            print(f"{kind} failed:\n{p.stderr[-2000:]}")
            continue
        res[kind] = json.loads(line[0][7:])
        r = res[kind]
        print(f"{kind:13s} {r['seconds']:8.2f} s wall  {r['cpu_seconds']:8.2f} s CPU   peak RSS {r['max_rss_mb']:8.0f} MB   families {r['families']:,}")
    if "pandas" in res:
        for kind in ("duckdb-csv", "duckdb-store"):
            if kind in res:
                print(f"pandas / {kind}: wall time ×{res['pandas']['seconds'] / res[kind]['seconds']:.1f}, "
                      f"CPU time ×{res['pandas']['cpu_seconds'] / res[kind]['cpu_seconds']:.1f}, "
                      f"peak memory ×{res['pandas']['max_rss_mb'] / res[kind]['max_rss_mb']:.1f}")
        a, b = res["pandas"], res.get("duckdb-csv")
        if b:
            keys = set(a["per_family"]) & set(b["per_family"])
            diff = max(abs(a["per_family"][k] - b["per_family"][k]) for k in keys) if keys else float("nan")
            print(f"check: total {a['checksum']:.2f} (pandas) vs {b['checksum']:.2f} (duckdb); "
                  f"max per-family difference over {len(keys)} shared keys {diff:.2e} EUR")
    if not keep:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
