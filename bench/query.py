"""`pulse bench query`: report latency served normally vs forced to raw, in the same run.

Generates loadgen events straight into the raw indices with bulk (skipped when the bench
namespace already holds enough), lets rollups be built when the rollups package offers a
job, then times a 30-day hourly and a 90-day daily report for the biggest merchant through
the ASGI app in-process (GraphQL parsing, auth, planning, engine, shaping all included), and
the customer cases of bench.query_customers (cohorts, NEW/RETURNING_CUSTOMERS).
"""

from __future__ import annotations

import importlib
import itertools
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from opensearchpy import OpenSearch, helpers

from api.app import create_app
from api.keys import create_key
from bench import funnel
from bench.query_customers import customer_cases, timed
from ingest.contract import validate
from ingest.loadgen import DAY_MS, HOUR_MS, Generator, LoadSpec, Returning, shop_sessions
from pulse.clients import opensearch_client, read_stack
from pulse.naming import Names, day_of, names_for
from pulse.settings import Settings, get_settings
from storage.arrivals import Arrivals
from storage.templates import ensure_templates, write_target

HISTORY_DAYS = 90  # the loaded history: events over the last 90 days (the 90-day report)
MERCHANT = "m00000"  # rank 1 of the Zipf distribution: the biggest merchant
METRICS = "[EVENTS, PAYMENTS, GROSS_SALES, NET_SALES, PAYMENT_SUCCESS_RATE]"
QUERY = (
    "query($m: ID!, $s: DateTime!, $e: DateTime!, $g: Granularity!, $f: ForceSource!) {"
    " metrics(merchantId: $m, range: {start: $s, end: $e}, granularity: $g, forceSource: $f,"
    f" metrics: {METRICS}) {{ series {{ points {{ start values {{ value }} }} }}"
    " totals { value } meta { sources tookMs } } }"
)


SESSION_SHARE = 0.4  # of the loaded events, sent as shop sessions (as the demo does)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _engine(settings: Settings) -> tuple[OpenSearch, Any]:
    """The configured engine, or an embedded osmem started for this run."""
    url = settings.opensearch_url or read_stack(settings).get("opensearch_url")
    if url:
        return opensearch_client(url, timeout_s=600), None
    from pulse.engines import start_opensearch

    engine = start_opensearch()
    return opensearch_client(engine.address, timeout_s=600), engine


def count_events(client: OpenSearch, names: Names) -> int:
    if not client.indices.exists(index=names.events_alias):
        return 0
    return int(client.count(index=names.events_alias)["count"])


def _actions(
    client: OpenSearch, settings: Settings, names: Names, events: int, spec: LoadSpec, end: int
) -> Iterator[dict[str, Any]]:
    gen = Generator(spec)
    targets: dict[Any, str] = {}
    in_sessions = round(events * SESSION_SHARE)
    start = end - HISTORY_DAYS * DAY_MS
    stream = itertools.chain(
        gen.events(events - in_sessions, start, end), shop_sessions(gen, in_sessions, start, end)
    )
    for raw in stream:
        event = validate(raw)
        day = day_of(event.occurred_at_ms)
        if day not in targets:
            targets[day] = write_target(client, names, settings.generation, day)
        source = event.to_doc(event.occurred_at_ms + 2000)
        yield {"_index": targets[day], "_id": event.doc_id, "_source": source}


def load(
    client: OpenSearch, settings: Settings, names: Names, events: int, spec: LoadSpec
) -> float:
    """Bulk-write ``events`` loadgen events over the last HISTORY_DAYS days; seconds taken."""
    ensure_templates(client, settings, names)
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    _keep_arrivals(client, names, end)
    started = time.perf_counter()
    done = 0
    stream = _actions(client, settings, names, events, spec, end)
    for ok, _ in helpers.parallel_bulk(client, stream, thread_count=2, chunk_size=5000):
        done += ok
        if done % 500_000 == 0:
            _log(f"indexed {done} events in {time.perf_counter() - started:.0f}s")
    client.indices.refresh(index=names.events_alias)
    return time.perf_counter() - started


def merchant_events(client: OpenSearch, names: Names) -> int:
    """How many raw events the timed merchant (the Zipf head) has."""
    body = {"query": {"term": {"merchant_id": MERCHANT}}}
    return int(client.count(index=names.events_alias, body=body)["count"])


