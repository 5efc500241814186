"""Study parameters: ``study.toml`` read into a typed, validated :class:`StudyConfig`.

Every key has a default, so a file holding only ``[study] name`` is a valid study.
Unknown sections or keys, wrong types and contradictory values are errors that name
the file and the key (:class:`hbeval.errors.InputError`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hbeval.errors import InputError

#: Outcome families declared by default (issue 4). Each family is adjusted for
#: multiplicity on its own.
DEFAULT_FAMILIES: dict[str, list[str]] = {
    "primary": ["kykyviisari_total"],
    "secondary": [
        "kompassi_total",
        "kykyviisari_osallisuus",
        "kykyviisari_mieli",
        "kykyviisari_arki",
        "kykyviisari_taidot",
        "kykyviisari_keho",
        "kykyviisari_kokonaistilanne",
        "kykyviisari_elamaan_tyytyvaisyys",
        "kompassi_tyoelama",
        "kompassi_terveys",
        "kompassi_psyykkinen_hyvinvointi",
        "kompassi_arjen_hallinta",
        "kompassi_talous",
        "kompassi_osallisuus",
        "satisfaction_total",
    ],
    "process_frame": [
        "budget_accepted_unchanged",
        "budget_revisions",
        "budget_abs_change_eur",
        "days_to_confirmation",
    ],
    "process_teaming": [
        "meetings_before_start",
        "meetings_after_start",
        "meetings_evaluation",
        "providers_present_before_start",
        "providers_present_after_start",
        "providers_present_evaluation",
    ],
    "prevention": ["new_child_welfare_clienthood"],
}


@dataclass(frozen=True)
class StudyConfig:
    """Parameters of one evaluation, as read from ``study.toml``."""

    name: str = "HB pilot"
    price_year: int = 2024
    follow_up_days: int = 365
    seed: int = 20261122
    # design
    strata: tuple[str, ...] = ("site", "service_line")
    assignment_method: str = "batch"  # batch | blocks | minimisation
    block_sizes: tuple[int, ...] = (4, 8)
    minimisation_p: float = 0.8  # probability of the minimising cell (Pocock-Simon)
    allocation_key_env: str = "HBEVAL_ALLOCATION_KEY"
    allocation_key_file: str | None = None
    # outcomes
    primary: str = "kykyviisari_total"
    families: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_FAMILIES))
    mic: float = 1.0  # minimal important change of the primary outcome (an assumption)
    ri_draws: int = 10_000
    # privacy
    min_cell: int = 5
    key_env: str = "HBEVAL_PSEUDONYM_KEY"
    key_file: str | None = None
    # economics
    wtp_eur: tuple[float, ...] = (0, 250, 500, 1000, 2000, 5000)
    wtp_reference_eur: float = 1000.0
    discount_rate: float = 0.035
    horizon_years: int = 1
    deadweight: float = 0.0
    attribution: float = 0.0
    displacement: float = 0.0
    drop_off: float = 0.0
    bootstrap_reps: int = 5_000
    intervention_categories: tuple[str, ...] = ("budget_spending", "staff_time", "teaming")
    perspective: str = "organiser (wellbeing services county)"
    # where the file came from (not a parameter; excluded from to_dict)
    source: str | None = None

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def outcomes(self) -> list[str]:
        """Every declared outcome, primary first, without repeats."""
        seen: list[str] = []
        for fam in self.families.values():
            for o in fam:
                if o not in seen:
                    seen.append(o)
        if self.primary in seen:
            seen.remove(self.primary)
        return [self.primary, *seen]

    def family_of(self, outcome: str) -> str:
        for fam, members in self.families.items():
            if outcome in members:
                return fam
        return "primary" if outcome == self.primary else "other"

    def pseudonym_key(self, study_dir: Path | None = None) -> bytes | None:
        """The keyed-hash secret, or ``None`` when none is configured.

        Never falls back to a default key.
        """
        return _read_secret(self.key_env, self.key_file, study_dir)

    def allocation_key(self, study_dir: Path | None = None) -> bytes | None:
        """Secret that conceals the sequential allocation sequence."""
        return _read_secret(self.allocation_key_env, self.allocation_key_file, study_dir)

    @staticmethod
    def key_id(key: bytes) -> str:
        """A short public fingerprint of a key (never the key itself)."""
        return hashlib.sha256(b"hbeval-key-id:" + key).hexdigest()[:12]


def _read_secret(env: str, file: str | None, study_dir: Path | None) -> bytes | None:
    if file:
        p = Path(file)
        if not p.is_absolute() and study_dir is not None:
            p = study_dir / p
        if not p.exists():
            raise InputError(f"key file {p} named in study.toml does not exist", file="study.toml")
        data = p.read_bytes().strip()
        if not data:
            raise InputError(f"key file {p} is empty", file="study.toml")
        return data
    val = os.environ.get(env)
    if val:
        return val.encode("utf-8")
    return None


# ---------------------------------------------------------------------- parsing
_SPEC: dict[str, dict[str, tuple[str, type | tuple[type, ...]]]] = {
    # section -> toml key -> (field name, accepted python types)
    "study": {
        "name": ("name", str),
        "price_year": ("price_year", int),
        "follow_up_days": ("follow_up_days", int),
        "seed": ("seed", int),
    },
    "design": {
        "strata": ("strata", list),
        "assignment": ("assignment_method", str),
        "block_sizes": ("block_sizes", list),
        "minimisation_p": ("minimisation_p", (int, float)),
        "key_env": ("allocation_key_env", str),
        "key_file": ("allocation_key_file", str),
    },
    "outcomes": {
        "primary": ("primary", str),
        "families": ("families", dict),
        "mic": ("mic", (int, float)),
        "ri_draws": ("ri_draws", int),
    },
    "privacy": {
        "min_cell": ("min_cell", int),
        "key_env": ("key_env", str),
        "key_file": ("key_file", str),
    },
    "economics": {
        "wtp_eur": ("wtp_eur", list),
        "wtp_reference_eur": ("wtp_reference_eur", (int, float)),
        "discount_rate": ("discount_rate", (int, float)),
        "horizon_years": ("horizon_years", int),
        "deadweight": ("deadweight", (int, float)),
        "attribution": ("attribution", (int, float)),
        "displacement": ("displacement", (int, float)),
        "drop_off": ("drop_off", (int, float)),
        "bootstrap_reps": ("bootstrap_reps", int),
        "intervention_costs": ("intervention_categories", list),
        "perspective": ("perspective", str),
    },
}

_TUPLE_FIELDS = {"strata", "block_sizes", "wtp_eur", "intervention_categories"}


def key_line(text: str | None, dotted: str) -> int | None:
    """Line (1-based) of ``section.key`` in the TOML ``text``: the key's own line, else its
    section header; ``None`` when neither is found."""
    if not text:
        return None
    section, _, rest = dotted.partition(".")
    key = rest.split(".")[0]
    current = None
    header_line = None
    for i, line in enumerate(text.splitlines(), 1):
        st = line.strip()
        m = re.match(r"^\[\s*([^\]]+?)\s*\]", st)
        if m:
            current = m.group(1).strip().strip('"')
            if current == section and header_line is None:
                header_line = i
            continue
        if current == section and key and re.match(rf'^"?{re.escape(key)}"?\s*=', st):
            return i
    return header_line


def parse_config(data: dict[str, Any], source: str = "study.toml", text: str | None = None) -> StudyConfig:
    """Build a :class:`StudyConfig` from parsed TOML, checking every key.

    ``text`` (the file's text) lets errors name the row of the offending key.
    """
    kwargs: dict[str, Any] = {}
    for section, body in data.items():
        if section not in _SPEC:
            raise InputError(f"unknown section [{section}]", file=source, row=key_line(text, section) or 1, column=section)
        if not isinstance(body, dict):
            raise InputError(f"[{section}] must be a table", file=source, row=key_line(text, section) or 1, column=section)
        for key, value in body.items():
            if key not in _SPEC[section]:
                raise InputError(f"unknown key {section}.{key}", file=source,
                                 row=key_line(text, f"{section}.{key}") or 1, column=f"{section}.{key}")
            fname, types = _SPEC[section][key]
            if isinstance(value, bool) or not isinstance(value, types):
                raise InputError(
                    f"{section}.{key} has the wrong type ({type(value).__name__}: {value!r})",
                    file=source,
                    row=key_line(text, f"{section}.{key}") or 1,
                    column=f"{section}.{key}",
                )
            if fname in _TUPLE_FIELDS:
                value = tuple(value)
            kwargs[fname] = value
    cfg = StudyConfig(source=source, **kwargs)
    _check(cfg, source, text)
    return cfg


def _check(cfg: StudyConfig, source: str, text: str | None = None) -> None:
    def bad(key: str, msg: str) -> None:
        raise InputError(f"{key}: {msg}", file=source, row=key_line(text, key) or 1, column=key)

    if not cfg.name.strip():
        bad("study.name", "must not be empty")
    if not 1990 <= cfg.price_year <= 2100:
        bad("study.price_year", f"{cfg.price_year} is not a plausible year")
    if not 1 <= cfg.follow_up_days <= 3660:
        bad("study.follow_up_days", "must be between 1 and 3660")
    if cfg.seed < 0:
        bad("study.seed", "must be a non-negative integer")
    if not all(isinstance(s, str) and s for s in cfg.strata):
        bad("design.strata", "must be a list of column names")
    if len(set(cfg.strata)) != len(cfg.strata):
        bad("design.strata", "names a column twice")
    if cfg.assignment_method not in ("batch", "blocks", "minimisation"):
        bad("design.assignment", "must be one of batch, blocks, minimisation")
    if not cfg.block_sizes or any((not isinstance(b, int)) or b <= 0 or b % 4 for b in cfg.block_sizes):
        bad("design.block_sizes", "must be positive multiples of 4 (the 2×2 has four cells)")
    if not 0.25 <= cfg.minimisation_p <= 1:
        bad("design.minimisation_p", "must be between 0.25 and 1")
    for fam, members in cfg.families.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            bad(f"outcomes.families.{fam}", "must be a list of outcome names")
    if cfg.primary in [o for f, m in cfg.families.items() if f != "primary" for o in m]:
        bad("outcomes.primary", f"{cfg.primary} is also declared in a non-primary family")
    if cfg.mic <= 0:
        bad("outcomes.mic", "must be positive")
    if cfg.ri_draws < 100:
        bad("outcomes.ri_draws", "must be at least 100")
    if not 1 <= cfg.min_cell <= 100:
        bad("privacy.min_cell", "must be between 1 and 100")
    if not cfg.wtp_eur or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in cfg.wtp_eur):
        bad("economics.wtp_eur", "must be a non-empty list of non-negative numbers")
    if list(cfg.wtp_eur) != sorted(cfg.wtp_eur):
        bad("economics.wtp_eur", "must be increasing")
    if not 0 <= cfg.discount_rate < 1:
        bad("economics.discount_rate", "must be in [0, 1)")
    if not 1 <= cfg.horizon_years <= 50:
        bad("economics.horizon_years", "must be between 1 and 50")
    for k in ("deadweight", "attribution", "displacement", "drop_off"):
        v = getattr(cfg, k)
        if not 0 <= v < 1:
            bad(f"economics.{k}", "must be in [0, 1)")
    if cfg.bootstrap_reps < 100:
        bad("economics.bootstrap_reps", "must be at least 100")
    known = {"budget_spending", "staff_time", "teaming", "usual_services", "purchased_services", "income_support"}
    if not set(cfg.intervention_categories) <= known:
        bad("economics.intervention_costs", f"must be among {sorted(known)}")


def load_config(study_dir: str | Path) -> StudyConfig:
    """Read ``STUDY/study.toml`` (a missing file means all defaults)."""
    p = Path(study_dir) / "study.toml"
    if not p.exists():
        raise InputError("study.toml is missing: every study folder needs one (at least [study] name)", file=str(p))
    data_bytes = p.read_bytes()
    try:
        raw = data_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = data_bytes.rfind(b"\n", 0, e.start) + 1
        raise InputError(f"not UTF-8 text (byte 0x{data_bytes[e.start]:02X}); save study.toml as UTF-8", file="study.toml",
                         row=data_bytes.count(b"\n", 0, e.start) + 1, column=str(e.start - start + 1)) from e
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+), column (\d+)", str(e))
        row, col = (int(m.group(1)), m.group(2)) if m else (1, "1")
        lines = raw.splitlines()
        k = re.match(r"^\s*([A-Za-z0-9_\-\.\"]+)\s*=", lines[row - 1]) if 0 < row <= len(lines) else None
        raise InputError(f"not valid TOML: {e}", file="study.toml", row=row, column=k.group(1).strip('"') if k else col) from e
    if "study" not in data or "name" not in data.get("study", {}):
        raise InputError("[study] name is required", file="study.toml", row=key_line(raw, "study.name") or 1,
                         column="study.name")
    privacy = data.get("privacy", {})
    if isinstance(privacy, dict) and "key_env" in privacy and "key_file" in privacy:
        later = max(("key_env", "key_file"), key=lambda k: key_line(raw, f"privacy.{k}") or 0)
        raise InputError("give privacy.key_env or privacy.key_file, not both", file="study.toml",
                         row=key_line(raw, f"privacy.{later}") or 1, column=f"privacy.{later}")
    return parse_config(data, source="study.toml", text=raw)
