"""hbeval: impact evaluation of personal-budget (HB) pilots in Finnish social services.

The public face, for a notebook or a script::

    import hbeval
    study = hbeval.open_study("demo_study")      # validates; raises with file/row/column
    analysis = hbeval.analyze(study)              # every result table, as DataFrames
    analysis.tables["effects"]

    report = hbeval.Report.open("demo_study")     # what the report's notebooks use
    fit = hbeval.ols_hc2(y, X)                    # a stats kernel; fit.to_frame(), shown as HTML

Names are loaded on first use, so ``import hbeval`` (and the command line) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> (module, attribute)
_FACE: dict[str, tuple[str, str]] = {
    # the study
    "open_study": ("hbeval.study.store", "open_study"),
    "Study": ("hbeval.study.store", "Study"),
    "StudyConfig": ("hbeval.study.config", "StudyConfig"),
    # the analysis
    "analyze": ("hbeval.pipeline", "analyze"),
    "Analysis": ("hbeval.pipeline", "Analysis"),
    # the report
    "Report": ("hbeval.report.render", "Report"),
    "verify": ("hbeval.report.render", "verify"),
    # result types and kernels of the statistics floor
    "OLSResult": ("hbeval.stats.ols", "OLSResult"),
    "ols_hc2": ("hbeval.stats.ols", "ols_hc2"),
    "ATTEstimate": ("hbeval.stats.propensity", "ATTEstimate"),
    "FactorialData": ("hbeval.stats.factorial", "FactorialData"),
    "factorial_data": ("hbeval.stats.factorial", "factorial_data"),
    "factorial_effects": ("hbeval.stats.factorial", "factorial_effects"),
    "CEAResult": ("hbeval.economics.cea", "CEAResult"),
    # errors
    "HbevalError": ("hbeval.errors", "HbevalError"),
    "InputError": ("hbeval.errors", "InputError"),
    "UsageError": ("hbeval.errors", "UsageError"),
}

__all__ = [
    "__version__", "open_study", "Study", "StudyConfig", "analyze", "Analysis", "Report", "verify",
    "OLSResult", "ols_hc2", "ATTEstimate", "FactorialData", "factorial_data", "factorial_effects", "CEAResult",
    "HbevalError", "InputError", "UsageError",
]
assert set(__all__) == {"__version__", *_FACE}


def __getattr__(name: str) -> Any:
    if name in _FACE:
        module, attr = _FACE[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hbeval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from hbeval.economics.cea import CEAResult
    from hbeval.errors import HbevalError, InputError, UsageError
    from hbeval.pipeline import Analysis, analyze
    from hbeval.report.render import Report, verify
    from hbeval.stats.factorial import FactorialData, factorial_data, factorial_effects
    from hbeval.stats.ols import OLSResult, ols_hc2
    from hbeval.stats.propensity import ATTEstimate
    from hbeval.study.config import StudyConfig
    from hbeval.study.store import Study, open_study
