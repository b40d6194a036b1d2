"""Shards of the rollup job: merchants split by a stable hash, one lease and one watermark per
shard, in one document per shard (docs/decisions/0220, 0221).

``shard_of(merchant, n)``: the first 8 bytes of blake2b(merchant_id) mod n: the same in every
process, host and Python version (``hash()`` is salted per process).

Shard document ``rollups.shard.<n>.<i>`` in the state index (fields under ``rollups``, like the
other bookkeeping documents): the lease (``owner``, ``expires_at`` epoch ms, ``epoch`` bumped on
every takeover, ``taken_at``) and the shard's progress (``watermark``, ``generation``, ``schema``,
``updated_at``, ``pairs``, ``buckets``). Lease and progress share one document on purpose: every
write of it (claim, renew, commit, release) is a compare-and-set on the ``_seq_no`` this worker
last wrote or read, so a worker that lost the shard (someone took it over, which is a write)
can neither renew it nor commit progress for it. The layout ``n`` is part of the id: a new shard
count starts a new set of documents, seeded from the served watermark (``seed``), so changing
``rollup_shards`` is a rolling restart, never a migration.

Workers announce themselves in ``rollups.worker.<owner>`` (``kind`` = worker, ``expires_at``);
the live ones divide the shards: each takes up to ``ceil(n / live)`` and gives back the rest,
so a worker that joins receives shards from the others within one interval.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from pulse.naming import Names
from storage.rollup_schema import SCHEMA_VERSION

Cas = tuple[int, int]  # (_seq_no, _primary_term)
DAY_MS = 86_400_000
FORGET_EVERY = 100  # heartbeats between two clean-ups of dead workers' announcements


def shard_of(merchant_id: str, shards: int) -> int:
    """The shard of a merchant: stable across processes (blake2b, not the salted ``hash``)."""
    digest = hashlib.blake2b(merchant_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def shard_id(shards: int, shard: int) -> str:
    return f"rollups.shard.{shards}.{shard}"


def worker_id(owner: str) -> str:
    return f"rollups.worker.{owner}"


@dataclass
class Shard:
    """One shard document as last read or written by this worker."""

    index: int
    source: dict[str, Any]  # the fields under "rollups"; {} when the document is absent
    cas: Cas | None  # None: the document does not exist

    def owner(self) -> str | None:
        owner = self.source.get("owner")
        return None if owner is None else str(owner)

    def expires_at(self) -> int:
        return int(self.source.get("expires_at", 0))

    def epoch(self) -> int:
        return int(self.source.get("epoch", 0))

    def free(self, owner: str, now_ms: int) -> bool:
        """Claimable by ``owner``: absent, expired, or already its own."""
        return self.cas is None or self.owner() == owner or self.expires_at() <= now_ms

    def watermark(self, generation: str) -> int | None:
        """This shard's W, if it was written for ``generation`` by this code's schema."""
        wm = self.source.get("watermark")
        same = self.source.get("generation") == generation
        if wm is None or not same or int(self.source.get("schema", 0)) != SCHEMA_VERSION:
            return None
        return int(wm)


def read_all(client: OpenSearch, names: Names, shards: int) -> dict[int, Shard]:
    """Every shard document of the layout (one ``mget``; absent ones with ``cas`` None)."""
    ids = [shard_id(shards, i) for i in range(shards)]
    try:
        found = client.mget(index=names.state_index, body={"ids": ids})["docs"]
    except NotFoundError:
        found = []
    docs = {d["_id"]: d for d in found if d.get("found")}
    out: dict[int, Shard] = {}
    for i, doc_id in enumerate(ids):
        doc = docs.get(doc_id)
        if doc is None:
            out[i] = Shard(i, {}, None)
        else:
            cas = (int(doc["_seq_no"]), int(doc["_primary_term"]))
            out[i] = Shard(i, dict(doc["_source"].get("rollups") or {}), cas)
    return out


def slowest(docs: Iterable[Shard], generation: str) -> int | None:
    """The served watermark of a layout: its slowest shard's W (None if any has none)."""
    marks = [d.watermark(generation) for d in docs]
    if not marks or any(m is None for m in marks):
        return None
    return min(m for m in marks if m is not None)


