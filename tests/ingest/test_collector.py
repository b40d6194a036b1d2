"""The collector: in_http's body formats, out_kafka's message shape, and an authenticated,
bounded front door (write keys, merchant scope, streaming body limit, per-record results,
503 + Retry-After while Kafka is away), against the real engines."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError
from opensearchpy import OpenSearch

from ingest.collector import SERVER, Limits, collector_producer, create_app
from ingest.contract import Event, parse_message
from ingest.sinks import kafka_producer
from pulse.clients import ensure_topics, opensearch_client
from pulse.engines import free_port, start_kafka, wait_until
from pulse.keystore import Principal, create_key, lookup_hash, revoke
from pulse.naming import Names
from pulse.settings import Settings

EVENT = {
    "event_id": "c-1",
    "merchant_id": "m1",
    "event_type": "page_view",
    "occurred_at": "2026-11-24T10:00:00Z",
}


def resolver(client: OpenSearch, names: Names) -> Callable[[str], Principal | None]:
    return lambda digest: lookup_hash(client, names, digest)


def write_key(client: OpenSearch, names: Names, merchant: str | None) -> str:
    return create_key(client, names, merchant, merchant is None, "test", write=True)[0]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


@pytest.fixture
def app_for(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> Iterator[Callable[..., FastAPI]]:
    """Build a collector app on the session engines with the given limits / key TTL."""
    assert settings.kafka_bootstrap
    producer = kafka_producer(settings.kafka_bootstrap)

    def build(
        limits: Limits | None = None, key_ttl_s: float = 30.0, resolve: Any = None
    ) -> FastAPI:
        resolve = resolve or resolver(os_client, topics)
        return create_app(producer, topics.topic_raw, resolve, limits, key_ttl_s)

    yield build
    producer.close()


@pytest.fixture
def client(app_for: Callable[..., FastAPI]) -> Iterator[TestClient]:
    with TestClient(app_for()) as test_client:
        yield test_client


@pytest.fixture
def admin_key(os_client: OpenSearch, topics: Names) -> str:
    return write_key(os_client, topics, None)


def read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    values: list[bytes] = []
    for _ in range(6):
        for records in consumer.poll(500).values():
            values += [r.value for r in records]
    consumer.close()
    return values


def event_ids(settings: Settings, topics: Names) -> list[str]:
    assert settings.kafka_bootstrap
    values = read_all(settings.kafka_bootstrap, topics.topic_raw, settings.raw_partitions)
    parsed = [parse_message(v) for v in values]
    return sorted(p.event_id for p in parsed if isinstance(p, Event))


def test_object_and_array_become_records(
    client: TestClient, settings: Settings, topics: Names, admin_key: str
) -> None:
    """An admin write key sends for any merchant; 201 means Kafka holds every record."""
    response = client.post("/events", content=orjson.dumps(EVENT), headers=auth(admin_key))
    assert response.status_code == 201
    assert response.json() == {
        "accepted": 1, "refused": 0, "results": [{"index": 0, "status": "accepted"}],
    }  # fmt: skip
    batch = [{**EVENT, "event_id": f"c-{i}", "merchant_id": f"m{i}"} for i in range(2, 5)]
    response = client.post("/app.events", content=orjson.dumps(batch), headers=auth(admin_key))
    assert response.status_code == 201 and response.json()["accepted"] == 3
    assert settings.kafka_bootstrap
    values = read_all(settings.kafka_bootstrap, topics.topic_raw, settings.raw_partitions)
    assert len(values) == 4
    assert all(v.startswith(b'{"@timestamp":"') for v in values)
    assert event_ids(settings, topics) == ["c-1", "c-2", "c-3", "c-4"]


def test_a_merchant_key_writes_only_its_merchant(
    client: TestClient, settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    key = write_key(os_client, topics, "m1")
    batch = [
        {**EVENT, "event_id": "own-1"},
        {**EVENT, "event_id": "other", "merchant_id": "m2"},
        {**EVENT, "event_id": "own-2"},
        {k: v for k, v in EVENT.items() if k != "merchant_id"} | {"event_id": "nobody"},
    ]
    response = client.post("/events", content=orjson.dumps(batch), headers=auth(key))
    assert response.status_code == 200  # partial: the refusals are final, not retryable
    body = response.json()
    assert (body["accepted"], body["refused"]) == (2, 2)
    refused = {r["index"]: r["reason"] for r in body["results"] if r["status"] == "refused"}
    assert refused == {1: "merchant_not_allowed", 3: "merchant_not_allowed"}
    only_other = orjson.dumps({**EVENT, "event_id": "other-2", "merchant_id": "m2"})
    response = client.post("/events", content=only_other, headers=auth(key))
    assert response.status_code == 422 and response.json()["accepted"] == 0
    assert event_ids(settings, topics) == ["own-1", "own-2"]  # never written to events.raw


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer pulse_never-issued", "Basic dXNlcjpwYXNz", "Bearer not-a-pulse-key"],
)
def test_no_or_unknown_key_is_401(
    client: TestClient, settings: Settings, topics: Names, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post("/events", content=orjson.dumps(EVENT), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["reason"] == "unauthenticated"
    assert event_ids(settings, topics) == []


def test_a_read_key_cannot_write(
    client: TestClient, settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    for merchant in ("m1", None):
        key, _ = create_key(os_client, topics, merchant, merchant is None)  # read keys
        response = client.post("/events", content=orjson.dumps(EVENT), headers=auth(key))
        assert response.status_code == 403 and response.json()["reason"] == "read_key"
    assert event_ids(settings, topics) == []


def test_verdicts_are_cached_and_revocation_takes_at_most_the_ttl(
    app_for: Callable[..., FastAPI], os_client: OpenSearch, topics: Names
) -> None:
    lookups: list[str] = []

    def counting(digest: str) -> Principal | None:
        lookups.append(digest)
        return lookup_hash(os_client, topics, digest)

    key, principal = create_key(os_client, topics, None, True, write=True)
    with TestClient(app_for(key_ttl_s=1.0, resolve=counting)) as client:
        body = orjson.dumps(EVENT)
        assert client.post("/e", content=body, headers=auth(key)).status_code == 201
        assert client.post("/e", content=body, headers=auth(key)).status_code == 201
        assert len(lookups) == 1  # the second request used the cached verdict
        assert revoke(os_client, topics, principal.key_id)
        revoked_at = time.monotonic()
        assert wait_until(
            lambda: client.post("/e", content=body, headers=auth(key)).status_code == 401, 5.0
        )
        assert time.monotonic() - revoked_at < 1.0 + 4.0  # the TTL, plus slack for a busy box
        assert len(lookups) == 2  # looked up again only once the verdict expired


@contextmanager
def served(app: FastAPI) -> Iterator[int]:
    """Run ``app`` on a real uvicorn server on a free loopback port (streaming bodies)."""
    port = free_port()
    # The product's server (h11, asyncio); log_config None: logs go to caplog.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, **SERVER)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 10.0)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def chunked_head(port: int, key: str) -> bytes:
    return (
        f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def status_of(sock: socket.socket) -> tuple[int, bytes]:
    """Read one HTTP response (head and its Content-Length body); (status, raw bytes)."""
    sock.settimeout(15)
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer) < _expected_length(answer):
        part = sock.recv(65536)
        if not part:
            break
        answer += part
    return int(answer.split(b" ", 2)[1]), answer


def _expected_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(head) + 4


def test_an_oversize_streaming_body_is_413_before_it_is_read_whole(
    app_for: Callable[..., FastAPI], admin_key: str, settings: Settings, topics: Names
) -> None:
    """Only limit + 64 KiB of a chunked body are sent and the request is never finished: the
    collector must answer 413 from what it counted, not wait for (or buffer) the rest."""
    limit = 256 * 1024
    with served(app_for(Limits(max_body_bytes=limit))) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(chunked_head(port, admin_key) + chunk(b"["))
            piece = orjson.dumps(EVENT) + b","
            for _ in range((limit + 64 * 1024) // 4096):
                sock.sendall(chunk(piece * (4096 // len(piece))))
            status, answer = status_of(sock)
        assert status == 413, answer
        assert b"body_too_large" in answer
        with socket.create_connection(("127.0.0.1", port)) as sock:  # declared: no body read
            head = chunked_head(port, admin_key).replace(
                b"Transfer-Encoding: chunked", f"Content-Length: {limit + 1}".encode()
            )
            sock.sendall(head)
            assert status_of(sock)[0] == 413
    assert event_ids(settings, topics) == []


def test_headers_split_over_reads_are_bounded(
    app_for: Callable[..., FastAPI], settings: Settings, topics: Names
) -> None:
    """Headers that never complete, sent in pieces past 16 KiB, are answered 400 and the
    connection closed (h11's bound: the collector's server, ``SERVER``), not kept in memory."""
    with served(app_for()) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: ".encode())
            for _ in range(17):  # just past the bound: the server reads every byte sent
                sock.sendall(b"a" * 1024)
                time.sleep(0.005)  # separate reads
            status, answer = status_of(sock)
        assert status == 400, answer
    assert event_ids(settings, topics) == []


def test_a_sender_leaving_mid_body_writes_nothing_and_breaks_nothing(
    app_for: Callable[..., FastAPI],
    admin_key: str,
    settings: Settings,
    topics: Names,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with served(app_for()) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(chunked_head(port, admin_key) + chunk(b'[{"event_id": "half", '))
        with socket.create_connection(("127.0.0.1", port)) as sock:  # still serving
            whole = orjson.dumps({**EVENT, "event_id": "whole"})
            sock.sendall(chunked_head(port, admin_key) + chunk(whole) + b"0\r\n\r\n")
            assert status_of(sock)[0] == 201
    assert event_ids(settings, topics) == ["whole"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback"


def test_too_many_records_is_413(
    app_for: Callable[..., FastAPI], admin_key: str, settings: Settings, topics: Names
) -> None:
    with TestClient(app_for(Limits(max_records=3))) as client:
        batch = [{**EVENT, "event_id": f"n-{i}"} for i in range(4)]
        response = client.post("/events", content=orjson.dumps(batch), headers=auth(admin_key))
        assert response.status_code == 413 and response.json()["reason"] == "too_many_records"
        assert client.post(
            "/e", content=orjson.dumps(batch[:3]), headers=auth(admin_key)
        ).is_success
    assert event_ids(settings, topics) == ["n-0", "n-1", "n-2"]


def test_a_record_too_large_for_kafka_is_refused_not_retried(
    client: TestClient, admin_key: str, settings: Settings, topics: Names
) -> None:
    """The issue's 1.5 MB record: refused `too_large` (final), its neighbours accepted."""
    big = {**EVENT, "event_id": "big", "attributes": {"blob": "x" * 1_500_000}}
    batch = [{**EVENT, "event_id": "small-1"}, big, {**EVENT, "event_id": "small-2"}]
    response = client.post("/events", content=orjson.dumps(batch), headers=auth(admin_key))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "refused", "accepted"]
    assert results[1]["reason"] == "too_large" and "1000000" in results[1]["detail"]
    assert event_ids(settings, topics) == ["small-1", "small-2"]


