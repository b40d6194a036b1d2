"""Shaping: merged cells -> the Report of DESIGN.md (plain dataclasses; api.schema wraps them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise

from api.cells import Cell
from api.model import Base, Dimension, Granularity, Metric, QueryPlan, Source
from api.money import Currencies
from api.sources import Cells, GroupKey


@dataclass(frozen=True)
class MetricValue:
    metric: Metric
    value: float | None
    error_bound: float | None
    currency: str | None = None  # money metrics: ISO 4217 code (api.money); None otherwise


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


FIRST_PURCHASES = "first_purchases"  # meta.sources of reports using the first-purchase state
Reader = Callable[[Cell], MetricValue]  # one metric of a cell


def _events(cell: Cell) -> float | None:
    return float(cell.events)


def _payments(cell: Cell) -> float | None:
    return float(cell.paid)


def _gross_sales(cell: Cell) -> float | None:
    return cell.gross / 1000


def _refunds(cell: Cell) -> float | None:
    return cell.refunds / 1000


def _net_sales(cell: Cell) -> float | None:
    return (cell.gross - cell.refunds) / 1000


def _average_ticket(cell: Cell) -> float | None:
    return cell.gross / 1000 / cell.paid if cell.paid else None


def _payment_success_rate(cell: Cell) -> float | None:
    tried = cell.paid + cell.failed
    return cell.paid / tried if tried else None


def _new_customers(cell: Cell) -> float | None:
    return float(cell.new_customers)


def _returning_customers(cell: Cell) -> float | None:
    return float(cell.returning_customers)


def _failed_payments(cell: Cell) -> float | None:
    return float(cell.failed)


def _refund_rate(cell: Cell) -> float | None:
    return cell.refunds / cell.gross if cell.gross else None


def _disputes(cell: Cell) -> float | None:
    return float(cell.disputes)


def _dispute_rate(cell: Cell) -> float | None:
    return cell.disputes / cell.paid if cell.paid else None


def _exact(
    metric: Metric, value_of: Callable[[Cell], float | None], currency: str | None = None
) -> Reader:
    """A metric computed exactly from counts and sums: bound 0, or None with the value."""

    def read(cell: Cell) -> MetricValue:
        value = value_of(cell)
        return MetricValue(metric, value, None if value is None else 0.0, currency)

    return read


def _unique_customers(cell: Cell) -> MetricValue:
    value, bound = cell.uniques.value()  # the one estimate: its bound comes with it
    return MetricValue(Metric.UNIQUE_CUSTOMERS, float(value), bound)


# One reader per metric, so shaping dispatches on the metric once per report, not per value.
_READERS: dict[Metric, Reader] = {
    Metric.EVENTS: _exact(Metric.EVENTS, _events),
    Metric.PAYMENTS: _exact(Metric.PAYMENTS, _payments),
    Metric.GROSS_SALES: _exact(Metric.GROSS_SALES, _gross_sales),
    Metric.REFUNDS: _exact(Metric.REFUNDS, _refunds),
    Metric.NET_SALES: _exact(Metric.NET_SALES, _net_sales),
    Metric.AVERAGE_TICKET: _exact(Metric.AVERAGE_TICKET, _average_ticket),
    Metric.PAYMENT_SUCCESS_RATE: _exact(Metric.PAYMENT_SUCCESS_RATE, _payment_success_rate),
    Metric.UNIQUE_CUSTOMERS: _unique_customers,
    Metric.NEW_CUSTOMERS: _exact(Metric.NEW_CUSTOMERS, _new_customers),
    Metric.RETURNING_CUSTOMERS: _exact(Metric.RETURNING_CUSTOMERS, _returning_customers),
    Metric.FAILED_PAYMENTS: _exact(Metric.FAILED_PAYMENTS, _failed_payments),
    Metric.REFUND_RATE: _exact(Metric.REFUND_RATE, _refund_rate),
    Metric.DISPUTES: _exact(Metric.DISPUTES, _disputes),
    Metric.DISPUTE_RATE: _exact(Metric.DISPUTE_RATE, _dispute_rate),
}


_MONEY: dict[Metric, Callable[[Cell], float | None]] = {
    Metric.GROSS_SALES: _gross_sales,
    Metric.REFUNDS: _refunds,
    Metric.NET_SALES: _net_sales,
    Metric.AVERAGE_TICKET: _average_ticket,
}


@cache
def reader(metric: Metric, currency: str | None) -> Reader:
    """The reader of ``metric`` whose money values carry ``currency`` (one per pair)."""
    if currency is None or metric not in _MONEY:
        return _READERS[metric]
    return _exact(metric, _MONEY[metric], currency)


def metric_value(metric: Metric, cell: Cell) -> MetricValue:
    """One metric of one cell, by DESIGN.md's semantics; money in major units."""
    return _READERS[metric](cell)


def rank(cells: Cells, metric: Metric, limit: int) -> tuple[GroupKey, ...]:
    """The top ``limit`` groups by ``metric`` (nulls last, ties by group key)."""
    read = _READERS[metric]
    scored = []
    for (group, bucket), cell in cells.items():
        if group is None or bucket is not None:
            continue
        value = read(cell).value
        scored.append((value is None, -(value or 0.0), group))
    scored.sort()
    return tuple(group for _, _, group in scored[:limit])


def shape(
    plan: QueryPlan,
    cells: Cells,
    groups: tuple[GroupKey, ...] | None,
    took_ms: int,
    currencies: Currencies | None = None,
) -> Report:
    """Every bucket of every chosen group (zeros where no data), plus totals and meta."""
    money = currencies or Currencies()
    keys: tuple[GroupKey, ...] = groups if groups is not None else ((),)
    series = [
        Series(list(zip(plan.group_by, group, strict=True)), _points(plan, cells, group, money))
        for group in keys
    ]
    total = cells.get((None, None), Cell())
    split = plan.split
    sources = []
    if split and split.rollups:
        sources.append(Source.ROLLUPS.value)
    if (split and split.raw) or Base.FIRSTS in plan.bases:
        sources.append(Source.RAW.value)
    if Base.FIRSTS in plan.bases:
        sources.append(FIRST_PURCHASES)
    return Report(
        series=series,
        totals=[_total(m, total, money) for m in plan.metrics],
        sources=sources,
        watermark_ms=split.watermark_ms if split else None,
        took_ms=took_ms,
        timezone=plan.timezone,
    )


def _total(metric: Metric, cell: Cell, money: Currencies) -> MetricValue:
    if metric in money.mixed_totals:  # grouped by CURRENCY: no one currency adds them all
        return MetricValue(metric, None, None, None)
    return reader(metric, money.for_group(metric, None))(cell)


def _points(plan: QueryPlan, cells: Cells, group: GroupKey, money: Currencies) -> list[Point]:
    readers = [reader(m, money.for_group(m, group)) for m in plan.metrics]
    # Buckets without data share one set of values (MetricValue is frozen), built once.
    empty = [read(Cell()) for read in readers]
    whole = plan.granularity is Granularity.ALL
    complete_by = min(plan.end_ms, plan.now_ms)
    out = []
    for i, (start, end) in enumerate(pairwise(plan.boundaries)):
        cell = cells.get((group, i))
        values = list(empty) if cell is None else [read(cell) for read in readers]
        complete = start >= plan.start_ms and end <= complete_by
        out.append(Point(plan.start_ms if whole else start, values, complete))
    return out
