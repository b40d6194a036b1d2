"""Per-key token buckets: ``rate_limit_per_minute`` tokens, refilled continuously.

In-process state: each API replica enforces the limit on its own (documented in
docs/decisions/0042); a key spread over N replicas can reach N times the rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from api.errors import RateLimited

MAX_TRACKED_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``take(key)`` spends one token or raises RateLimited with a retry hint."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> None:
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_TRACKED_KEYS:
                    self._buckets.clear()  # bounded memory; a reset only ever grants tokens
                bucket = self._buckets[key] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens < cost:
                wait = (cost - bucket.tokens) / self.rate
                raise RateLimited(
                    f"rate limit of {int(self.capacity)} queries per minute reached; "
                    f"retry in {wait:.1f}s",
                    retry_after_s=wait,
                )
            bucket.tokens -= cost
