"""``manifest.json``: what produced an output folder, so that it can be re-run and checked."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

from hbeval import __version__
from hbeval.errors import InputError
from hbeval.randomisation.plan import manifest_entry as plan_entry
from hbeval.randomisation.registry import REGISTRY_NAME, head_of
from hbeval.study.config import regular_file

#: the packages whose versions can change what hbeval computes or renders (statsmodels and pingouin are
#: test-only peers since stats/glm.py and stats/dist.py; a runtime install has neither)
KEY_PACKAGES = ("numpy", "pandas", "scipy", "duckdb", "matplotlib", "papermill", "nbconvert", "weasyprint")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "hbeval": __version__}
    for p in KEY_PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def build_manifest(study, out: Path, command: list[str]) -> dict:
    """The manifest of ``out`` (results hashed as they are on disk)."""
    results = {p.name: sha256_file(p) for p in sorted((out / "results").glob("*.csv"))}
    return {
        "hbeval_version": __version__,
        "command": command,
        "study": str(Path(study.path).resolve()),
        "study_name": study.config.name,
        "seed": study.config.seed,
        "parameters": study.config.to_dict(),
        "inputs": dict(sorted(study.input_hashes.items())),
        "registry": head_of(Path(study.path) / REGISTRY_NAME),  # seq + head hash: the receipt the analysis saw
        "plan": plan_entry(study.path),  # the sealed analysis plan's SHA-256 (hbeval verify checks it), or None
        "results": results,
        "versions": package_versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "executable": sys.executable},
    }


def write_manifest(manifest: dict, out: Path) -> Path:
    p = out / "manifest.json"
    p.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return p


#: Keys a manifest must hold for ``verify``, and their JSON types.
_REQUIRED = {"study": str, "results": dict, "parameters": dict, "inputs": dict}
#: A manifest is a few kilobytes; a larger file is not one hbeval wrote.
MAX_MANIFEST_BYTES = 16 << 20


def read_manifest(out: Path) -> dict:
    """``OUT/manifest.json``, checked: a JSON object with ``study`` (text), ``results`` and
    ``inputs`` (file name → SHA-256 text) and ``parameters`` (an object).

    Raises
    ------
    InputError
        Naming ``manifest.json`` and the key, for a file that is not a regular file, not UTF-8
        JSON, or of the wrong shape.
    """
    p = Path(out) / "manifest.json"
    label = str(p)
    regular_file(p, label=label)
    if p.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"larger than {MAX_MANIFEST_BYTES >> 20} MiB: not a manifest hbeval wrote", file=label)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start}): not a manifest hbeval wrote", file=label) from e
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): the manifest is corrupt",
                         file=label, row=e.lineno, column=str(e.colno)) from e
    if not isinstance(doc, dict):
        raise InputError(f"holds a JSON {type(doc).__name__}, not an object: the manifest is corrupt", file=label)
    for key, typ in _REQUIRED.items():
        if not isinstance(doc.get(key), typ):
            got = "missing" if key not in doc else f"a {type(doc[key]).__name__}"
            raise InputError(f"'{key}' must be a JSON {'text' if typ is str else 'object'} ({got}): the manifest is "
                             "corrupt or was edited", file=label, column=key)
    for key in ("results", "inputs"):
        bad = next((k for k, v in doc[key].items() if not isinstance(v, str)), None)
        if bad is not None:
            raise InputError(f"'{key}.{bad}' must be a SHA-256 text: the manifest is corrupt or was edited", file=label,
                             column=f"{key}.{bad}")
    return doc
