"""Pulse's collector: the embedded stack's stand-in for Fluent Bit's edge ``in_http`` input.

It accepts what ``in_http`` accepts on any path — one JSON object, or an array of objects
(each becomes its own record) — and writes each record to ``events.raw`` exactly as
``out_kafka`` does (``Format json``, ``@timestamp`` iso8601 packed first). Like Fluent Bit it
does not validate the event contract (the indexer does, and dead-letters with a reason); it
answers 201 only after Kafka acknowledged every record, so an accepted request is never lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from kafka import KafkaProducer

from ingest.contract import to_kafka_message
from ingest.sinks import kafka_producer

MAX_BODY_BYTES = 4 * 1024 * 1024  # in_http's default buffer_max_size is 4M


def records_of(body: bytes) -> list[dict[str, Any]] | str:
    """The records of one request body, or an error message (in_http's behaviour)."""
    if len(body) > MAX_BODY_BYTES:
        return f"request body larger than {MAX_BODY_BYTES} bytes"
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "invalid JSON"
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list) and all(isinstance(r, dict) for r in payload):
        return payload
    return "expected a JSON object or an array of objects"


def create_app(producer: KafkaProducer, topic: str, timeout_s: float = 30.0) -> FastAPI:
    app = FastAPI(title="Pulse collector (Fluent Bit in_http compatible)")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/{tag:path}", status_code=201)
    async def ingest(tag: str, request: Request) -> Response:
        records = records_of(await request.body())
        if isinstance(records, str):
            return Response(content=f"error: {records}", status_code=400)
        now = datetime.now(tz=UTC)
        futures = [
            producer.send(topic, key=_key(r), value=to_kafka_message(r, now)) for r in records
        ]
        await run_in_threadpool(_wait_all, futures, timeout_s)
        return Response(status_code=201)

    @app.exception_handler(Exception)
    async def unavailable(_: Request, exc: Exception) -> Response:
        return Response(content="error: event log unavailable, retry", status_code=503)

    return app


def _wait_all(futures: list[Any], timeout_s: float) -> None:
    for future in futures:
        future.get(timeout=timeout_s)  # a failure becomes a 503: the client retries


def _key(record: dict[str, Any]) -> bytes | None:
    event_id = record.get("event_id")
    return str(event_id).encode() if event_id is not None else None


def serve(bootstrap: str, topic: str, host: str, port: int) -> None:
    """Run the collector in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    producer = kafka_producer(bootstrap, client_id="pulse-collector")
    try:
        uvicorn.run(create_app(producer, topic), host=host, port=port, log_level="warning")
    finally:
        producer.close(timeout=10)
