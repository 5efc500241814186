"""Privacy rules: small-cell suppression, identity codes in free text, identifier columns
and exclusion reasons.

Everything here is a pure function of its arguments; the lists it is applied with live in
``data_schema/`` (read by :mod:`hbeval.study.schema`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd


def suppress_count(n: int | float, min_cell: int) -> str:
    """A count as text, ``"<k"`` when ``0 < n < k`` (zero stays ``"0"``)."""
    if pd.isna(n):
        return ""
    n = int(n)
    return f"<{min_cell}" if 0 < n < min_cell else str(n)


def suppress_counts(df: pd.DataFrame, columns: list[str], min_cell: int) -> pd.DataFrame:
    """Copy of ``df`` with the count ``columns`` as text, small counts shown as ``"<k"``."""
    out = df.copy()
    for c in columns:
        if c in out.columns:
            out[c] = [suppress_count(v, min_cell) for v in out[c]]
    return out


def suppress_small_groups(df: pd.DataFrame, n_column: str, value_columns: list[str], min_cell: int) -> pd.DataFrame:
    """Blank the statistics of rows whose group has fewer than ``min_cell`` families, and
    suppress the count itself. A mean of two families is as revealing as their values."""
    out = df.copy()
    small = pd.to_numeric(out[n_column], errors="coerce").fillna(0)
    small = (small > 0) & (small < min_cell)
    for c in value_columns:
        if c in out.columns:
            out[c] = out[c].astype(object)
            out.loc[small, c] = None
    return suppress_counts(out, [n_column], min_cell)


# ----------------------------------------------------------------- identity codes
#: Every dash, hyphen and minus a keyboard, a word processor or Excel may put in a hetu
#: (NFKC already folds the full-width and small forms to these or to ``-``).
DASHES = "\u00ad\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_DASH_TABLE = str.maketrans({d: "-" for d in DASHES})
#: Letters and digits (any script) around a match mean it is part of a longer word or number.
_HETU_PATTERN = re.compile(
    r"(?<![^\W_])(?<![0-9][.,])"  # not inside a word or a decimal number
    r"(?P<dd>[0-9]{2})(?P<mm>[0-9]{2})(?P<yy>[0-9]{2})"
    r"[^\S\n]*(?P<sep>[-+.A-FU-Y]?)[^\S\n]*"  # century sign (or a dot, or none), spaces around it
    r"(?P<nnn>[0-9]{3})(?P<check>[0-9A-Y])"
    r"(?![^\W_])(?![.,][0-9])"
)
_CHECK_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"


@dataclass(frozen=True)
class IdentityCodeHit:
    """A hetu-shaped string found in text: where it is (in the original text) and whether
    its check character is right (a wrong one is still treated as an identity code)."""

    start: int
    end: int
    compact: str  # DDMMYY + century sign (``-`` when none was written) + NNN + check
    check_ok: bool


def normalise_for_codes(text: str) -> str:
    """Text in the form identity codes are matched in: NFKC (full-width digits and letters
    to ASCII), every dash variant to ``-``, upper case. One character in, one out, so
    offsets stay those of the original text (NFKC may change the length: see
    :func:`find_identity_codes`)."""
    return unicodedata.normalize("NFKC", str(text)).translate(_DASH_TABLE).upper()


def _hetu_check_char(dd: str, mm: str, yy: str, nnn: str) -> str:
    return _CHECK_CHARS[int(dd + mm + yy + nnn) % 31]


def find_identity_codes(text: object) -> list[IdentityCodeHit]:
    """Every Finnish personal identity code (henkilötunnus) in ``text``, in any common form.

    Parameters
    ----------
    text : the value to scan (anything; ``None`` and NaN hold nothing).

    Returns
    -------
    One :class:`IdentityCodeHit` per code, offsets into the *normalised* text (see
    :func:`normalise_for_codes`; for text without compatibility characters it is the text).

    Notes
    -----
    A hetu is ``DDMMYY C NNN K``: birth date, century sign ``C`` (``+`` 1800s; ``-``,
    ``U``–``Y`` 1900s; ``A``–``F`` 2000s), individual number ``NNN`` and check character
    ``K = "0123456789ABCDEFHJKLMNPRSTUVWXY"[DDMMYYNNN mod 31]``. The text is normalised first
    (NFKC, dashes, case), and the century sign may be missing, replaced by a dot or
    surrounded by spaces. ``DD`` must be 01–31 and ``MM`` 01–12 (this keeps ten-digit
    numbers such as PDF offsets from matching); the check character need not be right:
    a mistyped code still identifies a person. Digits or letters right before or after, or
    a decimal point before, mean the match is part of a longer number or word.
    """
    if text is None or (isinstance(text, float) and text != text):
        return []
    norm = normalise_for_codes(str(text))
    hits = []
    for m in _HETU_PATTERN.finditer(norm):
        dd, mm, yy, nnn, check = m["dd"], m["mm"], m["yy"], m["nnn"], m["check"]
        if not (1 <= int(dd) <= 31 and 1 <= int(mm) <= 12):
            continue
        sep = m["sep"] if m["sep"] and m["sep"] != "." else "-"
        hits.append(IdentityCodeHit(m.start(), m.end(), f"{dd}{mm}{yy}{sep}{nnn}{check}",
                                    _hetu_check_char(dd, mm, yy, nnn) == check))
    return hits


def has_identity_code(text: object) -> bool:
    """Whether ``text`` holds a hetu-shaped string (see :func:`find_identity_codes`)."""
    return bool(find_identity_codes(text))


def mask_identity_codes(text: object) -> str:
    """``text`` with every identity code replaced by ``DD****-****`` (the day only)."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    s = str(text)
    hits = find_identity_codes(s)
    if not hits:
        return s
    norm = normalise_for_codes(s)
    base = s if len(norm) == len(s) else norm  # keep the text's own case where offsets allow
    out, last = [], 0
    for h in hits:
        out += [base[last:h.start], h.compact[:2] + "****-****"]
        last = h.end
    return "".join(out) + base[last:]


