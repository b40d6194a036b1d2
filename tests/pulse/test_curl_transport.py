"""The libcurl transport (pulse.curl_transport, decision 0290) against the stock one: the same
answers and exceptions from the real engine, the same request on the wire (auth included), the
same TLS verification, and failures that map to the same API errors (api.engine)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from api.engine import EMPTY, mget, search
from api.errors import EngineTimeout, EngineUnavailable, UnexpectedAnswer
from pulse.clients import opensearch_client
from pulse.curl_transport import CurlTransport, Unsupported

Call = Callable[[OpenSearch], Any]


def outcome(call: Call, client: OpenSearch) -> tuple[str, Any]:
    """What a call gives: its answer (without the engine's timing), or its exception's class,
    status, error and body."""
    try:
        answer = call(client)
    except TransportError as exc:
        info = dict(exc.info) if isinstance(exc.info, dict) else exc.info
        return type(exc).__name__, (exc.status_code, exc.error, info)
    if isinstance(answer, dict):
        answer.pop("took", None)
    return "answer", answer


@pytest.fixture(scope="module")
def loaded(opensearch_url: str) -> Iterator[str]:
    """Two day indices behind one alias, 30 documents each; yields the alias."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    client = opensearch_client(opensearch_url)
    for day in ("2026.11.01", "2026.11.02"):
        index = f"{prefix}-events-{day}"
        client.indices.create(index=index, body={"aliases": {f"{prefix}-events": {}}})
        lines = []
        for i in range(30):
            lines.append(json.dumps({"index": {"_index": index, "_id": f"{day}-{i}"}}))
            lines.append(json.dumps({"m": f"m{i % 3}", "v": i, "t": 1_700_000_000_000 + i}))
        client.bulk(body="\n".join(lines) + "\n", refresh=True)
    yield f"{prefix}-events"
    client.indices.delete(index=f"{prefix}-*")


def test_same_answers_and_exceptions_as_the_stock_transport(
    opensearch_url: str, loaded: str
) -> None:
    stock = opensearch_client(opensearch_url, connections=4)
    fast = opensearch_client(opensearch_url, connections=4, curl=True)
    assert isinstance(fast.transport, CurlTransport)
    first = loaded.replace("-events", "-events-2026.11.01")
    aggs = {"size": 2, "sort": [{"v": "asc"}], "aggs": {"m": {"terms": {"field": "m"}}}}
    routed = {"ignore_unavailable": "true", "allow_no_indices": "true"}
    calls: dict[str, Call] = {
        "search": lambda c: c.search(index=loaded, body=aggs, request_timeout=5, params=routed),
        "search, missing index": lambda c: c.search(index=f"{loaded}-none", body=aggs),
        "search, missing index ignored": lambda c: c.search(
            index=f"{loaded}-none", body=aggs, params=routed
        ),
        "search, bad query": lambda c: c.search(index=loaded, body={"query": {"nope": {}}}),
        "mget": lambda c: c.mget(
            body={
                "docs": [
                    {"_index": first, "_id": "2026.11.01-3"},
                    {"_index": first, "_id": "absent"},
                    {"_index": f"{loaded}-none", "_id": "x"},
                ]
            },
            request_timeout=5,
        ),
        "get_alias": lambda c: c.indices.get_alias(name=loaded),
        "get_alias, missing": lambda c: c.indices.get_alias(name=f"{loaded}-none"),
        "count (GET with a body)": lambda c: c.count(
            index=loaded, body={"query": {"match_all": {}}}
        ),
        "ping (HEAD)": lambda c: c.ping(),
        "exists, missing (HEAD)": lambda c: c.indices.exists(index=f"{loaded}-none"),
        "create, conflict (PUT)": lambda c: c.create(index=first, id="2026.11.01-1", body={}),
        "no body, POST": lambda c: c.transport.perform_request("POST", f"/{first}/_refresh"),
    }
    for name, call in calls.items():
        assert outcome(call, fast) == outcome(call, stock), name
    kinds = {outcome(call, stock)[0] for call in calls.values()}
    assert kinds == {"answer", "NotFoundError", "RequestError", "ConflictError"}


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with ``status`` and ``answer``, recording what it was sent."""

    seen: list[tuple[str, str, dict[str, str], bytes]]
    status = 200
    answer = b'{"hits": {"hits": []}, "aggregations": {}}'

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "user-agent"}
        self.seen.append((self.command, self.path, headers, body))
        self.send_response(self.status)
        self.send_header("content-type", "application/json; charset=UTF-8")
        self.send_header("content-length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *_args: Any) -> None:
        return


def serve(status: int, answer: bytes, tls: ssl.SSLContext | None = None) -> tuple[str, list[Any]]:
    """A loopback HTTP(S) server answering ``status`` / ``answer``; its URL and its log."""
    seen: list[Any] = []
    handler = type("H", (Recorder,), {"seen": seen, "status": status, "answer": answer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls else "http"
    return f"{scheme}://localhost:{server.server_address[1]}", seen


def test_the_same_request_goes_out_with_the_url_credentials() -> None:
    url, seen = serve(200, b'{"docs": []}')
    user = url.replace("http://", "http://reader:s%40cret@")
    for curl in (False, True):
        client = opensearch_client(user, connections=2, curl=curl)
        search(client, "idx", {"size": 0, "query": {"term": {"m": "ü"}}}, 5.0)
        mget(client, [{"_index": "idx", "_id": "1"}], 5.0)
        client.transport.perform_request("POST", "/idx/_search/point_in_time")  # no body
        client.transport.perform_request("DELETE", "/_search/point_in_time", body={"pit_id": []})
    stock, fast = seen[:4], seen[4:]
    assert fast == stock
    assert stock[0][2]["authorization"] == "Basic cmVhZGVyOnNAY3JldA=="  # reader:s@cret


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (openssl), and its key."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificates"
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_is_verified_as_the_stock_client_verifies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path, "server")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    url, seen = serve(200, b'{"hits": {"hits": [1]}}', tls)
    # Trusted (the stock client's CA bundle comes from SSL_CERT_FILE when set): answers.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    for curl in (False, True):
        client = opensearch_client(url, connections=2, curl=curl)
        assert isinstance(client.transport, CurlTransport) is curl
        assert search(client, "idx", {}, 5.0) == {"hits": {"hits": [1]}}
    # Not trusted (another CA): both refuse the server before sending anything.
    other, _ = self_signed(tmp_path, "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    for curl in (False, True):
        with pytest.raises(EngineUnavailable):
            search(opensearch_client(url, connections=2, curl=curl), "idx", {}, 5.0)
    assert len(seen) == 2


def silent_port() -> tuple[socket.socket, int]:
    """A listening socket that never answers (connections wait in its backlog)."""
    listener = socket.create_server(("127.0.0.1", 0))
    return listener, listener.getsockname()[1]


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


@pytest.mark.parametrize("curl", [False, True])
def test_failures_map_to_the_same_api_errors(curl: bool) -> None:
    def client(url: str) -> OpenSearch:
        return opensearch_client(url, timeout_s=0.3, connections=2, curl=curl)

    refused = client(f"http://127.0.0.1:{closed_port()}")
    listener, port = silent_port()
    with listener:
        silent = client(f"http://127.0.0.1:{port}")
        with pytest.raises(EngineTimeout):
            search(silent, "idx", {}, 0.3)
        with pytest.raises(EngineTimeout):
            mget(silent, [{"_index": "idx", "_id": "1"}], 0.3)
    for call in (lambda c: search(c, "i", {}, 1.0), lambda c: mget(c, [], 1.0)):
        with pytest.raises(EngineUnavailable):
            call(refused)
    broken, _ = serve(503, b'{"error": {"type": "secret_engine_failure", "reason": "secret"}}')
    for call in (lambda c: search(c, "i", {}, 1.0), lambda c: mget(c, [], 1.0)):
        with pytest.raises(UnexpectedAnswer) as raised:
            call(client(broken))
        assert "secret" not in str(raised.value)
    missing, _ = serve(404, b'{"error": {"type": "index_not_found_exception"}, "status": 404}')
    assert search(client(missing), "i", {}, 1.0) is EMPTY


def test_settings_it_does_not_reproduce_are_refused(opensearch_url: str) -> None:
    """Compression, computed auth headers, retries and several hosts are refused, and
    ``opensearch_client`` would then build the stock client; a URL alone never has them."""
    refused: list[dict[str, Any]] = [
        {"http_compress": True},
        {"http_auth": lambda *_: {}},
        {"max_retries": 2},
        {"hosts": [opensearch_url, opensearch_url]},
    ]
    OpenSearch(hosts=[opensearch_url], transport_class=CurlTransport, max_retries=0)  # accepted
    for extra in refused:
        options = {
            "hosts": [opensearch_url],
            "transport_class": CurlTransport,
            "max_retries": 0,  # the client's default is 3: refused on its own
            **extra,
        }
        with pytest.raises(Unsupported):
            OpenSearch(**options)
