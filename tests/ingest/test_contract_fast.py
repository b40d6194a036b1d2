"""The msgspec fast path of the event contract against the precise parser it replaces.

``reference_contract`` is a frozen copy of ingest/contract.py before the fast path: for any
message, valid or not, the current parser must give the same Event (and so the same document
and _id) or the same rejection (reason and detail) — docs/decisions/0180.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from indexer.bulk import bulk_body
from indexer.model import IndexItem, Origin
from ingest import contract, loadgen
from ingest.contract import Document, Event, Rejection, parse_document, parse_message
from tests.ingest import reference_contract as ref

WHITESPACE = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u3000"
EDGE_STRINGS: list[Any] = [
    "e-1", "m_1", "payment", "x", "USD", "EUR", "usd", "US", "DE", "us", "U", "USDX",
    "succeeded", "failed", "pending", "web", "app", "pos", "Web", "ios",
    "", " ", "\u3000", "\x1c", "\x85 ", " a", "a ", "m 1", "m/1", "\u0663", "\x00",
    "a" * 8, "a" * 9, "a" * 32, "a" * 33, "a" * 64, "a" * 65, "a" * 128, "a" * 129,
    "é" * 64, "é" * 65, "m\n", "USD\n", "DE\n",
]  # fmt: skip
EDGE_DECLINES: list[Any] = [
    "insufficient_funds", "do_not_honor", "usd", "de", "a", "0", "_", "a" * 64, "a" * 65,
    "Do_not_honor", "do-not-honor", "do not", "do_not\n", "é", "", " ", 5, True, [], {},
]  # fmt: skip
EDGE_TIMES: list[Any] = [
    "2026-11-24T10:00:00Z", "2026-11-24T10:00:00.5Z", "2026-11-24t10:00:00.123456789z",
    "2026-11-24 10:00:00.999Z", "2026-11-24T10:00:00+05:45", "2026-11-24T10:00:00",
    "2026-02-30T10:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24T23:60:00Z",
    "2026-11-24T23:59:60Z", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00.001Z",
    "1969-12-31T23:59:59.5Z", "9999-12-31T23:59:59.999999Z", "2026-11-24T10:00:00.Z",
    "2026-11-24T10:00:00.1234567890Z", "\u0662026-11-24T10:00:00Z", "2026-1-24T10:00Z",
    "2025-06-02T17:59:59.999+05:30", "2026-11-24T10:00:00-00:00", "2026-11-24T10:00:00Z\n",
    "2026-11-24T10:00:0\u0663Z", "2026-11-24T10:00:00.\u0663Z", "2026-11-24T10:00:00.12\u0663Z",
    "2026-11-24T10:00:00.123\u0663Z", "2026-11-24T10:00:5Z", "2026-11-24T10:00:00,5Z",
    "2026-11-24T10:00:00.5ZZ", "2026-11-24T10:00:00.5",
    "2026-11-24T10:00:00.05z", "2026-11-24T10:00:59.999999999Z", "2026-11-24T10:00:99Z",
    "2026-11-24T10:00:-1Z", "2026-11-24T10:00:+1.5Z", "2026-11-24T10:00:1 .5Z",
    "", "x", 0, 1, -1, 253402299999999, 253402300800000, 2**53, 2**53 + 1, 2**63, 2**64,
    2**64 + 1, 1795550400.25, 253402300799.999, 253402300800.0, 253402300800, 9.3e15, 1e16,
    2**53 - 1, 1e20, 1e300, -0.0, 0.0, 1.5e-7, -1.5, True, False, None,
]  # fmt: skip
EDGE_AMOUNTS: list[Any] = [
    0, 1, -1, 10**12, 10**12 + 1, 2**63, 2**64, 2**64 + 1, 19.99, 0.5, 25.0, 0.001, 0.0005,
    19.9999, -0.0, -0.5, 1e12, 1e16, 1e-05, 999999999999.999, 1000000000000.001, 0.1 + 0.2,
    True, False, None, "1", "",
]  # fmt: skip
EDGE_ATTRIBUTES: list[Any] = [
    None, {}, {"a": "b"}, {"": "b"}, {"a": ""}, {"a": 1}, {"a": None}, {"a": {"b": "c"}},
    {f"k{i}": "v" for i in range(50)}, {f"k{i}": "v" for i in range(51)},
    {"k": "v" * 1024}, {"k": "v" * 1025}, {"k" * 128: "v"}, {"k" * 129: "v"}, [], ["a"], "a", 1,
]  # fmt: skip
odd_text = st.text(alphabet=st.sampled_from(WHITESPACE + "aZ09_.-é\x00\u0663/"), max_size=6)
strings = st.one_of(st.sampled_from(EDGE_STRINGS), odd_text)
times = st.one_of(
    st.sampled_from(EDGE_TIMES),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
)
amounts = st.one_of(
    st.sampled_from(EDGE_AMOUNTS),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-1, max_value=10**13, places=4).map(float),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), strings)
attribute_maps = st.one_of(
    st.sampled_from(EDGE_ATTRIBUTES),
    st.dictionaries(strings, strings, max_size=4),
    st.dictionaries(strings, scalars, max_size=3),
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "event_id": strings,
    "merchant_id": strings,
    "event_type": strings,
    "occurred_at": times,
    "@timestamp": times,
    "customer_id": strings,
    "session_id": strings,
    "amount": amounts,
    "currency": strings,
    "status": strings,
    "payment_method": strings,
    "store_id": strings,
    "country": strings,
    "channel": strings,
    "device": strings,
    "decline_code": st.one_of(st.sampled_from(EDGE_DECLINES), strings),
    "attributes": attribute_maps,
}
EDGES: dict[str, list[Any]] = {
    "occurred_at": EDGE_TIMES,
    "@timestamp": EDGE_TIMES,
    "amount": EDGE_AMOUNTS,
    "attributes": EDGE_ATTRIBUTES,
    "decline_code": EDGE_DECLINES,
}
VALID = {
    "@timestamp": "2026-11-24T12:00:00.123456Z",
    "event_id": "e-1",
    "merchant_id": "m_1",
    "event_type": "payment",
    "occurred_at": "2026-11-24T10:00:00.250Z",
    "customer_id": "m_1-c7",
    "amount": 19.99,
    "currency": "USD",
    "status": "succeeded",
    "country": "DE",
    "channel": "web",
}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one field changed (mostly: each rule is then what decides), or
    several fields replaced, dropped, nulled, and unknown ones added."""
    event: dict[str, Any] = dict(VALID)
    if draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(FIELD_VALUES)))
        event[key] = draw(FIELD_VALUES[key])
        return event
    for key in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=4, unique=True)):
        event[key] = draw(FIELD_VALUES[key])
    for key in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=2, unique=True)):
        del event[key]
    extras = draw(
        st.dictionaries(st.sampled_from(["sdk", "ip", "nested", ""]), scalars, max_size=2)
    )
    event.update(extras)
    if draw(st.booleans()):
        event["nested_obj"] = draw(st.sampled_from([{}, {"a": 1}, [], [1]]))
    return event


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    event = draw(events())
    # The standard library's encoder: orjson refuses integers beyond 64 bits.
    raw = json.dumps(event, ensure_ascii=draw(st.booleans()), separators=(",", ":")).encode()
    mutation = draw(st.sampled_from(["none"] * 6 + ["truncate", "bytes", "dup", "wrap"]))
    if mutation == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == "bytes":
        at = draw(st.integers(0, len(raw)))
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\\ud800", b" ", b"\x00"]))
            + raw[at:]
        )
    elif mutation == "dup":  # a repeated key: the last one counts in both decoders
        key = draw(st.sampled_from(sorted(FIELD_VALUES)))
        value = json.dumps(draw(FIELD_VALUES[key])).encode()
        raw = raw[:-1] + (b"," if len(raw) > 2 else b"") + orjson.dumps(key) + b":" + value + b"}"
    elif mutation == "wrap":
        raw = draw(st.sampled_from([b"[%s]", b" %s ", b"%s%s", b"\xef\xbb\xbf%s"])).replace(
            b"%s", raw
        )
    return raw


