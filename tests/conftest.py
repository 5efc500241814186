"""Shared fixtures: small demo studies made once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hbeval.demo import write_demo

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A full-size demo study folder (read-only for tests: copy it before changing it)."""
    d = tmp_path_factory.mktemp("demo") / "study"
    write_demo(d)
    return d


@pytest.fixture(scope="session")
def small_demo_dir(tmp_path_factory) -> Path:
    """A small demo study folder (read-only for tests: copy it before changing it)."""
    d = tmp_path_factory.mktemp("small") / "study"
    write_demo(d, n_pilot=120, n_comparison=160, seed=7)
    return d


@pytest.fixture
def study_copy(small_demo_dir, tmp_path) -> Path:
    """A private, writable copy of the small demo study."""
    d = tmp_path / "study"
    shutil.copytree(small_demo_dir, d, ignore=shutil.ignore_patterns(".hbeval"))
    return d
