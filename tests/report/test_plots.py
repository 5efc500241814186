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
import matplotlib.text
import nbformat
import numpy as np
import pandas as pd
import pytest

from hbeval.report import i18n, plots
from hbeval.report import render as report
from hbeval.report.plots.subgroups import plot_subgroups

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
    for leg in (ax.get_legend(), *fig.legends):
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
    assert i18n.fig("costs_pilot", "fi") == "Pilotti" and i18n.fig("ce_wtp", "en", w="1\u202f000") == "WTP €1\u202f000 per point"
    assert i18n.fig("tornado_unknown", "fi", default="unknown") == "unknown"
    with pytest.raises(ValueError):
        i18n.fig("love_x", "sv")


# ------------------------------------------------------------------------ the figures
@pytest.mark.parametrize("lang", ["en", "fi"])
def test_love_plot(out, lang):
    fig = plots.plot_love(_csv(out, "balance"), lang=lang)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert i18n.variable("household_size", lang) in labels and "household_size" not in labels
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
    assert ("not randomised" in f2.get_suptitle()) == (lang == "en")
    # no bar shows a count below the threshold: suppressed bins are drawn empty
    heights = np.array([p.get_height() for ax in f2.axes for p in ax.patches])
    assert heights.max() > 0 and not ((heights > 0) & (heights < 5)).any()
    assert (heights >= 0).all()  # counts are never drawn below zero (no mirrored histogram)
    widths = {round(p.get_width(), 12) for ax in f2.axes for p in ax.patches}
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
    return family_costs_from_tables(d.tables, uc, pi, price_year=2024, follow_up_days=365,
                                    strata=("site", "service_line"))


def test_plot_costs_in_both_languages(out):
    from hbeval.costs.engine import summarise_costs

    costs = _csv(out, "costs")
    for lang in ("en", "fi"):
        fig = plots.plot_costs(costs, lang=lang)
        assert isinstance(fig, matplotlib.figure.Figure)
        labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert len(labels) == 6 and all("n=" in x for x in labels)  # pilot, its 4 cells, comparison
        # the six categories that add up to the total are stacked; the income-support breakdown is not
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
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
    assert f"{i18n.value('NE', lang)} {i18n.num(row['share_ne'], lang, 1, percent=True)}" in texts
    assert i18n.fig("ce_wtp", lang, w=i18n.num(row["wtp_reference_eur"], lang, 0)) in _texts(fig)
    assert ax.get_title() == i18n.fig("ce_plane", lang, c=i18n.value("teaming", lang))
    plt.close(fig)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_ceac_and_tornado(out, lang):
    ceac = _csv(out, "ceac")
    fig = plots.plot_ceac(ceac, lang=lang)
    # every contrast but the interaction (a difference of differences, not a programme to adopt)
    assert len(fig.axes[0].lines) == ceac["contrast"].nunique() - 1
    assert fig.axes[0].get_title() == i18n.fig("ceac_title", lang)
    plt.close(fig)
    sens = _csv(out, "rosi_sensitivity")
    fig = plots.plot_tornado(sens, "pilot vs comparison", lang=lang)
    labels = " ".join(t.get_text() for t in fig.axes[0].get_yticklabels())
    assert i18n.fig("tornado_deadweight", lang) in labels
    assert ("Nollavaikutus" in labels) == (lang == "fi")
    plt.close(fig)


# ------------------------------------------------------------------ fit for print (report-print)
def _all_figures(out: Path, lang: str) -> dict[str, matplotlib.figure.Figure]:
    reps = pd.read_csv(out / "replicates" / "ce_plane.csv")
    return {
        "love": plots.plot_love(_csv(out, "balance"), lang),
        "forest": plots.plot_forest(_csv(out, "effects"), lang, mic=1.0),
        "love_comparison": plots.plot_love_comparison(_csv(out, "comparison"), lang),
        "overlap": plots.plot_overlap(_csv(out, "comparison"), lang),
        "costs": plots.plot_costs(_csv(out, "costs"), lang),
        "ce_plane": plots.plot_ce_plane(reps, _csv(out, "cea"), "pilot_vs_comparison", lang),
        "ceac": plots.plot_ceac(_csv(out, "ceac"), lang),
        "tornado": plots.plot_tornado(_csv(out, "rosi_sensitivity"), lang=lang),
    }


