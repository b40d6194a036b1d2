"""api.graphql_http: POST /graphql answered without FastAPI's routing and dependency
injection, exactly as strawberry's FastAPI route answers it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL

from api.app import Router, create_app
from api.graphql_http import GraphQLPost, Observe
from api.keys import create_key
from api.schema import build_schema
from pulse.naming import Names
from pulse.settings import Settings

INT = """query($l: Int) { metrics(merchantId: "m1", range: {start: "2024-01-01T00:00:00Z",
  end: "2024-01-01T03:00:00Z"}, metrics: [EVENTS], limit: $l) { totals { value } } }"""
JSON_UTF8 = "application/json; charset=utf-8"
JSON = {"Content-Type": "application/json"}
Q = """query($m: ID!) { metrics(merchantId: $m, range: {start: "2024-01-01T00:00:00Z",
  end: "2024-01-01T03:00:00Z"}, metrics: [EVENTS, GROSS_SALES]) {
  totals { metric value currency } series { points { start complete values { value } } } } }"""


@pytest.fixture(scope="module")
def sides(
    api_settings: Settings, api_client: OpenSearch, api_names: Names
) -> tuple[TestClient, TestClient, dict[str, str]]:
    """(the app, the app without its fast path: strawberry's FastAPI route answers, auth)."""
    app, routed = create_app(api_settings, api_client), create_app(api_settings, api_client)
    routed.user_middleware = [m for m in routed.user_middleware if m.cls is not GraphQLPost]
    assert len(routed.user_middleware) == len(app.user_middleware) - 1
    key = create_key(api_client, api_names, "m1", admin=False)[0]
    auth = {"Authorization": f"Bearer {key}"}
    return TestClient(app), TestClient(routed), auth


REQUESTS: list[dict[str, Any]] = [
    {"json": {"query": Q, "variables": {"m": "m1"}}},
    {"json": {"query": Q, "variables": {"m": "m2"}}},  # FORBIDDEN for this key
    {"json": {"query": Q, "variables": {}}},  # a missing variable
    {"json": {"query": "{ metrics("}},
    {"json": {"query": "{ __typename }", "operationName": "Nope"}},
    {"json": {"query": "mutation { x }"}},
    {"json": {}},
    {"json": {"query": ""}},
    {"json": [{"query": "{ __typename }"}]},
    {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    {"content": b"query=x", "headers": {"Content-Type": "text/plain"}},
    {"content": b"", "headers": {"Content-Type": "application/json"}},
    # What GraphQLPost reads itself (a single operation as JSON) and what it leaves to the view.
    {"json": {"query": Q, "variables": {"m": "m1"}}, "headers": {"Content-Type": JSON_UTF8}},
    {
        "json": {"query": Q, "variables": {"m": "m1"}},
        "headers": {"Content-Type": "Application/JSON"},
    },
    # A coercion error quotes the value: integers beyond 64 bits stay so (orjson: floats).
    {"json": {"query": INT, "variables": {"l": 123456789012345678901234567890}}},
    {"json": {"query": INT, "variables": {"l": 1.5}}},
    {"json": {"query": INT, "variables": {"l": 7}}},
    {"content": b'{"query": "{ __typename }", "variables": {"x": NaN}}', "headers": JSON},
    {"content": b'{"query": "{ __typename }", "variables": {"m": "\\ud800"}}', "headers": JSON},
    {"content": b'\xef\xbb\xbf{"query": "{ __typename }"}', "headers": JSON},
    {"content": json.dumps({"query": "{ __typename }"}).encode("utf-16"), "headers": JSON},
    {"content": b'{"query": "{ __typename }", "query": "{ nope }"}', "headers": JSON},
    {"content": b'{"query": "{ __typename }"} x', "headers": JSON},
    {"json": {"query": None}},
    {"json": {"query": 5}},
    {"json": "{ __typename }"},
    {"json": {"query": "{ __typename }", "variables": [1]}},
    {"json": {"query": "{ __typename }", "variables": None, "extensions": None}},
    {"json": {"query": "{ __typename }", "extensions": {"persistedQuery": {"version": 1}}}},
    {"json": {"query": "{ __typename }", "extensions": "x"}},
    {"json": {"query": "{ __typename }", "operationName": 5}},
    {"json": {"query": "query A { __typename } query B { __typename }", "operationName": "B"}},
    {"json": {"query": "query A { __typename } query B { __typename }"}},
    {"json": {"query": "{ nope }"}},
    {"json": {"query": "subscription { x }"}},
    {"json": {"query": "{ __typename }"}, "headers": {"Accept": "multipart/mixed"}},
    {"json": {"query": "{ __typename }"}, "headers": {"Accept": "text/event-stream"}},
    {"json": {"query": "{ __typename }"}, "headers": {"Accept": "application/json"}},
    {"content": [b'{"query": ', b'"{ __typename }"}'], "headers": JSON},  # streamed
]


@pytest.mark.parametrize("request_kwargs", REQUESTS, ids=range(len(REQUESTS)))
def test_the_fast_path_answers_as_the_route_does(
    sides: tuple[TestClient, TestClient, dict[str, str]], request_kwargs: dict[str, Any]
) -> None:
    fast, routed, auth = sides
    kwargs = {**request_kwargs, "headers": {**auth, **request_kwargs.get("headers", {})}}
    ours, theirs = fast.post("/graphql", **kwargs), routed.post("/graphql", **kwargs)
    assert ours.status_code == theirs.status_code
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    assert ours.content == theirs.content


def test_a_single_json_operation_skips_the_views_reading(
    sides: tuple[TestClient, TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GraphQLPost reads a single JSON operation itself; strawberry's view reads the rest."""
    fast, _, auth = sides
    post = next(m for m in fast.app.user_middleware if m.cls is GraphQLPost)  # type: ignore[attr-defined]
    view, ran = post.kwargs["view"], []
    run = view.run

    async def counted(**kwargs: Any) -> Any:
        ran.append(1)
        return await run(**kwargs)

    monkeypatch.setattr(view, "run", counted)
    assert fast.post("/graphql", json={"query": Q, "variables": {"m": "m1"}}, headers=auth)
    assert ran == []
    assert fast.post("/graphql", json=[{"query": "{ __typename }"}], headers=auth)
    assert ran == [1]


def test_a_view_with_stream_transports_reads_requests_that_ask_for_them() -> None:
    """The app's router streams nothing over HTTP (its subscription protocols are websocket
    ones); a router that does gets every request whose Accept asks for a stream."""
    view = Router(build_schema([]), subscription_protocols=(GRAPHQL_SSE_PROTOCOL,))
    post = GraphQLPost(_silent, view, _no_context)
    body = json.dumps({"query": "{ __typename }"}).encode()
    plain = [(b"content-type", b"application/json")]
    assert post._plain({"headers": plain}, body) is not None
    asks = [*plain, (b"accept", b"text/event-stream")]
    assert post._plain({"headers": asks}, body) is None


async def _no_context(request: Any) -> None:
    return None


def test_only_post_to_graphql_takes_the_fast_path(
    sides: tuple[TestClient, TestClient, dict[str, str]],
) -> None:
    fast, routed, _ = sides
    page = fast.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    for method in ("PUT", "PATCH", "DELETE"):
        ours, theirs = fast.request(method, "/graphql"), routed.request(method, "/graphql")
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)


async def _silent(scope: Scope, receive: Receive, send: Send) -> None:
    return None  # as RequestLimits does when the client leaves before its body is read


async def _fails_before(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("secret")


async def _fails_after(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("secret")


def observed(app: ASGIApp) -> tuple[list[Message], CollectorRegistry, BaseException | None]:
    """What ``Observe`` around ``app`` sends for one POST /graphql, its metrics, and what it
    raised."""
    registry = CollectorRegistry()
    requests = Counter("r", "r", ["path", "status"], registry=registry)
    latency = Histogram("l", "l", ["path"], registry=registry)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/graphql", "headers": [],
             "query_string": b""}  # fmt: skip
    try:
        asyncio.run(Observe(app, requests, latency, 1000)(scope, receive, send))
    except RuntimeError as raised:
        return sent, registry, raised
    return sent, registry, None


def count(registry: CollectorRegistry, status: str) -> float | None:
    return registry.get_sample_value("r_total", {"path": "/graphql", "status": status})


def test_the_observer_counts_every_ending() -> None:
    sent, registry, raised = observed(_silent)
    assert sent == [] and raised is None and count(registry, "499") == 1
    sent, registry, raised = observed(_fails_before)
    body = json.loads(b"".join(m.get("body", b"") for m in sent))
    assert sent[0]["status"] == 200 and body["errors"][0]["extensions"]["code"] == "INTERNAL"
    assert raised is None and "secret" not in str(body) and count(registry, "200") == 1
    sent, registry, raised = observed(_fails_after)  # begun: nothing else can be sent
    assert [m["type"] for m in sent] == ["http.response.start"] and raised is not None
