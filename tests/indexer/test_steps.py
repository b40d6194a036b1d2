"""The indexing steps one at a time (indexer/steps, docs/decisions/0225), and the live chain
they make, against the real engine where a step touches it."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from indexer.batching import Limits
from indexer.decode import Bounds
from indexer.metrics import Metrics
from indexer.model import Batch, DeadLetter, IndexItem, Origin, Outcome, Skipped
from indexer.steps.base import MessageRejected, Offsets, Step
from indexer.steps.batch import BatchStep
from indexer.steps.commit import CommitStep
from indexer.steps.decode import DecodeStep
from indexer.steps.live import LiveChains
from indexer.steps.write import WriteStep, skipping_cancelled
from indexer.worker import Worker
from indexer.writer import BatchWriter
from ingest.contract import to_kafka_message
from pulse.clock import DAY_MS, now_ms
from pulse.naming import Names
from pulse.settings import Settings
from storage.arrivals import Arrivals
from storage.targets import Targets
from storage.templates import ensure_templates

BOUNDS = Bounds(max_future_ms=300_000, max_age_ms=30 * DAY_MS)


@dataclass
class Rec:
    """What the steps read of a kafka-python ConsumerRecord."""

    partition: int
    offset: int
    value: bytes
    topic: str = "events.raw"
    timestamp: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Sink(Step[Any]):
    """The end of a test chain: keeps what it is given; refuses while ``full``."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.full = False
        self.polls = 0

    def submit(self, message: Any) -> None:
        if self.full:
            raise MessageRejected
        self.got.append(message)

    def poll(self) -> None:
        self.polls += 1

    def joining(self, deadline: float | None) -> Iterator[None]:
        return iter(())


def _payment(event_id: str, at_ms: int, merchant: str = "m1") -> bytes:
    return to_kafka_message(
        {
            "event_id": event_id,
            "merchant_id": merchant,
            "event_type": "payment",
            "occurred_at": at_ms,
            "amount": 12.5,
            "status": "succeeded",
        }
    )


def _at() -> int:
    now = now_ms()
    return max(now - now % DAY_MS, now - 3_600_000)  # today, in the past


# --- decode ---------------------------------------------------------------------------------


