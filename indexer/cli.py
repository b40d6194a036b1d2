"""The `pulse` commands of the indexer package (registered by pulsectl.cli)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import typer


def register(root: typer.Typer) -> None:
    """Add this package's commands to the root CLI."""
    root.command(name="indexer")(indexer_cmd)


def indexer_cmd() -> None:
    """Consume events.raw into the daily raw indices until SIGTERM/SIGINT."""
    from indexer.consumer import Indexer
    from pulse.clients import resolve_endpoints
    from pulse.logs import configure_logging
    from pulse.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    endpoints = resolve_endpoints(settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    indexer = Indexer(settings, endpoints.opensearch_url, endpoints.kafka_bootstrap)
    sys.exit(0 if indexer.run(stop) else 1)
