"""`pulse bench indexer`: the indexer's throughput and CPU cost against a raw ``_bulk`` load.

1. Produce N realistic events (loadgen, 1% duplicates) to a fresh namespace's events.raw,
   keeping where each message landed (partition, offset: the producer's answers).
2. Baseline: exactly the documents the indexer will write, built beforehand with the
   indexer's own functions (``indexer.decode.decode`` on each message as it lies in Kafka, so
   with its ``kafka_partition``/``kafka_offset``; ``indexer.bulk.bulk_body``), the first copy
   of each event only (the indexer drops the others before its bulk), sent with
   ``indexer.bulk.send_bulk`` in batches of ``bulk_max_docs`` into another fresh namespace
   (same templates, same engine, same run). The older baseline (``Event.to_doc``: no Kafka
   position, duplicates included, so 409s) is kept as ``baseline_plain_s``/``ratio_plain``
   (docs/decisions/0305).
3. Run the indexer in this process until every message is accounted for (indexed, duplicate
   or dead-lettered). Its clock starts at the first consumed message, so the consumer-group
   join is excluded; its CPU is this process's CPU time over the same window (the producer
   has finished by then, and the engines are other processes).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opensearchpy import OpenSearch

from indexer.bulk import bulk_body, send_bulk
from indexer.consumer import Indexer
from indexer.decode import Bounds, decode
from indexer.model import DAY_MS, IndexItem, Origin
from ingest import loadgen
from ingest.contract import Event, parse_message, to_kafka_message
from ingest.sinks import kafka_producer, kafka_record
from pulse.clients import Endpoints, StackNotFound, ensure_topics, opensearch_client
from pulse.clients import resolve_endpoints as resolve
from pulse.clock import now_ms
from pulse.engines import start_embedded
from pulse.naming import names_for
from pulse.settings import Settings
from storage.targets import day_date
from storage.templates import ensure_templates, write_target

IDLE_SAMPLE_S = 2.0


@contextmanager
def engines(settings: Settings) -> Iterator[Endpoints]:
    """The configured or running stack's engines, else embedded ones for this run only."""
    try:
        yield resolve(settings)
        return
    except StackNotFound:
        pass
    started = start_embedded(None, None)
    assert started.opensearch is not None and started.kafka is not None
    try:
        yield Endpoints(started.opensearch.address, started.kafka.address)
    finally:
        started.stop()


def run_bench(settings: Settings, count: int, days: int, seed: int) -> dict[str, Any]:
    with engines(settings) as ep:
        return measure(settings, ep, generate(count, days, seed))


def measure(settings: Settings, ep: Endpoints, events: list[dict[str, Any]]) -> dict[str, Any]:
    """One indexer run over ``events`` against its raw ``_bulk`` baselines, each in a fresh
    namespace on ``ep`` (deleted afterwards), batches of ``settings.bulk_max_docs``."""
    base = settings.model_copy(
        update={
            "opensearch_url": ep.opensearch_url,
            "kafka_bootstrap": ep.kafka_bootstrap,
            # The group timings are the product's (pulse.settings): heartbeats cost CPU while
            # the engine takes its time over the bulks, and that counts in cpu_us_per_event.
        }
    )
    ns = f"bench{uuid.uuid4().hex[:8]}"
    mine = base.model_copy(update={"namespace": ns})
    client = opensearch_client(ep.opensearch_url, settings.engine_timeout_s)
    try:
        messages = _produce(mine, ep.kafka_bootstrap, events)
        # Each baseline's indices go before the next load: the indexer meets the engine as
        # the baselines did, holding only its own documents.
        baseline_s, docs = _baseline(
            client, base.model_copy(update={"namespace": ns + "b"}), messages
        )
        client.indices.delete(index=f"{ns}b*", ignore_unavailable=True)
        plain_s = _baseline_plain(client, base.model_copy(update={"namespace": ns + "p"}), events)
        client.indices.delete(index=f"{ns}p*", ignore_unavailable=True)
        run = _index(mine, ep, len(events))
    finally:
        client.indices.delete(index=f"{ns}*", ignore_unavailable=True)
    wall = run["wall_s"]
    return {
        "events": len(events),
        "events_per_s": round(len(events) / wall, 1),
        "cpu_us_per_event": round(run["cpu_s"] / len(events) * 1e6, 2),
        "baseline_events_per_s": round(len(events) / baseline_s, 1),
        "ratio": round(baseline_s / wall, 3),
        "ratio_plain": round(plain_s / wall, 3),
        "wall_s": round(wall, 3),
        "baseline_s": round(baseline_s, 3),
        "baseline_docs": docs,
        "baseline_plain_s": round(plain_s, 3),
        **{k: v for k, v in run.items() if k not in ("wall_s", "cpu_s")},
    }


