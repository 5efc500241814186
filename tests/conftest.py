"""Shared fixtures: small demo studies made once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# One BLAS thread per test process (issue 17), set before numpy loads and inherited by the hbeval
# subprocesses and notebook kernels the tests start: ``make test`` runs 2 xdist workers on 2 cores,
# and OpenBLAS's own threads (spinning while they wait) then oversubscribe the machine; the batched
# simulation tests ran up to 10x slower that way. Results do not depend on the thread count (see
# hbeval.stats.ri.blas_single_thread). A value already set wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from hbeval.demo import write_demo  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")
# numpy may have been loaded by a plugin before this file: limit the already-started pools too
_BLAS_LIMIT = threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")


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


#: test modules whose module-scoped fixtures build something expensive (a report, an analysed study,
#: the demo's tables): under ``make test`` each runs on one xdist worker, which builds them once
EXPENSIVE_MODULES = {
    "tests/test_crash.py",  # reported: a full `hbeval report` in a subprocess
    "tests/test_privacy.py",  # run, codes_run: validate + analyze + report
    "tests/test_bad_input.py",  # base, analysed
    "tests/test_disclosure.py",  # published, demo_tables, small_tables
    "tests/randomisation/test_plan.py",  # analysed
    "tests/randomisation/test_assign_study.py",  # demo
    "tests/outcomes/test_effects.py",  # study, effects (400 + 500 families)
    "tests/outcomes/test_comparison.py",  # demo_comparison
    "tests/outcomes/test_outcomes.py",  # study, frame
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadgroup`` (``make test``, issue 17): the tests of :data:`EXPENSIVE_MODULES` form
    one work unit per module; every other test is scheduled on its own, the largest units first.

    Plain ``--dist load`` splits a module between the workers and each builds its module fixtures.
    xdist's own ``loadgroup`` (``xdist_group`` marks) does nothing with pytest 9: it renames
    ``item._nodeid``, which pytest 9 no longer reads, so every test stays its own unit.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in EXPENSIVE_MODULES else nodeid

    return ModuleGroups(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first (the collection order otherwise): under xdist no long test is
    then left alone at the end of the run."""
    items.sort(key=lambda it: it.get_closest_marker("slow") is None)
