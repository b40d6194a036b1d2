"""The `pulse` commands of the api package (registered by pulse.cli)."""

from __future__ import annotations

import typer


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add this package's commands to the root CLI and to `pulse bench`."""
    root.command(name="api")(api_command)
    bench.command(name="query")(bench_query)


def api_command() -> None:
    """Serve GraphQL on settings.api_host:api_port in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    from api.app import create_app
    from pulse.logs import configure_logging
    from pulse.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = create_app(settings)
    # uvicorn handles SIGTERM/SIGINT itself: it stops accepting, drains, then returns.
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )


def bench_query(
    events: int = typer.Option(5_000_000, help="Raw events to generate (skipped if present)."),
    requests: int = typer.Option(200, help="Requests per report and source."),
    merchants: int = typer.Option(200),
    seed: int = typer.Option(7),
    namespace: str = typer.Option("benchq", help="Namespace of the bench's indices."),
) -> None:
    """30-day hourly and 90-day daily reports for one merchant, normal vs forced raw (JSON)."""
    from api.bench import run

    run(events=events, requests=requests, merchants=merchants, seed=seed, namespace=namespace)
