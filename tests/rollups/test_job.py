"""Rollups equal the oracle, and stay equal under late, duplicate and out-of-order data."""

from __future__ import annotations

import dataclasses
from typing import Any

from opensearchpy import OpenSearch, helpers

from ingest.contract import Event
from pulse.naming import Names
from pulse.settings import Settings
from rollups import state
from rollups.job import RollupJob, wall_clock_ms
from storage import rollup_schema as rs
from tests.rollups.helpers import (
    HOUR,
    as_single_lease_job,
    assert_matches_oracle,
    assert_union_within_bounds,
    make_events,
    write_raw,
)

DAY = 24 * HOUR


def _job(client: OpenSearch, settings: Settings, names: Names) -> RollupJob:
    job = RollupJob(client, settings, names, owner="test")
    job.bootstrap()
    return job


def test_rollups_equal_the_oracle_bucket_by_bucket(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    events = make_events(1, 1200, base_ms + 8 * HOUR, base_ms + 14 * HOUR)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    job = _job(os_client, rsettings, names)

    report = job.run_once()

    assert report.skipped is None and report.pairs > 0
    got = assert_matches_oracle(os_client, names, events)
    assert_union_within_bounds(got, events)
    assert report.buckets == len(got)
    assert state.watermark(os_client, names) == report.watermark_to
    # Nothing new: the next run finds no pairs and changes nothing.
    again = job.run_once()
    assert again.pairs == 0
    assert_matches_oracle(os_client, names, events)


def test_late_duplicate_and_out_of_order_events_are_reflected_after_the_next_run(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    start = base_ms + 10 * HOUR
    events = make_events(2, 800, start, start + 4 * HOUR)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    job = _job(os_client, rsettings, names)
    job.run_once()

    two_hours_late = make_events(3, 60, start + HOUR, start + 2 * HOUR)
    three_days_late = make_events(4, 60, start - 3 * DAY, start - 3 * DAY + HOUR)
    duplicates = events[:100]
    shuffled = sorted(
        two_hours_late + three_days_late + duplicates, key=lambda e: -e.occurred_at_ms
    )
    write_raw(os_client, rsettings, names, shuffled, wall_clock_ms())
    rewritten = two_hours_late + three_days_late + duplicates
    touched = {(e.merchant_id, rs.hour_start(e.occurred_at_ms)) for e in rewritten}
    merchant = three_days_late[0].merchant_id
    dirty = _hours_of(merchant, three_days_late + two_hours_late)
    window = (start - 3 * DAY, start + 4 * HOUR)
    before = state.servable(os_client, rsettings, names, merchant, *window, wall_clock_ms()).hours
    assert dirty and not dirty & before  # changed hours are not served from rollups

    report = job.run_once()

    assert report.pairs == len(touched)  # found by ingest time, however old the hour
    assert 0 < report.written < report.buckets  # unchanged combinations are not rewritten
    assert_matches_oracle(os_client, names, events + two_hours_late + three_days_late + duplicates)
    after = state.servable(os_client, rsettings, names, merchant, *window, wall_clock_ms()).hours
    assert after == set(range(window[0], window[1], HOUR))


def test_a_combination_that_disappears_is_deleted(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    events = make_events(5, 200, base_ms + 12 * HOUR, base_ms + 13 * HOUR)
    first = dataclasses.replace(events[0], device="kiosk-a")
    write_raw(os_client, rsettings, names, [*events, first], wall_clock_ms())
    job = _job(os_client, rsettings, names)
    job.run_once()
    # The producer re-sends the same event_id with another device: the last write wins.
    second = dataclasses.replace(events[0], device="kiosk-b")
    write_raw(os_client, rsettings, names, [second], wall_clock_ms())

    report = job.run_once()

    assert report.deleted == 1
    got = assert_matches_oracle(os_client, names, [*events, first, second])
    assert not any("kiosk-a" in key[2] for key in got)


def test_freshness_and_servable_hours_follow_the_watermark(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    start = base_ms + 9 * HOUR
    events = make_events(6, 300, start, start + 3 * HOUR, merchants=3)
    merchant = events[0].merchant_id
    assert state.freshness(os_client, names, merchant) == (None, None)
    ingested = wall_clock_ms()
    write_raw(os_client, rsettings, names, events, ingested)
    job = _job(os_client, rsettings, names)
    now = wall_clock_ms()
    assert state.servable(os_client, rsettings, names, merchant, start, now, now).hours == set()

    w = job.run_once().watermark_to
    assert w is not None
    assert state.freshness(os_client, names, merchant) == (ingested, rs.hour_start(w))
    # Only whole hours inside the range; the ragged end (half an hour) is not servable.
    hours = state.servable(
        os_client, rsettings, names, merchant, start, start + 90 * 60_000, w
    ).hours
    assert hours == {start}
    late = [
        e
        for e in make_events(7, 50, start + HOUR, start + 2 * HOUR, 3)
        if e.merchant_id == merchant
    ]
    write_raw(os_client, rsettings, names, late, wall_clock_ms())
    assert state.freshness(os_client, names, merchant)[1] == start + HOUR
    other = rsettings.model_copy(update={"generation": "g9"})
    assert state.servable(os_client, other, names, merchant, start, w, w).hours == set()


def _hours_of(merchant: str, events: list[Event]) -> set[int]:
    return {rs.hour_start(e.occurred_at_ms) for e in events if e.merchant_id == merchant}


def test_an_open_hour_is_rolled_up_once_it_closes(
    rsettings: Settings, names: Names, os_client: OpenSearch
) -> None:
    now = wall_clock_ms()
    current = rs.hour_start(now)
    events = make_events(8, 200, current, now + 1)
    write_raw(os_client, rsettings, names, events, now)
    job = _job(os_client, rsettings, names)

    first = job.run_once()
    assert first.pairs == 0 and first.watermark_to is not None  # the open hour waits
    later = RollupJob(os_client, rsettings, names, owner="test", clock=lambda: now + HOUR)
    second = later.run_once()

    assert second.pairs == len({e.merchant_id for e in events})
    assert_matches_oracle(os_client, names, events)


def test_a_state_of_the_previous_schema_serves_nothing_until_a_full_run(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    """Rollups written before total documents existed: readers must not use them (they
    would find no totals and answer zero), and the next run recomputes every pair."""
    start = base_ms + 7 * HOUR
    events = make_events(8, 300, start, start + 2 * HOUR, merchants=3)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    job = _job(os_client, rsettings, names)
    w = job.run_once().watermark_to
    doc = os_client.get(index=names.state_index, id=state.STATE_ID)["_source"]
    del doc["rollups"]["schema"]  # what the first job version wrote (it had no shards)
    os_client.index(index=names.state_index, id=state.STATE_ID, body=doc, refresh=True)
    shard_docs = {"query": {"exists": {"field": "rollups.shard"}}}
    os_client.delete_by_query(index=names.state_index, body=shard_docs, refresh=True)
    os_client.delete_by_query(
        index=names.rollups_alias, body={"query": rs.TOTALS_ONLY}, refresh=True
    )
    merchant = events[0].merchant_id
    assert w is not None
    assert state.watermark(os_client, names) is None
    assert state.servable(os_client, rsettings, names, merchant, start, w, w).hours == set()

    report = job.run_once()

    assert report.watermark_from is None  # everything recomputed, not just new ingests
    assert_matches_oracle(os_client, names, events)  # totals included
    now = wall_clock_ms()
    assert state.servable(os_client, rsettings, names, merchant, start, start + 2 * HOUR, now).hours


def _as_schema_3(client: OpenSearch, names: Names) -> int:
    """Turn the stored rollups into what the schema-3 job wrote: detail documents without
    ``currency`` (under their old ids), TOTAL documents without ``money``, packs without
    slot codes, and a state of schema 3. Returns the old detail documents written."""
    client.indices.refresh(index=names.rollups_pattern)
    hits = client.search(
        index=names.rollups_alias, body={"size": 10_000, "query": {"match_all": {}}}
    )["hits"]["hits"]
    actions: list[dict[str, Any]] = []
    old_dims = tuple(d for d in rs.DIMENSIONS if d != rs.CURRENCY)
    for hit in hits:
        doc = dict(hit["_source"])
        doc.pop(rs.MONEY, None)
        if doc[rs.LEVEL] == rs.LEVEL_DAY:
            doc[rs.PACK] = {f: doc[rs.PACK][f] for f in rs.PACK_FIELDS}
        if doc[rs.LEVEL] == rs.LEVEL_DETAIL:
            actions.append({"_op_type": "delete", "_index": hit["_index"], "_id": hit["_id"]})
            doc.pop(rs.CURRENCY)
            key = "\x1f".join((doc[rs.MERCHANT], str(doc[rs.HOUR]), *(doc[d] for d in old_dims)))
            old_id = rs.doc_id(key, 0, ())  # any id the new job does not write
        else:
            doc.pop(rs.CURRENCY, None)
            old_id = hit["_id"]
        actions.append({"_index": hit["_index"], "_id": old_id, "_source": doc})
    helpers.bulk(client, actions, refresh=True)
    stored = client.get(index=names.state_index, id=state.STATE_ID)["_source"]
    stored["rollups"]["schema"] = 3
    client.index(index=names.state_index, id=state.STATE_ID, body=stored, refresh=True)
    as_single_lease_job(client, names)  # the schema-3 job held one lease, no shard documents
    return sum(1 for a in actions if a.get("_op_type") == "delete")


def test_schema_3_rollups_serve_nothing_and_are_rebuilt_with_currencies(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    """The upgrade of decision 0200: rollups of the previous job add currencies, so readers
    must not use them until the new job has recomputed every pair; old detail documents go."""
    start = base_ms + 9 * HOUR
    events = make_events(
        21, 800, start, start + 3 * HOUR, merchants=8
    )  # m00007: several currencies
    assert len({e.currency for e in events if e.merchant_id == "m00007" and e.currency}) > 1
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    job = _job(os_client, rsettings, names)
    w = job.run_once().watermark_to
    assert w is not None
    assert _as_schema_3(os_client, names) > 0

    assert state.watermark(os_client, names) is None  # the API answers from raw meanwhile
    hours = state.servable(os_client, rsettings, names, "m00007", start, w, w).hours
    assert hours == set()

    report = job.run_once()

    assert report.watermark_from is None  # everything recomputed
    assert_matches_oracle(os_client, names, events)  # no schema-3 document is left
    now = wall_clock_ms()
    assert state.servable(os_client, rsettings, names, "m00007", start, start + 3 * HOUR, now).hours
