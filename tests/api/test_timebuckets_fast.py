"""timebuckets' fast paths against the step-by-step definition they replace.

``boundaries`` walks hours without floor() where the offset cannot have changed, and ``iso``
builds the zone's datetime in one step: both must give exactly what the original code gave,
which is kept here verbatim as the reference (every zone, granularity, DST seam, limit).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import BadInput
from api.model import HOUR_MS, Granularity
from api.timebuckets import MIN_BUCKET_MS, MINUTE_MS, boundaries, iso, too_many, zone

ZONES = [
    "UTC",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Lord_Howe",  # +10:30, 30-minute DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",  # DST at midnight until 2019, none since
    "Africa/Casablanca",  # +01 with a yearly month at +00 (Ramadan)
]
GRANULARITIES = list(Granularity)
NOMINAL_MS = {
    Granularity.MINUTE: MINUTE_MS,
    Granularity.HOUR: HOUR_MS,
    Granularity.DAY: 24 * HOUR_MS,
    Granularity.WEEK: 7 * 24 * HOUR_MS,
    Granularity.MONTH: 30 * 24 * HOUR_MS,
    Granularity.ALL: 24 * HOUR_MS,
}
FROM_MS = int(datetime(2018, 1, 1, tzinfo=UTC).timestamp() * 1000)
TO_MS = int(datetime(2031, 1, 1, tzinfo=UTC).timestamp() * 1000)


# --- the reference: api.timebuckets as it was before the fast paths, unchanged --------------


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _local_midnight(day: date, tz: ZoneInfo) -> int:
    return _ms(datetime(day.year, day.month, day.day, tzinfo=tz))


def _floor(ts_ms: int, gran: Granularity, tz: ZoneInfo) -> int:
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
    while (nxt := _floor(start_ms + step, Granularity.HOUR, tz)) <= start_ms:
        step += HOUR_MS // 2
    return nxt


def _boundaries_reference(
    start_ms: int, end_ms: int, gran: Granularity, tz: ZoneInfo, max_buckets: int
) -> tuple[int, ...]:
    if gran is Granularity.ALL:
        return (start_ms, end_ms)
    if (end_ms - start_ms) // MIN_BUCKET_MS[gran] > 2 * max_buckets + 2:
        raise too_many(max_buckets)
    out = [_floor(start_ms, gran, tz)]
    while out[-1] < end_ms:
        out.append(_next(out[-1], gran, tz))
        if len(out) - 1 > max_buckets:
            raise too_many(max_buckets)
    return tuple(out)


def _iso_reference(ts_ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(tz)


# --- helpers ---------------------------------------------------------------------------------


Bounds = Callable[[int, int, Granularity, ZoneInfo, int], tuple[int, ...]]


def outcome(fn: Bounds, args: tuple[int, int, Granularity, ZoneInfo, int]) -> tuple[int, ...] | str:
    """The boundaries, or the BadInput message (the too-many refusal is part of the contract)."""
    try:
        return fn(*args)
    except BadInput as err:
        return f"BadInput: {err}"


def same(start_ms: int, end_ms: int, gran: Granularity, tz_name: str, max_buckets: int) -> None:
    args = (start_ms, end_ms, gran, zone(tz_name), max_buckets)
    assert outcome(boundaries, args) == outcome(_boundaries_reference, args), args


def _offset(ts_ms: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(ts_ms / 1000, tz).utcoffset()


@functools.cache
def transitions(tz_name: str) -> tuple[int, ...]:
    """Every instant (to the second) in 2018-2030 where the zone's UTC offset changes."""
    tz = zone(tz_name)
    found = []
    day = 24 * HOUR_MS
    for a in range(FROM_MS, TO_MS, day):
        if _offset(a, tz) == _offset(a + day, tz):
            continue  # no zone changes its offset twice within a day
        lo, hi = a, a + day  # offset(lo) != offset(hi): bisect to the change
        while hi - lo > 1000:
            mid = (lo + hi) // 2 // 1000 * 1000
            lo, hi = (mid, hi) if _offset(mid, tz) == _offset(lo, tz) else (lo, mid)
        found.append(hi)
    return tuple(found)


# --- tests -----------------------------------------------------------------------------------


