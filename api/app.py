"""The ASGI app: /graphql (POST queries, GET GraphiQL), /healthz, /readyz, /metrics, and the
browser pages (/, /dashboard, /static: api.pages)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import strawberry
from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from opensearchpy import OpenSearch
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from strawberry.fastapi import GraphQLRouter

from api.authcache import KeyGuard
from api.budget import CostBudget
from api.executor import KnownDocuments
from api.graphql_http import GRAPHQL, SUB_RESPONSE, GraphQLPost, Observe
from api.http_limits import RequestLimits
from api.masking import CodedErrors
from api.observability import OperationMetrics
from api.pages import add_pages, html
from api.ratelimit import EngineBuckets, RateLimiter
from api.schema import Backend, Context, build_schema
from api.sources import Ctx
from pulse.clients import opensearch_client, resolve_endpoints
from pulse.naming import names_for
from pulse.settings import Settings

# Per request: error codes; valid query texts skip parse and validation (api.schema); the
# cost budget, priced before execution (api.budget).
EXTENSIONS: list[Any] = [CodedErrors, KnownDocuments, CostBudget]


class Router(GraphQLRouter[Context, None]):
    """Strawberry's router with Pulse's own GraphiQL page: every asset from this origin
    (strawberry's page loads React and GraphiQL from a public CDN)."""

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return html("graphiql.html")

    async def get_sub_response(self, request: Request) -> Response:
        """The sub-response api.graphql_http.GraphQLPost made for this request (strawberry's
        route keeps the last one injected on the router, shared by concurrent requests)."""
        made = request.scope.get(SUB_RESPONSE)
        return made if isinstance(made, Response) else await super().get_sub_response(request)

    def encode_json(self, data: object) -> bytes:
        """orjson instead of the standard library's encoder: a 30-day hourly report spent 14 %
        of the API's CPU in ``json.dumps`` (py-spy under ``pulse bench api-load``). The same
        JSON values; non-ASCII text is sent as UTF-8 rather than ``\\u`` escapes."""
        return orjson.dumps(data)


class RequestMetrics:
    """Prometheus request counters and latencies, in a registry of this app's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pulse_api_requests", "HTTP requests", ["path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "pulse_api_request_seconds",
            "HTTP request latency",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.graphql = OperationMetrics(self.registry)


# Connections the API's engine client keeps open. A report reads side by side (the late-event
# search beside the split's reads, the packs beside the raw tail: api.sources), and requests
# run in anyio's worker threads; with urllib3's one kept connection every report opened and
# closed ~2 TCP connections and logged "Connection pool is full" twice (decision 0254).
ENGINE_CONNECTIONS = 32
GC_THRESHOLDS = (20_000, 20, 20)  # the API process's gc.set_threshold (``_lifespan``)


def _engine(settings: Settings) -> OpenSearch:
    url = settings.opensearch_url or resolve_endpoints(settings).opensearch_url
    # libcurl for the requests: a third of the CPU per round trip (decision 0290); bodies
    # written by orjson (pulse.clients.FastBodies).
    return opensearch_client(
        url,
        timeout_s=settings.api_request_timeout_s,
        connections=ENGINE_CONNECTIONS,
        curl=True,
        orjson_bodies=True,
    )


def _limiter(ctx: Ctx, settings: Settings) -> RateLimiter:
    per_minute = settings.rate_limit_per_minute
    if not settings.rate_limit_shared:
        return RateLimiter(per_minute)
    return RateLimiter(per_minute, EngineBuckets(ctx.client, ctx.names, per_minute))


def create_app(
    settings: Settings,
    client: OpenSearch | None = None,
    *,
    schema: strawberry.Schema | None = None,
    backend: Backend | None = None,
) -> FastAPI:
    """The API for ``settings`` (engine client built from them unless given). ``schema`` and
    ``backend`` replace the app's schema and engine-facing calls (benchmarks of one layer)."""
    ctx = Ctx(client or _engine(settings), names_for(settings), settings)
    limiter = _limiter(ctx, settings)
    guard = KeyGuard(settings)
    metrics = RequestMetrics()
    calls = backend or Backend()

    async def context(request: Request) -> Context:
        address = request.client.host if request.client else ""
        auth = request.headers.get("authorization")
        return Context(ctx, limiter, auth, calls, guard=guard, address=address)

    router = Router(
        # A given schema (a benchmark of one layer) goes without the operation metrics.
        schema or build_schema([*EXTENSIONS, metrics.graphql.extension()]),
        context_getter=context,
        graphql_ide="graphiql",
    )
    app = FastAPI(
        title="Pulse", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan
    )
    app.include_router(router, prefix=GRAPHQL)
    # Plain ASGI, outermost first: Observe, RequestLimits, GraphQLPost (api.graphql_http).
    app.add_middleware(GraphQLPost, view=router, context=context)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.api_max_body_bytes,
        max_header_bytes=settings.api_max_header_bytes,
    )
    app.add_middleware(
        Observe,
        requests=metrics.requests,
        latency=metrics.latency,
        max_response_bytes=settings.api_max_response_bytes,
    )
    _add_probes(app, ctx, metrics)
    add_pages(app)
    return app


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """At server start, move everything alive to the GC's permanent generation, and collect
    the young generation every ``GC_THRESHOLDS[0]`` allocations instead of 700.

    A large report allocates ~10^4 objects, so full collections run every few requests; each
    walked every module, schema and client object (~80 ms on 2 cores, docs/bench/
    graphql-exec.md). Frozen objects are skipped, and a full collection costs <= 5 ms. With
    the default 700 a 30-day report ran a dozen young collections, whose survivors (the
    report's own live cells and points) were walked again and again: 5-10 % of the API's CPU
    per report (decision 0255). The objects between two collections stay a few MB.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    yield


def _add_probes(app: FastAPI, ctx: Ctx, metrics: RequestMetrics) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    checked: list[float] = []  # when the engine was last asked, and its answer (as 0/1)
    checking = asyncio.Lock()

    @app.get("/readyz")
    async def readyz() -> Response:
        """The engine's reachability, asked at most every readyz_cache_s: the probe is
        unauthenticated, so it must not be a way to load the engine."""
        async with checking:
            if not checked or time.monotonic() - checked[0] >= ctx.settings.readyz_cache_s:
                ready = await to_thread.run_sync(_engine_reachable, ctx.client)
                checked[:] = [time.monotonic(), float(ready)]
            ready = bool(checked[1])
        body: dict[str, Any] = {"status": "ready" if ready else "engine unreachable"}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _engine_reachable(client: OpenSearch) -> bool:
    try:
        return bool(client.ping(request_timeout=2))
    except Exception:  # any failure means "not ready", which is all a probe needs to know
        return False
