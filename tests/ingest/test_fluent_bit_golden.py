"""Golden Fluent Bit messages (tests/ingest/golden/) against the event contract.

The golden files are what `out_kafka` writes for known `in_http` / `in_tail` inputs. These
tests check that the files themselves keep Fluent Bit's shape (so a later edit cannot drift
from it), that `ingest.contract.parse_message` makes the expected events of them, and that
pulse's own collector encodes the same requests into the same bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.collector import records_of
from ingest.contract import Event, Rejection, parse_message, to_kafka_message

GOLDEN = Path(__file__).resolve().parent / "golden"
ISO8601_MICROS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


@dataclass(frozen=True)
class Case:
    name: str
    input: str
    request: bytes
    messages: list[bytes]
    expect: list[dict[str, Any]]


def _load_cases() -> list[Case]:
    spec = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))
    return [
        Case(
            name=c["name"],
            input=c["input"],
            request=(GOLDEN / c["request"]).read_bytes(),
            messages=(GOLDEN / c["messages"]).read_bytes().splitlines(),
            expect=c["expect"],
        )
        for c in spec["cases"]
    ]


CASES = _load_cases()


def _ordered(raw: bytes) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = json.loads(raw, object_pairs_hook=list)
    return pairs


def _input_records(case: Case) -> list[Any]:
    """The records Fluent Bit makes of the input: in_http splits arrays, in_tail one per line."""
    if case.input == "http":
        body = json.loads(case.request)
        return body if isinstance(body, list) else [body]
    records: list[Any] = []
    for line in case.request.decode("utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            records.append({"log": line})  # the json parser failed: the raw line is kept
    return records


def test_every_golden_file_is_used() -> None:
    listed = {"cases.json", "README.md"}
    spec = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))
    for c in spec["cases"]:
        listed |= {c["request"], c["messages"]}
    assert {p.name for p in GOLDEN.iterdir()} == listed


def test_cases_cover_the_shapes_the_contract_names() -> None:
    names = {c.name for c in CASES}
    assert {"http_single_event", "http_array_split_into_records"} <= names
    assert any(c.input == "tail" for c in CASES)
    stamps = [_ordered(m)[0][1] for c in CASES for m in c.messages]
    assert any(isinstance(s, str) for s in stamps), "an iso8601 @timestamp case"
    assert any(isinstance(s, float) for s in stamps), "a default double @timestamp case"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_messages_have_fluent_bits_shape(case: Case) -> None:
    for raw in case.messages:
        assert raw.isascii(), "Fluent Bit escapes non-ASCII characters (json.escape_unicode)"
        assert b": " not in raw and b", " not in raw, "out_kafka writes compact JSON"
        pairs = _ordered(raw)
        key, stamp = pairs[0]
        assert key == "@timestamp", "out_kafka packs the timestamp key first"
        assert "@timestamp" not in [k for k, _ in pairs[1:]]
        if isinstance(stamp, str):
            assert ISO8601_MICROS.fullmatch(stamp), stamp
        else:
            assert isinstance(stamp, float)
            text = raw.decode().split(",", 1)[0].split(":", 1)[1]
            assert text == format(stamp, ".16g"), "double timestamps are printed with %.16g"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_message_per_record_in_input_order(case: Case) -> None:
    records = _input_records(case)
    assert len(case.messages) == len(records)
    for raw, record in zip(case.messages, records, strict=True):
        keys = [k for k, _ in _ordered(raw)[1:]]
        assert keys == list(record), "record keys keep their order"
        message = json.loads(raw)
        del message["@timestamp"]
        assert message == record


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_contract_parses_golden_messages(case: Case) -> None:
    assert len(case.expect) == len(case.messages)
    for raw, expected in zip(case.messages, case.expect, strict=True):
        result = parse_message(raw)
        if "rejection" in expected:
            assert isinstance(result, Rejection), result
            assert result.reason == expected["rejection"]
            continue
        assert isinstance(result, Event), result
        for field, value in expected.items():
            assert getattr(result, field) == value, field


@pytest.mark.parametrize("case", [c for c in CASES if c.input == "http"], ids=lambda c: c.name)
def test_pulse_collector_accepts_the_same_requests(case: Case) -> None:
    """`pulse collector` splits an in_http body into the same records as Fluent Bit."""
    records = records_of(case.request)
    assert isinstance(records, list), records
    assert records == _input_records(case)


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if isinstance(_ordered(c.messages[0])[0][1], str)],
    ids=lambda c: c.name,
)
def test_pulse_encoding_matches_fluent_bit_bytes(case: Case) -> None:
    """`to_kafka_message` (the collector's encoder) writes Fluent Bit's exact bytes."""
    for raw, record in zip(case.messages, _input_records(case), strict=True):
        stamp = _ordered(raw)[0][1]
        now = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        encoded = to_kafka_message(record, now)
        if raw.isascii() and encoded.isascii():
            assert encoded == raw
        else:  # orjson writes UTF-8 where Fluent Bit escapes: same JSON, other bytes
            assert json.loads(encoded) == json.loads(raw)
