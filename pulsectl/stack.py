"""``pulse up``: the embedded stack in one foreground process.

Starts the engines that have no configured address, bootstraps topics/templates/keys, runs
every component as a child process (so one crash does not take the others down, and each
gets its own interpreter and core), restarts a child that dies, writes ``stack.json`` for the
other commands, and on SIGINT/SIGTERM stops everything it started: the components first (all
at once, each SIGTERM then its grace), the engines last, while the components can still
flush to them. Components and engines run in process groups of their own, so a Ctrl-C in the
terminal reaches only ``pulse up`` (docs/decisions/0150).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console

from ingest.loadgen_rates import HISTORY_DAYS, load_demo_rates
from pulse.clients import Endpoints, ensure_topics, opensearch_client, stack_file
from pulse.engines import (
    EmbeddedEngines,
    die_with_parent,
    free_port,
    start_embedded,
)
from pulse.keystore import create_key, ensure_keys_index
from pulse.naming import names_for
from pulse.settings import Settings
from storage.templates import ensure_templates

log = logging.getLogger("pulsectl.stack")
console = Console(stderr=True)
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# Components' share of the 15 s in which `pulse up` exits; the engines take up to
# pulse.engines.ENGINE_GRACE_S after them, and a loaded machine needs some slack.
STOP_BUDGET_S = 9.0
DEMO_MERCHANT = "m00000"
DEMO_MULTI_CURRENCY = "m00007"  # ingest.loadgen.multi_currency(7): GBP at home, EUR, USD


@dataclass
class Child:
    """One supervised component process."""

    name: str
    args: list[str]
    env: dict[str, str]
    restart: bool = True
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    def start(self) -> None:
        cmd = [sys.executable, "-m", "pulsectl.cli", *self.args]
        self.process = subprocess.Popen(
            cmd, env=self.env, preexec_fn=die_with_parent, process_group=0
        )
        log.info("started component", extra={"component": self.name, "pid": self.process.pid})

    def poll(self) -> bool:
        """Restart a dead component with a growing backoff; True when it was restarted."""
        if self.process is None or self.process.poll() is None or not self.restart:
            return False
        now = time.monotonic()
        if self.next_start == 0.0:
            delay = RESTART_BACKOFF_S[min(self.restarts, len(RESTART_BACKOFF_S) - 1)]
            log.warning(
                "component exited; restarting",
                extra={"component": self.name, "code": self.process.returncode, "in_s": delay},
            )
            self.next_start = now + delay
        elif now >= self.next_start:
            self.restarts += 1
            self.next_start = 0.0
            self.start()
            return True
        return False


def stop_all(children: list[Child], grace_s: float) -> None:
    """SIGTERM every running child at once, wait up to ``grace_s`` in total, then SIGKILL
    whatever is left: one slow component does not add its grace to everybody else's."""
    running = [
        (c.name, c.process) for c in children if c.process is not None and c.process.poll() is None
    ]
    for _, process in running:
        process.terminate()
    deadline = time.monotonic() + grace_s
    for name, process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("component %s did not stop within %.0fs; killed", name, grace_s)
            process.kill()
            process.wait()


def stop_grace_s(settings: Settings, engines: EmbeddedEngines) -> float:
    """How long components get to stop. With embedded (in-memory) engines nothing a component
    flushes outlives the stack, so ``pulse up`` stays within STOP_BUDGET_S; with configured
    engines each component gets its full shutdown budget (offsets commit after durable writes,
    so a kill loses nothing either way, it only re-reads)."""
    if engines.opensearch is None and engines.kafka is None:
        return settings.shutdown_timeout_s + 5
    return STOP_BUDGET_S


