"""opensearch-py's transport with its requests sent by libcurl (pycurl) instead of urllib3.

Why (decision 0290): the API's reports make 1-4 engine round trips each, and opensearch-py's
Transport and Connection layers, urllib3 and http.client cost ~500-750 µs of the API's CPU per
round trip on the 2-core machine (a 12 KB search answer, `bench.api_cpu`'s machine), against
~150 µs for the same request through libcurl and ~80 µs for the bare socket calls: urllib3's
request and response objects, Retry and Timeout bookkeeping, http.client's header parsing
(the email package) and its header and body sends. libcurl does that work in C, with the GIL
released while it waits.

What stays opensearch-py's, so every caller (``client.search``, ``client.mget``,
``client.indices.get_alias``, ``transport.perform_request``) and ``api.engine.engine_errors``
see the same values and the same exception classes as before:

- argument handling (``query_params``, ``_resolve_request_args``: the same body bytes from
  the same serializer, the same query string, the same timeout and ``ignore`` rules);
- the stock ``Urllib3HttpConnection`` built from the same URL: its host, URL prefix, headers
  (user agent, content type, basic auth from the URL's credentials), its TLS settings, the
  error an HTTP status raises (``_raise_error``: same class, status, ``error`` and ``info``)
  and its failure log;
- answers decoded as the stock path decodes them (UTF-8 with surrogatepass, then the
  deserializer chosen by content type: ``pulse.clients.FastJSON`` for JSON);
- ``HEAD`` requests (``ping``, ``exists``: a bool from the status) and requests with headers
  of their own go through the stock path unchanged.

Failures: libcurl's timeout → ``ConnectionTimeout``; its TLS failures → ``SSLError``; any
other transport failure (refused, reset, no answer, unresolvable host) → ``ConnectionError``,
as urllib3's are mapped by the stock connection. The timeout is the request's whole time
(connect and answer), where urllib3's bounds each socket wait: never longer than before.

Connections: ``kept`` curl handles are reused, one connection each (``MAXCONNECTS`` 1); a
request when all are busy uses a handle of its own and closes it afterwards, as urllib3's
non-blocking pool does. ``opened`` counts the TCP connections libcurl opened (its
``NUM_CONNECTS``), for tests and benchmarks.
"""

from __future__ import annotations

import os.path
import ssl
import threading
import time
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

import pycurl
from opensearchpy.compat import urlencode
from opensearchpy.connection import Urllib3HttpConnection
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, SSLError
from opensearchpy.transport import Transport

