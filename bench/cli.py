"""The `pulse bench e2e` command (registered by pulse.cli)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add `pulse bench e2e` to the `pulse bench` group."""
    bench.command("e2e")(e2e)


def e2e(
    quick: bool = typer.Option(False, help="500 and 2000/s, 25 s steps, collector: ~2 minutes."),
    rates: str = typer.Option("", help="Events/s per step (default 500,1000,2000)."),
    step_seconds: float = typer.Option(0.0, help="Seconds per step (default 60; quick 25)."),
    paths: str = typer.Option("", help="collector,kafka (default both; quick collector)."),
    rollup_interval_s: int = typer.Option(
        0, help="Rollup interval s (default settings; quick 10)."
    ),
    out: Path = typer.Option(Path("docs/bench"), help="Where the JSON and PNG plots go."),
) -> None:
    """Freshness (raw and rollup), consumer lag and CPU per component on the embedded stack."""
    import signal
    import sys

    from bench.e2e import E2EConfig, run_and_write

    # SIGTERM (a timeout, a CI cancel) must still stop the stack this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config = E2EConfig.from_options(quick, rates, step_seconds, paths, rollup_interval_s)
    run_and_write(config, out)
