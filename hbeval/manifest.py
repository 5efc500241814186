"""``manifest.json``: what produced an output folder, so that it can be re-run and checked."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

from hbeval import __version__

KEY_PACKAGES = ("numpy", "pandas", "scipy", "statsmodels", "duckdb", "matplotlib", "pingouin", "papermill", "nbconvert")


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
        "results": results,
        "versions": package_versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "executable": sys.executable},
    }


def write_manifest(manifest: dict, out: Path) -> Path:
    p = out / "manifest.json"
    p.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return p


def read_manifest(out: Path) -> dict:
    p = Path(out) / "manifest.json"
    return json.loads(p.read_text(encoding="utf-8"))