@dataclass
class ShardLeases:
    """The shards one worker (``owner``) holds, and every write it makes to their documents."""

    client: OpenSearch
    names: Names
    owner: str
    shards: int
    ttl_ms: int
    held: dict[int, Shard] = field(default_factory=dict)
    conflicts: int = 0  # compare-and-set writes refused: claims lost to a rival, leases lost
    _beats: int = 0

    # --- membership -------------------------------------------------------------------

    def heartbeat(self, now_ms: int) -> int:
        """Announce this worker until now + ttl; the number of live workers (itself included)."""
        expires = now_ms + self.ttl_ms
        body = {"rollups": {"kind": "worker", "owner": self.owner, "expires_at": expires}}
        self.client.index(
            index=self.names.state_index, id=worker_id(self.owner), body=body, refresh=True
        )
        query = {
            "bool": {
                "filter": [
                    {"term": {"rollups.kind": "worker"}},
                    {"range": {"rollups.expires_at": {"gt": now_ms}}},
                ]
            }
        }
        found = self.client.count(index=self.names.state_index, body={"query": query})
        self._beats += 1
        if self._beats % FORGET_EVERY == 1:
            self._forget_dead(now_ms)
        return max(1, int(found["count"]))

    def _forget_dead(self, now_ms: int) -> None:
        """Delete the announcements of workers gone for a day (killed ones never leave)."""
        gone = {
            "bool": {
                "filter": [
                    {"term": {"rollups.kind": "worker"}},
                    {"range": {"rollups.expires_at": {"lt": now_ms - DAY_MS}}},
                ]
            }
        }
        self.client.delete_by_query(
            index=self.names.state_index, body={"query": gone}, conflicts="proceed"
        )

    def leave(self) -> None:
        """Stop counting as a live worker (shutdown): the others' share grows at once."""
        with contextlib.suppress(NotFoundError):
            self.client.delete(index=self.names.state_index, id=worker_id(self.owner), refresh=True)

    # --- claiming and giving back ----------------------------------------------------------

    def balance(self, docs: dict[int, Shard], share: int, now_ms: int) -> None:
        """Keep up to ``share`` shards: renew the held ones, give back any beyond the share
        (highest first), claim free ones (absent or expired) until the share is reached."""
        self.held = {i: d for i, d in docs.items() if d.cas is not None and d.owner() == self.owner}
        for i in sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]:
            self.release([i])
        self.renew(self.held, now_ms)
        want = share - len(self.held)
        if want <= 0:
            return
        # Start at an owner-dependent offset so workers starting together try different shards.
        start = shard_of(self.owner, self.shards)
        order = [(start + k) % self.shards for k in range(self.shards)]
        free = [docs[i] for i in order if i not in self.held and docs[i].free(self.owner, now_ms)]
        self._claim(free[:want], now_ms)

    def _claim(self, docs: list[Shard], now_ms: int) -> None:
        writes = []
        for doc in docs:
            body = {
                **doc.source,
                "owner": self.owner,
                "expires_at": now_ms + self.ttl_ms,
                "epoch": doc.epoch() + 1,  # the fencing token: every takeover bumps it
                "taken_at": now_ms,
                "shard": doc.index,
                "shards": self.shards,
            }
            writes.append(Shard(doc.index, body, doc.cas))
        for doc, ok in zip(writes, self._write(writes), strict=True):
            if ok:
                self.held[doc.index] = doc

    def release(self, indices: Iterable[int]) -> None:
        """Give shards back at once (expires_at 0) so another worker need not wait the ttl."""
        docs = [self.held.pop(i) for i in list(indices) if i in self.held]
        released = [Shard(d.index, {**d.source, "expires_at": 0}, d.cas) for d in docs]
        self._write(released)  # a conflict means it was taken over already: nothing to give

    def release_all(self) -> None:
        self.release(list(self.held))

    # --- fencing ------------------------------------------------------------------------

    def renew(self, indices: Iterable[int], now_ms: int) -> set[int]:
        """Extend these held shards' leases (one bulk of compare-and-sets); the ones lost."""
        wanted = sorted(set(indices))
        lost = {i for i in wanted if i not in self.held}
        docs = [
            Shard(i, {**self.held[i].source, "expires_at": now_ms + self.ttl_ms}, self.held[i].cas)
            for i in wanted
            if i in self.held
        ]
        return lost | self._keep(docs)

    def due(self, now_ms: int) -> list[int]:
        """Held shards past half their lease: renew them now, whatever this chunk touches."""
        return [i for i, d in self.held.items() if d.expires_at() - now_ms < self.ttl_ms // 2]

    def check(self, indices: Iterable[int], now_ms: int) -> set[int]:
        """The fence before a write: the shards among ``indices`` this worker may no longer
        write (not held, or the lease it last wrote has run out, so another worker may have
        taken it over). Dropped from ``held``: the next write to their document would fail."""
        lost = set()
        for i in set(indices):
            doc = self.held.get(i)
            if doc is None or doc.expires_at() <= now_ms:
                lost.add(i)
                self.held.pop(i, None)
        return lost

    def commit(self, indices: Iterable[int], now_ms: int, progress: dict[str, Any]) -> set[int]:
        """Record progress on held shards (with a lease renewal, in the same compare-and-set);
        the shards whose commit was refused (lost: the progress does not count)."""
        wanted = sorted(set(indices))
        lost = {i for i in wanted if i not in self.held}
        docs = [
            Shard(
                i,
                {
                    **self.held[i].source,
                    **progress,
                    "schema": SCHEMA_VERSION,
                    "expires_at": now_ms + self.ttl_ms,
                    "updated_at": now_ms,
                },
                self.held[i].cas,
            )
            for i in wanted
            if i in self.held
        ]
        return lost | self._keep(docs)

    def _keep(self, docs: list[Shard]) -> set[int]:
        """Write held shards' documents: keep the written ones, drop (and return) the refused."""
        lost = set()
        for doc, ok in zip(docs, self._write(docs), strict=True):
            if ok:
                self.held[doc.index] = doc
            else:
                lost.add(doc.index)
                self.held.pop(doc.index, None)
        return lost

    def _write(self, docs: list[Shard]) -> list[bool]:
        """One bulk of compare-and-set writes (create when absent); whether each succeeded
        (a success stores the new token in the ``Shard``; callers decide what they hold)."""
        if not docs:
            return []
        body: list[dict[str, Any]] = []
        for doc in docs:
            doc_id = shard_id(self.shards, doc.index)
            meta: dict[str, Any] = {"_index": self.names.state_index, "_id": doc_id}
            if doc.cas is None:
                body += [{"create": meta}, {"rollups": doc.source}]
            else:
                meta.update(if_seq_no=doc.cas[0], if_primary_term=doc.cas[1])
                body += [{"index": meta}, {"rollups": doc.source}]
        items = self.client.bulk(body=body)["items"]
        out = []
        for doc, item in zip(docs, items, strict=True):
            result = next(iter(item.values()))
            status = int(result.get("status", 500))
            if status == 409:
                self.conflicts += 1
                out.append(False)
                continue
            if status >= 300:
                raise RuntimeError(f"shard document write failed: {result}")
            doc.cas = (int(result["_seq_no"]), int(result["_primary_term"]))
            out.append(True)
        return out


def fair_share(shards: int, workers: int) -> int:
    """How many shards one of ``workers`` live workers keeps."""
    return math.ceil(shards / max(1, workers))
