"""Study parameters: ``study.toml`` read into a typed, validated :class:`StudyConfig`.

Every key has a default, so a file holding only ``[study] name`` is a valid study.
Unknown sections or keys, wrong types and contradictory values are errors that name
the file and the key (:class:`hbeval.errors.InputError`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import re
import stat
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hbeval.errors import InputError

if TYPE_CHECKING:
    from hbeval.study.schema import Instrument

#: Upper bounds of the study's parameters: beyond them a run would take hours or exhaust
#: memory, and no evaluation needs more.
MAX_DRAWS = 100_000  # outcomes.ri_draws, economics.bootstrap_reps
MAX_BLOCK_SIZE = 64  # design.block_sizes
MAX_WTP_EUR = 1e9  # economics.wtp_eur, economics.wtp_reference_eur
#: ``privacy.min_cell`` below this needs ``privacy.allow_small_cells = true`` and is said in the report.
SMALL_CELL = 5
#: The folder name derived from ``[study] name`` (:func:`slug`) must stay shorter than this.
MAX_SLUG = 100
#: A key file is a short secret: more than this many bytes is refused unread.
KEY_FILE_MAX_BYTES = 4096

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


def default_families(primary: str, instruments: dict[str, Instrument] | None = None) -> dict[str, list[str]]:
    """The outcome families of a study that declares none: :data:`DEFAULT_FAMILIES` with the
    declared ``primary`` as the primary family (the default primary joins the secondary family)
    and the outcomes of the study's own instrument definitions that no family names (a total,
    then its domains) added to the secondary family."""
    fams = {k: list(v) for k, v in DEFAULT_FAMILIES.items()}
    named = {o for m in fams.values() for o in m}
    fams["secondary"] += [o for ins in (instruments or {}).values() if ins.origin != "packaged"
                          for o in ins.outcomes if o not in named]
    if fams["primary"] != [primary]:
        fams["secondary"] = fams["primary"] + fams["secondary"]
        fams = {k: [o for o in m if o != primary] for k, m in fams.items()}
        fams["primary"] = [primary]
    return fams


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
    min_stratum_size: int | None = None  # batch: coarsen strata smaller than this (design.coarsen_strata); None: never
    allocation_key_env: str = "HBEVAL_ALLOCATION_KEY"
    allocation_key_file: str | None = None
    # outcomes
    primary: str = "kykyviisari_total"
    families: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_FAMILIES))
    mic: float = 1.0  # minimal important change of the primary outcome (an assumption)
    ri_draws: int = 10_000
    subgroups: tuple[str, ...] = ()  # pre-specified subgroups: columns of clients.csv
    # the sealed analysis plan (hbeval plan)
    plan_required: bool = False  # true: assign refuses to start before the plan is sealed
    # privacy
    min_cell: int = 5
    allow_small_cells: bool = False  # min_cell below SMALL_CELL only with this set
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
    # diagnose (the design stage; None: from the study's data, else hbeval.diagnose's defaults)
    diagnose_n_pilot: tuple[int, ...] = ()  # () : the study's pilot families, else hbeval.diagnose.DEFAULT_SIZES
    diagnose_sd: float | None = None
    diagnose_rho: float | None = None
    diagnose_attrition: float | None = None
    diagnose_effects: dict[str, float] = field(default_factory=dict)  # missing keys: mic, mic, 0
    diagnose_sims: int = 1000
    diagnose_strata: int | None = None  # equal-sized strata when the study has no clients.csv
    diagnose_ri_draws: int = 500
    # where the file came from (not a parameter; excluded from to_dict)
    source: str | None = None
    # the study's instruments: packaged ∪ STUDY/instruments/*.json (not a parameter: the
    # files are inputs, hashed as such; excluded from to_dict). None: the packaged ones.
    instruments: dict[str, Instrument] | None = field(default=None, compare=False, repr=False)

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(dataclasses.replace(self, instruments=None))
        d.pop("source", None)
        d.pop("instruments", None)
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
        return _read_secret(self.key_env, self.key_file, study_dir, "privacy.key_file")

    def allocation_key(self, study_dir: Path | None = None) -> bytes | None:
        """Secret that conceals the sequential allocation sequence."""
        return _read_secret(self.allocation_key_env, self.allocation_key_file, study_dir, "design.key_file")

    @staticmethod
    def key_id(key: bytes) -> str:
        """A short public fingerprint of a key (never the key itself)."""
        return hashlib.sha256(b"hbeval-key-id:" + key).hexdigest()[:12]


def slug(name: str) -> str:
    """``Hämeenlinna HB pilot`` → ``hameenlinna-hb-pilot`` (the default report folder name)."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s or "study"


