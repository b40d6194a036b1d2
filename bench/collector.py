"""Collector requests/s per core, with and without the write-key check (loopback, bounded).

`python -m bench.collector [--requests N] [--batch B] [--runs R]` starts its own engines
(osmem-server, Tansu) and, per run, one collector process per mode:

- ``noauth``: the collector with its key check replaced by a fixed admin principal — the
  request path as it was before authentication (parse, encode, Kafka acks);
- ``auth``: the real collector, the key verdict cached (the steady state of a sender);
- ``auth-cold``: the key cache off (TTL ~0): every request asks the key store — what the
  cache saves.

Each collector serves ``N`` requests of ``B`` events from a few keep-alive client threads;
its CPU time (user + system, psutil) gives requests/s per core. Modes alternate within a run
so a busy machine hurts them alike; the JSON printed has every run, the medians and the
ratios to ``noauth`` of the same runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import orjson
import psutil

from bench import machine
from pulse.clients import ensure_topics, opensearch_client
from pulse.engines import free_port, start_embedded, stop_process, wait_until
from pulse.keystore import Principal, create_key
from pulse.naming import names_for
from pulse.settings import Settings

MODES = ("noauth", "auth", "auth-cold")
ADMIN = Principal("bench", None, admin=True, write=True)


def serve(mode: str, port: int) -> None:
    """Run one collector in this process (the subprocess side of the bench)."""
    import uvicorn

    from ingest.collector import SERVER, Limits, collector_producer, create_app
    from pulse.keystore import lookup_hash

    settings = Settings()
    assert settings.opensearch_url and settings.kafka_bootstrap
    names = names_for(settings)
    client = opensearch_client(settings.opensearch_url, timeout_s=5.0)
    limits = Limits()
    producer = collector_producer(settings.kafka_bootstrap, limits)
    ttl = 1e-9 if mode == "auth-cold" else 30.0
    app = create_app(
        producer, names.topic_raw, lambda d: lookup_hash(client, names, d), limits, ttl
    )
    if mode == "noauth":

        async def no_check(_authorization: str | None) -> Principal:
            return ADMIN

        app.state.gate.principal = no_check  # the bench's "before": same path, no key check
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **SERVER)


def load(url: str, key: str, bodies: list[bytes], threads: int) -> float:
    """POST every body (split over ``threads`` keep-alive clients); returns wall seconds."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    parts = [bodies[i::threads] for i in range(threads)]
    failures: list[str] = []

    def worker(mine: list[bytes]) -> None:
        with httpx.Client(headers=headers, timeout=30) as http:
            for body in mine:
                response = http.post(url, content=body)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(p,)) for p in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    return time.monotonic() - started


def bodies_of(count: int, batch: int, tag: str) -> list[bytes]:
    event = {
        "merchant_id": "m00001", "event_type": "payment", "amount": 12.5, "currency": "EUR",
        "status": "succeeded", "occurred_at": "2026-11-29T12:00:00Z",
    }  # fmt: skip
    return [
        orjson.dumps([{**event, "event_id": f"{tag}-{r}-{i}"} for i in range(batch)])
        for r in range(count)
    ]


