"""Per-key rate limits shared by every API replica: one token bucket per key, in the engine.

Each key has ``rate_limit_per_minute`` tokens, refilled continuously. The bucket is a
document of the rate-limit index (``tokens``, ``updated_ms``), moved by compare-and-set, so
replicas draw from the same bucket and a key spread over N replicas still gets the rate once
(decision 0101; before, each replica had its own bucket and allowed N times the rate).

A replica does not go to the engine for every request: it takes a *grant* of up to
``per_minute / 20`` tokens at once and spends it locally. Grants are dropped after
``GRANT_TTL_S`` unspent, so what replicas hold beyond the shared bucket is bounded by one
grant each, taken within the last minute. With the bench's very high limits one engine
round trip per key per minute remains.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from api.errors import RateLimited
from pulse.naming import Names
from storage.templates import ensure_index

MAX_TRACKED_KEYS = 100_000
GRANT_TTL_S = 60.0
GRANTS_PER_MINUTE = 20  # a grant is at most 1/20 of a minute's tokens
BUCKETS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "key_id": {"type": "keyword"},
        "tokens": {"type": "double"},
        "updated_ms": {"type": "long"},
    },
}


class Buckets(Protocol):
    """Where the token buckets live: ``draw`` takes up to ``want`` tokens of a key's bucket
    (refilled to ``now``) and answers (tokens granted, seconds until one more token)."""

    def draw(self, key: str, want: int, now_ms: int) -> tuple[int, float]: ...


@dataclass
class _Bucket:
    tokens: float
    updated_ms: int


class Refill:
    """The bucket rule, shared by both stores: ``capacity`` tokens, ``capacity`` per minute."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.per_ms = per_minute / 60_000.0

    def draw(self, bucket: _Bucket | None, want: int, now_ms: int) -> tuple[_Bucket, int, float]:
        """The bucket after taking up to ``want`` whole tokens, the tokens taken, and the
        seconds until one more token is there."""
        if bucket is None:
            bucket = _Bucket(self.capacity, now_ms)
        elapsed = max(0, now_ms - bucket.updated_ms)  # a replica's clock behind: no refill
        tokens = min(self.capacity, bucket.tokens + elapsed * self.per_ms)
        granted = min(want, int(tokens))
        left = tokens - granted
        wait_s = 0.0 if left >= 1 else (1 - left) / self.per_ms / 1000
        return _Bucket(left, max(now_ms, bucket.updated_ms)), granted, wait_s


class LocalBuckets:
    """Buckets in this process only: for one replica, tests and benches."""

    def __init__(self, per_minute: int) -> None:
        self.rule = Refill(per_minute)
        self._buckets: dict[str, _Bucket] = {}

    def draw(self, key: str, want: int, now_ms: int) -> tuple[int, float]:
        if len(self._buckets) >= MAX_TRACKED_KEYS and key not in self._buckets:
            self._buckets.clear()  # bounded memory; a reset only ever grants tokens
        bucket, granted, wait_s = self.rule.draw(self._buckets.get(key), want, now_ms)
        self._buckets[key] = bucket
        return granted, wait_s


class _Moved(Exception):
    """The bucket changed between our read and our write: read it again."""


class EngineBuckets:
    """Buckets as documents of the rate-limit index, one per key, compare-and-set."""

    def __init__(self, client: OpenSearch, names: Names, per_minute: int) -> None:
        self.client = client
        self.index = names.ratelimit_index
        self.rule = Refill(per_minute)
        self._ensured = False

    def draw(self, key: str, want: int, now_ms: int) -> tuple[int, float]:
        if not self._ensured:
            if ensure_index(self.client, self.index):
                self.client.indices.put_mapping(index=self.index, body=BUCKETS_MAPPING)
            self._ensured = True
        return self._draw(key, want, now_ms)

    @retry(
        retry=retry_if_exception_type(_Moved),
        stop=stop_after_attempt(10),
        wait=wait_random(0, 0.02),
        reraise=True,
    )
    def _draw(self, key: str, want: int, now_ms: int) -> tuple[int, float]:
        try:
            found = self.client.get(index=self.index, id=key)
        except NotFoundError:
            found = None
        stored = None
        if found is not None:
            src = found["_source"]
            stored = _Bucket(float(src["tokens"]), int(src["updated_ms"]))
        bucket, granted, wait_s = self.rule.draw(stored, want, now_ms)
        if granted:  # nothing taken: nothing to write
            self._write(key, bucket, found)
        return granted, wait_s

    def _write(self, key: str, bucket: _Bucket, found: dict[str, Any] | None) -> None:
        body = {"key_id": key, "tokens": bucket.tokens, "updated_ms": bucket.updated_ms}
        cas: dict[str, Any] = (
            {"op_type": "create"}
            if found is None
            else {"if_seq_no": found["_seq_no"], "if_primary_term": found["_primary_term"]}
        )
        try:
            self.client.index(index=self.index, id=key, body=body, **cas)
        except ConflictError:
            raise _Moved() from None


@dataclass
class _Grant:
    tokens: int
    taken_at: float


class RateLimiter:
    """``take(key)`` spends one token or raises RateLimited with a retry hint."""

    def __init__(
        self,
        per_minute: int,
        buckets: Buckets | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_minute = per_minute
        self.buckets = buckets or LocalBuckets(per_minute)
        self.clock = clock
        self.grant_size = max(1, per_minute // GRANTS_PER_MINUTE)
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        now = self.clock()
        if self._spend(key, now):
            return
        try:
            granted, wait_s = self.buckets.draw(key, self.grant_size, int(now * 1000))
        except _Moved:  # replicas racing for the same key's bucket: it is being hammered
            granted, wait_s = 0, 1.0
        if not granted:
            raise RateLimited(
                f"rate limit of {self.per_minute} queries per minute reached; "
                f"retry in {wait_s:.1f}s",
                retry_after_s=wait_s,
            )
        with self._lock:
            if len(self._grants) >= MAX_TRACKED_KEYS and key not in self._grants:
                self._grants.clear()  # bounded memory; a reset only ever withholds tokens
            self._grants[key] = _Grant(granted - 1, now)  # one of them is this request's

    def _spend(self, key: str, now: float) -> bool:
        """One token from this replica's unexpired grant of ``key``, if it has one."""
        with self._lock:
            grant = self._grants.get(key)
            if grant is None or grant.tokens < 1 or now - grant.taken_at > GRANT_TTL_S:
                return False
            grant.tokens -= 1
            return True
