"""The indexer's consumer (arroyo's ``StreamProcessor``): it polls Kafka and submits each
record to the chain of steps that ``indexer.steps.live`` builds for the current assignment
(decode -> batch -> write -> commit), and commits the offsets that chain passes back.

What stays here is what needs the consumer: fetching, pausing while the chain refuses records
(backpressure), lag, undecodable record batches (docs/decisions/0110) and the rebalance
hooks. Offsets are committed only from finished batches, in order (the commit step). On a
revoke and on shutdown the chain is joined: the open batch is flushed and the in-flight
batches are given a bounded time (``shutdown_timeout_s``) to become durable; whatever is not
durable by then is abandoned uncommitted and replayed by the next owner (an idempotent create).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from opensearchpy import OpenSearch

from indexer.codecs import missing_codecs
from indexer.dlq import DlqWriter, dlq_producer
from indexer.fetching import install
from indexer.metrics import Metrics
from indexer.steps.base import MessageRejected, Offsets, Step
from indexer.steps.live import LiveChains
from indexer.steps.write import WriterFailed
from indexer.undecodable import (
    RESOLVED,
    SKIP_REQUESTED,
    SKIPPED,
    BadBatch,
    BlockedBatches,
    locate,
)
from pulse.clients import ensure_topics, opensearch_client
from pulse.naming import Names, names_for
from pulse.settings import Settings
from storage.arrivals import Arrivals
from storage.targets import Targets
from storage.templates import ensure_templates

log = logging.getLogger("pulse.indexer")
POLL_S = 0.05
# Each consumer poll costs about 1.5 ms of CPU in kafka-python 3 (several hand-offs to its IO
# thread), whether or not records come: at POLL_S that was ~30 ms of CPU per second, half the
# indexer's cost per event in `pulse bench indexer`. So the loop polls at POLL_S only while
# records flow or a batch is open; otherwise it waits (docs/decisions/0235):
IDLE_POLL_S = 0.5  # nothing open or in flight: new records still end the poll at once
# Only the writer can move the chain: poll without a timeout (≈ 0.3-0.5 ms against ≈ 1-1.5 ms
# for a 50 ms one, which loops inside kafka-python), then wait for the writer's progress, which
# wakes the loop at once. Each poll of unpaused partitions also sends fetches (≈ 6-11 ms CPU/s
# polling every 0.25 s, ≈ 3.6 every 1 s), so the wait is long; records arriving meanwhile are
# fetched at the writer's next step or within WRITER_WAIT_S (docs/decisions/0258).
WRITER_WAIT_S = 1.0
LAG_EVERY_S = 1.0
BLOCKED_CHECK_S = 2.0  # how often a blocked partition looks for the operator's decision


def consumer_for(settings: Settings, bootstrap: str, names: Names) -> KafkaConsumer:
    """The group member that fetches; its records come as ``Origin`` structs
    (``indexer.fetching``, docs/decisions/0300)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=names.group(settings.indexer_group),
        client_id="pulse-indexer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        max_poll_records=settings.bulk_max_docs,
        # The revoke callback may wait shutdown_timeout_s for in-flight bulks.
        max_poll_interval_ms=int(max(300.0, 3 * settings.shutdown_timeout_s) * 1000),
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    install(consumer)
    return consumer


def generation_resolver(client: OpenSearch, settings: Settings) -> Callable[[date], str]:
    """Which generation receives a day's events: the reprocess registry (docs/decisions/0050)
    maps switched days to their new generation; every other day uses settings.generation."""
    from storage.registry import GenerationResolver

    resolver = GenerationResolver(
        client, names_for(settings), settings.generation, settings.generation_registry_ttl_s
    )
    return resolver.generation_for_day


