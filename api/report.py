"""Shaping: merged cells -> the Report of DESIGN.md (plain dataclasses; api.schema wraps them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.cells import Cell
from api.model import Dimension, Granularity, Metric, QueryPlan, Source
from api.sources import Cells, GroupKey


@dataclass(frozen=True)
class MetricValue:
    metric: Metric
    value: float | None
    error_bound: float | None


@dataclass(frozen=True)
class Point:
    start_ms: int
    values: list[MetricValue]
    complete: bool


@dataclass(frozen=True)
class Series:
    group: list[tuple[Dimension, str]]
    points: list[Point]


@dataclass
class Report:
    series: list[Series]
    totals: list[MetricValue]
    sources: list[str]
    watermark_ms: int | None
    took_ms: int
    timezone: str
    comparison: Report | None = field(default=None)


def metric_value(metric: Metric, cell: Cell) -> MetricValue:
    """One metric of one cell, by DESIGN.md's semantics; money in major units."""
    value: float | None
    bound: float | None = 0.0
    if metric is Metric.EVENTS:
        value = cell.events
    elif metric is Metric.PAYMENTS:
        value = cell.paid
    elif metric is Metric.GROSS_SALES:
        value = cell.gross / 1000
    elif metric is Metric.REFUNDS:
        value = cell.refunds / 1000
    elif metric is Metric.NET_SALES:
        value = (cell.gross - cell.refunds) / 1000
    elif metric is Metric.AVERAGE_TICKET:
        value = cell.gross / 1000 / cell.paid if cell.paid else None
    elif metric is Metric.PAYMENT_SUCCESS_RATE:
        tried = cell.paid + cell.failed
        value = cell.paid / tried if tried else None
    else:
        value, bound = cell.uniques.value()
    return MetricValue(
        metric, None if value is None else float(value), bound if value is not None else None
    )


def rank(cells: Cells, metric: Metric, limit: int) -> tuple[GroupKey, ...]:
    """The top ``limit`` groups by ``metric`` (nulls last, ties by group key)."""
    scored = []
    for (group, bucket), cell in cells.items():
        if group is None or bucket is not None:
            continue
        value = metric_value(metric, cell).value
        scored.append((value is None, -(value or 0.0), group))
    scored.sort()
    return tuple(group for _, _, group in scored[:limit])


def shape(
    plan: QueryPlan, cells: Cells, groups: tuple[GroupKey, ...] | None, took_ms: int
) -> Report:
    """Every bucket of every chosen group (zeros where no data), plus totals and meta."""
    keys: tuple[GroupKey, ...] = groups if groups is not None else ((),)
    series = [
        Series(list(zip(plan.group_by, group, strict=True)), _points(plan, cells, group))
        for group in keys
    ]
    total = cells.get((None, None), Cell())
    split = plan.split
    sources = []
    if split and split.rollups:
        sources.append(Source.ROLLUPS.value)
    if split and split.raw:
        sources.append(Source.RAW.value)
    return Report(
        series=series,
        totals=[metric_value(m, total) for m in plan.metrics],
        sources=sources,
        watermark_ms=split.watermark_ms if split else None,
        took_ms=took_ms,
        timezone=plan.timezone,
    )


def _points(plan: QueryPlan, cells: Cells, group: GroupKey) -> list[Point]:
    bounds = plan.boundaries
    out = []
    for i in range(plan.buckets):
        cell = cells.get((group, i), Cell())
        start = plan.start_ms if plan.granularity is Granularity.ALL else bounds[i]
        complete = bounds[i] >= plan.start_ms and bounds[i + 1] <= min(plan.end_ms, plan.now_ms)
        out.append(Point(start, [metric_value(m, cell) for m in plan.metrics], complete))
    return out