def generate(count: int, days: int, seed: int) -> list[dict[str, Any]]:
    """``count`` loadgen events over the last ``days`` days, 1% sent twice (same event_id)."""
    gen = loadgen.Generator(loadgen.LoadSpec(seed=seed, duplicate_rate=0.01))
    now = loadgen.now_ms()
    source = gen.events(count, now - days * DAY_MS, now)
    return list(gen.stream(source))[:count]


def _baseline(client: OpenSearch, settings: Settings, messages: list[Origin]) -> tuple[float, int]:
    """Seconds to ``_bulk`` the indexer's own documents (``indexer_documents``) into fresh
    daily write aliases, bodies built beforehand; and how many documents that was."""
    names = names_for(settings)
    ensure_templates(client, settings, names)
    items = indexer_documents(settings, messages)
    targets = {
        day: write_target(client, names, settings.generation, day_date(day))
        for day in {item.day for item in items}
    }
    bodies = baseline_bodies(items, targets, settings.bulk_max_docs, now_ms())
    started = time.perf_counter()
    answers = [send_bulk(client, body, settings.engine_timeout_s) for body in bodies]
    took = time.perf_counter() - started
    refused = sum(1 for answer in answers if answer.errors)  # all new documents: none may fail
    if refused:
        raise RuntimeError(f"baseline: {refused} of {len(bodies)} bulks answered item errors")
    return took, len(items)


def indexer_documents(settings: Settings, messages: list[Origin]) -> list[IndexItem]:
    """What the indexer writes for ``messages`` (as they lie in Kafka): each decoded by the
    indexer's ``decode`` (contract, bounds, the document with its Kafka position), the
    first copy of each event only, in the order a consumer reads them (partition by
    partition, by offset). Dead letters have no document and are left out."""
    bounds, now = Bounds.from_settings(settings), now_ms()
    seen: set[str] = set()
    items: list[IndexItem] = []
    for origin in sorted(messages, key=lambda o: (o.partition, o.offset)):
        item = decode(origin, bounds, now)
        if isinstance(item, IndexItem) and item.doc_id not in seen:
            seen.add(item.doc_id)
            items.append(item)
    return items


def baseline_bodies(
    items: list[IndexItem], targets: dict[int, str], max_docs: int, ingested_at_ms: int
) -> list[bytes]:
    """``_bulk`` bodies of at most ``max_docs`` documents, as the indexer's writer builds them
    (``bulk_body``: the same action lines and stamped documents)."""
    out: list[bytes] = []
    for i in range(0, len(items), max_docs):
        chunk = items[i : i + max_docs]
        out.append(bulk_body(chunk, [targets[item.day] for item in chunk], ingested_at_ms))
    return out


