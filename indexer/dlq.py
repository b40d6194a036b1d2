"""Dead letters to ``events.dlq``: the original bytes as the value, the context in headers.

Format (docs/decisions/0010): key = the original key; value = the original message bytes,
unchanged (cut to ``MAX_DLQ_VALUE`` bytes when larger, flagged in ``pulse.truncated``);
headers (all UTF-8): ``pulse.reason`` (machine-readable code), ``pulse.detail`` (the engine's or
validator's message), ``pulse.stage`` (validate | bounds | index | conflict | fetch),
``pulse.topic``, ``pulse.partition``, ``pulse.offset``, ``pulse.timestamp`` (the original
record's, epoch ms), ``pulse.failed_at`` (epoch ms), ``pulse.size`` (original value length),
``pulse.sha256`` (of the original value), ``pulse.truncated`` ("1" or "0"); the original
record's headers follow. A skipped undecodable batch (stage fetch, reason
``undecodable_batch``) also has ``pulse.next_offset`` (docs/decisions/0110).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from indexer.decode import now_ms
from indexer.model import DeadLetter

log = logging.getLogger("pulse.indexer.dlq")

MAX_DLQ_VALUE = 256 * 1024  # below Kafka's default 1 MiB message limit with room for headers
MAX_DETAIL = 2048


def dlq_headers(letter: DeadLetter, failed_at_ms: int) -> list[tuple[str, bytes]]:
    o = letter.origin
    fields = {
        "pulse.reason": letter.reason,
        "pulse.detail": letter.detail[:MAX_DETAIL],
        "pulse.stage": letter.stage,
        "pulse.topic": o.topic,
        "pulse.partition": str(o.partition),
        "pulse.offset": str(o.offset),
        "pulse.timestamp": str(o.timestamp),
        "pulse.failed_at": str(failed_at_ms),
        "pulse.size": str(len(o.value)),
        "pulse.sha256": hashlib.sha256(o.value).hexdigest(),
        "pulse.truncated": "1" if len(o.value) > MAX_DLQ_VALUE else "0",
    }
    return [(k, v.encode()) for k, v in fields.items()] + list(o.headers)


def dlq_producer(bootstrap: str) -> KafkaProducer:
    """acks=all: a dead letter counts as handled (its offset may be committed) only once the
    DLQ topic has it durably."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        retries=5,
        max_in_flight_requests_per_connection=1,
        max_request_size=2 * MAX_DLQ_VALUE,
        client_id="pulse-indexer-dlq",
    )


class DlqWriter:
    """Sends dead letters and reports which did not make it (the caller retries those)."""

    def __init__(self, producer: KafkaProducer, topic: str, timeout_s: float) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def send(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Send all, wait for acks; returns the letters that failed (empty when all landed)."""
        if not letters:
            return []
        failed_at = now_ms()
        futures: list[tuple[DeadLetter, Any]] = []
        for letter in letters:
            try:
                futures.append((letter, self._send_one(letter, failed_at)))
            except KafkaError as exc:
                log.warning("dlq send refused", extra={"error": repr(exc)})
                futures.append((letter, None))
        self.producer.flush(timeout=self.timeout_s)
        return [letter for letter, future in futures if not _landed(future, self.timeout_s)]

    def _send_one(self, letter: DeadLetter, failed_at_ms: int) -> Any:
        return self.producer.send(
            self.topic,
            key=letter.origin.key,
            value=letter.origin.value[:MAX_DLQ_VALUE],
            headers=dlq_headers(letter, failed_at_ms),
        )

    def close(self, timeout_s: float) -> None:
        self.producer.close(timeout=timeout_s)


def _landed(future: Any, timeout_s: float) -> bool:
    if future is None:
        return False
    try:
        future.get(timeout=timeout_s)
    except KafkaError as exc:
        log.warning("dlq send failed", extra={"error": repr(exc)})
        return False
    return True
