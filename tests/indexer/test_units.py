"""The indexer's pure steps: decode and bounds, stamping, batching limits, bulk verdicts,
DLQ headers (no engines needed)."""

from __future__ import annotations

import gc

import msgspec
import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram

from indexer.batching import Batcher, Limits
from indexer.bulk import BulkAnswer, Verdict, verdicts
from indexer.decode import Bounds, decode, stamp
from indexer.dlq import MAX_DLQ_VALUE, dlq_headers
from indexer.metrics import FRESHNESS_BUCKETS, BatchHistogram
from indexer.model import DAY_MS, DeadLetter, IndexItem, Origin
from ingest.contract import Document, Event, parse_document, to_kafka_message
from storage.targets import day_of_index

NOW = 1_780_000_000_000
BOUNDS = Bounds(max_future_ms=3_600_000, max_age_ms=90 * DAY_MS)


def _origin(value: bytes, offset: int = 0, partition: int = 0) -> Origin:
    return Origin("events.raw", partition, offset, NOW, b"k", value)


def _message(occurred_at: int) -> bytes:
    event = {"event_id": "e1", "merchant_id": "m1", "event_type": "page_view"}
    return to_kafka_message({**event, "occurred_at": occurred_at})


def test_decode_gives_an_item_for_its_utc_day() -> None:
    item = decode(_origin(_message(NOW)), BOUNDS, NOW)
    assert isinstance(item, IndexItem)
    assert item.day == NOW // DAY_MS
    doc = orjson.loads(stamp(item.body, 42))
    assert doc["ingested_at"] == 42 and doc["occurred_at"] == NOW


def test_decode_refuses_far_future_and_expired_events() -> None:
    future = decode(_origin(_message(NOW + 3_600_001)), BOUNDS, NOW)
    expired = decode(_origin(_message(NOW - 91 * DAY_MS)), BOUNDS, NOW)
    edge = decode(_origin(_message(NOW + 3_600_000)), BOUNDS, NOW)
    assert isinstance(future, DeadLetter) and future.reason == "future:occurred_at"
    assert isinstance(expired, DeadLetter) and expired.reason == "expired:occurred_at"
    assert isinstance(edge, IndexItem)


@pytest.mark.parametrize("shipped", [1e16, 9.3e15, 2.6e14, 10**16, 2**63, 253402300800])
@pytest.mark.parametrize("pinned", [False, True])
def test_decode_dead_letters_an_at_timestamp_beyond_any_instant(
    shipped: float, pinned: bool
) -> None:
    """A numeric @timestamp whose millis pass year 9999 (past ~9.2e15 s they overflow 64
    bits, which orjson refused with an exception inside decode) is a dead letter, on the fast
    path (float), the precise path (int) and with a pinned reprocessing mapping."""
    event = {"event_id": "e1", "merchant_id": "m1", "event_type": "page_view", "occurred_at": NOW}
    raw = orjson.dumps({"@timestamp": shipped, **event})
    letter = decode(_origin(raw), BOUNDS, NOW, Event.to_doc if pinned else None)
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.reason) == ("validate", "out_of_range:@timestamp")
    edge = orjson.dumps({"@timestamp": 253402300799.999, **event})
    assert isinstance(
        decode(_origin(edge), BOUNDS, NOW, Event.to_doc if pinned else None), IndexItem
    )


def test_decode_keeps_a_decline_code() -> None:
    event = {"event_id": "e1", "merchant_id": "m1", "event_type": "payment", "occurred_at": NOW}
    raw = to_kafka_message({**event, "status": "failed", "decline_code": "do_not_honor"})
    item = decode(_origin(raw), BOUNDS, NOW)
    assert isinstance(item, IndexItem)
    assert orjson.loads(stamp(item.body, 1))["decline_code"] == "do_not_honor"
    bad = decode(_origin(to_kafka_message({**event, "decline_code": "Do-Not"})), BOUNDS, NOW)
    assert isinstance(bad, DeadLetter) and bad.reason == "bad_format:decline_code"


def test_decode_turns_bad_bytes_into_dead_letters() -> None:
    letter = decode(_origin(b"\xff\xfe"), BOUNDS, NOW)
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.reason) == ("validate", "invalid_utf8")


def test_batch_closes_by_count_and_tracks_next_offsets() -> None:
    batcher = Batcher(Limits(max_docs=3, max_bytes=10**9, max_age_s=60))
    for offset in range(3):
        batcher.add(decode(_origin(_message(NOW), offset, partition=offset % 2), BOUNDS, NOW))
    assert batcher.full() and batcher.due()
    batch = batcher.take()
    assert batch.offsets == {0: 3, 1: 2}
    assert not batcher.due()


