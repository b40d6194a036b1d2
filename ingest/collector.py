"""Pulse's collector: the authenticated HTTP front door to ``events.raw``.

Bodies are what Fluent Bit's ``in_http`` accepts on any path — one JSON object, or an array
of objects (each its own record) — and each accepted record is written exactly as
``out_kafka`` writes it (``Format json``, ``@timestamp`` iso8601 packed first). Like Fluent Bit
it does not validate the event contract (the indexer does, and dead-letters with a reason).

What it adds (DESIGN.md "Ingest is authenticated", docs/decisions/0120):

- ``Authorization: Bearer <write key>``; no, unknown or revoked key → 401, a read key → 403.
  A merchant write key writes only records whose ``merchant_id`` is its merchant; an admin
  write key any. Others are refused per record (``merchant_not_allowed``), never written.
- The body is counted while it streams: over the limit → 413 before the rest is read; more
  records than allowed → 413. A record whose Kafka message is too large → ``too_large``.
- 2xx only after Kafka acknowledged every accepted record (acks=all); Kafka or the key store
  unreachable → 503 with ``Retry-After`` (a resend is safe: ``event_id`` dedupes).
- The answer lists every record: ``{"accepted", "refused", "results": [{"index", "status",
  "reason"?, "detail"?}]}``. 201: all accepted; 200: some refused; 422: none accepted.
  Refusals are final (a resend cannot succeed), so they are never 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError
from opensearchpy.exceptions import OpenSearchException
from starlette.requests import ClientDisconnect

from ingest.collector_metrics import CollectorMetrics
from ingest.contract import to_kafka_message
from ingest.keycache import KeyCache, Resolve, bearer_key, digest_of
from ingest.sinks import kafka_producer
from pulse.keystore import Principal
from pulse.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # in_http's default buffer_max_size is 4M


@dataclass(frozen=True)
class Limits:
    """What one request may carry, and how long the collector waits for Kafka."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_records: int = 10_000
    max_record_bytes: int = 1_000_000
    ack_timeout_s: float = 10.0
    retry_after_s: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_body_bytes=settings.collector_max_body_bytes,
            max_records=settings.collector_max_records,
            max_record_bytes=settings.collector_max_record_bytes,
            ack_timeout_s=settings.collector_ack_timeout_s,
            retry_after_s=settings.collector_retry_after_s,
        )


class Refusal(Exception):
    """The whole request is refused: status, machine-readable reason, message, headers."""

    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Message:
    """An accepted record, encoded as out_kafka encodes it."""

    index: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Refused:
    index: int
    reason: str
    detail: str


