"""The API's read of day packs (api.sources.total_doc_cells): exactly the served hours' slots,
and never another merchant's pack."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from api import planner
from api.errors import UnexpectedAnswer
from api.model import HOUR_MS, Granularity, Metric
from api.sources import Ctx, total_doc_cells
from pulse.naming import Names
from pulse.settings import Settings
from storage import rollup_schema as rs

SETTINGS = Settings(opensearch_url="http://127.0.0.1:9")
DAY = 1_704_067_200_000  # 2024-01-01T00:00Z


class Packs:
    """An engine answering ``mget`` with the given pack sources (by merchant and day)."""

    def __init__(self, packs: dict[tuple[str, int], dict[str, Any]]) -> None:
        self.by_id = {rs.pack_id(m, d): doc for (m, d), doc in packs.items()}

    def mget(self, body: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        found = [self.by_id.get(d["_id"]) for d in body["docs"]]
        return {"docs": [{"found": True, "_source": f} if f else {"found": False} for f in found]}


def pack(merchant: str, day: int, events: list[int]) -> dict[str, Any]:
    hours = {f: [0] * 24 for f in rs.PACK_FIELDS}
    hours[rs.EVENTS] = events
    return {rs.MERCHANT: merchant, rs.LEVEL: rs.LEVEL_DAY, rs.DAY: day, rs.PACK: hours}


def cells(client: Packs, intervals: tuple[tuple[int, int], ...]) -> Any:
    plan = planner.build_plan(
        "m1", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC), [Metric.EVENTS],
        granularity=Granularity.DAY, now_ms=DAY + 10 * 24 * HOUR_MS,
    )  # fmt: skip
    plan = planner.time_buckets(plan, SETTINGS)
    ctx = Ctx(client, Names(namespace="t"), SETTINGS)  # type: ignore[arg-type]
    return total_doc_cells(ctx, plan, intervals)


def test_only_the_served_hours_slots_are_folded() -> None:
    client = Packs({("m1", DAY): pack("m1", DAY, list(range(1, 25)))})
    served = ((DAY + 2 * HOUR_MS, DAY + 5 * HOUR_MS), (DAY + 23 * HOUR_MS, DAY + 26 * HOUR_MS))
    got = cells(client, served)
    # hours 2, 3, 4 and 23 of day one (3 + 4 + 5 + 24); day two has no pack: no events
    assert got[(None, None)].events == 36 and got[((), 0)].events == 36
    assert ((), 1) not in got


def test_a_pack_of_another_merchant_is_refused() -> None:
    client = Packs({("m1", DAY): pack("m2", DAY, [1] * 24)})  # a wrong answer to m1's id
    with pytest.raises(UnexpectedAnswer):
        cells(client, ((DAY, DAY + HOUR_MS),))


def test_disputes_come_from_their_slots_and_a_schema_3_pack_reads_none() -> None:
    """Schema 4 packs carry disputes per hour; a schema-3 pack (a day older than raw retention
    at the upgrade, never rebuilt: decision 0205) has no such array and must still be read."""
    new = pack("m1", DAY, [2] * 24)
    new[rs.PACK][rs.DISPUTES] = [1 if h in (3, 4) else 0 for h in range(24)]
    old = pack("m1", DAY + 24 * HOUR_MS, [5] * 24)
    del old[rs.PACK][rs.DISPUTES]
    client = Packs({("m1", DAY): new, ("m1", DAY + 24 * HOUR_MS): old})
    got = cells(client, ((DAY + 4 * HOUR_MS, DAY + 30 * HOUR_MS),))
    assert (got[((), 0)].disputes, got[((), 0)].events) == (1, 40)  # hours 4..23 of day one
    assert (got[((), 1)].disputes, got[((), 1)].events) == (0, 30)  # hours 0..5 of day two