def test_batch_closes_by_bytes_and_age() -> None:
    by_bytes = Batcher(Limits(max_docs=1000, max_bytes=1024, max_age_s=60))
    while not by_bytes.full():
        by_bytes.add(decode(_origin(_message(NOW)), BOUNDS, NOW))
    assert 1 < len(by_bytes.open) < 1000
    by_age = Batcher(Limits(max_docs=1000, max_bytes=10**9, max_age_s=0.5))
    by_age.add(decode(_origin(_message(NOW)), BOUNDS, NOW))
    assert not by_age.due(by_age.open.opened_at + 0.4)
    assert by_age.due(by_age.open.opened_at + 0.5)


def test_bulk_verdicts_per_item() -> None:
    def item(status: int, etype: str = "") -> dict[str, object]:
        body: dict[str, object] = {"status": status}
        if etype:
            body["error"] = {"type": etype, "reason": f"{etype} happened"}
        return {"create": body}

    response = {
        "errors": True,
        "items": [
            item(201),
            item(409, "version_conflict_engine_exception"),
            item(429, "es_rejected_execution_exception"),
            item(503, "unavailable_shards_exception"),
            item(404, "index_not_found_exception"),
            item(400, "mapper_parsing_exception"),
        ],
    }
    got = [r.verdict for r in verdicts(msgspec.convert(response, BulkAnswer), 6)]
    assert got == [
        Verdict.CREATED,
        Verdict.DUPLICATE,
        Verdict.RETRY,
        Verdict.RETRY,
        Verdict.RETRY,
        Verdict.FAILED,
    ]
    assert verdicts(BulkAnswer(errors=False), 2)[1].verdict is Verdict.CREATED


def test_dlq_headers_carry_reason_and_origin() -> None:
    big = b"x" * (MAX_DLQ_VALUE + 1)
    letter = DeadLetter(_origin(big, offset=7), "validate", "too_large", "too big")
    headers = dict(dlq_headers(letter, 99))
    assert headers["pulse.reason"] == b"too_large"
    assert headers["pulse.offset"] == b"7"
    assert headers["pulse.truncated"] == b"1"
    assert headers["pulse.size"] == str(len(big)).encode()


def test_day_of_index_reads_alias_and_backing_names() -> None:
    day = day_of_index("ns-events-g1-2026.11.24-000002")
    assert day == day_of_index("ns-events-g2-2026.11.24") is not None
    assert day_of_index("ns-rollups-g1") is None


def test_in_flight_items_are_not_tracked_by_the_cyclic_collector() -> None:
    """Decision 0280: tens of thousands of items live in batches for seconds; tracked, they
    made every full collection walk them all. They cannot be part of a cycle."""
    headers = tuple([("traceparent", bytes(8))])  # a new tuple: tracked until a collection
    assert gc.is_tracked(headers)
    event = {"event_id": "e1", "merchant_id": "m1", "event_type": "page_view", "occurred_at": NOW}
    message = to_kafka_message({**event, "attributes": {"plan": "gold"}})  # a dict: tracked
    origin = Origin("events.raw", 0, 0, NOW, b"k", message, headers)
    item = decode(origin, BOUNDS, NOW)
    assert isinstance(item, IndexItem)
    document = parse_document(item.origin.value)
    assert isinstance(document, Document)
    for obj in (item, item.origin, document, document.doc):
        assert not gc.is_tracked(obj), type(obj).__name__


def test_batch_histogram_exposes_what_a_histogram_observing_each_value_does() -> None:
    """The freshness histogram observes a batch at once (decision 0280): same samples, same
    names, bounds inclusive, as prometheus_client's own Histogram."""
    values = [0.0, 0.1, 0.1000001, 0.25, 4.99, 5.0, 7.5, 3600.0, 3600.5, 1e9, 0.0999]
    own, stock = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("fresh_seconds", "doc", FRESHNESS_BUCKETS)
    own.register(batch)
    reference = Histogram("fresh_seconds", "doc", buckets=FRESHNESS_BUCKETS, registry=stock)
    batch.observe_many(values[:4])
    batch.observe_many(values[4:])
    batch.observe_many([])
    for value in values:
        reference.observe(value)
    assert _samples(own) == _samples(stock)
    assert own.get_sample_value("fresh_seconds_count") == len(values)
    assert own.get_sample_value("fresh_seconds_bucket", {"le": "0.1"}) == 3


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, str(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }
