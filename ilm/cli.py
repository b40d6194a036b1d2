"""The `pulse ilm` commands (registered by pulsectl.cli): plan, apply, status, run."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from types import FrameType

import typer
from opensearchpy import OpenSearch
from rich.console import Console

from pulse.clients import opensearch_client, resolve_endpoints
from pulse.logs import configure_logging
from pulse.naming import names_for
from pulse.settings import Settings, get_settings

ilm_app = typer.Typer(help="Index lifecycle: templates, ISM policies, rollover, retention.")
console = Console()


def _setup() -> tuple[OpenSearch, Settings]:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    url = resolve_endpoints(settings).opensearch_url
    return opensearch_client(url, settings.engine_timeout_s), settings


@ilm_app.command("plan")
def plan_cmd() -> None:
    """Print what `apply` would change; nothing is changed."""
    from ilm.manager import plan

    client, settings = _setup()
    result = plan(client, settings, names_for(settings))
    path = "ISM" if result.ism else "manager (no ISM plugin)"
    console.print(f"lifecycle path: {path}; {len(result.actions)} change(s)")
    for action in result.actions:
        console.print(f"  {action.dry_run()}", highlight=False)


@ilm_app.command("apply")
def apply_cmd(
    lock_wait: float = typer.Option(60.0, help="Seconds to wait for another manager's lock."),
) -> None:
    """Make the changes `plan` shows (templates, policies, days, rollover, warm, retention)."""
    from ilm.manager import LockBusy, apply

    client, settings = _setup()
    try:
        applied = apply(client, settings, names_for(settings), lock_wait_s=lock_wait)
    except LockBusy as busy:
        console.print(str(busy))
        raise typer.Exit(1) from busy
    console.print(f"applied {len(applied)} change(s)")
    for line in applied:
        console.print(f"  {line}", highlight=False)


@ilm_app.command("status")
def status_cmd() -> None:
    """A table of every raw and rollup index: generation, day, docs, size, phase, age."""
    from ilm.inventory import load_inventory
    from ilm.status import status_table

    client, settings = _setup()
    inventory = load_inventory(client, names_for(settings))
    console.print(status_table(inventory, settings, datetime.now(tz=UTC)))


@ilm_app.command("run")
def run_cmd(
    loop: bool = typer.Option(False, help="Run a pass every PULSE_ILM_INTERVAL_S until SIGTERM."),
) -> None:
    """One manager pass (or, with --loop, one pass per interval in the foreground)."""
    from ilm.manager import LockBusy, apply, run_loop

    client, settings = _setup()
    names = names_for(settings)
    if not loop:
        try:
            applied = apply(client, settings, names)
        except LockBusy as busy:
            console.print(str(busy))
            raise typer.Exit(1) from busy
        console.print(f"applied {len(applied)} change(s)")
        return
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_loop(client, settings, names, stop)


def register(root: typer.Typer) -> None:
    """Add `pulse ilm plan|apply|status|run` to the root CLI."""
    root.add_typer(ilm_app, name="ilm")
