"""The engine client (pulse.clients): answers read with msgspec as the stock serializer reads
them, and kept connections reused by concurrent requests."""

from __future__ import annotations

import json
import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from opensearchpy.exceptions import SerializationError
from opensearchpy.serializer import JSONSerializer

from pulse.clients import FastBodies, FastJSON, opensearch_client
from pulse.curl_transport import CurlTransport


@pytest.mark.parametrize(
    "text",
    [
        '{"v": 1.5, "e": 1e-7, "big": 18446744073709551616, "s": "\\u00fc\\n", "n": null}',
        '{"v": 18446744073709551615, "w": -9223372036854775809, "f": 0.1234567890123456789012}',
        '{"v": 123456789012345678901234567890, "w": 1e308, "x": 5e-324, "y": 1E+2}',
        '{"v": 1e400}',
        '"\\ud800"',
        '{"a": 1, "a": 2}',
        '{"v": NaN}',
        '{"v": Infinity}',
        '{"hits": {"hits": [{"_source": {"a": [1, 2.25, true]}}]}, "v": -0.0}',
    ],
)
def test_loads_reads_what_the_stock_serializer_reads(text: str) -> None:
    fast, stock = FastJSON().loads(text), JSONSerializer().loads(text)
    assert repr(fast) == repr(stock) or (math.isnan(fast["v"]) and math.isnan(stock["v"]))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers())
def test_numbers_read_as_the_standard_library_reads_them(number: float) -> None:
    text = json.dumps({"n": number, "list": [number, -number]})
    assert repr(FastJSON().loads(text)) == repr(json.loads(text))


def test_what_neither_can_read_fails_as_before() -> None:
    with pytest.raises(SerializationError):
        FastJSON().loads("{not json")


def opened_by(client: OpenSearch, threads: int, requests: int) -> int:
    """Connections ``client`` opened for ``requests`` GETs sent from ``threads`` at once
    (libcurl's count for the curl transport, urllib3's pool's for the stock one)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        assert all(pool.map(lambda _: client.info(), range(requests)))
    if isinstance(client.transport, CurlTransport):
        return client.transport.opened
    opened: int = client.transport.connection_pool.connections[0].pool.num_connections
    return opened


@pytest.mark.parametrize("curl", [False, True])
def test_concurrent_requests_reuse_the_kept_connections(opensearch_url: str, curl: bool) -> None:
    """At most ``connections`` requests at once never open more than that many: each is
    kept and reused (with one kept, every concurrent request opened and closed its own)."""
    client = opensearch_client(opensearch_url, connections=8, curl=curl)
    assert opened_by(client, 8, 400) <= 8


def test_requests_beyond_the_kept_connections_open_their_own(opensearch_url: str) -> None:
    """The curl transport, like urllib3's pool, does not make a request wait for a kept
    connection: past them it opens one of its own, and closes it after."""
    client = opensearch_client(opensearch_url, connections=1, curl=True)
    assert opened_by(client, 8, 200) > 1


# What the API's request bodies are made of (api.dsl, storage readers): JSON without floats.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_bodies_are_written_as_the_stock_serializer_writes_them(value: object) -> None:
    assert FastBodies().dumps(value) == JSONSerializer().dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        {"at": datetime(2026, 11, 30, 15, 0, 0, 123456, tzinfo=UTC), "day": date(2026, 11, 30)},
        {"id": uuid.UUID(int=7)},
        {"amount": Decimal("1.5"), "big": 2**70, "small": -(2**64)},
        {7: "an integer key", "s": "\u00fc\u2028\n"},
        {"lone": "\ud800"},
        "already a body",
        b"bytes body",
        {"fields": ("a", "b")},
    ],
)
def test_bodies_orjson_does_not_write_go_the_stock_way(value: object) -> None:
    assert FastBodies().dumps(value) == JSONSerializer().dumps(value)


def test_what_neither_can_write_fails_as_before() -> None:
    with pytest.raises(SerializationError):
        JSONSerializer().dumps({"x": object()})
    with pytest.raises(SerializationError):
        FastBodies().dumps({"x": object()})


def test_the_api_client_writes_bodies_with_orjson(opensearch_url: str) -> None:
    client = opensearch_client(opensearch_url, curl=True, orjson_bodies=True)
    assert isinstance(client.transport.serializer, FastBodies)
    assert client.search(index="_all", body={"size": 0, "query": {"match_all": {}}})["hits"]
    assert not isinstance(opensearch_client(opensearch_url).transport.serializer, FastBodies)
