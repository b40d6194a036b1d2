"""Replay Kafka into the new generation, checkpointing into the run state as it goes.

Per batch (arroyo-style steps, back to front: parse -> dedupe -> checkpoint -> bulk):
1. records before the last checkpoint's end are *re-written* only (a crash may have lost
   them between checkpoint and bulk; ``create`` makes that harmless);
2. new records are parsed and processed; each event not yet stored in the new generation
   (first copy wins, checked with a real-time mget) is added to the tally;
3. the run state (offsets after the batch, where the batch started, tally) is saved;
4. the documents are bulk-created.
A crash anywhere resumes exactly: before 3 nothing is recorded, after 3 step 1 rewrites.
No consumer-group join: partitions are assigned and positions live in the run state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from kafka import KafkaConsumer, TopicPartition
from opensearchpy import OpenSearch
from rich.progress import Progress

from indexer.decode import Bounds, now_ms
from pulse.naming import Names
from pulse.settings import Settings
from reprocess import generations as gens
from reprocess import pipeline
from reprocess.pipeline import Doc, Processing, Record
from reprocess.runs import Run
from reprocess.tally import Tally, row_of

Hook = Callable[[Run], None]


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
    _days: set[date] = field(init=False)
    _tps: dict[str, TopicPartition] = field(init=False)

    def __post_init__(self) -> None:
        self._days = set(self.run.plan.day_dates())
        topic = self.names.topic_raw
        self._tps = {p: TopicPartition(topic, int(p)) for p in self.run.plan.start_offsets}

    def target(self, day: date) -> str:
        return self.names.raw_index(self.run.plan.new_generation, day)

    def prepare(self) -> None:
        """Create the new generation's days (outside the read alias), empty days included."""
        for day in sorted(self._days):
            gens.ensure_unaliased_day(self.client, self.names, self.run.plan.new_generation, day)

    def catch_up(self, progress: Progress | None = None) -> None:
        """Read from the checkpoint until an empty poll finds every partition at the head."""
        self.consumer.assign(list(self._tps.values()))
        for p, tp in self._tps.items():
            self.consumer.seek(tp, self.run.pending_from.get(p, self.run.offsets[p]))
        task = progress.add_task("replay", total=self._remaining()) if progress else None
        while True:
            polled = self.consumer.poll(
                timeout_ms=500, max_records=self.settings.reprocess_batch_docs
            )
            records: list[Record] = [r for batch in polled.values() for r in batch]
            if records:
                self.batch(records)
                if progress is not None and task is not None:
                    progress.update(
                        task, advance=len(records), total=self._seen() + self._remaining()
                    )
            elif self._remaining() == 0:
                return

    def _remaining(self) -> int:
        head = self.consumer.end_offsets(list(self._tps.values()))
        return sum(max(0, head[tp] - self.run.offsets[p]) for p, tp in self._tps.items())

    def _seen(self) -> int:
        return sum(self.run.offsets[p] - self.run.plan.start_offsets[p] for p in self._tps)

    def batch(self, records: list[Record]) -> None:
        checkpoint = self.run.offsets
        rewrite = [r for r in records if r.offset < checkpoint[str(r.partition)]]
        fresh = [r for r in records if r.offset >= checkpoint[str(r.partition)]]
        if rewrite:
            docs = self._process(rewrite).docs
            pipeline.bulk_create(self.client, docs, self.target)
        if not fresh:
            return
        parsed = self._process(fresh)
        new_docs = self._not_stored(parsed.docs)
        self._checkpoint(fresh, new_docs, parsed)
        if self.after_checkpoint is not None:
            self.after_checkpoint(self.run)
        written = pipeline.bulk_create(self.client, new_docs, self.target)
        self.run.count(written=written)

    def _process(self, records: list[Record]) -> pipeline.Parsed:
        bounds = Bounds.from_settings(self.settings)
        return pipeline.process(records, self._days.__contains__, bounds, now_ms(), self.processing)

    def _not_stored(self, docs: list[Doc]) -> list[Doc]:
        """First copy of each event that the new generation does not hold yet."""
        unique: dict[str, Doc] = {}
        for doc in docs:
            unique.setdefault(doc.doc_id, doc)
        cache: dict[date, list[str]] = {}

        def indices_for(day: date) -> list[str]:
            if day not in cache:
                gen = self.run.plan.new_generation
                cache[day] = gens.generation_indices(self.client, self.names, gen, day)
            return cache[day]

        stored = pipeline.existing_ids(self.client, list(unique.values()), indices_for)
        return [d for d in unique.values() if d.doc_id not in stored]

    def _checkpoint(self, fresh: list[Record], docs: list[Doc], parsed: pipeline.Parsed) -> None:
        start: dict[str, int] = {}
        end = dict(self.run.offsets)
        for r in fresh:
            p = str(r.partition)
            start[p] = min(start.get(p, r.offset), r.offset)
            end[p] = max(end[p], r.offset + 1)
        delta = Tally()
        for doc in docs:
            delta.add(doc.day_key, doc.source["merchant_id"], row_of(doc.source))
        self.run.tally.merge(delta)
        self.run.pending_from = {p: start.get(p, end[p]) for p in end}
        self.run.offsets = end
        self.run.count(
            read=len(fresh),
            invalid=parsed.invalid,
            outside=parsed.outside,
            duplicates=len(parsed.docs) - len(docs),
            tallied=len(docs),
        )
        self.run.save(self.client, self.names)


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