def test_decode_gives_one_entry_per_record_and_keeps_a_refused_one() -> None:
    at = _at()
    sink = Sink()
    step = DecodeStep(sink, BOUNDS, keep_day=lambda day: day == at // DAY_MS)
    step.submit(Rec(0, 0, _payment("a", at)))
    step.submit(Rec(0, 1, b"{not json"))
    step.submit(Rec(0, 2, _payment("b", at - 2 * DAY_MS)))  # another day: skipped
    kinds = [type(e) for e in sink.got]
    assert kinds == [IndexItem, DeadLetter, Skipped]
    assert [e.origin.offset for e in sink.got] == [0, 1, 2]

    sink.full = True
    step.submit(Rec(0, 3, _payment("c", at)))  # decoded, refused downstream: carried
    with pytest.raises(MessageRejected):
        step.submit(Rec(0, 4, _payment("d", at)))  # not decoded: the caller keeps it
    sink.full = False
    step.poll()
    step.submit(Rec(0, 4, _payment("d", at)))
    assert [e.origin.offset for e in sink.got] == [0, 1, 2, 3, 4]  # none lost, none twice


# --- batch ----------------------------------------------------------------------------------


def _item(partition: int, offset: int) -> IndexItem:
    origin = Origin("events.raw", partition, offset, 0, None, b"{}")
    return IndexItem(origin, f"id{partition}-{offset}", 0, b'{"a":1}')


def test_batch_closes_when_full_and_refuses_while_the_next_step_does() -> None:
    sink = Sink()
    step = BatchStep(Limits(max_docs=2, max_bytes=10**9, max_age_s=60), sink, epoch=7)
    for offset in range(2):
        step.submit(_item(0, offset))
    assert len(sink.got) == 1 and sink.got[0].offsets == {0: 2} and sink.got[0].epoch == 7

    sink.full = True
    step.submit(_item(1, 0))
    step.submit(_item(1, 1))  # full now; handing it over was refused: it stays open
    with pytest.raises(MessageRejected):
        step.submit(_item(1, 2))
    assert len(step.open) == 2
    sink.full = False
    step.poll()  # a full batch is due
    step.submit(_item(1, 2))
    step.close()
    step.join(1)  # hands over the open batch whatever its size
    assert [b.offsets for b in sink.got] == [{0: 2}, {1: 2}, {1: 3}]


def test_batch_closes_by_age_on_poll() -> None:
    sink = Sink()
    step = BatchStep(Limits(max_docs=100, max_bytes=10**9, max_age_s=0.05), sink)
    step.submit(_item(0, 0))
    step.poll()
    assert sink.got == []
    time.sleep(0.06)
    step.poll()
    assert len(sink.got) == 1 and sink.polls == 2


# --- commit ---------------------------------------------------------------------------------


def test_commit_passes_only_durable_offsets_and_nothing_after_a_gap() -> None:
    committed: list[tuple[Offsets, int]] = []
    step = CommitStep(lambda offsets, n: committed.append((dict(offsets), n)))

    def outcome(offset: int, done: bool) -> Outcome:
        return Outcome(Batch(1, 0, [_item(0, offset)], offsets={0: offset + 1}), done)

    step.submit(outcome(0, True))
    step.submit(outcome(1, False))  # abandoned: its offset and every later one stay
    step.submit(outcome(2, True))
    assert committed == [({0: 1}, 1)]


# --- write, against the engine --------------------------------------------------------------


@pytest.fixture
def engine(settings: Settings, names: Names, os_client: OpenSearch) -> OpenSearch:
    ensure_templates(os_client, settings, names)
    return os_client


def _writer(client: OpenSearch, settings: Settings, names: Names, cancelled: Any) -> BatchWriter:
    targets = Targets(client, names, lambda _day: settings.generation, 1)
    arrivals = Arrivals(client, names, settings.arrivals_lookahead_ms)
    return BatchWriter(
        client, targets, Letters(), Metrics(), 10.0, cancelled=cancelled, arrivals=arrivals
    )


class Letters:
    """A dead-letter sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    def send(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        self.sent.extend(letters)
        return []


def _stored_ids(client: OpenSearch, names: Names) -> list[str]:
    client.indices.refresh(index=names.raw_pattern)
    body = {"query": {"match_all": {}}, "size": 10_000, "_source": ["event_id"]}
    hits = client.search(index=names.raw_pattern, body=body)["hits"]["hits"]
    return sorted(h["_source"]["event_id"] for h in hits)


def _decoded(records: list[Rec]) -> list[IndexItem]:
    sink = Sink()
    step = DecodeStep(sink, BOUNDS)
    for record in records:
        step.submit(record)
    assert all(isinstance(entry, IndexItem) for entry in sink.got)
    return sink.got


def _gated(writer: BatchWriter) -> tuple[Any, threading.Event, threading.Event]:
    """``writer.write`` held at a gate; ``started`` is set once the writer takes a batch."""
    gate, started = threading.Event(), threading.Event()

    def write(batch: Batch) -> Outcome:
        started.set()
        gate.wait(10)
        return writer.write(batch)

    return write, gate, started


def _offer(step: Step[Batch], batch: Batch) -> None:
    """Submit as the consumer loop does: poll and try again while refused."""
    deadline = time.monotonic() + 10
    while True:
        try:
            step.submit(batch)
            return
        except MessageRejected:
            assert time.monotonic() < deadline
            step.poll()
            time.sleep(0.01)


def test_write_makes_batches_durable_in_order_and_refuses_when_the_queue_is_full(
    settings: Settings, names: Names, engine: OpenSearch
) -> None:
    write, gate, started = _gated(_writer(engine, settings, names, cancelled=lambda _b: False))
    worker = Worker(write, depth=1)
    sink = Sink()
    step = WriteStep(worker, sink, abandon=lambda _e: None)
    worker.start()
    try:
        entries = _decoded([Rec(0, i, _payment(f"w{i}", _at())) for i in range(4)])
        batches = [Batch(i + 1, 0, [e], offsets={0: i + 1}) for i, e in enumerate(entries)]
        step.submit(batches[0])
        assert started.wait(10)  # the writer holds batch 1 at the gate
        step.submit(batches[1])  # queued
        with pytest.raises(MessageRejected):
            step.submit(batches[2])
        assert step.inflight == 2
        gate.set()
        _offer(step, batches[2])
        _offer(step, batches[3])
        step.close()
        step.join(30)
    finally:
        worker.stop()
    assert [o.batch.seq for o in sink.got] == [1, 2, 3, 4]
    assert all(o.done and o.indexed == 1 for o in sink.got)
    assert step.inflight == 0
    assert _stored_ids(engine, names) == ["w0", "w1", "w2", "w3"]


def test_write_join_abandons_what_is_not_durable_by_the_deadline(
    settings: Settings, names: Names, engine: OpenSearch
) -> None:
    cancelled = threading.Event()
    writer = _writer(engine, settings, names, cancelled=lambda _b: cancelled.is_set())
    write, gate, started = _gated(writer)
    worker = Worker(skipping_cancelled(write, lambda _b: cancelled.is_set()), depth=2)
    sink = Sink()
    step = WriteStep(worker, sink, abandon=lambda _e: cancelled.set())
    worker.start()
    try:
        entries = _decoded([Rec(0, i, _payment(f"x{i}", _at())) for i in range(2)])
        for i, entry in enumerate(entries):
            step.submit(Batch(i + 1, 0, [entry], offsets={0: i + 1}))
        assert started.wait(10)
        step.close()
        step.join(0.2)  # the writer is held at the gate: nothing is durable in time
        assert cancelled.is_set() and sink.got == []
        gate.set()

        def both_back() -> bool:
            step.poll()
            return len(sink.got) == 2

        assert _wait(both_back)
    finally:
        worker.stop()
    assert not sink.got[1].done  # queued when abandoned: never written
    assert "x1" not in _stored_ids(engine, names)


def _wait(check: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


# --- the live chain: a failing write is retried without losing or repeating a message -------


class FlakyBulk:
    """Wraps the client's transport: the ``_bulk`` calls listed in ``fail`` reach the engine
    (their documents are created) and then fail as if the answer was lost, so the writer
    retries a bulk the engine already applied. The first bulk is slow, so the writer's queue
    fills and the chain refuses records for a while (backpressure)."""

    def __init__(self, client: OpenSearch, fail: set[int]) -> None:
        self.real = client.transport.perform_request
        self.fail = fail
        self.bulks = 0
        client.transport.perform_request = self  # type: ignore[method-assign]

    def __call__(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url != "/_bulk":
            return self.real(method, url, *args, **kwargs)
        self.bulks += 1
        if self.bulks == 1:
            time.sleep(0.3)
        response = self.real(method, url, *args, **kwargs)
        if self.bulks in self.fail:
            raise OSConnectionError("N/A", "injected: the answer was lost", None)
        return response


def test_a_failed_and_retried_write_neither_loses_nor_repeats_a_message(
    settings: Settings, names: Names, engine: OpenSearch
) -> None:
    at = _at()
    s = settings.model_copy(update={"bulk_max_docs": 40, "bulk_max_age_ms": 50})
    flaky = FlakyBulk(engine, fail={2, 4})
    metrics = Metrics()
    targets = Targets(engine, names, lambda _day: s.generation, 1)
    arrivals = Arrivals(engine, names, s.arrivals_lookahead_ms)
    chains = LiveChains(s, engine, targets, Letters(), metrics, arrivals)
    committed: dict[int, int] = {}
    counted: list[int] = []

    def commit(offsets: Offsets, messages: int) -> None:
        for partition, offset in offsets.items():
            assert offset > committed.get(partition, 0), "an offset committed twice"
            committed[partition] = offset
        counted.append(messages)

    n = 400
    records = deque(Rec(i % 4, i // 4, _payment(f"e{i}", at, f"m{i % 7}")) for i in range(n))
    chains.start()
    chain = chains.create(commit)
    rejected = 0
    try:
        deadline = time.monotonic() + 60
        while records and time.monotonic() < deadline:
            try:
                while records:  # as the consumer loop: submit until refused, then poll
                    chain.submit(records[0])
                    records.popleft()
            except MessageRejected:
                rejected += 1
            chain.poll()
            time.sleep(0.005)
        chain.close()
        chain.join(60)
    finally:
        chains.stop()
    assert not records
    assert committed == {p: n // 4 for p in range(4)}  # every message, each partition to its end
    assert sum(counted) == n  # every message committed exactly once
    stored = _stored_ids(engine, names)
    assert stored == sorted(f"e{i}" for i in range(n))  # none lost, none stored twice
    sample = metrics.registry.get_sample_value
    created = sample("pulse_indexer_indexed_total") or 0
    existing = sample("pulse_indexer_duplicates_total", {"where": "exists"}) or 0
    assert existing > 0  # the retried bulks found their documents: 409, a success
    assert created + existing == n  # the answers lost were the creations, nothing else
    assert flaky.bulks >= 12  # 10 batches, 2 of them sent twice
    assert rejected > 0  # the writer's queue filled: the chain pushed back