def regular_file(path: Path, label: str | None = None) -> Path:
    """``path`` when it is (or links to) a regular file; else :class:`InputError` naming it.

    Only regular files are ever read: a folder, a FIFO (reading one waits for a writer for
    ever), a device (``/dev/zero`` never ends) or a socket is refused, and so is a dangling or
    looping symbolic link.
    """
    name = label or path.name
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        if os.path.islink(path):
            raise InputError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist", file=name) from e
        raise InputError(f"{path} does not exist", file=name) from e
    except OSError as e:  # ELOOP: a link that points at itself, directly or through others
        raise InputError(f"{path} cannot be opened ({e.strerror}: a symbolic link that loops?)", file=name) from e
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise InputError(f"{path} is {kind}; only regular files are read", file=name)
    return path


def _read_secret(env: str, file: str | None, study_dir: Path | None, key: str = "privacy.key_file") -> bytes | None:
    """The secret of ``env``, or of the key ``file`` (read at most :data:`KEY_FILE_MAX_BYTES`
    bytes of a regular file); errors name ``study.toml``, the line of ``key`` and ``key``."""
    if not file:
        val = os.environ.get(env)
        return val.encode("utf-8") if val else None
    p = Path(file)
    if not p.is_absolute() and study_dir is not None:
        p = study_dir / p

    def bad(msg: str) -> InputError:
        text = None
        if study_dir is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = (Path(study_dir) / "study.toml").read_text(encoding="utf-8-sig")
        return InputError(msg, file="study.toml", row=key_line(text, key) or 1, column=key)

    if not os.path.lexists(p):
        raise bad(f"key file {p} named in study.toml does not exist")
    try:
        regular_file(p)
    except InputError as e:
        raise bad(f"key file {e.message}") from e
    with open(p, "rb") as f:
        data = f.read(KEY_FILE_MAX_BYTES + 1)
    if len(data) > KEY_FILE_MAX_BYTES:
        raise bad(f"key file {p} is larger than {KEY_FILE_MAX_BYTES} bytes: a key file holds one short secret")
    data = data.strip()
    if not data:
        raise bad(f"key file {p} is empty")
    return data


#: How to make a key that :func:`key_problem` accepts (printed with every refusal).
KEY_HOWTO = 'make one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
MIN_KEY_BITS = 128
MIN_KEY_CHARS = 22
#: Character classes, smallest first: a key is taken to be drawn from the smallest that holds it.
_KEY_ALPHABETS: tuple[tuple[str, int], ...] = (
    (r"[0-9]+", 10), (r"[0-9a-f]+", 16), (r"[0-9A-F]+", 16), (r"[a-z]+", 26), (r"[A-Z]+", 26),
    (r"[a-z0-9]+", 36), (r"[A-Z0-9]+", 36), (r"[A-Za-z0-9]+", 62), (r"[A-Za-z0-9_\-]+", 64),
    (r"[A-Za-z0-9+/=]+", 64),
)


