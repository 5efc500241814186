"""Privacy of welfare records (issue 7): plant identity codes and names in the inputs, run
every command, and scan every file any command wrote.

The demo's ``clients.csv`` holds ``henkilotunnus`` and ``nimi`` and ``income_support.csv``
``henkilötunnus``; we also plant a name and an identity code in free-text columns that
ingestion keeps. None of them, and not the pseudonym key, may appear in the study store,
the outputs of validate/analyze/report, the registry export or the console logs; no
results table has a row per person, a ``client_id`` column or a pseudonym value; small
counts are suppressed in every results table.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from hbeval.cli import main

HETU_RE = re.compile(r"\b\d{6}[-+A-FU-Y]\d{3}[0-9A-Y]\b")
PLANTED_NAME = "Maija-Liisa Virtanen-Testaaja"
PLANTED_HETU = "131052-308T"  # a syntactically valid code (check character T)
#: Issue 16: headers of direct identifiers that must be dropped (planted with values).
ID_HEADERS = ["Etunimet", "Asiakkaan sukunimi", "Matkapuhelinnumero", "Sähköpostiosoite", "Puh.", "Surname", "Osoitetiedot"]
ID_VALUES = ["Testaaja-etunimi", "Testaaja-sukunimi", "0401239876", "t@testaaja.fi", "03 123 9876", "Testaaja-surname",
             "Testaajankatu 5"]
#: Every form of an identity code the issue lists (and more), planted in the second run.
HETU_FORMS = ["131052-308T", "131052\u2013308T", "131052-308t", "131052 - 308T", "131052308T",
              "\uff11\uff13\uff11\uff10\uff15\uff12-\uff13\uff10\uff18T", "131052\u2011308T", "131052.308T",
              "131052\u2212308T", "131052\u00ad308T", "131052\u2014308T"]


def _write_rows(p: Path, rows: list[list[str]]) -> None:
    with open(p, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def _plant(s: Path, value: Callable[[str], str]) -> dict[str, str]:
    """``value(column)`` in every free-text column of every table of the demo (a comparison
    family's ``site``, so the registry stays as it was; two excluded families' reasons; a kept
    unknown column ``lisatieto``), plus the issue's identifier columns. Returns where -> value."""
    planted: dict[str, str] = {}
    cl = _rows(s / "clients.csv")
    h = cl[0]
    g = h.index("group")
    comp = next(i for i, r in enumerate(cl) if i and r[g] == "comparison")
    excl = [i for i, r in enumerate(cl) if i and r[g] == "excluded"][:2]
    for col, rows in (("site", [comp]), ("area", [3]), ("referral_reason", [4]), ("exclusion_reason", excl)):
        for i in rows:
            cl[i][h.index(col)] = value(col)
        planted[f"clients.{col}"] = value(col)
    cl[0] += ["lisatieto", *ID_HEADERS]
    for i, r in enumerate(cl[1:], 1):
        r += [value("lisatieto") if i == 5 else "", *ID_VALUES]
    planted["clients.lisatieto"] = value("lisatieto")
    _write_rows(s / "clients.csv", cl)
    for table, cols in (("budgets", ["category"]), ("budget_spending", ["category", "provider_id"])):
        t = _rows(s / f"{table}.csv")
        for col in cols:
            t[2][t[0].index(col)] = value(f"{table}.{col}")
            planted[f"{table}.{col}"] = value(f"{table}.{col}")
        _write_rows(s / f"{table}.csv", t)
    import openpyxl

    wb = openpyxl.load_workbook(s / "worker_time.xlsx")
    ws = wb.active
    ws.cell(row=3, column=[c.value for c in ws[1]].index("activity") + 1, value=value("worker_time.activity"))
    wb.save(s / "worker_time.xlsx")
    planted["worker_time.activity"] = value("worker_time.activity")
    return planted


def _planted_name(col: str) -> str:
    base = f"Aune Testaaja-{col.replace('.', '-')}"
    return f"{base} muutti pois" if col == "exclusion_reason" else base


