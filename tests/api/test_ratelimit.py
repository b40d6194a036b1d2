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


class _BothDrawFirst:
    """Buckets whose first two draws wait for each other: both threads have missed the
    replica's grant and drawn from the shared bucket before either stores what it got."""

    def __init__(self, inner: EngineBuckets) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(2, timeout=10)
        self.draws = 0

    def draw(self, key: str, want: int, now_ms: int) -> tuple[int, float]:
        self.draws += 1
        if self.draws <= 2:
            self.barrier.wait()
        return self.inner.draw(key, want, now_ms)


def test_two_threads_drawing_at_once_lose_no_tokens(
    api_client: OpenSearch, api_names: Names
) -> None:
    """Forced interleaving: two threads of one replica both find no grant, both draw a grant
    of 2 from the engine, then both store it. Each spends 1; the other token of each grant
    must stay spendable, so the key's minute is still exactly 40 tokens (it was 39: the
    second grant replaced the first)."""
    buckets = _BothDrawFirst(EngineBuckets(api_client, api_names, 40))
    limiter = RateLimiter(40, buckets, clock=lambda: NOW)
    threads = [threading.Thread(target=limiter.take, args=("key-race",)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert buckets.draws == 2  # both went to the engine at once
    taken: list[int] = [1, 1]
    _spend_all(limiter, "key-race", taken)
    assert len(taken) == 40


def test_a_request_spends_tokens_in_proportion_to_its_cost(
    api_client: OpenSearch, api_names: Names
) -> None:
    """take(key, n) spends n tokens: 100 a minute buy four 22-token requests, not a fifth;
    the refusal says what the request costs; a 1-token request still fits."""
    limiter = RateLimiter(100, EngineBuckets(api_client, api_names, 100), clock=lambda: NOW)
    for _ in range(4):
        limiter.take("key-cost", 22)
    with pytest.raises(RateLimited, match="costs 22"):
        limiter.take("key-cost", 22)
    for _ in range(12):
        limiter.take("key-cost", 1)
    with pytest.raises(RateLimited):
        limiter.take("key-cost", 1)
