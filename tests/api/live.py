"""A real uvicorn server on loopback, configured as `pulse api` configures it (api.cli)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from opensearchpy import OpenSearch

from api.app import create_app
from api.cli import server_options
from pulse.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(settings: Settings, client: OpenSearch) -> Iterator[str]:
    """The API on a free loopback port for the block; yields its base URL."""
    settings = settings.model_copy(update={"api_host": "127.0.0.1", "api_port": free_port()})
    config = uvicorn.Config(create_app(settings, client), **server_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.api_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
