"""Shaping, the last stage: a resolved plan's merged cells -> the Report of DESIGN.md (plain
data; api.schema wraps them). Groups arrive ranked (api.rank).

A series' points are a ``Points`` sequence computed when read, which also gives each point a
content key (decision 0250): the GraphQL layer answers a point whose key it has seen from the
JSON it encoded then, so most points of a repeated report are never built at all."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import repeat
from typing import Any, NamedTuple, overload

from api.cells import Cell
from api.encoded import Run
from api.model import Base, Dimension, Granularity, Metric, QueryPlan, ResolvedPlan, Source
from api.money import Currencies
from api.sources import Cells, Fixed, GroupKey


class MetricValue(NamedTuple):
    """One metric's value (a tuple: ~3,600 per 30-day hourly report, where a frozen
    dataclass's ``__init__`` cost ~3x as much)."""

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
    points: Sequence[Point]  # shape() gives a Points; a list is the same series


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


def shape(
    resolved: ResolvedPlan,
    cells: Cells,
    groups: tuple[GroupKey, ...] | None,
    took_ms: int,
    currencies: Currencies | None = None,
    fixed: Fixed | None = None,
) -> Report:
    """Every bucket of every chosen group (zeros where no data), plus totals and meta. The
    points are read from ``cells`` when the answer is completed (``Points``): the cells must
    not change after this call. ``fixed``: which cells are a remembered answer's own."""
    plan, split = resolved.plan, resolved.split
    money = currencies or Currencies()
    keys: tuple[GroupKey, ...] = groups if groups is not None else ((),)
    series = [
        Series(
            list(zip(plan.group_by, group, strict=True)), _points(plan, cells, group, money, fixed)
        )
        for group in keys
    ]
    total = cells.get((None, None), Cell())
    sources = []
    if split.rollups:
        sources.append(Source.ROLLUPS.value)
    if split.raw or Base.FIRSTS in plan.bases:
        sources.append(Source.RAW.value)
    if Base.FIRSTS in plan.bases:
        sources.append(FIRST_PURCHASES)
    return Report(
        series=series,
        totals=[_total(m, total, money) for m in plan.metrics],
        sources=sources,
        watermark_ms=split.watermark_ms,
        took_ms=took_ms,
        timezone=plan.timezone,
    )


def _total(metric: Metric, cell: Cell, money: Currencies) -> MetricValue:
    if metric in money.mixed_totals:  # grouped by CURRENCY: no one currency adds them all
        return MetricValue(metric, None, None, None)
    return reader(metric, money.for_group(metric, None))(cell)


PointKey = tuple[Any, ...]  # what fixes a point's content: its start, completeness, counters


