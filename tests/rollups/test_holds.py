"""Holds (rollups.state.hold/release): held hours are never servable and cap freshness."""

from __future__ import annotations

import threading

from opensearchpy import OpenSearch

from pulse.naming import Names
from pulse.settings import Settings
from rollups import state
from rollups.job import RollupJob, wall_clock_ms
from storage import arrivals
from storage import rollup_schema as rs
from storage.arrivals import Arrivals
from tests.rollups.helpers import HOUR, make_events, write_raw


def _rolled_up(
    rsettings: Settings, names: Names, os_client: OpenSearch, seed: int, start: int, end: int
) -> tuple[str, int]:
    """Two merchants' events in [start, end), one rollup run: (a merchant, W)."""
    events = make_events(seed, 200, start, end, merchants=2)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    job = RollupJob(os_client, rsettings, names, owner="test")
    job.bootstrap()
    w = job.run_once().watermark_to
    assert w is not None
    return events[0].merchant_id, w


def test_held_hours_are_served_from_raw_until_released(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    start = base_ms + 9 * HOUR
    merchant, w = _rolled_up(rsettings, names, os_client, 11, start, start + 4 * HOUR)
    every = {start + i * HOUR for i in range(4)}

    def seen() -> state.Servable:
        return state.servable(os_client, rsettings, names, merchant, start, start + 4 * HOUR, w)

    assert seen().hours == every and seen().watermark == w
    state.hold(os_client, names, "a", start + HOUR + 1, start + 2 * HOUR, "test")  # 1 ms in
    state.hold(os_client, names, "b", start + 3 * HOUR, start + 9 * HOUR)
    assert seen().hours == {start, start + 2 * HOUR}
    assert seen().watermark == w  # W itself does not move with a hold
    assert state.freshness(os_client, names, merchant)[1] == start + HOUR
    assert {h.key for h in state.holds(os_client, names)} == {"a", "b"}

    state.release(os_client, names, "a")
    state.release(os_client, names, "a")  # idempotent
    assert seen().hours == every - {start + 3 * HOUR}
    state.release(os_client, names, "b")
    assert seen().hours == every
    assert state.freshness(os_client, names, merchant)[1] == rs.hour_start(w)


def test_concurrent_holders_keep_every_hold(names: Names, os_client: OpenSearch) -> None:
    """Holds are read-modify-written by compare-and-set: no holder's write is lost."""
    keys = [f"run-{i}" for i in range(8)]
    threads = [
        threading.Thread(target=state.hold, args=(os_client, names, k, i * HOUR, (i + 1) * HOUR))
        for i, k in enumerate(keys)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(h.key for h in state.holds(os_client, names)) == keys


def test_late_events_are_searched_only_on_days_whose_arrivals_bound_passed_w(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    start = base_ms + 9 * HOUR
    merchant, w = _rolled_up(rsettings, names, os_client, 12, start, start + 3 * HOUR)
    late = [
        e
        for e in make_events(13, 40, start + HOUR, start + 2 * HOUR, 2)
        if e.merchant_id == merchant
    ]
    assert late
    write_raw(os_client, rsettings, names, late, wall_clock_ms())  # after W, no bound kept
    hours = {start + i * HOUR for i in range(3)}
    day = start // arrivals.DAY_MS
    assert state.dirty_hours(os_client, names, merchant, hours, w) == {start + HOUR}  # unknown
    # A bound at or below W says the day received nothing after W: it is not searched. (The
    # raw writers raise it *before* writing, so this only happens to a writer that does not.)
    Arrivals(os_client, names, lookahead_ms=0).cover([day], w)
    assert state.dirty_hours(os_client, names, merchant, hours, w) == set()
    Arrivals(os_client, names, lookahead_ms=0).cover([day], wall_clock_ms())
    assert state.dirty_hours(os_client, names, merchant, hours, w) == {start + HOUR}
