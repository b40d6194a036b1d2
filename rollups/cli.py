"""The `pulse` commands of the rollups package (registered by pulsectl.cli).

- ``pulse rollups`` — the scheduler in the foreground until SIGTERM/SIGINT (rollups.scheduler).
- ``pulse rollups backfill --from T --to T`` — recompute an event-time range with a progress
  bar; run it again to resume (rollups.backfill). T: RFC 3339 / ISO 8601 (naive = UTC) or
  epoch milliseconds.
"""

from __future__ import annotations

import typer
from opensearchpy import OpenSearch

from pulse import clock
from pulse.settings import Settings

rollups_app = typer.Typer(help="Hourly per-merchant rollups: scheduler and backfill.")


def register(root: typer.Typer) -> None:
    """Add this package's commands to the root CLI."""
    root.add_typer(rollups_app, name="rollups")


def _client(settings: Settings) -> OpenSearch:
    """The engine from PULSE_OPENSEARCH_URL, else the embedded stack's stack.json."""
    from pulse.clients import StackNotFound, opensearch_client, read_stack

    url = settings.opensearch_url or read_stack(settings).get("opensearch_url")
    if not url:
        raise StackNotFound("no engine: set PULSE_OPENSEARCH_URL or start `pulse up`")
    return opensearch_client(str(url), timeout_s=settings.engine_timeout_s)


@rollups_app.callback(invoke_without_command=True)
def scheduler_cmd(ctx: typer.Context) -> None:
    """Run the rollup scheduler (every rollup_interval_s) until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    from pulse.logs import configure_logging
    from pulse.naming import names_for
    from pulse.settings import get_settings
    from rollups.scheduler import run

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    run(_client(settings), settings, names_for(settings))


def parse_instant(value: str) -> int:
    """Epoch milliseconds from epoch millis or ISO 8601 (a naive time is taken as UTC)."""
    try:
        return clock.parse_instant(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither ISO 8601 nor epoch millis") from None


@rollups_app.command("backfill")
def backfill_cmd(
    start: str = typer.Option(..., "--from", help="Range start (event time), inclusive."),
    end: str = typer.Option(..., "--to", help="Range end (event time), exclusive."),
) -> None:
    """Recompute the rollups of [from, to) hour by hour; resumable (progress in the engine)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from pulse.naming import names_for
    from pulse.settings import get_settings
    from rollups.backfill import backfill

    settings = get_settings()
    start_ms, end_ms = parse_instant(start), parse_instant(end)
    if end_ms <= start_ms:
        raise typer.BadParameter("--to must be after --from")
    console = Console(stderr=True)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("hours", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = backfill(_client(settings), settings, names_for(settings), start_ms, end_ms, step)
    resumed = "" if report.resumed_at == report.start_ms else " (resumed)"
    console.print(
        f"backfilled {report.hours} hours{resumed}: {report.pairs} merchant-hours, "
        f"{report.buckets} rollup documents"
    )
