"""pulse.lru.LockedLRU: the bound, the recency order and the counters the API's memos report."""

from __future__ import annotations

import threading

from pulse.lru import LockedLRU


def test_a_write_past_the_size_drops_the_least_recently_used() -> None:
    lru: LockedLRU[str, int] = LockedLRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now more recent than b
    lru.put("c", 3)
    assert (lru.get("b"), lru.get("a"), lru.get("c")) == (None, 1, 3)
    lru.put("a", 10)  # rewriting refreshes too
    lru.put("d", 4)
    assert (lru.get("c"), lru.get("a"), len(lru)) == (None, 10, 2)
    assert (lru.hits, lru.misses) == (4, 2)
    lru.clear()
    assert len(lru) == 0 and lru.get("a") is None


def test_threads_never_see_more_than_the_size() -> None:
    lru: LockedLRU[int, int] = LockedLRU(50)
    seen: list[int] = []

    def writer(base: int) -> None:
        for i in range(2000):
            lru.put(base + i, i)
            seen.append(len(lru))

    threads = [threading.Thread(target=writer, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(seen) <= 50 and len(lru) == 50
