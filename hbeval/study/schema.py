"""The data schema: one source of truth, read from ``data_schema/``.

``data_schema/tables/*.json`` are Frictionless Table Schemas (types, required columns,
enums, ranges, keys); ``data_schema/instruments/*.json`` define the instruments;
``data_schema/aliases.json`` maps Finnish headers and values to the canonical ones and
lists the direct-identifier columns that ingestion drops. Everything that validates or
scores reads these files; nothing here restates them.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Domain:
    item: str
    label_fi: str
    label_en: str
    in_total: bool


@dataclass(frozen=True)
class Instrument:
    instrument: str
    name_fi: str
    name_en: str
    score_min: float
    score_max: float
    total: str
    min_answered_share: float
    domains: tuple[Domain, ...]

    @property
    def items(self) -> list[str]:
        return [d.item for d in self.domains]

    @property
    def total_items(self) -> list[str]:
        return [d.item for d in self.domains if d.in_total]

    def min_answered(self) -> int:
        """Domains that must be answered for the total (4 of 5, 5 of 6)."""
        import math

        return math.ceil(self.min_answered_share * len(self.total_items) - 1e-9)


@functools.cache
def instruments() -> dict[str, Instrument]:
    out: dict[str, Instrument] = {}
    for p in sorted((data_schema_dir() / "instruments").glob("*.json")):
        d = json.loads(p.read_text(encoding="utf-8"))
        out[d["instrument"]] = Instrument(
            instrument=d["instrument"],
            name_fi=d["name_fi"],
            name_en=d["name_en"],
            score_min=float(d["score_min"]),
            score_max=float(d["score_max"]),
            total=d["total"],
            min_answered_share=float(d["min_answered_share"]),
            domains=tuple(Domain(**{k: x[k] for k in ("item", "label_fi", "label_en", "in_total")}) for x in d["domains"]),
        )
    return out


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
    h = normalise_name(header)
    for p in _aliases()["direct_identifiers"]["patterns"]:
        p = normalise_name(p)
        if p.startswith("*") and h.endswith(p[1:]):
            return True
        if p.endswith("*") and h.startswith(p[:-1]):
            return True
        if h == p:
            return True
    return False


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
    lines += ["", "Direct-identifier columns dropped at ingestion (patterns; `*` is a wildcard): "
              + ", ".join(f"`{p}`" for p in a["direct_identifiers"]["patterns"]) + "."]
    return "\n".join(lines) + "\n"
