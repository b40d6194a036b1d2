"""Batch step: entries gather into a ``Batch`` (``indexer.batching.Batcher``: closed by
count, bytes or age, or on demand by ``flush``), handed to the next step whole."""

from __future__ import annotations

from collections.abc import Iterator

from indexer.batching import Batcher, Limits
from indexer.model import Batch, Entry
from indexer.steps.base import MessageRejected, Step, expired


class BatchStep(Step[Entry]):
    """Backpressure as arroyo's ``BatchStep``: a full batch the next step refuses stays open,
    and every new entry is refused until it has been handed over. Every batch carries
    ``epoch`` (the chain's), which is how the writer knows an abandoned chain's batches."""

    def __init__(self, limits: Limits, next_step: Step[Batch], epoch: int = 0) -> None:
        self._next = next_step
        self._batcher = Batcher(limits)
        self._batcher.discard(epoch)
        self._held = False  # the open batch is full and the next step refused it

    @property
    def open(self) -> Batch:
        return self._batcher.open

    @property
    def held(self) -> bool:
        """The open batch is full and was refused: only the next step's progress moves it
        (no age limit applies to it any more)."""
        return self._held

    def submit(self, message: Entry) -> None:
        if self._held and not self.flush():
            raise MessageRejected
        batcher = self._batcher
        batcher.add(message)
        if batcher.full():
            self._held = not self.flush()

    def flush(self) -> bool:
        """Hand the open batch over now (if it holds anything); False when it was refused."""
        if not len(self._batcher.open):
            return True
        try:
            self._next.submit(self._batcher.open)
        except MessageRejected:
            return False
        self._batcher.take()
        self._held = False
        return True

    def poll(self) -> None:
        if self._batcher.due():
            self.flush()
        self._next.poll()

    def joining(self, deadline: float | None) -> Iterator[None]:
        """Hand the open batch over, whatever its size, then join the next step. A batch
        still refused at the deadline is dropped: none of its offsets were passed on."""
        while not self.flush() and not expired(deadline):
            self._next.poll()
            yield
        self._drop()
        yield from self._next.joining(deadline)

    def terminate(self) -> None:
        self._drop()
        self._next.terminate()

    def _drop(self) -> None:
        self._batcher.discard(self._batcher.epoch)
        self._held = False
