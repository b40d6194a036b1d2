"""Step 3: make one batch durable — resolve targets, drop earlier copies, bulk, dead-letter.

A batch is done only when every item is either created, known to be durable already
(duplicate), or acknowledged by events.dlq. Retryable failures (transport errors, 429/5xx
items, DLQ send failures) are retried with exponential backoff and full jitter (tenacity)
for as long as the batch is not cancelled; a cancelled batch is abandoned, never committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from kafka.errors import KafkaError
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    wait_random_exponential,
)

from indexer.bulk import BadResponse, Verdict, bulk_body, send_bulk, verdicts
from indexer.decode import now_ms
from indexer.metrics import Metrics
from indexer.model import Batch, DeadLetter, IndexItem, Outcome
from storage.arrivals import Arrivals
from storage.copies import stored_in
from storage.targets import Targets, day_of_index

log = logging.getLogger("pulse.indexer.writer")
CONFLICT_REASON = "conflict:occurred_at"


class Retry(Exception):
    """Some work of the batch is not durable yet and may succeed on another attempt."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Abandoned(Exception):
    """The batch was cancelled (revoke or shutdown deadline) before it became durable."""


RETRYABLE = (Retry, BadResponse, TransportError, OSConnectionError, KafkaError, OSError)


class LetterSink(Protocol):
    """Where a batch's dead letters go: events.dlq (``indexer.dlq.DlqWriter``) for the live
    indexer; a reprocessing run, which must not dead-letter twice, keeps them itself."""

    def send(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Deliver ``letters``; returns those not delivered (the batch retries them)."""
        ...


class BatchWriter:
    def __init__(
        self,
        client: OpenSearch,
        targets: Targets,
        dlq: LetterSink,
        metrics: Metrics,
        timeout_s: float,
        cancelled: Callable[[Batch], bool],
        max_backoff_s: float = 10.0,
        arrivals: Arrivals | None = None,
    ) -> None:
        self.client = client
        self.arrivals = arrivals  # per-day newest-ingested bounds, raised before each bulk
        self.targets = targets
        self.dlq = dlq
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.cancelled = cancelled
        self.max_backoff_s = max_backoff_s

    def write(self, batch: Batch) -> Outcome:
        """Make ``batch`` durable; ``Outcome.done`` is False if it was cancelled first."""
        self.metrics.batch_docs.observe(len(batch))
        self.metrics.batch_bytes.observe(batch.nbytes)
        outcome = Outcome(batch, done=False)
        try:
            fresh = self._retrying(batch, lambda: self._drop_earlier_copies(batch, outcome))
            run = _BulkRun(self, fresh, outcome)
            self._retrying(batch, run.attempt)
            letters = batch.dead + outcome.dead
            self._retrying(batch, lambda: self._send_dead(letters))
        except Abandoned:
            return outcome
        outcome.done = True
        return outcome

    def _retrying(self, batch: Batch, step: Callable[[], Any]) -> Any:
        retrying = Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_random_exponential(multiplier=0.05, max=self.max_backoff_s),
            stop=lambda _: self.cancelled(batch),
            sleep=lambda s: self._sleep(batch, s),
            before_sleep=self._count_retry,
        )
        try:
            return retrying(step)
        except RetryError as exc:
            raise Abandoned from exc

    def _sleep(self, batch: Batch, seconds: float) -> None:
        """Back off, but notice a cancellation within 50 ms."""
        deadline = time.monotonic() + seconds
        while not self.cancelled(batch) and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _count_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        cause = exc.cause if isinstance(exc, Retry) else type(exc).__name__
        self.metrics.retries.labels(cause).inc()
        if state.attempt_number in (1, 5) or state.attempt_number % 20 == 0:
            log.warning("write retry", extra={"cause": cause, "attempt": state.attempt_number})

    def _send_dead(self, letters: list[DeadLetter]) -> None:
        failed = self.dlq.send(letters)
        if failed:
            letters[:] = failed
            raise Retry("dlq_send")
        for letter in letters:
            self.metrics.dlq.labels(letter.reason).inc()

    def _drop_earlier_copies(self, batch: Batch, outcome: Outcome) -> list[IndexItem]:
        """Items still to write: minus in-batch repeats and events already durable elsewhere
        (a sealed index of the same day: duplicate; another day: conflict, to the DLQ)."""
        outcome.dead.clear()
        outcome.duplicates = 0
        # No write alias is needed yet: the listing of earlier copies finds a missing day empty
        # (each bulk attempt ensures its days' aliases right before it is sent).
        unique = self._dedupe_in_batch(batch.items, outcome)
        found = self._lookup_earlier(unique)
        keep: list[IndexItem] = []
        for item in unique:
            index = found.get(item.doc_id)
            if index is None:
                keep.append(item)
            elif day_of_index(index) == item.day:
                outcome.duplicates += 1
                self.metrics.duplicates.labels("sealed").inc()
            else:
                outcome.dead.append(_conflict(item, index))
        return keep

    def _dedupe_in_batch(self, items: list[IndexItem], outcome: Outcome) -> list[IndexItem]:
        """The first copy of each event in the batch (partition order decides which)."""
        first_day: dict[str, int] = {}
        unique: list[IndexItem] = []
        for item in items:
            day = first_day.get(item.doc_id)
            if day is None:
                first_day[item.doc_id] = item.day
                unique.append(item)
            elif day == item.day:
                outcome.duplicates += 1
                self.metrics.duplicates.labels("batch").inc()
            else:
                outcome.dead.append(_conflict(item, f"this batch (day {day})"))
        return unique

    def _lookup_earlier(self, items: list[IndexItem]) -> dict[str, str]:
        """doc_id -> the index holding an earlier copy, via realtime mget (no refresh lag).
        Asked per day: each of the day's earlier-copy indices for all of its ids, in the
        order ``earlier_copies`` gives them (the last one holding a copy is the answer)."""
        by_day: dict[int, list[str]] = {}
        for item in items:
            ids = by_day.get(item.day)
            if ids is None:
                ids = by_day[item.day] = []
            ids.append(item.doc_id)
        copies = self.targets.earlier_copies_of(by_day) if by_day else {}
        groups = [(index, ids) for day, ids in by_day.items() for index in copies[day]]
        return {doc_id: index for index, doc_id in stored_in(self.client, groups)}


class _BulkRun:
    """The items of one batch still to write, across attempts."""

    def __init__(self, writer: BatchWriter, items: list[IndexItem], outcome: Outcome) -> None:
        self.writer = writer
        self.pending = items
        self.outcome = outcome

    def attempt(self) -> None:
        if not self.pending:
            return
        w = self.writer
        by_day = w.targets.write_targets({item.day for item in self.pending})
        targets = [by_day[item.day] for item in self.pending]
        stamp = now_ms()  # re-stamped on every attempt
        if w.arrivals is not None:  # readers must see the bound before the documents
            w.arrivals.cover({item.day for item in self.pending}, stamp)
        body = bulk_body(self.pending, targets, stamp)
        started = time.perf_counter()
        response = send_bulk(w.client, body, w.timeout_s)
        w.metrics.bulk_seconds.observe(time.perf_counter() - started)
        self._settle(verdicts(response, len(self.pending)), stamp)
        if self.pending:
            raise Retry("bulk_item")

    def _settle(self, results: list[Any], stamp: int) -> None:
        w, retry, produced = self.writer, [], []  # produced: Kafka timestamps of created docs
        for item, result in zip(self.pending, results, strict=True):
            if result.verdict is Verdict.CREATED:
                produced.append(item.origin.timestamp)
            elif result.verdict is Verdict.DUPLICATE:
                self.outcome.duplicates += 1
                w.metrics.duplicates.labels("exists").inc()
            elif result.verdict is Verdict.RETRY:
                retry.append(item)  # index_not_found included: the next attempt re-ensures it
            else:  # permanent: the engine's error type is the reason, its message the detail
                letter = DeadLetter(item.origin, "index", result.error_type, result.reason)
                self.outcome.dead.append(letter)
        w.metrics.freshness.observe_many([max(0, stamp - ts) / 1000 for ts in produced])
        self.outcome.indexed += len(produced)
        w.metrics.indexed.inc(len(produced))
        self.pending = retry


def _conflict(item: IndexItem, where: str) -> DeadLetter:
    detail = f"event already indexed in {where}; a re-send with another day is not indexed"
    return DeadLetter(item.origin, "conflict", CONFLICT_REASON, detail)