def _rows(p: Path) -> list[list[str]]:
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    delim = ";" if text.splitlines()[0].count(";") > text.splitlines()[0].count(",") else ","
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Demo study with planted identifiers; every command run once; their console output."""
    from hbeval.demo import DEMO_KEY, write_demo

    root = tmp_path_factory.mktemp("privacy")
    s = root / "study"
    write_demo(s, n_pilot=60, n_comparison=60, seed=9)
    # plant: a name and an identity code in free-text columns that ingestion keeps
    cl = _rows(s / "clients.csv")
    h = cl[0]
    cl[2][h.index("area")] = PLANTED_NAME  # (an identity code in free text is rejected: tests/test_bad_input.py)
    with open(s / "clients.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(cl)
    hetus = {r[0] for r in cl[1:]} | {r[0] for r in _rows(s / "income_support.csv")[1:]}
    names = {r[1] for r in cl[1:]} | {PLANTED_NAME}
    planted = _plant(s, _planted_name)  # issue 16: a name in every free-text column
    names |= {v.removesuffix(" muutti pois") for v in planted.values()}
    free_text = set(names) - {r[1] for r in cl[1:]}  # may stay in the store's free-text columns, nowhere else
    before = {p for p in root.rglob("*")}
    logs = []
    outs = {}
    mp = pytest.MonkeyPatch()
    mp.setenv("HBEVAL_ALLOCATION_KEY", "privacy-test-allocation-key")
    try:
        for cmd in (["validate", str(s), "--out", str(root / "out_validate")],
                    ["analyze", str(s), "--out", str(root / "out_analyze")],
                    ["report", str(s), "--out", str(root / "out_report")],
                    ["assign", str(s), "--verify"]):
            from contextlib import redirect_stderr, redirect_stdout

            o, e = io.StringIO(), io.StringIO()
            with redirect_stdout(o), redirect_stderr(e):
                code = main(cmd)
            outs[cmd[0]] = code
            logs.append(o.getvalue() + e.getvalue())
    finally:
        mp.undo()
    written = sorted(p for p in root.rglob("*") if p.is_file() and (p not in before or ".hbeval" in p.parts)
                     and p.parent != s)  # the study's own input files are not outputs
    written += [p for p in s.glob("*.csv") if p.name == "assignments.csv"]  # registry export
    return {"study": s, "root": root, "hetus": hetus, "names": names, "key": DEMO_KEY, "codes": outs,
            "logs": "\n".join(logs), "written": written, "free_text": free_text, "planted": planted}


def test_every_command_succeeded(run):
    assert run["codes"] == {"validate": 0, "analyze": 0, "report": 0, "assign": 0}, run["logs"][-3000:]


def test_files_were_written_by_every_command(run):
    rel = {str(p.relative_to(run["root"])) for p in run["written"]}
    assert any(r.startswith("study/.hbeval/") for r in rel)
    assert any(r.startswith("out_validate/results/") for r in rel)
    assert any(r.startswith("out_analyze/results/") for r in rel)
    assert any(r.startswith("out_report/") and r.endswith(".html") for r in rel)


def _texts(p: Path) -> list[str]:
    """Text views of a written file: its bytes decoded, and for a DuckDB store every
    string value of every table (stored strings may be compressed on disk)."""
    raw = p.read_bytes()
    out = [raw.decode("utf-8", errors="ignore"), raw.decode("latin-1")]
    if p.suffix == ".duckdb":
        with duckdb.connect(str(p), read_only=True) as con:
            for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
                df = con.execute(f'SELECT * FROM "{t}"').df()
                out.append(df.astype(str).to_csv(index=False))
                out.append(" ".join(df.columns))
    return out


def test_no_identity_code_name_or_key_in_any_written_file(run):
    key = run["key"]
    found = []
    for p in run["written"]:
        for text in _texts(p):
            for h in run["hetus"]:
                if h in text:
                    found.append((p.name, "hetu", h[:2] + "****"))
            for n in run["names"]:
                # a name typed into a kept free-text column stays in the store (ingestion
                # cannot recognise names in free text); it must not reach any output
                if n in text and not (n in run["free_text"] and p.suffix == ".duckdb"):
                    found.append((p.name, "name", n))
            if key in text:
                found.append((p.name, "pseudonym key", ""))
            if HETU_RE.search(text):
                found.append((p.name, "hetu-shaped value", HETU_RE.search(text).group(0)[:2] + "****"))
            for v in ID_VALUES:
                if v in text:
                    found.append((p.name, "identifier column value", v))
    assert not found, sorted(set(found))[:20]


def test_identity_codes_in_any_form_are_found_by_the_one_detector_in_no_output(run):
    """The same detector as ingestion's (every form: dashes, case, spaces, no separator,
    full-width digits), over every text output (the store aside: it holds hetu-free pseudonyms)."""
    from hbeval.privacy import find_identity_codes

    found = []
    for p in run["written"]:
        if p.suffix in (".png", ".pdf", ".duckdb"):
            continue  # binary; the PDF's text is the HTML's (tests/report), the store is scanned below
        text = p.read_bytes().decode("utf-8", errors="ignore")
        text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", text)
        found += [(p.name, h.compact[:2] + "****") for h in find_identity_codes(text)]
    assert not found, found[:20]
    assert not find_identity_codes(run["logs"])


def test_planted_names_stay_only_in_the_stores_free_text_columns(run):
    """Every column of the store that is not free text (codes, enums, numbers, dates, the
    ledger and the metadata) is free of every planted name and of every identity code."""
    from hbeval.privacy import has_identity_code
    from hbeval.study.schema import tables

    free = {(t, f.name) for t, sc in tables().items() for f in sc.fields
            if f.type == "string" and not f.enum and f.name not in ("client_id", "service_code")}
    store = run["study"] / ".hbeval" / "store.duckdb"
    bad = []
    with duckdb.connect(str(store), read_only=True) as con:
        for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            df = con.execute(f'SELECT * FROM "{t}"').df()
            schema_cols = set(tables()[t].columns) if t in tables() else set()
            for c in df.columns:
                if (t, c) in free or (t in tables() and c not in schema_cols and c != "_source_row"):
                    continue  # a free-text column, or an unknown column kept as free text
                vals = df[c].dropna().astype(str)
                bad += [(t, c, n) for n in run["names"] if vals.str.contains(n, regex=False).any()]
                bad += [(t, c, "identity code") for v in vals.unique() if has_identity_code(v)]
    assert not bad, bad[:20]
    assert len(run["planted"]) == 9  # clients 5, budgets 1, budget_spending 2, worker_time 1


def test_exclusion_reasons_are_codes_in_the_results(run):
    from hbeval.study.schema import exclusion_reasons

    consort = pd.read_csv(run["root"] / "out_analyze" / "results" / "consort.csv", dtype=str, keep_default_na=False)
    reasons = set(consort.loc[consort["stage"] == "excluded", "reason"])
    assert reasons <= set(exclusion_reasons()["reasons"]) | {"all reasons", "(other)", "(no reason given)"}, reasons


@pytest.fixture(scope="module")
def codes_run(tmp_path_factory):
    """Demo study with an identity code, in every form, in every free-text column: validate
    must refuse it, and nothing it writes or prints may hold a code."""
    from contextlib import redirect_stderr, redirect_stdout

    from hbeval.demo import write_demo

    root = tmp_path_factory.mktemp("privacy_codes")
    s = root / "study"
    write_demo(s, n_pilot=40, n_comparison=40, seed=5)
    forms = iter(HETU_FORMS * 4)
    planted = _plant(s, lambda col: f"ks. {next(forms)} ({col})")
    o, e = io.StringIO(), io.StringIO()
    with redirect_stdout(o), redirect_stderr(e):
        code = main(["validate", str(s), "--out", str(root / "out")])
    written = [p for p in (root / "out").rglob("*") if p.is_file()]
    return {"code": code, "logs": o.getvalue() + e.getvalue(), "written": written, "study": s, "planted": planted}


def test_codes_in_every_form_and_column_are_refused_without_echo(codes_run):
    from hbeval.privacy import find_identity_codes

    assert codes_run["code"] == 1
    assert "identity code" in codes_run["logs"]
    assert not (codes_run["study"] / ".hbeval" / "store.duckdb").exists()
    assert not find_identity_codes(codes_run["logs"]), codes_run["logs"][-2000:]
    for p in codes_run["written"]:
        assert not find_identity_codes(p.read_bytes().decode("utf-8", errors="ignore")), p.name
    dq = pd.read_csv(next(p for p in codes_run["written"] if p.name == "data_quality.csv"), dtype=str)
    flagged = set(dq.loc[dq["rule"].str.contains("identity code", na=False), "column"])
    expected = {k.split(".")[-1] for k in codes_run["planted"]}
    assert flagged == expected, expected - flagged


def test_console_logs_hold_no_identifiers(run):
    text = run["logs"]
    assert not HETU_RE.search(text)
    assert not [n for n in run["names"] if n in text]
    assert run["key"] not in text


def test_no_results_table_has_a_row_per_person(run):
    s = run["study"]
    from hbeval.study.store import open_study

    st = open_study(s)
    fam = st.families()
    n_fam = len(fam)
    ids = set(fam["client_id"].astype(str))
    tables = [p for p in run["written"] if p.suffix == ".csv" and "results" in p.parts]
    assert len(tables) >= 10
    for p in tables:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        assert not {"client_id", "hetu", "henkilotunnus", "nimi", "name"} & {c.lower() for c in df.columns}, p.name
        text_cols = [c for c in df.columns if pd.to_numeric(df[c].replace("", None), errors="coerce").isna().all()]
        per_person = len(df) >= n_fam and any(df[c].nunique() >= n_fam for c in text_cols)
        assert not per_person, f"{p.name} has {len(df)} rows for {n_fam} families, one column unique per row"
        cells = set(df.to_numpy().ravel().tolist())
        assert not cells & ids, f"{p.name} holds pseudonyms"


def test_no_pseudonym_in_report_or_notebooks(run):
    from hbeval.study.store import open_study

    ids = set(open_study(run["study"]).families()["client_id"].astype(str))
    pat = re.compile("|".join(re.escape(i) for i in sorted(ids)))
    for p in run["written"]:
        if ".hbeval" in p.parts or p.name == "assignments.csv":
            continue  # the store and the study's assignments table hold pseudonyms by design
        text = p.read_bytes().decode("utf-8", errors="ignore")
        m = pat.search(text)
        assert m is None, f"{p.relative_to(run['root'])} holds a pseudonym"


COUNT_COLUMNS = re.compile(r"^(n|n_[a-z_]+|count|n_families|rows_.*)$")


def test_small_counts_are_suppressed_in_every_results_table(run):
    """Every count of families in a results table is 0, at least min_cell, or shown as '<k'."""
    from hbeval.study.config import load_config

    k = load_config(run["study"]).min_cell
    bad = []
    for p in run["written"]:
        if p.suffix != ".csv" or "results" not in p.parts or p.name == "data_quality.csv":
            continue  # data_quality counts records of the input files, not families
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        for c in df.columns:
            if not COUNT_COLUMNS.match(c) or c in ("n_draws", "n_reps", "n_boot"):
                continue
            for v in df[c]:
                if v in ("", f"<{k}"):
                    continue
                try:
                    x = float(v)
                except ValueError:
                    continue
                if 0 < x < k:
                    bad.append((p.name, c, v))
    assert not bad, bad[:20]


def test_small_counts_suppressed_in_report_text_and_figure_labels(run):
    """Labels like 'n = 3' in the rendered report (figure labels are drawn from the same
    suppressed tables; the report's text and the notebooks' outputs are what we can read)."""
    from hbeval.study.config import load_config

    k = load_config(run["study"]).min_cell
    pat = re.compile(r"\bn\s*=\s*([0-9]+)\b")
    bad = []
    for p in run["written"]:
        if p.suffix not in (".html", ".ipynb", ".md"):
            continue
        text = p.read_bytes().decode("utf-8", errors="ignore")
        text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", text)
        bad += [(p.name, m.group(0)) for m in pat.finditer(text) if 0 < int(m.group(1)) < k]
    assert not bad, bad[:20]


def test_the_key_file_is_only_in_the_study_folder(run):
    """The pseudonym key is an input; no command copies it anywhere."""
    copies = [p for p in run["root"].rglob("*") if p.is_file() and p.name == "pseudonym.key" and p.parent != run["study"]]
    assert not copies