@dataclass
class Stack:
    settings: Settings
    endpoints: Endpoints
    engines: EmbeddedEngines
    api_port: int
    collector_port: int
    indexer_metrics_port: int = 0
    rollups_metrics_ports: list[int] = field(default_factory=list)  # one per rollups worker
    children: list[Child] = field(default_factory=list)

    @property
    def graphql_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.api_port}/graphql"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.api_port}/dashboard"

    @property
    def collector_url(self) -> str:
        return f"http://{self.settings.collector_host}:{self.collector_port}/events"

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PULSE_OPENSEARCH_URL=self.endpoints.opensearch_url,
            PULSE_KAFKA_BOOTSTRAP=self.endpoints.kafka_bootstrap,
            PULSE_API_PORT=str(self.api_port),
            PULSE_COLLECTOR_PORT=str(self.collector_port),
            PULSE_INDEXER_METRICS_PORT=str(self.indexer_metrics_port),
            PULSE_STATE_DIR=self.settings.state_dir,
            PULSE_NAMESPACE=self.settings.namespace,
        )
        return env

    def rollup_workers(self) -> dict[str, int]:
        """The rollups workers' component names (``rollups-1`` ...) and their metrics ports."""
        return {f"rollups-{n}": port for n, port in enumerate(self.rollups_metrics_ports, 1)}

    def metrics_urls(self) -> dict[str, str]:
        """Each component's Prometheus endpoint (`pulse status` and a scraper read them)."""
        local = "127.0.0.1"
        return {
            "indexer": f"http://{local}:{self.indexer_metrics_port}/metrics",
            **{
                name: f"http://{local}:{port}/metrics"
                for name, port in self.rollup_workers().items()
            },
            "api": self.graphql_url.replace("/graphql", "/metrics"),
            "collector": self.collector_url.replace("/events", "/metrics"),
        }

    def stack_json(self) -> dict[str, Any]:
        return {
            "kafka_bootstrap": self.endpoints.kafka_bootstrap,
            "opensearch_url": self.endpoints.opensearch_url,
            "graphql_url": self.graphql_url,
            "dashboard_url": self.dashboard_url,
            "collector_url": self.collector_url,
            "pid": os.getpid(),
            "components": {c.name: c.process.pid for c in self.children if c.process},
            "metrics_urls": self.metrics_urls(),
            "embedded": {
                "opensearch": self.engines.opensearch is not None,
                "kafka": self.engines.kafka is not None,
            },
            "engine_pids": {
                e.name: e.pid for e in (self.engines.opensearch, self.engines.kafka) if e
            },
        }


def port_or_free(host: str, port: int) -> int:
    """The configured port when it is free, else any free one (the demo must not clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return free_port()
    return port


def components(stack: Stack, demo: bool) -> list[Child]:
    env = stack.child_env()
    # Several rollup workers sharing the shards, as in production (decisions 0220, 0240):
    # each with its own metrics port; all are stopped together with the rest (0150).
    workers = [
        Child(name, ["rollups"], {**env, "PULSE_ROLLUPS_METRICS_PORT": str(port)})
        for name, port in stack.rollup_workers().items()
    ]
    parts = [
        Child("indexer", ["indexer"], env),
        *workers,
        Child("api", ["api"], env),
        Child("collector", ["collector"], env),
        Child("ilm", ["ilm", "run", "--loop"], env),
    ]
    if demo:
        parts += demo_loaders(env, demo_write_key(stack.settings, stack.endpoints))
        client = opensearch_client(stack.endpoints.opensearch_url)
        load_demo_rates(client, names_for(stack.settings))  # reportingCurrency works at once
    return parts


def demo_loaders(env: dict[str, str], write_key: str) -> list[Child]:
    """Eight weeks of history straight to Kafka, then live traffic through the collector (with
    an admin write key: the demo sends for all its merchants). Customers join and come back
    over the weeks (``--returning``), so the cohorts look like a shop's."""
    history = ["loadgen", "--days", str(HISTORY_DAYS), "--events", "100000", "--merchants", "200"]
    history.append("--returning")
    live = ["loadgen", "--rate", "100", "--duration", "86400", "--merchants", "200"]
    live.append("--returning")
    shop = ["--sessions", "0.4"]  # 40% of events as shop sessions: the demo's funnel
    live_env = {**env, "PULSE_WRITE_KEY": write_key}
    return [
        Child(
            "loadgen-history", [*history, *shop, "--duplicates", "0.01", "--seed", "1"], env, False
        ),
        Child(
            "loadgen-live",
            [*live, *shop, "--to", "collector", "--late", "0.01", "--seed", "2"],
            live_env,
        ),
    ]


def demo_write_key(settings: Settings, endpoints: Endpoints) -> str:
    client = opensearch_client(endpoints.opensearch_url)
    key, _ = create_key(client, names_for(settings), None, True, "demo loadgen", write=True)
    return key


def bootstrap(settings: Settings, endpoints: Endpoints) -> None:
    names = names_for(settings)
    ensure_topics(settings, endpoints.kafka_bootstrap, names)
    client = opensearch_client(endpoints.opensearch_url)
    ensure_templates(client, settings, names)
    ensure_keys_index(client, names)


