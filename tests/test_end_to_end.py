"""One event stream's whole path: Kafka -> indexer -> OpenSearch -> rollups -> GraphQL, driven
through `pulse up` exactly as a user runs it (against the session engines, in a namespace)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.contract import Event, parse_message, to_kafka_message
from ingest.loadgen import HOUR_MS, Generator, LoadSpec
from ingest.sinks import kafka_producer, send_to_kafka
from pulse.engines import free_port, pid_alive, wait_until
from pulse.settings import Settings

QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $g: Granularity!) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, granularity: $g,
          metrics: [EVENTS, PAYMENTS, GROSS_SALES]) {
    series { points { start values { metric value } } }
    totals { metric value }
  }
}
"""


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = dict(os.environ)
    env.update(
        PULSE_OPENSEARCH_URL=settings.opensearch_url or "",
        PULSE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap or "",
        PULSE_NAMESPACE=settings.namespace,
        PULSE_STATE_DIR=str(tmp_path),
        PULSE_API_PORT=str(free_port()),
        PULSE_COLLECTOR_PORT=str(free_port()),
        PULSE_RAW_PARTITIONS="4",
        PULSE_KAFKA_SESSION_TIMEOUT_MS="3000",
        PULSE_KAFKA_HEARTBEAT_INTERVAL_MS="500",
        PULSE_ROLLUP_INTERVAL_S="2",
    )
    proc = subprocess.Popen([sys.executable, "-m", "pulsectl.cli", "up"], env=env)
    stack_json = tmp_path / "stack.json"
    try:
        assert wait_until(stack_json.exists, 180), "pulse up wrote no stack.json"
        info: dict[str, Any] = json.loads(stack_json.read_text())
        info["env"] = env
        yield info
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0
    assert not stack_json.exists()


def oracle(events: list[dict[str, Any]], merchant: str) -> dict[int, list[float]]:
    """Per UTC hour: [events, payments, gross] computed from what was sent (deduped)."""
    seen: set[str] = set()
    out: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for raw in events:
        event = parse_message(to_kafka_message(raw))
        assert isinstance(event, Event)
        if event.merchant_id != merchant or event.event_id in seen:
            continue
        seen.add(event.event_id)
        row = out[event.occurred_at_ms - event.occurred_at_ms % HOUR_MS]
        row[0] += 1
        if event.event_type == "payment" and event.status == "succeeded":
            row[1] += 1
            row[2] += (event.amount_milli or 0) / 1000
    return {hour: [r[0], r[1], round(r[2], 3)] for hour, r in out.items()}


def ask(url: str, key: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        url,
        json={"query": QUERY, "variables": variables},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]["metrics"]


def key_for(env: dict[str, str], merchant: str, *flags: str) -> str:
    return pulse(env, "keys", "create", "--merchant", merchant, *flags).splitlines()[-1]


def pulse(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pulsectl.cli", *args],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip()


def test_events_travel_from_kafka_to_graphql(stack: dict[str, Any], settings: Settings) -> None:
    now = int(time.time() * 1000)
    start = now - now % HOUR_MS - 5 * HOUR_MS
    gen = Generator(LoadSpec(merchants=5, seed=11, duplicate_rate=0.05))
    events = list(gen.stream(gen.events(3000, start, now)))
    producer = kafka_producer(stack["kafka_bootstrap"])
    send_to_kafka(producer, f"{settings.namespace}.events.raw", events)
    producer.close()

    merchant = "m00000"
    expected = oracle(events, merchant)
    key = key_for(stack["env"], merchant)
    variables = {
        "m": merchant,
        "s": _iso(start),
        "e": _iso(start + 6 * HOUR_MS),
        "g": "HOUR",
    }

    def matches() -> bool:
        report = ask(stack["graphql_url"], key, variables)
        return _hourly(report) == expected

    assert wait_until(matches, 90, 1.0), (ask(stack["graphql_url"], key, variables), expected)
    report = ask(stack["graphql_url"], key, variables)
    assert len(report["series"][0]["points"]) == 6  # every hour of the range, empty ones too
    totals = {t["metric"]: t["value"] for t in report["totals"]}
    assert totals["EVENTS"] == sum(v[0] for v in expected.values())
    assert totals["GROSS_SALES"] == pytest.approx(sum(v[2] for v in expected.values()), abs=1e-6)


def test_other_merchants_are_forbidden(stack: dict[str, Any]) -> None:
    key = key_for(stack["env"], "m00001")
    now = int(time.time() * 1000)
    response = httpx.post(
        stack["graphql_url"],
        json={
            "query": QUERY,
            "variables": {"m": "m00000", "s": _iso(now - HOUR_MS), "e": _iso(now), "g": "HOUR"},
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200
    errors = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


def _hourly(report: dict[str, Any]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for point in report["series"][0]["points"]:
        values = {v["metric"]: v["value"] for v in point["values"]}
        row = [values["EVENTS"], values["PAYMENTS"], round(values["GROSS_SALES"], 3)]
        if row[0]:
            out[_ms(point["start"])] = row
    return out


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _ms(value: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def test_a_dead_component_is_restarted_and_recorded(stack: dict[str, Any], tmp_path: Path) -> None:
    old = stack["components"]["collector"]
    os.kill(old, signal.SIGKILL)

    def restarted() -> bool:
        pids = json.loads((tmp_path / "stack.json").read_text())["components"]
        return bool(pids["collector"] != old and pid_alive(pids["collector"]))

    assert wait_until(restarted, 60, 0.5)
    # The restarted `pulse collector` serves, with a write key made by `pulse keys create`.
    key = key_for(stack["env"], "m00000", "--write")
    assert "\twrite merchant m00000\tactive" in pulse(stack["env"], "keys", "list")
    event = {"event_id": "e2e-w", "merchant_id": "m00000", "event_type": "page_view",
             "occurred_at": _iso(int(time.time() * 1000))}  # fmt: skip

    def accepted() -> bool:
        try:
            response = httpx.post(
                stack["collector_url"], json=[event], headers={"Authorization": f"Bearer {key}"}
            )
        except httpx.TransportError:
            return False  # still starting
        assert response.status_code in (201, 503), response.text
        return response.status_code == 201

    assert wait_until(accepted, 60, 0.5)


def test_pulse_up_serves_the_dashboard_and_graphiql_from_its_own_origin(
    stack: dict[str, Any],
) -> None:
    """The pages and every pinned build they load come from the API itself (issue 18)."""
    from api.pages import VENDOR_FILES

    origin = stack["dashboard_url"].removesuffix("/dashboard")
    assert stack["graphql_url"] == f"{origin}/graphql"
    page = httpx.get(stack["dashboard_url"], timeout=30)
    ide = httpx.get(stack["graphql_url"], headers={"Accept": "text/html"}, timeout=30)
    for response in (page, ide):
        assert response.status_code == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "://" not in response.text  # nothing named on another origin
    assert 'src="static/vendor/graphiql.min.js"' in ide.text
    for name in VENDOR_FILES:
        asset = httpx.get(f"{origin}/static/vendor/{name}", timeout=30)
        assert asset.status_code == 200 and len(asset.content) > 1000, name
