"""The house style of every figure of the report (palette, rc parameters) and deterministic PNG output."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter
from matplotlib.typing import RcKeyType
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

#: colours of the four cells, the two groups, and everything else
PALETTE: dict[str, str] = {
    "frame_only/no_teaming": "#4C72B0",
    "frame_only/teaming": "#55A868",
    "frame_shares/no_teaming": "#C44E52",
    "frame_shares/teaming": "#8172B2",
    "pilot": "#C44E52",
    "comparison": "#4C72B0",
    "neutral": "#555555",
}

#: matplotlib rc parameters of every figure (``svg.hashsalt`` keeps SVG ids stable)
STYLE: dict[RcKeyType, object] = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "hbeval",
}


def new_figure(width: float = 7.0, height: float = 4.0) -> tuple[Figure, Axes]:
    """A figure and axes in the house style."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return fig, ax


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG without timestamps or software metadata (same bytes every run).

    One Agg draw at ``savefig.dpi`` (constrained layout runs inside it), written by Pillow: ``savefig`` drew
    every figure twice, a layout pass and then the picture (the same pixels; a tenth of the figure's time). An
    opaque figure (all of the report's) is written as RGB, without the alpha channel that every PDF image then
    carried as a soft mask of its own (WeasyPrint decoded and re-encoded each channel)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = float(STYLE["savefig.dpi"])  # type: ignore[arg-type]
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    with plt.rc_context(STYLE):
        fig.set_dpi(dpi)
        canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    pixels = rgba[..., :3] if bool((rgba[..., 3] == 255).all()) else rgba
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, format="PNG", dpi=(dpi, dpi))
    plt.close(fig)
    return path


def legend_below(fig: Figure, ax: Axes, ncols: int = 3, fontsize: float = 8) -> None:
    """The legend of ``ax`` below the plot, outside the axes (constrained layout makes room), so that it
    never covers data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(handles)), fontsize=fontsize,
                   frameon=False)


class _DecimalComma(ScalarFormatter):
    """Tick labels with the decimal comma (Finnish: 0,5 not 0.5)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return super().__call__(x, pos).replace(".", ",")


def localise(fig: Figure, lang: str) -> Figure:
    """Numeric tick labels in ``lang``'s number form (the decimal comma in Finnish); label ticks stay as they are."""
    if lang == "fi":
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                if type(axis.get_major_formatter()) is ScalarFormatter:
                    axis.set_major_formatter(_DecimalComma())
    return fig
