"""hbeval: impact evaluation of personal budgeting (HB) pilots in Finnish social services."""

__version__ = "0.1.0"
__all__ = ["__version__"]
