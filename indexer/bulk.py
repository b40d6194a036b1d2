"""One ``_bulk`` attempt and the per-item verdicts of its response.

Documents are written with ``op_type=create``: the first write of an ``_id`` wins and a raw
document never changes afterwards (docs/decisions/0011), so a replay answers 409 for every
event already there, which is a success (``duplicate``), not an error.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from opensearchpy import OpenSearch

from indexer.model import IndexItem
from storage.typed import UnexpectedAnswer, request_typed

RESPONSE_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"
RETRYABLE_TYPES = frozenset(
    {
        "es_rejected_execution_exception",
        "rejected_execution_exception",
        "circuit_breaking_exception",
        "unavailable_shards_exception",
        "process_cluster_event_timeout_exception",
        "index_not_found_exception",  # ILM deleted/rolled the index under us: resolve again
    }
)


class BadResponse(Exception):
    """The engine's answer does not match the request; the attempt is retried."""


class Verdict(enum.Enum):
    CREATED = "created"
    DUPLICATE = "duplicate"  # 409 on create: an earlier copy is durable
    RETRY = "retry"  # 429, 5xx, transient engine states
    FAILED = "failed"  # permanent (mapping errors and other 4xx): to the DLQ


@dataclass(frozen=True, slots=True)
class ItemResult:
    verdict: Verdict
    error_type: str = ""
    reason: str = ""


CREATED = ItemResult(Verdict.CREATED)


# The answer as read (storage.typed, docs/decisions/0300): one untracked struct per item, not
# two dicts. Only the filtered fields; ``error`` is whatever the engine sent (a JSON object,
# or a string from some engines), read as it was before.
class ItemAnswer(msgspec.Struct, frozen=True, gc=False):
    status: int | str = 500
    error: Any = None


class ItemOp(msgspec.Struct, frozen=True, gc=False):
    """``{"<op>": {...}}``: the one key is the action's; only ``create`` is ever sent."""

    create: ItemAnswer | None = None
    index: ItemAnswer | None = None
    update: ItemAnswer | None = None
    delete: ItemAnswer | None = None

    def result(self) -> ItemAnswer:
        return self.create or self.index or self.update or self.delete or ItemAnswer()


class BulkAnswer(msgspec.Struct, frozen=True, gc=False):
    errors: bool = False
    items: list[ItemOp] | None = None


def bulk_body(items: Sequence[IndexItem], targets: Sequence[str], ingested_at_ms: int) -> bytes:
    """NDJSON: one create action and one stamped document per item.

    The bytes of ``stamp()`` per document, built as one join of shared pieces: the action's
    head per target index and the ``ingested_at`` tail are encoded once per body, not once
    per document (docs/decisions/0180)."""
    tail = b',"ingested_at":%d}\n' % ingested_at_ms
    heads: dict[str, bytes] = {}
    parts: list[bytes] = []
    append = parts.append
    for item, index in zip(items, targets, strict=True):
        head = heads.get(index)
        if head is None:
            head = heads[index] = b'{"create":{"_index":%s,"_id":"' % orjson.dumps(index)
        append(head)
        append(item.doc_id.encode())
        append(b'"}}\n')
        append(item.body[:-1])  # every body is an orjson-encoded non-empty object
        append(tail)
    return b"".join(parts)


def send_bulk(client: OpenSearch, body: bytes, timeout_s: float) -> BulkAnswer:
    """POST the body; transport errors propagate to the caller's retry policy, and an answer
    that is not a bulk answer is a ``BadResponse`` (retried)."""
    try:
        return request_typed(
            client, "POST", "/_bulk", BulkAnswer,
            params={"filter_path": RESPONSE_FILTER, "request_timeout": timeout_s},
            body=body, headers={"content-type": "application/x-ndjson"},
        )  # fmt: skip
    except UnexpectedAnswer as exc:
        raise BadResponse(str(exc)) from exc


def verdicts(answer: BulkAnswer, count: int) -> list[ItemResult]:
    """One result per submitted item, in order."""
    if not answer.errors:
        return [CREATED] * count
    items = answer.items or []
    if len(items) != count:
        raise BadResponse(f"bulk answered {len(items)} items for {count} submitted")
    return [_verdict(item.result()) for item in items]


def _verdict(item: ItemAnswer) -> ItemResult:
    status = int(item.status)
    if status < 300:
        return CREATED
    error = item.error or {}
    etype = str(error.get("type", "unknown")) if isinstance(error, dict) else "unknown"
    reason = str(error.get("reason", error)) if isinstance(error, dict) else str(error)
    if status == 409 and etype == "version_conflict_engine_exception":
        return ItemResult(Verdict.DUPLICATE, etype, reason)
    if status == 429 or status >= 500 or etype in RETRYABLE_TYPES or status == 409:
        return ItemResult(Verdict.RETRY, etype, reason)
    return ItemResult(Verdict.FAILED, etype, reason)
