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
  the routing and dependency injection around it. Everything else goes on to FastAPI. A
  single operation in a JSON object (the API's every real request) it reads itself — msgspec
  instead of the standard library's ``json``, no request adapter or media-type parsing by
  ``email.message`` — and hands to the view's own steps (``execute_single``,
  ``process_result``, ``create_response``): ~0.1 ms less CPU per request (decision 0295).
  Anything else (batches, other media types, malformed JSON, members of the wrong type) the
  view reads and answers itself, so its errors stay its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec
from cross_web import HTTPException
from fastapi import Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from graphql import GraphQLError
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from api.errors import Code
from api.http_limits import graphql_error, refuse_get, too_large_error

log = logging.getLogger(__name__)

GRAPHQL = "/graphql"
KNOWN = frozenset({GRAPHQL, "/healthz", "/readyz", "/metrics"})
CLIENT_GONE = 499  # the status counted for a request that got no answer: its client left
SUB_RESPONSE = "pulse.sub_response"  # the scope key GraphQLPost hands strawberry's sub-response in


class Runs(Protocol):
    """strawberry's view: ``run`` answers one request with the given context; the other
    methods are the steps ``run`` takes for one operation over POST."""

    async def run(self, request: Request, context: Any, root_value: Any) -> Response: ...

    def _get_stream_transport_from_headers(self, headers: Mapping[str, str]) -> object: ...

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult: ...

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse: ...

    def _handle_errors(self, errors: list[GraphQLError], response_data: Any) -> None: ...

    def create_response(self, response_data: Any, sub_response: Response) -> Response: ...


class _Method:
    """What ``execute_single`` reads of strawberry's request adapter: the method."""

    method = "POST"


_POST = _Method()
_JSON = msgspec.json.Decoder()  # unlike orjson, integers beyond 64 bits stay integers
PLAIN_JSON = frozenset({b"application/json", b"application/json; charset=utf-8"})


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
        sub = scope[SUB_RESPONSE] = sub_response()
        context = await self.context(request)
        body, receive = await _read_body(receive)
        try:
            data = self._plain(scope, body)
            if data is None:  # anything else: strawberry's view reads it all again
                request = Request(scope, receive)
                response = await self.view.run(request=request, context=context, root_value=None)
            else:
                response = await self._answer(request, data, context, sub)
        except HTTPException as e:  # as strawberry's FastAPI route answers it
            response = PlainTextResponse(e.reason, status_code=e.status_code)
        await response(scope, receive, send)

    def _plain(self, scope: Scope, body: bytes | None) -> GraphQLRequestData | None:
        """The request as strawberry's view would read it, when it is a single operation in
        a JSON object under a plain JSON media type, which msgspec reads to the values the
        standard library's ``json`` gives; None for anything else (batches, other media types,
        stream transports, malformed or unusual JSON, wrong member types), which the view
        then reads and answers itself, errors included."""
        if body is None:
            return None
        content_type = accept = None
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"accept" and accept is None:
                accept = value
        if content_type not in PLAIN_JSON:
            return None
        # The view answers over a stream transport when the Accept header asks for one.
        asks = {"accept": accept.decode("latin-1")} if accept is not None else {}
        if self.view._get_stream_transport_from_headers(asks) is not None:
            return None
        try:
            parsed = _JSON.decode(body)
        except msgspec.DecodeError:
            return None
        if not isinstance(parsed, dict):
            return None
        query, variables = parsed.get("query"), parsed.get("variables")
        name, extensions = parsed.get("operationName"), parsed.get("extensions")
        if not isinstance(query, str) or not isinstance(name, (str, type(None))):
            return None
        if not isinstance(variables, (dict, type(None))):
            return None
        if not isinstance(extensions, (dict, type(None))):
            return None
        return GraphQLRequestData(
            query=query,
            variables=variables,
            operation_name=name,
            extensions=extensions,
            protocol="http",
        )

    async def _answer(
        self, request: Request, data: GraphQLRequestData, context: Any, sub: Response
    ) -> Response:
        """The view's own steps for one operation over POST (``AsyncBaseHTTPView.run`` after
        reading the body): execute, process the result, make the response."""
        view = self.view
        result = await view.execute_single(
            request=request,
            request_adapter=_POST,
            sub_response=sub,
            context=context,
            root_value=None,
            request_data=data,
        )
        response_data = await view.process_result(request=request, result=result)
        if result.errors:
            view._handle_errors(result.errors, response_data)
        return view.create_response(response_data=response_data, sub_response=sub)


async def _read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The request's body (None when the client left first), and a receive that hands the
    same messages over again, then waits on the real one."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            body = None
            break
        if not message.get("more_body", False):
            body = b"".join(m.get("body", b"") for m in messages)
            break
    pending = iter(messages)

    async def replay() -> Message:
        return next(pending, None) or await receive()

    return body, replay


def sub_response() -> Response:
    """What FastAPI injects as a route's ``response: Response``: no body, no status (strawberry
    answers 200 unless a resolver set one), headers a resolver may add."""
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    return response