def _baseline_plain(client: OpenSearch, settings: Settings, events: list[dict[str, Any]]) -> float:
    """The baseline before decision 0305: seconds to _bulk ``Event.to_doc`` documents (no
    Kafka position fields, every copy of a duplicate: 409s) into fresh daily indices."""
    import orjson

    names = names_for(settings)
    ensure_templates(client, settings, names)
    parsed = [parse_message(to_kafka_message(e)) for e in events]
    docs = [p for p in parsed if isinstance(p, Event)]
    targets = {
        day: write_target(client, names, settings.generation, day_date(day))
        for day in {d.occurred_at_ms // DAY_MS for d in docs}
    }
    now = loadgen.now_ms()
    lines = [
        (
            orjson.dumps(
                {"create": {"_index": targets[d.occurred_at_ms // DAY_MS], "_id": d.doc_id}}
            ),
            orjson.dumps(d.to_doc(now)),
        )
        for d in docs
    ]
    started = time.perf_counter()
    for i in range(0, len(lines), settings.bulk_max_docs):
        chunk = lines[i : i + settings.bulk_max_docs]
        body = b"\n".join(b"%s\n%s" % pair for pair in chunk) + b"\n"
        client.transport.perform_request(
            "POST", "/_bulk", body=body, params={"filter_path": "errors"}
        )
    return time.perf_counter() - started


def _produce(settings: Settings, bootstrap: str, events: list[dict[str, Any]]) -> list[Origin]:
    """Produce ``events`` as ``ingest.sinks.send_to_kafka`` does (``kafka_record``: the same
    keys, so the same partitions); each message as it now lies in Kafka, from the producer's
    answers (partition, offset, timestamp)."""
    ensure_topics(settings, bootstrap)
    topic = names_for(settings).topic_raw
    producer = kafka_producer(bootstrap)
    sent = []
    for event in events:
        key, value = kafka_record(event)
        sent.append((key, value, producer.send(topic, key=key, value=value)))
    producer.flush()
    producer.close()
    out = []
    for key, value, future in sent:
        meta = future.get(timeout=settings.engine_timeout_s)
        out.append(Origin(topic, meta.partition, meta.offset, meta.timestamp, key, value))
    return out


class _Watched(Indexer):
    """The indexer, telling the bench when ``total`` messages are accounted for: the bench's
    thread sleeps on an event meanwhile, since its CPU is counted with the indexer's (a loop
    reading ``settled`` every 10 ms cost 3-6 µs per event of the measured CPU)."""

    def __init__(self, settings: Settings, ep: Endpoints, total: int) -> None:
        super().__init__(settings, ep.opensearch_url, ep.kafka_bootstrap)
        self.total = total
        self.all_settled = threading.Event()

    def _durable(self, offsets: dict[int, int], messages: int) -> None:
        super()._durable(offsets, messages)
        if self.settled >= self.total:
            self.all_settled.set()


def _index(settings: Settings, ep: Endpoints, total: int) -> dict[str, Any]:
    """Run the indexer in-process until all messages are accounted for."""
    indexer = _Watched(settings, ep, total)
    stop = threading.Event()
    thread = threading.Thread(target=indexer.run, args=(stop,), name="bench-indexer")
    thread.start()
    try:
        while not indexer.consumed:
            time.sleep(0.002)
        cpu0, t0 = time.process_time(), time.perf_counter()
        while not indexer.all_settled.wait(1.0):
            if not thread.is_alive():
                raise RuntimeError("the indexer stopped before every message was accounted for")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        idle0 = time.process_time()
        time.sleep(IDLE_SAMPLE_S)  # caught up: what the polling loop costs doing nothing
        idle = (time.process_time() - idle0) / IDLE_SAMPLE_S
    finally:
        stop.set()
        thread.join(60)
    m = indexer.metrics
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "idle_cpu_ms_per_s": round(idle * 1000, 2),
        "busy_cpu_us_per_event": round(max(0.0, cpu - idle * wall) / total * 1e6, 2),
        "indexed": int(m.registry.get_sample_value("pulse_indexer_indexed_total") or 0),
        "messages": total,
        "batch_docs": settings.bulk_max_docs,
    }
