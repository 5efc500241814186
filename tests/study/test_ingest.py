"""Ingestion and the data-quality ledger (issue 2)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest

from hbeval.cli import main
from hbeval.errors import InputError
from hbeval.study.ingest import ingest
from hbeval.study.pseudonym import check_hetu, pseudonym
from hbeval.study.store import open_study

TODAY = dt.date(2026, 11, 22)

CLIENTS_CSV = """client_id,site,service_line,group,exclusion_reason,enrolled_on,household_size,n_children,youngest_child_age,area,referral_reason
A1,Hämeenlinna,home_help,pilot,,2024-01-10,3,1,4,keskusta,arjen_hallinta
A2,Hämeenlinna,family_work,comparison,,2024-02-11,4,2,7,lammi,vanhemmuuden_tuki
A3,Siun sote,family_counselling,pilot,,2024-03-12,2,1,12,joensuu,arjen_hallinta
"""

# valid synthetic identity codes (temporary-number range 900-999)
HETU = ["010180-9004", "020285-931V", "150599-944P"]
# strong keys (≥ 128 bits: hbeval refuses weaker ones); fixed so that the pseudonyms are reproducible
KEY_ONE = "Vq3xN8rT0bLwZ5yHcE1uKd7gJm2fPa9sQo4iXe6Rh"
KEY_TWO = "c7Ug2LpW9kYt4BzQn1HsDe8RvXa0Jm5FoIw3Ni6Kq"
KEY_FILE = "Zr5Tk0WqYb8Lm3Xn6Cs1Hv9Ep2Ja7Gu4Dk0Fw3Qi"


def _study(tmp_path: Path, files: dict[str, bytes | str], toml: str = '[study]\nname = "t"\n') -> Path:
    d = tmp_path / "s"
    d.mkdir()
    (d / "study.toml").write_text(toml, encoding="utf-8")
    for name, data in files.items():
        p = d / name
        if isinstance(data, str):
            p.write_text(data, encoding="utf-8")
        else:
            p.write_bytes(data)
    return d


def _clients(s) -> pd.DataFrame:
    return open_study(s, today=TODAY).table("clients")


def test_fixture_hetus_are_valid():
    assert all(check_hetu(h) for h in HETU)


# --------------------------------------------------------------- the demo
def test_demo_then_validate_exits_0(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--n-pilot", "60", "--n-comparison", "60", "--seed", "3"]) == 0
    assert main(["validate", str(out), "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "No errors." in text
    dq = pd.read_csv(tmp_path / "o" / "results" / "data_quality.csv")
    assert set(dq["file"]) >= {"clients.csv", "service_events.csv", "worker_time.xlsx", "income_support.csv"}


def test_demo_is_byte_identical_for_a_seed(tmp_path):
    from hbeval.demo import write_demo

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_demo(a, 50, 50, seed=11)
    write_demo(b, 50, 50, seed=11)
    write_demo(c, 50, 50, seed=12)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "measurements.csv").read_bytes() != (c / "measurements.csv").read_bytes()


def test_demo_exercises_office_forms(demo_dir):
    raw = (demo_dir / "service_events.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # CP1252
    head = raw.decode("cp1252").splitlines()[0]
    assert ";" in head and "käyntipäivä" in head
    assert re.search(r";\d+,\d;", raw.decode("cp1252"))  # decimal comma
    assert re.search(r";\d{1,2}\.\d{1,2}\.\d{4};", raw.decode("cp1252"))  # D.M.YYYY
    assert (demo_dir / "worker_time.xlsx").exists()
    assert (demo_dir / "income_support.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert "henkilotunnus" in (demo_dir / "clients.csv").read_text(encoding="utf-8").splitlines()[0]


def test_demo_realism(demo_dir):
    import json

    truth = json.loads((demo_dir / "truth.json").read_text())
    assert 0.15 <= truth["attrition_rate_realised"] <= 0.25
    assert 0.75 <= truth["start_end_correlation_kykyviisari_total"] <= 0.85
    s = open_study(demo_dir)
    fam = s.families()
    assert set(fam["service_line"]) == {"home_help", "family_work", "family_counselling", "disability_services",
                                        "child_welfare_open_care"}
    assert fam["site"].nunique() == 2
    span = fam["enrolled_on"].max() - fam["enrolled_on"].min()
    assert 480 <= span.days <= 548
    assert 350 <= (fam["group"] == "pilot").sum() <= 450 and 550 <= (fam["group"] == "comparison").sum() <= 650
    ev = s.table("service_events")
    assert set(ev["visit_content"].dropna()) >= {"assessment", "examination", "support_visit", "guidance", "decision"}


def test_ledger_accounts_for_every_row(demo_dir):
    res = ingest(demo_dir, write_store=False)
    for f, e in res.ledger.files.items():
        assert e.rows_accepted + e.rows_rejected == e.rows_read, f
        assert e.rows_read > 0
    dq = res.ledger.to_frame()
    assert (dq["rows_accepted"] + dq["rows_rejected"] == dq["rows_read"]).all()


# --------------------------------------------------------------- planted faults
def test_planted_faults_are_reported_one_by_one(study_copy, capsys):
    s = study_copy
    # 1 missing required column: drop `category` from budget_spending
    bs = pd.read_csv(s / "budget_spending.csv", dtype=str, keep_default_na=False)
    bs.drop(columns=["category"]).to_csv(s / "budget_spending.csv", index=False)
    # 2 unknown service_line (row 3 = second data row), 4 duplicate client_id (row 5 repeats row 4's family)
    cl = (s / "clients.csv").read_text(encoding="utf-8").splitlines()
    f = cl[2].split(",")
    f[3] = "hammashoito"
    cl[2] = ",".join(f)
    cl.append(cl[4])
    (s / "clients.csv").write_text("\n".join(cl) + "\n", encoding="utf-8")
    dup_row = len(cl)  # spreadsheet row of the appended duplicate
    # 3 bad date in child_welfare (row 2)
    cw = pd.read_csv(s / "child_welfare.csv", dtype=str, keep_default_na=False)
    cw.loc[0, "date"] = "31.2.2024"
    cw.to_csv(s / "child_welfare.csv", index=False)
    # 5 negative amount in budgets.csv? no: in teaming_meetings minutes (row 3)
    tm = pd.read_csv(s / "teaming_meetings.csv", dtype=str, keep_default_na=False)
    tm.loc[1, "minutes"] = "-30"
    tm.to_csv(s / "teaming_meetings.csv", index=False)
    # 6 out-of-range score (row 4), 7 unknown family (row 6), 8 end before start
    m = pd.read_csv(s / "measurements.csv", dtype=str, keep_default_na=False)
    kyky = m[(m["instrument"] == "kykyviisari")].index
    m.loc[kyky[2], "score"] = "11.5"
    m.loc[4, "client_id"] = "pNOBODY"
    both = set(m.loc[m["timepoint"] == "end", "client_id"]) & set(m.loc[m["timepoint"] == "start", "client_id"])
    fam = sorted(both - {m.loc[4, "client_id"]})[0]
    start_date = m.loc[(m["client_id"] == fam) & (m["timepoint"] == "start"), "measured_on"].iloc[0]
    end_idx = m.index[(m["client_id"] == fam) & (m["timepoint"] == "end")][0]
    m.loc[end_idx, "measured_on"] = (pd.Timestamp(start_date) - pd.Timedelta(days=5)).date().isoformat()
    m.to_csv(s / "measurements.csv", index=False)

    assert main(["validate", str(s)]) == 1
    out = capsys.readouterr().out
    expected = [
        ("budget_spending.csv", 1, "category", "required column missing"),
        ("clients.csv", 3, "service_line", "unknown value"),
        ("clients.csv", dup_row, "client_id", "duplicate key"),
        ("child_welfare.csv", 2, "date", "not a date"),
        ("teaming_meetings.csv", 3, "minutes", "below the minimum"),
        ("measurements.csv", kyky[2] + 2, "score", "outside the kykyviisari range"),
        ("measurements.csv", 6, "client_id", "unknown family"),
        ("measurements.csv", end_idx + 2, "measured_on", "end measurement before the start"),
    ]
    for file, row, col, rule in expected:
        pattern = rf"{rule}.*\(column {col}\)(\n\s+file [^\n]*)*\n\s+file {re.escape(file)}, row {row}, column {col}:"
        assert re.search(pattern, out), (file, row, col, rule, out)
    # the store was not replaced by a faulty study
    res = ingest(s, write_store=False)
    for e in res.ledger.files.values():
        assert e.rows_accepted + e.rows_rejected == e.rows_read
    with pytest.raises(InputError):
        open_study(s)


def test_validate_keeps_previous_store_on_errors(study_copy):
    ok = ingest(study_copy)
    assert ok.store is not None
    before = ok.store.read_bytes()
    (study_copy / "child_welfare.csv").write_text("client_id,date,event\nX,1.1.2024,nothing\n", encoding="utf-8")
    bad = ingest(study_copy)
    assert bad.store is None and bad.ledger.has_errors()
    assert ok.store.read_bytes() == before


# --------------------------------------------------------------- input forms
@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_separators(tmp_path, sep):
    text = CLIENTS_CSV.replace(",", sep)
    cl = _clients(_study(tmp_path, {"clients.csv": text}))
    assert list(cl["client_id"]) == ["A1", "A2", "A3"]
    assert list(cl["household_size"]) == [3, 4, 2]


def test_decimal_comma_and_finnish_forms(tmp_path):
    events = (
        "Asiakasnumero;Käyntipäivä;Palvelukoodi;Määrä;Käynnin sisältö;Kustannus eur\n"
        "A1;3.2.2024;purchased_service;1,5;Tukikäynti;1 234,50\n"
        "A2;2024-02-04;home_help_visit;2;ohjaus;\n"
    )
    s = _study(tmp_path, {"clients.csv": CLIENTS_CSV, "service_events.csv": events.encode("cp1252")})
    ev = open_study(s, today=TODAY).table("service_events")
    assert list(ev["quantity"]) == [1.5, 2.0]
    assert ev["cost_eur"].iloc[0] == pytest.approx(1234.5)
    assert list(ev["visit_content"]) == ["support_visit", "guidance"]
    assert list(ev["event_date"].dt.date) == [dt.date(2024, 2, 3), dt.date(2024, 2, 4)]


@pytest.mark.parametrize("encoding,bom", [("utf-8", False), ("utf-8", True), ("cp1252", False)])
def test_encodings(tmp_path, encoding, bom):
    data = CLIENTS_CSV.encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    cl = _clients(_study(tmp_path, {"clients.csv": data}))
    assert list(cl["site"]) == ["Hämeenlinna", "Hämeenlinna", "Siun sote"]
    assert list(cl.columns[:2]) == ["client_id", "site"]


def test_undecodable_file_is_an_error(tmp_path):
    s = _study(tmp_path, {"clients.csv": CLIENTS_CSV.encode("utf-8") + b"\x81\x8d\n"})
    with pytest.raises(InputError, match="clients.csv.*neither UTF-8 nor Windows-1252"):
        ingest(s)


def test_xlsx_workbook_with_a_sheet_per_table(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "clients"
    rows = [r.split(",") for r in CLIENTS_CSV.strip().splitlines()]
    ws.append(rows[0])
    for r in rows[1:]:
        r = list(r)
        r[5] = dt.datetime.fromisoformat(r[5])  # a real Excel date cell
        r[6] = int(r[6])
        ws.append(r)
    ws2 = wb.create_sheet("child_welfare")
    ws2.append(["asiakasnumero", "päivämäärä", "tapahtuma"])
    ws2.append(["A1", "5.5.2024", "lastensuojeluilmoitus"])
    d = _study(tmp_path, {})
    wb.save(d / "pilot_export.xlsx")
    s = open_study(d, today=TODAY)
    cl = s.table("clients")
    assert list(cl["enrolled_on"].dt.date) == [dt.date(2024, 1, 10), dt.date(2024, 2, 11), dt.date(2024, 3, 12)]
    assert list(cl["household_size"]) == [3, 4, 2]
    cw = s.table("child_welfare")
    assert list(cw["event"]) == ["notification"] and cw["date"].iloc[0] == pd.Timestamp("2024-05-05")


def test_finnish_headers_and_values(tmp_path):
    text = (
        "Asiakasnumero,Toimipiste,Palvelu,Ryhmä,Poissulkemisen syy,Tulopäivä,Kotitalouden koko,Lasten lkm,"
        "Nuorimman lapsen ikä,Asuinalue,Tulosyy\n"
        "A1,Hämeenlinna,Kotipalvelu,Pilotti,,10.1.2024,3,1,4,keskusta,x\n"
        "A2,Hämeenlinna,Perhetyö,Vertailu,,11.2.2024,4,2,7,lammi,y\n"
    )
    cl = _clients(_study(tmp_path, {"clients.csv": text}))
    assert list(cl["service_line"]) == ["home_help", "family_work"]
    assert list(cl["group"]) == ["pilot", "comparison"]
    assert list(cl["enrolled_on"].dt.date) == [dt.date(2024, 1, 10), dt.date(2024, 2, 11)]


def test_direct_identifiers_are_dropped(tmp_path):
    text = CLIENTS_CSV.splitlines()
    text = ["nimi,puhelin," + text[0]] + [f"Aino Korhonen,0401234567,{r}" for r in text[1:]]
    s = _study(tmp_path, {"clients.csv": "\n".join(text) + "\n"})
    res = ingest(s, today=TODAY)
    assert not res.ledger.has_errors()
    notes = [n[1] for n in res.ledger.notes]
    assert any("nimi" in n for n in notes) and any("puhelin" in n for n in notes)
    cl = open_study(s, today=TODAY).table("clients")
    assert "nimi" not in cl.columns and "puhelin" not in cl.columns
    assert b"Korhonen" not in res.store.read_bytes() and b"0401234567" not in res.store.read_bytes()


def test_unknown_columns_are_kept(tmp_path):
    text = CLIENTS_CSV.splitlines()
    text = [text[0] + ",Koulutus"] + [r + ",x" for r in text[1:]]
    cl = _clients(_study(tmp_path, {"clients.csv": "\n".join(text) + "\n"}))
    assert list(cl["koulutus"]) == ["x", "x", "x"]


# --------------------------------------------------------------- hetu
def _hetu_study(tmp_path, key_line: str, name: str = "s") -> Path:
    text = CLIENTS_CSV.splitlines()
    rows = [",".join(["henkilötunnus"] + text[0].split(",")[1:])]
    for h, r in zip(HETU, text[1:]):
        rows.append(",".join([h] + r.split(",")[1:]))
    d = tmp_path / name
    d.mkdir()
    (d / "study.toml").write_text(f'[study]\nname = "t"\n[privacy]\n{key_line}\n', encoding="utf-8")
    (d / "clients.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return d


def test_hetu_is_pseudonymised_with_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HB_TEST_KEY", KEY_ONE)
    s = _hetu_study(tmp_path, 'key_env = "HB_TEST_KEY"')
    cl = _clients(s)
    assert "hetu" not in cl.columns
    assert list(cl["client_id"]) == [pseudonym(check_hetu(h), KEY_ONE.encode()) for h in HETU]
    store = (s / ".hbeval" / "store.duckdb").read_bytes()
    for h in HETU:
        assert h.encode() not in store and h[:6].encode() + h[7:].encode() not in store
    assert KEY_ONE.encode() not in store
    # stable across runs with the same key
    first = list(cl["client_id"])
    again = list(open_study(s, refresh=True, today=TODAY).table("clients")["client_id"])
    assert again == first
    # another key gives other pseudonyms
    monkeypatch.setenv("HB_TEST_KEY", KEY_TWO)
    other = list(open_study(s, today=TODAY).table("clients")["client_id"])
    assert set(other).isdisjoint(first)


def test_hetu_key_file(tmp_path):
    s = _hetu_study(tmp_path, 'key_file = "k.txt"')
    (s / "k.txt").write_text(KEY_FILE + "\n")
    assert list(_clients(s)["client_id"]) == [pseudonym(check_hetu(h), KEY_FILE.encode()) for h in HETU]


def test_hetu_without_key_stops(tmp_path, monkeypatch):
    monkeypatch.delenv("HBEVAL_PSEUDONYM_KEY", raising=False)
    s = _hetu_study(tmp_path, "min_cell = 5")
    with pytest.raises(InputError, match="no default key"):
        ingest(s)


@pytest.mark.parametrize("weak", ["k", "secret-one", "a" * 40, "ab" * 20, "0123456789" * 3, "Sala1nen-avain-2024!"])
@pytest.mark.parametrize("source", ["env", "file"])
def test_a_weak_pseudonym_key_is_refused_with_how_to_make_one(tmp_path, monkeypatch, weak, source):
    """A key with fewer than 128 bits lets anyone holding a client_id find its identity code by trying keys."""
    if source == "env":
        monkeypatch.setenv("HB_TEST_KEY", weak)
        s = _hetu_study(tmp_path, 'key_env = "HB_TEST_KEY"')
    else:
        s = _hetu_study(tmp_path, 'key_file = "k.txt"')
        (s / "k.txt").write_text(weak + "\n")
    with pytest.raises(InputError, match="pseudonym key .* too weak") as e:
        ingest(s, today=TODAY)
    assert "secrets.token_urlsafe(32)" in e.value.message
    assert len(weak) < 3 or weak not in e.value.message  # the key itself is never printed
    assert not (s / ".hbeval" / "store.duckdb").exists()
    assert main(["validate", str(s)]) == 1


def test_hetu_with_wrong_check_character_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("HB_TEST_KEY", KEY_ONE)
    s = _hetu_study(tmp_path, 'key_env = "HB_TEST_KEY"')
    p = s / "clients.csv"
    p.write_text(p.read_text(encoding="utf-8").replace(HETU[1], HETU[1][:-1] + "A"), encoding="utf-8")
    res = ingest(s, today=TODAY)
    rows = res.ledger.error_rows()
    assert [(r[0], r[1], r[2]) for r in rows] == [("clients.csv", 3, "hetu")]
    assert "henkilötunnus" in rows[0][4]
    assert HETU[1][:-1] not in res.ledger.summary()  # masked in messages


def test_ingest_connection_is_bounded_and_store_holds_only_canonical_tables(tmp_path, monkeypatch):
    """National scale (issue 17): the ingest connection has a memory limit and spills into the
    ingest folder (which is removed); the raw text and typed working tables are temporary,
    never written into the store, which holds the canonical tables."""
    import duckdb

    import hbeval.study.ingest as ing

    seen: list[dict] = []
    real = duckdb.connect

    def spy(*a, **k):
        seen.append(dict(k.get("config") or {}))
        return real(*a, **k)

    monkeypatch.setattr(ing.duckdb, "connect", spy)
    s = _study(tmp_path, {"clients.csv": CLIENTS_CSV})
    res = ingest(s, today=TODAY)
    monkeypatch.undo()
    assert seen and seen[0]["memory_limit"] == ing.DUCKDB_MEMORY_LIMIT
    assert seen[0]["temp_directory"].startswith(str(s / ".hbeval"))
    assert not list((s / ".hbeval").glob("ingest-*"))
    with duckdb.connect(str(res.store), read_only=True) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert "clients" in names
        assert not [n for n in names if n.startswith(("raw_", "typed_"))]
        assert con.execute("SELECT count(*) FROM clients").fetchone()[0] == 3
