"""``pulse fx load FILE.csv`` and ``pulse fx status``: the exchange rates reportingCurrency uses.

The rates live in the engine (storage.fx), so every API replica reads the same ones and a
load is visible to the next report without a restart.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from pulse.clients import opensearch_client, resolve_endpoints
from pulse.naming import names_for
from pulse.settings import get_settings
from storage import fx

console = Console(stderr=True)


def fx_load(
    file: Path = typer.Argument(..., help="CSV with the header date,currency,per_usd."),
) -> None:
    """Load exchange rates (units of currency per 1 USD on a UTC date). Idempotent: loading
    the same file again changes nothing; a different value for a (date, currency) replaces
    it. A file with a bad line loads nothing."""
    try:
        rates = fx.parse_csv(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, fx.RatesFileError) as exc:
        console.print(f"{file}: {exc}")
        raise typer.Exit(2) from None
    settings = get_settings()
    client = opensearch_client(resolve_endpoints(settings).opensearch_url)
    result = fx.load(client, names_for(settings), rates)
    print(f"{len(rates)} rates: {result.new} new, {result.changed} changed, "
          f"{result.unchanged} unchanged")  # fmt: skip


def fx_status() -> None:
    """Coverage per currency: first and last date, rates, the days a report can convert
    (through last + 7) and the gaps inside (days more than 7 after the previous rate)."""
    settings = get_settings()
    client = opensearch_client(resolve_endpoints(settings).opensearch_url)
    found = fx.coverage(client, names_for(settings))
    if not found:
        print("no exchange rates loaded (pulse fx load FILE.csv); USD needs none")
        return
    print("currency\tfirst\tlast\trates\tconverts through\tgaps")
    for c in found:
        gaps = ", ".join(f"{a}..{b}" for a, b in c.gaps) or "none"
        print(f"{c.currency}\t{c.first}\t{c.last}\t{c.rates}\t{c.covered_through}\t{gaps}")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Exchange rates for reportingCurrency (units per USD per UTC date).",
        no_args_is_help=True,
    )
    group.command("load")(fx_load)
    group.command("status")(fx_status)
    app.add_typer(group, name="fx")
