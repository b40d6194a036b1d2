"""Calendar buckets in an IANA zone, computed in Python (zoneinfo) as UTC epoch milliseconds.

The engine's date_histogram (Java time rules) places documents; these boundaries say which
buckets must exist (zero-filled) and which UTC hours lie wholly inside one bucket. Both follow
the same rules: a local time skipped by DST resolves to the instant after the gap, an
ambiguous local time to its first occurrence, weeks start on Monday.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from api.errors import BadInput
from api.model import HOUR_MS, Granularity

MINUTE_MS = 60_000
_ONE_HOUR = timedelta(hours=1)
ENGINE_INTERVAL = {
    Granularity.MINUTE: "minute",
    Granularity.HOUR: "hour",
    Granularity.DAY: "day",
    Granularity.WEEK: "week",
    Granularity.MONTH: "month",
}
# Shortest possible bucket, used to refuse absurd requests before enumerating them.
MIN_BUCKET_MS = {
    Granularity.MINUTE: MINUTE_MS,
    Granularity.HOUR: HOUR_MS // 2,
    Granularity.DAY: 22 * HOUR_MS,
    Granularity.WEEK: 7 * 22 * HOUR_MS,
    Granularity.MONTH: 27 * 24 * HOUR_MS,
}


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; BadInput when there is none."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise BadInput(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadInput(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        ) from None


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _local_midnight(day: date, tz: ZoneInfo) -> int:
    # fold=0: an ambiguous midnight is its first occurrence; a skipped one maps past the gap.
    return _ms(datetime(day.year, day.month, day.day, tzinfo=tz))


def floor(ts_ms: int, gran: Granularity, tz: ZoneInfo) -> int:
    """Start of the calendar bucket containing ``ts_ms``."""
    local = datetime.fromtimestamp(ts_ms / 1000, tz=tz)
    if gran is Granularity.MINUTE:
        return _ms(local.replace(second=0, microsecond=0))
    if gran is Granularity.HOUR:
        return _ms(local.replace(minute=0, second=0, microsecond=0))
    day = local.date()
    if gran is Granularity.WEEK:
        day -= timedelta(days=day.weekday())
    elif gran is Granularity.MONTH:
        day = day.replace(day=1)
    start = _local_midnight(day, tz)
    # A midnight skipped by DST resolves after the gap, which may lie after ts itself.
    return start if start <= ts_ms else _local_midnight(day - timedelta(days=1), tz)


def _next(start_ms: int, gran: Granularity, tz: ZoneInfo) -> int:
    if gran is Granularity.MINUTE:
        return start_ms + MINUTE_MS
    if gran is Granularity.HOUR:
        return _next_hour(start_ms, tz)
    day = datetime.fromtimestamp(start_ms / 1000, tz=tz).date()
    if gran is Granularity.DAY:
        nxt = day + timedelta(days=1)
    elif gran is Granularity.WEEK:
        nxt = day + timedelta(days=7 - day.weekday())
    else:
        nxt = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return _local_midnight(nxt, tz)


def _next_hour(start_ms: int, tz: ZoneInfo) -> int:
    """The first local-hour start after ``start_ms``. Usually the floor of start + 1h; where a
    half-hour fall-back repeats local 01:30-02:00 (Australia/Lord_Howe), that floor is the
    first 01:00 again, and the hour runs on to 02:00 (+10:30), as the engine's buckets do."""
    step = HOUR_MS
    while (nxt := floor(start_ms + step, Granularity.HOUR, tz)) <= start_ms:
        step += HOUR_MS // 2
    return nxt


@functools.lru_cache(maxsize=512)
def boundaries(
    start_ms: int, end_ms: int, gran: Granularity, tz: ZoneInfo, max_buckets: int
) -> tuple[int, ...]:
    """Bucket starts of every bucket meeting [start, end), then the last bucket's end.

    ALL is one bucket, exactly the range. Raises BadInput past ``max_buckets``.
    Remembered (a pure function of its arguments): the cost budget and the resolver both
    need a request's buckets, and dashboards ask the same ranges again and again; the 720
    hours of a 30-day report cost ~7 % of the API's CPU per request, computed twice.
    """
    if gran is Granularity.ALL:
        return (start_ms, end_ms)
    if (end_ms - start_ms) // MIN_BUCKET_MS[gran] > 2 * max_buckets + 2:
        raise too_many(max_buckets)
    first = floor(start_ms, gran, tz)
    out = [first]
    if first < end_ms:
        for start in _following(first, gran, tz):
            out.append(start)
            if len(out) > max_buckets + 1:
                raise too_many(max_buckets)
            if start >= end_ms:
                break
    return tuple(out)


def _following(first_ms: int, gran: Granularity, tz: ZoneInfo) -> Iterator[int]:
    """The bucket starts after ``first_ms``, each ``_next`` of the one before (endless)."""
    if gran is Granularity.MINUTE:
        return count(first_ms + MINUTE_MS, MINUTE_MS)
    if gran is Granularity.HOUR:
        return _following_hours(first_ms, tz)
    return _following_by_next(first_ms, gran, tz)


def _following_by_next(start_ms: int, gran: Granularity, tz: ZoneInfo) -> Iterator[int]:
    while True:
        start_ms = _next(start_ms, gran, tz)
        yield start_ms


def _following_hours(start_ms: int, tz: ZoneInfo) -> Iterator[int]:
    """Successive ``_next`` hour starts, skipping floor() (~4x the cost) where it provably
    returns start + 1h.

    Steady (``_steady``): start's local time is on the hour and timestamp() (wall clock minus
    utcoffset()) gives back start exactly. If the local time at start + 1h is that wall clock
    + 1h with the same utcoffset(), it is on the hour (floor() leaves it as it is) and gives
    back start + 1h: that is floor(start + 1h), the next start, steady again. Elsewhere (an
    offset change, a start moved by a gap) ``_next`` itself decides.
    """
    local = datetime.fromtimestamp(start_ms / 1000, tz=tz)
    offset, steady = local.utcoffset(), _steady(local, start_ms)
    while True:
        # tz passed positionally: as a keyword it costs ~20% of this loop.
        after = datetime.fromtimestamp((start_ms + HOUR_MS) / 1000, tz)
        # One tzinfo on both sides: == compares the wall clocks.
        if steady and after == local + _ONE_HOUR and after.utcoffset() == offset:
            start_ms += HOUR_MS
            local = after
        else:
            start_ms = _next(start_ms, Granularity.HOUR, tz)
            local = datetime.fromtimestamp(start_ms / 1000, tz=tz)
            offset, steady = local.utcoffset(), _steady(local, start_ms)
        yield start_ms


def _steady(local: datetime, start_ms: int) -> bool:
    """``local`` (of ``start_ms``) is on the hour and timestamp() gives back ``start_ms``, in
    whole seconds (so adding an hour to it stays exact in _ms's float arithmetic)."""
    offset = local.utcoffset()
    return (
        local.minute == local.second == local.microsecond == 0
        and offset is not None
        and offset.microseconds == 0
        and _ms(local) == start_ms
    )


def too_many(max_buckets: int) -> BadInput:
    return BadInput(
        f"too many buckets: the range and granularity give more than {max_buckets}; "
        "use a shorter range or a coarser granularity"
    )


def iso(ts_ms: int, tz: ZoneInfo) -> datetime:
    """An aware datetime in the request's zone (what the API returns)."""
    # The same tz.fromutc() of the same UTC time as fromtimestamp(UTC).astimezone(tz), in one
    # step instead of building the UTC datetime first.
    return datetime.fromtimestamp(ts_ms / 1000, tz)
