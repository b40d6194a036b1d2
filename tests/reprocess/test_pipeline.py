"""The cheap day read that lets a replay skip other days' messages agrees with the full decode
(the day it would index into), and declines whenever it cannot be sure."""

from __future__ import annotations

import orjson

from indexer.decode import Bounds, decode
from indexer.model import DAY_MS, IndexItem, Origin
from ingest.contract import to_kafka_message
from ingest.loadgen import Generator, LoadSpec
from reprocess.pipeline import decode_records, event_day

NOW = 1_790_000_000_000
BOUNDS = Bounds(10 * DAY_MS, 30 * DAY_MS)


class _Rec:
    def __init__(self, value: bytes, offset: int = 0) -> None:
        self.topic, self.partition, self.offset, self.timestamp = "t", 0, offset, NOW
        self.key, self.value, self.headers = None, value, ()


def test_event_day_is_the_full_decodes_day() -> None:
    gen = Generator(LoadSpec(seed=4))
    messages = [to_kafka_message(gen.event_at(NOW - i * 3_600_000)) for i in range(300)]
    for message in messages:
        item = decode(Origin("t", 0, 0, NOW, None, message), BOUNDS, NOW)
        assert isinstance(item, IndexItem)
        assert event_day(message) == item.day


def test_event_day_declines_what_it_cannot_read_for_sure() -> None:
    base = {"event_id": "e", "merchant_id": "m1", "event_type": "page_view"}
    twice = b'{"occurred_at": 0, "event_id": "e", "occurred_at": 1790000000000}'
    nested = orjson.dumps({**base, "occurred_at": NOW, "attributes": {"occurred_at": "x"}})
    for value in (
        twice,  # duplicated key: the full decode keeps the last one
        nested,  # the key also inside attributes
        orjson.dumps({**base, "occurred_at": True}),
        orjson.dumps({**base, "occurred_at": 1.5}),
        orjson.dumps({**base, "occurred_at": "yesterday"}),
        orjson.dumps({**base}),
        b"[1, 2]",
        b"\xff\xfe",
        b"",
    ):
        assert event_day(value) is None, value


def test_other_days_are_counted_outside_without_decoding() -> None:
    gen = Generator(LoadSpec(seed=5))
    inside = to_kafka_message(gen.event_at(NOW))
    outside = to_kafka_message(gen.event_at(NOW - 2 * DAY_MS))
    day = NOW // DAY_MS
    out = decode_records(
        [_Rec(inside, 0), _Rec(outside, 1), _Rec(b"{}", 2)], {day}.__contains__, BOUNDS, NOW
    )
    assert [i.origin.offset for i in out.items] == [0]
    assert (out.outside, out.invalid) == (1, 1)
