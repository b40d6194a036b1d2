"""GraphQL execution cost of one large answer, without any engine.

``python -m bench.graphql_exec [--runs N] [--profile CASE]`` times the query documents of
api.bench (and a fuller one that asks every field of a Point) through the real schema — the
resolver, planning, shaping into GraphQL types, graphql-core execution and error masking —
with only the engine-facing calls stubbed: the API key lookup answers an admin and
``service.report`` returns a report built once per plan (720 hourly points x 5 metrics, or 90
daily points). ``http`` cases go through the FastAPI app with TestClient (JSON encoding and
the ASGI stack included). Prints one JSON document: median and p95 milliseconds per case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any
from unittest import mock

from fastapi.testclient import TestClient

from api import bench as query_bench
from api import schema as api_schema
from api import service
from api.app import create_app
from api.keys import Principal
from api.masking import CodedErrors
from api.model import Metric, QueryPlan
from api.ratelimit import RateLimiter
from api.report import MetricValue, Point, Report, Series
from api.sources import Ctx
from pulse.clients import opensearch_client
from pulse.naming import names_for
from pulse.settings import Settings

END = "2024-03-31T00:00:00+00:00"
CASES: dict[str, dict[str, Any]] = {
    "30d_hourly": {"s": "2024-03-01T00:00:00+00:00", "e": END, "g": "HOUR"},
    "90d_daily": {"s": "2024-01-01T00:00:00+00:00", "e": END, "g": "DAY"},
}
FULL_QUERY = (
    "query($m: ID!, $s: DateTime!, $e: DateTime!, $g: Granularity!, $f: ForceSource!) {"
    " metrics(merchantId: $m, range: {start: $s, end: $e}, granularity: $g, forceSource: $f,"
    f" metrics: {query_bench.METRICS}) {{ series {{ group {{ dimension value }}"
    " points { start complete values { metric value errorBound } } }"
    " totals { metric value errorBound } meta { sources watermark tookMs } } }"
)
QUERIES = {"bench": query_bench.QUERY, "full": FULL_QUERY}
ADMIN = Principal(key_id="bench", merchant_id=None, admin=True)
Runner = Callable[[], Any]


def _value(metric: Metric, rng: random.Random) -> MetricValue:
    """A plausible value per metric: counts, money with cents, rates, estimates with bounds."""
    if metric in (Metric.EVENTS, Metric.PAYMENTS):
        return MetricValue(metric, float(rng.randint(0, 5000)), 0.0)
    if metric is Metric.UNIQUE_CUSTOMERS:
        return MetricValue(metric, float(rng.randint(0, 3000)), 1.0)
    if metric in (Metric.AVERAGE_TICKET, Metric.PAYMENT_SUCCESS_RATE) and rng.random() < 0.05:
        return MetricValue(metric, None, None)  # no payments in that bucket
    if metric is Metric.PAYMENT_SUCCESS_RATE:
        return MetricValue(metric, rng.random(), 0.0)
    return MetricValue(metric, round(rng.uniform(0, 250_000), 3), 0.0)


def fake_report(plan: QueryPlan, seed: int = 7) -> Report:
    """A report shaped like api.report.shape's for ``plan``, with made-up values."""
    rng = random.Random(seed)
    bounds, now = plan.boundaries, plan.now_ms
    groups: list[list[Any]] = [[]]
    if plan.group_by:
        groups = [[(d, f"{d.value.lower()}-{i}") for d in plan.group_by] for i in range(plan.limit)]
    series = [
        Series(
            group,
            [
                Point(bounds[i], [_value(m, rng) for m in plan.metrics], bounds[i + 1] <= now)
                for i in range(plan.buckets)
            ],
        )
        for group in groups
    ]
    rep = Report(
        series=series,
        totals=[_value(m, rng) for m in plan.metrics],
        sources=["rollups", "raw"],
        watermark_ms=bounds[-1] - 3_600_000,
        took_ms=12,
        timezone=plan.timezone,
    )
    if plan.compare is not None:
        rep.comparison = fake_report(plan.compare, seed + 1)
    return rep


@contextmanager
def stubbed_engine() -> Iterator[None]:
    """Key lookups answer an admin; service.report answers a report built once per plan."""
    built: dict[QueryPlan, Report] = {}

    def report(ctx: Ctx, plan: QueryPlan) -> Report:
        if plan not in built:
            built[plan] = fake_report(plan)
        return built[plan]

    with (
        mock.patch("api.schema.lookup", lambda *_args: ADMIN),
        mock.patch.object(service, "report", report),
    ):
        yield


