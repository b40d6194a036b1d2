"""Replay Kafka into the new generation, checkpointing into the run state as it goes.

Each poll's records go through the replay's chain of steps (``reprocess.chain``, built from
the live indexer's steps, docs/decisions/0225):
1. decode with the live indexer's step; records before the last checkpoint's end were read
   before a crash: they are only *re-written*, never tallied again;
2. batch: one poll, one batch;
3. select the first copy of each event (``reprocess.firstcopy``); the selected items of new
   records are added to the tally;
4. checkpoint: the tally of the new items is written as a batch document
   (``reprocess.tallies``), then the run state is saved: offsets after the poll,
   ``pending_from`` = the first offset of the oldest batch not yet confirmed durable (this one
   included), and the tally sequence number that commits the batch document;
5. write: the live indexer's ``BatchWriter`` on a writer thread bulk-creates the batch while
   this thread polls, decodes and checkpoints the next poll;
6. confirm: a batch is confirmed once the writer returns it done.
Invariant: a batch's checkpoint is saved before its bulk starts, and ``pending_from`` never
passes a batch that is not confirmed. So a crash anywhere resumes exactly: before 3 nothing
of the poll is recorded; after it, the resumed run re-reads from ``pending_from`` and
re-writes what the crash may have lost (``create``: copies already stored are skipped or
answered 409), and the tally, committed once, counts every event exactly once.
No consumer-group join: partitions are assigned and positions live in the run state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from kafka import KafkaConsumer, TopicPartition
from opensearchpy import OpenSearch
from rich.progress import Progress

from indexer.undecodable import SKIP_REQUESTED, SKIPPED, BadBatch, BlockedBatches, locate
from pulse.naming import Names
from pulse.settings import Settings
from reprocess import generations as gens
from reprocess import late
from reprocess.chain import Hook as Hook
from reprocess.chain import Offsets, ReplayChain
from reprocess.firstcopy import FirstCopies
from reprocess.offsets import heads
from reprocess.pipeline import Processing, Record
from reprocess.runs import Run, RunError
from storage.registry import GenerationResolver
from storage.targets import EPOCH, Targets, day_date

POLL_MS = 500


class UndecodableBatch(RunError):
    """The replay reached a record batch it cannot decode and no skip was decided for it
    (docs/decisions/0110): the run stops there, checkpointed, and resumes after a decision."""

    def __init__(self, bad: BadBatch) -> None:
        super().__init__(
            f"partition {bad.partition} offset {bad.offset} cannot be decoded ({bad.error}). "
            "Install the missing codec library and `pulse reprocess resume`, or "
            f"`pulse dlq skip-batch --partition {bad.partition} --offset {bad.offset} --yes` "
            "and `pulse reprocess resume` (the batch is dead-lettered, its events left out)."
        )
        self.bad = bad


@dataclass
class Replayer:
    """Drives one run's consumer until it has caught up with the head of the topic."""

    client: OpenSearch
    consumer: KafkaConsumer
    settings: Settings
    names: Names
    run: Run
    processing: Processing | None = None  # None: the live indexer's decode step
    after_checkpoint: Hook | None = None  # test seam: crash between checkpoint and bulk
    _dates: set[date] = field(init=False)
    _days: set[int] = field(init=False)
    _tps: dict[str, TopicPartition] = field(init=False)
    _copies: FirstCopies = field(init=False)
    _neighbours: Targets = field(init=False)
    _serving: GenerationResolver = field(init=False)

    def __post_init__(self) -> None:
        self._dates = set(self.run.plan.day_dates())
        self._days = {(d - EPOCH).days for d in self._dates}
        topic = self.names.topic_raw
        self._tps = {p: TopicPartition(topic, int(p)) for p in self.run.plan.start_offsets}
        s = self.settings
        self._serving = GenerationResolver(
            self.client, self.names, s.generation, s.generation_registry_ttl_s
        )
        window = s.indexer_conflict_days
        self._neighbours = Targets(self.client, self.names, self._generation_for, window)
        self._copies = FirstCopies(self.client, window, self._lookup_indices)

    def prepare(self) -> None:
        """Create the new generation's days (outside the read alias), empty days included."""
        for day in sorted(self._dates):
            gens.ensure_unaliased_day(self.client, self.names, self.run.plan.new_generation, day)

    def catch_up(
        self, bound: Offsets, progress: Progress | None = None, window_end_ms: int = 0
    ) -> None:
        """Read from the checkpoint up to ``bound`` (per partition, exclusive), then wait until
        the writer thread has made every batch durable.

        The bound is fixed before reading starts, so the read ends however fast producers keep
        appending (reading "to the head" never ends under live traffic, issue 21). What arrives
        after it reaches the new generation through the switch protocol (docs/decisions/0050):
        the final catch-up after the fence reads to a bound taken after the fence.

        With ``window_end_ms``, a partition also stops at its first message stamped at or
        after it (saved in ``run.stops``): the range's later arrivals are fetched by position
        (``fetch_late``, docs/decisions/0131)."""
        if window_end_ms:
            bound = self.sequential_bound(bound)
        tps = list(self._tps.values())
        self.consumer.assign(tps)
        for p, tp in self._tps.items():
            self.consumer.seek(tp, self.run.pending_from.get(p, self.run.offsets[p]))
        open_ = {p for p in self._tps if not self._done(p, bound)}
        self.consumer.pause(*[tp for p, tp in self._tps.items() if p not in open_])
        task = progress.add_task("replay", total=self._remaining(bound)) if progress else None
        with self._chain() as chain:
            while open_:
                polled = self._poll()
                fetched = [r for batch in polled.values() for r in batch]
                if window_end_ms:
                    bound = self._stop_at_window(fetched, bound, window_end_ms)
                records: list[Record] = [r for r in fetched if r.offset < bound[str(r.partition)]]
                self.run.count(fetched=len(fetched))
                if records:
                    chain.feed(records)
                    if progress is not None and task is not None:
                        progress.update(task, advance=len(records))
                for p in list(open_):
                    if self._done(p, bound):
                        open_.discard(p)
                        self.consumer.pause(self._tps[p])
                chain.poll()
            chain.join()
        for p in self._tps:  # gaps (transaction markers, compaction) end below the bound
            self.run.offsets[p] = max(self.run.offsets[p], bound[p])
        self.run.pending_from = dict(self.run.offsets)  # every batch is durable now

    def _poll(self) -> dict[TopicPartition, list[Record]]:
        try:
            polled: dict[TopicPartition, list[Record]] = self.consumer.poll(
                timeout_ms=POLL_MS, max_records=self.settings.reprocess_batch_docs
            )
        except Exception as exc:
            bad = locate(exc)
            if bad is None:
                raise
            self._skip(bad)
            return {}
        return polled

    def _skip(self, bad: BadBatch) -> None:
        """Past a batch the operator chose to skip (the live indexer dead-letters it); any
        other undecodable batch stops the run, reported where the operator looks."""
        store = BlockedBatches(self.client, self.names)
        store.ensure()
        status = store.report(bad)
        if status not in (SKIP_REQUESTED, SKIPPED) or bad.next_offset is None:
            raise UndecodableBatch(bad)
        p = str(bad.partition)
        self.consumer.seek(self._tps[p], bad.next_offset)
        self.run.offsets[p] = max(self.run.offsets[p], bad.next_offset)
        self.run.count(skipped_batches=1)

    def sequential_bound(self, bound: Offsets) -> Offsets:
        """``bound`` lowered to the window stops found so far."""
        return {p: min(o, self.run.stops.get(p, o)) for p, o in bound.items()}

    def _stop_at_window(self, records: list[Record], bound: Offsets, end_ms: int) -> Offsets:
        """Lower each partition's bound to its first record stamped at or after ``end_ms``.
        Records before a stop never change, so a resumed run finds the same stops."""
        out = dict(bound)
        for r in records:
            p = str(r.partition)
            if r.timestamp >= end_ms and r.offset < out[p]:
                out[p] = r.offset
                self.run.stops[p] = r.offset
        return out

    def fetch_late(self, consumer: KafkaConsumer, window: late.Window) -> int:
        """Replay the range's messages at the positions the serving generation holds inside
        ``window``, through the same decode -> select -> checkpoint -> write steps; returns
        how many were asked for. Positions below ``run.offsets`` are re-written, never tallied
        again (a resumed fetch asks the same search, docs/decisions/0131)."""
        wanted: late.Positions = {}
        for day in self.run.plan.days:
            indices = late.serving_indices(
                self.client, self.names, day.old_generation, gens.parse_day(day.day)
            )
            late.merge(wanted, late.positions(self.client, indices, window))
        asked = sum(len(o) for o in wanted.values())
        batch_docs = self.settings.reprocess_batch_docs
        topic = self.names.topic_raw
        with self._chain() as chain:
            for records, fetched in late.read_positions(consumer, topic, wanted, batch_docs):
                self.run.count(fetched=fetched)
                if records:
                    chain.feed(records)
                chain.poll()
            chain.join()
        self.run.count(late_asked=asked)
        self.run.pending_from = dict(self.run.offsets)
        return asked

    def _done(self, p: str, bound: Offsets) -> bool:
        """Every record of partition ``p`` below the bound has been handed to ``batch``. The
        position, not ``run.offsets``: a resumed run re-reads from ``pending_from`` below the
        offsets already checkpointed, and must get there again."""
        return bool(self.consumer.position(self._tps[p]) >= bound[p])

    def head(self) -> Offsets:
        """The end offset of every partition now: a bound for ``catch_up``."""
        head = heads(self.consumer, list(self._tps.values()))
        return {p: head[tp] for p, tp in self._tps.items()}

    def _remaining(self, bound: Offsets) -> int:
        return sum(max(0, bound[p] - self.run.offsets[p]) for p in self._tps)

    def _chain(self) -> ReplayChain:
        """Decode -> batch -> select -> checkpoint -> write -> confirm, for one read."""
        return ReplayChain(
            self.client, self.settings, self.names, self.run, self._copies,
            self._days.__contains__, self.processing, self.after_checkpoint,
        )  # fmt: skip

    def _generation_for(self, day: date) -> str:
        """Where an earlier copy of an event of ``day`` lives: the new generation for the
        range's days, the serving one (registry) for the days around it."""
        if day in self._dates:
            return self.run.plan.new_generation
        return self._serving.generation_for_day(day)

    def _lookup_indices(self, day: int) -> list[str]:
        """The indices FirstCopies asks for copies of an event of ``day``: every index of the
        day in the new generation and those of the neighbouring days (decision 0011)."""
        new = self.run.plan.new_generation
        own = gens.generation_indices(self.client, self.names, new, day_date(day))
        return list(dict.fromkeys([*own, *self._neighbours.earlier_copies(day)]))


def consumer_for(bootstrap: str, settings: Settings, names: Names) -> KafkaConsumer:
    """A group-less consumer: no join delay, no interference with the live indexer's group."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id=names.group("pulse-reprocess"),
        max_poll_records=settings.reprocess_batch_docs,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )


def targeted_consumer(bootstrap: str, names: Names) -> KafkaConsumer:
    """For fetches by position: small fetches, since one seek wants a few records, not 8 MiB
    (a broker still returns at least one whole record batch)."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id=names.group("pulse-reprocess"),
        max_partition_fetch_bytes=64 * 1024,
    )