def _encoded(doc: dict[str, Any]) -> str:
    """Keys in order, values with their types (5 and 5.0 differ); the standard library's
    encoder, so a document orjson could not encode still compares (none may be accepted)."""
    return json.dumps(doc)


def _same_event(new: Event, old: ref.Event) -> None:
    new_fields, old_fields = dataclasses.astuple(new), dataclasses.astuple(old)
    assert new_fields == old_fields
    assert [type(v) for v in new_fields] == [type(v) for v in old_fields]  # no 5.0 for 5
    assert _encoded(new.to_doc(7)) == _encoded(old.to_doc(7))
    assert new.doc_id == old.doc_id


def check(raw: bytes) -> None:
    """Both current entry points agree with the reference on ``raw``."""
    old = ref.parse_message(raw)
    new = parse_message(raw)
    doc = parse_document(raw)
    if isinstance(old, ref.Rejection):
        assert isinstance(new, Rejection) and isinstance(doc, Rejection), (new, doc)
        assert (new.reason, new.detail) == (old.reason, old.detail)
        assert (doc.reason, doc.detail) == (old.reason, old.detail)
        return
    assert isinstance(new, Event) and isinstance(doc, Document), (old, new, doc)
    _same_event(new, old)
    expected = old.to_doc(0)
    del expected["ingested_at"]
    assert _encoded(doc.fields) == _encoded(expected)
    assert (doc.doc_id, doc.occurred_at_ms) == (old.doc_id, old.occurred_at_ms)
    # The bytes the indexer writes: the same document, then the Kafka position.
    written = orjson.loads(doc.body(3, 41))
    assert _encoded(written) == _encoded({**expected, "kafka_partition": 3, "kafka_offset": 41})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
