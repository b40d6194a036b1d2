"""``pulse status`` on screen (rich, one screen) or as JSON; registered by pulsectl.cli."""

from __future__ import annotations

import json

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pulsectl.status import RollupState, ShardState, Status

MAX_PARTITION_ROWS = 12


def register(root: typer.Typer) -> None:
    root.command(name="status")(status_cmd)


def status_cmd(
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    sample: float = typer.Option(2.0, help="Seconds between the two lag readings (0: one)."),
) -> None:
    """The pipeline on one screen; exit code 1 when something needs a person, 2 when no
    engines are configured or running."""
    from pulse.clients import StackNotFound
    from pulse.settings import get_settings
    from pulsectl.status import collect

    try:
        status = collect(get_settings(), sample_s=sample)
    except StackNotFound as exc:  # nothing to look at: say where we looked
        Console(stderr=True).print(str(exc))
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(status.to_json(), indent=1))
    else:
        Console().print(render(status))
    raise typer.Exit(1 if status.problems else 0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _ok(good: bool) -> Text:
    return Text("ok", style="green") if good else Text("DOWN", style="bold red")


def render(status: Status) -> Group:
    """Everything on one screen: the pipeline table beside the others, problems last."""
    head = Text.assemble(
        ("Pulse status ", "bold"),
        f"{status.taken_at}  generation {status.generation}",
        f" ({status.switched_days} days switched)" if status.switched_days else "",
        "  embedded stack" if status.embedded else "",
    )
    # Two columns: the pipeline (one row per component and partition) beside the rest.
    layout = Table.grid(padding=(0, 2))
    layout.add_row(
        _pipeline(status),
        Group(_rollups_and_runs(status), _dead_letters(status), _lifecycle(status)),
    )
    parts: list[object] = [head, layout]
    if status.problems:
        lines = "\n".join(f"- {p}" for p in status.problems)
        parts.append(Panel(lines, title="needs a person", border_style="red"))
    else:
        parts.append(Text("nothing needs a person", style="green"))
    return Group(*parts)  # type: ignore[arg-type]


def _pipeline(status: Status) -> Table:
    table = Table(title="components and lag", title_justify="left", expand=False)
    table.add_column("component / partition")
    table.add_column("state")
    table.add_column("lag", justify="right")
    table.add_column("change", justify="right")
    for c in status.components:
        table.add_row(c.name, _ok(c.alive), "", "", style=None if c.alive else "red")
    quiet = [p for p in status.lag if not (p.lag or p.change or p.blocked)]
    if len(status.lag) <= MAX_PARTITION_ROWS:
        quiet = []  # few partitions: one row each
    for p in status.lag:
        if p in quiet:
            continue
        state = Text("BLOCKED", style="bold red") if p.blocked else Text("ok", style="green")
        change = "" if p.change is None else f"{p.change:+d}"
        table.add_row(f"events.raw/{p.partition}", state, str(p.lag), change)
    if quiet:  # many partitions (prod has 48): the idle ones in one row
        table.add_row(f"{len(quiet)} more partitions", Text("ok", style="green"), "0", "+0")
    if status.consumed_per_s is not None:
        table.caption = f"indexer consumes {status.consumed_per_s:.0f} messages/s"
    return table


def _shard_rows(r: RollupState) -> list[tuple[str, str]]:
    """One row per live worker (its shards and the slowest one's lag), one per shard that
    no live worker holds: 64 shards stay readable (``--json`` lists every shard)."""
    rows = []
    by_owner: dict[str, list[ShardState]] = {}
    for sh in r.shards:
        if sh.owner is None:
            rows.append(
                (f"shard {sh.shard}", f"[red]no live worker[/red], {_duration(sh.age_s)} behind")
            )
        else:
            by_owner.setdefault(sh.owner, []).append(sh)
    for owner, held in sorted(by_owner.items()):
        ages = [sh.age_s for sh in held if sh.age_s is not None]
        slowest = _duration(max(ages)) if ages else "-"
        shards = ", ".join(str(sh.shard) for sh in held)
        rows.append((f"worker {owner}", f"shards {shards}; slowest {slowest} behind"))
    return rows


def _rollups_and_runs(status: Status) -> Table:
    table = Table(title="rollups and reprocess", title_justify="left")
    table.add_column("what")
    table.add_column("value")
    r = status.rollups
    if r is not None:
        table.add_row("watermark", f"{r.watermark or 'none yet'} ({_duration(r.age_s)} behind)")
        for hold in r.holds:
            table.add_row("hold", hold)
        for row in _shard_rows(r):
            table.add_row(*row)
    for run in status.runs:
        table.add_row(f"run {run.run_id}", f"{run.phase} for {_duration(run.since_s)}")
    if not status.runs:
        table.add_row("reprocess", "no run in flight")
    return table


def _dead_letters(status: Status) -> Table:
    table = Table(title="dead letters", title_justify="left")
    table.add_column("reason")
    table.add_column("last hour", justify="right")
    table.add_column("last day", justify="right")
    d = status.dead_letters
    if d is not None:
        day = d.by_reason.get("day", {})
        hour = d.by_reason.get("hour", {})
        for reason in sorted(day, key=lambda k: -day[k]):
            table.add_row(reason, str(hour.get(reason, 0)), str(day[reason]))
        if not day:
            table.add_row("none", "0", "0")
    return table


def _lifecycle(status: Status) -> Table:
    table = Table(title="index lifecycle", title_justify="left")
    table.add_column("what")
    table.add_column("value")
    life = status.lifecycle
    if life is not None:
        phases = ", ".join(f"{k}: {v}" for k, v in sorted(life.phases.items()))
        table.add_row("indices", phases or "none")
        table.add_row("next rollover", life.next_rollover or "-")
        deletes = life.retention_deletes
        table.add_row("retention deletes", ", ".join(deletes) if deletes else "nothing")
    return table
