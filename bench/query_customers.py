"""The customer cases of `pulse bench query`: a weekly cohort matrix and a daily
NEW/RETURNING_CUSTOMERS report for the biggest merchant (api.customers, decision 0211).

Both read the merchant's succeeded payments in their window from raw plus the first-purchase
state, so their baseline in the same run is the 90-day daily report forced to raw (a raw read
of the same merchant over a similar span).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from ingest.loadgen import DAY_MS, WEEK_MS

COHORTS = (
    "query($m: ID!, $s: DateTime!, $e: DateTime!) { cohorts(merchantId: $m, range: {start: $s,"
    " end: $e}, granularity: WEEK, periods: 8) { cohorts { start customers retained }"
    " meta { tookMs } } }"
)
NEW_RETURNING = (
    "query($m: ID!, $s: DateTime!, $e: DateTime!) { metrics(merchantId: $m, range: {start: $s,"
    " end: $e}, granularity: DAY, metrics: [NEW_CUSTOMERS, RETURNING_CUSTOMERS]) {"
    " series { points { start values { value } } } totals { value } meta { tookMs } } }"
)


def timed(
    tc: TestClient,
    key: str,
    query: str,
    variables: dict[str, Any],
    n: int,
    field: str,
    each: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """``n`` requests of ``query``: client-side and ``meta.tookMs`` p50/p95 and the last
    answer's ``field``; ``each`` sees every answer. Any error stops the bench."""
    latencies: list[float] = []
    took: list[float] = []  # meta.tookMs: planning + engine + merge, without GraphQL/HTTP
    answer: dict[str, Any] = {}
    for _ in range(n):
        started = time.perf_counter()
        r = tc.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {key}"},
        )
        latencies.append((time.perf_counter() - started) * 1000)
        body = r.json()
        if r.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"bench query failed: {r.text[:500]}")
        answer = body["data"][field]
        took.append(float(answer["meta"]["tookMs"]))
        if each is not None:
            each(answer)
    q, t = statistics.quantiles(latencies, n=100), statistics.quantiles(took, n=100)
    return {
        "p50_ms": round(q[49], 1),
        "p95_ms": round(q[94], 1),
        "report_p50_ms": round(t[49], 1),
        "report_p95_ms": round(t[94], 1),
        "answer": answer,
    }


def customer_cases(
    tc: TestClient, key: str, merchant: str, requests: int, iso: Callable[[int], str]
) -> dict[str, Any]:
    """Time both cases (after 5 warm-up requests each); the cohort answer's first rows are
    kept so the figures can be checked for a shop-like shape."""
    now = int(time.time() * 1000)
    week_start = (now // WEEK_MS) * WEEK_MS  # epoch weeks: the cohort range is whole weeks
    cases = {
        "cohorts_12w_weekly_8p": (COHORTS, "cohorts", week_start - 12 * WEEK_MS, week_start),
        "new_returning_30d_daily": (NEW_RETURNING, "metrics", now - 30 * DAY_MS, now),
    }
    out: dict[str, Any] = {}
    for name, (query, field, start, end) in cases.items():
        variables = {"m": merchant, "s": iso(start), "e": iso(end)}
        timed(tc, key, query, variables, 5, field)
        figures = timed(tc, key, query, variables, requests, field)
        answer = figures.pop("answer")
        if field == "cohorts":
            figures["first_cohorts"] = answer["cohorts"][:3]
        else:
            figures["totals"] = [v["value"] for v in answer["totals"]]
        out[name] = figures
    return out
