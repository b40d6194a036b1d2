"""API-side CPU of the time buckets and shaping of one large report, without any engine.

``python -m bench.api_shape [--runs N]`` times, in this process: ``timebuckets.boundaries``
for a 30-day hourly range in UTC and in Asia/Kolkata, ``report.shape`` of the served 30-day
hourly report (720 buckets x 5 metrics, ungrouped, every bucket with data) with its points'
content keys (what a remembered answer costs, decision 0250) and with every point built (what
the first answer, or graphql-core's path, costs), and ``timebuckets.iso`` of its 720 bucket
starts.
After setup, everything alive is frozen out of the GC (``gc.freeze()``, as api.app's startup
does), so collections walk only what the timed calls allocate. Prints one JSON document: the
median and minimum ms per call over N timed runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from api import planner, report, timebuckets
from api.cells import Cell
from api.model import Granularity, Metric
from api.sources import Cells
from pulse.settings import Settings

METRICS = [
    Metric.EVENTS,
    Metric.PAYMENTS,
    Metric.GROSS_SALES,
    Metric.NET_SALES,
    Metric.PAYMENT_SUCCESS_RATE,
]  # bench.query's report
START = datetime(2024, 5, 2, tzinfo=UTC)
END = datetime(2024, 6, 1, tzinfo=UTC)
CALLS_PER_RUN = 50


def cases() -> dict[str, Callable[[], object]]:
    start, end = int(START.timestamp() * 1000), int(END.timestamp() * 1000)
    plan = planner.build_plan("m1", START, END, METRICS, now_ms=end)
    plan = planner.time_buckets(plan, Settings(max_buckets=10_000, max_points=100_000))
    cells: Cells = {(None, None): Cell(events=9999, paid=5000, gross=123_456_789, failed=10)}
    for i in range(plan.buckets):
        cells[((), i)] = Cell(events=i + 1, paid=i, gross=1000 * i + 7, failed=i % 3, refunds=i)
    utc, kolkata = timebuckets.zone("UTC"), timebuckets.zone("Asia/Kolkata")
    hour = Granularity.HOUR
    starts = plan.boundaries[:-1]
    resolved = planner.split_sources(plan, set(), None)  # all from raw: shaping reads no engine
    return {
        "boundaries_30d_hourly_utc": lambda: timebuckets.boundaries(start, end, hour, utc, 10_000),
        "boundaries_30d_hourly_kolkata": lambda: timebuckets.boundaries(
            start, end, hour, kolkata, 10_000
        ),
        "shape_720x5_ungrouped_keys": lambda: _keys(report.shape(resolved, cells, None, 0)),
        "shape_720x5_ungrouped_built": lambda: list(
            report.shape(resolved, cells, None, 0).series[0].points
        ),
        "iso_720_utc": lambda: [timebuckets.iso(ms, utc) for ms in starts],
    }


def _keys(shaped: report.Report) -> object:
    """What a remembered answer costs of shaping: the points' keys (decision 0250)."""
    points = shaped.series[0].points
    assert isinstance(points, report.Points)
    return points.item_keys()


def measure(fn: Callable[[], object], runs: int) -> dict[str, float]:
    per_call = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(CALLS_PER_RUN):
            fn()
        per_call.append((time.perf_counter() - started) / CALLS_PER_RUN * 1000)
    return {
        "median_ms": round(statistics.median(per_call), 3),
        "min_ms": round(min(per_call), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per case")
    args = parser.parse_args()
    timed = cases()
    gc.collect()
    gc.freeze()
    out: dict[str, Any] = {name: measure(fn, args.runs) for name, fn in timed.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
