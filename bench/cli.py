"""The `pulse bench e2e` command (registered by pulse.cli)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add `pulse bench e2e` to the `pulse bench` group."""
    bench.command("e2e")(e2e)


def e2e(
    quick: bool = typer.Option(False, help="Two rates, short steps: fits in two minutes."),
    rates: str = typer.Option("500,1000,2000", help="Comma-separated events/s per step."),
    step_seconds: float = typer.Option(60.0, help="How long each rate is held."),
    paths: str = typer.Option("collector,kafka", help="collector, kafka, or both (comma)."),
    rollup_interval_s: int = typer.Option(0, help="Rollup schedule; 0 = the settings default."),
    out: Path = typer.Option(Path("docs/bench"), help="Where the JSON and PNG plots go."),
) -> None:
    """Freshness (raw and rollup), consumer lag and CPU per component on the embedded stack."""
    from bench.e2e import E2EConfig, run_and_write

    config = E2EConfig.from_options(quick, rates, step_seconds, paths, rollup_interval_s)
    run_and_write(config, out)
