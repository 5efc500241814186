"""The notebooks of a report run in one long-lived kernel (issue 17): kernel start-up and imports
are paid once, yet each notebook starts from a clean namespace with no open figure and cells
numbered from 1; the kernel's own output never reaches the terminal; a failing notebook or a dead
kernel is a clear :class:`HbevalError`, and the kernel is shut down.

The notebooks here are tiny stand-ins (a kernel start is the cost of each test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from hbeval.errors import HbevalError
from hbeval.report import render

PARAMS = 'study = "x"\nout = None\nlang = "en"\nseed = None\n'
PID = 'import os\nopen("pids.txt", "a").write(f"{os.getpid()}\\n")\n'


def _notebooks(d: Path, *bodies: str) -> list[Path]:
    d.mkdir()
    paths = []
    for i, body in enumerate(bodies, 1):
        params = nbformat.v4.new_code_cell(PARAMS)
        params.metadata["tags"] = ["parameters"]
        cells = [params] + [nbformat.v4.new_code_cell(c) for c in body.split("\n#--\n")]
        nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                            "display_name": "Python 3"}})
        p = d / f"{i:02d}_nb.ipynb"
        nbformat.write(nb, str(p))
        paths.append(p)
    return paths


def _run(tmp_path: Path, monkeypatch, *bodies: str, jobs: int = 1) -> tuple[Path, list[Path]]:
    nbs = _notebooks(tmp_path / "nbs", *bodies)
    monkeypatch.setattr(render, "notebook_paths", lambda: nbs)
    out = tmp_path / "out"
    out.mkdir()
    ran = render.execute_notebooks(tmp_path / "study", out, "en", 1, progress=False, jobs=jobs)
    return out, ran


def _pids(out: Path) -> list[int]:
    return [int(x) for x in (out / "pids.txt").read_text().split()]


def _gone(pid: int, wait: float = 30.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a child of this process: reap it
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.2)
    return False


FIRST = PID + ('import matplotlib\nmatplotlib.use("Agg")\nimport matplotlib.pyplot as plt\nfig = plt.figure()\n'
               'leftover = 42\n#--\nimport sys\nsys.modules["hbeval_test_marker"] = sys\n'
               'assert "hbeval.report.plots" in sys.modules   # loaded as the kernel started')
LATER = PID + ('import sys\nassert "leftover" not in globals() and "plt" not in globals() and "fig" not in globals()\n'
               'assert "hbeval_test_marker" in sys.modules   # the same process: imports stay loaded\n'
               'import matplotlib.pyplot as plt\nassert plt.get_fignums() == [], plt.get_fignums()')


def test_notebooks_share_one_kernel_and_each_starts_clean(tmp_path, monkeypatch):
    out, ran = _run(tmp_path, monkeypatch, FIRST, LATER, LATER)
    assert [p.name for p in ran] == ["01_nb.ipynb", "02_nb.ipynb", "03_nb.ipynb"]
    assert all(p.parent == out / "notebooks" and p.exists() for p in ran)
    pids = _pids(out)
    assert len(pids) == 3 and len(set(pids)) == 1, pids  # one kernel for the three notebooks
    for p in ran:
        nb = nbformat.read(str(p), as_version=4)
        counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
        assert counts == list(range(1, len(counts) + 1)), (p.name, counts)  # numbered from 1 in every notebook
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert _gone(pids[0]), "the kernel is still running after the report"


def test_two_kernels_share_the_notebooks_out_in_order(tmp_path, monkeypatch):
    out, ran = _run(tmp_path, monkeypatch, PID, PID, PID, PID, jobs=2)
    assert [p.name for p in ran] == [f"0{i}_nb.ipynb" for i in range(1, 5)]
    assert 1 <= len(set(_pids(out))) <= 2 and len(_pids(out)) == 4


def test_kernel_output_never_reaches_the_terminal(tmp_path, monkeypatch, capfd):
    noise = 'import os, sys\nos.write(1, b"RAW-KERNEL-STDOUT\\n")\nos.write(2, b"RAW-KERNEL-STDERR\\n")\n'
    _run(tmp_path, monkeypatch, noise, noise)
    captured = capfd.readouterr()
    assert "RAW-KERNEL" not in captured.out + captured.err
    assert "IPKernelApp" not in captured.err and "KeyboardInterrupt" not in captured.err


def test_a_failing_notebook_names_itself_and_the_cell_and_stops_the_kernel(tmp_path, monkeypatch):
    with pytest.raises(HbevalError, match=r"02_nb\.ipynb failed in cell \d+: ValueError: boom"):
        _run(tmp_path, monkeypatch, PID, PID + "#--\nraise ValueError('boom')", PID)
    pids = _pids(tmp_path / "out")
    assert len(pids) == 2  # the third notebook did not run
    assert _gone(pids[0])


def test_a_dead_kernel_is_an_error_with_its_last_words(tmp_path, monkeypatch):
    die = PID + 'import os, sys\nos.write(2, b"last words of the kernel\\n")\nos._exit(3)'
    with pytest.raises(HbevalError, match=r"(?s)kernel running notebook 01_nb\.ipynb died.*last words of the kernel"):
        _run(tmp_path, monkeypatch, die, PID)


def test_a_kernel_that_dies_while_starting_gets_one_more_try(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = render._Kernel.run

    def flaky(self, code):
        calls["n"] += 1
        if calls["n"] == 1:  # as jupyter_client says it on a loaded machine
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(self, code)

    monkeypatch.setattr(render._Kernel, "run", flaky)
    out, ran = _run(tmp_path, monkeypatch, PID, PID)
    assert len(ran) == 2 and len(set(_pids(out))) == 1
    assert calls["n"] == 3  # the failed start, the second start, the reset between the two notebooks


def test_a_kernel_that_never_starts_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "_KERNEL_PRELOAD", "import os; os._exit(1)")  # dies before it answers, twice
    with pytest.raises(HbevalError, match="notebook kernel did not start .*died"):
        _run(tmp_path, monkeypatch, PID)
    assert not (tmp_path / "out" / "pids.txt").exists()


def test_kernels_started_for_a_report_whose_analysis_fails_stop(tmp_path, monkeypatch):
    """`hbeval report` starts the kernels before the analysis; when the analysis fails, closing the runner
    stops them without running a notebook."""
    nbs = _notebooks(tmp_path / "nbs", PID, PID)
    monkeypatch.setattr(render, "notebook_paths", lambda: nbs)
    pids: list[int] = []
    real = render._Kernel._launch

    def launch(self):
        real(self)
        pids.append(self.km.provisioner.process.pid)

    monkeypatch.setattr(render._Kernel, "_launch", launch)
    out = tmp_path / "out"
    out.mkdir()
    runner = render._NotebookRunner(out, 2, progress=False).start()
    runner.close()  # no go(): the analysis failed
    assert len(pids) == 2 and len(set(pids)) == 2
    assert all(_gone(p) for p in pids), "a kernel is still running"
    assert not (out / "pids.txt").exists() and not (out / "notebooks").exists()


def test_report_jobs_two_where_two_cpus_may_be_used(monkeypatch):
    monkeypatch.delenv("HBEVAL_REPORT_JOBS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert render._jobs() == 1 and render._adaptive()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert render._jobs() == 2
    monkeypatch.setenv("HBEVAL_REPORT_JOBS", "3")
    assert render._jobs() == 3 and not render._adaptive()


def _share(monkeypatch, busy: int, own: int, cores: int = 2, total: int = 200) -> render._CpuShare:
    """A sample in which the machine's CPUs were ``busy`` of ``total`` ticks, ``own`` of them this process's."""
    ticks = iter([(1000, 5000, cores), (1000 + busy, 5000 + total, cores)])
    owns = iter([300, 300 + own])
    monkeypatch.setattr(render, "_cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(render, "_own_ticks", lambda: next(owns))
    monkeypatch.setattr(render._CpuShare, "MIN_SECONDS", 0.0)
    return render._CpuShare()


@pytest.mark.parametrize(("busy", "own", "cores", "second"), [
    (200, 200, 2, True),  # both cores busy, with the analysis and the first kernel: nothing else runs
    (100, 100, 2, True),  # one core idle
    (200, 100, 2, False),  # another process keeps one core busy
    (140, 100, 2, True),  # ... or only 0.4 of one
    (170, 100, 2, False),  # 0.7 of one: no core to spare for a second kernel's start-up
    (400, 0, 8, True),  # 4 of 8 cores busy with others
    (760, 0, 8, False),  # 7.6 of 8
])
def test_the_second_kernel_starts_only_where_others_leave_a_core(monkeypatch, busy, own, cores, second):
    share = _share(monkeypatch, busy, own, cores, total=100 * cores)
    assert render._second_kernel_pays(share) is second


def test_the_cpu_sample_counts_this_process_and_its_children_as_its_own():
    """Measured for real: a busy child of this process is not "another process"."""
    share = render._CpuShare()
    if share.cpu0 is None:
        pytest.skip("no /proc/stat here")
    child = subprocess.Popen([sys.executable, "-c", "import time\nwhile time.process_time() < 0.6: pass"])
    child.wait()
    own = render._own_ticks() - share.own0
    assert own >= 0.5 * os.sysconf("SC_CLK_TCK")  # the child's 0.6 s of CPU
    used = share.others()
    assert used is not None and 0 <= used[0] <= used[1]
