"""Ranking, its own stage: every group's totals -> the top ``limit`` groups a report shows.

groupBy returns the top ``limit`` groups by the first metric (DESIGN.md). Derived metrics
(NET_SALES, rates) cannot be ordered by the engine without scripts, so the execution stage
reads every group's totals (api.dsl.totals_requests) and they are ranked here, after money is
converted to the reporting currency (a ranking by sales must compare one currency).
"""

from __future__ import annotations

from dataclasses import dataclass

from api.fx import Converter
from api.model import Metric, ResolvedPlan
from api.report import reader
from api.sources import Cells, GroupKey, Shared, merge_into


@dataclass(frozen=True)
class Ranking:
    """The groups a report shows, best first; None when the report is not grouped."""

    groups: tuple[GroupKey, ...] | None


UNGROUPED = Ranking(None)


def ranking(
    resolved: ResolvedPlan, totals: Cells, shared: Shared, converter: Converter | None
) -> Ranking:
    """The chosen groups from every group's totals of both sources (``totals``, merged in
    place with the shared cells' group totals and converted)."""
    plan = resolved.plan
    if not plan.group_by:
        return UNGROUPED
    for part in shared.group_totals():
        merge_into(totals, part)
    if converter is not None:
        converter.convert(totals)
    return Ranking(rank(totals, plan.metrics[0], plan.limit))


def rank(cells: Cells, metric: Metric, limit: int) -> tuple[GroupKey, ...]:
    """The top ``limit`` groups by ``metric`` (nulls last, ties by group key)."""
    read = reader(metric, None)  # the metric's plain reader: ranking compares values only
    scored = []
    for (group, bucket), cell in cells.items():
        if group is None or bucket is not None:
            continue
        value = read(cell).value
        scored.append((value is None, -(value or 0.0), group))
    scored.sort()
    return tuple(group for _, _, group in scored[:limit])
