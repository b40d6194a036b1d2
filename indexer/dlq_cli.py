"""`pulse dlq …`: dead letters and undecodable batches for operators (registered by pulsectl.cli).

The logic lives in ``indexer.deadletters`` and ``indexer.undecodable``; this module only
parses options and prints.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from indexer import deadletters as dl
from indexer.undecodable import BLOCKED, SKIP_REQUESTED, request_skip
from pulse.clients import opensearch_client, resolve_endpoints
from pulse.naming import names_for
from pulse.settings import get_settings

console = Console(stderr=True)
out = Console(soft_wrap=True)
RELATIVE = re.compile(r"^(\d+)([smhd])$")
UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def register(root: typer.Typer) -> None:
    app = typer.Typer(
        help="Dead letters (events.dlq) and undecodable batches.", no_args_is_help=True
    )
    root.add_typer(app, name="dlq")
    app.command("stats")(stats_cmd)
    app.command("show")(show_cmd)
    app.command("redrive")(redrive_cmd)
    app.command("skip-batch")(skip_batch_cmd)


def parse_since(value: str, now_ms: int | None = None) -> int:
    """``2h``/``30m``/``7d`` ago, ISO 8601 (naive = UTC), or epoch milliseconds."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    if m := RELATIVE.match(value.strip()):
        return now - int(m.group(1)) * UNIT_MS[m.group(2)]
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use 2h / 7d, ISO 8601 or epoch ms") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _iso(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def stats_cmd(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """Dead letters by reason and age, and undecodable batches waiting for a decision."""
    result = dl.stats(get_settings())
    if as_json:
        print(orjson.dumps(result.__dict__).decode())
        return
    table = Table(title=f"events.dlq: {result.total} letters")
    table.add_column("reason")
    for label, _ in dl.AGE_BUCKETS:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    for reason, total in result.by_reason.items():
        ages = result.by_reason_age[reason]
        table.add_row(reason, *(str(ages[label]) for label, _ in dl.AGE_BUCKETS), str(total))
    out.print(table)
    out.print(f"oldest {_iso(result.oldest_ms)}  newest {_iso(result.newest_ms)}")
    for doc in result.blocked_batches:
        out.print(
            f"[red]{doc['status']}[/red]: partition {doc['partition']} offset {doc['offset']} "
            f"since {_iso(doc['first_seen'])}: {doc['error']}"
        )


def show_cmd(
    reason: str | None = typer.Option(None, help="Only letters with this reason."),
    limit: int = typer.Option(20, help="How many (the newest)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """The newest dead letters: original bytes, reason, detail, offsets."""
    for letter in dl.show(get_settings(), reason, limit):
        record = {
            "dlq": f"{letter.partition}@{letter.offset}", "origin": letter.origin,
            "reason": letter.reason, "detail": letter.detail,
            "stage": letter.headers.get("pulse.stage", ""), "failed_at": _iso(letter.failed_at),
            "size": letter.headers.get("pulse.size", str(len(letter.value))),
            "truncated": letter.truncated,
            "value": letter.value.decode("utf-8", "backslashreplace"),
        }  # fmt: skip
        if as_json:
            print(orjson.dumps(record).decode())
        else:
            out.print(" ".join(f"{k}={record[k]}" for k in list(record)[:-1]), markup=False)
            out.print(f"  {record['value']}", markup=False, highlight=False)


def redrive_cmd(
    reason: str | None = typer.Option(None, help="Only letters with this reason."),
    since: str | None = typer.Option(None, help="Dead-lettered at/after: 2h, 7d, ISO, epoch ms."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be sent."),
    yes: bool = typer.Option(False, "--yes", help="Send without asking."),
) -> None:
    """Re-send chosen dead letters to events.raw after a fix (idempotent per event _id)."""
    if dry_run == yes:
        raise typer.BadParameter("give exactly one of --dry-run or --yes")
    settings = get_settings()
    since_ms = parse_since(since) if since is not None else None
    plan = dl.plan_redrive(settings, reason, since_ms)
    by_reason: dict[str, int] = {}
    for letter in plan.chosen:
        by_reason[letter.reason] = by_reason.get(letter.reason, 0) + 1
    out.print(f"{len(plan.chosen)} letters to re-send to events.raw: {by_reason}")
    for why, count in plan.left_out.items():
        out.print(f"left out: {count} ({why})")
    if dry_run or not plan.chosen:
        return
    columns = (TextColumn("re-sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("redrive", total=len(plan.chosen))
        sent = dl.redrive(settings, plan.chosen, lambda n: progress.advance(task, n))
    out.print(f"re-sent {sent} letters; each event is indexed once whatever the re-sends")


def skip_batch_cmd(
    partition: int = typer.Option(..., help="The blocked partition of events.raw."),
    offset: int = typer.Option(..., help="The blocked batch's offset (pulse dlq stats)."),
    yes: bool = typer.Option(False, "--yes", help="Skip without asking."),
) -> None:
    """Skip an undecodable batch: the indexer dead-letters its bytes and moves past it."""
    settings = get_settings()
    names = names_for(settings)
    client = opensearch_client(resolve_endpoints(settings).opensearch_url)
    if not (yes or typer.confirm(f"Skip the batch at partition {partition} offset {offset}?")):
        raise typer.Exit(1)
    try:
        before = request_skip(client, names, names.topic_raw, partition, offset)
    except KeyError:
        console.print(f"no undecodable batch reported at partition {partition} offset {offset}")
        raise typer.Exit(2) from None
    if before == BLOCKED:
        out.print("skip requested: the indexer dead-letters the batch and resumes the partition")
    elif before == SKIP_REQUESTED:
        out.print("skip already requested; the indexer carries it out within seconds")
    else:
        out.print(f"nothing to do: the batch is {before}")
