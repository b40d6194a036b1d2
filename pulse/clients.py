"""Engine clients and idempotent bootstrap of Kafka topics, built from Settings."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from opensearchpy import OpenSearch
from opensearchpy.serializer import JSONSerializer

from pulse.curl_transport import CurlTransport, Unsupported
from pulse.naming import Names, names_for
from pulse.settings import Settings

log = logging.getLogger(__name__)


class StackNotFound(RuntimeError):
    """No engine address configured and no running embedded stack found."""


@dataclass(frozen=True)
class Endpoints:
    """Where the engines are: from PULSE_* settings first, else the embedded stack.json."""

    opensearch_url: str
    kafka_bootstrap: str


def stack_file(settings: Settings) -> Path:
    return Path(settings.state_dir) / "stack.json"


def read_stack(settings: Settings) -> dict[str, Any]:
    path = stack_file(settings)
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def resolve_endpoints(settings: Settings) -> Endpoints:
    stack = read_stack(settings)
    os_url = settings.opensearch_url or stack.get("opensearch_url")
    kafka = settings.kafka_bootstrap or stack.get("kafka_bootstrap")
    if not os_url or not kafka:
        raise StackNotFound(
            "no engines: set PULSE_OPENSEARCH_URL and PULSE_KAFKA_BOOTSTRAP, "
            f"or start the embedded stack with `pulse up` (looked for {stack_file(settings)})"
        )
    return Endpoints(opensearch_url=os_url, kafka_bootstrap=kafka)


class FastJSON(JSONSerializer):
    """opensearch-py's JSON serializer, reading answers with msgspec (2-2.5x faster than the
    standard library on the API's engine answers; exact integers of any size, as the
    standard library reads them, where orjson turns those beyond 64 bits into floats).

    The same values for every answer the stock one reads: what msgspec refuses (NaN,
    Infinity, a number out of float range, a lone surrogate escape, anything not JSON) is read
    by the stock ``loads``, which answers or fails as before. Request bodies are still written
    by the stock ``dumps``: they are small."""

    def loads(self, s: str) -> Any:
        try:
            return _DECODER.decode(s)
        except msgspec.MsgspecError:
            return super().loads(s)


_DECODER = msgspec.json.Decoder()


class FastBodies(FastJSON):
    """``FastJSON`` that also writes request bodies with orjson (the API's client: its search
    and ``mget`` bodies cost ~100 µs a report through the standard library's encoder).

    The same bytes as the stock ``dumps`` for what the API sends (dicts and lists of strings,
    integers of 64 bits, booleans, None; dates through the stock ``default``). What orjson
    refuses (integers beyond 64 bits, keys that are not strings, lone surrogates, types the
    stock ``default`` does not know) is written by the stock ``dumps``, which answers or fails
    as before. Two differences, for values the API never sends: a float is written in
    orjson's shortest form (``1e-7``, not ``1e-07``: the same number), and NaN or Infinity as
    ``null`` (the stock encoder wrote ``NaN``, which the engine refuses as invalid JSON)."""

    def dumps(self, data: Any) -> Any:
        if isinstance(data, str | bytes):
            return data
        try:
            # A str, as the stock one returns (opensearch-py's bulk helpers measure it as one).
            return orjson.dumps(data, default=self.default, option=_PASSTHROUGH).decode()
        except TypeError:
            return super().dumps(data)


# Dates, dataclasses and subclasses of the basic types go through the stock ``default`` (or
# fail as they did), not orjson's own rendering of them.
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def opensearch_client(
    url: str,
    timeout_s: float = 30.0,
    *,
    connections: int = 1,
    curl: bool = False,
    orjson_bodies: bool = False,
) -> OpenSearch:
    """A client of the engine at ``url``: no retries (callers decide), answers read with
    msgspec (``FastJSON``).

    ``curl``: send the requests through libcurl (``pulse.curl_transport``, decision 0290):
    the same answers and exceptions at about a third of the CPU per round trip. The API asks
    for it; a URL whose settings it does not reproduce keeps the stock transport.

    ``connections``: how many connections it keeps open for reuse; a request beyond them opens
    (and then closes) one of its own. The default keeps urllib3's one: a pool of 40 for every
    client made tests/indexer/test_faults.py's rebalance test stall in 3 of 7 runs against
    osmem (0 of 6 with one), not understood yet (docs/benchmarks.md, API under load). The API,
    whose reports read side by side, asks for more (api.app, decision 0254).

    ``orjson_bodies``: request bodies written by orjson (``FastBodies``; the API asks for it)."""
    options: dict[str, Any] = {
        "timeout": timeout_s,
        "max_retries": 0,
        "retry_on_timeout": False,
        "serializer": FastBodies() if orjson_bodies else FastJSON(),
        "pool_maxsize": connections,
    }
    if curl:
        try:
            return OpenSearch(hosts=[url], transport_class=CurlTransport, **options)
        except Unsupported as exc:
            log.warning("engine client without libcurl: %s", exc)
    return OpenSearch(hosts=[url], **options)


def ensure_topics(settings: Settings, bootstrap: str, names: Names | None = None) -> None:
    """Create events.raw and events.dlq if they do not exist (safe to call from every component)."""
    names = names or names_for(settings)
    wanted = {
        names.topic_raw: settings.raw_partitions,
        names.topic_dlq: settings.dlq_partitions,
    }
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pulse-bootstrap")
    try:
        existing = set(admin.list_topics())
        replicas = settings.topic_replication
        missing = [NewTopic(t, n, replicas) for t, n in wanted.items() if t not in existing]
        if missing:
            # A concurrent component may win the race; the topic existing is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()
