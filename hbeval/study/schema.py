"""The data schema: one source of truth, read from ``data_schema/``.

``data_schema/tables/*.json`` are Frictionless Table Schemas (types, required columns,
enums, ranges, keys); ``data_schema/instruments/*.json`` define the instruments (a study's
``STUDY/instruments/*.json`` add to or replace them: :func:`instruments`);
``data_schema/aliases.json`` maps Finnish headers and values to the canonical ones and
lists the direct-identifier columns that ingestion drops. Everything that validates or
scores reads these files; nothing here restates them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbeval.errors import InputError
from hbeval.privacy import is_identifier_column
from hbeval.study.config import DEFAULT_FAMILIES, regular_file

_HERE = Path(__file__).resolve().parent.parent  # the hbeval package


def data_schema_dir() -> Path:
    """``data_schema/`` beside the package (editable install) or inside the wheel."""
    for cand in (_HERE / "_data_schema", _HERE.parent / "data_schema"):
        if (cand / "tables").is_dir():
            return cand
    raise FileNotFoundError("data_schema/ not found beside or inside the hbeval package")


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # string | integer | number | date
    description: str
    required: bool = False
    unique: bool = False
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class TableSchema:
    name: str
    description: str
    required_table: bool
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]
    references_clients: bool

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


#: The order tables are ingested in (clients first: the others refer to it).
TABLE_ORDER = (
    "clients",
    "assignments",
    "measurements",
    "service_events",
    "unit_costs",
    "budgets",
    "budget_spending",
    "income_support",
    "worker_time",
    "teaming_meetings",
    "child_welfare",
    "price_index",
)


@functools.cache
def tables() -> dict[str, TableSchema]:
    out: dict[str, TableSchema] = {}
    for name in TABLE_ORDER:
        doc = json.loads((data_schema_dir() / "tables" / f"{name}.json").read_text(encoding="utf-8"))
        fields = []
        for fd in doc["fields"]:
            c = fd.get("constraints", {})
            fields.append(
                Field(
                    name=fd["name"],
                    type=fd["type"],
                    description=fd.get("description", ""),
                    required=bool(c.get("required", False)),
                    unique=bool(c.get("unique", False)),
                    enum=tuple(c["enum"]) if "enum" in c else None,
                    minimum=c.get("minimum"),
                    maximum=c.get("maximum"),
                )
            )
        refs = any(fk["reference"]["resource"] == "clients" for fk in doc.get("foreignKeys", []))
        out[name] = TableSchema(
            name=name,
            description=doc.get("description", ""),
            required_table=bool(doc.get("x-required-table", False)),
            fields=tuple(fields),
            primary_key=tuple(doc.get("primaryKey", [])),
            references_clients=refs,
        )
    return out


def table_schema(name: str, insts: dict[str, Instrument] | None = None) -> TableSchema:
    """The schema of table ``name``; for ``measurements`` with a study's instruments
    (:func:`instruments`), the ``instrument`` column also allows the study's own."""
    ts = tables()[name]
    if name != "measurements" or insts is None:
        return ts
    f = ts.field("instrument")
    enum = tuple(f.enum or ()) + tuple(sorted(set(insts) - set(f.enum or ())))
    fields = tuple(dataclasses.replace(x, enum=enum) if x.name == "instrument" else x for x in ts.fields)
    return dataclasses.replace(ts, fields=fields)


@dataclass(frozen=True)
class Domain:
    item: str
    label_fi: str
    label_en: str
    in_total: bool


