"""The visibility margin with an indexer writing concurrently (docs/decisions/0030).

The indexer stamps ``ingested_at`` before its bulk; the event becomes searchable only after
the bulk (and the next refresh). A rollup run reads up to W = start - margin, and the next run
looks only for events stamped after W: an event stamped before W but not yet visible would be
missed for good. Here the real indexer writes late events of closed hours, through a loopback
proxy that holds every ``_bulk`` for most of the engine timeout (a slow engine: the embedded
one makes a bulk visible at once), while rollup runs follow each other; once it is done and
one margin has passed, a last run must leave every rollup equal to the oracle."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from kafka import KafkaProducer
from opensearchpy import OpenSearch

from ingest.contract import Event, to_kafka_message, validate
from ingest.loadgen import Generator, LoadSpec
from pulse.clock import HOUR_MS, now_ms
from pulse.naming import Names
from pulse.settings import Settings
from rollups.job import RollupJob, visibility_margin_ms
from tests.indexer.conftest import FAST, indexer_thread
from tests.rollups.helpers import assert_matches_oracle

WRITE_S = 3.0  # how long the indexer keeps writing while rollup runs follow each other
BURST = 20  # events per burst
BULK_DELAY_S = 1.0  # how long the proxy holds a _bulk: below engine_timeout_s (2 s)


@contextmanager
def slow_bulk_proxy(upstream: str) -> Iterator[str]:
    """An HTTP proxy to ``upstream`` on loopback that holds every ``_bulk`` BULK_DELAY_S."""
    client = httpx.Client(base_url=upstream, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "_bulk" in self.path:
                time.sleep(BULK_DELAY_S)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            answer = client.request(self.command, self.path, content=body, headers=headers)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def _produce_for(bootstrap: str, topic: str, seconds: float, out: list[Event]) -> None:
    """Bursts of late events for the last three closed hours, one new merchant per burst, every
    20 ms for ``seconds``: a (merchant, hour) that a run misses is never changed again, so
    no later run would repair it by recomputing the pair for another event."""
    gen = Generator(LoadSpec(merchants=4, seed=31, customers_per_merchant=200))
    rng = random.Random(31)
    open_hour = now_ms() - now_ms() % HOUR_MS
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    deadline = time.monotonic() + seconds
    burst = 0
    while time.monotonic() < deadline:
        for _ in range(BURST):
            raw = gen.event_at(rng.randrange(open_hour - 3 * HOUR_MS, open_hour))
            raw["merchant_id"] = f"b{burst:05d}"
            out.append(validate(dict(raw)))
            producer.send(topic, value=to_kafka_message(raw))
        producer.flush()
        burst += 1
        time.sleep(0.02)
    producer.close()


def test_runs_during_concurrent_indexing_miss_no_event(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    s = settings.model_copy(
        update={
            **FAST,
            # big bulks: a bulk is in flight for a while after its ingested_at stamp
            "bulk_max_docs": 500,
            "bulk_max_age_ms": 300,
            "rollup_visibility_margin_s": None,  # the derived margin: timeout + refresh + 1 s
            "engine_timeout_s": 2.0,
            "refresh_interval": "1s",
            "rollup_lease_ttl_s": 600.0,
            "rollup_watermark_step_s": 0.0,  # W_to = run start - margin exactly
        }
    )
    margin_s = visibility_margin_ms(s) / 1000
    assert margin_s == 4.0
    job = RollupJob(os_client, s, topics, owner="margin-test")
    job.bootstrap()
    sent: list[Event] = []
    producer = threading.Thread(
        target=_produce_for, args=(s.kafka_bootstrap, topics.topic_raw, WRITE_S, sent)
    )
    with (
        slow_bulk_proxy(s.opensearch_url or "") as proxy,
        indexer_thread(s.model_copy(update={"opensearch_url": proxy})) as indexer,
    ):
        producer.start()
        runs = 0
        deadline = time.monotonic() + 120
        # Runs keep starting until the last bulk is done: every bulk is in flight during some.
        while producer.is_alive() or indexer.settled < len(sent):
            assert time.monotonic() < deadline, "the indexer did not finish"
            job.run_once()
            runs += 1
        producer.join()
    time.sleep(margin_s + 0.5)  # every stamp is now older than the next run's W
    job.run_once()

    assert runs >= 3 and len(sent) > 500
    assert_matches_oracle(os_client, topics, sent)
