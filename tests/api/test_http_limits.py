"""HTTP limits (api.http_limits, api.cli): POST only, bounded bodies, headers and answers,
explicit server timeouts; the largest answer under the defaults, checked with a real request."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from api.app import create_app
from api.keys import create_key
from pulse.naming import Names
from pulse.settings import Settings
from tests.api.conftest import post
from tests.api.live import serving

Q = '{ metrics(merchantId: "m1", range: {start: "2024-01-01T00:00:00Z", end: "2024-01-02T00:00:00Z"}, metrics: [EVENTS]) { totals { value } } }'  # noqa: E501


@pytest.fixture(scope="module")
def key(api_client: OpenSearch, api_names: Names) -> str:
    return create_key(api_client, api_names, "m1", admin=False)[0]


def coded(response: httpx.Response | Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    return str(body["errors"][0]["message"])


def test_queries_over_get_are_405_but_graphiql_loads(http: TestClient, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    response = http.get("/graphql", params={"query": Q}, headers=auth)
    assert "POST only" in coded(response, 405) and response.headers["allow"] == "POST"
    coded(http.get("/graphql", params={"query": Q}, headers={**auth, "Accept": "text/html"}), 405)
    coded(http.get("/graphql", headers=auth), 405)  # not a browser: no page either
    page = http.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_request_bodies_are_limited(http: TestClient, key: str, api_settings: Settings) -> None:
    limit = api_settings.api_max_body_bytes
    padding = " " * limit
    body = json.dumps({"query": Q + padding}).encode()
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    assert str(limit) in coded(http.post("/graphql", content=body, headers=auth), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    coded(http.post("/graphql", content=chunks(), headers=auth), 413)
    fits = json.dumps({"query": Q + " " * (limit - len(Q) - 100)}).encode()
    assert http.post("/graphql", content=fits, headers=auth).json()["data"]["metrics"]


def test_answers_over_the_response_limit_are_refused(
    api_settings: Settings, api_client: OpenSearch, key: str
) -> None:
    small = TestClient(
        create_app(api_settings.model_copy(update={"api_max_response_bytes": 4096}), api_client)
    )
    points = "series { points { start values { value } } }"
    week = Q.replace("2024-01-02", "2024-01-08").replace("totals { value }", points)
    body = post(small, key, week, {})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "4096" in body["errors"][0]["message"]
    assert "errors" not in post(small, key, Q, {})


def test_the_real_server_limits_headers_and_idle_connections(
    api_settings: Settings, api_client: OpenSearch, key: str
) -> None:
    """Real uvicorn as `pulse api` runs it: long headers are 431, incomplete headers over the
    limit 400; a connection that sends nothing, or trickles its headers, is closed at the
    header deadline; pipelined requests are answered; an idle keep-alive connection is closed
    at the keep-alive timeout."""
    settings = api_settings.model_copy(
        update={"api_keepalive_timeout_s": 1.0, "api_header_timeout_s": 1.5}
    )
    with serving(settings, api_client) as url:
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, timeout=30) as client:
            ok = client.post("/graphql", json={"query": Q}, headers=auth)
            assert ok.status_code == 200 and "errors" not in ok.json()
            huge = {**auth, "X-Padding": "x" * settings.api_max_header_bytes}
            refused = client.post("/graphql", json={"query": Q}, headers=huge)
            assert refused.status_code == 431 and "headers are longer" in refused.text
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as silent:
            assert silent.recv(1) == b""  # closed: no request within the header deadline
        with socket.create_connection((host, int(port)), timeout=10) as trickle:
            trickle.sendall(b"POST /graphql HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            started = time.monotonic()
            with pytest.raises(OSError):  # the server closed it: sends fail
                while time.monotonic() - started < 8:  # a byte every 0.1 s, never done
                    trickle.sendall(b"a")
                    time.sleep(0.1)
        with socket.create_connection((host, int(port)), timeout=10) as split:
            # Headers not complete yet and longer than the limit: refused at once (httptools
            # alone would buffer them until the deadline), as h11's buffer limit did.
            head = b"POST /graphql HTTP/1.1\r\nHost: x\r\nX-Long: "
            split.sendall(head + b"a" * settings.api_max_header_bytes)
            assert split.recv(65536).startswith(b"HTTP/1.1 400")
            assert split.recv(1) == b""  # and closed
        body = json.dumps({"query": Q}).encode()
        request = (
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        with socket.create_connection((host, int(port)), timeout=10) as piped:
            piped.sendall(request * 2)  # pipelined: both answered
            seen = b""
            while seen.count(b"HTTP/1.1 200") < 2:
                chunk = piped.recv(65536)
                assert chunk, seen
                seen += chunk
        with socket.create_connection((host, int(port)), timeout=10) as again:
            again.sendall(request)  # answered, then the next headers trickle: the deadline
            assert again.recv(65536).startswith(b"HTTP/1.1 200")  # is armed again
            again.sendall(b"POST /graphql HTTP/1.1\r\nX-Slow: ")
            started = time.monotonic()
            with pytest.raises(OSError):
                while time.monotonic() - started < 8:
                    again.sendall(b"a")
                    time.sleep(0.1)
        with socket.create_connection((host, int(port)), timeout=10) as kept:
            kept.sendall(request)
            assert kept.recv(65536).startswith(b"HTTP/1.1 200")
            while kept.recv(65536):
                pass  # the rest of the answer, then the close after the keep-alive timeout


def test_the_largest_answer_under_the_defaults(
    http: TestClient, key: str, api_settings: Settings
) -> None:
    """The heaviest answer a request can get without aliases inside a report: 50,000 points
    (the budget) as 10 aliased reports (the alias limit) of 5,000 minutes (max_buckets) with
    one metric each, so every point carries its own bucket; every field and __typename
    selected, a +05:45 zone for the longest timestamps. docs/api.md bounds a point at 219
    bytes (24-character numbers): 50,000 x 219 B + report overhead <= 225 B a point (11.25
    MB). Longer answers (aliases repeating leaves inside each point) are cut at
    api_max_response_bytes (16 MiB)."""
    values = "values { __typename metric value errorBound }"
    sel = (
        f"{{ __typename series {{ __typename group {{ __typename dimension value }} points "
        f"{{ __typename start complete {values} }} }} totals {{ __typename metric value "
        f"errorBound }} meta {{ __typename sources watermark tookMs }} }}"
    )
    one = (
        'metrics(merchantId: "m1", timezone: "Asia/Kathmandu", granularity: MINUTE, '
        'range: {start: "2024-01-01T00:00:00Z", end: "2024-01-04T11:20:00Z"}, '
        f"metrics: [PAYMENT_SUCCESS_RATE]) {sel}"
    )
    query = "{ " + " ".join(f"a{i}: {one}" for i in range(10)) + " }"
    auth = {"Authorization": f"Bearer {key}"}
    response = http.post("/graphql", json={"query": query}, headers=auth)
    body = response.json()
    assert "errors" not in body, body
    reports = body["data"].values()
    points = sum(len(p["values"]) for r in reports for s in r["series"] for p in s["points"])
    assert points == api_settings.max_request_points
    size = len(response.content)
    assert size <= 225 * points < api_settings.api_max_response_bytes, size
    print(f"largest answer: {size} bytes for {points} points ({size / points:.0f} B/point)")
