"""The writer's index resolution (``storage.targets``): a batch's days and their neighbours
in a few requests, and nothing remembered between batches (docs/decisions/0306)."""

from __future__ import annotations

from datetime import date

from opensearchpy import OpenSearch

from pulse.naming import Names
from storage.targets import EPOCH, Targets
from storage.templates import sealed_indices, write_target

DAY = (date(2026, 3, 10) - EPOCH).days
D = {n: EPOCH.fromordinal(EPOCH.toordinal() + DAY + n) for n in range(-3, 4)}


def _roll_over(client: OpenSearch, names: Names, generation: str, when: date, seq: int) -> None:
    """What ilm's rollover does: the next backing index becomes the write index, atomically."""
    alias = names.raw_index(generation, when)
    old, new = (names.raw_backing_index(generation, when, n) for n in (seq, seq + 1))
    client.indices.create(index=new, body={"aliases": {alias: {"is_write_index": False}}})
    swap = [
        {"add": {"index": old, "alias": alias, "is_write_index": False}},
        {"add": {"index": new, "alias": alias, "is_write_index": True}},
    ]
    client.indices.update_aliases(body={"actions": swap})


def _cat(client: OpenSearch, names: Names, generation: str, when: date) -> list[str]:
    rows = client.cat.indices(index=names.raw_index(generation, when) + "*", format="json")
    return sorted(str(row["index"]) for row in rows or [])


def test_one_listing_gives_what_the_per_day_requests_gave(
    os_client: OpenSearch, names: Names
) -> None:
    """Sealed backing indices of each day, then every index of its neighbours in day order:
    rolled-over days, a legacy plain day index, a day of another generation, a missing day."""
    generation = {D[1]: "g2"}  # day +1 is served by another generation (a reprocessed day)
    targets = Targets(os_client, names, lambda when: generation.get(when, "g1"), 1)
    for n in (-1, 0, 1):
        write_target(os_client, names, generation.get(D[n], "g1"), D[n])
    _roll_over(os_client, names, "g1", D[0], 1)
    _roll_over(os_client, names, "g2", D[1], 1)
    _roll_over(os_client, names, "g2", D[1], 2)
    os_client.indices.create(index=names.raw_index("g1", D[2]))  # legacy: no alias, no suffix
    write_target(os_client, names, "g1", D[1])  # the other generation's day: never listed

    days = [DAY + n for n in (-1, 0, 1, 2)]
    listed = targets.earlier_copies_of(days)

    def per_day(day: int) -> list[str]:
        when = EPOCH.fromordinal(EPOCH.toordinal() + day)
        out = sealed_indices(os_client, names, generation.get(when, "g1"), when)
        for other in (day - 1, day + 1):
            o = EPOCH.fromordinal(EPOCH.toordinal() + other)
            out.extend(_cat(os_client, names, generation.get(o, "g1"), o))
        return out

    assert listed == {day: per_day(day) for day in days}
    assert listed[DAY] == [
        names.raw_backing_index("g1", D[0], 1),  # sealed by the rollover
        names.raw_backing_index("g1", D[-1], 1),
        *(names.raw_backing_index("g2", D[1], n) for n in (1, 2, 3)),
    ]
    assert targets.earlier_copies(DAY) == listed[DAY]


def test_a_rollover_or_a_deletion_is_seen_by_the_next_batch(
    os_client: OpenSearch, names: Names
) -> None:
    """Nothing is remembered between batches: a rollover just made is in the next listing,
    and a day deleted under the writer gets its write alias again before the next bulk."""
    targets = Targets(os_client, names, lambda _when: "g1", 1)
    days = {DAY, DAY + 1}
    assert targets.write_targets(days) == {d: names.raw_index("g1", D[d - DAY]) for d in days}
    assert targets.earlier_copies_of(days)[DAY] == [names.raw_backing_index("g1", D[1], 1)]

    _roll_over(os_client, names, "g1", D[0], 1)
    _roll_over(os_client, names, "g1", D[1], 1)
    first, second = (names.raw_backing_index("g1", D[1], n) for n in (1, 2))
    assert targets.earlier_copies_of(days) == {
        DAY: [names.raw_backing_index("g1", D[0], 1), first, second],
        DAY + 1: [first, *(names.raw_backing_index("g1", D[0], n) for n in (1, 2))],
    }

    os_client.indices.delete(index=names.raw_index("g1", D[1]) + "*")  # retention, under us
    assert targets.earlier_copies_of(days)[DAY] == [names.raw_backing_index("g1", D[0], 1)]
    targets.write_targets(days)
    alias = names.raw_index("g1", D[1])
    members = os_client.indices.get_alias(name=alias)
    assert list(members) == [names.raw_backing_index("g1", D[1], 1)]  # a write alias again,
    assert members[first]["aliases"][alias]["is_write_index"] is True  # not a plain index