class Indexer:
    """One indexer process's consumer loop. ``run(stop)`` returns when ``stop`` is set."""

    def __init__(self, settings: Settings, opensearch_url: str, bootstrap: str) -> None:
        self.settings = settings
        self.names = names_for(settings)
        self.bootstrap = bootstrap
        self.client: OpenSearch = opensearch_client(opensearch_url, settings.engine_timeout_s)
        self.metrics = Metrics()
        self.backlog: deque[Any] = deque()  # polled, refused by the chain so far
        self.paused = False
        self.last_offset: dict[int, int] = {}
        self.consumed = 0
        self.settled = 0  # messages of committed batches (progress for tests and benchmarks)
        self._next_lag = 0.0
        self.consumer: KafkaConsumer | None = None
        self.pending_commit: Offsets = {}  # partition -> offset, durable, not committed
        self.closing = False
        self.dlq: DlqWriter | None = None
        self.chains: LiveChains | None = None
        self.chain: Step[Any] | None = None  # the current assignment's
        self.blocked: dict[int, BadBatch] = {}  # partition -> the batch it is stopped at
        self.store = BlockedBatches(self.client, self.names)
        self._seen_bad: set[str] = set()
        # Batches reported blocked (by any indexer) that this one may find decodable now.
        self.unresolved: dict[int, list[tuple[str, int]]] | None = None
        self._next_blocked_check = 0.0
        self._next_unresolved_load = 0.0
        self.rewind: set[Any] = (
            set()
        )  # assigned partitions to fetch again from the committed offset

    # --- lifecycle -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> bool:
        """Consume until ``stop`` is set; True on a clean stop, False if the writer failed."""
        if not self._bootstrap(stop):
            return True
        consumer = self.consumer = consumer_for(self.settings, self.bootstrap, self.names)
        self.dlq = DlqWriter(
            dlq_producer(self.bootstrap), self.names.topic_dlq, self.settings.engine_timeout_s
        )
        chains = self.chains = self._chains()
        chains.start()
        self.chain = chains.create(self._durable)
        self.metrics.serve(self.settings.indexer_metrics_port)
        consumer.subscribe([self.names.topic_raw], listener=RebalanceBridge(self, consumer))
        log.info("indexer started", extra={"topic": self.names.topic_raw})
        if missing := missing_codecs():  # batches in these codecs block their partition
            log.error("kafka codec libraries missing", extra={"codecs": missing})
        try:
            while not stop.is_set() and chains.alive:
                self._step()
        finally:
            self._shutdown()
        return chains.error is None

    def _bootstrap(self, stop: threading.Event) -> bool:
        """Topics and templates exist (idempotent); retried until the engines answer."""
        while not stop.is_set():
            try:
                ensure_topics(self.settings, self.bootstrap, self.names)
                ensure_templates(self.client, self.settings, self.names)
                self.store.ensure()
                return True
            except Exception as exc:  # engines not up yet: keep trying until told to stop
                log.warning("bootstrap failed; retrying", extra={"error": repr(exc)})
                stop.wait(1.0)
        return False

    def _chains(self) -> LiveChains:
        assert self.dlq is not None
        targets = Targets(
            self.client, self.names, generation_resolver(self.client, self.settings),
            self.settings.indexer_conflict_days,
        )  # fmt: skip
        arrivals = Arrivals(self.client, self.names, self.settings.arrivals_lookahead_ms)
        return LiveChains(self.settings, self.client, targets, self.dlq, self.metrics, arrivals)

    def _durable(self, offsets: Offsets, messages: int) -> None:
        """The commit step's callback: these offsets may be committed (sent at the next loop
        iteration, or by the revoke hook)."""
        self.pending_commit.update(offsets)
        self.settled += messages

    def _shutdown(self) -> None:
        started = time.monotonic()
        budget = self.settings.shutdown_timeout_s
        if self.chains is not None and self.chains.alive:
            self._drain(started + 0.7 * budget)
        self.closing = True  # the revoke that close() triggers finds nothing left to drain
        if self.consumer is not None:
            self.consumer.close(autocommit=False, timeout_ms=int(0.1 * budget * 1000))
        if self.chains is not None:
            self.chains.stop()
        if self.dlq is not None:
            self.dlq.close(max(0.1, 0.1 * budget))
        log.info("indexer stopped", extra={"took_s": round(time.monotonic() - started, 3)})

    # --- the loop --------------------------------------------------------------------------

    def _step(self) -> None:
        polled = self._poll()
        if self.rewind:
            polled = self._rewind(polled)
        if not polled:
            self._await_writer()
        self._resolve(polled)
        for records in polled.values():
            self.backlog.extend(records)
            self.metrics.consumed.inc(len(records))
            self.consumed += len(records)
            last = records[-1]
            self.last_offset[last.partition] = last.offset
        self._feed()
        try:
            self._chain().poll()
        except WriterFailed:
            return  # the loop ends on a dead writer; run() reports it
        self._commit_pending()
        self._backpressure()
        self._report_lag()
        self._check_blocked()

    def _poll(self) -> dict[Any, list[Any]]:
        """One poll; an undecodable batch stops its own partition instead of the consumer."""
        assert self.consumer is not None
        chains = self.chains
        idle = chains is not None and not (chains.writing or chains.gathering or self.backlog)
        timeout_s = IDLE_POLL_S if idle else POLL_S
        if self._waits_for_writer():
            timeout_s = 0.0  # the wait is on the writer (``_await_writer``), not in here
        try:
            polled: dict[Any, list[Any]] = self.consumer.poll(
                timeout_ms=int(timeout_s * 1000), update_offsets=True
            )
        except Exception as exc:
            bad = locate(exc)
            if bad is None or bad.topic != self.names.topic_raw:
                raise
            self._block(bad)
            return {}
        return polled

    def _rewind(self, polled: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """After an assignment: fetch every assigned partition again from the group's committed
        offset, and start backpressure from "not paused". kafka-python 3 keeps a partition's
        position and paused flag when it stays assigned across a rebalance
        (``SubscriptionState.assign_from_subscribed``), but what this consumer had polled and
        not made durable was dropped by the drain (backlog, open batch, abandoned batches): left
        at the kept position, a later commit would pass over it (lost events). The records this
        poll returned for those partitions are dropped too: they are fetched again."""
        consumer = self.consumer
        assert consumer is not None
        rewind = self.rewind
        others = {tp: records for tp, records in polled.items() if tp not in rewind}
        mine = rewind & set(consumer.assignment())  # another rebalance may have come since
        try:
            for tp in mine:
                committed = consumer.committed(tp)
                if committed is None:
                    consumer.seek_to_beginning(tp)  # nothing committed: auto_offset_reset
                else:
                    consumer.seek(tp, committed)
        except KafkaError as exc:  # tried again at the next poll; nothing of theirs is taken
            log.warning("rewind after assignment failed", extra={"error": repr(exc)})
            return others
        self.rewind = set()
        fetching = [tp for tp in mine if tp.partition not in self.blocked]
        if fetching:
            consumer.resume(*fetching)
        return others

    def _await_writer(self) -> None:
        """Nothing came from Kafka and the chain waits for the writer (batches in flight, and
        either fetching is paused, or no batch is open, or the open one is full and held for
        the writer's queue: no age limit runs out meanwhile): wait up to WRITER_WAIT_S for it
        to take or finish a batch rather than polling again at once.
        The outcome is then passed on by this loop iteration (commit, resume fetching); a
        batch the chain held is handed over at once, so this iteration's feed can go on."""
        chains = self.chains
        if chains is None or not self._waits_for_writer():
            return
        if chains.wait(WRITER_WAIT_S):
            with contextlib.suppress(WriterFailed):  # the loop's own chain.poll() reports it
                self._chain().poll()

    def _waits_for_writer(self) -> bool:
        """Only the writer's progress can move the chain: batches are at the writer and no
        open batch may close by age (none is open, or fetching is paused, or the open one is
        full and held for the writer's queue)."""
        chains = self.chains
        if chains is None or not chains.writing:
            return False
        return not chains.gathering or self.paused or chains.holding

    # --- undecodable batches (docs/decisions/0110) -----------------------------------------

    def _block(self, bad: BadBatch) -> None:
        """Stop ``bad``'s partition at it (paused; nothing past it is ever committed)."""
        assert self.consumer is not None
        self.consumer.pause(TopicPartition(bad.topic, bad.partition))
        self.blocked[bad.partition] = bad
        for waiting in (self.unresolved or {}).values():  # not decodable here: not resolved
            waiting[:] = [(key, offset) for key, offset in waiting if key != bad.key]
        label = str(bad.partition)
        if bad.key not in self._seen_bad:
            self._seen_bad.add(bad.key)
            self.metrics.undecodable.labels(label).inc()
        self.metrics.blocked.labels(label).set(1)
        log.error(
            "undecodable record batch: partition stopped",
            extra={
                "topic": bad.topic, "partition": bad.partition, "offset": bad.offset,
                "next_offset": bad.next_offset, "error": bad.error, "size": len(bad.raw),
            },
        )  # fmt: skip
        self._next_blocked_check = 0.0  # report it (and find a standing decision) at once

    def _resolve(self, polled: dict[Any, list[Any]]) -> None:
        """A batch reported blocked earlier was decoded now (the codec library was installed
        and the indexer restarted): mark it resolved, so no operator acts on it."""
        if self.unresolved is None:
            if time.monotonic() < self._next_unresolved_load:
                return
            try:
                self.unresolved = self.store.open_batches(self.names.topic_raw)
            except Exception as exc:  # the engine is down: look again a little later
                self._next_unresolved_load = time.monotonic() + BLOCKED_CHECK_S
                log.warning("blocked batches not readable", extra={"error": repr(exc)})
                return
        for tp, records in polled.items():
            waiting = self.unresolved.get(tp.partition)
            for key, offset in list(waiting or ()):
                if records[-1].offset < offset or tp.partition in self.blocked:
                    continue
                try:
                    self.store.set_status(key, RESOLVED)
                except Exception as exc:  # stays listed; the next indexer start tries again
                    log.warning("blocked batch not marked resolved", extra={"error": repr(exc)})
                waiting.remove((key, offset))  # type: ignore[union-attr]
                log.info("blocked batch decoded after all", extra={"key": key})

    def _check_blocked(self) -> None:
        if not self.blocked or time.monotonic() < self._next_blocked_check:
            return
        self._next_blocked_check = time.monotonic() + BLOCKED_CHECK_S
        for bad in list(self.blocked.values()):
            try:
                status = self.store.report(bad)
                if status == SKIP_REQUESTED:
                    status = self._dead_letter(bad)
            except Exception as exc:  # the engine is down: stay blocked, look again later
                log.warning("blocked batch check failed", extra={"error": repr(exc)})
                continue
            if status == SKIPPED:
                self._skip(bad)

    def _dead_letter(self, bad: BadBatch) -> str:
        """The operator asked to skip: the batch's bytes go to events.dlq first."""
        assert self.dlq is not None
        if self.dlq.send([bad.dead_letter()]):
            return SKIP_REQUESTED  # not durable in the DLQ yet: try again next check
        self.metrics.dlq.labels(bad.dead_letter().reason).inc()
        self.store.set_status(bad.key, SKIPPED)
        return SKIPPED

    def _skip(self, bad: BadBatch) -> None:
        assert self.consumer is not None
        if bad.next_offset is None:
            log.error("cannot skip: the batch's end is unknown", extra={"key": bad.key})
            return
        tp = TopicPartition(bad.topic, bad.partition)
        self.consumer.seek(tp, bad.next_offset)
        if not self.paused:
            self.consumer.resume(tp)
        del self.blocked[bad.partition]
        self.metrics.blocked.labels(str(bad.partition)).set(0)
        log.warning(
            "undecodable record batch skipped (dead-lettered)",
            extra={"partition": bad.partition, "offset": bad.offset, "next": bad.next_offset},
        )

    def _feed(self) -> None:
        """Submit the backlog to the chain until it refuses a record (kept for later)."""
        chain, backlog = self._chain(), self.backlog
        try:
            while backlog:
                chain.submit(backlog[0])
                backlog.popleft()
        except MessageRejected:
            pass

    def _commit_request(self) -> dict[TopicPartition, OffsetAndMetadata]:
        topic = self.names.topic_raw
        offsets, self.pending_commit = self.pending_commit, {}
        return {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}

    def _commit_pending(self) -> None:
        if not self.pending_commit:
            return
        assert self.consumer is not None
        request = self._commit_request()
        try:
            self.consumer.commit(request)
            self.metrics.committed.labels("ok").inc()
        except KafkaError as exc:  # e.g. a rebalance ended our generation: the data is durable
            self.metrics.committed.labels("failed").inc()
            log.warning("commit failed", extra={"error": repr(exc)})

    def _backpressure(self) -> None:
        """Pause fetching while decoded work cannot be handed over; keep polling meanwhile."""
        assert self.consumer is not None
        want = bool(self.backlog)
        if want == self.paused:
            return
        assignment = [tp for tp in self.consumer.assignment() if tp.partition not in self.blocked]
        if want:
            self.consumer.pause(*assignment)
        else:
            self.consumer.resume(*assignment)
        self.paused = want
        self.metrics.paused.set(1 if want else 0)

    def _report_lag(self) -> None:
        if time.monotonic() < self._next_lag:
            return
        self._next_lag = time.monotonic() + LAG_EVERY_S
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            last = self.last_offset.get(tp.partition)
            if high is not None and last is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - last - 1))

    def _chain(self) -> Step[Any]:
        assert self.chain is not None
        return self.chain

    # --- rebalance and drain ---------------------------------------------------------------

    def on_assigned(self, assigned: set[Any]) -> None:
        """A new assignment fetches from the committed offsets, so whatever was polled but not
        committed before the rebalance comes again: kafka-python resets the positions of newly
        assigned partitions, and ``_rewind`` (on the consumer thread, after this poll) those
        of partitions that stayed assigned."""
        self.rewind = set(assigned)
        self.paused = False
        self.metrics.paused.set(0)
        self.last_offset.clear()
        self.backlog.clear()
        if self.chains is not None:  # a new chain: the older ones' leftovers are cancelled
            self.chain = self.chains.create(self._durable)
        # Partitions still ours are fetched again from the committed offset and stop again at
        # the same batch (a blocked one stays paused: ``_rewind`` resumes only the others).
        self.unresolved = None  # reloaded at the next poll, for the new assignment
        owned = {tp.partition for tp in assigned}
        for partition in [p for p in self.blocked if p not in owned]:
            del self.blocked[partition]
            self.metrics.blocked.labels(str(partition)).set(0)
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )

    def _drain(self, deadline: float) -> None:
        """Blocking drain (shutdown, on the consumer thread), then commit."""
        for _ in self.drain_steps(deadline):
            time.sleep(0.005)
        self._commit_pending()

    def drain_steps(self, deadline: float) -> Iterator[None]:
        """Join the chain (flush the open batch, wait for in-flight batches until
        ``deadline``, yielding while waiting, so the caller chooses how to wait; what is
        durable lands in ``pending_commit``, the rest is cancelled). Records not yet submitted
        are dropped: they were not committed, so whoever owns the partition next fetches them
        again. The chain takes nothing more until the next assignment creates a new one."""
        self.backlog.clear()
        chain = self._chain()
        chain.close()
        try:
            yield from chain.joining(deadline)
        except WriterFailed:
            log.error("writer failed while draining; nothing more is committed")


