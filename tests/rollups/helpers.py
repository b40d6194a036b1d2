"""Raw documents written straight into the raw indices, and the oracle computed from events."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch, helpers

from ingest.contract import Event, validate
from ingest.loadgen import Generator, LoadSpec
from pulse.naming import Names, day_of
from pulse.settings import Settings
from rollups import sketch
from rollups.compute import BucketKey
from storage import rollup_schema as rs
from storage.templates import ensure_templates, write_target

HOUR = rs.HOUR_MS


def make_events(
    seed: int, count: int, start_ms: int, end_ms: int, merchants: int = 12
) -> list[Event]:
    """``count`` loadgen events occurring uniformly in [start, end)."""
    gen = Generator(LoadSpec(merchants=merchants, seed=seed, customers_per_merchant=300))
    rng = random.Random(seed)
    return [validate(gen.event_at(rng.randrange(start_ms, end_ms))) for _ in range(count)]


def write_raw(
    client: OpenSearch, settings: Settings, names: Names, events: Iterable[Event], ingested_at: int
) -> None:
    """Index events as the indexer would (deterministic _id), stamped ``ingested_at``."""
    ensure_templates(client, settings, names)
    actions: list[dict[str, Any]] = []
    for event in events:
        index = write_target(client, names, settings.generation, day_of(event.occurred_at_ms))
        actions.append({"_index": index, "_id": event.doc_id, "_source": event.to_doc(ingested_at)})
    helpers.bulk(client, actions, chunk_size=2000)
    client.indices.refresh(index=names.raw_prefix(settings.generation) + "*")


@dataclass
class Expected:
    events: int = 0
    succeeded: int = 0
    failed: int = 0
    gross_milli: int = 0
    refunds_milli: int = 0
    disputes: int = 0
    customers: set[int] = field(default_factory=set)
    money: dict[str, list[int]] = field(default_factory=dict)  # TOTAL buckets: per currency


def oracle(events: Iterable[Event]) -> dict[BucketKey, Expected]:
    """Per-bucket truth (details and merchant-hour totals), deduplicated by
    (merchant_id, event_id): the last write wins."""
    latest: dict[tuple[str, str], Event] = {}
    for event in events:
        latest[(event.merchant_id, event.event_id)] = event
    out: dict[BucketKey, Expected] = {}
    for e in latest.values():
        doc = e.to_doc(0)
        values = tuple(str(doc.get(d, rs.MISSING)) for d in rs.DIMENSIONS)
        exp = out.setdefault((e.merchant_id, rs.hour_start(e.occurred_at_ms), values), Expected())
        exp.events += 1
        paid = e.event_type == "payment"
        exp.succeeded += paid and e.status == "succeeded"
        exp.failed += paid and e.status == "failed"
        if paid and e.status == "succeeded":
            exp.gross_milli += e.amount_milli or 0
        if e.event_type == "refund":
            exp.refunds_milli += e.amount_milli or 0
        exp.disputes += e.event_type == "dispute"
        if "customer_hash" in doc:
            exp.customers.add(doc["customer_hash"])
    return {**out, **_totals(out)}


def _totals(details: dict[BucketKey, Expected]) -> dict[BucketKey, Expected]:
    """The TOTAL bucket of every (merchant, hour): its details' sums and customers."""
    totals: dict[BucketKey, Expected] = {}
    for (merchant, hour, values), exp in details.items():
        total = totals.setdefault((merchant, hour, rs.TOTAL), Expected())
        total.events += exp.events
        total.succeeded += exp.succeeded
        total.failed += exp.failed
        total.gross_milli += exp.gross_milli
        total.refunds_milli += exp.refunds_milli
        total.disputes += exp.disputes
        total.customers |= exp.customers
        if exp.succeeded or exp.refunds_milli:  # money per currency (decision 0200)
            entry = total.money.setdefault(values[rs.DIMENSIONS.index(rs.CURRENCY)], [0, 0, 0])
            entry[0] += exp.succeeded
            entry[1] += exp.gross_milli
            entry[2] += exp.refunds_milli
    return totals


