"""send_to_collector resends a batch while the collector is away or busy and gives up on a
refusal, like Fluent Bit's out_http (5xx: retry; 4xx other than 408/429: drop the chunk)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ingest.sinks import CollectorRefused, send_to_collector


@contextmanager
def answering(answers: list[int], seen: list[tuple[str, bytes]]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers["Authorization"], body))
            self.send_response(answers.pop(0))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/events"
    finally:
        server.shutdown()


def test_batches_are_resent_after_503_until_accepted() -> None:
    seen: list[tuple[str, bytes]] = []
    with answering([503, 503, 201], seen) as url:
        events = iter([{"event_id": "a"}, {"event_id": "b"}])
        sent = send_to_collector(url, events, "pulse_k", batch=10)
    assert sent == 2
    assert len(seen) == 3 and len(set(seen)) == 1  # the same batch, resent whole
    assert seen[0][0] == "Bearer pulse_k"  # with the write key


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_a_refusal_is_not_retried(status: int) -> None:
    seen: list[tuple[str, bytes]] = []
    with answering([status, 201], seen) as url, pytest.raises(CollectorRefused):
        send_to_collector(url, iter([{"event_id": "a"}]), "pulse_k", batch=10)
    assert len(seen) == 1