def test_the_zones_under_test_change_offsets_where_expected() -> None:
    """Guards the seam tests below: they are only as good as the transitions they find."""
    assert transitions("UTC") == transitions("Asia/Kolkata") == ()
    assert len(transitions("Europe/Berlin")) == 26
    assert len(transitions("Australia/Lord_Howe")) == 26  # 30-minute DST
    assert len(transitions("America/Sao_Paulo")) == 3  # its last DST, 2018-2019
    assert len(transitions("Africa/Casablanca")) >= 20  # Ramadan, twice a year


@pytest.mark.parametrize("tz_name", ZONES)
@pytest.mark.parametrize("gran", [Granularity.MINUTE, Granularity.HOUR])
def test_thirty_days_from_each_month_start(tz_name: str, gran: Granularity) -> None:
    """Long runs (the served 30-day hourly report) from odd starts, 2018-2030."""
    for year in (2018, 2024, 2030):
        for month in range(1, 13, 2 if gran is Granularity.MINUTE else 1):
            start = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000) + 1234
            span = 30 * 24 * HOUR_MS if gran is Granularity.HOUR else 2 * 24 * HOUR_MS
            same(start, start + span, gran, tz_name, 3000)


@pytest.mark.parametrize("tz_name", ZONES)
def test_every_offset_change_2020_2030_every_granularity(tz_name: str) -> None:
    """Ranges starting on, just before and just after each transition, and spanning it."""
    for t in transitions(tz_name):
        for gran in GRANULARITIES:
            step = NOMINAL_MS[gran]
            for start in (t - 2 * step - 1, t - HOUR_MS // 2, t - 1, t, t + 1, t + 15 * 60_000):
                for n in (1, 3, 50):
                    same(start, start + n * step, gran, tz_name, 400)


@settings(max_examples=400, deadline=None)
@given(
    tz_name=st.sampled_from(ZONES),
    gran=st.sampled_from(GRANULARITIES),
    near_transition=st.booleans(),
    pick=st.integers(min_value=0),
    start=st.integers(min_value=FROM_MS, max_value=TO_MS),
    jitter=st.integers(min_value=-3 * 24 * HOUR_MS, max_value=3 * 24 * HOUR_MS),
    buckets=st.floats(min_value=0.0, max_value=450.0),
    max_buckets=st.integers(min_value=1, max_value=400),
)
def test_boundaries_equal_the_reference(
    tz_name: str,
    gran: Granularity,
    near_transition: bool,
    pick: int,
    start: int,
    jitter: int,
    buckets: float,
    max_buckets: int,
) -> None:
    seams = transitions(tz_name)
    if near_transition and seams:
        start = seams[pick % len(seams)] + jitter
    end = start + max(1, int(buckets * NOMINAL_MS[gran]))
    same(start, end, gran, tz_name, max_buckets)


@settings(max_examples=2000, deadline=None)
@given(
    tz_name=st.sampled_from(ZONES),
    ts=st.integers(min_value=0, max_value=int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * 1000),
    near_transition=st.booleans(),
    pick=st.integers(min_value=0),
    jitter=st.integers(min_value=-2 * HOUR_MS, max_value=2 * HOUR_MS),
)
def test_iso_equals_the_reference(
    tz_name: str, ts: int, near_transition: bool, pick: int, jitter: int
) -> None:
    tz = zone(tz_name)
    seams = transitions(tz_name)
    if near_transition and seams:
        ts = seams[pick % len(seams)] + jitter
    got, want = iso(ts, tz), _iso_reference(ts, tz)
    # == between datetimes of one zone compares wall clocks only: compare everything.
    assert type(got) is type(want)
    assert (got.isoformat(), got.fold, got.tzinfo) == (want.isoformat(), want.fold, want.tzinfo)


def test_lord_howe_half_hour_fall_back_is_one_ninety_minute_bucket() -> None:
    """2026-04-05 02:00 +11:00 falls back to 01:30 +10:30: the engine (checked on osmem)
    puts 15:10 UTC (the second 01:40) in the 01:00 +11:00 bucket and starts the next at 02:00
    +10:30 (15:30 UTC); hourly ranges across it were refused as "too many buckets" before."""
    start = int(datetime(2026, 4, 4, 13, tzinfo=UTC).timestamp() * 1000)
    got = boundaries(start, start + 4 * HOUR_MS, Granularity.HOUR, zone("Australia/Lord_Howe"), 10)
    assert [datetime.fromtimestamp(b / 1000, UTC).strftime("%H:%M") for b in got] == [
        "13:00", "14:00", "15:30", "16:30", "17:30",
    ]  # fmt: skip