@dataclass(frozen=True)
class Instrument:
    """One instrument definition (``data_schema/instruments/*.json`` or ``STUDY/instruments/*.json``).

    ``open_items``: the items are those the study's ``measurements`` use for this instrument
    (each scored in ``[score_min, score_max]``, all in the total); ``domains`` then only label
    the usual ones (:meth:`with_items`). ``origin`` is ``"packaged"`` or the study file's name
    (``instruments/<file>.json``).
    """

    instrument: str
    name_fi: str
    name_en: str
    score_min: float
    score_max: float
    total: str
    min_answered_share: float
    domains: tuple[Domain, ...]
    open_items: bool = False
    origin: str = "packaged"

    @property
    def items(self) -> list[str]:
        return [d.item for d in self.domains]

    @property
    def total_items(self) -> list[str]:
        return [d.item for d in self.domains if d.in_total]

    @property
    def outcomes(self) -> list[str]:
        """The outcomes it scores: its total, then ``<instrument>_<item>`` per domain."""
        return [self.total] + [f"{self.instrument}_{it}" for it in self.items]

    def min_answered(self) -> int:
        """Domains that must be answered for the total (4 of 5, 5 of 6)."""
        return math.ceil(self.min_answered_share * len(self.total_items) - 1e-9)

    def with_items(self, items: Iterable[str]) -> Instrument:
        """An open instrument with the items a study's measurements use.

        The defined domains that are used keep their order and labels; other items follow in
        sorted order, labelled by their code and all in the total. With no item used (or a
        closed instrument) the definition is returned unchanged.
        """
        used = set(items)
        if not self.open_items or not used:
            return self
        known = [d for d in self.domains if d.item in used]
        extra = [Domain(it, it, it, True) for it in sorted(used - set(self.items))]
        return dataclasses.replace(self, domains=tuple(known + extra))


#: Instrument names, totals and item codes become outcome and column names.
SAFE_NAME = re.compile(r"[a-z][a-z0-9_]*")
ITEM_CODE = re.compile(r"[a-z0-9][a-z0-9_]*")
#: A study's instrument file larger than this is refused unread (a definition is a few kB).
MAX_INSTRUMENT_BYTES = 1 << 20
#: Where a study keeps its own instrument definitions.
STUDY_INSTRUMENTS_DIR = "instruments"


def _fail(file: str, field: str, msg: str) -> InputError:
    return InputError(msg, file=file, column=field)


def _text(doc: dict[str, Any], key: str, file: str, default: str) -> str:
    v = doc.get(key, default)
    if not isinstance(v, str) or not v.strip():
        raise _fail(file, key, "must be a non-empty text")
    return v


def _number(doc: dict[str, Any], key: str, file: str, default: float | None = None) -> float:
    v = doc.get(key, default)
    if v is None:
        raise _fail(file, key, "is missing")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(file, key, f"must be a number, not {v!r}")
    return float(v)


def _domain(x: Any, i: int, file: str) -> Domain:
    where = f"domains[{i}]"
    if not isinstance(x, dict):
        raise _fail(file, where, "must be an object with item, label_fi, label_en, in_total")
    item = x.get("item")
    if not isinstance(item, str) or not ITEM_CODE.fullmatch(item):
        raise _fail(file, f"{where}.item", f"{item!r} is not an item code (lower-case letters, digits and _)")
    in_total = x.get("in_total", True)
    if not isinstance(in_total, bool):
        raise _fail(file, f"{where}.in_total", "must be true or false")
    return Domain(item=item, label_fi=_text(x, "label_fi", file, item), label_en=_text(x, "label_en", file, item),
                  in_total=in_total)


