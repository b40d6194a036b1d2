"""The `pulse` commands of the indexer package (registered by pulse.cli)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import typer


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add this package's commands to the root CLI and to `pulse bench`."""
    root.command(name="indexer")(indexer_cmd)
    bench.command(name="indexer")(bench_cmd)


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


def bench_cmd(
    events: int = typer.Option(50_000, help="How many events to produce and index."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    days: int = typer.Option(2, help="Spread the events over this many recent days."),
    seed: int = typer.Option(7),
) -> None:
    """Produce N events to Kafka, index them, and compare with a raw _bulk load."""
    import orjson

    from indexer.bench import run_bench
    from pulse.logs import configure_logging
    from pulse.settings import get_settings

    settings = get_settings()
    configure_logging("WARNING", settings.log_json)
    result = run_bench(settings, events, days, seed)
    if as_json:
        print(orjson.dumps(result).decode())
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
