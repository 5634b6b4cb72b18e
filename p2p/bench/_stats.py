"""Summaries shared by the benchmarks: every figure is a median with its min and max."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def repeat(fn: Callable[[], float], times: int) -> dict[str, float]:
    """Run ``fn`` (which returns one figure) ``times`` times and summarize."""
    return summary([fn() for _ in range(max(1, times))])
