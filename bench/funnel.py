"""The funnel cases of `pulse bench query`: 31- and 90-day funnels for the biggest merchant.

Each case is timed through the ASGI app in-process (auth, GraphQL, plan, engine reads,
count), median and max of ``runs`` requests after one warm-up, with the number of events the
funnel reads (its engine query counted once, the same body api.funnel_read pages through) so
the cost per million events read can be compared across sizes (docs/decisions/0215).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from api.funnel import FunnelKey, FunnelPlan, Step
from api.funnel_read import query
from ingest.loadgen import DAY_MS, HOUR_MS
from pulse.naming import Names

STEPS = (Step("page_view"), Step("checkout_start"), Step("payment", "succeeded"))
QUERY = (
    "query($m: ID!, $s: DateTime!, $e: DateTime!, $by: FunnelKey) {"
    " funnel(merchantId: $m, range: {start: $s, end: $e}, by: $by, steps: ["
    ' {eventType: "page_view"}, {eventType: "checkout_start"},'
    ' {eventType: "payment", status: "succeeded"}])'
    " { steps { count conversion } meta { tookMs } } }"
)
CASES = {  # name: (days, key)
    "31d_session": (31, FunnelKey.SESSION),
    "31d_customer": (31, FunnelKey.CUSTOMER),
    "90d_session": (90, FunnelKey.SESSION),
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def events_read(client: OpenSearch, names: Names, plan: FunnelPlan) -> int:
    """How many events the funnel reads (the count of its engine query)."""
    body = {"query": query(plan)}
    return int(client.count(index=names.events_alias, body=body)["count"])


def _once(tc: TestClient, key: str, variables: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    r = tc.post(
        "/graphql",
        json={"query": QUERY, "variables": variables},
        headers={"Authorization": f"Bearer {key}"},
    )
    took = (time.perf_counter() - started) * 1000
    body = r.json()
    if r.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"bench funnel failed: {r.text[:500]}")
    return took, body["data"]["funnel"]


def measure(
    tc: TestClient, key: str, client: OpenSearch, names: Names, merchant: str, runs: int
) -> dict[str, Any]:
    """Every case: median / max latency over ``runs``, events read, ms per 1M events read."""
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS + HOUR_MS
    out: dict[str, Any] = {}
    for name, (days, by) in CASES.items():
        start = end - days * DAY_MS
        variables = {"m": merchant, "s": _iso(start), "e": _iso(end), "by": by.value}
        _once(tc, key, variables)  # warm-up
        latencies: list[float] = []
        answer: dict[str, Any] = {}
        for _ in range(runs):
            took, answer = _once(tc, key, variables)
            latencies.append(took)
        read = events_read(client, names, FunnelPlan(merchant, start, end, STEPS, by))
        median = statistics.median(latencies)
        out[name] = {
            "median_ms": round(median, 1),
            "max_ms": round(max(latencies), 1),
            "runs": runs,
            "events_read": read,
            "ms_per_million_events_read": round(median / read * 1e6) if read else None,
            "counts": [s["count"] for s in answer["steps"]],
        }
    return out
