"""Two schedulers at once, a scheduler killed mid-run, overlapping writers, resumable backfill."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from opensearchpy import OpenSearch

from pulse.naming import Names
from pulse.settings import Settings
from rollups import compute, state
from rollups.backfill import backfill, progress_id, rebuild
from rollups.job import RollupJob, RunReport, wall_clock_ms
from tests.rollups.helpers import HOUR, assert_matches_oracle, make_events, write_raw


class Crash(Exception):
    """Stands in for the process dying: nothing after it runs, the lease is not released."""


def _crash_after_first_chunk(done: int, total: int) -> None:
    if done < total:
        raise Crash()


def test_two_schedulers_at_once_write_once(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    events = make_events(11, 600, base_ms + 8 * HOUR, base_ms + 12 * HOUR)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    jobs = [RollupJob(os_client, rsettings, names, owner=f"replica-{i}") for i in range(2)]
    jobs[0].bootstrap()
    reports: list[RunReport] = []
    barrier = threading.Barrier(2)

    def replica(job: RollupJob) -> None:
        barrier.wait()
        reports.extend(job.run_once() for _ in range(2))

    threads = [threading.Thread(target=replica, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    # Each shard is run by one of them: together they recompute every pair once.
    assert len(reports) == 4 and not any(r.lost for r in reports)
    assert sum(r.pairs for r in reports) == len(
        {(e.merchant_id, e.occurred_at_ms // HOUR) for e in events}
    )
    assert_matches_oracle(os_client, names, events)


def test_overlapping_unfenced_writers_do_not_double_count(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    events = make_events(12, 500, base_ms + 9 * HOUR, base_ms + 11 * HOUR)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    jobs = [RollupJob(os_client, rsettings, names, owner=f"w{i}") for i in range(2)]
    jobs[0].bootstrap()
    pairs = sorted({(e.merchant_id, e.occurred_at_ms - e.occurred_at_ms % HOUR) for e in events})
    threads = [
        threading.Thread(target=job.recompute_pairs, args=(pairs, None, None, True)) for job in jobs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert_matches_oracle(os_client, names, events)


def test_a_scheduler_killed_mid_run_is_finished_by_the_next(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    small = rsettings.model_copy(update={"rollup_pairs_per_query": 5})
    events = make_events(13, 600, base_ms + 8 * HOUR, base_ms + 12 * HOUR)
    write_raw(os_client, small, names, events, wall_clock_ms())
    crashed = RollupJob(os_client, small, names, owner="crashed")
    crashed.bootstrap()
    with pytest.raises(Crash):
        crashed.run_once(on_chunk=_crash_after_first_chunk)
    assert state.watermark(os_client, names) is None  # W did not move

    ttl_ms = crashed.leases.ttl_ms
    held = set(crashed.leases.held)
    assert len(held) == small.rollup_shards  # alone, it took every shard
    early = RollupJob(os_client, small, names, owner="next")
    assert early.run_once().skipped == "every shard is held by another worker"
    later = RollupJob(os_client, small, names, owner="next", clock=lambda: wall_clock_ms() + ttl_ms)
    report = later.run_once()  # the lease expired: taken over, the work finished

    assert report.skipped is None and report.watermark_from is None
    assert_matches_oracle(os_client, names, events)
    # The crashed replica, should it wake up, may no longer write: its renewals are refused.
    assert crashed.leases.renew(held, wall_clock_ms()) == held and not crashed.leases.held


def test_backfill_resumes_where_it_stopped(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    start, end = base_ms + 8 * HOUR, base_ms + 12 * HOUR
    events = make_events(14, 500, start, end)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    seen: list[int] = []

    def stop_after_two(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            raise Crash()

    with pytest.raises(Crash):
        backfill(os_client, rsettings, names, start, end, stop_after_two)
    doc = os_client.get(index=names.state_index, id=progress_id(rsettings.generation, start, end))
    assert doc["_source"]["rollups"]["next_hour"] == start + 2 * HOUR

    report = backfill(os_client, rsettings, names, start, end, lambda d, t: seen.append(d))

    assert report.resumed_at == start + 2 * HOUR and report.hours == 2
    assert seen == [1, 2, 3, 4]
    assert_matches_oracle(os_client, names, events)
    assert backfill(os_client, rsettings, names, start, end).hours == 0  # finished: a no-op


def test_an_older_computation_cannot_overwrite_a_newer_one(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    events = make_events(15, 100, base_ms + 8 * HOUR, base_ms + 9 * HOUR)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    job = RollupJob(os_client, rsettings, names, owner="w")
    job.bootstrap()
    pairs = sorted({(e.merchant_id, base_ms + 8 * HOUR) for e in events})
    buckets = compute.recompute(os_client, job.raw, pairs, 1000)
    now = wall_clock_ms()
    job.writer.write(buckets, now)
    stale = {key: dataclasses.replace(b, events=b.events + 1) for key, b in buckets.items()}

    zombie = job.writer.write(stale, now - 60_000)  # a paused writer's older snapshot
    deleted = job.writer.delete_stale(pairs, frozenset(), now - 60_000)
    job.packs.derive(pairs)  # as the job does after writing: packs follow what is stored

    assert zombie.superseded == len(buckets) and zombie.written == 0 and deleted == 0
    assert_matches_oracle(os_client, names, events)


def test_rebuild_after_raw_data_was_replaced_prunes_what_is_gone(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    start, end = base_ms + 8 * HOUR, base_ms + 10 * HOUR
    events = make_events(16, 300, start, end)
    write_raw(os_client, rsettings, names, events, wall_clock_ms())
    backfill(os_client, rsettings, names, start, end)
    gone = events[0].merchant_id  # a reprocess dropped this merchant's events
    os_client.delete_by_query(
        index=names.events_alias, body={"query": {"term": {"merchant_id": gone}}}, refresh=True
    )

    rebuild(os_client, rsettings, names, start, end)

    assert_matches_oracle(os_client, names, [e for e in events if e.merchant_id != gone])
