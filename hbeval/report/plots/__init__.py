"""The figures of the report: each draws from result tables (``results/*.csv``, and the CE
plane's ``replicates/ce_plane.csv``), labels itself through :mod:`hbeval.report.i18n` and
returns a matplotlib Figure in the house style (:mod:`hbeval.report.plots.style`).

No figure computes a statistic: what a figure shows is in a table that ``hbeval analyze`` wrote.
"""

from __future__ import annotations

from hbeval.report.plots.balance import plot_love
from hbeval.report.plots.comparison import plot_love_comparison, plot_overlap
from hbeval.report.plots.costs import plot_costs
from hbeval.report.plots.economics import plot_ce_plane, plot_ceac, plot_tornado
from hbeval.report.plots.effects import plot_forest
from hbeval.report.plots.flow import flow_counts, plot_flow
from hbeval.report.plots.style import PALETTE, new_figure, save

__all__ = ["PALETTE", "flow_counts", "new_figure", "plot_ce_plane", "plot_ceac", "plot_costs", "plot_flow",
           "plot_forest", "plot_love", "plot_love_comparison", "plot_overlap", "plot_tornado", "save"]
