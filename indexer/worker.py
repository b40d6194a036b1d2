"""The bulk-writing thread: batches are written one at a time, in the order they were taken.

Writing in order on one thread is what makes the commit rule simple: when batch *k* is done,
every earlier batch is done too, so its offsets may be committed. Meanwhile the consumer thread
keeps polling (heartbeats, max.poll.interval) and decoding the next batch.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from indexer.model import Batch, Outcome

log = logging.getLogger("pulse.indexer.worker")


class Worker:
    """Runs ``write(batch)`` for each offered batch on a daemon thread."""

    def __init__(self, write: Callable[[Batch], Outcome], depth: int = 2) -> None:
        self._write = write
        self._in: queue.Queue[Batch | None] = queue.Queue(maxsize=depth)
        self._out: queue.Queue[Outcome] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="indexer-writer", daemon=True)
        # Set by the writer when it takes a batch (room in the queue), finishes one (an
        # outcome) or dies: a consumer with nothing else to do waits on it (``wait``).
        self._progress = threading.Event()
        self.inflight = 0  # offered and not yet collected (consumer thread only)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def offer(self, batch: Batch, timeout_s: float | None = None) -> bool:
        """Queue a batch; False when the queue stayed full (the caller applies backpressure)."""
        try:
            if timeout_s is None:
                self._in.put_nowait(batch)
            else:
                self._in.put(batch, timeout=timeout_s)
        except queue.Full:
            return False
        self.inflight += 1
        return True

    def collect(self, wait_s: float = 0.0) -> list[Outcome]:
        """Outcomes finished so far (waiting up to ``wait_s`` for the first one)."""
        out: list[Outcome] = []
        try:
            out.append(self._out.get(timeout=wait_s) if wait_s > 0 else self._out.get_nowait())
            while True:
                out.append(self._out.get_nowait())
        except queue.Empty:
            pass
        self.inflight -= len(out)
        return out

    def wait(self, timeout_s: float) -> bool:
        """Block until the writer takes a batch from the queue, finishes one or dies, at most
        ``timeout_s``; True when it did. Only a hint to wake up: outcomes are taken by
        ``collect`` and room in the queue by ``offer``."""
        progressed = self._progress.wait(timeout_s)
        self._progress.clear()  # before collecting or offering: later progress sets it again
        return progressed

    def stop(self) -> None:
        # If the queue is full the daemon thread simply ends with the process.
        with contextlib.suppress(queue.Full):
            self._in.put_nowait(None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def _loop(self) -> None:
        while (batch := self._in.get()) is not None:
            self._progress.set()  # room in the queue: a held batch can be offered now
            try:
                self._out.put(self._write(batch))
            except BaseException as exc:  # a bug, not bad data: stop and let the process exit
                log.exception("writer failed")
                self.error = exc
                return
            finally:
                self._progress.set()
