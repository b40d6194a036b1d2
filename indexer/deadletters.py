"""Dead letters an operator can work with: count, read and re-send what ``events.dlq`` holds.

The letters are written by ``indexer.dlq`` (value = the original bytes, context in
``pulse.*`` headers). Reading them uses no consumer group: a new group joins slowly (about
23 s on the embedded broker) and until it has joined it sees nothing, which a command would
report as "empty". Instead every partition is assigned by hand, read from its beginning, and
read until the end offsets captured when the command started (then on to the end of the last
batch, which the embedded broker's end offset stops short of: decision 0061): the answer is
complete for that moment, never "empty" because a join was still under way.

Re-driving re-sends chosen letters' original bytes to ``events.raw``. It is idempotent through
the event ``_id`` (merchant_id, event_id): the indexer's first-write-wins create keeps one
document however often a letter is re-sent (decision 0011). A letter still invalid after the
"fix" is dead-lettered again, with its reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from indexer.undecodable import OPEN, REASON, BlockedBatches
from pulse.clients import opensearch_client, resolve_endpoints
from pulse.naming import names_for
from pulse.settings import Settings

HOUR_MS = 3_600_000
# Age buckets of `pulse dlq stats`: (label, upper bound in ms, exclusive).
AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1h", HOUR_MS),
    ("1h-24h", 24 * HOUR_MS),
    ("1d-7d", 7 * 24 * HOUR_MS),
    (">7d", float("inf")),
)
NOT_REDRIVEN = (REASON,)  # a record batch, not an event: nothing to re-send
POLL_MS = 200
TAIL_POLLS = 20  # bounds the read-on when letters keep arriving


class DlqReadTimeout(RuntimeError):
    """The DLQ could not be read up to the end offsets captured at the start in time."""


@dataclass(frozen=True)
class Letter:
    """One dead letter: where it is in ``events.dlq``, why it is there, and the original bytes
    (``value``; cut at 256 KiB when ``truncated``)."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("pulse.reason", "unknown")

    @property
    def detail(self) -> str:
        return self.headers.get("pulse.detail", "")

    @property
    def failed_at(self) -> int:
        """When it was dead-lettered (epoch ms): the header, else the DLQ record's time."""
        try:
            return int(self.headers["pulse.failed_at"])
        except (KeyError, ValueError):
            return self.timestamp

    @property
    def truncated(self) -> bool:
        return self.headers.get("pulse.truncated") == "1"

    @property
    def origin(self) -> str:
        """topic/partition@offset of the original message."""
        topic, partition, offset = (
            self.headers.get(f"pulse.{k}", "?") for k in ("topic", "partition", "offset")
        )
        return f"{topic}/{partition}@{offset}"

    @property
    def redrivable(self) -> bool:
        return self.reason not in NOT_REDRIVEN and not self.truncated

    @classmethod
    def of(cls, record: Any) -> Letter:
        headers = {
            k: v.decode("utf-8", "replace") for k, v in record.headers or () if v is not None
        }
        value = record.value if record.value is not None else b""
        return cls(record.partition, record.offset, record.timestamp, record.key, value, headers)


@dataclass(frozen=True)
class DlqStats:
    """``pulse dlq stats``: letters by reason and by age, and the undecodable batches still
    waiting for a decision (decision 0110)."""

    total: int
    by_reason: dict[str, int]
    by_age: dict[str, int]
    by_reason_age: dict[str, dict[str, int]]
    oldest_ms: int | None
    newest_ms: int | None
    blocked_batches: list[dict[str, Any]] = field(default_factory=list)


def age_bucket(age_ms: int) -> str:
    return next(label for label, upper in AGE_BUCKETS if age_ms < upper)


