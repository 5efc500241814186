"""The figures of the report (:mod:`hbeval.report.plots`), drawn from the tables ``hbeval
analyze`` writes: translated labels, suppressed counts that stay suppressed, the CE plane
from ``replicates/ce_plane.csv``; and the rule that ``report/`` and the notebooks call no
statistics kernel."""

from __future__ import annotations

import ast
import fcntl
import json
from pathlib import Path

import matplotlib.figure
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest

from hbeval.report import i18n, plots
from hbeval.report import render as report

ROOT = Path(__file__).resolve().parents[2]


def _shared_analysis(tmp_path_factory) -> Path:
    """``hbeval analyze`` of the shared small study (:func:`test_report_e2e.shared_study`), once per session."""
    from test_report_e2e import _shared_root, shared_study

    from hbeval.pipeline import run as analyze_run
    from hbeval.study.store import open_study

    study = shared_study(tmp_path_factory)
    base = _shared_root(tmp_path_factory)
    out = base / "analysis"
    with open(base / ".analysis.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if not (out / "manifest.json").exists():
            analyze_run(open_study(study), out, progress=False)
    return out


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return _shared_analysis(tmp_path_factory)


def _csv(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "results" / f"{name}.csv")


def _texts(fig: matplotlib.figure.Figure) -> str:
    ax = fig.axes[0]
    parts = [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    parts += [t.get_text() for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.texts)]
    leg = ax.get_legend()
    if leg is not None:
        parts += [t.get_text() for t in leg.get_texts()]
    return "\n".join(parts)


# ------------------------------------------------------------------------ the labels
def test_every_figure_label_has_both_languages():
    keys = [k for k in i18n.STRINGS if k.startswith("fig_")]
    assert len(keys) > 60
    for k in keys:
        en, fi = i18n.STRINGS[k]
        assert en and fi, k
    assert i18n.fig("costs_pilot", "fi") == "Pilotti" and i18n.fig("ce_wtp", "en", w=1000.0) == "WTP €1,000 per point"
    assert i18n.fig("tornado_unknown", "fi", default="unknown") == "unknown"
    with pytest.raises(ValueError):
        i18n.fig("love_x", "sv")


# ------------------------------------------------------------------------ the figures
@pytest.mark.parametrize("lang", ["en", "fi"])
def test_love_plot(out, lang):
    fig = plots.plot_love(_csv(out, "balance"), lang=lang)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "household_size" in labels
    assert fig.axes[0].get_title().startswith("Covariate" if lang == "en" else "Taustamuuttujien")
    assert i18n.fig("love_teaming", lang) in _texts(fig)
    plt.close(fig)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_forest_plot(out, lang):
    eff = _csv(out, "effects")
    fig = plots.plot_forest(eff, lang)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    # translated contrast labels, the non-randomised contrast marked as such
    assert i18n.value("pilot_vs_comparison", lang) in labels
    assert i18n.value("frame_shares", lang) in labels
    assert ("ei satunnaistettu" in " ".join(labels)) == (lang == "fi")
    assert ("not randomised" in " ".join(labels)) == (lang == "en")
    # one row per contrast of the primary outcome's primary specification, plus the comparison
    prim = eff[(eff["outcome"] == eff["outcome"].iloc[0]) & eff["method"].str.startswith("ancova_hc2")]
    assert len(labels) == prim["contrast"].nunique() + 1
    plt.close(fig)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_comparison_plots(out, lang):
    comp = _csv(out, "comparison")
    f1 = plots.plot_love_comparison(comp, lang)
    f2 = plots.plot_overlap(comp, lang)
    assert f1.axes and f2.axes
    assert ("ei satunnaistettu" in f1.axes[0].get_title()) == (lang == "fi")
    assert ("not randomised" in f2.axes[0].get_title()) == (lang == "en")
    # no bar shows a count below the threshold: suppressed bins are drawn empty
    heights = np.abs([p.get_height() for p in f2.axes[0].patches])
    assert heights.max() > 0 and not ((heights > 0) & (heights < 5)).any()
    widths = {round(p.get_width(), 12) for p in f2.axes[0].patches}
    assert widths == {0.05}
    plt.close(f1)
    plt.close(f2)


def _demo_costs() -> pd.DataFrame:
    from importlib.resources import files

    from hbeval.costs.engine import family_costs_from_tables
    from hbeval.demo import generate

    d = generate(60, 80, seed=11)
    uc = pd.read_csv(files("hbeval") / "data" / "unit_costs.csv")
    pi = pd.read_csv(files("hbeval") / "data" / "price_index.csv")
    return family_costs_from_tables(d.tables, uc, pi)


def test_plot_costs_in_both_languages(out):
    from hbeval.costs.engine import summarise_costs

    costs = _csv(out, "costs")
    for lang in ("en", "fi"):
        fig = plots.plot_costs(costs, lang=lang)
        assert isinstance(fig, matplotlib.figure.Figure)
        labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert len(labels) == 6 and all("n=" in x for x in labels)  # pilot, its 4 cells, comparison
        # the six categories that add up to the total are stacked; the income-support breakdown is not
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert legend == [i18n.fig(f"costs_{c}", lang) for c in plots.costs.stacked_categories(costs)]
        assert len(legend) == 6 and (i18n.fig("costs_teaming", lang) in legend)
        plt.close(fig)
    # small counts are suppressed in the figure's labels too
    fig = plots.plot_costs(summarise_costs(_demo_costs(), n_reps=100, seed=1, min_cell=15))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert any("n=<15" in x for x in labels) and not any("n=14" in x for x in labels)
    plt.close(fig)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_ce_plane_from_the_replicates_file(out, lang):
    reps = pd.read_csv(out / "replicates" / "ce_plane.csv")
    cea = _csv(out, "cea")
    assert list(reps.columns) == ["contrast", "replicate", "delta_cost", "delta_effect"]
    assert set(reps["contrast"]) <= set(cea["contrast"]) and "pilot_vs_comparison" in set(reps["contrast"])
    assert reps.groupby("contrast").size().max() <= 2000
    fig = plots.plot_ce_plane(reps, cea, "teaming", lang=lang)
    ax = fig.axes[0]
    cloud, point = ax.collections[0], ax.collections[1]
    n = int((reps["contrast"] == "teaming").sum())
    assert len(cloud.get_offsets()) == n == 2000  # the CEA draws at least 5,000 replicates
    row = cea[cea["contrast"] == "teaming"].iloc[0]
    assert tuple(point.get_offsets()[0]) == pytest.approx((row["delta_effect"], row["delta_cost_eur"]))
    # the quadrant shares are those of all replicates (cea.csv), not of the points drawn
    texts = [t.get_text() for t in ax.texts]
    assert f"NE {100 * row['share_ne']:.1f} %" in texts
    assert i18n.fig("ce_wtp", lang, w=float(row["wtp_reference_eur"])) in _texts(fig)
    assert ax.get_title() == i18n.fig("ce_plane", lang, c="teaming")
    plt.close(fig)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_ceac_and_tornado(out, lang):
    ceac = _csv(out, "ceac")
    fig = plots.plot_ceac(ceac, lang=lang)
    assert len(fig.axes[0].lines) == ceac["contrast"].nunique()
    assert fig.axes[0].get_title() == i18n.fig("ceac_title", lang)
    plt.close(fig)
    sens = _csv(out, "rosi_sensitivity")
    fig = plots.plot_tornado(sens, "pilot vs comparison", lang=lang)
    labels = " ".join(t.get_text() for t in fig.axes[0].get_yticklabels())
    assert i18n.fig("tornado_deadweight", lang) in labels
    assert ("Nollavaikutus" in labels) == (lang == "fi")
    plt.close(fig)


# ------------------------------------------------------------------ the replicates file
def test_replicates_are_not_results(out):
    """``replicates/`` is beside ``results/``: the manifest hashes results only, and a folder
    without the replicates is not current (``Report.open`` recomputes it)."""
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert "ce_plane.csv" not in man["results"] and not any("replicates" in k for k in man["results"])
    assert (out / "replicates" / "ce_plane.csv").exists()
    from hbeval.study.store import open_study

    study = open_study(Path(man["study"]))
    assert report.results_are_current(study, out)


# ------------------------------------------------------------------ no statistics in report/
STEP_PACKAGES = ("hbeval.outcomes", "hbeval.costs", "hbeval.economics", "hbeval.stats", "hbeval.randomisation")


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _steps(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.startswith(STEP_PACKAGES))


@pytest.mark.parametrize("path", sorted((ROOT / "hbeval" / "report").rglob("*.py")), ids=lambda p: p.name)
def test_report_modules_import_no_step_or_kernel(path):
    assert _steps(_imports(ast.parse(path.read_text(encoding="utf-8")))) == [], path.name


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_no_step_or_kernel(path):
    nb = nbformat.read(str(path), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert _steps(_imports(ast.parse(code))) == [], path.name
    assert "r.study." not in code.replace("r.study.unit_costs()", ""), path.name
