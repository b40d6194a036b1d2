"""Engine requests caused by requests with made-up API keys (issue: bogus keys cost nothing).

Starts an embedded osmem and, in front of it, a counting HTTP proxy on loopback: every
request the API sends to the engine passes it and is counted at the wire. The API runs in
real uvicorn on loopback (as `pulse api` configures it), pointed at the proxy. One client then
sends N GraphQL requests, each with a fresh random ``pulse_…`` key, twice:

- ``before``: the key guard's caches and per-address limit switched off by settings
  (``api_unknown_key_ttl_s=0``, a huge failure budget): every key is looked up, as before;
- ``after``: the defaults.

Prints JSON: engine requests per 1,000 requests, answer codes and wall time of each run.

    python -m bench.bogus_keys [--requests 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn

from api.app import create_app
from api.cli import server_options
from pulse.clients import opensearch_client
from pulse.engines import free_port, start_opensearch
from pulse.settings import Settings

QUERY = '{ freshness(merchantId: "m1") { ingestedThrough } }'


class CountingProxy(ThreadingHTTPServer):
    """Forwards every request to ``upstream`` and counts them (thread-safe)."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.count = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingProxy

    def _forward(self) -> None:
        with self.server.lock:
            self.server.count += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    assert settings.opensearch_url
    app = create_app(settings, opensearch_client(settings.opensearch_url))
    server = uvicorn.Server(uvicorn.Config(app, **server_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://{settings.api_host}:{settings.api_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def flood(settings: Settings, proxy: CountingProxy, requests: int) -> dict[str, Any]:
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.post("/graphql", json={"query": QUERY}, headers={"Authorization": "Bearer x"})
        before, started = proxy.count, time.perf_counter()
        codes: Counter[str] = Counter()
        for _ in range(requests):
            key = "pulse_" + secrets.token_urlsafe(32)
            answer = client.post(
                "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {key}"}
            ).json()
            codes[answer["errors"][0]["extensions"]["code"]] += 1
        engine = proxy.count - before
        return {
            "engine_requests": engine,
            "per_1000": round(engine * 1000 / requests, 1),
            "codes": dict(codes),
            "seconds": round(time.perf_counter() - started, 2),
        }


def run(requests: int, runs: int) -> dict[str, Any]:
    engine = start_opensearch()
    proxy = CountingProxy(engine.address)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        base = Settings(
            opensearch_url=proxy.url,
            namespace=f"bk{uuid.uuid4().hex[:8]}",
            api_host="127.0.0.1",
            log_json=False,
        )
        off = {"api_unknown_key_ttl_s": 0.0, "api_auth_failures_burst": 10**9}
        results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for _ in range(runs):
            for name, update in (("before", off), ("after", {})):
                settings = base.model_copy(update={**update, "api_port": free_port()})
                results[name].append(flood(settings, proxy, requests))
        summary = {
            name: statistics.median(r["per_1000"] for r in rs) for name, rs in results.items()
        }
        return {"requests": requests, "runs": results, "median_per_1000": summary}
    finally:
        proxy.shutdown()
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.requests, args.runs), indent=2))


if __name__ == "__main__":
    main()
