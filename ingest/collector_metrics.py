"""Prometheus metrics of one collector process (served on its own port's ``/metrics``).

- ``pulse_collector_requests_total{status}``: answers by HTTP status.
- ``pulse_collector_request_seconds``: request latency (Kafka's acknowledgement included).
- ``pulse_collector_records_total{outcome, reason}``: records ``accepted``, or ``refused``
  per record (``merchant_not_allowed``, ``too_large``) or with their whole request
  (``unauthenticated``, ``body_too_large``, ``unavailable``, ...). Reasons are the collector's
  own codes, a fixed set; never a merchant id or a key.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class CollectorMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "pulse_collector_requests", "Collector answers by HTTP status", ["status"], registry=r
        )
        self.latency = Histogram(
            "pulse_collector_request_seconds", "Collector request latency", buckets=BUCKETS,
            registry=r,
        )  # fmt: skip
        self.records = Counter(
            "pulse_collector_records",
            "Records accepted, or refused by reason",
            ["outcome", "reason"],
            registry=r,
        )

    def accepted(self, n: int) -> None:
        if n:
            self.records.labels("accepted", "").inc(n)

    def refused(self, reason: str, n: int = 1) -> None:
        if n:
            self.records.labels("refused", reason).inc(n)

    def install(self, app: FastAPI) -> None:
        """Count every answer and serve ``GET /metrics`` (before the catch-all POST route)."""

        @app.get("/metrics")
        def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        @app.middleware("http")
        async def observe(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            started = time.perf_counter()
            response = await call_next(request)
            if request.url.path != "/metrics":
                self.latency.observe(time.perf_counter() - started)
                self.requests.labels(str(response.status_code)).inc()
            return response