def key_bits(key: bytes) -> tuple[float, float]:
    """Two conservative estimates of a key's entropy, in bits: ``(capacity, spread)``.

    Notes
    -----
    * capacity :math:`= p \\log_2 |A|`, where :math:`A` is the smallest of the usual
      alphabets (digits, hex, lower or upper case, alphanumeric, base64/base64url; else the
      95 printable ASCII characters) that holds every character of the key, and :math:`p` is
      the length of its shortest period that repeats at least twice, else its length
      (``"ab" * 20`` has :math:`p = 2`);
    * spread :math:`= n \\, \\hat H`, the key's length times the empirical Shannon entropy
      :math:`\\hat H = -\\sum_c \\hat p_c \\log_2 \\hat p_c` of its characters
      (``"a" * 39 + "b"`` has a spread of 6.7 bits).

    A key drawn uniformly from :math:`A` has :math:`n \\log_2 |A|` bits; neither estimate can
    exceed that, so both err on the side of refusing.
    """
    text = key.decode("utf-8", errors="replace")
    n = len(text)
    if n == 0:
        return 0.0, 0.0
    size = next((k for pat, k in _KEY_ALPHABETS if re.fullmatch(pat, text)), 95)
    period = next((p for p in range(1, n // 2 + 1) if all(text[i] == text[i + p] for i in range(n - p))), n)
    counts = [text.count(c) for c in set(text)]
    spread = -sum(c * math.log2(c / n) for c in counts)
    return period * math.log2(size), spread


def key_problem(key: bytes) -> str | None:
    """Why ``key`` is too weak to be an hbeval secret, or ``None`` when it will do.

    The rule (conservative, so that no weak key passes and random keys do):

    * at least :data:`MIN_KEY_CHARS` (22) characters, the length of 128 random bits in base64;
    * a capacity of at least 128 bits (:func:`key_bits`): 22 base64url characters, 32 hex
      digits, 28 lower-case letters or 39 decimal digits, none of it repeating a shorter part;
    * a spread of at least 64 bits: its characters are not concentrated on a few
      (``"a" * 40`` and ``"aaaa…ab"`` fail; a random 22-character base64url key has ~90).

    ``secrets.token_urlsafe(32)`` (43 characters, 256 bits) passes with a wide margin.
    """
    n = len(key.decode("utf-8", errors="replace"))
    capacity, spread = key_bits(key)
    if n < MIN_KEY_CHARS:
        return f"it has {n} characters; a key needs at least {MIN_KEY_CHARS} random ones"
    if capacity < MIN_KEY_BITS:
        return f"it holds at most {capacity:.0f} bits of randomness; a key needs {MIN_KEY_BITS}"
    if spread < MIN_KEY_BITS / 2:
        return f"its characters repeat too much ({spread:.0f} bits by their spread); a key needs random characters"
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
        "min_stratum_size": ("min_stratum_size", int),
        "key_env": ("allocation_key_env", str),
        "key_file": ("allocation_key_file", str),
    },
    "outcomes": {
        "primary": ("primary", str),
        "families": ("families", dict),
        "mic": ("mic", (int, float)),
        "ri_draws": ("ri_draws", int),
        "subgroups": ("subgroups", list),
    },
    "plan": {
        "required": ("plan_required", bool),
    },
    "privacy": {
        "min_cell": ("min_cell", int),
        "allow_small_cells": ("allow_small_cells", bool),
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
    "diagnose": {
        "n_pilot": ("diagnose_n_pilot", list),
        "sd": ("diagnose_sd", (int, float)),
        "rho": ("diagnose_rho", (int, float)),
        "attrition": ("diagnose_attrition", (int, float)),
        "effects": ("diagnose_effects", dict),
        "sims": ("diagnose_sims", int),
        "strata": ("diagnose_strata", int),
        "ri_draws": ("diagnose_ri_draws", int),
    },
}

_TUPLE_FIELDS = {"strata", "block_sizes", "wtp_eur", "intervention_categories", "diagnose_n_pilot", "subgroups"}


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


def parse_config(data: dict[str, Any], source: str = "study.toml", text: str | None = None,
                 instruments: dict[str, Instrument] | None = None) -> StudyConfig:
    """Build a :class:`StudyConfig` from parsed TOML, checking every key.

    ``text`` (the file's text) lets errors name the row of the offending key; ``instruments``
    (the study's, :func:`hbeval.study.schema.instruments`) are the ones its outcomes may name.
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
            if (isinstance(value, bool) and types is not bool) or not isinstance(value, types):
                raise InputError(
                    f"{section}.{key} has the wrong type ({type(value).__name__}: {value!r})",
                    file=source,
                    row=key_line(text, f"{section}.{key}") or 1,
                    column=f"{section}.{key}",
                )
            if fname in _TUPLE_FIELDS and isinstance(value, list):  # their TOML type is a list (checked above)
                value = tuple(value)
            kwargs[fname] = value
    if "families" not in kwargs:  # the defaults follow the declared primary and the study's own instruments
        kwargs["families"] = default_families(kwargs.get("primary", StudyConfig.primary), instruments)
    cfg = StudyConfig(source=source, instruments=instruments, **kwargs)
    check_config(cfg, source, text)
    return cfg


def known_outcomes(instruments: dict[str, Instrument] | None = None) -> set[str]:
    """Every outcome name a study may declare: each instrument's total and domains
    (:func:`hbeval.study.scoring.outcome_names`; ``instruments``: the study's, ``None``: the
    packaged ones) and the process and prevention outcomes."""
    from hbeval.study.scoring import outcome_names  # loads pandas and the schema: only when a file is checked

    return set(outcome_names(instruments)) | {o for fam in DEFAULT_FAMILIES.values() for o in fam}


def check_config(cfg: StudyConfig, source: str = "study.toml", text: str | None = None) -> None:
    """Check every value of ``cfg`` (ranges, upper bounds, outcome names).

    Raises
    ------
    InputError
        Naming ``source``, the line of the key in ``text`` (when given) and the key.
    """
    def bad(key: str, msg: str) -> None:
        raise InputError(f"{key}: {msg}", file=source, row=key_line(text, key) or 1, column=key)

    if not cfg.name.strip():
        bad("study.name", "must not be empty")
    if len(slug(cfg.name)) >= MAX_SLUG or len(cfg.name) > 4 * MAX_SLUG:
        bad("study.name", f"is too long: the report folder named after it ({slug(cfg.name)[:40]}...) must stay "
                          f"under {MAX_SLUG} characters; shorten the name")
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
    if cfg.min_stratum_size is not None and not 1 <= cfg.min_stratum_size <= 10_000:
        bad("design.min_stratum_size", "must be between 1 and 10000 families")
    if cfg.assignment_method not in ("batch", "blocks", "minimisation"):
        bad("design.assignment", "must be one of batch, blocks, minimisation")
    if not cfg.block_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b <= 0 or b % 4 for b in cfg.block_sizes):
        bad("design.block_sizes", "must be positive multiples of 4 (the 2×2 has four cells)")
    if max(cfg.block_sizes) > MAX_BLOCK_SIZE or len(cfg.block_sizes) > MAX_BLOCK_SIZE // 4:
        bad("design.block_sizes", f"must be at most {MAX_BLOCK_SIZE} (and at most {MAX_BLOCK_SIZE // 4} sizes)")
    if not 0.25 <= cfg.minimisation_p <= 1:
        bad("design.minimisation_p", "must be between 0.25 and 1")
    for fam, members in cfg.families.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            bad(f"outcomes.families.{fam}", "must be a list of outcome names")
    if cfg.primary in [o for f, m in cfg.families.items() if f != "primary" for o in m]:
        bad("outcomes.primary", f"{cfg.primary} is also declared in a non-primary family")
    _check_outcome_names(cfg, bad)
    if not all(isinstance(s, str) and s for s in cfg.subgroups) or len(set(cfg.subgroups)) != len(cfg.subgroups):
        bad("outcomes.subgroups", "must be a list of distinct column names of clients.csv")
    for k in ("mic", "minimisation_p", "wtp_reference_eur", "discount_rate", "deadweight", "attribution", "displacement",
              "drop_off"):
        if not math.isfinite(getattr(cfg, k)):
            bad(_KEY_OF[k], "must be a finite number")
    if cfg.mic <= 0:
        bad("outcomes.mic", "must be positive")
    if not 100 <= cfg.ri_draws <= MAX_DRAWS:
        bad("outcomes.ri_draws", f"must be between 100 and {MAX_DRAWS:,}")
    if not 1 <= cfg.min_cell <= 100:
        bad("privacy.min_cell", "must be between 1 and 100")
    if cfg.min_cell < SMALL_CELL and not cfg.allow_small_cells:
        bad("privacy.min_cell", f"{cfg.min_cell} is below {SMALL_CELL}: counts that small can identify families; "
                                "set privacy.allow_small_cells = true to allow it (the report then says so)")
    if not cfg.wtp_eur or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= MAX_WTP_EUR
                              for w in cfg.wtp_eur):
        bad("economics.wtp_eur", f"must be a non-empty list of numbers between 0 and {MAX_WTP_EUR:g}")
    if not 0 <= cfg.wtp_reference_eur <= MAX_WTP_EUR:
        bad("economics.wtp_reference_eur", f"must be between 0 and {MAX_WTP_EUR:g}")
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
    if not 100 <= cfg.bootstrap_reps <= MAX_DRAWS:
        bad("economics.bootstrap_reps", f"must be between 100 and {MAX_DRAWS:,}")
    known = {"budget_spending", "staff_time", "teaming", "usual_services", "purchased_services", "income_support"}
    if not set(cfg.intervention_categories) <= known:
        bad("economics.intervention_costs", f"must be among {sorted(known)}")
    _check_diagnose(cfg, bad)


#: ``[diagnose]`` bounds: pilot sizes, simulations, equal-sized strata
MIN_DIAGNOSE_SIZE, MAX_DIAGNOSE_SIZE = 8, 100_000
MIN_SIMS, MAX_SIMS = 10, 100_000
MAX_DIAGNOSE_STRATA = 1_000
DIAGNOSE_EFFECTS = ("frame_shares", "teaming", "interaction")
#: ``[diagnose]`` fallbacks when neither study.toml nor the study's data give a value: the SD of
#: the primary outcome (Kykyviisari's total is scored 0–10; 1.6 is the contract's example), a
#: cautious start–end correlation, a share without an end score, and the pilot sizes
DIAGNOSE_DEFAULT_SD = 1.6
DIAGNOSE_DEFAULT_RHO = 0.5
DIAGNOSE_DEFAULT_ATTRITION = 0.2
DIAGNOSE_DEFAULT_SIZES: tuple[int, ...] = (40, 80, 160, 320)


def _check_diagnose(cfg: StudyConfig, bad: Any) -> None:
    """Bounds of ``[diagnose]``: sizes 8–100,000, sims 10–100,000, ``sd > 0``, ``0 ≤ rho < 1``,
    ``0 ≤ attrition < 1``, effects named by factor and finite, RI draws 0 (none) or 100–100,000."""
    sizes = cfg.diagnose_n_pilot
    if any(isinstance(v, bool) or not isinstance(v, int) or not MIN_DIAGNOSE_SIZE <= v <= MAX_DIAGNOSE_SIZE for v in sizes):
        bad("diagnose.n_pilot", f"must be a list of whole numbers between {MIN_DIAGNOSE_SIZE} and {MAX_DIAGNOSE_SIZE:,}")
    if len(set(sizes)) != len(sizes) or len(sizes) > 50:
        bad("diagnose.n_pilot", "must not repeat a size (and at most 50 sizes)")
    if cfg.diagnose_sd is not None and not (math.isfinite(cfg.diagnose_sd) and cfg.diagnose_sd > 0):
        bad("diagnose.sd", "must be a positive number")
    for k in ("rho", "attrition"):
        v = getattr(cfg, f"diagnose_{k}")
        if v is not None and not (math.isfinite(v) and 0 <= v < 1):
            bad(f"diagnose.{k}", "must be in [0, 1)")
    for k, v in cfg.diagnose_effects.items():
        if k not in DIAGNOSE_EFFECTS:
            bad("diagnose.effects", f"unknown effect {k!r}: name frame_shares, teaming or interaction")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 1e6:
            bad("diagnose.effects", f"{k} must be a finite number of outcome points")
    if not MIN_SIMS <= cfg.diagnose_sims <= MAX_SIMS:
        bad("diagnose.sims", f"must be between {MIN_SIMS} and {MAX_SIMS:,}")
    if cfg.diagnose_strata is not None and not 1 <= cfg.diagnose_strata <= MAX_DIAGNOSE_STRATA:
        bad("diagnose.strata", f"must be between 1 and {MAX_DIAGNOSE_STRATA:,}")
    if cfg.diagnose_ri_draws != 0 and not 100 <= cfg.diagnose_ri_draws <= MAX_DRAWS:
        bad("diagnose.ri_draws", f"must be 0 (no randomisation inference) or between 100 and {MAX_DRAWS:,}")


#: ``section.key`` of each field, for messages.
_KEY_OF = {fname: f"{section}.{key}" for section, keys in _SPEC.items() for key, (fname, _) in keys.items()}


def _check_outcome_names(cfg: StudyConfig, bad: Any) -> None:
    """Every declared outcome must be one hbeval computes (else ``analyze`` would crash on an
    unknown primary, or give empty rows for an unknown secondary)."""
    from hbeval.study.scoring import open_item_outcome  # loads pandas and the schema: only when a file is checked

    known = known_outcomes(cfg.instruments)
    known |= {o for o in [cfg.primary, *(m for ms in cfg.families.values() for m in ms)]
              if isinstance(o, str) and open_item_outcome(o, cfg.instruments)}
    if cfg.primary not in known:
        bad("outcomes.primary", f"unknown outcome {cfg.primary!r}: use an instrument total (kykyviisari_total, "
                                "kompassi_total, satisfaction_total), a domain (kykyviisari_mieli, ...) or a process outcome")
    for fam, members in cfg.families.items():
        unknown = [m for m in members if m not in known]
        if unknown:
            bad(f"outcomes.families.{fam}", f"unknown outcome {unknown[0]!r} (the instruments' totals and domains "
                                            "and the process outcomes are known)")


def load_config(study_dir: str | Path) -> StudyConfig:
    """Read ``STUDY/study.toml`` (a missing file means all defaults)."""
    p = Path(study_dir) / "study.toml"
    if not os.path.lexists(p):
        raise InputError("study.toml is missing: every study folder needs one (at least [study] name)", file=str(p))
    regular_file(p, label="study.toml")
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
    from hbeval.study.schema import instruments  # the schema imports this module

    return parse_config(data, source="study.toml", text=raw, instruments=instruments(study_dir))
