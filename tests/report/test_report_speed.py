"""What made ``hbeval report`` faster must not change what it shows (issue 17, round 2): a figure drawn once and
written by Pillow has the pixels ``savefig`` gave it, as RGB where it is opaque; nbclient's quicker client still
sees every output of a notebook's first cell; the display tables' one-pass row lookup picks the rows the masks did.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
from PIL import Image

from hbeval.report import render
from hbeval.report.plots.style import STYLE, new_figure, save


def _figure(transparent: bool = False):
    fig, ax = new_figure(5, 3)
    x = np.linspace(0, 1, 50)
    ax.plot(x, x**2, label="a")
    ax.scatter(x[::5], x[::5], label="b")
    ax.set_title("Ääkköset 0,5")
    ax.legend()
    if transparent:
        fig.patch.set_alpha(0.0)
        ax.patch.set_alpha(0.0)
    return fig


def _savefig_pixels(fig) -> np.ndarray:
    buf = io.BytesIO()
    with plt.rc_context(STYLE):
        fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return np.asarray(Image.open(buf).convert("RGBA"))


def test_a_saved_figure_has_savefigs_pixels_as_rgb_and_the_same_bytes_every_time(tmp_path):
    p1, p2 = save(_figure(), tmp_path / "a.png"), save(_figure(), tmp_path / "b.png")
    im = Image.open(p1)
    assert im.mode == "RGB"
    assert im.info.get("dpi") and round(im.info["dpi"][0]) == STYLE["savefig.dpi"]
    assert np.array_equal(np.asarray(im.convert("RGBA")), _savefig_pixels(_figure()))
    assert p1.read_bytes() == p2.read_bytes()


def test_a_figure_with_transparent_parts_keeps_its_alpha(tmp_path):
    im = Image.open(save(_figure(transparent=True), tmp_path / "t.png"))
    assert im.mode == "RGBA"
    assert np.asarray(im)[..., 3].min() < 255
    assert np.array_equal(np.asarray(im), _savefig_pixels(_figure(transparent=True)))


def _effects() -> pd.DataFrame:
    rows = []
    for o, c, est, spec in [("y1", "frame_shares", 0.5, "primary"), ("y1", "teaming", -0.2, "primary"),
                            ("y1", "frame_shares", 9.0, "primary"),  # a duplicate: the first row counts
                            ("y2", "teaming", np.nan, "primary"), ("y3", "frame_shares", 0.1, "robustness"),
                            ("y3", "frame_shares", 7.0, "robustness")]:
        rows.append({"outcome": o, "contrast": c, "estimate": est, "ci_low": est - 1, "ci_high": est + 1,
                     "p_value": 0.04, "p_value_adj": 0.08, "method": "HC2; Westfall-Young", "spec": spec, "n": 40})
    return pd.DataFrame(rows)


def _matrix_by_masks(d: pd.DataFrame, outcomes, contrasts, lang: str, adjusted: bool) -> pd.DataFrame:
    """The lookup as it was: two boolean masks per cell."""
    rows = []
    for o in outcomes:
        s = d[d["outcome"] == o]
        if not len(s):
            continue
        row = {"outcome": render.i18n.outcome(o, lang)}
        for c in contrasts:
            r = s[s["contrast"] == c]
            row[render.i18n.value(c, lang)] = "–" if not len(r) else render.display_effects_matrix(
                r.iloc[[0]], [o], [c], lang, adjusted=adjusted, primary_only=False).iloc[0, 1]
        rows.append(row)
    return pd.DataFrame(rows)


def test_the_effects_matrix_takes_the_first_row_of_each_cell_and_skips_absent_outcomes():
    eff = _effects()
    for lang in ("en", "fi"):
        got = render.display_effects_matrix(eff, ["y0", "y1", "y2"], ["frame_shares", "teaming", "x"], lang)
        want = _matrix_by_masks(render._primary_rows(eff), ["y0", "y1", "y2"], ["frame_shares", "teaming", "x"], lang, True)
        pd.testing.assert_frame_equal(got, want)
        assert len(got) == 2 and "+0" in got.iloc[0, 1] and "9" not in got.iloc[0, 1].split(";")[0]
        assert got.iloc[0, 3] == "–"
        lin = render.display_effects_matrix(eff[eff["spec"] == "robustness"], ["y3"], ["frame_shares"], lang,
                                            adjusted=False, primary_only=False)
        assert "7" not in lin.iloc[0, 1].split(";")[0]


def test_positions_lists_every_row_of_a_key_in_order():
    d = pd.DataFrame({"outcome": ["a", "b", "a", "a"], "contrast": ["x", "x", "x", "y"]})
    assert render._positions(d) == {("a", "x"): [0, 2], ("b", "x"): [1], ("a", "y"): [3]}
    assert render._positions(d.iloc[0:0]) == {}


def test_the_first_output_of_every_notebook_reaches_its_executed_copy(tmp_path, monkeypatch):
    """The quicker client no longer waits for IOPub to fall silent before the first cell: an output printed at
    once by the first cell of each of several notebooks run in turn on one kernel is still in its executed copy."""
    d = tmp_path / "nbs"
    d.mkdir()
    nbs = []
    for i in range(1, 5):
        params = nbformat.v4.new_code_cell('study = "x"\nout = None\nlang = "en"\nseed = None\n')
        params.metadata["tags"] = ["parameters"]
        cells = [params, nbformat.v4.new_code_cell(f'print("first {i}")'),
                 nbformat.v4.new_code_cell(f'from IPython.display import display\ndisplay({{"text/plain": "second {i}"}}, raw=True)')]
        p = d / f"{i:02d}_nb.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
            "name": "python3", "language": "python", "display_name": "Python 3"}}), str(p))
        nbs.append(p)
    monkeypatch.setattr(render, "notebook_paths", lambda: nbs)
    out = tmp_path / "out"
    out.mkdir()
    ran = render.execute_notebooks(tmp_path / "study", out, "en", 1, progress=False, jobs=1)
    assert [p.name for p in ran] == [p.name for p in nbs]
    for i, p in enumerate(ran, 1):
        cells = {c.source.split("(")[0]: c for c in nbformat.read(str(p), as_version=4).cells}  # after papermill's own
        assert "".join(o.get("text", "") for o in cells["print"].outputs) == f"first {i}\n"
        assert [o["data"]["text/plain"] for o in cells["from IPython.display import display\ndisplay"].outputs] == [f"second {i}"]