def parse_instrument(doc: Any, file: str, origin: str = "packaged") -> Instrument:
    """An :class:`Instrument` from a definition's parsed JSON, every field checked.

    Required: ``instrument`` (a name ``[a-z][a-z0-9_]*``), ``score_min`` < ``score_max`` and a
    non-empty list of ``domains`` (``item`` codes unique, at least one ``in_total``). Defaults:
    ``total`` = ``<instrument>_total``, ``name_fi``/``name_en`` and the labels = the code,
    ``min_answered_share`` = 0.8, ``in_total`` = true, ``open_items`` = false.

    Raises
    ------
    InputError
        Naming ``file`` and the field (``domains[2].item``, ``score_max`` ...).
    """
    if not isinstance(doc, dict):
        raise _fail(file, "instrument", "the file must hold one JSON object (an instrument definition)")
    name = doc.get("instrument")
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise _fail(file, "instrument", f"{name!r} is not a name (lower-case letters, digits and _, "
                                        "starting with a letter)")
    lo, hi = _number(doc, "score_min", file), _number(doc, "score_max", file)
    if not lo < hi:
        raise _fail(file, "score_max", f"the score range {lo:g}–{hi:g} is empty: score_max must exceed score_min")
    total = doc.get("total", f"{name}_total")
    if not isinstance(total, str) or not SAFE_NAME.fullmatch(total):
        raise _fail(file, "total", f"{total!r} is not an outcome name (lower-case letters, digits and _)")
    share = _number(doc, "min_answered_share", file, 0.8)
    if not 0 < share <= 1:
        raise _fail(file, "min_answered_share", "must be in (0, 1]")
    open_items = doc.get("open_items", False)
    if not isinstance(open_items, bool):
        raise _fail(file, "open_items", "must be true or false")
    raw = doc.get("domains")
    if not isinstance(raw, list) or not raw:
        raise _fail(file, "domains", "is missing: give a non-empty list of domains (item, label_fi, label_en, in_total)")
    domains = tuple(_domain(x, i, file) for i, x in enumerate(raw))
    seen: set[str] = set()
    for i, d in enumerate(domains):
        if d.item in seen:
            raise _fail(file, f"domains[{i}].item", f"duplicate item {d.item!r}")
        seen.add(d.item)
    if not any(d.in_total for d in domains):
        raise _fail(file, "domains", "no domain is in_total: the total needs at least one")
    return Instrument(instrument=name, name_fi=_text(doc, "name_fi", file, name), name_en=_text(doc, "name_en", file, name),
                      score_min=lo, score_max=hi, total=total, min_answered_share=share, domains=domains,
                      open_items=open_items, origin=origin)


def _load_json(data: bytes, file: str) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise InputError("not UTF-8 text; save the definition as UTF-8", file=file, column="instrument") from e
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg}", file=file, row=e.lineno, column=str(e.colno)) from e


@functools.cache
def _packaged_instruments() -> dict[str, Instrument]:
    out: dict[str, Instrument] = {}
    for p in sorted((data_schema_dir() / "instruments").glob("*.json")):
        ins = parse_instrument(json.loads(p.read_text(encoding="utf-8")), f"data_schema/instruments/{p.name}")
        out[ins.instrument] = ins
    return out


def study_instrument_files(study_dir: str | Path) -> list[Path]:
    """``STUDY/instruments/*.json``, sorted by name (none when the folder is absent)."""
    d = Path(study_dir) / STUDY_INSTRUMENTS_DIR
    return sorted(d.glob("*.json")) if d.is_dir() else []


def instruments(study_dir: str | Path | None = None) -> dict[str, Instrument]:
    """The instruments of a study: the packaged definitions, and with ``study_dir`` those of
    ``STUDY/instruments/*.json`` over them (a study file replaces the packaged instrument of
    the same ``instrument`` name; other study files add instruments, after the packaged ones).

    Raises
    ------
    InputError
        A study file that is not a valid definition, two study files defining one
        instrument, or an outcome name (a total or ``<instrument>_<item>``) that two
        instruments would both score, naming the file and the field.
    """
    if study_dir is None:
        return _packaged_instruments()
    files = []
    for p in study_instrument_files(study_dir):
        label = f"{STUDY_INSTRUMENTS_DIR}/{p.name}"
        regular_file(p, label=label)
        if p.stat().st_size > MAX_INSTRUMENT_BYTES:
            raise InputError(f"larger than {MAX_INSTRUMENT_BYTES} bytes: an instrument definition is a small JSON file",
                             file=label, column="instrument")
        files.append((label, p.read_bytes()))
    return _merge_study_instruments(tuple(files)) if files else _packaged_instruments()


@functools.lru_cache(maxsize=32)
def _merge_study_instruments(files: tuple[tuple[str, bytes], ...]) -> dict[str, Instrument]:
    out = dict(_packaged_instruments())
    defined: dict[str, str] = {}
    for label, data in files:
        ins = parse_instrument(_load_json(data, label), label, origin=label)
        if ins.instrument in defined:
            raise _fail(label, "instrument", f"{ins.instrument!r} is already defined by {defined[ins.instrument]}")
        defined[ins.instrument] = label
        out[ins.instrument] = ins
    _check_outcome_clashes(out)
    return out