class Points(Sequence[Point]):
    """The points of one series, each computed when read: every bucket of the plan, zeros
    where no cell, complete when it lies wholly inside the range and has elapsed.

    ``item_keys()`` gives each point a key that fixes its content given ``context()`` (the
    readers, so the metrics and their currencies, and the time zone): the bucket start,
    completeness and every counter the readers read, or None when there is no cheap key (a
    unique-customers value from a sketch union). Equal keys in equal contexts are equal
    points, which is what lets the GraphQL layer reuse the JSON of a point it has completed
    before (api.encoded). With ``fixed`` (the cells a remembered answer holds, api.sources),
    the points whose cells are all that answer's are runs keyed by its token (decision 0315).
    Equal to the list of its points (``==``, ``repr``)."""

    __slots__ = ("_bounds", "_cells", "_complete_by", "_empty", "_first", "_fixed", "_group",
                 "_readers", "_timezone", "_uniques", "_whole")  # fmt: skip

    def __init__(
        self,
        plan: QueryPlan,
        cells: Cells,
        group: GroupKey,
        readers: tuple[Reader, ...],
        fixed: Fixed | None = None,
    ) -> None:
        self._bounds = plan.boundaries
        self._cells, self._group, self._readers, self._fixed = cells, group, readers, fixed
        self._first, self._whole = plan.start_ms, plan.granularity is Granularity.ALL
        self._complete_by = min(plan.end_ms, plan.now_ms)
        self._timezone = plan.timezone
        self._uniques = _unique_customers in readers
        # Buckets without data share one set of values (MetricValue is immutable), built once.
        self._empty = tuple(read(Cell()) for read in readers)

    def __len__(self) -> int:
        return len(self._bounds) - 1

    @overload
    def __getitem__(self, i: int) -> Point: ...
    @overload
    def __getitem__(self, i: slice) -> list[Point]: ...
    def __getitem__(self, i: int | slice) -> Point | list[Point]:
        if isinstance(i, slice):
            return [self._point(j) for j in range(len(self))[i]]
        n = len(self)
        if not -n <= i < n:
            raise IndexError("point index out of range")
        return self._point(i % n)

    def __iter__(self) -> Iterator[Point]:
        return (self._point(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # compared by content, like a list

    def __repr__(self) -> str:
        return repr(list(self))

    def _point(self, i: int) -> Point:
        start, end = self._bounds[i], self._bounds[i + 1]
        cell = self._cells.get((self._group, i))
        values = list(self._empty) if cell is None else [read(cell) for read in self._readers]
        complete = start >= self._first and end <= self._complete_by
        return Point(self._first if self._whole else start, values, complete)

    def context(self) -> Hashable:
        """What the keys hold fixed: the readers (metrics, currencies) and the time zone."""
        return self._readers, self._timezone

    def item_keys(self) -> Sequence[PointKey | Run | None]:
        """Each point's content key (see the class), or runs of points whose cells are one
        remembered answer's, without building any point."""
        if self._fixed is None or self._uniques:
            return self.keys_within(0, len(self))
        return self._runs(self._fixed)

    def _runs(self, fixed: Fixed) -> list[PointKey | Run | None]:
        """Between the buckets another part also has (their own keys), runs keyed by the
        answer's token and variant, the group and which of their buckets are complete: the
        token fixes the plan (bar the clock: its boundaries and start) and the cells read
        there, the variant what was made of them (a conversion's rates and currency)."""
        n, group = len(self), self._group
        apart = sorted({i for g, i in fixed.elsewhere if g == group and i is not None})
        bounds = self._bounds
        # Bucket i is complete iff first <= bounds[i] and bounds[i + 1] <= complete_by: the
        # buckets [done_from, done_to) as the bounds ascend.
        done_from = bisect_left(bounds, self._first, 0, n)
        done_to = bisect_right(bounds, self._complete_by, 1, n + 1) - 1
        out: list[PointKey | Run | None] = []
        at = 0
        for stop in [*apart, n]:
            if stop > at:
                lo = min(max(done_from, at), stop)
                hi = max(min(max(done_to, at), stop), lo)
                out.append(Run((fixed.token, fixed.variant, group, lo, hi), at, stop))
            if stop < n:
                out.extend(self.keys_within(stop, stop + 1))
            at = stop + 1
        return out

    def keys_within(self, start: int, stop: int) -> list[PointKey | None]:
        """The content keys of points [start, stop)."""
        first, by = self._first, self._complete_by
        begins, ends = self._bounds[start:stop], self._bounds[start + 1 : stop + 1]
        n = len(begins)
        places = zip(repeat(self._group, n), range(start, stop), strict=True)
        cells = map(self._cells.get, places)
        starts = (first,) * n if self._whole else begins
        rows = zip(starts, begins, ends, cells, strict=True)
        if self._uniques:
            return [_key_with_uniques(start, s >= first and e <= by, c)
                    for start, s, e, c in rows]  # fmt: skip
        # The hot path (720 points of a 30-day hourly report per request), one comprehension.
        return [
            (start, s >= first and e <= by) if c is None else
            (start, s >= first and e <= by, c.events, c.paid, c.gross, c.failed, c.refunds,
             c.disputes, c.new_customers, c.returning_customers)
            for start, s, e, c in rows
        ]  # fmt: skip


def _key_with_uniques(start: int, complete: bool, c: Cell | None) -> PointKey | None:
    if c is None:
        return start, complete
    u = c.uniques
    if u.union is not None:  # a sketch union's value is costly to read: such points have no key
        return None
    return (start, complete, c.events, c.paid, c.gross, c.failed, c.refunds, c.disputes,
            c.new_customers, c.returning_customers, u.estimate, u.bound, u.overflow)  # fmt: skip


def _points(
    plan: QueryPlan, cells: Cells, group: GroupKey, money: Currencies, fixed: Fixed | None
) -> Points:
    readers = tuple(reader(m, money.for_group(m, group)) for m in plan.metrics)
    return Points(plan, cells, group, readers, fixed)
