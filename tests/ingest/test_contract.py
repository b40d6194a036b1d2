from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from ingest.contract import (
    Event,
    Rejection,
    document_id,
    fluent_bit_timestamp,
    parse_message,
    to_kafka_message,
)

BASE = {
    "event_id": "e-1",
    "merchant_id": "m_1",
    "event_type": "payment",
    "occurred_at": "2026-11-24T10:00:00Z",
}


def msg(**fields: object) -> bytes:
    return orjson.dumps({**BASE, **fields})


def test_fluent_bit_message_parses_with_iso_timestamp() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
    raw = to_kafka_message({**BASE, "amount": 19.99, "status": "succeeded"}, now)
    assert raw.startswith(b'{"@timestamp":"2026-11-24T12:00:00.123456Z"')
    event = parse_message(raw)
    assert isinstance(event, Event)
    assert event.shipped_at_ms == int(now.timestamp() * 1000)
    assert event.amount_milli == 19990
    assert event.occurred_at_ms == int(datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp()) * 1000


def test_double_timestamp_and_epoch_millis_accepted() -> None:
    event = parse_message(msg(**{"@timestamp": 1795550400.25, "occurred_at": 1795550400123}))
    assert isinstance(event, Event)
    assert event.shipped_at_ms == 1795550400250
    assert event.occurred_at_ms == 1795550400123


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        ("2026-11-24T10:00:00+05:45", 1795493700000),
        ("2026-11-24T10:00:00.5-03:00", 1795525200500),
        ("2026-11-24t10:00:00.123456789z", 1795514400123),
    ],
)
def test_rfc3339_offsets(value: str, expected_ms: int) -> None:
    event = parse_message(msg(occurred_at=value))
    assert isinstance(event, Event)
    assert event.occurred_at_ms == expected_ms


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe", "invalid_utf8"),
        (b"[1,2]", "not_an_object"),
        (b'"str"', "not_an_object"),
        (b"[" * 5000, "invalid_json"),
        (b" " * (300 * 1024), "too_large"),
        (orjson.dumps({k: v for k, v in BASE.items() if k != "event_id"}), "missing:event_id"),
        (msg(event_id=7), "wrong_type:event_id"),
        (msg(event_id="x" * 129), "too_long:event_id"),
        (msg(event_id="  "), "empty:event_id"),
        (msg(merchant_id="m 1"), "bad_format:merchant_id"),
        (msg(merchant_id="m" * 65), "too_long:merchant_id"),
        (msg(occurred_at="2026-11-24 10:00"), "bad_format:occurred_at"),
        (msg(occurred_at="2026-11-24T10:00:00"), "bad_format:occurred_at"),
        (msg(occurred_at=True), "wrong_type:occurred_at"),
        (msg(occurred_at=None), "missing:occurred_at"),
        (msg(amount=-1), "out_of_range:amount"),
        (msg(amount="12"), "wrong_type:amount"),
        (msg(amount=1.0001), "precision:amount"),
        (msg(status="ok"), "bad_value:status"),
        (msg(channel="fax"), "bad_value:channel"),
        (msg(currency="eur"), "bad_format:currency"),
        (msg(country="DEU"), "bad_format:country"),
        (msg(attributes={"a": 1}), "wrong_type:attributes"),
        (msg(attributes={f"k{i}": "v" for i in range(51)}), "too_many:attributes"),
        (msg(extra={"nested": True}), "unknown_field"),
    ],
)
def test_rejections_have_reasons(raw: bytes, reason: str) -> None:
    result = parse_message(raw)
    assert isinstance(result, Rejection)
    assert result.reason == reason


def test_unknown_scalar_fields_kept_as_attributes() -> None:
    event = parse_message(msg(plan="gold", seats=3, attributes={"plan": "explicit"}))
    assert isinstance(event, Event)
    assert event.attributes == {"plan": "explicit", "seats": "3"}


def test_document_id_is_deterministic_and_scoped_by_merchant() -> None:
    assert document_id("m1", "e1") == document_id("m1", "e1")
    assert document_id("m1", "e1") != document_id("m2", "e1")
    assert len(document_id("m1", "x" * 128)) == 22


def test_fluent_bit_timestamp_shape() -> None:
    ts = fluent_bit_timestamp(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    assert ts == "2026-01-02T03:04:05.000006Z"


def test_doc_has_customer_hash_and_no_nulls() -> None:
    event = parse_message(msg(customer_id="c1"))
    assert isinstance(event, Event)
    doc = event.to_doc(ingested_at_ms=5)
    assert isinstance(doc["customer_hash"], int)
    assert None not in doc.values()
    assert doc["ingested_at"] == 5