#: A superset of :data:`_HETU_PATTERN` in RE2 syntax (DuckDB): six digits of any script
#: at the start of a word. Ingestion runs the exact check only on values this finds.
IDENTITY_CODE_PREFILTER_RE2 = r"(^|[^\pL\pN])\p{Nd}{6}"


# ----------------------------------------------------------------- identifier columns
def header_words(header: str) -> list[str]:
    """A column name as lower-case words without accents (``Asiakkaan sukunimi`` →
    ``["asiakkaan", "sukunimi"]``, ``firstName`` → ``["first", "name"]``)."""
    s = re.sub(r"([a-zäöå])([A-ZÄÖÅ])", r"\1 \2", unicodedata.normalize("NFKC", str(header)))
    s = "".join(c for c in unicodedata.normalize("NFKD", s.casefold()) if not unicodedata.combining(c))
    return [w for w in re.split(r"[^0-9a-z]+", s) if w]


def is_identifier_column(header: str, stems: Sequence[str], words: Sequence[str], safe: Sequence[str] = ()) -> bool:
    """Whether a column name names a direct identifier (a name, an address, a phone number,
    an e-mail address).

    Parameters
    ----------
    header : the column name as written in the export.
    stems : word stems that mark an identifier anywhere inside a word (Finnish compounds:
        ``sukunimi``, ``matkapuhelinnumero``, ``sähköpostiosoite`` hold ``nimi``, ``puhelin``,
        ``posti``/``osoite``); compared without accents.
    words : short forms that mark an identifier only as a whole word (``puh``, ``gsm``, ``tel``:
        as stems they would catch ``puheterapia``).
    safe : words that contain a stem but are not identifiers (``nimike``, a service's title);
        removed from each word before the stems are looked for.
    """
    for w in header_words(header):
        if w in words:
            return True
        for s in safe:
            w = w.replace(s, " ")
        if any(st in w for st in stems):
            return True
    return False


# ----------------------------------------------------------------- exclusion reasons
OTHER_REASON = "(other)"
NO_REASON = "(no reason given)"


def reason_words(text: str) -> str:
    """Free text as space-separated lower-case words without accents, padded with spaces
    (``" maija liisa muutti pois "``), the form exclusion-reason keywords are matched in."""
    return " " + " ".join(header_words(text)) + " "


def exclusion_reason_code(text: object, keywords: Mapping[str, Sequence[str]]) -> str:
    """The documented reason code of a free-text exclusion reason.

    ``keywords`` maps each code to its keywords (Finnish and English word stems, see
    ``data_schema/exclusion_reasons.json``); the first code (in the map's order) with a
    keyword at the start of a word of the text wins. Empty text is :data:`NO_REASON`;
    text that matches no keyword is :data:`OTHER_REASON`. The text itself never comes out.
    """
    if text is None or (isinstance(text, float) and text != text) or not str(text).strip():
        return NO_REASON
    if text in keywords or text in (OTHER_REASON, NO_REASON):
        return str(text)  # already a code
    t = reason_words(str(text))
    for code, kws in keywords.items():
        if any(" " + " ".join(header_words(k)) in t for k in kws):
            return code
    return OTHER_REASON


# ----------------------------------------------------------------- CSV formula injection
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise_formula(value: object) -> object:
    """A text cell that starts like a spreadsheet formula, with a ``'`` in front.

    Notes
    -----
    OWASP's advice for CSV exports: a cell beginning with ``=``, ``+``, ``-``, ``@``, a tab
    or a carriage return is run as a formula by Excel and LibreOffice (``=HYPERLINK(...)``,
    ``@SUM(...)``); a leading single quote makes it text. Only text is changed: numbers, and
    text that is a number (``-0.5``, ``+3``), are left as they are.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _is_number(value):
        return "'" + value
    return value


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell neutralised (:func:`neutralise_formula`); ``df`` itself when
    no cell needs it (the common case: no copy)."""
    cols = [c for c in df.columns if df[c].dtype == object or isinstance(df[c].dtype, (pd.StringDtype, pd.CategoricalDtype))]
    bad = [c for c in cols if df[c].map(lambda v: neutralise_formula(v) is not v).any()]
    if not bad:
        return df
    out = df.copy()
    for c in bad:
        out[c] = out[c].astype(object).map(neutralise_formula)
    return out


# ---------------------------------------------------------------------- rare text levels
#: The label that stands for the pooled rare levels of a text covariate.
OTHER_LEVEL = "(other)"


def pool_rare_levels(values: pd.Series, min_cell: int) -> pd.Series:
    """Text levels held by fewer than ``min_cell`` families become ``"(other)"``.

    A level's label is itself data: a name typed into ``area`` would otherwise reach the
    output as a row label, and a level of one family points at that family.
    """
    lab = values.astype(object)
    counts = lab.value_counts(dropna=True)
    rare = counts.index[counts < min_cell]
    return lab.where(~lab.isin(rare), OTHER_LEVEL)
