"""The committed notebooks: numbered, parameterised, stored without outputs, and runnable
unchanged in a Jupyter kernel (nbclient, as JupyterLab runs them)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from hbeval.report import render as report

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))


def test_notebooks_are_numbered_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) == 7
    assert [n[:3] for n in names] == [f"{i:02d}_" for i in range(1, 8)]
    assert report.notebook_paths() == NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: a code cell carries outputs (clear them before committing)"
            assert cell.get("execution_count") is None, f"{path.name}: a code cell carries an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_papermill_parameters_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    names = {t.id for node in ast.parse(params[0].source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert names == {"study", "out", "lang", "seed"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_thin(path):
    """Notebooks call the library; they compute nothing themselves (no arithmetic on results)."""
    nb = nbformat.read(str(path), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "Report.open(" in code
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div, ast.Sub, ast.Pow)):
            raise AssertionError(f"{path.name}: arithmetic in a notebook cell: {ast.unparse(node)}")
    for forbidden in (".mean(", ".sum(", "np.", "statsmodels", "scipy"):
        assert forbidden not in code, f"{path.name}: {forbidden}"
    assert len(code.splitlines()) < 60


def test_notebooks_run_unchanged_with_nbclient(tmp_path_factory, tmp_path):
    """Execute every committed notebook as it is (its default parameters: ``../demo_study``)
    in a Jupyter kernel, from a folder laid out like the repository."""
    from nbclient import NotebookClient
    from test_report_e2e import shared_report

    src_report = shared_report(tmp_path_factory, "en")
    study_src = Path(json.loads((src_report / "manifest.json").read_text())["study"])
    root = tmp_path / "repo"
    shutil.copytree(study_src, root / "demo_study")
    (root / "notebooks").mkdir(parents=True)
    # results of the same inputs and parameters are reused (checked by hash), as in JupyterLab after `hbeval report`
    slug = report.slug("HB demo study")
    out = root / "reports" / slug
    out.mkdir(parents=True)
    shutil.copytree(src_report / "results", out / "results")
    shutil.copytree(src_report / "replicates", out / "replicates")  # the CE planes' bootstrap replicates
    shutil.copy(src_report / "manifest.json", out / "manifest.json")
    for p in NOTEBOOKS:
        nb = nbformat.read(str(p), as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(root / "notebooks")}}).execute()
        outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outs if o.get("output_type") == "error"], p.name
        assert any(report.BLOCK_MIME in o.get("data", {}) for o in outs), p.name
    assert (out / "figures" / "01_consort_flow.png").exists()
    assert len(list((out / "figures").glob("*.png"))) == len(list((src_report / "figures").glob("*.png")))
    # the figures are the same bytes as those of `hbeval report` (same results, deterministic PNG)
    for f in (out / "figures").glob("*.png"):
        assert f.read_bytes() == (src_report / "figures" / f.name).read_bytes(), f.name
