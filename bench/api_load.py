"""`pulse bench api-load`: the API under concurrent clients; reports per API CPU-second.

Loads N loadgen events for M merchants into an embedded osmem (bench.query's loader) and
builds the rollups, then starts W `pulse api` processes on loopback (as k8s runs W pods) and
C client processes. After a warm-up, every client asks reports for merchants drawn from a
Zipf distribution (the busiest merchants are asked most, as they are in production) for D
seconds over a kept-alive connection. The CPU time of the API processes and of the engine
process over the measured window comes from /proc (psutil), so client CPU is never counted
as API CPU (as in ``bench.api_cpu``, which measures one client at a time).

Printed (JSON): reports/s; p50/p95/p99 latency per report kind; API CPU-seconds and CPU-ms
per report; reports per API CPU-second (a core kept busy serves that many: issue 20's
target is >= 150 for the 30-day hourly report); the engine's CPU per report in the same run.

    python -m bench.api_load [--events 100000] [--workers 2] [--clients 8] [--seconds 30]
                             [--mix dashboard|30d_hourly|...]
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import httpx
import psutil

from bench import query as query_bench
from ingest.loadgen import DAY_MS, HOUR_MS, LoadSpec
from ingest.loadgen_rates import load_demo_rates
from pulse.clients import opensearch_client
from pulse.engines import start_opensearch, stop_process
from pulse.keystore import create_key
from pulse.naming import names_for
from pulse.settings import get_settings

METRICS = "[EVENTS, PAYMENTS, GROSS_SALES, NET_SALES, PAYMENT_SUCCESS_RATE]"
# Money in one reporting currency, as a dashboard with a currency chosen asks: loadgen merchants
# take several currencies, and money over mixed currencies without one is BAD_USER_INPUT.
QUERY = (
    "query($m: ID!, $s: DateTime!, $e: DateTime!, $g: Granularity!, $by: [Dimension!]!,"
    " $cur: String) {"
    " metrics(merchantId: $m, range: {start: $s, end: $e}, granularity: $g, groupBy: $by,"
    f" limit: 5, metrics: {METRICS}, reportingCurrency: $cur) {{ series {{ group {{ value }}"
    " points { start complete values { value } } } totals { value } meta { sources } } }"
)


@dataclass(frozen=True)
class Kind:
    """One report of the mix: its range back from the current hour and its granularity."""

    days: float
    granularity: str
    group_by: tuple[str, ...] = ()


KINDS = {
    "30d_hourly": Kind(30, "HOUR"),
    "90d_daily": Kind(90, "DAY"),
    "7d_hourly_by_method": Kind(7, "HOUR", ("PAYMENT_METHOD",)),
    "3h_minute": Kind(0.125, "MINUTE"),  # the dashboard's live panel
}
# What a merchant dashboard asks: mostly the 30-day chart, then breakdowns and the live panel.
DASHBOARD = {"30d_hourly": 0.5, "90d_daily": 0.2, "7d_hourly_by_method": 0.2, "3h_minute": 0.1}


@dataclass(frozen=True)
class LoadConfig:
    events: int = 100_000
    merchants: int = 200
    workers: int = 2
    clients: int = 8
    seconds: float = 30.0
    warmup_s: float = 5.0
    mix: str = "dashboard"
    zipf_s: float = 1.1
    seed: int = 7
    reporting_currency: str = "USD"  # "" asks without one (mixed-currency money then fails)

    def weights(self) -> dict[str, float]:
        if self.mix == "dashboard":
            return DASHBOARD
        if self.mix not in KINDS:
            raise ValueError(f"unknown mix {self.mix!r}: dashboard or one of {sorted(KINDS)}")
        return {self.mix: 1.0}


@dataclass
class ClientResult:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # "kind: HTTP status or error code"


def _iso(ms: int) -> str:
    return str(query_bench._iso(ms))


def _variables(kind: Kind, merchant: str, end: int, currency: str) -> dict[str, Any]:
    start = end - int(kind.days * DAY_MS)
    if kind.granularity == "DAY":
        start = start // DAY_MS * DAY_MS
    return {
        "m": merchant,
        "s": _iso(start),
        "e": _iso(end),
        "g": kind.granularity,
        "by": list(kind.group_by),
        "cur": currency or None,
    }


def _zipf_picker(merchants: int, s: float, rng: random.Random) -> Callable[[], str]:
    names = [f"m{i:05d}" for i in range(merchants)]  # loadgen's ids: m00000 is rank 1
    weights = [1 / (rank**s) for rank in range(1, merchants + 1)]
    return lambda: rng.choices(names, weights)[0]


def _client(
    urls: list[str], key: str, config: LoadConfig, index: int, end: int,
    ready: Barrier, stop: Event, out: mp.Queue[dict[str, Any]],
) -> None:  # fmt: skip
    rng = random.Random(config.seed * 1000 + index)
    pick_merchant = _zipf_picker(config.merchants, config.zipf_s, rng)
    weights = config.weights()
    kinds, shares = list(weights), list(weights.values())
    result = ClientResult()
    headers = {"Authorization": f"Bearer {key}"}
    url = urls[index % len(urls)]  # one kept-alive connection to one replica, as a pod gets
    with httpx.Client(timeout=120.0, headers=headers) as http:

        def ask() -> tuple[str, float, str | None]:
            name = rng.choices(kinds, shares)[0]
            variables = _variables(KINDS[name], pick_merchant(), end, config.reporting_currency)
            body = {"query": QUERY, "variables": variables}
            started = time.perf_counter()
            response = http.post(url, json=body)
            return name, (time.perf_counter() - started) * 1000, _error_of(response)

        warm_until = time.monotonic() + config.warmup_s
        while time.monotonic() < warm_until:
            ask()
        ready.wait()
        while not stop.is_set():
            name, ms, error = ask()
            if stop.is_set():
                break  # finished after the window closed: not measured
            result.latencies_ms.setdefault(name, []).append(ms)
            if error is not None:
                what = f"{name}: {error}"
                result.errors[what] = result.errors.get(what, 0) + 1
    out.put(asdict(result))


def _error_of(response: httpx.Response) -> str | None:
    """None for an answer without errors, else its HTTP status or first GraphQL error code."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    errors = response.json().get("errors")
    if not errors:
        return None
    return str(errors[0].get("extensions", {}).get("code", errors[0].get("message", "?"))[:80])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_env(engine_url: str, namespace: str, port: int, timeout_s: int) -> dict[str, str]:
    """The environment of a benchmarked `pulse api` on a loopback port: no rate limit (the
    bench measures cost, not the limiter), warnings only."""
    return {
        **os.environ,
        "PULSE_OPENSEARCH_URL": engine_url,
        "PULSE_NAMESPACE": namespace,
        "PULSE_API_HOST": "127.0.0.1",
        "PULSE_API_PORT": str(port),
        "PULSE_RATE_LIMIT_PER_MINUTE": str(10**9),
        "PULSE_API_REQUEST_TIMEOUT_S": str(timeout_s),
        "PULSE_LOG_LEVEL": "WARNING",
    }


