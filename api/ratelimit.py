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

A request spends tokens in proportion to its planned cost (api.budget), so ``take`` takes a
token count. Tokens drawn by two threads of one replica at once are added to the replica's
grant, never put in place of each other (a lost grant made a key's minute 39 of 40 tokens).
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
        self._lock = threading.Lock()  # read and write of a bucket are one step

    def draw(self, key: str, want: int, now_ms: int) -> tuple[int, float]:
        with self._lock:
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
    """``take(key, tokens)`` spends ``tokens`` of the key's bucket or raises RateLimited with a
    retry hint. A request never needs more than a full bucket: more is taken as a full one."""

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

    def take(self, key: str, tokens: int = 1) -> None:
        tokens = min(max(1, tokens), self.per_minute)
        now = self.clock()
        held = self._spend(key, tokens, now)
        if held is None:
            return
        want = max(self.grant_size, tokens - held)
        try:
            granted, wait_s = self.buckets.draw(key, want, int(now * 1000))
        except _Moved:  # replicas racing for the same key's bucket: it is being hammered
            granted, wait_s = 0, 1.0
        missing = self._keep(key, granted, tokens, now)
        if missing:
            wait_s = max(wait_s, missing * 60.0 / self.per_minute)
            raise RateLimited(
                f"rate limit of {self.per_minute} tokens per minute reached (this request "
                f"costs {tokens}); retry in {wait_s:.1f}s",
                retry_after_s=wait_s,
            )

    def _live(self, key: str, now: float) -> _Grant | None:
        """This replica's unexpired grant of ``key`` (call with the lock held)."""
        grant = self._grants.get(key)
        if grant is None or now - grant.taken_at > GRANT_TTL_S:
            return None
        return grant

    def _spend(self, key: str, tokens: int, now: float) -> int | None:
        """None when ``tokens`` were spent from this replica's grant of ``key``; else the
        tokens the grant holds (spent by nobody meanwhile: the draw adds to them)."""
        with self._lock:
            grant = self._live(key, now)
            if grant is not None and grant.tokens >= tokens:
                grant.tokens -= tokens
                return None
            return grant.tokens if grant is not None else 0

    def _keep(self, key: str, granted: int, tokens: int, now: float) -> int:
        """Add ``granted`` to the key's grant, then spend ``tokens`` from it when it holds
        them; answers how many are missing (0: spent). Adding, not replacing: another thread
        of this replica may have stored its own draw since our ``_spend``."""
        with self._lock:
            grant = self._live(key, now)
            if grant is None:
                if len(self._grants) >= MAX_TRACKED_KEYS and key not in self._grants:
                    self._grants.clear()  # bounded memory; a reset only ever withholds tokens
                grant = self._grants[key] = _Grant(0, now)
            grant.tokens += granted
            grant.taken_at = now
            if grant.tokens < tokens:
                return tokens - grant.tokens
            grant.tokens -= tokens
            return 0