def _check_outcome_clashes(insts: dict[str, Instrument]) -> None:
    """No two instruments (nor the process outcomes) may give one outcome name."""
    owner: dict[str, str] = {o: "a process outcome" for f, m in DEFAULT_FAMILIES.items()
                             if f not in ("primary", "secondary") for o in m}
    for ins in sorted(insts.values(), key=lambda i: i.origin != "packaged"):  # blame the study's files
        for k, o in enumerate(ins.outcomes):
            if o in owner:
                field = "total" if k == 0 else f"domains[{k - 1}].item"
                raise _fail(ins.origin, field, f"the outcome name {o!r} is also {owner[o]}")
            owner[o] = f"an outcome of {ins.instrument} ({ins.origin})"


# --------------------------------------------------------------------- aliases
def normalise_name(text: str) -> str:
    """Header/value normal form: lower case, ä/ö/å folded, spaces and hyphens to ``_``."""
    s = unicodedata.normalize("NFKC", str(text)).strip().lower()
    s = s.replace("ä", "a").replace("ö", "o").replace("å", "a").replace("é", "e")
    s = re.sub(r"[\s\-/]+", "_", s)
    s = re.sub(r"[^0-9a-z_.*:]", "", s)
    return s.strip("_")


@functools.cache
def _aliases() -> dict[str, Any]:
    return json.loads((data_schema_dir() / "aliases.json").read_text(encoding="utf-8"))


def column_alias_map(table: str) -> dict[str, str]:
    """Normalised header -> canonical column, for the columns of ``table`` (plus ``hetu``)."""
    canon = set(tables()[table].columns) | {"hetu"}
    m: dict[str, str] = {}
    for target, names in _aliases()["columns"].items():
        if target not in canon:
            continue
        for n in names:
            m[normalise_name(n)] = target
    for c in canon:
        m[normalise_name(c)] = c
    return m


def value_alias_map(column: str) -> dict[str, str]:
    """Normalised Finnish value -> canonical enum value for ``column``."""
    return {normalise_name(k): v for k, v in _aliases()["values"].get(column, {}).items()}


def is_direct_identifier(header: str) -> bool:
    """Whether ``header`` names a direct-identifier column (rules: ``aliases.json``
    ``direct_identifiers``; matcher: :func:`hbeval.privacy.is_identifier_column`)."""
    d = _aliases()["direct_identifiers"]
    return is_identifier_column(header, d["stems"], d["words"], d.get("safe", ()))


@functools.cache
def exclusion_reasons() -> dict[str, Any]:
    """``data_schema/exclusion_reasons.json``: the documented exclusion-reason codes, each
    with its Finnish and English labels and keywords."""
    return json.loads((data_schema_dir() / "exclusion_reasons.json").read_text(encoding="utf-8"))


def exclusion_reason_keywords() -> dict[str, list[str]]:
    """Reason code -> keywords, in the file's order (the first code that matches wins)."""
    return {code: r["keywords"] for code, r in exclusion_reasons()["reasons"].items()}


def aliases_markdown() -> str:
    """The alias map as the Markdown tables of ``data_schema/README.md`` (kept in step by a test)."""
    a = _aliases()
    lines = ["| canonical column | Finnish / other headers accepted |", "|---|---|"]
    for target, names in a["columns"].items():
        lines.append(f"| `{target}` | {', '.join(f'`{n}`' for n in names)} |")
    lines += ["", "| column | value in the export | canonical value |", "|---|---|---|"]
    for col, vals in a["values"].items():
        for k, v in vals.items():
            lines.append(f"| `{col}` | `{k}` | `{v}` |")
    d = a["direct_identifiers"]
    lines += ["", "Direct-identifier columns dropped at ingestion: a word of the header contains one of the stems "
              + ", ".join(f"`{p}`" for p in d["stems"]) + " (after the safe words "
              + ", ".join(f"`{p}`" for p in d.get("safe", ())) + " are taken out), or is one of "
              + ", ".join(f"`{p}`" for p in d["words"]) + "."]
    return "\n".join(lines) + "\n"
