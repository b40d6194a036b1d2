"""Producers that are not ours, configured the way production ships events.

``fluent_bit_producer`` is librdkafka (confluent-kafka, the library inside Fluent Bit's
``out_kafka``) configured from the ``rdkafka.*`` keys of our own Fluent Bit YAML, read at test
time so the configuration and the tests cannot drift. ``kafka_python_producer`` is kafka-python
with a chosen codec. Both key messages by ``event_id`` (``message_key_field: event_id``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import KafkaError, Message, Producer
from kafka import KafkaProducer

from ingest.contract import to_kafka_message

CONFIG_DIR = Path(__file__).resolve().parents[2] / "ingest" / "fluent-bit"
CODECS = ("gzip", "snappy", "lz4", "zstd")
PREFIX = "rdkafka."


def _kafka_output(path: Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text())
    outputs = [o for o in config["pipeline"]["outputs"] if o["name"] == "kafka"]
    assert len(outputs) == 1, f"{path.name}: one kafka output expected"
    output: dict[str, Any] = outputs[0]
    return output


def _text(value: Any) -> str:
    """librdkafka takes every property as a string; YAML booleans become true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rdkafka_properties() -> dict[str, str]:
    """The librdkafka properties our Fluent Bit configurations pass through (every file must
    pass the same ones: one shipper behaviour to test)."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        output = _kafka_output(path)
        found[path.name] = {
            k[len(PREFIX) :]: _text(v) for k, v in output.items() if k.startswith(PREFIX)
        }
    first, *others = found.values()
    assert first and all(o == first for o in others), f"rdkafka.* keys differ: {found}"
    return first


def fluent_bit_producer(bootstrap: str, codec: str | None = None) -> Producer:
    """librdkafka as Fluent Bit configures it; ``codec`` overrides ``compression.codec``."""
    config: dict[str, str] = {**rdkafka_properties(), "bootstrap.servers": bootstrap}
    config["client.id"] = "pulse-test-fluent-bit"
    if codec is not None:
        config["compression.codec"] = codec
    return Producer(config)


def produce_librdkafka(
    producer: Producer, topic: str, events: list[dict[str, Any]], partition: int | None = None
) -> list[tuple[int, int]]:
    """Produce every event (key = event_id, value = what out_kafka writes) and wait for every
    delivery report; any delivery error fails the test. ``partition`` None: librdkafka's own
    partitioner chooses, as in Fluent Bit. Returns each event's (partition, offset)."""
    where = {} if partition is None else {"partition": partition}
    errors: list[KafkaError] = []
    positions: dict[int, tuple[int, int]] = {}

    def delivered(i: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            positions[i] = (msg.partition(), msg.offset())

    for i, event in enumerate(events):
        key = str(event["event_id"]).encode()
        value = to_kafka_message(event)
        report = functools.partial(delivered, i)
        producer.produce(topic, key=key, value=value, on_delivery=report, **where)
        producer.poll(0)
    assert producer.flush(60) == 0, "librdkafka did not deliver everything in time"
    assert not errors, errors
    return [positions[i] for i in range(len(events))]


def kafka_python_producer(bootstrap: str, codec: str, idempotent: bool = True) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=codec,
        enable_idempotence=idempotent,
        acks="all",
        linger_ms=20,
        client_id=f"pulse-test-{codec}",
    )


def produce_kafka_python(
    producer: KafkaProducer, topic: str, events: list[dict[str, Any]]
) -> list[tuple[int, int]]:
    """Produce every event and wait for its acknowledgement; each event's (partition, offset)."""
    futures = [
        producer.send(topic, key=str(e["event_id"]).encode(), value=to_kafka_message(e))
        for e in events
    ]
    producer.flush(60)
    acked = [future.get(timeout=30) for future in futures]
    return [(meta.partition, meta.offset) for meta in acked]