def wait_healthy(url: str, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def demo_keys(settings: Settings, endpoints: Endpoints) -> tuple[str, str]:
    client = opensearch_client(endpoints.opensearch_url)
    names = names_for(settings)
    admin, _ = create_key(client, names, None, True, "demo admin")
    merchant, _ = create_key(client, names, DEMO_MERCHANT, False, "demo merchant")
    return admin, merchant


def demo_multi_currency_key(settings: Settings, endpoints: Endpoints) -> str:
    client = opensearch_client(endpoints.opensearch_url)
    key, _ = create_key(client, names_for(settings), DEMO_MULTI_CURRENCY, False, "demo merchant")
    return key


def run_stack(settings: Settings, demo: bool) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    engines = start_embedded(settings.opensearch_url, settings.kafka_bootstrap)
    endpoints = Endpoints(
        opensearch_url=settings.opensearch_url or _address(engines, "opensearch"),
        kafka_bootstrap=settings.kafka_bootstrap or _address(engines, "kafka"),
    )
    stack = Stack(
        settings,
        endpoints,
        engines,
        api_port=port_or_free(settings.api_host, settings.api_port),
        collector_port=port_or_free(settings.collector_host, settings.collector_port),
        indexer_metrics_port=settings.indexer_metrics_port or free_port(),
        rollups_metrics_ports=rollups_metrics_ports(settings),
    )
    try:
        bootstrap(settings, endpoints)
        return supervise(stack, demo)
    finally:
        stop_all(stack.children, stop_grace_s(settings, engines))
        log.info("components stopped")
        stack_file(settings).unlink(missing_ok=True)
        engines.stop()
        log.info("engines stopped")


def rollups_metrics_ports(settings: Settings) -> list[int]:
    """One metrics port per rollups worker: the configured one (if any) for the first."""
    ports = [settings.rollups_metrics_port or free_port()]
    while len(ports) < settings.rollup_workers:
        port = free_port()  # released at once: two calls may return the same one
        if port not in ports:
            ports.append(port)
    return ports


def _address(engines: EmbeddedEngines, which: str) -> str:
    engine = engines.opensearch if which == "opensearch" else engines.kafka
    assert engine is not None
    return engine.address


def supervise(stack: Stack, demo: bool) -> int:
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack.children = components(stack, demo)
    for child in stack.children:
        child.start()
    # stack.json is the "ready" signal other commands and tests wait for: write it only once
    # the API answers, so whoever reads it can query at once.
    healthy = wait_healthy(stack.graphql_url.replace("/graphql", "/healthz"))
    write_stack_json(stack)
    announce(stack, demo, healthy)
    while not stopping:
        restarted = [child.poll() for child in stack.children]
        if any(restarted):
            write_stack_json(stack)  # keep the component pids in stack.json current
        time.sleep(0.5)
    console.print("[bold]stopping Pulse…[/bold]")
    return 0


def write_stack_json(stack: Stack) -> None:
    path = stack_file(stack.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stack.stack_json(), indent=2))
    tmp.replace(path)


def announce(stack: Stack, demo: bool, healthy: bool) -> None:
    console.print(f"[bold green]Pulse is up[/bold green] (api healthy: {healthy})")
    console.print(f"  Dashboard (paste a key): {stack.dashboard_url}")
    console.print(f"  GraphQL (GraphiQL in a browser): {stack.graphql_url}")
    console.print(f"  Collector (Fluent Bit in_http format, write keys): {stack.collector_url}")
    console.print(f"  OpenSearch: {stack.endpoints.opensearch_url}")
    console.print(f"  Kafka: {stack.endpoints.kafka_bootstrap}")
    console.print(f"  State: {Path(stack.settings.state_dir) / 'stack.json'}")
    if demo:
        admin, merchant = demo_keys(stack.settings, stack.endpoints)
        console.print(f"  Demo admin key: {admin}", soft_wrap=True)
        console.print(f"  Demo key for merchant {DEMO_MERCHANT}: {merchant}", soft_wrap=True)
        several = demo_multi_currency_key(stack.settings, stack.endpoints)
        console.print(
            f"  Demo key for merchant {DEMO_MULTI_CURRENCY} (sells in GBP, EUR and USD; ask with "
            f"reportingCurrency or group by CURRENCY): {several}",
            soft_wrap=True,
        )
    console.print("Press Ctrl-C to stop.")