class RebalanceBridge(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Flush and commit on revoke, from kafka-python 3's IO thread.

    kafka-python 3 runs rebalance listeners on its IO thread, and only while the consumer thread
    is inside ``poll()`` or ``close()`` (the group join is driven from there), so the consumer
    thread's batches are quiescent and the hook may drain them. Blocking consumer calls are
    refused on that thread, so the hook waits on the IO loop's own sleep (heartbeats continue)
    and commits with ``commit_async``.
    """

    def __init__(self, indexer: Indexer, consumer: KafkaConsumer) -> None:
        self.indexer = indexer
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        ix = self.indexer
        if ix.closing or not revoked:
            return  # closing: the consumer thread drained already; empty: the first join
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})
        deadline = time.monotonic() + ix.settings.shutdown_timeout_s
        for _ in ix.drain_steps(deadline):
            await self._sleep(0.005)
        if not ix.pending_commit:
            return
        future = self.consumer.commit_async(ix._commit_request())
        while not future.is_done and time.monotonic() < deadline:
            await self._sleep(0.005)
        ok = future.is_done and future.succeeded()
        ix.metrics.committed.labels("ok" if ok else "failed").inc()
        if not ok:
            log.warning("commit on revoke failed", extra={"error": repr(future.exception)})

    async def on_partitions_lost(self, lost: Any) -> None:
        await self.on_partitions_revoked(lost)  # the commit fails; the drain still settles

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.indexer.on_assigned(set(assigned))

    def _sleep(self, seconds: float) -> Any:
        return self.consumer._net.sleep(seconds)  # the IO loop's sleep: no public equivalent
