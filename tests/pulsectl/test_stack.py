"""`pulse up` as an operator meets it: scraped by a real Prometheus, stopped by Ctrl-C.

One embedded stack for the module (starting one costs ~25 s): first a real `prometheus`
server (Debian's package, started here on loopback with its own temp dir, killed by pid)
scrapes every component while traffic flows and evaluates the alert rules of
k8s/monitoring/; then the terminal's Ctrl-C stops the stack: components first, engines last,
no traceback, within 15 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.keys import create_key
from ingest import loadgen
from ingest.sinks import kafka_producer, send_to_kafka
from pulse.clients import opensearch_client
from pulse.engines import free_port, pid_alive, wait_until
from pulse.naming import names_for
from pulse.settings import Settings

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "k8s" / "monitoring" / "prometheusrule.yaml"
STOP_LIMIT_S = 15.0
PARTITIONS = 2
EVENTS, INVALID = 300, 7


@dataclass
class UpStack:
    process: subprocess.Popen[bytes]
    state: Path
    log: Path

    @property
    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state / "stack.json").read_text())
        return data

    def output(self) -> str:
        return self.log.read_bytes().decode(errors="replace")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    root = tmp_path_factory.mktemp("up")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update(
        PULSE_API_PORT=str(free_port()),
        PULSE_COLLECTOR_PORT=str(free_port()),
        PULSE_RAW_PARTITIONS=str(PARTITIONS),
        PULSE_ROLLUP_INTERVAL_S="1",
        PULSE_ROLLUP_VISIBILITY_MARGIN_S="1",
        PULSE_LOG_JSON="false",
    )
    log = root / "up.log"
    with log.open("wb") as out:
        # A session of its own: the test signals the whole group, as a terminal does.
        process = subprocess.Popen(
            [sys.executable, "-m", "pulsectl.cli", "up", "--state-dir", str(root / "state")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    up = UpStack(process, root / "state", log)
    try:
        ready = wait_until((up.state / "stack.json").exists, 120)
        assert ready, f"pulse up never became ready\n{up.output()}"
        yield up
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- a real Prometheus --------------------------------------------------------------------


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:  # make tools installs Debian's package: missing is a failure, not a skip
        pytest.fail("prometheus is not on PATH (make tools installs Debian's prometheus package)")
    return path


def scrape_config(info: dict[str, Any], rules: Path) -> dict[str, Any]:
    jobs = []
    for component, url in sorted(info["metrics_urls"].items()):
        address = httpx.URL(url)
        jobs.append(
            {
                "job_name": f"pulse-{component}",
                "metrics_path": address.path,
                "static_configs": [{"targets": [f"{address.host}:{address.port}"]}],
            }
        )
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": jobs,
    }


@pytest.fixture
def prometheus(stack: UpStack, tmp_path: Path) -> Iterator[str]:
    rules = tmp_path / "rules.yaml"
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    rules.write_text(yaml.safe_dump({"groups": groups}))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(stack.info, rules)))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as out:
        process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_until(lambda: _answers(f"{url}/-/ready"), 30, 0.2)
        assert ready, (tmp_path / "prometheus.log").read_text()
        yield url
    finally:
        process.kill()
        process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def scalar(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if result else None


# --- traffic ------------------------------------------------------------------------------


def send_events(info: dict[str, Any]) -> None:
    settings = Settings(kafka_bootstrap=info["kafka_bootstrap"])
    topic = names_for(settings).topic_raw
    gen = loadgen.Generator(loadgen.LoadSpec(merchants=5, seed=11))
    now = loadgen.now_ms()
    producer = kafka_producer(info["kafka_bootstrap"])
    try:
        send_to_kafka(producer, topic, gen.events(EVENTS, now - 3_600_000, now))
        for n in range(INVALID):
            producer.send(topic, value=b"not json %d" % n)
        producer.flush()
    finally:
        producer.close()


def ask_api(info: dict[str, Any]) -> None:
    settings = Settings(opensearch_url=info["opensearch_url"])
    client = opensearch_client(info["opensearch_url"])
    key, _ = create_key(client, names_for(settings), "m00000", False, "scrape test")
    day = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    body = {
        "query": 'query($s: DateTime!, $e: DateTime!) { metrics(merchantId: "m00000", '
        "range: {start: $s, end: $e}, metrics: [EVENTS]) { totals { metric value } } }",
        "variables": {"s": day.isoformat(), "e": (day + timedelta(days=1)).isoformat()},
    }
    graphql = info["graphql_url"]
    ok = httpx.post(graphql, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert "errors" not in ok.json(), ok.text
    refused = httpx.post(graphql, json=body, timeout=30)
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# --- the tests ----------------------------------------------------------------------------


def test_prometheus_scrapes_every_component_after_traffic(stack: UpStack, prometheus: str) -> None:
    info = stack.info
    send_events(info)
    ask_api(info)
    anonymous = httpx.post(info["collector_url"], json=[{"event_id": "x"}], timeout=30)
    assert anonymous.status_code == 401  # the front door wants a write key
    jobs = {f"pulse-{c}" for c in info["metrics_urls"]}
    assert jobs == {"pulse-indexer", "pulse-rollups", "pulse-api", "pulse-collector"}

    def all_up() -> bool:
        up = {r["metric"]["job"]: r["value"][1] for r in query(prometheus, "up")}
        return up == dict.fromkeys(jobs, "1")

    assert wait_until(all_up, 30, 0.5), query(prometheus, "up")
    indexed = "sum(pulse_indexer_indexed_total)"
    assert wait_until(lambda: scalar(prometheus, indexed) == EVENTS, 60, 0.5), stack.output()
    assert scalar(prometheus, "sum(pulse_indexer_consumed_total)") == EVENTS + INVALID
    assert scalar(prometheus, 'sum(pulse_indexer_dlq_total{reason="invalid_json"})') == INVALID
    assert scalar(prometheus, "sum(pulse_indexer_freshness_seconds_count)") == EVENTS
    p99 = scalar(
        prometheus, "histogram_quantile(0.99, sum by (le) (pulse_indexer_freshness_seconds_bucket))"
    )
    assert p99 is not None and 0 < p99 <= 60  # produced to indexed, within a minute here
    drained = "count(pulse_indexer_lag) == 2 and sum(pulse_indexer_lag) == 0"
    assert wait_until(lambda: bool(query(prometheus, drained)), 30, 0.5), query(
        prometheus, "pulse_indexer_lag"
    )

    runs = scalar(prometheus, 'sum(pulse_rollups_runs_total{outcome="ok"})') or 0
    assert (
        runs >= 1 and (scalar(prometheus, "pulse_rollups_run_duration_seconds_count") or 0) >= runs
    )
    age = scalar(prometheus, "pulse_rollups_watermark_age_seconds")
    assert age is not None and 0 <= age < 120  # 1 s interval, 1 s visibility margin
    assert scalar(prometheus, "pulse_rollups_holds") == 0
    ok = 'pulse_api_graphql_operations_total{operation="metrics",code="OK"}'
    assert wait_until(lambda: scalar(prometheus, ok) == 1, 10, 0.5), query(prometheus, ok)
    refused = 'pulse_api_graphql_operations_total{operation="metrics",code="UNAUTHENTICATED"}'
    assert scalar(prometheus, refused) == 1
    latency = 'pulse_api_graphql_operation_seconds_count{operation="metrics"}'
    assert {r["metric"]["code"] for r in query(prometheus, latency)} == {"OK", "UNAUTHENTICATED"}
    door = 'pulse_collector_records_total{outcome="refused",reason="unauthenticated"}'
    assert wait_until(lambda: scalar(prometheus, door) == 1, 10, 0.5), query(prometheus, door)
    merchant_labels = query(prometheus, '{__name__=~"pulse_.*", merchant_id!=""}')
    assert merchant_labels == []

    def rules() -> list[dict[str, Any]]:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return [r for g in groups for r in g["rules"]]

    evaluated = rules()
    written = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["spec"]["groups"])
    assert len(evaluated) == written and {r["health"] for r in evaluated} == {"ok"}, evaluated

    # A rule evaluated before a target's first good scrape (absent(up), or one scrape over the
    # 1 s timeout) is pending until its next evaluation: every alert must be quiet within a few
    # evaluations of the healthy stack, none may stay pending or fire.
    def quiet() -> bool:
        return all(r["state"] == "inactive" for r in rules())

    assert wait_until(quiet, 15, 1.0), [r["name"] for r in rules() if r["state"] != "inactive"]


def test_ctrl_c_stops_components_then_engines_without_traceback(stack: UpStack) -> None:
    info = stack.info
    children = list(info["components"].values())
    engines = list(info["engine_pids"].values())
    assert len(children) == 5 and len(engines) == 2
    started = time.monotonic()
    os.killpg(stack.process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    code = stack.process.wait(STOP_LIMIT_S + 10)
    took = time.monotonic() - started
    output = stack.output()
    assert code == 0, output
    assert took < STOP_LIMIT_S, f"pulse up took {took:.1f}s to stop\n{output}"
    assert "Traceback" not in output, output
    assert "status:404" not in output, output  # expected misses are not warnings
    assert output.index("components stopped") < output.index("engines stopped")
    assert not [pid for pid in children + engines if pid_alive(pid)]
    assert not (stack.state / "stack.json").exists()