def read_rollups(client: OpenSearch, names: Names) -> dict[BucketKey, dict[str, Any]]:
    """Every rollup document behind the read alias, by bucket key (duplicates fail)."""
    client.indices.refresh(index=names.rollups_pattern, allow_no_indices=True)
    result = client.search(
        index=names.rollups_alias,
        body={"size": 10_000, "query": {"match_all": {}}},
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    out: dict[BucketKey, dict[str, Any]] = {}
    for hit in result["hits"]["hits"]:
        doc = hit["_source"]
        if doc[rs.LEVEL] == rs.LEVEL_DAY:
            continue  # day packs: read_packs
        total = doc[rs.LEVEL] == rs.LEVEL_TOTAL
        if total:
            assert all(doc[d] == rs.ALL for d in rs.DIMENSIONS)
            assert doc[rs.TOTAL_OF] == doc[rs.MERCHANT]
        else:
            assert rs.TOTAL_OF not in doc
        values = rs.TOTAL if total else tuple(doc[d] for d in rs.DIMENSIONS)
        key = (doc[rs.MERCHANT], int(doc[rs.HOUR]), values)
        assert key not in out, f"two rollup documents for {key}"
        assert hit["_id"] == rs.doc_id(*key)
        out[key] = doc
    return out


def read_packs(client: OpenSearch, names: Names) -> dict[tuple[str, int], dict[str, Any]]:
    """Every day pack behind the read alias: (merchant, day) -> field -> 24 values."""
    client.indices.refresh(index=names.rollups_pattern, allow_no_indices=True)
    result = client.search(
        index=names.rollups_alias,
        body={"size": 10_000, "query": {"term": {rs.LEVEL: rs.LEVEL_DAY}}},
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for hit in result["hits"]["hits"]:
        doc = hit["_source"]
        key = (doc[rs.MERCHANT], int(doc[rs.DAY]))
        assert rs.HOUR not in doc and rs.TOTAL_OF not in doc, doc  # never matched by hour
        assert hit["_id"] == rs.pack_id(*key) and key not in out
        out[key] = doc[rs.PACK]
    return out


def assert_packs_match(client: OpenSearch, names: Names, got: dict[BucketKey, Any]) -> None:
    """Every day pack slot equals its hour's TOTAL document (0 where there is none), and every
    day with a TOTAL document has a pack."""
    packs = read_packs(client, names)
    expected: dict[tuple[str, int], dict[str, Any]] = {}
    for (merchant, hour, values), doc in got.items():
        if values != rs.TOTAL:
            continue
        day = rs.day_start(hour)
        slots = expected.setdefault((merchant, day), _zeros())
        slot = (hour - day) // rs.HOUR_MS
        for name in rs.PACK_FIELDS:
            slots[name][slot] = int(doc[name])
        money = doc.get(rs.MONEY, {})
        slots[rs.CURRENCY][slot] = rs.slot_code(money)
        if len(money) > 1:
            slots.setdefault(rs.MONEY, {})[str(slot)] = money
    zeros = _zeros()
    assert set(expected) <= set(packs), set(expected) - set(packs)
    for key, pack in packs.items():
        assert pack == expected.get(key, zeros), key


def _zeros() -> dict[str, Any]:
    return {**{f: [0] * 24 for f in rs.PACK_FIELDS}, rs.CURRENCY: [rs.NO_MONEY] * 24}


def assert_matches_oracle(
    client: OpenSearch, names: Names, events: Iterable[Event], sigmas: int = 3
) -> dict[BucketKey, dict[str, Any]]:
    """Rollups equal the oracle bucket by bucket: exact counts/sums, uniques within bounds."""
    expected = oracle(events)
    got = read_rollups(client, names)
    assert set(got) == set(expected)
    for key, exp in expected.items():
        doc = got[key]
        actual = (
            doc[rs.EVENTS], doc[rs.PAYMENTS_SUCCEEDED], doc[rs.PAYMENTS_FAILED],
            doc[rs.GROSS_MILLI], doc[rs.REFUNDS_MILLI], doc[rs.DISPUTES],
        )  # fmt: skip
        assert actual == (
            exp.events, exp.succeeded, exp.failed, exp.gross_milli, exp.refunds_milli,
            exp.disputes,
        )  # fmt: skip
        assert doc.get(rs.MONEY, {}) == exp.money, key
        _, low, high = sketch.bounds(sketch.decode(doc[rs.CUSTOMERS_SKETCH]), sigmas)
        assert low <= len(exp.customers) <= high, key
    assert_packs_match(client, names, got)
    return got


def assert_union_within_bounds(
    got: dict[BucketKey, dict[str, Any]], events: Iterable[Event], sigmas: int = 3
) -> None:
    """Per merchant, the union of all its hourly sketches brackets its true unique customers."""
    truth: dict[str, set[int]] = {}
    for key, exp in oracle(events).items():
        truth.setdefault(key[0], set()).update(exp.customers)
    for merchant, customers in truth.items():
        docs = [d[rs.CUSTOMERS_SKETCH] for k, d in got.items() if k[0] == merchant]
        _, low, high = sketch.bounds(sketch.union(docs), sigmas)
        assert low <= len(customers) <= high, merchant


def as_single_lease_job(client: OpenSearch, names: Names) -> None:
    """Remove the shard documents from the state index: what a job from before the sharded
    rollups (decision 0220) left behind, for upgrade tests that stand in for an older job."""
    found = client.search(index=names.state_index, body={"size": 1000, "query": {"match_all": {}}})
    for hit in found["hits"]["hits"]:
        if hit["_id"].startswith("rollups.shard."):
            client.delete(index=names.state_index, id=hit["_id"], refresh=True)
