"""GraphQL execution cost of one large answer, without any engine.

``python -m bench.graphql_exec [--runs N] [--profile CASE]`` times the query documents of
bench.query (and a fuller one that asks every field of a Point) through the real schema — the
resolver, planning, shaping into GraphQL types, graphql-core execution and error masking —
with only the engine-facing calls stubbed (``StubbedEngine``, given to the app as its public
``backend``): the API key lookup answers an admin and the report is one built once per plan
(720 hourly points x 5 metrics, or 90 daily points). ``http`` cases go through the FastAPI
app with TestClient (JSON encoding and the ASGI stack included).

Each case runs *before* (graphql-core's executor, masking only: the configuration before
issue 6) and *after* (api.app's schema: plain-data executor, remembered valid documents)
interleaved, first with the GC as Python leaves it, then after ``gc.freeze()`` as the app's
startup does. Prints one JSON document: median and p95 ms per case and side, and the number
and worst pause of full (generation-2) collections per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import strawberry
from fastapi.testclient import TestClient

from api import schema as api_schema
from api.app import EXTENSIONS, create_app
from api.keys import Principal
from api.masking import CodedErrors
from api.model import Metric, QueryPlan
from api.ratelimit import RateLimiter
from api.report import MetricValue, Point, Report, Series
from api.sources import Ctx
from bench import query as query_bench
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


class StubbedEngine(api_schema.Backend):
    """The engine-facing calls answered without an engine (passed to the app through its
    public ``backend`` argument): key lookups answer an admin; a report is built once per
    plan."""

    def __init__(self) -> None:
        self.built: dict[QueryPlan, Report] = {}

    def principal(self, ctx: Ctx, key: str) -> Principal | None:
        return ADMIN

    def report(self, ctx: Ctx, plan: QueryPlan) -> Report:
        key = replace(plan, now_ms=0)  # the plan carries the request's clock
        if key not in self.built:
            self.built[key] = fake_report(plan)
        return self.built[key]


STUB = StubbedEngine()


def bench_settings() -> Settings:
    return Settings(
        opensearch_url="http://127.0.0.1:9",  # never contacted: the engine calls are stubbed
        namespace="benchgql",
        rate_limit_per_minute=10**9,
        rate_limit_shared=False,  # no engine here to share buckets in
        log_json=False,
    )


def variables(case: str) -> dict[str, Any]:
    return {"m": query_bench.MERCHANT, "f": "AUTO", **CASES[case]}


def build(extensions: list[Any], *, new: bool) -> strawberry.Schema:
    """The app's schema (``new``), or the one before issue 6: masking only, graphql-core's
    executor. Both use today's api.schema.to_graphql (see docs/bench/graphql-exec.md)."""
    if new:
        return api_schema.build_schema(extensions)
    return api_schema.build_schema([CodedErrors], plain_executor=False)


def schema_runner(settings: Settings, query: str, case: str, new: bool) -> Runner:
    """One full execution through the schema (the GraphQLRouter's own call, minus HTTP)."""
    schema = build(EXTENSIONS, new=new)
    ctx = Ctx(opensearch_client(settings.opensearch_url or ""), names_for(settings), settings)
    limiter = RateLimiter(settings.rate_limit_per_minute)
    loop = asyncio.new_event_loop()
    values = variables(case)

    def run() -> Any:
        context = api_schema.Context(ctx, limiter, "Bearer bench", STUB)
        result = loop.run_until_complete(schema.execute(query, values, context_value=context))
        assert not result.errors, result.errors
        return result.data

    return run


def http_runner(settings: Settings, query: str, case: str, new: bool) -> Runner:
    """One POST /graphql through the ASGI app (router, JSON encoding, middleware)."""
    engine = opensearch_client(settings.opensearch_url or "")
    app = create_app(settings, engine, schema=build(EXTENSIONS, new=new), backend=STUB)
    client = TestClient(app)  # not entered: the app's startup (gc.freeze) is the bench's call
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
    """Both configurations, interleaved run by run so that machine noise hits them alike."""
    assert old() == new(), "the new configuration answered differently"
    for _ in range(warmup):
        old()
        new()
    samples: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(runs):
        for name, run in (("before", old), ("after", new)):
            started = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {name: _stats(values) for name, values in samples.items()}
    old_ms, new_ms = out["before"]["median_ms"], out["after"]["median_ms"]
    out["median_ratio"] = round(old_ms / new_ms, 2) if new_ms else None
    return out


def pairs(settings: Settings) -> dict[str, tuple[Runner, Runner]]:
    """Case name -> (before, after) runners."""
    out: dict[str, tuple[Runner, Runner]] = {}
    for case in CASES:
        for name, query in QUERIES.items():
            out[f"schema/{case}/{name}"] = (
                schema_runner(settings, query, case, new=False),
                schema_runner(settings, query, case, new=True),
            )
        out[f"http/{case}/bench"] = (
            http_runner(settings, query_bench.QUERY, case, new=False),
            http_runner(settings, query_bench.QUERY, case, new=True),
        )
    return out


class FullCollections:
    """Count and time the GC's generation-2 collections while entered."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._started) * 1000)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        worst = max(self.pauses, default=0.0)
        return {"count": len(self.pauses), "max_ms": round(worst, 1)}


def phase(cases: dict[str, tuple[Runner, Runner]], runs: int) -> dict[str, Any]:
    with FullCollections() as full:
        result = {name: timed_pair(old, new, runs) for name, (old, new) in cases.items()}
    return {"full_gc_collections": full.summary(), "cases": result}


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
    parser.add_argument("--runs", type=int, default=60, help="timed runs per case and side")
    parser.add_argument("--profile", metavar="CASE", help="e.g. schema/30d_hourly/full")
    parser.add_argument("--before", action="store_true", help="profile the before side")
    args = parser.parse_args()
    settings = bench_settings()
    cases = pairs(settings)
    if args.profile:
        profile(cases[args.profile][0 if args.before else 1], args.runs)
        return
    report: dict[str, Any] = {"cpus": os.cpu_count(), "runs": args.runs}
    report["gc_default"] = phase(cases, args.runs)
    gc.collect()
    gc.freeze()  # what the app's startup does (api.app._lifespan)
    try:
        report["gc_frozen"] = phase(cases, args.runs)
    finally:
        gc.unfreeze()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
