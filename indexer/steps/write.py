"""Write step: batches go, in order, to the one writer thread (``indexer.worker.Worker``
running ``indexer.writer.BatchWriter``); their outcomes come back at ``poll`` and go on to
the next step (commit or confirm) in the same order.

One writer thread, batches in order, is what makes the commit rule simple (decision 0010):
when batch *k* is done, every earlier batch of the chain is done too."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from indexer.model import Batch, Outcome
from indexer.steps.base import MessageRejected, Step, expired
from indexer.worker import Worker

log = logging.getLogger("pulse.indexer.steps")


class WriterFailed(RuntimeError):
    """The writer thread died (a bug, not bad data: bad data is retried or dead-lettered)."""


def skipping_cancelled(
    write: Callable[[Batch], Outcome], cancelled: Callable[[Batch], bool]
) -> Callable[[Batch], Outcome]:
    """``write``, except that a batch cancelled while it waited in the queue is not written
    at all (abandoned, never committed: the next owner reads it again)."""

    def guarded(batch: Batch) -> Outcome:
        if cancelled(batch):
            return Outcome(batch, done=False)
        return write(batch)

    return guarded


class WriteStep(Step[Batch]):
    """Hands batches to ``worker``; forwards the outcomes of this chain's batches (``epoch``)
    to ``next_step``, done or abandoned.

    ``wait_s`` None: a full queue refuses the batch (``MessageRejected``: the live indexer
    pauses fetching). A number: ``submit`` waits for room in steps of ``wait_s``, passing
    finished outcomes on meanwhile (a replay, which has nothing else to do).
    ``abandon(epoch)`` cancels this chain's batches still queued or retrying (the writer's
    ``cancelled`` predicate must then answer True for them)."""

    def __init__(
        self,
        worker: Worker,
        next_step: Step[Outcome],
        abandon: Callable[[int], None],
        epoch: int = 0,
        wait_s: float | None = None,
    ) -> None:
        self._worker = worker
        self._next = next_step
        self._abandon = abandon
        self._epoch = epoch
        self._wait_s = wait_s
        self.inflight = 0  # handed to the worker, outcome not collected yet

    def submit(self, message: Batch) -> None:
        if self._wait_s is None:
            if not self._worker.offer(message):
                raise MessageRejected
        else:
            while not self._worker.offer(message, self._wait_s):
                self.poll()  # raises WriterFailed rather than waiting forever
        self.inflight += 1

    @property
    def alive(self) -> bool:
        return self._worker.alive

    def poll(self) -> None:
        if not self._worker.alive:
            raise WriterFailed("the indexer's writer thread failed") from self._worker.error
        self._collect()
        self._next.poll()

    def _collect(self) -> None:
        for outcome in self._worker.collect():
            if outcome.batch.epoch != self._epoch:
                continue  # an older chain's batch, abandoned when that chain was joined
            self.inflight -= 1
            self._next.submit(outcome)

    def joining(self, deadline: float | None) -> Iterator[None]:
        """Wait for every batch handed over; at the deadline, abandon the rest. A writer that
        died cannot finish them: with no deadline (a replay) that raises ``WriterFailed``;
        with one (the live indexer, whose loop stops on a dead writer) they are abandoned."""
        while self.inflight and not expired(deadline):
            if not self._worker.alive:
                if deadline is None:
                    raise WriterFailed("the writer thread failed") from self._worker.error
                break
            self._collect()
            if self.inflight:
                yield
        self._collect()
        if self.inflight:
            log.warning("abandoning batches not durable in time", extra={"n": self.inflight})
            self._abandon(self._epoch)
        yield from self._next.joining(deadline)

    def terminate(self) -> None:
        self._abandon(self._epoch)
        self._next.terminate()
