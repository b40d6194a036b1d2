"""send_to_collector resends a batch while the collector is away or busy, like Fluent Bit."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from ingest.sinks import send_to_collector


def test_batches_are_resent_after_503_until_accepted() -> None:
    answers = [503, 503, 201]
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(answers.pop(0))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/events"
        sent = send_to_collector(url, iter([{"event_id": "a"}, {"event_id": "b"}]), batch=10)
    finally:
        server.shutdown()
    assert sent == 2
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same batch, resent whole
