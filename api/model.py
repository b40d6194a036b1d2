"""The query plan and the resolved plan: frozen descriptions of one report, independent of
GraphQL (the stages are in docs/decisions/0230).

Resolvers build a ``QueryPlan``; the planner's processors (api.planner) return refined copies;
source resolution (api.resolve) turns it into a ``ResolvedPlan``, which always has a ``Split``;
the formatter (api.dsl) turns that into engine requests. Times are epoch milliseconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

from pulse.clock import HOUR_MS as HOUR_MS
from storage import rollup_schema as rs

MISSING = rs.MISSING  # the value that stands for "the event did not carry this dimension"


class Metric(Enum):
    EVENTS = "EVENTS"
    PAYMENTS = "PAYMENTS"
    GROSS_SALES = "GROSS_SALES"
    REFUNDS = "REFUNDS"
    NET_SALES = "NET_SALES"
    AVERAGE_TICKET = "AVERAGE_TICKET"
    UNIQUE_CUSTOMERS = "UNIQUE_CUSTOMERS"
    PAYMENT_SUCCESS_RATE = "PAYMENT_SUCCESS_RATE"
    NEW_CUSTOMERS = "NEW_CUSTOMERS"
    RETURNING_CUSTOMERS = "RETURNING_CUSTOMERS"
    FAILED_PAYMENTS = "FAILED_PAYMENTS"
    REFUND_RATE = "REFUND_RATE"
    DISPUTES = "DISPUTES"
    DISPUTE_RATE = "DISPUTE_RATE"


class Granularity(Enum):
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    ALL = "ALL"


class Dimension(Enum):
    EVENT_TYPE = "EVENT_TYPE"
    STATUS = "STATUS"
    PAYMENT_METHOD = "PAYMENT_METHOD"
    STORE_ID = "STORE_ID"
    COUNTRY = "COUNTRY"
    CHANNEL = "CHANNEL"
    DEVICE = "DEVICE"
    CURRENCY = "CURRENCY"
    DECLINE_CODE = "DECLINE_CODE"

    @property
    def field(self) -> str:
        """The raw and rollup field name (they are equal by the rollup schema's contract)."""
        return self.value.lower()


class Source(Enum):
    RAW = "raw"
    ROLLUPS = "rollups"


class Base(Enum):
    """Additive building blocks every metric is computed from."""

    EVENTS = "events"
    PAID = "paid"  # succeeded payments
    GROSS = "gross"  # milli
    FAILED = "failed"  # failed payments
    REFUNDS = "refunds"  # milli
    DISPUTES = "disputes"  # dispute events
    CUSTOMERS = "customers"  # distinct customers (not additive: sketches / engine cardinality)
    FIRSTS = "firsts"  # paying customers split by first purchase (api.customers)


NEEDS: dict[Metric, frozenset[Base]] = {
    Metric.EVENTS: frozenset({Base.EVENTS}),
    Metric.PAYMENTS: frozenset({Base.PAID}),
    Metric.GROSS_SALES: frozenset({Base.GROSS}),
    Metric.REFUNDS: frozenset({Base.REFUNDS}),
    Metric.NET_SALES: frozenset({Base.GROSS, Base.REFUNDS}),
    Metric.AVERAGE_TICKET: frozenset({Base.GROSS, Base.PAID}),
    Metric.UNIQUE_CUSTOMERS: frozenset({Base.CUSTOMERS}),
    Metric.PAYMENT_SUCCESS_RATE: frozenset({Base.PAID, Base.FAILED}),
    Metric.FAILED_PAYMENTS: frozenset({Base.FAILED}),
    Metric.REFUND_RATE: frozenset({Base.REFUNDS, Base.GROSS}),
    Metric.DISPUTES: frozenset({Base.DISPUTES}),
    Metric.DISPUTE_RATE: frozenset({Base.DISPUTES, Base.PAID}),
    Metric.NEW_CUSTOMERS: frozenset({Base.FIRSTS}),
    Metric.RETURNING_CUSTOMERS: frozenset({Base.FIRSTS}),
}


# Money metrics carry a currency (DESIGN.md "Money never adds different currencies"), by which
# money events they add: succeeded payments (PAID) and/or refunds with an amount (REFUNDED).
class MoneyKind(Enum):
    PAID = "paid"
    REFUNDED = "refunded"


MONEY_KINDS: dict[Metric, frozenset[MoneyKind]] = {
    Metric.GROSS_SALES: frozenset({MoneyKind.PAID}),
    Metric.AVERAGE_TICKET: frozenset({MoneyKind.PAID}),
    Metric.REFUNDS: frozenset({MoneyKind.REFUNDED}),
    Metric.NET_SALES: frozenset({MoneyKind.PAID, MoneyKind.REFUNDED}),
}
# Ratios of money: no currency of their own, but computed from amounts, so they follow the
# same rule: converted with reportingCurrency, and an error when their amounts mix currencies.
MONEY_RATIOS: dict[Metric, frozenset[MoneyKind]] = {
    Metric.REFUND_RATE: frozenset({MoneyKind.PAID, MoneyKind.REFUNDED}),
}


@dataclass(frozen=True)
class Filter:
    dimension: Dimension
    values: tuple[str, ...]
    exclude: bool = False


Interval = tuple[int, int]  # [start, end) epoch ms


@dataclass(frozen=True)
class Split:
    """Which parts of the range each source answers; disjoint, together exactly the range."""

    raw: tuple[Interval, ...]
    rollups: tuple[Interval, ...] = ()  # whole UTC hours, merged into runs
    watermark_ms: int | None = None


@dataclass(frozen=True)
class QueryPlan:
    """One report request. ``boundaries`` is filled in by the time_buckets processor; which
    source answers what is not part of it (``ResolvedPlan``)."""

    merchant_id: str
    start_ms: int
    end_ms: int
    metrics: tuple[Metric, ...]
    granularity: Granularity = Granularity.HOUR
    timezone: str = "UTC"
    group_by: tuple[Dimension, ...] = ()
    filters: tuple[Filter, ...] = ()
    limit: int = 10
    now_ms: int = 0
    force_source: Source | None = None
    # ISO 4217 code money is converted to (api.fx), or None: money stays in its currency.
    reporting_currency: str | None = None
    boundaries: tuple[int, ...] = ()  # bucket starts + the last bucket's end
    compare: QueryPlan | None = field(default=None)

    @property
    def bases(self) -> frozenset[Base]:
        return _bases(self.metrics)

    @property
    def money(self) -> bool:
        """Whether the plan asks for a money metric (which carries a currency) or a ratio of
        money: either needs the amounts' currencies."""
        return any(m in MONEY_KINDS or m in MONEY_RATIOS for m in self.metrics)

    @property
    def converts(self) -> bool:
        """Money is converted: the sources break it down by currency and UTC day."""
        return self.reporting_currency is not None and self.money

    @property
    def buckets(self) -> int:
        return max(0, len(self.boundaries) - 1)


DocVersion = tuple[str, str, bool, int, int]  # (index, id, found, seq_no, primary_term)


@dataclass(frozen=True)
class Versions:
    """Versions read in the same ``mget`` as the rollup state (decision 0260), which key what
    the API remembers: each day pack of the range (``packs``, None when not read or when the
    engine gave no sequence numbers) and the stored exchange rates (``rates``, None when not
    asked or not known)."""

    packs: tuple[DocVersion, ...] | None = None
    rates: str | None = None


@dataclass(frozen=True)
class ResolvedPlan:
    """A processed plan with its sources resolved (api.resolve): the split always exists, and
    the rollup state it was judged by is kept with it (W in ``split``, and the hours held by a
    reprocess switch or found changed by late events, which the split gave to raw), and the
    versions read with that state."""

    plan: QueryPlan
    split: Split
    held: frozenset[int] = frozenset()  # candidate hours held (rollups.state holds)
    late: frozenset[int] = frozenset()  # hours given to raw after the late-event search
    versions: Versions = Versions()

    @property
    def parts(self) -> tuple[tuple[Source, tuple[Interval, ...]], ...]:
        """The sources that answer something, raw first, with their intervals."""
        parts = ((Source.RAW, self.split.raw), (Source.ROLLUPS, self.split.rollups))
        return tuple((source, iv) for source, iv in parts if iv)

    @property
    def stitched(self) -> bool:
        """Distinct customers come from both sources: rollup sketches and raw hashes merge."""
        return Base.CUSTOMERS in self.plan.bases and bool(self.split.rollups)


@lru_cache(maxsize=1024)  # asked several times per report: not a set union over enums each time
def _bases(metrics: tuple[Metric, ...]) -> frozenset[Base]:
    out: set[Base] = {Base.EVENTS}
    for metric in metrics:
        out |= NEEDS[metric]
    return frozenset(out)
