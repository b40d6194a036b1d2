"""The live indexer's factory: Decode -> Batch -> Write -> Commit, one chain per partition
assignment (arroyo's ``ProcessingStrategyFactory``), all chains sharing one writer thread.

A chain is joined when its partitions are revoked (or at shutdown) and a new one is created
for the next assignment. Each chain stamps its batches with its own epoch; creating a chain
makes every older epoch cancelled, so a batch of a joined chain still queued or retrying is
abandoned, never committed (its records are read again by the partitions' next owner)."""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch

from indexer.batching import Limits
from indexer.decode import Bounds
from indexer.metrics import Metrics
from indexer.model import Batch
from indexer.steps.base import Step
from indexer.steps.batch import BatchStep
from indexer.steps.commit import Commit, CommitStep
from indexer.steps.decode import DecodeStep
from indexer.steps.write import WriteStep, skipping_cancelled
from indexer.worker import Worker
from indexer.writer import BatchWriter, LetterSink
from pulse.settings import Settings
from storage.arrivals import Arrivals
from storage.targets import Targets


class LiveChains:
    """Owns the writer thread; ``create`` builds the chain for one assignment."""

    def __init__(
        self,
        settings: Settings,
        client: OpenSearch,
        targets: Targets,
        dlq: LetterSink,
        metrics: Metrics,
        arrivals: Arrivals,
    ) -> None:
        self.limits = Limits.from_settings(settings)
        self.bounds = Bounds.from_settings(settings)
        self.epoch = 0  # the newest chain's; every batch of an older one is cancelled
        writer = BatchWriter(
            client, targets, dlq, metrics, settings.engine_timeout_s,
            cancelled=self.cancelled, arrivals=arrivals,
        )  # fmt: skip
        self.worker = Worker(skipping_cancelled(writer.write, self.cancelled))
        self._batch: BatchStep | None = None  # the newest chain's batch step

    def cancelled(self, batch: Batch) -> bool:
        return batch.epoch < self.epoch

    def abandon(self, epoch: int) -> None:
        """Cancel ``epoch``'s batches still queued or retrying."""
        self.epoch = max(self.epoch, epoch + 1)

    def create(self, commit: Commit) -> Step[Any]:
        """A new chain; the older chains' unfinished batches are cancelled from now on."""
        self.epoch += 1
        write = WriteStep(self.worker, CommitStep(commit), self.abandon, self.epoch)
        self._batch = BatchStep(self.limits, write, self.epoch)
        return DecodeStep(self._batch, self.bounds)

    @property
    def writing(self) -> bool:
        """Batches are at the writer (queued or being written), outcome not collected yet."""
        return self.worker.inflight > 0

    @property
    def gathering(self) -> bool:
        """The newest chain's open batch holds entries (it closes by count, bytes or age)."""
        return self._batch is not None and len(self._batch.open) > 0

    @property
    def holding(self) -> bool:
        """The newest chain's open batch is full and the writer's queue refused it: it moves
        on only when the writer takes a batch, however often the loop polls."""
        return self._batch is not None and self._batch.held

    def wait(self, timeout_s: float) -> bool:
        """Wait for the writer to finish a batch, at most ``timeout_s``; True when it did."""
        return self.worker.wait(timeout_s)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    @property
    def alive(self) -> bool:
        return self.worker.alive

    @property
    def error(self) -> BaseException | None:
        return self.worker.error
