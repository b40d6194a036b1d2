"""Record batches that cannot be decoded: find them, stop their partition, let an operator decide.

A batch kafka-python cannot decode (a codec it has no library for, an unknown codec, a
corrupt CRC) makes ``KafkaConsumer.poll()`` raise, every time it is fetched again, and never
names the partition. Left alone that kills the consumer and, restarted, it dies again on the
same batch: every partition stalls (docs/decisions/0110). Here:

- ``locate`` finds the partition and the batch's offsets in the traceback of the exception
  ``poll()`` raised (the frame of kafka-python's ``PartitionRecords._unpack_records``: its
  ``self`` and ``batch`` locals; kafka-python 3.0.12, pinned) and discards the broken, already
  exhausted ``PartitionRecords``, which kafka-python would otherwise spin on forever once the
  partition is fetchable again at the same position;
- the caller pauses that partition and keeps the others flowing;
- ``BlockedBatches`` keeps one document per blocked batch in the state index: what the
  operator sees (``pulse dlq stats``, ``pulse status``) and where the operator's decision
  (``pulse dlq skip-batch``) is written for the indexer and the replay to carry out.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from opensearchpy import NotFoundError, OpenSearch
from opensearchpy.exceptions import ConflictError

from indexer.model import DeadLetter, Origin
from pulse.naming import Names
from storage.templates import ensure_index

REASON = "undecodable_batch"
BLOCKED, SKIP_REQUESTED, SKIPPED = "blocked", "skip_requested", "skipped"
RESOLVED = "resolved"  # decoded after all (the codec library was installed and it restarted)
OPEN = (BLOCKED, SKIP_REQUESTED)
MAX_ERROR = 2048
MAPPING: dict[str, Any] = {
    "properties": {
        "undecodable": {
            "type": "object",
            "properties": {
                "topic": {"type": "keyword"},
                "partition": {"type": "integer"},
                "offset": {"type": "long"},
                "next_offset": {"type": "long"},
                "error": {"type": "text", "index": False},
                "status": {"type": "keyword"},
                "size": {"type": "long"},
                "sha256": {"type": "keyword"},
                "first_seen": {"type": "long"},
                "updated_at": {"type": "long"},
            },
        }
    }
}


@dataclass(frozen=True)
class BadBatch:
    """A record batch that could not be decoded. ``offset`` is where its partition stops;
    ``next_offset`` the first offset after it (from the batch header; None when unknown)."""

    topic: str
    partition: int
    offset: int
    next_offset: int | None
    error: str
    raw: bytes = b""

    @property
    def key(self) -> str:
        return f"undecodable.{self.topic}.{self.partition}.{self.offset}"

    def dead_letter(self) -> DeadLetter:
        """The batch's bytes as fetched, as a dead letter (its records cannot be split)."""
        headers = (("pulse.next_offset", str(self.next_offset).encode()),)
        origin = Origin(self.topic, self.partition, self.offset, -1, None, self.raw, headers)
        return DeadLetter(origin, "fetch", REASON, self.error)


def locate(exc: BaseException) -> BadBatch | None:
    """The batch ``exc`` (raised by ``poll()``) failed on, or None when ``exc`` is not about
    decoding a fetched batch (then the caller must not swallow it)."""
    tb: TracebackType | None = exc.__traceback__
    found: BadBatch | None = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_unpack_records":
            found = _from_unpack_frame(frame.f_locals, exc) or found
        tb = tb.tb_next
    return found


def _from_unpack_frame(local: dict[str, Any], exc: BaseException) -> BadBatch | None:
    part: Any = local.get("self")
    batch: Any = local.get("batch")
    tp = getattr(part, "topic_partition", None)
    if part is None or tp is None:
        return None
    if batch is not None:
        offset, next_offset = int(batch.base_offset), _next_offset(batch)
        raw = bytes(getattr(batch, "_buffer", b""))
    else:
        offset, next_offset, raw = int(part.next_fetch_offset), None, b""
    part.drain()  # exhausted by the exception: never hand it back to the fetch loop
    error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
    return BadBatch(tp.topic, tp.partition, offset, next_offset, error, raw)


def _next_offset(batch: Any) -> int | None:
    try:
        value = int(batch.next_offset)
    except (AttributeError, TypeError, ValueError):
        return None
    return value if value > int(batch.base_offset) else None


def now_ms() -> int:
    return int(time.time() * 1000)


class BlockedBatches:
    """The blocked-batch documents in the state index (one per batch, id ``BadBatch.key``)."""

    def __init__(self, client: OpenSearch, names: Names) -> None:
        self.client = client
        self.names = names

    def ensure(self) -> None:
        ensure_index(self.client, self.names.state_index)
        self.client.indices.put_mapping(index=self.names.state_index, body=MAPPING)

    def report(self, bad: BadBatch) -> str:
        """Record ``bad`` as blocked unless a decision exists; returns the batch's status."""
        body = {
            "topic": bad.topic, "partition": bad.partition, "offset": bad.offset,
            "next_offset": bad.next_offset, "error": bad.error, "status": BLOCKED,
            "size": len(bad.raw), "sha256": hashlib.sha256(bad.raw).hexdigest(),
            "first_seen": now_ms(), "updated_at": now_ms(),
        }  # fmt: skip
        # Seen before (a restart, a rebalance): keep its first_seen and the decision.
        with contextlib.suppress(ConflictError):
            self.client.create(index=self.names.state_index, id=bad.key, body={"undecodable": body})
        return self.status(bad.key) or BLOCKED

    def status(self, key: str) -> str | None:
        doc = self.get(key)
        return None if doc is None else str(doc["status"])

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            found = self.client.get(index=self.names.state_index, id=key)
        except NotFoundError:
            return None
        doc: dict[str, Any] = found["_source"]["undecodable"]
        return doc

    def set_status(self, key: str, status: str) -> None:
        body = {"doc": {"undecodable": {"status": status, "updated_at": now_ms()}}}
        self.client.update(index=self.names.state_index, id=key, body=body, refresh=True)

    def open_batches(self, topic: str) -> dict[int, list[tuple[str, int]]]:
        """Undecided batches of ``topic``: partition -> [(key, offset)]."""
        out: dict[int, list[tuple[str, int]]] = {}
        for doc in self.all():
            if doc["topic"] == topic and doc["status"] in OPEN:
                key = BadBatch(topic, doc["partition"], doc["offset"], None, "").key
                out.setdefault(int(doc["partition"]), []).append((key, int(doc["offset"])))
        return out

    def all(self) -> list[dict[str, Any]]:
        """Every known batch (blocked or decided), oldest first; [] when none was ever seen."""
        index = self.names.state_index
        if not self.client.indices.exists(index=index):
            return []
        self.client.indices.refresh(index=index)
        query = {"exists": {"field": "undecodable.status"}}
        found = self.client.search(
            index=index, body={"size": 1000, "query": query, "sort": ["_doc"]}
        )
        docs = [hit["_source"]["undecodable"] for hit in found["hits"]["hits"]]
        return sorted(docs, key=lambda d: (d["first_seen"], d["partition"], d["offset"]))


def request_skip(client: OpenSearch, names: Names, topic: str, partition: int, offset: int) -> str:
    """The operator's decision: skip the blocked batch at ``partition``/``offset``. Returns the
    batch's previous status; raises KeyError when no such batch was reported."""
    store = BlockedBatches(client, names)
    key = BadBatch(topic, partition, offset, None, "").key
    status = store.status(key)
    if status is None:
        raise KeyError(key)
    if status == BLOCKED:
        store.set_status(key, SKIP_REQUESTED)
    return status