def figure_texts(fig: matplotlib.figure.Figure) -> list[str]:
    """Every text a reader sees in ``fig``: titles, axis labels, tick labels, texts and legends."""
    fig.canvas.draw()
    out = [fig.get_suptitle()] + [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_title(loc="left"), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.texts)]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    return [t for t in out if t]


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_legends_are_off_the_data_and_nothing_is_clipped(out, lang):
    for name, fig in _all_figures(out, lang).items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        fbox = fig.bbox
        for ax in fig.axes:
            assert ax.get_legend() is None, f"{name}: a legend inside the axes"
            abox = ax.get_window_extent(renderer)
            for leg in fig.legends:
                lbox = leg.get_window_extent(renderer)
                assert not lbox.overlaps(abox), f"{name}: the legend overlaps the plot"
            # every text (titles, tick labels) inside the figure
            for t in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_yticklabels()):
                if t.get_text() and t.get_visible():
                    b = t.get_window_extent(renderer)
                    assert b.x0 >= fbox.x0 - 1 and b.x1 <= fbox.x1 + 1, f"{name}: {t.get_text()!r} runs off the figure"
        plt.close(fig)


def test_cost_bars_stay_inside_the_axes(out):
    fig = plots.plot_costs(_csv(out, "costs"))
    ax = fig.axes[0]
    tops = [p.get_y() + p.get_height() for p in ax.patches]
    assert max(tops) <= ax.get_ylim()[1]
    plt.close(fig)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_forest_plot_marks_the_mic(out, lang):
    fig = plots.plot_forest(_csv(out, "effects"), lang, mic=0.5)
    xs = sorted(float(ln.get_xdata()[0]) for ln in fig.axes[0].lines if ln.get_linestyle() == ":")
    assert xs == [-0.5, 0.5]
    assert i18n.fig("forest_mic", lang, mic=i18n.num(0.5, lang, 2)) in figure_texts(fig)
    plt.close(fig)
    fig = plots.plot_forest(_csv(out, "effects"), lang)  # no MIC given: no line
    assert not [ln for ln in fig.axes[0].lines if ln.get_linestyle() == ":"]
    plt.close(fig)


def test_no_negative_counts_on_count_axes(out):
    fig = plots.plot_overlap(_csv(out, "comparison"))
    for ax in fig.axes:
        assert ax.get_ylim()[0] >= 0
        fig.canvas.draw()
        assert not [t.get_text() for t in ax.get_yticklabels() if t.get_text().startswith(("-", "−"))]
    plt.close(fig)


def test_figure_fonts_are_readable(out):
    """At the width the report prints them (at most the 182 mm text width of A4), no text is below 7 pt."""
    for name, fig in _all_figures(out, "fi").items():
        scale = min(1.0, (182 / 25.4) / fig.get_figwidth())
        fig.canvas.draw()
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_visible()]
        small = {t.get_text() for t in texts if t.get_fontsize() * scale < 7}
        assert not small, f"{name}: {sorted(small)[:3]}"
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


def test_finnish_subgroup_forest_plot_uses_the_decimal_comma():
    """The subgroup forest plot in Finnish: ticks and the heterogeneity p-values in its panel
    titles with the decimal comma (the first version printed "p = 0.496")."""
    rows = []
    for c in ("frame_shares", "teaming"):
        for lv, est in (("home_help", 0.27), ("family_work", 0.37)):
            rows.append({"outcome": "kykyviisari_total", "contrast": c, "subgroup": f"service_line={lv}", "spec": "subgroup",
                         "estimate": est, "ci_low": est - 0.4, "ci_high": est + 0.4, "n": 80, "p_value": np.nan,
                         "p_value_ri": np.nan, "note": ""})
        rows.append({"outcome": "kykyviisari_total", "contrast": c, "subgroup": "service_line", "spec": "heterogeneity",
                     "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 160, "p_value": 0.4964,
                     "p_value_ri": 0.4888, "note": ""})
        rows.append({"outcome": "kykyviisari_total", "contrast": c, "subgroup": np.nan, "spec": "primary",
                     "estimate": 0.3, "ci_low": 0.1, "ci_high": 0.5, "n": 160, "p_value": 0.01, "p_value_ri": 0.01,
                     "note": ""})
    fig = plot_subgroups(pd.DataFrame(rows), "service_line", lang="fi", mic=1.0)
    fig.canvas.draw()
    texts = [ax.get_title() for ax in fig.axes] + [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    plt.close(fig)
    assert any("0,496" in t for t in texts) and any("0,489" in t for t in texts)
    assert not any(ch.isdigit() and "." in t for t in texts for ch in t), texts
