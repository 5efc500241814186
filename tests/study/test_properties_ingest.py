"""Property tests of ingestion (hypothesis): every input form of the same table gives the
same canonical table; arbitrary corruption never crashes (exit 0 or 1, never a
traceback); the ledger's identity accepted + rejected = read always holds."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbeval.cli import main
from hbeval.study.ingest import ingest
from hbeval.study.store import open_study

TODAY = dt.date(2026, 11, 22)
TOML = '[study]\nname = "p"\n'
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])

text = st.text(alphabet="abcdefghijklmnopqrstuvwxyzåäöÅÄÖ é-", min_size=1, max_size=12).map(str.strip).filter(bool)


@st.composite
def clients(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 8))
    ids = [f"c{i:03d}" for i in draw(st.lists(st.integers(0, 999), min_size=n, max_size=n, unique=True))]
    return pd.DataFrame({
        "client_id": ids,
        "site": [draw(text) for _ in ids],
        "service_line": [draw(st.sampled_from(["home_help", "family_work", "family_counselling"])) for _ in ids],
        "group": [draw(st.sampled_from(["pilot", "comparison"])) for _ in ids],
        "enrolled_on": [draw(st.dates(dt.date(2020, 1, 1), dt.date(2025, 12, 31))) for _ in ids],
        "household_size": [draw(st.integers(1, 9)) for _ in ids],
    })


@st.composite
def events(draw, ids: list[str]) -> pd.DataFrame:
    n = draw(st.integers(0, 10))
    return pd.DataFrame({
        "client_id": [draw(st.sampled_from(ids)) for _ in range(n)],
        "event_date": [draw(st.dates(dt.date(2020, 1, 1), dt.date(2025, 12, 31))) for _ in range(n)],
        "service_code": ["home_help_visit"] * n,
        "quantity": [draw(st.floats(0, 500, allow_nan=False).map(lambda x: round(x, 2))) for _ in range(n)],
    })


def _write(df: pd.DataFrame, path: Path, form: str) -> None:
    d = df.copy()
    for c in d.columns:
        if d[c].map(lambda v: isinstance(v, dt.date)).all() and len(d):
            d[c] = [f"{v.day}.{v.month}.{v.year}" if form in ("excel_fi", "cp1252") else v.isoformat() for v in d[c]]
    if form == "xlsx":
        d.to_excel(path.with_suffix(".xlsx"), sheet_name=path.stem, index=False)
        return
    buf = io.StringIO()
    if form == "utf8":
        d.to_csv(buf, index=False, lineterminator="\n")
        path.write_bytes(buf.getvalue().encode("utf-8"))
    elif form == "bom_crlf":
        d.to_csv(buf, index=False, lineterminator="\r\n")
        path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    else:  # Finnish Excel: ';' and decimal comma; UTF-8 or CP1252
        d.to_csv(buf, index=False, sep=";", decimal=",", lineterminator="\r\n")
        path.write_bytes(buf.getvalue().encode("cp1252" if form == "cp1252" else "utf-8"))


FORMS = ["utf8", "bom_crlf", "excel_fi", "cp1252", "xlsx"]


def _canonical(s: Path) -> dict[str, pd.DataFrame]:
    st_ = open_study(s, today=TODAY, refresh=True)
    return {t: st_.table(t).sort_values(list(st_.table(t).columns)).reset_index(drop=True)
            for t in ("clients", "service_events")}


@SETTINGS
@given(data=st.data())
def test_every_input_form_gives_the_same_canonical_tables(tmp_path_factory, data):
    cl = data.draw(clients())
    ev = data.draw(events(list(cl["client_id"])))
    results = {}
    for form in FORMS:
        s = tmp_path_factory.mktemp(form)
        (s / "study.toml").write_text(TOML, encoding="utf-8")
        _write(cl, s / "clients.csv", form)
        _write(ev, s / "service_events.csv", form)
        results[form] = _canonical(s)
    ref = results["utf8"]
    assert len(ref["clients"]) == len(cl) and len(ref["service_events"]) == len(ev)
    for form, got in results.items():
        for t in ref:
            pd.testing.assert_frame_equal(got[t], ref[t], check_dtype=False, obj=f"{t} as {form}")


@pytest.fixture(scope="module")
def valid_study(tmp_path_factory) -> Path:
    s = tmp_path_factory.mktemp("valid") / "s"
    s.mkdir()
    (s / "study.toml").write_text(TOML, encoding="utf-8")
    cl = pd.DataFrame({"client_id": ["a1", "a2", "a3"], "site": ["Hämeenlinna", "Lahti", "Espoo"],
                       "service_line": ["home_help", "family_work", "home_help"], "group": ["pilot", "pilot", "comparison"],
                       "enrolled_on": ["2024-01-10", "2024-02-11", "2024-03-12"], "household_size": [3, 4, 2]})
    _write(cl, s / "clients.csv", "utf8")
    ev = pd.DataFrame({"client_id": ["a1", "a2", "a3", "a1"], "event_date": ["1.2.2024", "3.4.2024", "5.6.2024", "7.8.2024"],
                       "service_code": ["home_help_visit"] * 4, "quantity": ["1,5", "2", "0,25", "3"]})
    buf = io.StringIO()
    ev.to_csv(buf, index=False, sep=";", lineterminator="\r\n")
    (s / "service_events.csv").write_bytes(buf.getvalue().encode("cp1252"))
    assert main(["validate", str(s)]) == 0
    return s


@SETTINGS
@given(name=st.sampled_from(["clients.csv", "service_events.csv"]),
       edits=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["flip", "delete", "insert", "truncate"]),
                                st.binary(min_size=1, max_size=3)), min_size=1, max_size=4))
def test_corruption_never_crashes_and_the_ledger_adds_up(valid_study, tmp_path_factory, name, edits):
    s = tmp_path_factory.mktemp("corrupt") / "s"
    shutil.copytree(valid_study, s)
    p = s / name
    b = bytearray(p.read_bytes())
    for frac, op, junk in edits:
        i = int(frac * max(len(b) - 1, 0))
        if op == "flip" and b:
            b[i] = junk[0]
        elif op == "delete":
            del b[i:i + len(junk)]
        elif op == "insert":
            b[i:i] = junk
        else:
            del b[i:]
    p.write_bytes(bytes(b))
    o, e = io.StringIO(), io.StringIO()
    with redirect_stdout(o), redirect_stderr(e):
        code = main(["validate", str(s)])  # an unexpected exception would propagate and fail the test
    assert code in (0, 1)
    if code == 1:
        assert "file " in (o.getvalue() + e.getvalue())
    try:
        res = ingest(s, today=TODAY, write_store=False)
    except Exception as ex:  # whole-file faults are InputErrors, never anything else
        from hbeval.errors import InputError

        assert isinstance(ex, InputError), repr(ex)
        assert code == 1
        return
    for f in res.ledger.files.values():
        assert f.rows_accepted + f.rows_rejected == f.rows_read
        assert 0 <= f.rows_rejected <= f.rows_read
    assert (code == 1) == res.ledger.has_errors()
