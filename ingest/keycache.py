"""The collector's key check: write keys verified against the key store, remembered briefly.

The collector answers thousands of requests a second from a few senders (Fluent Bit pods,
merchants' servers), each presenting the same key again and again. Asking the key store
(an OpenSearch GET) every time would cost more than the rest of the request, so the verdict
for a key's hash — its principal, or "unknown" — is kept for ``ttl_s`` seconds. That is the
revocation bound: a revoked key keeps writing for at most ``ttl_s`` seconds per collector
process. Only hashes are kept, never the keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pulse.keystore import KEY_PREFIX, Principal, hash_key

Resolve = Callable[[str], Principal | None]  # key hash -> principal (blocking: the store)


@dataclass
class KeyCache:
    """Verdicts by key hash, each for ``ttl_s`` seconds; at most ``max_entries`` kept."""

    ttl_s: float
    max_entries: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _verdicts: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)

    def get(self, digest: str) -> tuple[bool, Principal | None]:
        """(known, principal): known is False when the hash must be looked up."""
        found = self._verdicts.get(digest)
        if found is None or found[0] <= self.clock():
            return False, None
        return True, found[1]

    def put(self, digest: str, principal: Principal | None) -> None:
        if len(self._verdicts) >= self.max_entries:
            self._evict()
        self._verdicts[digest] = (self.clock() + self.ttl_s, principal)

    def _evict(self) -> None:
        """Drop expired verdicts; if none expired, the oldest one (dicts keep insertion order):
        a flood of random keys can cost a re-check, never memory."""
        now = self.clock()
        expired = [d for d, (until, _) in self._verdicts.items() if until <= now]
        for digest in expired:
            del self._verdicts[digest]
        if len(self._verdicts) >= self.max_entries:
            del self._verdicts[next(iter(self._verdicts))]


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX):
        return None
    return key


def digest_of(key: str) -> str:
    return hash_key(key)
