"""Rate limits shared by API replicas: one token bucket per key in the engine (decision 0101)."""

from __future__ import annotations

import threading

import pytest
from opensearchpy import OpenSearch

from api.errors import RateLimited
from api.ratelimit import EngineBuckets, LocalBuckets, RateLimiter
from pulse.naming import Names

NOW = 1_790_000_000.0  # a frozen clock: no refill during the test


def _replicas(client: OpenSearch, names: Names, per_minute: int, n: int) -> list[RateLimiter]:
    return [
        RateLimiter(per_minute, EngineBuckets(client, names, per_minute), clock=lambda: NOW)
        for _ in range(n)
    ]


def _spend_all(limiter: RateLimiter, key: str, taken: list[int]) -> None:
    while True:
        try:
            limiter.take(key)
        except RateLimited:
            return
        taken.append(1)


def test_replicas_share_one_bucket_per_key(api_client: OpenSearch, api_names: Names) -> None:
    """Three replicas, two threads each, drain one key: together they get exactly the
    per-minute tokens once, not once per replica; another key has its own bucket."""
    replicas = _replicas(api_client, api_names, 40, 3)
    taken: list[int] = []
    threads = [
        threading.Thread(target=_spend_all, args=(replica, "key-shared", taken))
        for replica in replicas
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 40
    with pytest.raises(RateLimited, match="retry in"):
        replicas[0].take("key-shared")
    replicas[1].take("key-other")


def test_a_grant_is_spent_locally_and_expires(api_client: OpenSearch, api_names: Names) -> None:
    """A replica takes tokens a grant at a time (1/20 of the minute's), so most requests do
    not touch the engine; an unspent grant is dropped after a minute, and the shared bucket,
    refilled meanwhile, answers instead."""
    now = [NOW]
    buckets = EngineBuckets(api_client, api_names, 200)
    limiter = RateLimiter(200, buckets, clock=lambda: now[0])
    draws: list[int] = []
    original = buckets.draw

    def counted(key: str, want: int, now_ms: int) -> tuple[int, float]:
        draws.append(want)
        return original(key, want, now_ms)

    buckets.draw = counted  # type: ignore[method-assign]
    for _ in range(25):
        limiter.take("key-grants")
    assert draws == [10, 10, 10]  # grants of 10: requests 1, 11 and 21 went to the engine
    now[0] += 61.0
    limiter.take("key-grants")
    assert len(draws) == 4  # the 5 tokens left of the third grant expired


def test_without_an_engine_one_process_keeps_its_own_bucket() -> None:
    limiter = RateLimiter(3, LocalBuckets(3), clock=lambda: NOW)
    for _ in range(3):
        limiter.take("k")
    with pytest.raises(RateLimited):
        limiter.take("k")
