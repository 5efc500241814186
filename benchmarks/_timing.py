"""Timing helpers the benchmark scripts share (run them as scripts: ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def timed(f: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall seconds, CPU seconds of this process, result)`` of one call of ``f``."""
    w, c = time.perf_counter(), time.process_time()
    r = f()
    return time.perf_counter() - w, time.process_time() - c, r


def mmm(x: list[float]) -> str:
    """``min / median / max`` of per-round figures, two decimals."""
    return f"{min(x):.2f} / {float(np.median(x)):.2f} / {max(x):.2f}"
