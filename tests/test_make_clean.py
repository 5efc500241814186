"""``make clean`` removes build outputs only: none of the paths its recipe removes is, or holds, a file
that git tracks (it once deleted the committed ``reports/golden/manifest.json``)."""

from __future__ import annotations

import glob
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _clean_paths() -> list[str]:
    """The paths of every ``rm`` in the expanded recipe (``make -n clean``), globs expanded."""
    out = subprocess.run(["make", "-n", "-s", "clean"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths: list[str] = []
    for line in out.splitlines():
        if not line.lstrip().startswith("rm "):
            continue
        words = shlex.split(line)
        if words and words[0] == "rm":
            for w in (w for w in words[1:] if not w.startswith("-")):
                paths += glob.glob(w, root_dir=ROOT) or [w]
    return paths


def _tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()


def test_make_clean_removes_no_tracked_file():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    paths = _clean_paths()
    assert paths, "the clean recipe removes nothing?"
    assert "reports/golden/manifest.json" in _tracked()
    for p in paths:
        norm = p.rstrip("/")
        assert norm not in ("", ".", "reports", "tests", "hbeval"), p
        hits = [f for f in _tracked() if f == norm or f.startswith(norm + "/")]
        assert not hits, f"make clean removes {p}, which holds tracked files: {hits[:3]}"


def test_the_check_catches_a_recipe_that_removes_tracked_files():
    """The test above would fail for the old recipe (``rm -rf $(DEMO) reports/*/ .pytest_cache``)."""
    tracked = _tracked()
    old = glob.glob("reports/*/", root_dir=ROOT)
    assert any(f.startswith(p.rstrip("/") + "/") for p in old for f in tracked)
