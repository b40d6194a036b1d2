"""The replay's factory over the indexer's steps (docs/decisions/0225):

    Decode -> Batch -> Select -> Checkpoint -> Write -> Confirm

- Decode, Batch and Write are the live indexer's steps (``indexer.steps``): the replay
  decodes with the deployed code (a pinned mapping in tests), and writes with the live
  ``BatchWriter`` on a writer thread, overlapping each bulk with the next poll. Decode turns
  events of days outside the run's range into ``Skipped`` entries; Batch closes one batch per
  poll (``ReplayChain.feed`` flushes it), so a checkpoint covers exactly one poll.
- Select (``reprocess.firstcopy``) chooses the first copy of each event before the bulk.
- Checkpoint writes the tally of the poll's new events and saves the run state *before* the
  batch goes to the writer (decision 0090): offsets after the poll, ``pending_from`` lowered
  to the oldest batch not confirmed durable. Records below the last checkpoint were read
  before a crash: they are re-written, never tallied again.
- Confirm is the replay's commit: a batch the writer made durable is no longer pending.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from opensearchpy import OpenSearch

from indexer.batching import ACTION_BYTES, Limits
from indexer.decode import Bounds
from indexer.metrics import Metrics
from indexer.model import Batch, DeadLetter, Entry, IndexItem, Origin, Outcome
from indexer.steps.base import Forwarding, Step
from indexer.steps.batch import BatchStep
from indexer.steps.decode import DecodeStep
from indexer.steps.write import WriteStep, skipping_cancelled
from indexer.worker import Worker
from indexer.writer import BatchWriter
from pulse.naming import DAY_FORMAT, Names
from pulse.settings import Settings
from reprocess.firstcopy import FirstCopies
from reprocess.pipeline import Processing, event_day
from reprocess.runs import Run
from reprocess.tallies import Recorder
from reprocess.tally import Tally, row_of
from storage.arrivals import Arrivals
from storage.targets import Targets, day_date

log = logging.getLogger("pulse.reprocess.chain")
Hook = Callable[[Run], None]
WAIT_S = 0.05
ONE_POLL = Limits(max_docs=sys.maxsize, max_bytes=sys.maxsize, max_age_s=math.inf)
Offsets = dict[str, int]  # partition (as a string, like the run state) -> offset


class KeepLetters:
    """The replay's dead-letter sink: nothing goes to events.dlq a second time (the live
    indexer dead-lettered invalid messages already); write failures stay in the outcome."""

    def send(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        return []


def first_offsets(items: Iterable[IndexItem]) -> Offsets:
    """Per partition, the first offset the items came from."""
    out: Offsets = {}
    for item in items:
        p = str(item.origin.partition)
        out[p] = min(out.get(p, item.origin.offset), item.origin.offset)
    return out


def unique_chunks(items: list[IndexItem]) -> Iterator[list[IndexItem]]:
    """Consecutive runs of ``items`` with no ``_id`` twice. The replay selects two copies of
    an event only when they lie further apart than the conflict window (both are written);
    in one batch, ``BatchWriter`` would dead-letter the second one as a conflict."""
    chunk: list[IndexItem] = []
    ids: set[str] = set()
    for item in items:
        if item.doc_id in ids:
            yield chunk
            chunk, ids = [], set()
        chunk.append(item)
        ids.add(item.doc_id)
    if chunk:
        yield chunk


@dataclass(frozen=True, slots=True)
class Selected:
    """A poll's batch and the items of it to write (first copies), in order."""

    batch: Batch
    chosen: list[IndexItem]


class Unconfirmed:
    """Batches handed to the writer and not confirmed durable yet: their first offsets."""

    def __init__(self) -> None:
        self._starts: dict[int, Offsets] = {}  # batch seq -> first offset per partition

    def add(self, batch: Batch) -> None:
        self._starts[batch.seq] = first_offsets(batch.items)

    def confirm(self, batch: Batch) -> None:
        self._starts.pop(batch.seq, None)

    def pending_from(self, offsets: Offsets) -> Offsets:
        """``offsets`` lowered to the first offset of every batch not confirmed yet."""
        out = dict(offsets)
        for starts in self._starts.values():
            for p, offset in starts.items():
                out[p] = min(out.get(p, offset), offset)
        return out


class SelectStep(Forwarding[Batch, Selected]):
    """First copies (decision 0011, chosen before the bulk: ``reprocess.firstcopy``)."""

    def __init__(self, copies: FirstCopies, next_step: Step[Selected]) -> None:
        super().__init__(next_step)
        self._copies = copies

    def submit(self, message: Batch) -> None:
        self._next.submit(Selected(message, self._copies.select(message.items)))