def measure(mode: str, env: dict[str, str], key: str, args: argparse.Namespace) -> dict[str, Any]:
    """One collector process of ``mode``: warm up, then ``--requests`` requests timed."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.collector", "--serve", mode, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env)
    try:
        url = f"http://127.0.0.1:{port}/events"
        if not wait_until(lambda: _healthy(url), 120.0):  # a busy shared machine
            raise RuntimeError(f"collector ({mode}) did not start")
        tag = uuid.uuid4().hex[:6]
        load(url, key, bodies_of(200, args.batch, f"w{tag}"), args.threads)  # warm-up
        bodies = bodies_of(args.requests, args.batch, tag)
        server = psutil.Process(proc.pid)
        before = server.cpu_times()
        wall = load(url, key, bodies, args.threads)
        after = server.cpu_times()
        cpu = (after.user - before.user) + (after.system - before.system)
        return {
            "mode": mode,
            "requests": args.requests,
            "wall_s": round(wall, 3),
            "collector_cpu_s": round(cpu, 3),
            "requests_per_s": round(args.requests / wall, 1),
            "requests_per_core_s": round(args.requests / cpu, 1) if cpu > 0 else None,
        }
    finally:
        stop_process(proc, 10)


def check_cost_us(calls: int = 50_000) -> dict[str, float]:
    """CPU µs of one cached key check (header parse, SHA-256, cache hit) in this process:
    the part of the "auth" mode that "noauth" skips, measured without HTTP around it."""
    import asyncio

    from ingest.collector import Gate

    header = "Bearer pulse_" + "k" * 43  # the length of a real key
    gate = Gate(lambda _digest: ADMIN, ttl_s=3600.0)

    async def checks() -> float:
        await gate.principal(header)  # the one store lookup, then cache hits only
        started = time.process_time()
        for _ in range(calls):
            await gate.principal(header)
        return time.process_time() - started

    runs = [asyncio.run(checks()) for _ in range(5)]
    return {"calls": calls, "median_us": round(statistics.median(runs) / calls * 1e6, 2)}


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url.replace("/events", "/healthz"), timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run(args: argparse.Namespace) -> dict[str, Any]:
    engines = start_embedded(None, None)
    try:
        assert engines.opensearch and engines.kafka
        settings = Settings(
            opensearch_url=engines.opensearch.address,
            kafka_bootstrap=engines.kafka.address,
            namespace=f"bench{uuid.uuid4().hex[:6]}",
        )
        ensure_topics(settings, engines.kafka.address)
        client = opensearch_client(engines.opensearch.address)
        key, _ = create_key(client, names_for(settings), None, True, "bench", write=True)
        env = {**os.environ, "PULSE_OPENSEARCH_URL": engines.opensearch.address,
               "PULSE_KAFKA_BOOTSTRAP": engines.kafka.address,
               "PULSE_NAMESPACE": settings.namespace}  # fmt: skip
        load_start = machine.load_average()
        runs = [[measure(mode, env, key, args) for mode in MODES] for _ in range(args.runs)]
        result = summary(runs, args, load_start, machine.load_average())
        result["cached_check_cpu"] = check_cost_us()
        cpu_per_request_us = 1e6 / result["medians"]["noauth"]["requests_per_core_s"]
        result["cached_check_share_of_noauth_request"] = round(
            result["cached_check_cpu"]["median_us"] / cpu_per_request_us, 4
        )
        return result
    finally:
        engines.stop()


def summary(
    runs: list[list[dict[str, Any]]], args: argparse.Namespace, load_start: Any, load_end: Any
) -> dict[str, Any]:
    per_mode = {m: [r for run in runs for r in run if r["mode"] == m] for m in MODES}
    medians = {
        m: {
            "requests_per_core_s": statistics.median(r["requests_per_core_s"] for r in rows),
            "requests_per_s": statistics.median(r["requests_per_s"] for r in rows),
        }
        for m, rows in per_mode.items()
    }
    ratios = [  # same-run ratios: each run's auth figure over that run's noauth figure
        {m: round(r["requests_per_core_s"] / run[0]["requests_per_core_s"], 3) for m, r in
         ((x["mode"], x) for x in run)}
        for run in runs
    ]  # fmt: skip
    return {
        "bench": "collector",
        "command": " ".join(["python -m bench.collector", *sys.argv[1:]]),
        "batch": args.batch,
        "requests": args.requests,
        "threads": args.threads,
        "load_start": load_start,
        "load_end": load_end,
        "runs": runs,
        "medians": medians,
        "ratio_to_noauth_per_run": ratios,
        "median_ratio_to_noauth": {
            m: round(statistics.median(r[m] for r in ratios), 3) for m in MODES
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per mode")
    parser.add_argument("--batch", type=int, default=1, help="events per request")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="concurrent client connections")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return
    print(json.dumps(run(args), indent=1), flush=True)


if __name__ == "__main__":
    main()
