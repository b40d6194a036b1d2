"""The browser pages Pulse serves itself: a landing page, the merchant dashboard and GraphiQL.

Every script, style and font comes from this origin (``/static``; the pinned third-party builds
in ``api/web/static/vendor`` are copied there from npm by ``make web``, decision 0160), and the
Content-Security-Policy tells the browser to load and connect to nothing else. The pages use only
the public GraphQL API at ``/graphql``, with the key the user pastes.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

log = logging.getLogger(__name__)
WEB = Path(__file__).parent / "web"
STATIC = WEB / "static"
VENDOR = STATIC / "vendor"
# The third-party builds the pages load (make web copies them, with their licences).
VENDOR_FILES = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "graphiql.min.css",
    "uPlot.iife.min.js",
    "uPlot.min.css",
)
# Same origin only. GraphiQL and uPlot set element styles from script ('unsafe-inline' styles);
# no inline or remote script runs, and fetch/XHR reach this origin only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@cache
def page(name: str) -> str:
    """The HTML of ``api/web/<name>`` (read once per process)."""
    return (WEB / name).read_text(encoding="utf-8")


def html(name: str) -> HTMLResponse:
    return HTMLResponse(page(name), headers=HEADERS)


def missing_vendor_files() -> list[str]:
    return [name for name in VENDOR_FILES if not (VENDOR / name).is_file()]


class Static(StaticFiles):
    """``/static``: the pages' own scripts and the vendored builds, with the same headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
        return response


def add_pages(app: FastAPI) -> None:
    """Mount ``/``, ``/dashboard`` and ``/static`` (GraphiQL is served by api.app's router)."""
    missing = missing_vendor_files()
    if missing:  # the pages would render without GraphiQL or charts: say why, loudly
        log.error("browser libraries missing (run make web): %s", ", ".join(missing))

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return html("index.html")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard(_request: Request) -> HTMLResponse:
        return html("dashboard.html")

    app.mount("/static", Static(directory=STATIC, check_dir=False), name="static")
