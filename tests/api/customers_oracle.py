"""A Python oracle for NEW/RETURNING_CUSTOMERS and cohorts, independent of api.customers:
calendar periods from zoneinfo local dates, first purchases from the events themselves."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from ingest.contract import Event

DAY_MS = 86_400_000


def period_start(ts_ms: int, gran: str, tz: ZoneInfo) -> int:
    """Start (epoch ms) of the DAY/WEEK/MONTH period holding ``ts_ms`` in ``tz``."""
    day = datetime.fromtimestamp(ts_ms / 1000, tz=tz).date()
    if gran == "WEEK":
        day -= timedelta(days=day.weekday())
    elif gran == "MONTH":
        day = day.replace(day=1)
    return midnight(day, tz)


def midnight(day: date, tz: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


def next_period(start_ms: int, gran: str, tz: ZoneInfo) -> int:
    step = {"DAY": 26 * 3_600_000, "WEEK": 7 * DAY_MS + 2 * 3_600_000, "MONTH": 32 * DAY_MS}
    return period_start(start_ms + step[gran], gran, tz)


def unique(events: Iterable[Event]) -> list[Event]:
    return list({(e.merchant_id, e.event_id): e for e in events}.values())


def paid(events: Iterable[Event], merchant: str) -> list[Event]:
    return [
        e
        for e in unique(events)
        if e.merchant_id == merchant
        and e.event_type == "payment"
        and e.status == "succeeded"
        and e.customer_id
    ]


def firsts(events: Iterable[Event], merchant: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in paid(events, merchant):
        assert e.customer_id
        out[e.customer_id] = min(e.occurred_at_ms, out.get(e.customer_id, e.occurred_at_ms))
    return out


Counts = dict[tuple[str | None, int | None], tuple[int, int]]  # (group, bucket) -> (new, ret)


def new_returning(
    events: list[Event],
    merchant: str,
    start_ms: int,
    end_ms: int,
    gran: str,
    tz: ZoneInfo,
    channel_groups: bool,
) -> Counts:
    """(channel or None, bucket start or None for the whole range) -> (new, returning)."""
    first = firsts(events, merchant)
    active: dict[tuple[str | None, int | None], set[str]] = {}
    for e in paid(events, merchant):
        if not start_ms <= e.occurred_at_ms < end_ms:
            continue
        assert e.customer_id
        group = (e.channel or "__none__") if channel_groups else None
        bucket = start_ms if gran == "ALL" else period_start(e.occurred_at_ms, gran, tz)
        for key in ((group, bucket), (group, None), ("*", None)):
            active.setdefault(key, set()).add(e.customer_id)
    out: Counts = {}
    for (group, bucket), customers in active.items():
        span = start_ms if bucket is None else max(bucket, start_ms)
        new = sum(1 for c in customers if first[c] >= span)
        out[(group, bucket)] = (new, len(customers) - new)
    return out


Row = tuple[int, int, list[float | None]]  # (cohort start, customers, retained)


def cohorts(
    events: list[Event],
    merchant: str,
    start_ms: int,
    end_ms: int,
    gran: str,
    tz: ZoneInfo,
    periods: int,
    now_ms: int,
) -> list[Row]:
    first = firsts(events, merchant)
    starts = []
    s = period_start(start_ms, gran, tz)
    s = s if s >= start_ms else next_period(s, gran, tz)
    while s < end_ms:
        starts.append(s)
        s = next_period(s, gran, tz)
    active: dict[str, set[int]] = {}
    for e in paid(events, merchant):
        assert e.customer_id
        active.setdefault(e.customer_id, set()).add(period_start(e.occurred_at_ms, gran, tz))
    rows: list[Row] = []
    for cohort in starts:
        members = [c for c, f in first.items() if period_start(f, gran, tz) == cohort]
        retained: list[float | None] = []
        period = cohort
        for _ in range(periods):
            if period > now_ms or not members:
                retained.append(None)
            else:
                back = sum(1 for c in members if period in active[c])
                retained.append(back / len(members))
            period = next_period(period, gran, tz)
        rows.append((cohort, len(members), retained))
    return rows
