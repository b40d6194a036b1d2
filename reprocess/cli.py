"""The `pulse reprocess` and `pulse reindex` commands."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import typer
from opensearchpy import OpenSearch
from rich.console import Console

from pulse.clients import opensearch_client, resolve_endpoints
from pulse.clock import parse_instant
from pulse.naming import Names, names_for
from pulse.settings import Settings, get_settings
from reprocess import runs
from reprocess.plan import PlanError
from reprocess.runs import RunError
from reprocess.service import Cleanup, Context, Reprocess, Resume, Rollback, RollupRebuild
from reprocess.verify import describe
from rollups.backfill import rebuild

console = Console(stderr=True)
FROM = typer.Option(None, "--from", help="Start: ISO date/time (UTC if no offset) or epoch ms.")
TO = typer.Option(None, "--to", help="End (exclusive), same formats; widened to whole UTC days.")
GENERATION = typer.Option(None, help="New generation name (default: next gN).")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the plan and stop.")
YES = typer.Option(False, "--yes", help="Do not ask for confirmation.")
GAPS = typer.Option(False, "--accept-gaps", help="Go on although Kafka retention cut history.")


def parse_time(value: str) -> int:
    """ISO 8601 (date or date-time; naive means UTC) or integer epoch milliseconds."""
    try:
        return parse_instant(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither ISO 8601 nor epoch ms") from None


def context() -> Context:
    from reprocess.workers import worker_settings

    settings = worker_settings() or get_settings()
    endpoints = resolve_endpoints(settings)
    client = opensearch_client(endpoints.opensearch_url, settings.engine_timeout_s)
    names = names_for(settings)
    return Context(
        client,
        settings,
        names,
        endpoints.kafka_bootstrap,
        console,
        rebuild_rollups=rollup_rebuilder(client, settings, names),
    )


def rollup_rebuilder(client: OpenSearch, settings: Settings, names: Names) -> RollupRebuild:
    """The rollups package's range recompute, run after every switch and rollback."""
    return functools.partial(rebuild, client, settings, names)


def _start(
    kind: str,
    start: str | None,
    end: str | None,
    generation: str | None,
    dry_run: bool,
    yes: bool,
    accept_gaps: bool,
) -> None:
    if start is None or end is None:
        raise typer.BadParameter("--from and --to are required")
    ctx = context()
    try:
        action = Reprocess(ctx, parse_time(start), parse_time(end), generation, kind, accept_gaps)
    except (PlanError, RunError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    for line in action.dry_run():
        console.print(line)
    if dry_run or not (yes or typer.confirm("Proceed?")):
        return
    try:
        run = action.apply()
    except RunError as exc:  # e.g. an undecodable batch: checkpointed, resumable
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    _finish(run)


def _finish(run: runs.Run) -> None:
    if "verify" in run.report:
        for line in describe(run.report["verify"]):
            console.print(line)
    console.print(f"run {run.run_id}: {run.phase} {json.dumps(run.stats)}")
    if run.phase == runs.FAILED:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add this package's commands to the root CLI."""
    app = typer.Typer(help="Rebuild a time range from Kafka into a new generation, verified.")
    root.add_typer(app, name="reprocess")

    @app.callback(invoke_without_command=True)
    def reprocess(
        ctx: typer.Context,
        start: str | None = FROM,
        end: str | None = TO,
        generation: str | None = GENERATION,
        dry_run: bool = DRY_RUN,
        yes: bool = YES,
        accept_gaps: bool = GAPS,
    ) -> None:
        """Plan, replay, verify, switch (see docs/reprocessing.md)."""
        if ctx.invoked_subcommand is None:
            _start("replay", start, end, generation, dry_run, yes, accept_gaps)

    @root.command()
    def reindex(
        start: str | None = FROM,
        end: str | None = TO,
        generation: str | None = GENERATION,
        dry_run: bool = DRY_RUN,
        yes: bool = YES,
    ) -> None:
        """Copy a range into a new generation with _reindex (mapping/template changes)."""
        _start("reindex", start, end, generation, dry_run, yes, True)

    @app.command()
    def resume() -> None:
        """Continue the unfinished run from its last saved state."""
        _run_action(lambda c: Resume(c))

    @app.command()
    def rollback(run_id: str | None = typer.Option(None, "--run"), dry_run: bool = DRY_RUN) -> None:
        """Serve the range from the old generation again."""
        _run_action(lambda c: Rollback(c, run_id), dry_run)

    @app.command()
    def cleanup(run_id: str | None = typer.Option(None, "--run"), yes: bool = YES) -> None:
        """Delete the unserved generation of a run (or of every run past the retention)."""
        ctx = context()
        action = Cleanup(ctx, run_id)
        for line in action.dry_run():
            console.print(line)
        if yes or typer.confirm("Delete?"):
            console.print(f"deleted {len(action.apply())} indices")

    @app.command()
    def worker(
        run_id: str = typer.Option(..., "--run"),
        workers: int = typer.Option(..., "--workers", help="How many slices the run has."),
    ) -> None:
        """A replay worker (started by the run's driver): replays slices of the run."""
        from reprocess.workers import work

        ctx = context()
        ctx.progress = False
        work(ctx, run_id, workers)

    @app.command()
    def status() -> None:
        """Runs, newest first."""
        ctx = context()
        for run in runs.all_runs(ctx.client, ctx.names):
            plan = run.plan
            print(
                f"{run.run_id}\t{plan.kind}\t{run.phase}\t{plan.new_generation}\t"
                f"{plan.days[0].day}..{plan.days[-1].day}\t{json.dumps(run.stats)}"
            )


def _run_action(make: Callable[[Context], Resume | Rollback], dry_run: bool = False) -> None:
    ctx = context()
    try:
        action = make(ctx)
    except RunError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    for line in action.dry_run():
        console.print(line)
    if not dry_run:
        _finish(action.apply())
