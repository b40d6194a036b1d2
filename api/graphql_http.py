"""The HTTP path of a GraphQL request as plain ASGI (decision 0255).

A POST to /graphql used to pass, before strawberry saw it, through starlette's
``BaseHTTPMiddleware`` (the request observer: a task, memory streams and a streaming
response per request) and FastAPI's routing and dependency injection (the context getter as a
dependency): ~1 ms of the API's CPU per request, more than strawberry's own work for a small
query. Here both are plain ASGI, with the same answers:

- ``Observe`` counts and times every request (``pulse_api_requests``), refuses GraphQL over
  GET (api.http_limits), gives strawberry's plain-text 4xx answers the GraphQL error shape
  with a code, replaces answers over the response limit, and turns an unhandled exception
  into a coded INTERNAL error, never a 500 with a trace.
- ``GraphQLPost`` answers ``POST /graphql`` the way strawberry's FastAPI route does
  (``GraphQLRouter.run`` with the request's context, ``HTTPException`` as plain text), without
  the routing and dependency injection around it. Everything else goes on to FastAPI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from cross_web import HTTPException
from fastapi import Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import Code
from api.http_limits import graphql_error, refuse_get, too_large_error

log = logging.getLogger(__name__)

GRAPHQL = "/graphql"
KNOWN = frozenset({GRAPHQL, "/healthz", "/readyz", "/metrics"})
CLIENT_GONE = 499  # the status counted for a request that got no answer: its client left
SUB_RESPONSE = "pulse.sub_response"  # the scope key GraphQLPost hands strawberry's sub-response in


class Runs(Protocol):
    """strawberry's view: ``run`` answers one request with the given context."""

    async def run(self, request: Request, context: Any, root_value: Any) -> Response: ...


def path_label(path: str) -> str:
    """A bounded label set for the request metrics."""
    if path in KNOWN:
        return path
    if path in ("/", "/dashboard"):
        return "pages"
    return "/static" if path.startswith("/static/") else "other"


def internal(path: str) -> Response:
    error = {"message": "internal error", "extensions": {"code": Code.INTERNAL.value}}
    if path == GRAPHQL:
        return JSONResponse({"data": None, "errors": [error]}, status_code=200)
    return JSONResponse({"error": error}, status_code=503)


def coded_request_error(text: str, status: int) -> Response:
    """Strawberry's plain-text answer to a request it cannot read (no query, body not JSON,
    wrong method or media type) in the GraphQL error shape, with a code."""
    return graphql_error(text.strip() or "bad request", status)


class Observe:
    """The request observer and the /graphql answer rules (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        requests: Counter,
        latency: Histogram,
        max_response_bytes: int,
    ) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency
        self.max_response_bytes = max_response_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        label = path_label(scope["path"])
        started = time.perf_counter()
        sent = _Sent(send)
        try:
            asks_get = label == GRAPHQL and scope["method"] in ("GET", "HEAD")
            refused = refuse_get(Request(scope)) if asks_get else None
            if refused is not None:
                await refused(scope, receive, sent)
            elif label == GRAPHQL:
                await self.app(
                    scope, receive, _Answer(sent, scope, receive, self.max_response_bytes)
                )
            else:
                await self.app(scope, receive, sent)
        except Exception:  # never a 500 with a trace: log it, answer a coded error
            log.exception("unhandled error serving a request")
            if sent.status is not None:
                raise  # the answer has begun: nothing else can be sent on it
            await internal(label)(scope, receive, sent)
        self.latency.labels(label).observe(time.perf_counter() - started)
        # Nothing sent: the client went away before its request was read (RequestLimits).
        self.requests.labels(label, str(sent.status or CLIENT_GONE)).inc()


class _Sent:
    """``send``, remembering the status of the answer that went out."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self.send(message)


class _Answer:
    """The /graphql answer rules on the way out: a plain-text 4xx is re-sent as a coded
    GraphQL error, an answer declared longer than the limit as the limit's error. Only those
    two are held back (whole, they are small or dropped); every other answer streams on."""

    def __init__(self, send: _Sent, scope: Scope, receive: Receive, max_bytes: int) -> None:
        self.send, self.scope, self.receive, self.max_bytes = send, scope, receive, max_bytes
        self.held: Message | None = None  # the start of an answer being replaced
        self.body: list[bytes] | None = None  # its text, kept when it is a plain-text 4xx

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            replaced = self._replaced(message)
            if replaced is not None:
                self.held, self.body = message, ([] if replaced else None)
                return
        elif message["type"] == "http.response.body" and self.held is not None:
            if self.body is not None:
                self.body.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._replacement()(self.scope, self.receive, self.send)
            return
        await self.send(message)

    def _replaced(self, start: Message) -> bool | None:
        """True: re-sent as a coded error (its text kept); False: replaced by the limit's
        error (its body dropped); None: sent on as it is."""
        status, headers = int(start["status"]), _headers(start)
        if 400 <= status < 500 and headers.get(b"content-type", b"").startswith(b"text/plain"):
            return True
        length = headers.get(b"content-length", b"")
        return False if length.isdigit() and int(length) > self.max_bytes else None

    def _replacement(self) -> Response:
        assert self.held is not None
        if self.body is not None:
            return coded_request_error(b"".join(self.body).decode(), int(self.held["status"]))
        return too_large_error(int(_headers(self.held)[b"content-length"]), self.max_bytes)


def _headers(start: Message) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in start.get("headers", ())}


class GraphQLPost:
    """``POST /graphql`` straight to strawberry's view, as its FastAPI route would run it."""

    def __init__(
        self,
        app: ASGIApp,
        view: Runs,
        context: Callable[[Request], Awaitable[Any]],
    ) -> None:
        self.app = app
        self.view = view
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != GRAPHQL:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        scope[SUB_RESPONSE] = sub_response()
        context = await self.context(request)
        try:
            response = await self.view.run(request=request, context=context, root_value=None)
        except HTTPException as e:  # as strawberry's FastAPI route answers it
            response = PlainTextResponse(e.reason, status_code=e.status_code)
        await response(scope, receive, send)


def sub_response() -> Response:
    """What FastAPI injects as a route's ``response: Response``: no body, no status (strawberry
    answers 200 unless a resolver set one), headers a resolver may add."""
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    return response