@example(b'{"event_id":"e","merchant_id":"m","event_type":"t","occurred_at":0,"@timestamp":1e400}')
@example(json.dumps({**VALID, "amount": 2**64}).encode())
@example(json.dumps({**VALID, "@timestamp": 2**64 + 1}).encode())
@example(json.dumps({**VALID, "@timestamp": 1e16}).encode())
@example(json.dumps({**VALID, "status": "failed", "decline_code": "do_not_honor"}).encode())
def test_fast_path_matches_the_reference_parser(raw: bytes) -> None:
    check(raw)


@pytest.mark.parametrize("key", sorted(FIELD_VALUES))
def test_every_edge_value_of_every_field(key: str) -> None:
    """Each rule on its own: one field set to each edge value (or dropped, or null)."""
    for value in [*EDGES.get(key, EDGE_STRINGS), None, *EDGE_STRINGS[:3]]:
        check(json.dumps({**VALID, key: value}).encode())
    check(json.dumps({k: v for k, v in VALID.items() if k != key}).encode())


def test_loadgen_and_golden_messages_take_the_fast_path() -> None:
    """The common case is what the fast path is for: realistic messages never fall back."""
    gen = loadgen.Generator(loadgen.LoadSpec(seed=3, duplicate_rate=0.01))
    now = loadgen.now_ms()
    raws = [contract.to_kafka_message(e) for e in gen.stream(gen.events(500, now - 10**8, now))]
    for raw in raws:
        assert contract._accept(raw) is not None, raw
        check(raw)


def _old_bulk_body(items: list[IndexItem], targets: list[str], ingested_at_ms: int) -> bytes:
    """indexer.bulk.bulk_body before decision 0180 (with decode.stamp inlined)."""
    parts: list[bytes] = []
    for item, index in zip(items, targets, strict=True):
        parts.append(
            b'{"create":{"_index":%s,"_id":"%s"}}' % (orjson.dumps(index), item.doc_id.encode())
        )
        parts.append(b'%s,"ingested_at":%d}' % (item.body[:-1], ingested_at_ms))
    parts.append(b"")
    return b"\n".join(parts)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["raw-a", "raw-b", 'we"ird\\ïndex']),
            st.dictionaries(
                st.text(max_size=3),
                st.one_of(st.integers(-(2**62), 2**62), st.text(max_size=3)),
                min_size=1,
            ),
        ),
        max_size=6,
    ),
    st.integers(0, 2**45),
)
def test_bulk_body_bytes_unchanged(docs: list[tuple[str, dict[str, Any]]], stamp: int) -> None:
    origin = Origin("t", 0, 0, 0, None, b"")
    items = [IndexItem(origin, f"id{i}", 0, orjson.dumps(d)) for i, (_, d) in enumerate(docs)]
    targets = [t for t, _ in docs]
    assert bulk_body(items, targets, stamp) == _old_bulk_body(items, targets, stamp)