def _start_api(engine_url: str, namespace: str, port: int) -> subprocess.Popen[bytes]:
    env = api_env(engine_url, namespace, port, timeout_s=120)
    cmd = [sys.executable, "-m", "pulsectl.cli", "api"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, process_group=0)


def _wait_ready(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API on port {port} did not answer /healthz in {timeout_s}s")


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _settle(pid: int, busy_cores: float = 0.2, limit_s: float = 120.0) -> float:
    """Wait until the engine's own work after loading (merges, refreshes) has quietened: less
    than ``busy_cores`` of CPU over a second, or ``limit_s``. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = _cpu_s([pid])
        time.sleep(1.0)
        if _cpu_s([pid]) - before < busy_cores:
            break
    return round(time.monotonic() - started, 1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _summary(results: list[dict[str, Any]], window_s: float, api_cpu: float, engine_cpu: float,
             config: LoadConfig) -> dict[str, Any]:  # fmt: skip
    by_kind: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for r in results:
        for what, n in r["errors"].items():
            errors[what] = errors.get(what, 0) + n
        for name, values in r["latencies_ms"].items():
            by_kind.setdefault(name, []).extend(values)
    done = sum(len(v) for v in by_kind.values())
    if done == 0:
        raise RuntimeError("no report finished inside the measured window")
    return {
        "config": asdict(config),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "window_s": round(window_s, 1),
        "reports": done,
        "errors": errors,
        "reports_per_s": round(done / window_s, 1),
        "api_cpu_s": round(api_cpu, 2),
        "api_cpu_ms_per_report": round(api_cpu / done * 1000, 2),
        "reports_per_api_cpu_s": round(done / api_cpu, 1),
        "engine_cpu_ms_per_report": round(engine_cpu / done * 1000, 2),
        "latency_ms": {
            name: {
                "n": len(v),
                "p50": round(statistics.median(v), 1),
                "p95": _percentile(v, 0.95),
                "p99": _percentile(v, 0.99),
            }
            for name, v in sorted(by_kind.items())
        },
    }


def _measure(urls: list[str], key: str, config: LoadConfig, end: int, api_pids: list[int],
             engine_pid: int) -> dict[str, Any]:  # fmt: skip
    ctx = mp.get_context("spawn")  # clients share nothing with this process's threads
    ready, stop, out = ctx.Barrier(config.clients + 1), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(urls, key, config, i, end, ready, stop, out))
        for i in range(config.clients)
    ]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout=config.warmup_s + 300)
        api0, engine0, t0 = _cpu_s(api_pids), _cpu_s([engine_pid]), time.monotonic()
        time.sleep(config.seconds)
        stop.set()
        api1, engine1, t1 = _cpu_s(api_pids), _cpu_s([engine_pid]), time.monotonic()
        results = [out.get(timeout=300) for _ in procs]
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    return _summary(results, t1 - t0, api1 - api0, engine1 - engine0, config)


def run(config: LoadConfig) -> dict[str, Any]:
    engine = start_opensearch()
    apis: list[subprocess.Popen[bytes]] = []
    try:
        settings = get_settings().model_copy(update={"namespace": "apiload", "log_json": False})
        client = opensearch_client(engine.address, timeout_s=600)
        names = names_for(settings)
        spec = LoadSpec(merchants=config.merchants, seed=config.seed)
        query_bench.load(client, settings, names, config.events, spec)
        query_bench.build_rollups(client, settings, names)
        load_demo_rates(client, names, history_days=query_bench.HISTORY_DAYS)
        key, _ = create_key(client, names, None, admin=True, label="api-load")
        ports = [_free_port() for _ in range(config.workers)]
        apis = [_start_api(engine.address, settings.namespace, port) for port in ports]
        for port in ports:
            _wait_ready(port)
        urls = [f"http://127.0.0.1:{port}/graphql" for port in ports]
        end = int(time.time() * 1000) // HOUR_MS * HOUR_MS + HOUR_MS
        settled_s = _settle(engine.pid)
        out = _measure(urls, key, config, end, [p.pid for p in apis], engine.pid)
        return {**out, "engine_settle_s": settled_s}
    finally:
        for proc in apis:
            stop_process(proc, 10.0)
        engine.stop()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in asdict(LoadConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    print(json.dumps(run(LoadConfig(**vars(args))), indent=2))


if __name__ == "__main__":
    main()