def bench_settings() -> Settings:
    return Settings(
        opensearch_url="http://127.0.0.1:9",  # never contacted: the engine calls are stubbed
        namespace="benchgql",
        rate_limit_per_minute=10**9,
        log_json=False,
    )


def variables(case: str) -> dict[str, Any]:
    return {"m": query_bench.MERCHANT, "f": "AUTO", **CASES[case]}


def schema_runner(settings: Settings, query: str, case: str, plain: bool) -> Runner:
    """One full execution through the schema (the GraphQLRouter's own call, minus HTTP)."""
    schema = api_schema.build_schema([CodedErrors], plain_executor=plain)
    ctx = Ctx(opensearch_client(settings.opensearch_url or ""), names_for(settings), settings)
    limiter = RateLimiter(settings.rate_limit_per_minute)
    loop = asyncio.new_event_loop()
    values = variables(case)

    def run() -> Any:
        context = api_schema.Context(ctx, limiter, "Bearer bench")
        result = loop.run_until_complete(schema.execute(query, values, context_value=context))
        assert not result.errors, result.errors
        return result.data

    return run


def http_runner(settings: Settings, query: str, case: str, plain: bool) -> Runner:
    """One POST /graphql through the ASGI app (router, JSON encoding, middleware)."""
    build = partial(api_schema.build_schema, plain_executor=plain)
    with mock.patch("api.app.build_schema", build):
        app = create_app(settings, opensearch_client(settings.opensearch_url or ""))
    client = TestClient(app)
    body = {"query": query, "variables": variables(case)}
    headers = {"Authorization": "Bearer bench"}

    def run() -> Any:
        response = client.post("/graphql", json=body, headers=headers)
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        return response.json()

    return run


def _stats(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=20)
    return {"median_ms": round(statistics.median(samples), 2), "p95_ms": round(q[18], 2)}


def timed_pair(old: Runner, new: Runner, runs: int, warmup: int = 5) -> dict[str, Any]:
    """Both executors, interleaved run by run so that machine noise hits them alike."""
    assert old() == new(), "the plain executor answered differently"
    for _ in range(warmup):
        old()
        new()
    samples: dict[str, list[float]] = {"graphql_core": [], "plain": []}
    for _ in range(runs):
        for name, run in (("graphql_core", old), ("plain", new)):
            started = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {name: _stats(values) for name, values in samples.items()}
    old_ms, new_ms = out["graphql_core"]["median_ms"], out["plain"]["median_ms"]
    out["median_speedup"] = round(old_ms / new_ms, 2) if new_ms else None
    return out


def pairs(settings: Settings) -> dict[str, tuple[Runner, Runner]]:
    """Case name -> (graphql-core executor, plain executor) runners."""
    out: dict[str, tuple[Runner, Runner]] = {}
    for case in CASES:
        for name, query in QUERIES.items():
            out[f"schema/{case}/{name}"] = (
                schema_runner(settings, query, case, plain=False),
                schema_runner(settings, query, case, plain=True),
            )
        out[f"http/{case}/bench"] = (
            http_runner(settings, query_bench.QUERY, case, plain=False),
            http_runner(settings, query_bench.QUERY, case, plain=True),
        )
    return out


def profile(run: Runner, runs: int) -> None:
    from pyinstrument import Profiler

    for _ in range(5):
        run()
    profiler = Profiler(interval=0.0005)
    with profiler:
        for _ in range(runs):
            run()
    print(profiler.output_text(unicode=False, color=False, show_all=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="timed runs per case and executor")
    parser.add_argument("--profile", metavar="CASE", help="e.g. schema/30d_hourly/full")
    parser.add_argument("--old", action="store_true", help="profile graphql-core's executor")
    args = parser.parse_args()
    settings = bench_settings()
    with stubbed_engine():
        cases = pairs(settings)
        if args.profile:
            profile(cases[args.profile][0 if args.old else 1], args.runs)
            return
        result = {name: timed_pair(old, new, args.runs) for name, (old, new) in cases.items()}
    report = {"cpus": os.cpu_count(), "runs": args.runs, "cases": result}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
