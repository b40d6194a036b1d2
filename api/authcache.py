"""Key lookups that cost the engine nothing for made-up keys (docs/decisions/0141).

Every presented key used to cost one engine GET, so a flood of random ``pulse_…`` strings was
a flood on OpenSearch. ``KeyGuard`` sits in front of ``api.keys.lookup``:

- known keys are remembered for ``api_key_cache_ttl_s`` (a revoked key stops within that);
- unknown or revoked key hashes are remembered for ``api_unknown_key_ttl_s`` (a negative
  cache): presenting one again is answered without a read;
- each client address may cause ``api_auth_failures_burst`` failed lookups at once, then
  ``api_auth_failures_per_minute`` (a token bucket): past it, a key not in the cache is
  refused with RATE_LIMITED *before* any engine read. A lookup that finds a key gives its
  token back, so many valid keys behind one address are not limited by this.

Both caches are bounded LRUs; everything is per process (each replica learns on its own).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from api.errors import RateLimited, Unauthenticated
from api.keys import Principal, hash_key
from pulse.settings import Settings

V = TypeVar("V")
MAX_ADDRESSES = 100_000


class TtlCache(Generic[V]):
    """A bounded LRU whose entries expire ``ttl_s`` after they were put (thread-safe)."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if self.clock() - hit[0] >= self.ttl_s:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: str, value: V) -> None:
        if self.ttl_s <= 0 or self.max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = (self.clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class FailureBudget:
    """Per client address: ``burst`` failed lookups, refilled at ``per_minute``."""

    def __init__(self, burst: int, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(burst)
        self.per_s = per_minute / 60.0
        self.clock = clock
        self._left: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)
        self._lock = threading.Lock()

    def reserve(self, address: str) -> float:
        """Take one token for a lookup about to be made: 0.0, or the seconds to wait."""
        now = self.clock()
        with self._lock:
            if len(self._left) >= MAX_ADDRESSES and address not in self._left:
                self._left.clear()  # bounded memory; a reset only ever allows more lookups
            tokens, at = self._left.get(address, (self.capacity, now))
            tokens = min(self.capacity, tokens + max(0.0, now - at) * self.per_s)
            if tokens < 1:
                self._left[address] = (tokens, now)
                return (1 - tokens) / self.per_s
            self._left[address] = (tokens - 1, now)
            return 0.0

    def refund(self, address: str) -> None:
        """The lookup found a key: it was not a failure."""
        with self._lock:
            tokens, at = self._left.get(address, (self.capacity - 1, self.clock()))
            self._left[address] = (min(self.capacity, tokens + 1), at)


class KeyGuard:
    """``principal(key, address, fetch)``: the key's principal, through the caches above;
    ``fetch`` is the engine lookup (api.keys.lookup bound to a client)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        entries = settings.api_key_cache_entries
        self.known: TtlCache[Principal] = TtlCache(entries, settings.api_key_cache_ttl_s, clock)
        self.unknown: TtlCache[bool] = TtlCache(entries, settings.api_unknown_key_ttl_s, clock)
        self.failures = FailureBudget(
            settings.api_auth_failures_burst, settings.api_auth_failures_per_minute, clock
        )

    def principal(
        self, key: str, address: str, fetch: Callable[[str], Principal | None]
    ) -> Principal:
        digest = hash_key(key)
        known = self.known.get(digest)
        if known is not None:
            return known
        if self.unknown.get(digest):
            raise Unauthenticated("unknown or revoked API key")
        wait_s = self.failures.reserve(address)
        if wait_s:
            raise RateLimited(
                "too many failed authentications from this address; "
                f"retry in {wait_s:.1f}s with a valid key",
                retry_after_s=wait_s,
            )
        found = fetch(key)  # engine errors propagate: the caller maps them
        if found is None:
            self.unknown.put(digest, True)
            raise Unauthenticated("unknown or revoked API key")
        self.failures.refund(address)
        self.known.put(digest, found)
        return found
