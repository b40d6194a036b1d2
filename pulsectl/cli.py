"""The one console script, ``pulse``. Each package registers its own commands here."""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from api import cli as api_cli
from ilm import cli as ilm_cli
from indexer import cli as indexer_cli
from indexer import dlq_cli
from ingest import loadgen
from pulse.clients import ensure_topics, opensearch_client, resolve_endpoints
from pulse.keystore import create_key, list_keys, revoke
from pulse.logs import configure_logging
from pulse.naming import names_for
from pulse.settings import Settings, get_settings
from pulsectl import fx_cli, status_view
from reprocess import cli as reprocess_cli
from rollups import cli as rollups_cli

app = typer.Typer(help="Pulse: analytics backend for merchants.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print their figures as JSON.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys: read keys (GraphQL) and write keys (collector), stored hashed.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)


@app.command()
def up(
    demo: bool = typer.Option(False, help="Also run a load generator and create demo keys."),
    state_dir: Path | None = typer.Option(
        None, help="Where stack.json is written (default: PULSE_STATE_DIR or .pulse)."
    ),
) -> None:
    """Start the embedded engines (unless configured) and every component, in the foreground."""
    from pulsectl.stack import run_stack

    settings = get_settings()
    if state_dir is not None:
        settings = settings.model_copy(update={"state_dir": str(state_dir)})
    configure_logging(settings.log_level, settings.log_json)
    sys.exit(run_stack(settings, demo=demo))


@app.command()
def collector() -> None:
    """Run the HTTP collector (Fluent Bit in_http compatible) in the foreground."""
    from ingest.collector import serve

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    endpoints = resolve_endpoints(settings)
    ensure_topics(settings, endpoints.kafka_bootstrap)
    topic = names_for(settings).topic_raw
    serve(settings, endpoints.kafka_bootstrap, endpoints.opensearch_url, topic)


@app.command(name="loadgen")
def loadgen_cmd(
    rate: float = typer.Option(500.0, help="Events per second (live mode)."),
    duration: float = typer.Option(60.0, help="Seconds to run (live mode)."),
    days: int = typer.Option(0, help="History mode: spread --events over the last N days."),
    events: int = typer.Option(10_000, help="History mode: how many events."),
    merchants: int = typer.Option(200),
    duplicates: float = typer.Option(0.0, help="Share of events re-sent with the same id."),
    late: float = typer.Option(0.0, help="Share of events arriving hours to days late."),
    returning: bool = typer.Option(
        False, help="Customers join and come back over weeks (cohorts look like a shop's)."
    ),
    invalid: float = typer.Option(0.0, help="Share of contract-breaking messages (Kafka only)."),
    sessions: float = typer.Option(
        0.0,
        min=0.0,
        max=1.0,
        help="Share of events sent as shop sessions (page views -> checkout -> payment).",
    ),
    seed: int = typer.Option(7),
    to: str = typer.Option("kafka", help="kafka or collector"),
    key: str = typer.Option(
        "", envvar="PULSE_WRITE_KEY", help="--to collector: an admin write key (--admin --write)."
    ),
) -> None:
    """Generate realistic traffic: Zipf merchants, the lunch-peak day shape, retries, late data."""
    from ingest import sinks

    settings = get_settings()
    spec = loadgen.LoadSpec(
        merchants=merchants,
        seed=seed,
        duplicate_rate=duplicates,
        late_rate=late,
        returning=loadgen.Returning() if returning else None,
    )
    gen = loadgen.Generator(spec)
    if days > 0:
        start, end = loadgen.days_ago_ms(days), loadgen.now_ms()
        in_sessions = round(events * sessions)
        source: Iterator[dict[str, Any]] = itertools.chain(
            gen.events(events - in_sessions, start, end),
            loadgen.shop_sessions(gen, in_sessions, start, end),
        )
    else:
        source = loadgen.paced(loadgen.with_sessions(gen, sessions, gen.event_at), rate, duration)
    stream = gen.stream(source)
    if to == "collector":
        if not key:
            raise typer.BadParameter("--to collector needs --key or PULSE_WRITE_KEY (a write key)")
        url = _collector_url(settings)
        batch = max(1, min(500, int(rate // 10) or 1))
        sent = sinks.send_to_collector(url, stream, key, batch=batch)
    else:
        bootstrap = resolve_endpoints(settings).kafka_bootstrap
        ensure_topics(settings, bootstrap)
        producer = sinks.kafka_producer(bootstrap)
        topic = names_for(settings).topic_raw
        sent = sinks.send_to_kafka(producer, topic, stream, invalid, random.Random(seed))
        producer.close()
    console.print(f"sent {sent} events")


def _collector_url(settings: Settings) -> str:
    from pulse.clients import read_stack

    url = read_stack(settings).get("collector_url")
    return str(url or f"http://{settings.collector_host}:{settings.collector_port}/events")


@keys_app.command("create")
def keys_create(
    merchant: str | None = typer.Option(None, help="The merchant this key may read (or write)."),
    admin: bool = typer.Option(False, help="A key for every merchant."),
    write: bool = typer.Option(
        False, help="A write key: sends events to the collector and cannot read the API."
    ),
    label: str = typer.Option("", help="A note to recognise the key by."),
) -> None:
    """Create an API key (read) or write key (--write); the key is printed once, as the last
    line."""
    if admin == (merchant is not None):
        raise typer.BadParameter("give exactly one of --merchant ID or --admin")
    settings = get_settings()
    client = opensearch_client(resolve_endpoints(settings).opensearch_url)
    key, principal = create_key(client, names_for(settings), merchant, admin, label, write)
    console.print(f"created key {principal.key_id}: {principal.scope}")
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys: id, scope (read|write, admin|merchant ID), state, creation, label; never
    the keys themselves."""
    settings = get_settings()
    client = opensearch_client(resolve_endpoints(settings).opensearch_url)
    for k in list_keys(client, names_for(settings)):
        state = "revoked" if k["revoked"] else "active"
        print(f"{k['key_id']}\t{k['scope']}\t{state}\t{k['created_at']}\t{k.get('label', '')}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key id shown by create/list.")) -> None:
    """Revoke a key: it stops working at once."""
    settings = get_settings()
    client = opensearch_client(resolve_endpoints(settings).opensearch_url)
    if not revoke(client, names_for(settings), key_id):
        console.print(f"no key with id {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


def _register_bench(group: typer.Typer) -> None:
    """`pulse bench ...`: the benchmarks live in bench/ of a source checkout, not in the wheel.

    An editable install maps only the product packages, so the checkout beside this package is
    put on the path when it holds bench/; an installed wheel answers with a clear error."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "bench" / "__init__.py").is_file() and str(checkout) not in sys.path:
        sys.path.append(str(checkout))
    try:
        from bench import cli as bench_cli
    except ModuleNotFoundError as exc:
        if exc.name != "bench":
            raise

        @group.callback(invoke_without_command=True)
        def unavailable() -> None:
            """Benchmarks run from a source checkout (bench/ is not installed)."""
            console.print("benchmarks run from a source checkout: bench/ is not installed")
            raise typer.Exit(2)

        return
    bench_cli.register(group)


for _module in (indexer_cli, rollups_cli, api_cli, ilm_cli, reprocess_cli):
    _module.register(app)
_register_bench(bench_app)
dlq_cli.register(app)  # pulse dlq stats|show|redrive|skip-batch
status_view.register(app)  # pulse status
fx_cli.register(app)  # pulse fx load|status


def main() -> None:
    app()


if __name__ == "__main__":
    main()
