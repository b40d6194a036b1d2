"""HTTP limits of /graphql: POST only, a bounded request body, a bounded answer.

- Queries only over POST: a GET may only fetch GraphiQL's page (``Accept: text/html`` and no
  query string); any other GET is 405. (A GET query can be replayed from a link, a log line
  or a cache; POST is what the API promises.)
- ``RequestLimits`` (pure ASGI): request headers longer than ``max_header_bytes`` in all are
  431 (``HeaderDeadline``'s own limit only applies to headers split over reads); it reads at most
  ``max_body_bytes`` of a body before the app sees any of it: a longer one (declared or
  streamed) is 413, a bad Content-Length 400.
- ``HeaderDeadline``: a connection must deliver a request's headers within
  ``api_header_timeout_s`` of opening or of its previous response, or it is closed. uvicorn
  starts its keep-alive timer only after a response and cancels it on any byte, so a client
  that connects and sends nothing, or trickles a byte a second, held a connection (and a
  place under ``limit_concurrency``) forever. It also bounds the bytes of headers not yet
  complete (400 and closed past ``max_header_bytes``).
- ``too_large_error``: an answer longer than ``api_max_response_bytes`` is replaced by it
  (api.graphql_http.Observe).
  The cost budget (api.budget) keeps honest requests far below it; it is the backstop for
  amplification the budget does not price (aliases repeating leaves inside every point).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import Code


def graphql_error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    error = {"message": message, "extensions": {"code": Code.BAD_USER_INPUT.value}}
    return JSONResponse({"data": None, "errors": [error]}, status_code=status, headers=headers)


def refuse_get(request: Request) -> Response | None:
    """405 for a GET that is not a browser asking for GraphiQL's page; None otherwise."""
    if request.method not in ("GET", "HEAD"):
        return None
    wants_page = "text/html" in request.headers.get("accept", "")
    if wants_page and not request.url.query:
        return None
    return graphql_error(
        "queries are accepted over POST only (GET serves GraphiQL's page to browsers)",
        405,
        {"Allow": "POST"},
    )


def too_large_error(length: int, max_bytes: int) -> Response:
    """What replaces an answer of ``length`` bytes, more than ``max_bytes``."""
    return graphql_error(
        f"the answer would be {length} bytes, more than the limit of {max_bytes}; "
        "select fewer fields or aliases, or ask for fewer points",
        200,
    )


class RequestLimits:
    """Refuses long headers, and bodies longer than ``max_body_bytes`` before the app reads
    any of them."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        if sum(len(name) + len(value) + 4 for name, value in headers) > self.max_header_bytes:
            text = f"the request headers are longer than {self.max_header_bytes} bytes"
            await graphql_error(text, 431)(scope, receive, send)
            return
        declared = dict(headers).get(b"content-length")
        if declared is not None and not declared.strip().isdigit():
            await graphql_error("Content-Length is not a number", 400)(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is longer than the limit of {self.max_bytes} bytes"
        await graphql_error(message, 413)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the buffered body over once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            message: dict[str, Any] = {"type": "http.request", "body": body, "more_body": False}
            return message
        return await receive()

    return replay


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers and a bound on
    the bytes buffered for headers not yet complete (see above and decision 0295).

    httptools (llhttp, C) keeps a header split over reads in memory without limit, where h11
    refused a receive buffer over ``h11_max_incomplete_event_size``; this keeps that rule:
    more than ``max_header_bytes`` received while a request's headers are still incomplete is
    answered 400 and the connection closed, as h11's protocol answered it. Headers that
    arrive whole go on to ``RequestLimits`` (431 with a coded error) as before.
    """

    header_timeout_s = 10.0
    max_header_bytes = 16 * 1024
    _deadline: asyncio.TimerHandle | None = None
    _armed_for: object = None
    _in_head = True  # bytes received now belong to a request's headers (or precede them)
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        waiting = self.cycle is not None and not self.cycle.response_complete
        if not waiting:  # no pipelined request already read: wait for one
            self._arm()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.cycle is not self._armed_for:  # a new request's headers are complete
            self._disarm()
        too_long = self._in_head and self._head_bytes > self.max_header_bytes
        if too_long and not self.transport.is_closing():
            self.send_400_response("Invalid HTTP request received.")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._armed_for = self.cycle
            self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._armed_for = self.cycle

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()
