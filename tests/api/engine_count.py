"""Counting the requests an OpenSearch client really sends (its transport's round trips)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opensearchpy import OpenSearch


@contextmanager
def counted(client: OpenSearch) -> Iterator[list[str]]:
    """Every request ``client`` sends meanwhile, as "METHOD /path", in order."""
    calls: list[str] = []
    transport = client.transport
    original = transport.perform_request

    def perform(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"{method} {url}")
        return original(method, url, *args, **kwargs)

    transport.perform_request = perform  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del transport.perform_request  # the class's method again
