"""The step interface every stage of the indexing chain implements (after getsentry/arroyo's
``ProcessingStrategy``): ``submit`` one message, ``poll`` for finished work, ``close`` to accept
no more, ``join`` to finish what was submitted (within a deadline), ``terminate`` to abandon it.

One difference from arroyo: a step's join is also offered as a generator, ``joining``, that
yields while it waits. The live indexer drains its chain inside kafka-python's rebalance
listener, on the client's IO thread, where only the IO loop's own sleep keeps heartbeats
going; the generator lets that caller choose how to wait (docs/decisions/0010).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T", contravariant=True)
U = TypeVar("U", contravariant=True)  # what a forwarding step hands on
Offsets = dict[int, int]  # partition -> the next offset to read (what a commit stores)
JOIN_WAIT_S = 0.005


class MessageRejected(Exception):
    """Raised by ``submit`` when the step cannot take the message now (backpressure). Nothing
    of the message was kept: the caller offers it again after a ``poll``."""


class Step(ABC, Generic[T]):
    """One stage of the chain. Steps are driven from one thread (the consumer's); work a step
    hands to another thread (the writer) comes back through ``poll``."""

    @abstractmethod
    def submit(self, message: T) -> None:
        """Take ``message`` (processing it now or later), or raise ``MessageRejected``."""

    @abstractmethod
    def poll(self) -> None:
        """Move finished work on to the next step and run timed work (a batch's age limit).
        Never blocks for long: it is called on every consumer loop iteration."""

    def close(self) -> None:
        """No more messages will be submitted. Does not block; ``join`` finishes the work."""

    @abstractmethod
    def joining(self, deadline: float | None) -> Iterator[None]:
        """Finish every submitted message, then the next step's, yielding while waiting.
        ``deadline`` (``time.monotonic()``) bounds the wait; what is not finished by then is
        abandoned (never committed). None waits for as long as it takes."""

    def join(self, timeout: float | None = None) -> None:
        """``joining`` driven by plain sleeps (the consumer thread, a replay)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self.joining(deadline):
            time.sleep(JOIN_WAIT_S)

    def terminate(self) -> None:
        """Abandon whatever is in progress now (a crash): none of it becomes durable later."""


class Forwarding(Step[T], Generic[T, U]):
    """A step that does all its work in ``submit`` and hands the result on at once: polling,
    joining and terminating are the next step's."""

    def __init__(self, next_step: Step[U]) -> None:
        self._next = next_step

    def poll(self) -> None:
        self._next.poll()

    def joining(self, deadline: float | None) -> Iterator[None]:
        yield from self._next.joining(deadline)

    def terminate(self) -> None:
        self._next.terminate()


def expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
