"""Commit step (the live chain's last): the offsets of a batch the writer made durable
become committable, in batch order; those of an abandoned batch never do (decision 0010).

As in arroyo, the step does not talk to the broker: it passes the offsets to ``commit``, the
consumer's, which sends them (a blocking commit on the consumer thread, an async one inside
the rebalance listener: only the consumer knows which thread it is on)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from indexer.model import Outcome
from indexer.steps.base import Offsets, Step

Commit = Callable[[Offsets, int], None]  # (offsets to commit, how many messages they cover)


class CommitStep(Step[Outcome]):
    def __init__(self, commit: Commit) -> None:
        self._commit = commit
        self._gap = False  # a batch was abandoned: nothing after it may be committed

    def submit(self, message: Outcome) -> None:
        if not message.done:
            self._gap = True
        if self._gap:
            return
        self._commit(message.batch.offsets, len(message.batch))

    def poll(self) -> None:
        pass

    def joining(self, deadline: float | None) -> Iterator[None]:
        return iter(())
