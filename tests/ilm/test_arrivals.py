"""storage.arrivals: per-day bounds of the newest ingested_at, raised by compare-and-set."""

from __future__ import annotations

import threading

from opensearchpy import OpenSearch

from pulse.naming import Names
from storage import arrivals
from storage.arrivals import Arrivals

DAY = 20_000  # a UTC day number


def _seq(client: OpenSearch, names: Names, day: int) -> int:
    return int(client.get(index=names.state_index, id=arrivals.doc_id(day))["_seq_no"])


def test_cover_raises_the_bound_ahead_and_skips_covered_stamps(
    os_client: OpenSearch, names: Names
) -> None:
    a = Arrivals(os_client, names, lookahead_ms=1_000)
    assert arrivals.bounds(os_client, names, [DAY]) == {}
    a.cover([DAY, DAY + 1], 5_000)
    assert arrivals.bounds(os_client, names, [DAY, DAY + 1, DAY + 2]) == {
        DAY: 6_000,
        DAY + 1: 6_000,
    }
    seq = _seq(os_client, names, DAY)
    a.cover([DAY], 5_900)  # within the lookahead: no write
    assert _seq(os_client, names, DAY) == seq
    Arrivals(os_client, names, 1_000).cover([DAY], 5_500)  # another writer: reads, no write
    assert _seq(os_client, names, DAY) == seq
    a.cover([DAY], 7_000)
    assert arrivals.bounds(os_client, names, [DAY]) == {DAY: 8_000}


def test_concurrent_writers_never_lower_the_bound(os_client: OpenSearch, names: Names) -> None:
    writers = [Arrivals(os_client, names, lookahead_ms=0) for _ in range(6)]
    stamps = [[w * 100 + i for i in range(0, 100, 7)] for w in range(6)]

    def run(writer: Arrivals, mine: list[int]) -> None:
        for stamp in mine:
            writer.cover([DAY], stamp)

    threads = [
        threading.Thread(target=run, args=pair) for pair in zip(writers, stamps, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert arrivals.bounds(os_client, names, [DAY])[DAY] == max(max(s) for s in stamps)
