"""One pair scan per run window for every worker (docs/decisions/0222).

Every worker needs ``compute.changed_pairs(after, through)`` for its shards, and the engine
can only answer it for every merchant at once (no hash filter without scripts); the closing
run of a busy hour makes that scan aggregate the whole hour. Workers align their W_to to a
grid (``rollup_watermark_step_s``), so in steady state they all ask for the same window.
The first to ask takes a lock document (``op_type=create``: one winner), scans once and
writes the result per shard, ``rollups.pairs.<n>.<after>.<through>.<i>`` (every shard, empty
ones included, so a reader knows the set is complete); the others read their shards' documents,
waiting for them while the lock is young, and scan themselves if it expires (a scanner that
died). A cached result is what the reader's own scan would have returned: the window is the
same, and the scan ran after ``through`` + the visibility margin, like the reader's would.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConflictError, NotFoundError

from pulse.naming import Names
from rollups import compute
from rollups.compute import Pair

KEEP_MS = 3_600_000  # cached windows older than this (by ``through``) are deleted
POLL_S = 0.2


def key(shards: int, after: int | None, through: int) -> str:
    return f"rollups.pairs.{shards}.{'none' if after is None else after}.{through}"


class SharedScan:
    """The changed pairs of one window, scanned by one worker and read by the others."""

    def __init__(
        self,
        client: OpenSearch,
        names: Names,
        shards: int,
        shard_of: Callable[[str], int],
        page: int,
        lock_ms: int,
    ) -> None:
        self.client, self.names, self.shards = client, names, shards
        self.shard_of, self.page, self.lock_ms = shard_of, page, lock_ms
        self.scans = 0  # scans this worker ran itself (the rest were read)

    def pairs(self, group: set[int], after: int | None, through: int, now_ms: int) -> list[Pair]:
        """The changed pairs of the shards in ``group`` for (after, through]."""
        k = key(self.shards, after, through)
        found = self._read(k, group)
        if found is not None:
            return found
        expires = self._lock(k, through, now_ms)
        if expires is None:
            return self._scan_and_share(k, group, after, through)
        deadline = time.monotonic() + (expires - now_ms) / 1000
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            found = self._read(k, group)
            if found is not None:
                return found
        return self.scan(group, after, through)  # the scanner died or is stuck

    def scan(self, group: set[int], after: int | None, through: int) -> list[Pair]:
        self.scans += 1
        raw = self.names.events_alias
        found = compute.changed_pairs(self.client, raw, after, through, self.page)
        return [p for p in found if self.shard_of(p[0]) in group]

    def _scan_and_share(
        self, k: str, group: set[int], after: int | None, through: int
    ) -> list[Pair]:
        every = self.scan(set(range(self.shards)), after, through)
        by_shard: dict[int, list[list[object]]] = {i: [] for i in range(self.shards)}
        for merchant, hour in every:
            by_shard[self.shard_of(merchant)].append([merchant, hour])
        actions = (
            {
                "_op_type": "index",
                "_index": self.names.state_index,
                "_id": f"{k}.{i}",
                "_source": {"rollups": {"kind": "pairs", "end": through, "pair_list": {"p": ps}}},
            }
            for i, ps in by_shard.items()
        )
        helpers.bulk(self.client, actions, chunk_size=200)
        self._forget_before(through - KEEP_MS)
        return [p for p in every if self.shard_of(p[0]) in group]

    def _read(self, k: str, group: set[int]) -> list[Pair] | None:
        """The group's cached pairs, or None unless every shard's document is there."""
        ids = [f"{k}.{i}" for i in sorted(group)]
        try:
            docs = self.client.mget(index=self.names.state_index, body={"ids": ids})["docs"]
        except NotFoundError:
            return None
        if not all(d.get("found") for d in docs):
            return None
        out: list[Pair] = []
        for d in docs:
            out += [(str(m), int(h)) for m, h in d["_source"]["rollups"]["pair_list"]["p"]]
        return out

    def _lock(self, k: str, through: int, now_ms: int) -> int | None:
        """Take the window's scan (None): create its lock, or replace one that expired;
        else when the other scanner's lock expires (epoch ms)."""
        expires = now_ms + self.lock_ms
        body = {"rollups": {"kind": "scan-lock", "end": through, "expires_at": expires}}
        try:
            self.client.create(index=self.names.state_index, id=f"{k}.lock", body=body)
            return None
        except ConflictError:
            pass
        doc = self.client.get(index=self.names.state_index, id=f"{k}.lock")
        theirs = int(doc["_source"]["rollups"]["expires_at"])
        if theirs > now_ms:
            return theirs
        try:
            self.client.index(
                index=self.names.state_index,
                id=f"{k}.lock",
                body=body,
                if_seq_no=doc["_seq_no"],
                if_primary_term=doc["_primary_term"],
            )
        except ConflictError:
            return now_ms + self.lock_ms  # another worker replaced it just now
        return None

    def _forget_before(self, end_ms: int) -> None:
        old = {
            "bool": {
                "filter": [
                    {"terms": {"rollups.kind": ["pairs", "scan-lock"]}},
                    {"range": {"rollups.end": {"lt": end_ms}}},
                ]
            }
        }
        self.client.delete_by_query(
            index=self.names.state_index, body={"query": old}, conflicts="proceed"
        )
