"""Small-cell suppression and the rule that no output holds a row per person."""

from __future__ import annotations

import pandas as pd


def suppress_count(n: int | float, min_cell: int) -> str:
    """A count as text, ``"<k"`` when ``0 < n < k`` (zero stays ``"0"``)."""
    if pd.isna(n):
        return ""
    n = int(n)
    return f"<{min_cell}" if 0 < n < min_cell else str(n)


def suppress_counts(df: pd.DataFrame, columns: list[str], min_cell: int) -> pd.DataFrame:
    """Copy of ``df`` with the count ``columns`` as text, small counts shown as ``"<k"``."""
    out = df.copy()
    for c in columns:
        if c in out.columns:
            out[c] = [suppress_count(v, min_cell) for v in out[c]]
    return out


def suppress_small_groups(df: pd.DataFrame, n_column: str, value_columns: list[str], min_cell: int) -> pd.DataFrame:
    """Blank the statistics of rows whose group has fewer than ``min_cell`` families, and
    suppress the count itself. A mean of two families is as revealing as their values."""
    out = df.copy()
    small = pd.to_numeric(out[n_column], errors="coerce").fillna(0)
    small = (small > 0) & (small < min_cell)
    for c in value_columns:
        if c in out.columns:
            out[c] = out[c].astype(object)
            out.loc[small, c] = None
    return suppress_counts(out, [n_column], min_cell)
