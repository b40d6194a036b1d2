"""API-side CPU per report, for the capacity model (`api_ms_per_query`, bench/capacity.py).

Starts an embedded osmem, loads N loadgen events (bench.query's loader), builds rollups, waits
until the engine's own work after the load has quietened (as `pulse bench api-load` does;
printed as ``engine_settle_s``), then starts `pulse api` as its own process on loopback (as
a pod runs it) and asks bench.query's 30-day hourly and 90-day daily reports, then
``{ __typename }`` (the fixed cost of a request), one at a time over a kept-alive connection.
Printed: the API process's CPU time per request (all its threads: HTTP, GraphQL, planning,
parsing engine answers), read from /proc (the threads' schedstat, in nanoseconds). The client
(this process) and the engine (its own process) are not counted: until session 7 this bench
ran the client in the API's process and counted the client's JSON parsing of every 720-point
answer as API CPU.

``--baseline DIR`` also starts the API of another checkout (DIR/.venv's Python, DIR's code)
against the same engine and data, and alternates batches between the two servers, so both
sides see the same machine load; the output has both and their ratio. ``--profile FILE``
then samples this checkout's API with py-spy (collapsed stacks) while it answers the 30-day
hourly report, and prints the functions with the largest share of samples.

    python -m bench.api_cpu [--events 30000] [--batches 5] [--per-batch 40]
                            [--baseline DIR] [--profile FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import query as query_bench
from bench.api_load import _cpu_s, _free_port, _settle, _wait_ready, api_env
from ingest.loadgen import DAY_MS, HOUR_MS, LoadSpec
from pulse.clients import opensearch_client
from pulse.engines import start_opensearch, stop_process
from pulse.keystore import create_key
from pulse.naming import names_for
from pulse.settings import get_settings

NAMESPACE = "apicpu"


@dataclass(frozen=True)
class Server:
    """One `pulse api` process: which checkout it runs, and where it listens."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str