_TLS_FAILURES = frozenset(
    {
        pycurl.E_SSL_CONNECT_ERROR,
        pycurl.E_PEER_FAILED_VERIFICATION,
        pycurl.E_SSL_CERTPROBLEM,
        pycurl.E_SSL_CIPHER,
        pycurl.E_SSL_CACERT_BADFILE,
        pycurl.E_SSL_ISSUER_ERROR,
    }
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Unsupported(ValueError):
    """A connection setting the curl path does not reproduce (use the stock transport)."""


class CurlTransport(Transport):
    """``Transport`` whose requests to its one host go through libcurl (module docstring).

    Built by ``OpenSearch(hosts=[url], transport_class=CurlTransport, pool_maxsize=n, ...)``
    (``pulse.clients.opensearch_client(..., curl=True)``): ``pool_maxsize`` is how many
    connections it keeps, ``timeout`` the default request timeout, as for the stock one."""

    def __init__(self, hosts: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(hosts, *args, **kwargs)
        connections = self.connection_pool.connections
        if len(connections) != 1 or type(connections[0]) is not Urllib3HttpConnection:
            raise Unsupported("the curl transport serves one host over urllib3's settings")
        stock = connections[0]
        if stock.http_compress or callable(stock.http_auth):
            raise Unsupported("compressed bodies and computed auth headers take the stock path")
        if self.max_retries or self.sniff_on_start or self.sniff_on_connection_fail:
            raise Unsupported("the curl transport does not retry or sniff")
        self.stock: Urllib3HttpConnection = stock
        self._curl = _Handles(self.stock, int(kwargs.get("pool_maxsize") or 1))

    @property
    def opened(self) -> int:
        """TCP connections opened so far (libcurl's count, summed over its handles)."""
        return self._curl.opened

    def perform_request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: int | float | None = None,
        ignore: Collection[int] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        if method == "HEAD" or headers:
            return super().perform_request(method, url, params, body, timeout, ignore, headers)
        method, params, body, ignore, timeout = self._resolve_request_args(
            method, params, body, ignore, timeout
        )
        conn = self.stock
        path = conn.url_prefix + url
        if params:
            path = f"{path}?{_query(params)}"
        start = time.time()
        try:
            status, content_type, raw = self._curl.request(
                method, path, body, timeout or conn.timeout
            )
        except pycurl.error as exc:
            conn.log_request_fail(
                method, conn.host + path, path, body, time.time() - start, exception=exc
            )
            raise _transport_error(exc) from None
        data = raw.decode("utf-8", "surrogatepass")
        if not (200 <= status < 300) and status not in ignore:
            duration = time.time() - start
            conn.log_request_fail(method, conn.host + path, path, body, duration, status, data)
            conn._raise_error(status, data, content_type)  # the stock status mapping
        if data:
            return self.deserializer.loads(data, content_type)
        return data

    def close(self) -> None:
        self._curl.close()
        super().close()


def _query(params: Mapping[str, Any]) -> str:
    """``urlencode(params)``, remembered: the API sends the same few parameter sets (the
    routed search's two flags) on every request, ~20 µs each to encode."""
    try:
        return _encoded(tuple(params.items()))
    except TypeError:  # a value that cannot be a key (none of the client's escaped ones)
        return str(urlencode(params))


@lru_cache(maxsize=256)
def _encoded(items: tuple[tuple[str, Any], ...]) -> str:
    return str(urlencode(items))


def _transport_error(exc: pycurl.error) -> OSConnectionError:
    code = exc.args[0] if exc.args else None
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if code == pycurl.E_OPERATION_TIMEDOUT and not text.startswith("Connection timed out"):
        # Waiting for the answer: urllib3's ReadTimeoutError, mapped to ConnectionTimeout.
        # A connect that timed out stays a ConnectionError, as urllib3's ConnectTimeoutError.
        return ConnectionTimeout("TIMEOUT", text, exc)
    if code in _TLS_FAILURES:
        return SSLError("N/A", text, exc)
    return OSConnectionError("N/A", text, exc)


class _Handles:
    """Curl handles set up for one host: up to ``kept`` reused, more made on demand."""

    def __init__(self, conn: Urllib3HttpConnection, kept: int) -> None:
        self._base = conn.host  # scheme://host[:port]
        # The stock connection's headers, and http.client's own ``Accept-Encoding``; not
        # libcurl's ``Accept: */*`` nor its ``Expect: 100-continue`` on large bodies.
        self._headers = [f"{k}: {v}" for k, v in conn.headers.items()]
        if "accept-encoding" not in conn.headers:
            self._headers.append("Accept-Encoding: identity")
        self._headers += ["Accept:", "Expect:"]
        self._tls = _tls_options(conn)
        self._kept = kept
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self.opened = 0

    def request(
        self, method: str, path: str, body: bytes | None, timeout: float
    ) -> tuple[int, str | None, bytes]:
        """(status, content type, answer bytes); a failure raises ``pycurl.error``."""
        curl = self._take()
        chunks: list[bytes] = []
        ok = False
        try:
            curl.setopt(pycurl.URL, self._base + path)
            if body is None and method in _BODY_METHODS:
                body = b""  # Content-Length: 0, as http.client sends for these methods
            if body is None:
                curl.setopt(pycurl.HTTPGET, 1)
            else:
                curl.setopt(pycurl.POSTFIELDS, body)
            # libcurl's own method for the body it has (GET without, POST with) or the named one.
            if method == ("GET" if body is None else "POST"):
                curl.unsetopt(pycurl.CUSTOMREQUEST)
            else:
                curl.setopt(pycurl.CUSTOMREQUEST, method)
            millis = max(1, int(timeout * 1000))
            curl.setopt(pycurl.TIMEOUT_MS, millis)
            curl.setopt(pycurl.CONNECTTIMEOUT_MS, millis)
            curl.setopt(pycurl.WRITEFUNCTION, chunks.append)
            curl.perform()
            answer = (
                int(curl.getinfo(pycurl.RESPONSE_CODE)),
                curl.getinfo(pycurl.CONTENT_TYPE),
                b"".join(chunks),
            )
            ok = True
            return answer
        finally:
            self._count(curl)
            self._give(curl, ok)

    def _take(self) -> Any:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._new()

    def _give(self, curl: Any, reusable: bool) -> None:
        # A handle that failed is closed (its connection may be half-used); one beyond the
        # kept ones too, as urllib3's pool discards a connection it cannot keep.
        if reusable:
            with self._lock:
                if len(self._free) < self._kept:
                    self._free.append(curl)
                    return
        curl.close()

    def _count(self, curl: Any) -> None:
        opened = int(curl.getinfo(pycurl.NUM_CONNECTS))
        if opened:
            with self._lock:
                self.opened += opened

    def _new(self) -> Any:
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: requests run in threads
        curl.setopt(pycurl.MAXCONNECTS, 1)
        curl.setopt(pycurl.TCP_NODELAY, 1)
        curl.setopt(pycurl.PROXY, "")  # urllib3's pool ignores *_proxy variables; so does this
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.HTTPHEADER, self._headers)
        for option, value in self._tls:
            curl.setopt(option, value)
        return curl

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for curl in free:
            curl.close()


def _tls_options(conn: Urllib3HttpConnection) -> list[tuple[int, Any]]:
    """libcurl options for the TLS settings of the stock connection's urllib3 pool: the same
    CA bundle (or directory), the same verification, the same client certificate."""
    if not conn.use_ssl:
        return []
    pool = conn.pool
    if pool is None or pool.conn_kw.get("ssl_context") is not None:
        raise Unsupported("an ssl_context is not reproduced by the curl transport")
    unsupported = ("assert_fingerprint", "ssl_version", "key_password", "ssl_minimum_version")
    if any(getattr(pool, a, None) for a in unsupported) or pool.assert_hostname is False:
        raise Unsupported("fingerprints, TLS versions and key passwords are not reproduced")
    verify = pool.cert_reqs in ("CERT_REQUIRED", ssl.CERT_REQUIRED)
    options: list[tuple[int, Any]] = [
        (pycurl.SSL_VERIFYPEER, 1 if verify else 0),
        (pycurl.SSL_VERIFYHOST, 2 if verify else 0),
    ]
    ca = getattr(pool, "ca_certs", None)
    ca_dir = getattr(pool, "ca_cert_dir", None)
    if ca:
        options.append((pycurl.CAPATH if os.path.isdir(ca) else pycurl.CAINFO, ca))
    if ca_dir:
        options.append((pycurl.CAPATH, ca_dir))
    if getattr(pool, "cert_file", None):
        options.append((pycurl.SSLCERT, pool.cert_file))
    if getattr(pool, "key_file", None):
        options.append((pycurl.SSLKEY, pool.key_file))
    return options
