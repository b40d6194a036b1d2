"""Where loadgen and the collector send events: Kafka (as Fluent Bit does) or the collector."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from kafka import KafkaProducer
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from ingest.contract import to_kafka_message
from ingest.loadgen import invalid_message


def kafka_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    """A producer configured like Fluent Bit's out_kafka in production: acks=all, batching."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "retries": 10,
        "max_in_flight_requests_per_connection": 1,
        "client_id": "pulse-producer",
    }
    config.update(overrides)
    return KafkaProducer(**config)


def kafka_record(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """The (key, value) an event is produced as: keyed by event_id, so duplicates share a
    partition (the producer's default partitioner: murmur2 of the key) and keep their order."""
    return str(event["event_id"]).encode(), to_kafka_message(event)


def send_to_kafka(
    producer: KafkaProducer,
    topic: str,
    events: Iterable[dict[str, Any]],
    invalid_rate: float = 0.0,
    rng: random.Random | None = None,
) -> int:
    """Produce events (keyed by event_id so duplicates share a partition); returns the count."""
    rng = rng or random.Random(0)
    count = 0
    for event in events:
        if invalid_rate and rng.random() < invalid_rate:
            producer.send(topic, value=invalid_message(rng))
        key, value = kafka_record(event)
        producer.send(topic, key=key, value=value)
        count += 1
    producer.flush()
    return count


def send_to_collector(
    url: str,
    events: Iterable[dict[str, Any]],
    key: str,
    batch: int = 500,
    timeout_s: float = 30.0,
) -> int:
    """POST events to the collector with a write key (in_http format: a JSON array per
    request); returns how many the collector accepted."""
    count = 0
    chunk: list[dict[str, Any]] = []
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=timeout_s, headers=headers) as client:
        for event in events:
            chunk.append(event)
            if len(chunk) >= batch:
                count += _post(client, url, chunk)
                chunk = []
        if chunk:
            count += _post(client, url, chunk)
    return count


class CollectorBusy(RuntimeError):
    """The collector answered 5xx (Kafka unavailable): the request is safe to resend."""


class CollectorRefused(RuntimeError):
    """The collector refused the request (4xx: key, size, body): a resend cannot succeed."""


@retry(
    retry=retry_if_exception_type((httpx.TransportError, CollectorBusy)),
    wait=wait_exponential_jitter(multiplier=0.2, max=5),
    stop=stop_after_delay(60),
    reraise=True,
)
def _post(client: httpx.Client, url: str, chunk: list[dict[str, Any]]) -> int:
    """POST one batch; retried while the collector is starting or Kafka is away, like
    Fluent Bit's out_http (5xx: retry, 4xx: give up; a resend may duplicate events:
    event_id dedupes them). Returns the number of records accepted."""
    response = client.post(url, content=orjson.dumps(chunk))
    if response.status_code >= 500:
        raise CollectorBusy(f"{response.status_code}: {response.text}")
    if response.status_code == 201:
        return len(chunk)
    if response.status_code in (200, 422):  # per-record refusals: final, reported in the body
        return int(response.json()["accepted"])
    raise CollectorRefused(f"{response.status_code}: {response.text}")
