"""The `pulse` commands of the api package (registered by pulsectl.cli)."""

from __future__ import annotations

from typing import Any

import typer

from pulse.settings import Settings


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
    uvicorn.run(app, **server_options(settings))


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's configuration, every limit explicit (docs/api.md "Limits"): httptools with a
    deadline for request headers and a buffer limit for headers split over reads
    (``api.http_limits.HeaderDeadline``; answers in one write: ``api.http_server``), uvloop,
    keep-alive timeout, concurrency cap (503 past it), graceful-shutdown timeout.
    Body and header-total limits: api.http_limits.RequestLimits."""
    from api.http_server import PulseHttp

    limits = {
        "header_timeout_s": settings.api_header_timeout_s,
        "max_header_bytes": settings.api_max_header_bytes,
    }
    return {
        "host": settings.api_host,
        "port": settings.api_port,
        # httptools (llhttp) and uvloop instead of h11 and asyncio's loop, an answer's head
        # and body in one write: ~0.3 ms less CPU per request (decision 0295); httptools and
        # uvloop are compiled wheels pinned in pyproject.toml.
        "http": type("PulseHttp", (PulseHttp,), limits),
        "loop": "uvloop",
        "timeout_keep_alive": int(max(1, settings.api_keepalive_timeout_s)),
        "limit_concurrency": settings.api_max_concurrency,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
        "log_config": None,
        "access_log": False,
        "server_header": False,
    }
