"""Routing a time range to the alias members whose names say they can hold it."""

from __future__ import annotations

from datetime import UTC, datetime

from opensearchpy import OpenSearch

from pulse.naming import Names
from pulse.settings import Settings
from storage import served
from storage.templates import ensure_raw_day


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_names_give_day_and_month_spans_and_undated_indices_are_always_searched() -> None:
    found = [
        served._member("events-g1-2026.03.01-000001"),
        served._member("events-g2-2026.03.02"),
        served._member("rollups-g1-2026.02"),
        served._member("rollups-g1-2026.12"),
        served._member("legacy-events"),
        served._member("events-g1-2026.02.30"),  # not a date: treated as undated
    ]
    assert found[0].start_ms == ms("2026-03-01") and found[0].end_ms == ms("2026-03-02")
    assert found[3].end_ms == ms("2027-01-01")  # December rolls over into the next year
    assert found[5].start_ms is None
    march_1 = served.covering(found, ms("2026-03-01T23:00"), ms("2026-03-02T00:00"))
    assert march_1 == ["events-g1-2026.03.01-000001", "legacy-events", "events-g1-2026.02.30"]
    february = served.covering(found, ms("2026-02-10"), ms("2026-03-01"))  # end is exclusive
    assert february == ["rollups-g1-2026.02", "legacy-events", "events-g1-2026.02.30"]


def test_indices_for_follows_the_alias(
    os_client: OpenSearch, settings: Settings, names: Names
) -> None:
    day = datetime(2026, 5, 4, tzinfo=UTC).date()
    assert served.indices_for(os_client, names.events_alias, 0, 1) is None  # no alias yet
    ensure_raw_day(os_client, names, settings.generation, day)
    ensure_raw_day(os_client, names, "g2", day, read_alias=False)  # outside the read alias
    inside = served.indices_for(
        os_client, names.events_alias, ms("2026-05-04T10:00"), ms("2026-05-04T11:00")
    )
    assert inside == names.raw_backing_index(settings.generation, day, 1)
    assert (
        served.indices_for(os_client, names.events_alias, ms("2026-05-05"), ms("2026-05-06"))
        is None
    )