def _keep_arrivals(client: OpenSearch, names: Names, end: int) -> None:
    """What the indexer records before writing (storage.arrivals): per day, a bound of the newest
    ingested_at — here each day's last event time + the 2 s stamping delay of ``_actions``."""
    keeper = Arrivals(client, names, lookahead_ms=0)
    for day in range((end - HISTORY_DAYS * DAY_MS) // DAY_MS, end // DAY_MS + 1):
        keeper.cover([day], min((day + 1) * DAY_MS, end) + 2000)


def build_rollups(client: OpenSearch, settings: Settings, names: Names) -> float | None:
    """Run the rollup job to completion when the rollups package offers one; seconds taken."""
    try:
        job = importlib.import_module("rollups.job")
    except ImportError:
        return None
    started = time.perf_counter()
    job.catch_up(client, settings, names)
    return time.perf_counter() - started


def _time(tc: TestClient, key: str, variables: dict[str, Any], n: int) -> dict[str, Any]:
    sources: set[str] = set()
    figures = timed(
        tc, key, QUERY, variables, n, "metrics", lambda a: sources.update(a["meta"]["sources"])
    )
    del figures["answer"]
    return {**figures, "sources": sorted(sources)}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def measure(
    settings: Settings,
    client: OpenSearch,
    requests: int,
    funnel_runs: int = 0,
    reports: bool = True,
    customers: bool = True,
) -> dict[str, Any]:
    """The report cases (unless ``reports`` is false; without the customer cases unless
    ``customers``) and, with ``funnel_runs``, the funnels."""
    names = names_for(settings)
    key, _ = create_key(client, names, None, admin=True, label="bench")
    # While traffic flows, the indexer keeps today's arrivals bound ahead of the watermark,
    # so reports search today's raw index for late events: keep it so while measuring.
    now = int(time.time() * 1000)
    Arrivals(client, names, lookahead_ms=0).cover([now // DAY_MS], now + 3_600_000)
    with TestClient(create_app(settings, client)) as tc:  # runs startup, as a server does
        out = _measure(tc, key, requests, customers) if reports else {}
        if funnel_runs:
            out["funnels"] = funnel.measure(tc, key, client, names, MERCHANT, funnel_runs)
        return out


def _measure(tc: TestClient, key: str, requests: int, customers: bool) -> dict[str, Any]:
    now = int(time.time() * 1000)
    end = now // HOUR_MS * HOUR_MS + HOUR_MS  # include the open hour, as dashboards do
    reports = {
        "30d_hourly": (end - 30 * DAY_MS, "HOUR"),
        "90d_daily": (end // DAY_MS * DAY_MS - 89 * DAY_MS, "DAY"),
    }
    out: dict[str, Any] = {}
    for name, (start, gran) in reports.items():
        variables = {"m": MERCHANT, "s": _iso(start), "e": _iso(end), "g": gran}
        for force in ("AUTO", "RAW"):
            _time(tc, key, {**variables, "f": force}, 5)  # warm caches and the JIT-less path
        normal = _time(tc, key, {**variables, "f": "AUTO"}, requests)
        raw = _time(tc, key, {**variables, "f": "RAW"}, requests)
        speedup = raw["p95_ms"] / normal["p95_ms"] if normal["p95_ms"] else None
        out[name] = {"normal": normal, "forced_raw": raw, "p95_speedup": speedup}
    if not customers:
        return out
    baseline = out["90d_daily"]["forced_raw"]["p95_ms"]
    for name, case in customer_cases(tc, key, MERCHANT, requests, _iso).items():
        case["p95_vs_90d_daily_raw"] = round(case["p95_ms"] / baseline, 3) if baseline else None
        out[name] = case
    return out


def bench_settings(base: Settings, namespace: str) -> Settings:
    """``base`` for timing reports in ``namespace``: no rate limit, a long request timeout."""
    return base.model_copy(
        update={
            "namespace": namespace,
            "rate_limit_per_minute": 10**9,
            "log_json": False,
            "api_request_timeout_s": 300.0,  # forced-raw reports over months are the slow baseline
        }
    )


def to_load(present: int, events: int, namespace: str) -> bool:
    """Whether to load ``events`` into ``namespace`` (empty), or reuse what it holds (at least
    as many). A partial namespace is refused: topping it up would draw the same seeded events
    again (the same ids, overwritten, not added) and stamp them as arrived in hours the
    rollups have already closed, so the reports would not measure what a fresh load gives."""
    if present == 0:
        return True
    if present < events:
        raise SystemExit(
            f"namespace {namespace!r} holds {present} raw events, fewer than --events {events}: "
            f"delete its indices ({namespace}*) or pass another --namespace to load afresh"
        )
    return False


def run(
    events: int,
    requests: int,
    merchants: int,
    seed: int,
    namespace: str,
    funnel_runs: int = 7,
    only_funnels: bool = False,
) -> None:
    """Load (if needed), build rollups (if available), measure; print one JSON document.
    ``only_funnels``: no rollups and no report cases (funnels read raw events only)."""
    settings = bench_settings(get_settings(), namespace)
    client, engine = _engine(settings)
    try:
        names = names_for(settings)
        load_s = None
        if to_load(count_events(client, names), events, namespace):
            # Customers join and come back over weeks: the cohort case reads a shop's shape.
            spec = LoadSpec(merchants=merchants, seed=seed, returning=Returning())
            load_s = load(client, settings, names, events, spec)
        rollup_s = None if only_funnels else build_rollups(client, settings, names)
        total = count_events(client, names)
        merchant = merchant_events(client, names)
        result = {
            "raw_events": total,
            "merchant_events": merchant,
            "load_seconds": load_s and round(load_s, 1),
            "rollup_seconds": rollup_s and round(rollup_s, 1),
            "requests_per_case": requests,
            "reports": measure(settings, client, requests, funnel_runs, not only_funnels),
        }
        print(json.dumps(result, indent=2))
    finally:
        if engine is not None:
            engine.stop()
