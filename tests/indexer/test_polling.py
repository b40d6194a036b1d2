"""How often the consumer loop polls Kafka (docs/decisions/0235): every poll costs CPU in
kafka-python whether or not records come, so the loop waits for the writer, or polls with a
long timeout, when it has nothing else to do. These tests drive ``Indexer._step`` with a
stand-in consumer and chain (no engines: what is checked is which wait the loop chooses)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from kafka.errors import KafkaError

from indexer import consumer as loop
from indexer.consumer import Indexer
from indexer.metrics import Metrics
from indexer.model import Batch, Outcome
from indexer.steps.base import MessageRejected
from indexer.steps.live import LiveChains
from indexer.worker import Worker
from pulse.clients import opensearch_client
from pulse.settings import Settings
from tests.indexer.test_steps import Letters, Rec, _at, _payment


@dataclass
class StubConsumer:
    """Records the timeout of each poll; never returns records."""

    timeouts: list[int] = field(default_factory=list)

    def poll(self, timeout_ms: int, update_offsets: bool) -> dict[Any, list[Any]]:
        self.timeouts.append(timeout_ms)
        return {}

    def assignment(self) -> set[Any]:
        return set()

    def pause(self, *partitions: Any) -> None:
        pass

    def resume(self, *partitions: Any) -> None:
        pass


@dataclass
class StubChains:
    """LiveChains' state as the loop reads it; ``wait`` records its timeouts and answers
    ``progress`` (did the writer take or finish a batch meanwhile)."""

    writing: bool = False
    gathering: bool = False
    holding: bool = False
    progress: bool = False
    waits: list[float] = field(default_factory=list)

    def wait(self, timeout_s: float) -> bool:
        self.waits.append(timeout_s)
        return self.progress


class RefusingChain:
    """A chain whose writer queue is full: it refuses every record (backpressure)."""

    def __init__(self) -> None:
        self.polls = 0

    def submit(self, message: Any) -> None:
        raise MessageRejected

    def poll(self) -> None:
        self.polls += 1


def _loop(chains: StubChains, backlog: int = 0) -> tuple[Indexer, StubConsumer]:
    indexer = Indexer(Settings(namespace="polling"), "http://127.0.0.1:9", "127.0.0.1:9")
    consumer = StubConsumer()
    indexer.consumer = cast(Any, consumer)
    indexer.chains = cast(Any, chains)
    indexer.chain = cast(Any, RefusingChain())
    indexer.unresolved = {}  # no blocked batches to look up
    indexer.backlog.extend(object() for _ in range(backlog))
    return indexer, consumer


def test_an_idle_loop_polls_with_the_long_timeout_and_does_not_wait_for_the_writer() -> None:
    chains = StubChains()
    indexer, consumer = _loop(chains)
    indexer._step()
    assert consumer.timeouts == [int(loop.IDLE_POLL_S * 1000)]
    assert chains.waits == []


@pytest.mark.parametrize(
    ("gathering", "backlog", "waits"),
    [
        (False, 0, 2),  # caught up, batches in flight: both iterations wait
        (True, 3, 1),  # a full batch refused: the first iteration pauses, the second waits
    ],
)
def test_with_batches_at_the_writer_and_nothing_fetched_the_loop_waits_for_an_outcome(
    gathering: bool, backlog: int, waits: int
) -> None:
    chains = StubChains(writing=True, gathering=gathering)
    indexer, consumer = _loop(chains, backlog)
    indexer._step()
    indexer._step()
    # The first poll of a refused batch still has the short timeout (not paused yet); a poll
    # followed by a wait for the writer has none.
    assert consumer.timeouts == [int(loop.POLL_S * 1000)] * (2 - waits) + [0] * waits
    assert chains.waits == [loop.WRITER_WAIT_S] * waits
    assert indexer.paused == bool(backlog)


def test_a_full_batch_held_for_the_writer_waits_for_it_even_with_nothing_to_pause() -> None:
    """The last records of a burst filled a batch the writer's queue refused: no record is
    left to refuse (nothing to pause) and no age limit applies, so polling Kafka every 50 ms
    would only cost CPU until the writer takes a batch (``pulse bench indexer``'s tail)."""
    chains = StubChains(writing=True, gathering=True, holding=True)
    indexer, consumer = _loop(chains)
    indexer._step()
    assert consumer.timeouts == [0]
    assert chains.waits == [loop.WRITER_WAIT_S]
    assert not indexer.paused


def test_an_open_batch_keeps_the_short_poll_so_its_age_limit_is_kept() -> None:
    for writing in (False, True):
        chains = StubChains(writing=writing, gathering=True)
        indexer, consumer = _loop(chains)
        indexer._step()
        assert consumer.timeouts == [int(loop.POLL_S * 1000)]
        assert chains.waits == []


def test_the_worker_wakes_a_waiter_when_it_takes_or_finishes_a_batch_and_only_then() -> None:
    gate = threading.Event()

    def write(batch: Batch) -> Outcome:
        gate.wait(10)
        return Outcome(batch, done=True)

    worker = Worker(write)
    worker.start()
    try:
        assert not worker.wait(0.05)  # nothing offered: nothing to wake on
        assert worker.offer(Batch(1, 0))
        assert worker.wait(10)  # taken from the queue: room for the next batch
        assert not worker.wait(0.05)  # being written, not finished
        gate.set()
        assert worker.wait(10)
        assert [o.batch.seq for o in worker.collect()] == [1]
    finally:
        worker.stop()


def test_the_worker_wakes_a_waiter_when_it_dies() -> None:
    gate = threading.Event()

    def write(batch: Batch) -> Outcome:
        gate.wait(10)
        raise RuntimeError("a bug")

    worker = Worker(write)
    worker.start()
    try:
        assert worker.offer(Batch(1, 0))
        assert worker.wait(10)  # taken
        assert not worker.wait(0.05)
        gate.set()
        assert worker.wait(10)
        assert not worker.alive
    finally:
        worker.stop()


def test_live_chains_tell_an_open_batch_from_batches_at_the_writer() -> None:
    """What the loop's choice reads: the newest chain's open batch, the writer's queue. The
    writer thread is not started, so a handed-over batch stays queued; no engine is asked."""
    settings = Settings(namespace="polling", bulk_max_docs=2)
    client = opensearch_client("http://127.0.0.1:9")
    chains = LiveChains(settings, client, cast(Any, None), Letters(), Metrics(), cast(Any, None))
    chain = chains.create(lambda _offsets, _n: None)
    assert not chains.gathering and not chains.writing
    chain.submit(Rec(0, 0, _payment("p0", _at())))
    assert chains.gathering and not chains.writing
    chain.submit(Rec(0, 1, _payment("p1", _at())))  # full: handed to the writer's queue
    assert not chains.gathering and chains.writing and not chains.holding
    chain.submit(Rec(0, 2, _payment("p2", _at())))
    assert chains.gathering and not chains.holding  # open, not full: its age limit runs
    chain.submit(Rec(0, 3, _payment("p3", _at())))  # the queue (depth 2) is full now...
    assert not chains.gathering and not chains.holding
    for offset in (4, 5):  # ...so the next full batch is held
        chain.submit(Rec(0, offset, _payment(f"p{offset}", _at())))
    assert chains.gathering and chains.holding
    chains.create(lambda _offsets, _n: None)  # a new assignment: a new, empty open batch
    assert not chains.gathering and chains.writing and not chains.holding


@dataclass
class AssignedConsumer(StubConsumer):
    """Partitions kept across a rebalance, as kafka-python 3 leaves them: still positioned
    past records this consumer dropped. Records what the loop does to them."""

    owned: set[Any] = field(default_factory=set)
    committed_at: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # committed() raises this many times first (the coordinator is away)
    records: dict[Any, list[Any]] = field(default_factory=dict)
    calls: list[tuple[str, int, int | None]] = field(default_factory=list)

    def poll(self, timeout_ms: int, update_offsets: bool) -> dict[Any, list[Any]]:
        self.timeouts.append(timeout_ms)
        polled, self.records = self.records, {}
        return polled

    def assignment(self) -> set[Any]:
        return self.owned

    def highwater(self, tp: Any) -> int | None:
        return None

    def committed(self, tp: Any) -> int | None:
        if self.failures:
            self.failures -= 1
            raise KafkaError("coordinator not available")
        return self.committed_at.get(tp.partition)

    def seek(self, tp: Any, offset: int) -> None:
        self.calls.append(("seek", tp.partition, offset))

    def seek_to_beginning(self, *partitions: Any) -> None:
        self.calls.extend(("beginning", tp.partition, None) for tp in partitions)

    def resume(self, *partitions: Any) -> None:
        self.calls.extend(("resume", tp.partition, None) for tp in partitions)


def test_after_an_assignment_every_kept_partition_is_fetched_again_from_its_commit() -> None:
    """What was polled and dropped before the revoke comes again (no lost events), a blocked
    partition stays stopped, and what the first poll returns from the old position is not
    consumed (it is fetched again after the seek)."""
    from kafka import TopicPartition

    tps = [TopicPartition("events.raw", p) for p in range(3)]
    consumer = AssignedConsumer(owned=set(tps), committed_at={0: 10, 2: 5})
    consumer.records = {tps[0]: [object(), object()]}  # fetched from the kept position
    indexer, _ = _loop(StubChains())
    indexer.consumer = cast(Any, consumer)
    indexer.chains = None
    indexer.blocked = {2: cast(Any, object())}  # stopped at an undecodable batch
    indexer.on_assigned(set(tps))
    indexer._step()
    assert sorted(c for c in consumer.calls if c[0] != "resume") == [
        ("beginning", 1, None),  # nothing committed yet
        ("seek", 0, 10),
        ("seek", 2, 5),
    ]
    assert sorted(p for kind, p, _ in consumer.calls if kind == "resume") == [0, 1]
    assert indexer.consumed == 0 and not indexer.backlog
    indexer._step()  # done once per assignment
    assert len(consumer.calls) == 5


def test_a_failed_rewind_is_tried_again_and_takes_nothing_meanwhile() -> None:
    from kafka import TopicPartition

    tp = TopicPartition("events.raw", 0)
    consumer = AssignedConsumer(owned={tp}, committed_at={0: 7}, failures=1)
    consumer.records = {tp: [object()]}
    indexer, _ = _loop(StubChains())
    indexer.consumer = cast(Any, consumer)
    indexer.chains = None
    indexer.on_assigned({tp})
    indexer._step()
    assert consumer.calls == [] and indexer.consumed == 0  # not rewound yet, nothing taken
    consumer.records = {tp: [object()]}
    indexer._step()
    assert consumer.calls == [("seek", 0, 7), ("resume", 0, None)]
    assert indexer.consumed == 0 and not indexer.rewind


def test_progress_at_the_writer_hands_the_held_batch_over_before_the_feed() -> None:
    """Woken by the writer, the loop polls the chain (which offers its held batch) before it
    feeds the backlog, in the same iteration, rather than after one more wait."""
    for progress, polls in ((False, 1), (True, 2)):
        chains = StubChains(writing=True, gathering=True, progress=progress)
        indexer, _ = _loop(chains, backlog=3)
        indexer.paused = True
        indexer._step()
        assert cast(RefusingChain, indexer.chain).polls == polls