def _reports(end: int) -> dict[str, tuple[int, str]]:
    return {
        "30d_hourly": (end - 30 * DAY_MS, "HOUR"),
        "90d_daily": (end // DAY_MS * DAY_MS - 89 * DAY_MS, "DAY"),
    }


def _start(name: str, checkout: Path, python: str, engine_url: str) -> Server:
    port = _free_port()
    env = api_env(engine_url, NAMESPACE, port, timeout_s=300)
    cmd = [python, "-m", "pulsectl.cli", "api"]
    proc = subprocess.Popen(cmd, env=env, cwd=checkout, stdout=subprocess.DEVNULL, process_group=0)
    _wait_ready(port)
    return Server(name, proc, f"http://127.0.0.1:{port}/graphql")


WARM_UP = 50  # requests per server and report before any is measured
EMPTY = "{ __typename }"  # the fixed cost of a request: HTTP, GraphQL, no engine


def _ask(http: httpx.Client, server: Server, variables: dict[str, Any]) -> None:
    body: dict[str, Any] = {"query": EMPTY}
    if variables:
        body = {"query": query_bench.QUERY, "variables": variables}
    r = http.post(server.url, json=body)
    if r.status_code != 200 or r.json().get("errors"):
        raise RuntimeError(f"bench query failed on {server.name}: {r.text[:300]}")


def _batch_ms(http: httpx.Client, server: Server, variables: dict[str, Any], n: int) -> float:
    """The server's CPU per request over ``n`` sequential requests."""
    before = _on_cpu_s(server.proc.pid)
    for _ in range(n):
        _ask(http, server, variables)
    return round((_on_cpu_s(server.proc.pid) - before) / n * 1000, 3)


def _on_cpu_s(pid: int) -> float:
    """The process's CPU time in seconds, to the nanosecond: the sum of its threads' time on a
    CPU from /proc/<pid>/task/*/schedstat (the server's threads live as long as it does).
    psutil's user + system time is the same sum in 10 ms clock ticks: a batch of 20 reports
    of ~5 ms each read as 4.5 or 5.0 ms, nothing between. psutil where schedstat is absent."""
    total, tasks = 0, Path(f"/proc/{pid}/task")
    try:
        for task in tasks.iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
                total += int((task / "schedstat").read_text().split()[0])
    except FileNotFoundError:
        return _cpu_s([pid])
    return total / 1e9 if total else _cpu_s([pid])


def _measure(
    http: httpx.Client, servers: list[Server], variables: dict[str, Any], batches: int, n: int
) -> dict[str, list[float]]:
    for server in servers:
        # Steady state, as a server that has answered for a while: a fresh process's first
        # requests fill its remembered documents, splits, cells and point JSON, and grow its
        # heap through the collector's first full collections (5 warm-ups until session 11).
        for _ in range(WARM_UP):
            _ask(http, server, variables)
    runs: dict[str, list[float]] = {s.name: [] for s in servers}
    for b in range(batches):
        # Alternate which side goes first, so neither always follows the other's garbage.
        for server in servers if b % 2 == 0 else servers[::-1]:
            runs[server.name].append(_batch_ms(http, server, variables, n))
    return runs


def _profile(
    http: httpx.Client, server: Server, variables: dict[str, Any], out: Path, seconds: float
) -> list[tuple[str, float]]:
    """Sample ``server`` with py-spy while it answers ``variables``; the top functions by
    share of samples whose stack holds them (inclusive), from py-spy's collapsed stacks."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    cmd = [spy, "record", "--pid", str(server.proc.pid), "--rate", "250", "--format", "raw",
           "--output", str(out), "--duration", str(int(seconds)), "--nonblocking"]  # fmt: skip
    spying = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # py-spy attaches
        while spying.poll() is None:
            _ask(http, server, variables)
    finally:
        spying.wait(30)
    return _top_functions(out)


def _top_functions(collapsed: Path, top: int = 25) -> list[tuple[str, float]]:
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # py-spy leaves idle threads out unless asked (--idle)
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            inclusive[frame] += n
    return [(frame, round(100 * n / total, 1)) for frame, n in inclusive.most_common(top)]


def run(events: int, batches: int, per_batch: int, baseline: Path | None,
        profile: Path | None) -> dict[str, Any]:  # fmt: skip
    engine = start_opensearch()
    servers: list[Server] = []
    try:
        settings = get_settings().model_copy(update={"namespace": NAMESPACE, "log_json": False})
        client = opensearch_client(engine.address, timeout_s=600)
        names = names_for(settings)
        query_bench.load(client, settings, names, events, LoadSpec(merchants=200, seed=7))
        query_bench.build_rollups(client, settings, names)
        key, _ = create_key(client, names, None, admin=True, label="bench")
        here = Path(__file__).resolve().parent.parent
        servers.append(_start("this", here, sys.executable, engine.address))
        if baseline is not None:
            python = str(baseline / ".venv" / "bin" / "python")
            servers.append(_start("baseline", baseline, python, engine.address))
        end = int(time.time() * 1000) // HOUR_MS * HOUR_MS + HOUR_MS
        # As `pulse bench api-load` does: the engine's own work after the load (merges,
        # refreshes) done first, so the API is not measured beside it on the same cores.
        settled_s = _settle(engine.pid)
        out: dict[str, Any] = {
            "events": events,
            "engine_settle_s": settled_s,
            "load_average_1m_start": os.getloadavg()[0],
        }
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=300.0, headers=headers) as http:
            for name, (start, gran) in _reports(end).items():
                for force in ("AUTO", "RAW"):
                    variables = {"m": query_bench.MERCHANT, "s": query_bench._iso(start),
                                 "e": query_bench._iso(end), "g": gran, "f": force}  # fmt: skip
                    runs = _measure(http, servers, variables, batches, per_batch)
                    out[f"{name}_{force.lower()}"] = _summary(runs)
            # 10x the requests per batch: an empty query costs ~1 ms, the clock moves by 10.
            out["empty_query"] = _summary(_measure(http, servers, {}, batches, per_batch * 10))
            if profile is not None:
                start, gran = _reports(end)["30d_hourly"]
                variables = {"m": query_bench.MERCHANT, "s": query_bench._iso(start),
                             "e": query_bench._iso(end), "g": gran, "f": "AUTO"}  # fmt: skip
                out["profile_30d_hourly"] = _profile(http, servers[0], variables, profile, 20)
        out["load_average_1m_end"] = os.getloadavg()[0]
        return out
    finally:
        for server in servers:
            stop_process(server.proc, 10.0)
        engine.stop()


def _summary(runs: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        name: {"cpu_ms_per_request_runs": values, "median": statistics.median(values)}
        for name, values in runs.items()
    }
    if "baseline" in runs:
        out["ratio_this_to_baseline"] = round(
            statistics.median(runs["this"]) / statistics.median(runs["baseline"]), 3
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--per-batch", type=int, default=40)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output file")
    args = parser.parse_args()
    result = run(args.events, args.batches, args.per_batch, args.baseline, args.profile)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