def read_letters(
    bootstrap: str, topic: str, timeout_s: float = 60.0, client_id: str = "pulse-dlq"
) -> Iterator[Letter]:
    """Every letter of ``topic`` up to (at least) the end offsets captured now."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, client_id=client_id
    )
    try:
        yield from _read(consumer, topic, time.monotonic() + timeout_s)
    finally:
        consumer.close()


def _read(consumer: KafkaConsumer, topic: str, deadline: float) -> Iterator[Letter]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return  # the topic does not exist yet: no letter was ever written
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end: dict[TopicPartition, int] = consumer.end_offsets(tps)
    pending = {tp for tp in tps if end[tp] > 0}
    while pending:
        if time.monotonic() > deadline:
            raise DlqReadTimeout(f"{topic} not read to its end in time: {sorted(pending)}")
        for records in consumer.poll(timeout_ms=POLL_MS).values():
            yield from (Letter.of(r) for r in records)
        pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
    # The embedded broker answers the last batch's first offset + 1 as the end (decision
    # 0061): read on until a poll comes back empty, so the rest of that batch is included.
    for _ in range(TAIL_POLLS):
        polled = consumer.poll(timeout_ms=POLL_MS)
        if not polled:
            return
        for records in polled.values():
            yield from (Letter.of(r) for r in records)


def stats(settings: Settings, *, now_ms: int | None = None, timeout_s: float = 60.0) -> DlqStats:
    """Counts of ``events.dlq`` by reason and age bucket (``AGE_BUCKETS``), complete up to the
    moment of the call, and the undecodable batches waiting for an operator's decision.
    Finds the engines like every command (PULSE_* settings, else the running stack)."""
    endpoints = resolve_endpoints(settings)
    names = names_for(settings)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    letters = read_letters(endpoints.kafka_bootstrap, names.topic_dlq, timeout_s)
    result = summarize(letters, now)
    store = BlockedBatches(opensearch_client(endpoints.opensearch_url), names)
    waiting = [d for d in store.all() if d["status"] in OPEN]
    return DlqStats(**{**result.__dict__, "blocked_batches": waiting})


def summarize(letters: Iterator[Letter] | list[Letter], now_ms: int) -> DlqStats:
    by_reason: Counter[str] = Counter()
    by_age: Counter[str] = Counter()
    cross: dict[str, Counter[str]] = {}
    oldest: int | None = None
    newest: int | None = None
    for letter in letters:
        at, bucket = letter.failed_at, age_bucket(max(0, now_ms - letter.failed_at))
        by_reason[letter.reason] += 1
        by_age[bucket] += 1
        cross.setdefault(letter.reason, Counter())[bucket] += 1
        oldest = at if oldest is None else min(oldest, at)
        newest = at if newest is None else max(newest, at)
    return DlqStats(
        total=sum(by_reason.values()),
        by_reason=dict(by_reason.most_common()),
        by_age={label: by_age[label] for label, _ in AGE_BUCKETS},
        by_reason_age={r: {label: c[label] for label, _ in AGE_BUCKETS} for r, c in cross.items()},
        oldest_ms=oldest,
        newest_ms=newest,
    )


def select(
    letters: Iterator[Letter] | list[Letter], reason: str | None = None, since_ms: int | None = None
) -> list[Letter]:
    """Letters with ``reason`` (all when None) dead-lettered at or after ``since_ms``."""
    return [
        letter
        for letter in letters
        if (reason is None or letter.reason == reason)
        and (since_ms is None or letter.failed_at >= since_ms)
    ]


def show(settings: Settings, reason: str | None = None, limit: int = 20) -> list[Letter]:
    """The newest ``limit`` letters (with ``reason``), oldest of them first."""
    endpoints = resolve_endpoints(settings)
    letters = select(read_letters(endpoints.kafka_bootstrap, names_for(settings).topic_dlq), reason)
    letters.sort(key=lambda letter: (letter.failed_at, letter.partition, letter.offset))
    return letters[-limit:] if limit > 0 else []


@dataclass(frozen=True)
class RedrivePlan:
    """What a re-drive would send, and what it leaves out (and why)."""

    chosen: list[Letter]
    left_out: dict[str, int]


def plan_redrive(
    settings: Settings, reason: str | None = None, since_ms: int | None = None
) -> RedrivePlan:
    endpoints = resolve_endpoints(settings)
    letters = select(
        read_letters(endpoints.kafka_bootstrap, names_for(settings).topic_dlq), reason, since_ms
    )
    left: Counter[str] = Counter()
    for letter in letters:
        if letter.reason in NOT_REDRIVEN:
            left["record batch, not an event"] += 1
        elif letter.truncated:
            left["truncated: original bytes not complete"] += 1
    return RedrivePlan([letter for letter in letters if letter.redrivable], dict(left))


def redrive(
    settings: Settings, letters: list[Letter], advance: Callable[[int], None] | None = None
) -> int:
    """Re-send ``letters``' original bytes (and keys) to ``events.raw``, acks=all; returns how
    many the broker acknowledged (all of them, or an exception). ``advance(n)`` reports
    progress. Each re-sent message carries ``pulse.redriven_from`` = dlq partition@offset."""
    endpoints = resolve_endpoints(settings)
    topic = names_for(settings).topic_raw
    producer = KafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap, acks="all", linger_ms=5, retries=5,
        max_in_flight_requests_per_connection=1, client_id="pulse-dlq-redrive",
    )  # fmt: skip
    sent = 0
    try:
        for chunk in _chunks(letters, 500):
            futures = [
                producer.send(topic, key=x.key, value=x.value, headers=_mark(x)) for x in chunk
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=settings.engine_timeout_s)
            sent += len(chunk)
            if advance is not None:
                advance(len(chunk))
    finally:
        producer.close()
    return sent


def _mark(letter: Letter) -> list[tuple[str, bytes]]:
    return [("pulse.redriven_from", f"{letter.partition}@{letter.offset}".encode())]


def _chunks(items: list[Letter], size: int) -> Iterator[list[Letter]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
