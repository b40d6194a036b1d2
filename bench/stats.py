"""Small statistics helpers shared by the benchmarks."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): always one of the observed values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float], sent: int) -> dict[str, float | int | None]:
    """p50/p95/p99/max of the seen values, with how many were sent and how many seen."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "sent": sent,
        "seen": len(values),
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values)) if values else None,
    }


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
