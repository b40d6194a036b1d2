"""The `pulse` commands of the api package (registered by pulsectl.cli)."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Add this package's commands to the root CLI."""
    root.command(name="api")(api_command)


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
