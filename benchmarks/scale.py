"""National-register scale: time and peak memory of ``hbeval validate`` and ``hbeval analyze``.

Generates a synthetic study of ``--families`` families (default 1 million) and
``--events`` service events (default 50 million). Every table is written by DuckDB
``COPY (SELECT ... FROM range(n)) TO 'x.csv'`` from hash-based pseudo-random columns,
so the generator streams and never holds the rows in Python or pandas.

Each command runs in its own child process; its wall time and peak resident memory
(``ru_maxrss`` from ``os.wait4`` of that child) are printed. As a peer measurement in the
same run, the script times a bare DuckDB scan of the largest file (``count(*)`` over
``read_csv``), and prints validate's time as a ratio to that floor.

Usage::

    .venv/bin/python benchmarks/scale.py --dir /tmp/scale            # 1M families, 50M events
    .venv/bin/python benchmarks/scale.py --dir /tmp/scale_small --families 20000 --events 1000000

Never part of the test suite. Needs ~4 GB of disk in ``--dir`` for the full size
(CSV inputs ~3 GB, the study store ~1 GB); ``--clean`` deletes the folder afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
SITES = ["Hämeenlinna", "Siun sote", "Pirkanmaa", "Keski-Suomi", "Varsinais-Suomi"]
LINES = ["home_help", "family_work", "family_counselling", "disability_services", "child_welfare_open_care"]
CODES = ["home_help_visit", "family_work_visit", "family_counselling_visit", "social_work_meeting", "phone_call",
         "home_visit", "nurse_visit", "gp_visit", "decision", "client_plan"]
CONTENT = ["assessment", "examination", "support_visit", "guidance", "decision", "other"]
KYKY = ["osallisuus", "mieli", "arki", "taidot", "keho", "kokonaistilanne", "elamaan_tyytyvaisyys"]

STUDY_TOML = """\
# Synthetic national-register study (benchmarks/scale.py); no real person is in it.
[study]
name = "Scale benchmark"
price_year = 2024
follow_up_days = 365
seed = 7

[design]
strata = ["site", "service_line"]

[outcomes]
primary = "kykyviisari_total"
ri_draws = {ri_draws}

