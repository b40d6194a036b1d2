"""The replay's writer thread: the live indexer's ``BatchWriter`` behind its ``Worker``.

Batches are written one at a time, in the order they were handed over, while the replay
polls, decodes and checkpoints the next one: the same overlap that the live indexer gets
from its writer thread. Retries, backoff and bulk verdicts are the indexer's own. This module
also knows which batches are not confirmed durable yet and where the oldest of them starts
in each partition: the replay's checkpoint never moves ``pending_from`` past it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType

from opensearchpy import OpenSearch

from indexer.batching import ACTION_BYTES
from indexer.metrics import Metrics
from indexer.model import Batch, DeadLetter, IndexItem, Outcome
from indexer.worker import Worker
from indexer.writer import BatchWriter
from pulse.naming import Names
from pulse.settings import Settings
from storage.arrivals import Arrivals
from storage.targets import Targets

log = logging.getLogger("pulse.reprocess.writing")
Offsets = dict[str, int]  # partition (as a string, like the run state) -> offset
WAIT_S = 0.05


@dataclass
class Written:
    """What finished batches did; summed into the run's stats."""

    created: int = 0
    existing: int = 0  # 409: a copy was there (a re-write after a crash, or the live indexer)
    rejected: int = 0  # permanent item failures: the tally counted them, so verify fails

    def add(self, other: Written) -> None:
        self.created += other.created
        self.existing += other.existing
        self.rejected += other.rejected


class _KeepLetters:
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


class Writing:
    """Context manager: the writer thread runs inside ``with``; leaving it by an exception
    abandons whatever is queued (a crash: the checkpoint covers it)."""

    def __init__(
        self,
        client: OpenSearch,
        settings: Settings,
        names: Names,
        generation: str,
        confirmed: Callable[[list[IndexItem]], None],
    ) -> None:
        # conflict_days=0: the replay already chose first copies across days (FirstCopies);
        # the writer's own neighbour lookup would only repeat that mget.
        targets = Targets(client, names, lambda _day: generation, 0, read_alias=False)
        self._cancel = threading.Event()
        self._writer = BatchWriter(
            client, targets, _KeepLetters(), Metrics(), settings.engine_timeout_s,
            cancelled=lambda _batch: self._cancel.is_set(),
            arrivals=Arrivals(client, names, settings.arrivals_lookahead_ms),
        )  # fmt: skip
        self._worker = Worker(self._write)
        self._starts: dict[int, Offsets] = {}  # batch seq -> first offsets, until confirmed
        self._seq = 0
        self._confirmed = confirmed

    def __enter__(self) -> Writing:
        self._worker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self._cancel.set()
        self._worker.stop()

    def _write(self, batch: Batch) -> Outcome:
        if self._cancel.is_set():
            return Outcome(batch, done=False)  # queued behind a crash: never written
        return self._writer.write(batch)

    def pending_from(self, offsets: Offsets) -> Offsets:
        """``offsets`` lowered to the first offset of every batch not confirmed yet."""
        out = dict(offsets)
        for starts in self._starts.values():
            for p, offset in starts.items():
                out[p] = min(out.get(p, offset), offset)
        return out

    def submit(self, items: list[IndexItem]) -> Written:
        """Hand ``items`` to the writer thread (blocks while its queue is full)."""
        done = Written()
        for chunk in unique_chunks(items):
            self._seq += 1
            batch = Batch(
                self._seq, 0, chunk, nbytes=sum(len(i.body) + ACTION_BYTES for i in chunk)
            )
            self._starts[batch.seq] = first_offsets(chunk)
            while not self._worker.offer(batch, WAIT_S):
                done.add(self.collect())
        return done

    def collect(self, wait_s: float = 0.0) -> Written:
        """Confirm the batches finished so far."""
        if not self._worker.alive:
            raise RuntimeError("the replay's writer thread failed") from self._worker.error
        done = Written()
        for outcome in self._worker.collect(wait_s):
            if outcome.done:
                done.add(self._settle(outcome))
        return done

    def drain(self) -> Written:
        """Wait until every submitted batch is confirmed."""
        done = Written()
        while self._starts:
            done.add(self.collect(WAIT_S))
        return done

    def _settle(self, outcome: Outcome) -> Written:
        del self._starts[outcome.batch.seq]
        self._confirmed(outcome.batch.items)
        if outcome.dead:
            first = outcome.dead[0]
            log.warning(
                "replay items rejected by the engine",
                extra={"n": len(outcome.dead), "reason": first.reason, "detail": first.detail},
            )
        return Written(outcome.indexed, outcome.duplicates, len(outcome.dead))
