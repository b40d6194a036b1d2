"""Sharded rollups in one process: workers divide the shards, the served watermark is the
slowest shard's, a worker that lost a shard writes nothing more for it (the fence), and the
shard count can change under a running job."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch

from pulse.naming import Names, names_for
from pulse.settings import Settings
from rollups import compute, scan, shards, state
from rollups.job import RollupJob, wall_clock_ms
from rollups.shards import shard_of
from storage import rollup_schema as rs
from tests.rollups.helpers import HOUR, assert_matches_oracle, make_events, read_rollups, write_raw

SHARDS = 6


@pytest.fixture
def ssettings(rsettings: Settings) -> Settings:
    return rsettings.model_copy(update={"rollup_shards": SHARDS, "rollup_pairs_per_query": 4})


def recorded(job: RollupJob, log: list[tuple[str, str]]) -> RollupJob:
    """Record every rollup document id the job's writer sends to the engine (after its
    unchanged-content check), with the job's owner: what each worker actually wrote."""
    changed = job.writer._changed

    def spy(docs: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
        ids = changed(docs)
        log.extend((job.owner, i) for i in ids)
        return ids

    job.writer._changed = spy  # type: ignore[method-assign]
    return job


def comparable(docs: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {f: v for f, v in d.items() if f != rs.COMPUTED_AT} for k, d in docs.items()}


def test_shard_of_is_stable_and_spreads_merchants() -> None:
    assert shard_of("m-000001", 64) == shard_of("m-000001", 64)  # no per-process salt
    assert [shard_of(f"m-{i:06d}", 8) for i in range(4)] == [
        shard_of(f"m-{i:06d}", 8) for i in range(4)
    ]
    counts = Counter(shard_of(f"m-{i:06d}", 8) for i in range(8000))
    assert set(counts) == set(range(8)) and max(counts.values()) < 1.15 * 1000


def test_three_workers_give_the_same_rollups_as_one_and_never_write_the_same_document(
    ssettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    events = make_events(31, 900, base_ms + 6 * HOUR, base_ms + 12 * HOUR, merchants=18)
    through = wall_clock_ms() + 1
    # The same raw data in a second namespace, rolled up by one worker.
    alone = ssettings.model_copy(update={"namespace": f"t{uuid.uuid4().hex[:10]}"})
    alone_names = names_for(alone)
    for s, n in ((ssettings, names), (alone, alone_names)):
        write_raw(os_client, s, n, events, through - 1)
    single = RollupJob(os_client, alone, alone_names, owner="alone")
    single.bootstrap()
    assert single.run_once(through_ms=through).committed == tuple(range(SHARDS))

    log: list[tuple[str, str]] = []
    jobs = [recorded(RollupJob(os_client, ssettings, names, owner=f"w{i}"), log) for i in range(3)]
    jobs[0].bootstrap()
    for job in jobs:  # all three are up before the first run: each keeps two shards
        job.leases.heartbeat(wall_clock_ms())
    barrier = threading.Barrier(3)
    committed: dict[str, list[int]] = {job.owner: [] for job in jobs}

    def worker(job: RollupJob) -> None:
        barrier.wait()
        for _ in range(3):  # a claim lost to a rival is retried on the next run
            report = job.run_once(through_ms=through)
            committed[job.owner] += report.committed

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert sorted(i for done in committed.values() for i in done) == list(range(SHARDS))
    assert all(len(done) == 2 for done in committed.values()), committed
    writers: dict[str, set[str]] = {}
    for owner, doc_id in log:
        writers.setdefault(doc_id, set()).add(owner)
    assert writers and all(len(w) == 1 for w in writers.values())  # one writer per document
    assert len({next(iter(w)) for w in writers.values()}) == 3
    assert state.watermark(os_client, names) == through
    got = assert_matches_oracle(os_client, names, events)
    assert comparable(got) == comparable(read_rollups(os_client, alone_names))


def test_the_served_watermark_is_the_slowest_shards(
    ssettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    first = make_events(32, 300, base_ms + 6 * HOUR, base_ms + 8 * HOUR)
    write_raw(os_client, ssettings, names, first, wall_clock_ms())
    w1 = wall_clock_ms() + 1
    a = RollupJob(os_client, ssettings, names, owner="a")
    a.bootstrap()
    a.run_once(through_ms=w1)
    assert state.watermark(os_client, names) == w1
    a.release()

    late = make_events(33, 300, base_ms + 6 * HOUR, base_ms + 8 * HOUR)
    write_raw(os_client, ssettings, names, late, wall_clock_ms())
    w2 = wall_clock_ms() + 1
    b = RollupJob(os_client, ssettings, names, owner="b")
    b.leases.heartbeat(wall_clock_ms())  # two live workers: each keeps half the shards
    c = RollupJob(os_client, ssettings, names, owner="c")
    half = c.run_once(through_ms=w2)

    assert len(half.committed) == SHARDS // 2 and half.served == w1  # the others are at w1
    assert state.watermark(os_client, names) == w1
    rest = b.run_once(through_ms=w2)
    assert sorted(half.committed + rest.committed) == list(range(SHARDS))
    assert rest.served == w2 == state.watermark(os_client, names)
    assert_matches_oracle(os_client, names, [*first, *late])
    # A hold covers every shard: the served hours exclude it whoever rolled them up.
    state.hold(os_client, names, "reprocess.t", base_ms + 6 * HOUR, base_ms + 7 * HOUR)
    hours = state.candidates(os_client, ssettings, names, base_ms, base_ms + DAY, w2).hours
    assert base_ms + 6 * HOUR not in hours and base_ms + 7 * HOUR in hours


DAY = 24 * HOUR


class Paused:
    """Blocks one worker inside its read of a chunk (after the read, before the write), the
    way a GC pause or a stalled host would, until released."""

    def __init__(self, client: OpenSearch) -> None:
        self.client = client
        self.inside = threading.Event()
        self.resume = threading.Event()
        self.calls = 0

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = compute.recompute

        def recompute(client: OpenSearch, *args: Any) -> dict[Any, Any]:
            found = real(client, *args)
            if client is self.client:
                self.calls += 1
                if self.calls == 2:  # the second chunk: the first one's shard is written
                    self.inside.set()
                    assert self.resume.wait(60)
            return found

        monkeypatch.setattr(compute, "recompute", recompute)


@pytest.fixture
def clock() -> Iterator[list[int]]:
    yield [0]  # an offset the test moves: time passing for the paused worker


def test_a_paused_worker_writes_nothing_after_its_lease_ran_out(
    ssettings: Settings,
    names: Names,
    os_client: OpenSearch,
    opensearch_url: str,
    base_ms: int,
    clock: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pulse.clients import opensearch_client

    one_shard = ssettings.model_copy(update={"rollup_shards": 1, "rollup_pairs_per_query": 3})
    events = make_events(34, 400, base_ms + 6 * HOUR, base_ms + 10 * HOUR, merchants=8)
    write_raw(os_client, one_shard, names, events, wall_clock_ms())
    zombie_client = opensearch_client(opensearch_url)
    paused = Paused(zombie_client)
    paused.patch(monkeypatch)
    log: list[tuple[str, str]] = []
    zombie = recorded(
        RollupJob(
            zombie_client,
            one_shard,
            names,
            owner="zombie",
            clock=lambda: wall_clock_ms() + clock[0],
        ),
        log,
    )
    zombie.bootstrap()
    ttl = zombie.leases.ttl_ms
    reports = []
    thread = threading.Thread(target=lambda: reports.append(zombie.run_once()))
    thread.start()
    assert paused.inside.wait(60)
    written_before = len(log)

    # Its lease runs out; another worker takes the shard over and finishes the run, and a
    # late event changes a pair the paused worker has already read.
    clock[0] = ttl + 1_000
    late = make_events(35, 300, base_ms + 6 * HOUR, base_ms + 10 * HOUR, merchants=8)
    write_raw(os_client, one_shard, names, late, wall_clock_ms() + ttl + 500)
    taker = RollupJob(
        os_client, one_shard, names, owner="taker", clock=lambda: wall_clock_ms() + ttl + 1_000
    )
    taken = taker.run_once()
    assert taken.committed == (0,)
    doc = shards.read_all(os_client, names, 1)[0]
    assert doc.owner() == "taker" and doc.epoch() == 2

    paused.resume.set()
    thread.join(60)

    (report,) = reports
    assert report.lost == (0,) and report.committed == ()  # its progress did not count
    assert written_before > 0 and log[written_before:] == []  # nothing written after the pause
    after = shards.read_all(os_client, names, 1)[0]
    assert after.owner() == "taker" and after.watermark(one_shard.generation) == taken.watermark_to
    assert state.watermark(os_client, names) == taken.watermark_to
    assert_matches_oracle(os_client, names, [*events, *late])


def test_changing_the_shard_count_starts_the_new_layout_at_the_served_watermark(
    ssettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    first = make_events(36, 300, base_ms + 6 * HOUR, base_ms + 8 * HOUR)
    write_raw(os_client, ssettings, names, first, wall_clock_ms())
    old = RollupJob(os_client, ssettings, names, owner="old")
    old.bootstrap()
    w1 = old.run_once(through_ms=wall_clock_ms() + 1).served
    old.release()
    late = make_events(37, 100, base_ms + 7 * HOUR, base_ms + 8 * HOUR)
    write_raw(os_client, ssettings, names, late, wall_clock_ms())

    more = ssettings.model_copy(update={"rollup_shards": SHARDS + 3})
    new = RollupJob(os_client, more, names, owner="new")
    report = new.run_once(through_ms=wall_clock_ms() + 1)

    assert w1 is not None and report.watermark_from == w1  # not a full recompute
    assert report.pairs == len({(e.merchant_id, rs.hour_start(e.occurred_at_ms)) for e in late})
    assert report.served == report.watermark_to == state.watermark(os_client, names)
    assert_matches_oracle(os_client, names, [*first, *late])


def test_workers_count_the_live_ones_and_forget_the_long_dead(
    ssettings: Settings, names: Names, os_client: OpenSearch
) -> None:
    state.ensure_state_index(os_client, names)
    now = wall_clock_ms()
    for owner, expires in (("dead", now - 2 * DAY), ("gone", now - 1_000), ("alive", now + 60_000)):
        body = {"rollups": {"kind": "worker", "owner": owner, "expires_at": expires}}
        os_client.index(
            index=names.state_index, id=shards.worker_id(owner), body=body, refresh=True
        )
    me = shards.ShardLeases(os_client, names, "me", SHARDS, 60_000)

    assert me.heartbeat(now) == 2  # "alive" and itself; "gone" expired a second ago
    os_client.indices.refresh(index=names.state_index)
    left = {
        hit["_id"]
        for hit in os_client.search(index=names.state_index, body={"size": 50})["hits"]["hits"]
    }
    assert shards.worker_id("dead") not in left  # a day past its expiry: deleted
    assert {shards.worker_id(o) for o in ("gone", "alive", "me")} <= left


def test_workers_share_one_pair_scan_per_window_and_outlive_a_dead_scanner(
    ssettings: Settings,
    names: Names,
    os_client: OpenSearch,
    base_ms: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hourly = ssettings.model_copy(update={"rollup_watermark_step_s": 3600.0})
    now = wall_clock_ms()
    window_end = now - now % HOUR  # the scheduled runs' W_to: rounded down to the step
    events = make_events(38, 400, base_ms + 6 * HOUR, base_ms + 8 * HOUR)
    write_raw(os_client, hourly, names, events, window_end - 1_000)
    scans: list[int | None] = []
    real = compute.changed_pairs

    def counted(client: OpenSearch, index: str, after: int | None, *rest: Any) -> Any:
        scans.append(after)
        return real(client, index, after, *rest)

    monkeypatch.setattr(compute, "changed_pairs", counted)
    a, b = (RollupJob(os_client, hourly, names, owner=o) for o in ("a", "b"))
    a.bootstrap()
    for job in (a, b):
        job.leases.heartbeat(wall_clock_ms())

    first, second = a.run_once(), b.run_once()

    assert scans == [None]  # one scan of (start, window_end] for both workers
    assert (a.scan.scans, b.scan.scans) == (1, 0)
    assert sorted(first.committed + second.committed) == list(range(SHARDS))
    assert first.watermark_to == second.watermark_to == window_end
    assert state.watermark(os_client, names) == window_end
    assert_matches_oracle(os_client, names, events)

    # A scanner that took the next window's lock and died: the others wait for its lock to
    # run out, then scan themselves.
    late = make_events(39, 50, base_ms + 6 * HOUR, base_ms + 8 * HOUR)
    write_raw(os_client, hourly, names, late, window_end + 1_000)
    later = window_end + HOUR
    expires = wall_clock_ms() + HOUR + 1_500  # in c's clock, an hour ahead
    lock = {"rollups": {"kind": "scan-lock", "end": later, "expires_at": expires}}
    lock_id = f"{scan.key(SHARDS, window_end, later)}.lock"
    os_client.index(index=names.state_index, id=lock_id, body=lock, refresh=True)
    c = RollupJob(os_client, hourly, names, owner="c", clock=lambda: wall_clock_ms() + HOUR)
    started = time.monotonic()
    report = c.run_once()  # a and b are gone by its clock: it takes every shard

    assert time.monotonic() - started > 1.0  # it waited for the dead scanner's lock
    assert report.watermark_to == later and c.scan.scans == 1 and scans[-1] == window_end
    assert_matches_oracle(os_client, names, [*events, *late])