class CheckpointStep(Forwarding[Selected, Batch]):
    """Tally and run state saved before the write; the chosen items go to the writer as
    batches with no ``_id`` twice (``unique_chunks``)."""

    def __init__(
        self,
        client: OpenSearch,
        names: Names,
        run: Run,
        pending: Unconfirmed,
        next_step: Step[Batch],
        after: Hook | None = None,
    ) -> None:
        self._client = client
        self._names = names
        self._run = run
        self._tallies = Recorder(client, names, run)
        super().__init__(next_step)
        self._pending = pending
        self._after = after
        self._seq = 0

    def submit(self, message: Selected) -> None:
        batch, chosen = message.batch, message.chosen
        checkpoint = dict(self._run.offsets)

        def fresh(origin: Origin) -> bool:
            return origin.offset >= checkpoint[str(origin.partition)]

        entries: list[Entry] = [*batch.items, *batch.dead, *batch.skipped]
        read = sum(1 for entry in entries if fresh(entry.origin))
        if read:
            new = [item for item in chosen if fresh(item.origin)]
            self._save(message, new, read, fresh)
            if self._after is not None:
                self._after(self._run)  # test seam: a crash between checkpoint and bulk
        for chunk in unique_chunks(chosen):
            self._seq += 1
            nbytes = sum(len(item.body) + ACTION_BYTES for item in chunk)
            out = Batch(self._seq, 0, chunk, nbytes=nbytes)
            self._pending.add(out)
            self._next.submit(out)

    def _save(
        self, selected: Selected, new: list[IndexItem], read: int, fresh: Callable[[Origin], bool]
    ) -> None:
        """Write the tally of ``new`` as a batch document, then save offsets after the
        batch, the sequence number that commits the document, and ``pending_from`` lowered
        to every batch not durable yet (this one included)."""
        batch, run = selected.batch, self._run
        unconfirmed = self._pending.pending_from(first_offsets(selected.chosen))
        self._tallies.record(tally(new))  # first: it may open an epoch (a save of its own)
        end = dict(run.offsets)
        for partition, offset in batch.offsets.items():
            p = str(partition)
            end[p] = max(end[p], offset)
        run.pending_from = {p: min(o, unconfirmed.get(p, o)) for p, o in end.items()}
        run.offsets = end
        items = sum(1 for item in batch.items if fresh(item.origin))
        run.count(
            read=read,
            invalid=sum(1 for letter in batch.dead if fresh(letter.origin)),
            outside=sum(1 for skipped in batch.skipped if fresh(skipped.origin)),
            duplicates=items - len(new),
            tallied=len(new),
        )
        run.save(self._client, self._names)


class ConfirmStep(Step[Outcome]):
    """The replay's commit: a done batch is durable, so it no longer holds ``pending_from``
    back and the engine answers for its events from now on."""

    def __init__(self, run: Run, pending: Unconfirmed, copies: FirstCopies) -> None:
        self._run = run
        self._pending = pending
        self._copies = copies

    def submit(self, message: Outcome) -> None:
        if not message.done:
            return  # abandoned (a crash): the checkpoint still covers it
        self._pending.confirm(message.batch)
        self._copies.confirmed(message.batch.items)
        if message.dead:
            first = message.dead[0]
            log.warning(
                "replay items rejected by the engine",
                extra={"n": len(message.dead), "reason": first.reason, "detail": first.detail},
            )
        self._run.count(
            written=message.indexed, existing=message.duplicates, rejected=len(message.dead)
        )

    def poll(self) -> None:
        pass

    def joining(self, deadline: float | None) -> Iterator[None]:
        return iter(())


class ReplayChain:
    """Context manager: the chain and its writer thread live inside ``with``; leaving it by
    an exception abandons whatever is queued (a crash: the checkpoint covers it)."""

    def __init__(
        self,
        client: OpenSearch,
        settings: Settings,
        names: Names,
        run: Run,
        copies: FirstCopies,
        keep_day: Callable[[int], bool],
        processing: Processing | None = None,
        after_checkpoint: Hook | None = None,
    ) -> None:
        # conflict_days=0: Select chose first copies across days already; the writer's own
        # neighbour lookup would only repeat that mget.
        generation = run.plan.new_generation
        targets = Targets(client, names, lambda _day: generation, 0, read_alias=False)
        self._cancel = threading.Event()
        writer = BatchWriter(
            client, targets, KeepLetters(), Metrics(), settings.engine_timeout_s,
            cancelled=self.cancelled,
            arrivals=Arrivals(client, names, settings.arrivals_lookahead_ms),
        )  # fmt: skip
        self._worker = Worker(skipping_cancelled(writer.write, self.cancelled))
        pending = Unconfirmed()
        confirm = ConfirmStep(run, pending, copies)
        write = WriteStep(self._worker, confirm, self._abandon, wait_s=WAIT_S)
        checkpoint = CheckpointStep(client, names, run, pending, write, after_checkpoint)
        self._batch = BatchStep(ONE_POLL, SelectStep(copies, checkpoint))
        bounds = Bounds.from_settings(settings)
        self.head = DecodeStep(self._batch, bounds, processing, keep_day, event_day)

    def cancelled(self, _batch: Batch) -> bool:
        return self._cancel.is_set()

    def _abandon(self, _epoch: int) -> None:
        self._cancel.set()

    def feed(self, records: list[Any]) -> None:
        """One poll's records, as one batch, through every step up to the writer (which
        blocks while its queue is full)."""
        head = self.head
        for record in records:
            head.submit(record)
        self._batch.flush()

    def poll(self) -> None:
        """Confirm what the writer finished; raises ``WriterFailed`` if it died."""
        self.head.poll()

    def join(self) -> None:
        """Until every batch handed to the writer is confirmed durable."""
        self.head.close()
        self.head.join()

    def __enter__(self) -> ReplayChain:
        self._worker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self.head.terminate()
        self._worker.stop()


def tally(items: list[IndexItem]) -> Tally:
    out = Tally()
    for item in items:
        source = orjson.loads(item.body)
        out.add(day_date(item.day).strftime(DAY_FORMAT), source["merchant_id"], row_of(source))
    return out