def test_an_unreachable_key_store_is_503_with_retry_after(
    app_for: Callable[..., FastAPI], admin_key: str, topics: Names, settings: Settings
) -> None:
    """A key the collector has not verified yet cannot be checked: retry later, never admit."""
    nowhere = opensearch_client(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    app = app_for(Limits(retry_after_s=9), resolve=resolver(nowhere, topics))
    with TestClient(app) as client:
        response = client.post("/events", content=orjson.dumps(EVENT), headers=auth(admin_key))
    assert response.status_code == 503 and response.headers["Retry-After"] == "9"
    assert event_ids(settings, topics) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"[{}, 3]"])
def test_bad_bodies_are_refused_with_400(client: TestClient, admin_key: str, body: bytes) -> None:
    response = client.post("/events", content=body, headers=auth(admin_key))
    assert response.status_code == 400
    assert response.json()["reason"] == "bad_body"


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_kafka_stopped_mid_request_is_503_with_retry_after(
    settings: Settings, os_client: OpenSearch, names: Names
) -> None:
    """A broker of this test's own (the session's engines keep running) dies while a request
    streams in: the collector must not answer 2xx for records Kafka never acknowledged."""
    kafka = start_kafka()
    try:
        ensure_topics(settings, kafka.address)
        limits = Limits(ack_timeout_s=3.0, retry_after_s=7)
        producer = collector_producer(kafka.address, limits)
        key = write_key(os_client, names, None)
        app = create_app(producer, names.topic_raw, resolver(os_client, names), limits)
        with served(app) as port:
            url = f"http://127.0.0.1:{port}/events"  # first: metadata known, Kafka works
            ok = httpx.post(url, content=orjson.dumps(EVENT), headers=auth(key), timeout=20)
            assert ok.status_code == 201, ok.text
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(chunked_head(port, key) + chunk(b'[{"event_id": "lost", '))
                os.kill(kafka.pid, signal.SIGKILL)
                kafka.process.wait(10)
                rest = b'"merchant_id": "m1", "event_type": "x", "occurred_at": 1}]'
                sock.sendall(chunk(rest) + b"0\r\n\r\n")
                status, answer = status_of(sock)
        assert status == 503, answer
        assert b"retry-after: 7" in answer.lower()
        with contextlib.suppress(KafkaTimeoutError):  # the unacknowledged record stays queued
            producer.close(timeout=1)
    finally:
        kafka.stop()