def records_of(body: bytes) -> list[dict[str, Any]] | str:
    """The records of one request body, or an error message (in_http's behaviour)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "invalid JSON"
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list) and all(isinstance(r, dict) for r in payload):
        return payload
    return "expected a JSON object or an array of objects"


def judge(
    index: int, record: dict[str, Any], principal: Principal, limits: Limits, now: datetime
) -> Message | Refused:
    """Accept a record for Kafka, or refuse it with a reason no resend can change."""
    merchant = record.get("merchant_id")
    if not principal.may_write(merchant):
        detail = f"this key writes for merchant {principal.merchant_id}, not {merchant!r}"
        return Refused(index, "merchant_not_allowed", detail)
    value = to_kafka_message(record, now)
    key = _key(record)
    size = len(value) + len(key or b"")
    if size > limits.max_record_bytes:
        detail = f"{size} bytes as a Kafka message; the limit is {limits.max_record_bytes}"
        return Refused(index, "too_large", detail)
    return Message(index, key, value)


def _key(record: dict[str, Any]) -> bytes | None:
    event_id = record.get("event_id")
    return str(event_id).encode() if event_id is not None else None


class Gate:
    """Authentication: the bearer write key of a request, checked through a short cache."""

    def __init__(self, resolve: Resolve, ttl_s: float, retry_after_s: int = 5) -> None:
        self.resolve = resolve
        self.cache = KeyCache(ttl_s)
        self.retry_after_s = retry_after_s

    async def principal(self, authorization: str | None) -> Principal:
        key = bearer_key(authorization)
        if key is None:
            raise Refusal(401, "unauthenticated", "send a write key: Authorization: Bearer <key>")
        digest = digest_of(key)
        known, principal = self.cache.get(digest)
        if not known:
            try:
                principal = await run_in_threadpool(self.resolve, digest)
            except OpenSearchException:
                raise _unavailable("the key store", self.retry_after_s) from None
            self.cache.put(digest, principal)
        if principal is None:
            raise Refusal(401, "unauthenticated", "unknown or revoked key")
        if not principal.write:
            raise Refusal(403, "read_key", "a read key cannot write: use a write key (--write)")
        return principal


async def read_body(request: Request, limit: int) -> bytes:
    """The body, counted as it streams: 413 as soon as it exceeds ``limit`` (or when the
    declared Content-Length does), so an oversize body is never read whole."""
    too_large = Refusal(413, "body_too_large", f"request body larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            parts.append(chunk)
    except ClientDisconnect:  # the sender gave up mid-body: nothing was written
        raise Refusal(400, "incomplete_body", "the sender closed the request early") from None
    return b"".join(parts)


def _unavailable(what: str, retry_after_s: int) -> Refusal:
    message = f"{what} is unavailable; nothing of this request is guaranteed stored: retry"
    return Refusal(503, "unavailable", message, {"Retry-After": str(retry_after_s)})


def send_all(producer: KafkaProducer, topic: str, messages: Sequence[Message]) -> list[Any]:
    """Hand every message to the producer (blocking while its buffer is full or metadata
    missing, up to max_block_ms); returns the futures of their acknowledgements."""
    return [producer.send(topic, key=m.key, value=m.value) for m in messages]


async def acknowledged(futures: Sequence[Any], timeout_s: float) -> bool:
    """True when Kafka acknowledged every future within ``timeout_s``. The producer completes
    futures on its own I/O thread: each completion hops onto this event loop, so waiting
    holds no thread (a request waits ~linger + one broker round trip)."""
    if not futures:
        return True
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()
    pending = [len(futures)]

    def settle(ok: bool) -> None:
        pending[0] -= 1
        if not done.done() and (not ok or pending[0] == 0):
            done.set_result(ok)

    def from_io_thread(ok: bool) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone (shutdown): request over
            loop.call_soon_threadsafe(settle, ok)

    for future in futures:
        future.add_callback(lambda _meta: from_io_thread(True))
        future.add_errback(lambda _exc: from_io_thread(False))
    try:
        return await asyncio.wait_for(done, timeout_s)
    except TimeoutError:
        return False


def answer(verdicts: Sequence[Message | Refused]) -> Response:
    """Per-record results: 201 all accepted, 200 some refused, 422 none accepted."""
    results: list[dict[str, Any]] = []
    for v in verdicts:
        if isinstance(v, Message):
            results.append({"index": v.index, "status": "accepted"})
        else:
            results.append(
                {"index": v.index, "status": "refused", "reason": v.reason, "detail": v.detail}
            )
    refused = sum(isinstance(v, Refused) for v in verdicts)
    accepted = len(verdicts) - refused
    status = 201 if not refused else 200 if accepted else 422
    body = {"accepted": accepted, "refused": refused, "results": results}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def create_app(
    producer: KafkaProducer,
    topic: str,
    resolve: Resolve,
    limits: Limits | None = None,
    key_ttl_s: float = 30.0,
) -> FastAPI:
    """The collector app. ``resolve`` maps a key hash to its principal (the key store)."""
    limits = limits or Limits()
    gate = Gate(resolve, key_ttl_s, limits.retry_after_s)
    app = FastAPI(title="Pulse collector (Fluent Bit in_http formats, write keys)")
    app.state.gate = gate
    metrics = CollectorMetrics()
    metrics.install(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/{tag:path}", status_code=201)
    async def ingest(tag: str, request: Request) -> Response:
        principal = await gate.principal(request.headers.get("authorization"))
        records = records_of(await read_body(request, limits.max_body_bytes))
        if isinstance(records, str):
            raise Refusal(400, "bad_body", records)
        if len(records) > limits.max_records:
            message = f"{len(records)} records; at most {limits.max_records} per request"
            raise Refusal(413, "too_many_records", message)
        now = datetime.now(tz=UTC)
        verdicts = [judge(i, r, principal, limits, now) for i, r in enumerate(records)]
        await deliver(producer, topic, verdicts, limits)
        for v in verdicts:
            if isinstance(v, Refused):
                metrics.refused(v.reason)
        metrics.accepted(sum(isinstance(v, Message) for v in verdicts))
        return answer(verdicts)

    @app.exception_handler(Refusal)
    async def refused(_: Request, exc: Refusal) -> Response:
        metrics.refused(exc.reason)  # the whole request, counted once
        body = orjson.dumps({"error": exc.message, "reason": exc.reason})
        headers = dict(exc.headers)
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return Response(body, exc.status, headers, media_type="application/json")

    return app


async def deliver(
    producer: KafkaProducer, topic: str, verdicts: list[Message | Refused], limits: Limits
) -> None:
    """Write the accepted messages; returns once Kafka acknowledged all of them, else 503."""
    messages = [v for v in verdicts if isinstance(v, Message)]
    try:
        futures = await run_in_threadpool(send_all, producer, topic, messages)
    except MessageSizeTooLargeError:  # only if the producer's limit is below ours: a bug
        log.exception("the producer refused a record the collector's limit admits")
        raise _unavailable("Kafka", limits.retry_after_s) from None
    except KafkaError:
        raise _unavailable("Kafka", limits.retry_after_s) from None
    if not await acknowledged(futures, limits.ack_timeout_s):
        raise _unavailable("Kafka", limits.retry_after_s)


def collector_producer(bootstrap: str, limits: Limits) -> KafkaProducer:
    """The producer of ``out_kafka``'s durable settings, with bounds the HTTP answer needs: a
    send blocks at most 5 s, and a record of ``max_record_bytes`` always fits a request."""
    return kafka_producer(
        bootstrap,
        client_id="pulse-collector",
        max_block_ms=5000,
        max_request_size=limits.max_record_bytes + 64 * 1024,
    )


# h11 and asyncio's loop named: uvicorn's "auto" would take httptools and uvloop, installed
# for the API (decision 0295), and httptools has no bound on headers split over reads (h11
# refuses more than 16 KiB of them). The collector's bench and tests run it the same way.
SERVER: dict[str, Any] = {"http": "h11", "loop": "asyncio"}


def serve(settings: Settings, bootstrap: str, opensearch_url: str, topic: str) -> None:
    """Run the collector in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    from pulse.clients import opensearch_client
    from pulse.keystore import lookup_hash
    from pulse.naming import names_for

    limits = Limits.from_settings(settings)
    client = opensearch_client(opensearch_url, timeout_s=10.0)  # a slow store is a 503
    names = names_for(settings)
    producer = collector_producer(bootstrap, limits)
    app = create_app(
        producer,
        topic,
        lambda d: lookup_hash(client, names, d),
        limits,
        settings.collector_key_ttl_s,
    )
    try:
        uvicorn.run(
            app,
            host=settings.collector_host,
            port=settings.collector_port,
            log_level="warning",
            **SERVER,
        )
    finally:
        try:
            producer.close(timeout=10)
        except KafkaError:  # Kafka away at shutdown: those requests were answered 503
            log.warning("collector stopped with records Kafka had not acknowledged")