[economics]
bootstrap_reps = {bootstrap_reps}
"""


def _list(xs: list[str]) -> str:
    return "[" + ", ".join("'" + x.replace("'", "''") + "'" for x in xs) + "]"


def _h(expr: str, salt: int) -> str:
    """A 64-bit hash of ``expr`` salted by ``salt``. (``hash(x, salt)`` would not do: its
    low bits for two salts are functions of each other, which made covariates predict the
    arm exactly in a first version.)"""
    return f"hash(xor(hash({expr}), {salt}::UBIGINT))"


def _u(expr: str, salt: int) -> str:
    """A uniform number in [0, 1) from a hash of ``expr`` and ``salt``."""
    return f"(({_h(expr, salt)} % 1000000007) / 1000000007.0)"


def _pick(xs: list[str], expr: str, salt: int) -> str:
    return f"({_list(xs)})[1 + CAST({_h(expr, salt)} % {len(xs)} AS INTEGER)]"


def generate(d: Path, n_fam: int, n_events: int, ri_draws: int, bootstrap_reps: int) -> dict[str, int]:
    """Write the study folder ``d``; returns rows per table."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "study.toml").write_text(STUDY_TOML.format(ri_draws=ri_draws, bootstrap_reps=bootstrap_reps), encoding="utf-8")
    n_pilot = max(400, n_fam // 20)  # 5 % in the pilot
    n_meas_comp = n_pilot  # comparison families with measurements
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    def fid(x: str) -> str:
        return f"('f' || lpad(CAST({x} AS VARCHAR), 7, '0'))"
    enrolled = "(DATE '2024-01-01' + CAST(hash(xor(hash(i), 3::UBIGINT)) % 540 AS INTEGER))"
    con.execute(f"""CREATE TEMP TABLE fam AS SELECT i, {fid('i')} AS client_id,
        {_pick(SITES, 'i', 1)} AS site, {_pick(LINES, 'i', 2)} AS service_line,
        CASE WHEN i < {n_pilot} THEN 'pilot' WHEN i % 100 = 99 THEN 'excluded' ELSE 'comparison' END AS grp,
        {enrolled} AS enrolled_on,
        CAST(hash(xor(hash(i), 4::UBIGINT)) % 4 AS INTEGER) AS kids,
        CAST(hash(xor(hash(i), 5::UBIGINT)) % 4 AS INTEGER) AS cell
        FROM range({n_fam}) t(i)""")
    rows: dict[str, int] = {}

    def copy(name: str, sql: str) -> None:
        t0 = time.perf_counter()
        con.execute(f"COPY ({sql}) TO '{d / (name + '.csv')}' (HEADER, DELIMITER ',')")
        rows[name] = con.execute(f"SELECT count(*) FROM read_csv('{d / (name + '.csv')}')").fetchone()[0] if name != "service_events" else n_events
        print(f"  {name}.csv: {rows[name]:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    copy("clients", """SELECT client_id, site, service_line, grp AS "group",
        CASE WHEN grp = 'excluded' THEN 'declined' END AS exclusion_reason, enrolled_on,
        kids + 1 + CAST(i % 2 AS INTEGER) AS household_size, kids AS n_children,
        CASE WHEN kids > 0 THEN CAST(hash(xor(hash(i), 6::UBIGINT)) % 18 AS INTEGER) END AS youngest_child_age,
        'area' || CAST(hash(xor(hash(i), 7::UBIGINT)) % 40 AS VARCHAR) AS area, 'arjen_hallinta' AS referral_reason
        FROM fam ORDER BY i""")
    copy("assignments", """SELECT client_id,
        CASE WHEN cell >= 2 THEN 'frame_shares' ELSE 'frame_only' END AS frame_arm,
        CASE WHEN cell % 2 = 1 THEN 'teaming' ELSE 'no_teaming' END AS teaming_arm,
        site || '|' || service_line AS stratum, enrolled_on AS assigned_on
        FROM fam WHERE grp = 'pilot' ORDER BY i""")
    copy("measurements", f"""SELECT f.client_id, 'kykyviisari' AS instrument, tp AS timepoint,
        CASE WHEN tp = 'start' THEN f.enrolled_on ELSE f.enrolled_on + 300 END AS measured_on, item,
        round(least(10, greatest(0, 3 + 4 * {_u('f.i, item', 8)} + CASE WHEN tp = 'end'
            THEN 0.5 + CASE WHEN f.grp = 'pilot' THEN 0.3 * (f.cell % 2) ELSE 0 END + 2 * ({_u('f.i, item', 29)} - 0.5)
            ELSE 0 END)), 1) AS score
        FROM fam f, (SELECT unnest(['start', 'end']) AS tp), (SELECT unnest({_list(KYKY)}) AS item)
        WHERE f.i < {n_pilot + n_meas_comp} AND f.grp <> 'excluded' AND NOT (tp = 'end' AND hash(xor(hash(f.i), 9::UBIGINT)) % 10 = 0)
        ORDER BY f.i, tp DESC, item""")
    # 50 million events: family i = k mod n (every family gets ~events/families), dates
    # around its enrolment (pre-period and follow-up), streamed straight to CSV
    copy("service_events", f"""SELECT {fid(f'k % {n_fam}')} AS client_id,
        (DATE '2024-01-01' + CAST(hash(xor(hash(k % {n_fam}), 3::UBIGINT)) % 540 AS INTEGER) - 365 + CAST(hash(xor(hash(k), 11::UBIGINT)) % 730 AS INTEGER)) AS event_date,
        {_pick(CODES, 'k', 12)} AS service_code, 1 + CAST(hash(xor(hash(k), 13::UBIGINT)) % 3 AS INTEGER) AS quantity,
        {_pick(CONTENT, 'k', 14)} AS visit_content,
        CASE WHEN hash(xor(hash(k), 15::UBIGINT)) % 50 = 0 THEN round(100 + 900 * {_u('k', 16)}, 2) END AS cost_eur
        FROM range({n_events}) t(k)""")
    copy("budgets", """SELECT client_id, 3000 + 100 * CAST(hash(xor(hash(i), 17::UBIGINT)) % 40 AS INTEGER) AS frame_eur, cat AS category,
        CASE WHEN cell >= 2 THEN 0.3 END AS told_share, 900.0 AS proposed_eur, 900.0 AS confirmed_eur,
        enrolled_on + 7 AS proposed_on, enrolled_on + 14 AS confirmed_on, CAST(hash(xor(hash(i), 18::UBIGINT)) % 3 AS INTEGER) AS revisions
        FROM fam, (SELECT unnest(['childcare', 'home_services', 'hobbies']) AS cat) WHERE grp = 'pilot' ORDER BY i, cat""")
    copy("budget_spending", f"""SELECT client_id, enrolled_on + 20 + CAST(hash(xor(hash(i, j), 19::UBIGINT)) % 300 AS INTEGER) AS date,
        'childcare' AS category, 'Y' || CAST(hash(xor(hash(i, j), 20::UBIGINT)) % 50 AS VARCHAR) AS provider_id,
        round(20 + 200 * {_u('i, j', 21)}, 2) AS amount_eur
        FROM fam, range(10) r(j) WHERE grp = 'pilot' ORDER BY i, j""")
    copy("income_support", f"""SELECT client_id, enrolled_on - 300 + CAST(hash(xor(hash(i, j), 22::UBIGINT)) % 600 AS INTEGER) AS date,
        'basic' AS kind, round(200 + 600 * {_u('i, j', 23)}, 2) AS amount_eur
        FROM fam, range(2) r(j) WHERE i % 5 = 0 ORDER BY i, j""")
    copy("worker_time", """SELECT client_id, enrolled_on + CAST(hash(xor(hash(i, j), 24::UBIGINT)) % 300 AS INTEGER) AS date,
        CASE WHEN grp = 'pilot' THEN 'hb_worker' ELSE 'social_worker' END AS role, 'meeting' AS activity,
        15 + 15 * CAST(hash(xor(hash(i, j), 25::UBIGINT)) % 6 AS INTEGER) AS minutes
        FROM fam, range(2) r(j) WHERE grp = 'pilot' OR i % 10 = 0 ORDER BY i, j""")
    copy("teaming_meetings", """SELECT client_id, enrolled_on + CAST(5 + 100 * j AS INTEGER) AS date,
        (['before_start', 'after_start', 'evaluation'])[1 + CAST(j AS INTEGER)] AS phase,
        3 AS providers_invited, 1 + CAST(hash(xor(hash(i, j), 26::UBIGINT)) % 3 AS INTEGER) AS providers_present, 60 AS minutes
        FROM fam, range(3) r(j) WHERE grp = 'pilot' AND cell % 2 = 1 ORDER BY i, j""")
    copy("child_welfare", """SELECT client_id, enrolled_on + CAST(hash(xor(hash(i), 27::UBIGINT)) % 300 AS INTEGER) AS date, 'notification' AS event
        FROM fam WHERE hash(xor(hash(i), 28::UBIGINT)) % 20 = 0 ORDER BY i""")
    con.close()
    return rows


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``cmd`` as a child; wall seconds, CPU seconds (user + system: less sensitive than the
    wall time to other jobs on a shared machine), peak RSS (GiB) of that child, exit code."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    p.returncode = code
    return {"seconds": round(wall, 1), "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 1),
            "peak_rss_gib": round(ru.ru_maxrss / 2**20, 2), "exit": code}


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def profiled_analyze(study: Path, out: Path, record: Path) -> int:
    """``hbeval analyze`` in this process, with the seconds and the peak resident memory of
    every step (RSS sampled every 50 ms by a thread) written to ``record`` as JSON."""
    from hbeval import pipeline
    from hbeval.outcomes import attrition, comparison, effects, missing, subgroups
    from hbeval.study.store import open_study

    steps: dict[str, dict[str, float]] = {}
    stack: list[str] = ["between steps (peak only, not timed)"]  # the step running and the part of it running
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            r = _rss_gib()
            peak[0] = max(peak[0], r)
            for label in list(stack):  # a part's peak is also its step's
                d = steps.setdefault(label, {"seconds": 0.0, "peak_rss_gib": 0.0})
                d["peak_rss_gib"] = round(max(d["peak_rss_gib"], r), 2)
            time.sleep(0.05)

    def timed(label: str, fn):  # type: ignore[no-untyped-def]
        def run(*args, **kw):  # type: ignore[no-untyped-def]
            stack.append(label)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                d = steps.setdefault(label, {"seconds": 0.0, "peak_rss_gib": 0.0})
                d["seconds"] = round(d["seconds"] + time.perf_counter() - t0, 1)
                stack.pop()
        return run

    threading.Thread(target=sample, daemon=True).start()
    pipeline.shared_inputs = timed("shared inputs", pipeline.shared_inputs)
    pipeline.STEPS = tuple((label, timed(label, fn)) for label, fn in pipeline.STEPS)
    # the parts of the two longest steps, each with its own time and peak (the sampler credits
    # every label on the stack, so a step's peak includes its parts')
    for mod, name in ((comparison, "comparison_results"), (effects, "effects_results"), (subgroups, "add_subgroup_rows"),
                      (effects, "process_results"), (attrition, "attrition_results"), (missing, "missing_data_rows")):
        setattr(mod, name, timed(f"  {mod.__name__.rsplit('.', 1)[1]}.{name}", getattr(mod, name)))
    t0 = time.perf_counter()
    # opening is timed too: a store that is not current (changed inputs or ingestion code) is
    # rebuilt here, minutes at this size, and Study.opened says which happened
    study_ = timed("open the study", open_study)(study, progress=sys.stderr)
    pipeline.run(study_, out, command=["hbeval", "analyze", str(study), "--out", str(out)])
    stop.set()
    record.write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 1), "peak_rss_gib": round(peak[0], 2),
                                  "opened": study_.opened, "steps": steps}, indent=2, ensure_ascii=False) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/scale")
    ap.add_argument("--families", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=50_000_000)
    ap.add_argument("--ri-draws", type=int, default=2000)
    ap.add_argument("--bootstrap-reps", type=int, default=1000)
    ap.add_argument("--skip-generate", action="store_true", help="reuse the study already in --dir/study")
    ap.add_argument("--generate-only", action="store_true", help="write the study and stop")
    ap.add_argument("--clean", action="store_true", help="delete --dir at the end")
    ap.add_argument("--skip-validate", action="store_true", help="reuse the store already in --dir/study")
    ap.add_argument("--profile-analyze", metavar="RECORD", help=argparse.SUPPRESS)  # the child of the per-step run
    a = ap.parse_args(argv)
    if a.profile_analyze:
        return profiled_analyze(Path(a.dir) / "study", Path(a.dir) / "out", Path(a.profile_analyze))
    base = Path(a.dir)
    study = base / "study"
    out = base / "out"
    res: dict[str, object] = {"families": a.families, "events": a.events, "cpus": os.cpu_count()}
    if not a.skip_generate:
        shutil.rmtree(study, ignore_errors=True)
        t0 = time.perf_counter()
        print(f"generating {a.families:,} families and {a.events:,} events in {study} ...", file=sys.stderr, flush=True)
        res["rows"] = generate(study, a.families, a.events, a.ri_draws, a.bootstrap_reps)
        res["generate_seconds"] = round(time.perf_counter() - t0, 1)
    else:
        res["rows"] = {p.stem: None for p in study.glob("*.csv")}
    if a.generate_only:
        print(json.dumps(res, indent=2))
        return 0
    res["input_bytes"] = sum(p.stat().st_size for p in study.glob("*.csv"))
    # peer: the floor of any CSV ingestion, a bare DuckDB scan of the events file
    t0, c0 = time.perf_counter(), time.process_time()
    with duckdb.connect() as con:
        n = con.execute(f"SELECT count(*) FROM read_csv('{study / 'service_events.csv'}', all_varchar=true)").fetchone()[0]
    res["peer_scan_events_seconds"] = round(time.perf_counter() - t0, 1)
    res["peer_scan_events_cpu_seconds"] = round(time.process_time() - c0, 1)
    res["peer_scan_events_rows"] = n
    py = str(ROOT / ".venv" / "bin" / "python")
    if not a.skip_validate:
        shutil.rmtree(study / ".hbeval", ignore_errors=True)
        print("hbeval validate ...", file=sys.stderr, flush=True)
        res["validate"] = measure([py, "-m", "hbeval", "validate", str(study)])
    else:
        res["validate"] = {"seconds": float("nan"), "peak_rss_gib": float("nan"), "exit": 0}
    rows_total = sum(v for v in res["rows"].values() if v) if all(res["rows"].values()) else None
    if rows_total:
        res["rows_total"] = rows_total
        res["ingest_rows_per_second"] = round(rows_total / res["validate"]["seconds"])
    res["validate_over_peer_scan"] = round(res["validate"]["seconds"] / max(res["peer_scan_events_seconds"], 1e-9), 1)
    if "cpu_seconds" in res["validate"]:
        res["validate_cpu_over_peer_scan_cpu"] = round(
            res["validate"]["cpu_seconds"] / max(res["peer_scan_events_cpu_seconds"], 1e-9), 1)
    store = study / ".hbeval" / "store.duckdb"
    res["store_bytes"] = store.stat().st_size if store.exists() else None
    print("hbeval analyze ...", file=sys.stderr, flush=True)
    shutil.rmtree(out, ignore_errors=True)
    # analyze in a child that records every step's time and peak RSS (the whole child's
    # peak comes from os.wait4 as for validate)
    record = base / "analyze_steps.json"
    res["analyze"] = measure([py, str(Path(__file__).resolve()), "--dir", str(base), "--profile-analyze", str(record)])
    if record.exists():
        rec = json.loads(record.read_text())
        res["analyze_steps"], res["analyze_opened"] = rec["steps"], rec.get("opened", "")
        if str(res["analyze_opened"]).startswith("study store rebuilt"):
            print(f"warning: analyze rebuilt the store ({res['analyze_opened']}); its time includes a whole "
                  "validate", file=sys.stderr, flush=True)
    if (out / "results").exists():
        res["results"] = sorted(p.name for p in (out / "results").glob("*.csv"))
    print(json.dumps(res, indent=2, ensure_ascii=False))
    (base / "scale_result.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    if a.clean:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if res["validate"]["exit"] == 0 and res["analyze"]["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
