"""The privacy rules, table by table (issue 16): the identity-code detector, the
identifier-column matcher, the exclusion-reason codes and CSV formula neutralisation; and
how ingestion applies them (free text, ``client_id``, dropped columns, malformed rows)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from stdnum.fi import hetu as stdnum_hetu

from hbeval.privacy import (
    NO_REASON,
    OTHER_REASON,
    exclusion_reason_code,
    find_identity_codes,
    has_identity_code,
    header_words,
    mask_identity_codes,
    neutralise_formula,
    neutralise_formulas,
)
from hbeval.study.ingest import ingest, map_header
from hbeval.study.pseudonym import check_hetu
from hbeval.study.schema import (
    _aliases,
    column_alias_map,
    exclusion_reason_keywords,
    exclusion_reasons,
    is_direct_identifier,
    tables,
)

TODAY = dt.date(2026, 11, 22)
CODE = "131052-308T"  # valid (check character T)

# ------------------------------------------------------------------ the detector
#: (form, text): every form the issue lists, and more; each must be found as CODE's person.
CODE_FORMS = [
    ("hyphen", "131052-308T"),
    ("en dash", "131052\u2013308T"),
    ("em dash", "131052\u2014308T"),
    ("hyphen U+2010", "131052\u2010308T"),
    ("non-breaking hyphen", "131052\u2011308T"),
    ("figure dash", "131052\u2012308T"),
    ("horizontal bar", "131052\u2015308T"),
    ("minus sign", "131052\u2212308T"),
    ("soft hyphen", "131052\u00ad308T"),
    ("small hyphen-minus", "131052\ufe63308T"),
    ("full-width hyphen", "131052\uff0d308T"),
    ("lower-case check", "131052-308t"),
    ("spaces around separator", "131052 - 308T"),
    ("space before separator", "131052 -308T"),
    ("space after separator", "131052- 308T"),
    ("no-break spaces around separator", "131052\u00a0-\u00a0308T"),
    ("space as separator", "131052 308T"),
    ("no separator", "131052308T"),
    ("no separator, lower case", "131052308t"),
    ("full-width digits", "\uff11\uff13\uff11\uff10\uff15\uff12-\uff13\uff10\uff18T"),
    ("full-width everything", "\uff11\uff13\uff11\uff10\uff15\uff12\uff0d\uff13\uff10\uff18\uff34"),
    ("dot", "131052.308T"),
    ("in a sentence", "asiakas ks. 131052-308T, soita"),
    ("in parentheses", "(131052-308T)"),
    ("after a colon", "hetu:131052-308T"),
    ("after an underscore", "id_131052-308T"),
    ("at the end of a sentence", "Hänen tunnuksensa on 131052-308T."),
    ("two in one text", "131052-308T ja 010180-9004"),
]


@pytest.mark.parametrize("form,text", CODE_FORMS, ids=[f for f, _ in CODE_FORMS])
def test_every_form_of_an_identity_code_is_found(form, text):
    hits = find_identity_codes(text)
    assert hits, form
    assert hits[0].compact.replace("-", "") in ("131052308T",), hits
    assert hits[0].check_ok
    masked = mask_identity_codes(text)
    assert not has_identity_code(masked) and "308" not in masked


CENTURY_CODES = ["010180-9004", "020285-931V", "150599-944P", "010101A123N", "311299+123A", "010105B9042",
                 "010180U9004", "010180V9004", "010180W9004", "010180X9004", "010180Y9004", "010101a123n"]


@pytest.mark.parametrize("code", CENTURY_CODES)
def test_every_century_sign_is_found_and_the_check_character_agrees_with_stdnum(code):
    hits = find_identity_codes(f"x {code} y")
    assert len(hits) == 1
    assert hits[0].check_ok == stdnum_hetu.is_valid(code.upper(), allow_temporary=True)


@pytest.mark.parametrize("code", ["131052-308X", "131052-3080", "131052308A", "010180-9005"])
def test_a_wrong_check_character_is_still_an_identity_code(code):
    hits = find_identity_codes(code)
    assert len(hits) == 1 and not hits[0].check_ok


NOT_CODES = [
    ("a decimal number", "0.1310523081"),
    ("a negative decimal", "-0.1310523081"),
    ("a number with a decimal tail", "1310523081.5"),
    ("a decimal comma", "0,1310523081"),
    ("a PDF cross-reference entry", "0000012345 00000 n"),
    ("eleven digits", "13105230812"),
    ("inside a pseudonym", "p131052308Tabc"),
    ("letters before", "abc131052-308T"),
    ("a letter after", "131052-308TX"),
    ("an ISO date", "2024-01-10"),
    ("month 13", "131352-308T"),
    ("day 00", "001052-308T"),
    ("day 32", "321052-308T"),
    ("too short", "131052-30T"),
    ("a hex digest", "8387cf46dfb6a1c2d3e4f5a6b7c8d9e0"),
    ("a euro amount", "1 310 523,08 EUR"),
    ("a phone number with spaces", "040 123 4567"),
    ("empty", ""),
    ("None", None),
    ("NaN", float("nan")),
]


@pytest.mark.parametrize("what,text", NOT_CODES, ids=[w for w, _ in NOT_CODES])
def test_numbers_and_codes_that_are_not_identity_codes(what, text):
    assert not has_identity_code(text), what


def test_masking_keeps_the_rest_of_the_text():
    assert mask_identity_codes("Ks. 131052\u2013308t, soita") == "Ks. 13****-****, soita"
    assert mask_identity_codes("ei tunnusta") == "ei tunnusta"
    assert mask_identity_codes(None) == ""


@pytest.mark.parametrize("form,text", [f for f in CODE_FORMS if f[0] in (
    "hyphen", "en dash", "non-breaking hyphen", "minus sign", "lower-case check", "full-width everything")])
def test_a_hetu_column_in_any_dash_or_case_gives_the_same_person(form, text):
    assert check_hetu(text) == CODE


# ------------------------------------------------------------------ identifier columns
IDENTIFIER_HEADERS = [
    # the list
    "Etunimet", "Asiakkaan sukunimi", "Matkapuhelinnumero", "Sähköpostiosoite", "Puh.", "Surname", "Osoitetiedot",
    # and more
    "nimi", "Nimi", "NIMI", "etunimi", "sukunimi", "Huoltajan nimi", "lapsen_nimi", "Asiakkaan nimi", "nimet",
    "name", "Name", "first_name", "firstName", "Last Name", "full-name", "FullName", "guardian_name",
    "osoite", "lähiosoite", "postiosoite", "katuosoite", "Osoitteet", "address", "Street", "street_address",
    "puhelin", "puhelinnumero", "Puhelin (koti)", "puh", "Puh nro", "puhnro", "matkapuhelin", "GSM", "Tel.", "phone",
    "Phone number", "mobile", "Mobiilinumero", "telefon",
    "email", "E-mail", "e_mail", "Sähköposti", "sposti", "S-posti", "mail",
]


@pytest.mark.parametrize("header", IDENTIFIER_HEADERS)
def test_identifier_columns_are_recognised(header):
    assert is_direct_identifier(header), header


KEPT_HEADERS = ["koulutus", "Puheterapia", "puheterapeutti", "tuotenimike", "Palvelun nimitys", "nimikkeet",
                "Tiedosto", "filename", "lisatieto", "kommentti", "perhetyyppi", "numero", "postinumero_alue", "tila",
                "palveluseteli"]


@pytest.mark.parametrize("header", KEPT_HEADERS)
def test_ordinary_columns_are_not_identifiers(header):
    assert not is_direct_identifier(header), header


def _schema_headers() -> list[tuple[str, str]]:
    out = []
    for name, schema in tables().items():
        out += [(name, c) for c in schema.columns]
        out += [(name, a) for a in column_alias_map(name)]
    return sorted(set(out))


@pytest.mark.parametrize("table,header", _schema_headers())
def test_every_schema_column_and_alias_survives(table, header):
    hm = map_header([header], tables()[table], f"{table}.csv")
    assert not hm.dropped, (table, header)
    assert hm.canonical or hm.hetu or hm.extra


def test_no_schema_column_is_itself_an_identifier_by_the_rule():
    """Not only the alias precedence: the rule alone spares every canonical column."""
    cols = {c for s in tables().values() for c in s.columns}
    assert not [c for c in sorted(cols) if is_direct_identifier(c)]


def test_header_words_split_compounds_camel_case_and_accents():
    assert header_words("Asiakkaan sukunimi") == ["asiakkaan", "sukunimi"]
    assert header_words("firstName") == ["first", "name"]
    assert header_words("Sähköposti-osoite") == ["sahkoposti", "osoite"]
    assert header_words("Puh.") == ["puh"]


def test_the_rules_are_documented():
    readme = (Path(__file__).resolve().parents[2] / "data_schema" / "README.md").read_text(encoding="utf-8")
    d = _aliases()["direct_identifiers"]
    assert all(f"`{s}`" in readme for s in d["stems"] + d["words"] + d["safe"])
    assert all(f"`{code}`" in readme for code in exclusion_reasons()["reasons"])


# ------------------------------------------------------------------ exclusion reasons
REASONS = [
    ("declined", "declined"), ("moved away", "moved_away"), ("not eligible", "not_eligible"),
    ("service need ended", "service_need_ended"),  # the demo's four
    ("Maija-Liisa Virtanen-Testaaja muutti pois", "moved_away"),
    ("Perhe muutti toiselle paikkakunnalle", "moved_away"), ("Muutto Tampereelle 1.3.", "moved_away"),
    ("kieltäytyi", "declined"), ("Kieltäytyi osallistumasta", "declined"), ("Ei halunnut osallistua", "declined"),
    ("Refused", "declined"), ("withdrew consent", "declined"),
    ("Ei täytä kriteerejä", "not_eligible"), ("ei soveltuva", "not_eligible"), ("Ineligible", "not_eligible"),
    ("Palvelutarve päättyi", "service_need_ended"), ("perheen palvelutarve paattyi", "service_need_ended"),
    ("Ei tavoitettu", "no_contact"), ("Could not be reached", "no_contact"),
    ("Ohjattu muualle", "other_service"), ("muu palvelu", "other_service"),
    ("asiakas kuoli", "deceased"),
    ("moved_away", "moved_away"), ("(other)", OTHER_REASON), ("(no reason given)", NO_REASON),
    ("Virtanen 131052-308T", OTHER_REASON), ("x", OTHER_REASON), ("", NO_REASON), ("   ", NO_REASON),
    (None, NO_REASON), (float("nan"), NO_REASON),
]


@pytest.mark.parametrize("text,code", REASONS)
def test_exclusion_reasons_become_documented_codes(text, code):
    got = exclusion_reason_code(text, exclusion_reason_keywords())
    assert got == code
    assert got in set(exclusion_reasons()["reasons"]) | {OTHER_REASON, NO_REASON}


def test_every_reason_code_has_report_labels_in_both_languages():
    from hbeval.report import i18n

    for code, r in exclusion_reasons()["reasons"].items():
        assert i18n.value(code, "en") == r["label_en"] and i18n.value(code, "fi") == r["label_fi"], code
    assert i18n.value(OTHER_REASON, "fi") != OTHER_REASON


def test_rare_reason_codes_are_pooled_and_the_text_never_comes_out():
    from hbeval.randomisation.consort import exclusion_reason_codes

    texts = pd.Series(["declined"] * 6 + ["Maija Meikäläinen muutti pois"] * 2 + ["Virtanen, soitettu 3 kertaa"] + [None])
    codes = exclusion_reason_codes(texts, 5)
    assert codes.value_counts().to_dict() == {"declined": 6, OTHER_REASON: 4}
    assert not any("Maija" in str(c) or "Virtanen" in str(c) for c in codes)


# ------------------------------------------------------------------ formula injection
FORMULAS = [("=1+2", "'=1+2"), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"), ("-2+3+cmd", "'-2+3+cmd"),
            ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("-0.5", "-0.5"), ("+3", "+3"), ("-1e-05", "-1e-05"), ("home_help", "home_help"), ("<5", "<5"),
            ("(other)", "(other)"), ("", ""), (-0.5, -0.5), (3, 3), (None, None)]


@pytest.mark.parametrize("cell,expected", FORMULAS)
def test_formula_cells_are_neutralised_and_numbers_are_not(cell, expected):
    assert neutralise_formula(cell) == expected


def test_a_frame_without_formulas_is_written_as_it_is(tmp_path):
    from hbeval.pipeline import write_csv

    df = pd.DataFrame({"contrast": ["frame_shares", "teaming"], "estimate": [-0.5, 1.25], "n": ["<5", "12"]})
    assert neutralise_formulas(df) is df
    bad = pd.DataFrame({"level": ["=cmd", "ok"], "x": [-1.0, 2.0]})
    write_csv(bad, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text(encoding="utf-8") == "level,x\n'=cmd,-1\nok,2\n"


# ------------------------------------------------------------------ ingestion
CLIENTS_HEAD = ("client_id,site,service_line,group,exclusion_reason,enrolled_on,household_size,n_children,"
                "youngest_child_age,area,referral_reason")


def _row(cid: str, referral: str = "arjen_hallinta", extra: str = "") -> str:
    return f"{cid},Hämeenlinna,home_help,pilot,,2024-01-10,3,1,4,keskusta,{referral}{extra}"


def _study(tmp_path: Path, clients: str) -> Path:
    d = tmp_path / "s"
    d.mkdir()
    (d / "study.toml").write_text('[study]\nname = "t"\n', encoding="utf-8")
    (d / "clients.csv").write_text(clients, encoding="utf-8")
    return d


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def test_ingestion_rejects_every_form_in_free_text_and_masks_it_in_messages(tmp_path):
    rows = [_row(f"A{i}", _quoted(f"ks. {text}")) for i, (_, text) in enumerate(CODE_FORMS)]
    rows.append(_row("OK1"))
    s = _study(tmp_path, "\n".join([CLIENTS_HEAD, *rows]) + "\n")
    res = ingest(s, today=TODAY, write_store=False)
    counts = {k: n for k, n in res.ledger.counts.items() if k[1] == "referral_reason" and "identity code" in k[2]}
    assert list(counts.values()) == [len(CODE_FORMS)]  # one per form (the ledger keeps 20 examples per rule)
    assert res.ledger.files["clients.csv"].rows_rejected == len(CODE_FORMS)  # and not the row without a code
    assert not has_identity_code(res.ledger.summary(max_examples=100))


@pytest.mark.parametrize("cid", ["131052-308T", "131052\u2013308t", "131052308T", "010180-9004"])
def test_a_client_id_that_is_an_identity_code_is_refused(tmp_path, cid):
    s = _study(tmp_path, "\n".join([CLIENTS_HEAD.replace("client_id", "asiakasnumero"), _row(cid), _row("B2")]) + "\n")
    res = ingest(s, today=TODAY)
    assert res.store is None
    rules = [rule for f, r, c, v, rule in res.ledger.error_rows() if c == "client_id"]
    assert rules and "name the column hetu" in rules[0]
    assert not has_identity_code(res.ledger.summary())


def test_ordinary_client_ids_are_not_refused(tmp_path):
    ids = ["A1", "p3f9a12b4c5d6e7f8a9b0", "2024-001", "123456", "1234567890123", "perhe 17"]
    s = _study(tmp_path, "\n".join([CLIENTS_HEAD, *[_row(_quoted(i)) for i in ids]]) + "\n")
    res = ingest(s, today=TODAY)
    assert not res.ledger.has_errors(), res.ledger.summary()


def test_identifier_columns_are_dropped_and_their_values_are_not_stored(tmp_path):
    heads = ["Etunimet", "Asiakkaan sukunimi", "Matkapuhelinnumero", "Sähköpostiosoite", "Puh.", "Surname",
             "Osoitetiedot"]
    vals = ["Maija-Liisa", "Virtanen-Testaaja", "0401234567", "maija@example.fi", "03 123 4567", "Korhonen",
            "Testikatu 5 B 12"]
    rows = [CLIENTS_HEAD + "," + ",".join(_quoted(h) for h in heads)]
    rows += [_row(f"A{i}", extra="," + ",".join(_quoted(v) for v in vals)) for i in range(3)]
    s = _study(tmp_path, "\n".join(rows) + "\n")
    res = ingest(s, today=TODAY)
    assert not res.ledger.has_errors(), res.ledger.summary()
    notes = " ".join(n[1] for n in res.ledger.notes)
    assert all(h in notes for h in heads)
    raw = res.store.read_bytes()
    assert not [v for v in vals if v.encode() in raw]


def test_a_malformed_row_does_not_echo_its_text(tmp_path):
    rows = ["nimi," + CLIENTS_HEAD, "Maija-Liisa Virtanen-Testaaja," + _row("A1") + ",extra",
            "Aino Korhonen," + _row("A2")]
    s = _study(tmp_path, "\n".join(rows) + "\n")
    res = ingest(s, today=TODAY)
    assert res.ledger.has_errors()
    text = res.ledger.summary(max_examples=100) + repr(res.ledger.error_rows())
    assert "too many fields" in text
    assert "Virtanen" not in text and "Maija" not in text and "Korhonen" not in text
