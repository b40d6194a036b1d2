"""API-side CPU per report, for the capacity model (`api_ms_per_query`, bench/capacity.py).

Starts an embedded osmem, loads N loadgen events (bench.query's loader), builds rollups, then
asks bench.query's 30-day hourly and 90-day daily reports through the app (startup included,
as a server runs it) and prints the API process's CPU time per request (all threads: HTTP,
GraphQL, planning, parsing engine answers; the engine runs in its own process).

    python -m bench.api_cpu [--events 30000] [--batches 5] [--per-batch 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from bench import query as query_bench
from ingest.loadgen import DAY_MS, HOUR_MS, LoadSpec
from pulse.clients import opensearch_client
from pulse.engines import start_opensearch
from pulse.keystore import create_key
from pulse.naming import names_for
from pulse.settings import get_settings


def _reports(end: int) -> dict[str, tuple[int, str]]:
    return {
        "30d_hourly": (end - 30 * DAY_MS, "HOUR"),
        "90d_daily": (end // DAY_MS * DAY_MS - 89 * DAY_MS, "DAY"),
    }


def _cpu_ms(
    tc: TestClient, key: str, variables: dict[str, Any], batches: int, n: int
) -> list[float]:
    def ask() -> None:
        r = tc.post(
            "/graphql",
            json={"query": query_bench.QUERY, "variables": variables},
            headers={"Authorization": f"Bearer {key}"},
        )
        if r.status_code != 200 or r.json().get("errors"):
            raise RuntimeError(f"bench query failed: {r.text[:300]}")

    for _ in range(5):
        ask()  # warm caches
    out = []
    for _ in range(batches):
        started = time.process_time()
        for _ in range(n):
            ask()
        out.append(round((time.process_time() - started) / n * 1000, 1))
    return out


def run(events: int, batches: int, per_batch: int) -> dict[str, Any]:
    engine = start_opensearch()
    try:
        settings = get_settings().model_copy(
            update={
                "namespace": "apicpu",
                "rate_limit_per_minute": 10**9,
                "api_request_timeout_s": 300.0,
                "log_json": False,
            }
        )
        client = opensearch_client(engine.address, timeout_s=600)
        names = names_for(settings)
        query_bench.load(client, settings, names, events, LoadSpec(merchants=200, seed=7))
        query_bench.build_rollups(client, settings, names)
        key, _ = create_key(client, names, None, admin=True, label="bench")
        end = int(time.time() * 1000) // HOUR_MS * HOUR_MS + HOUR_MS
        out: dict[str, Any] = {"events": events}
        with TestClient(create_app(settings, client)) as tc:
            for name, (start, gran) in _reports(end).items():
                for force in ("AUTO", "RAW"):
                    variables = {
                        "m": query_bench.MERCHANT,
                        "s": query_bench._iso(start),
                        "e": query_bench._iso(end),
                        "g": gran,
                        "f": force,
                    }
                    runs = _cpu_ms(tc, key, variables, batches, per_batch)
                    out[f"{name}_{force.lower()}"] = {
                        "cpu_ms_per_request_runs": runs,
                        "median": statistics.median(runs),
                    }
        return out
    finally:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--per-batch", type=int, default=40)
    args = parser.parse_args()
    print(json.dumps(run(args.events, args.batches, args.per_batch), indent=2))


if __name__ == "__main__":
    main()
