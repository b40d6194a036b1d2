"""First purchases (rollups.customers) against an oracle: generated customers with late
earlier payments, duplicates, other statuses and types, through the rollup job, a backfill
and a rebuild after raw events changed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from ingest.contract import Event, customer_hash
from pulse.naming import Names, names_for
from pulse.settings import Settings
from rollups.backfill import backfill, rebuild
from rollups.job import catch_up
from storage import first_purchases as fp
from storage.rollup_schema import DAY_MS
from tests.rollups.helpers import write_raw

MERCHANTS = ("m0", "m1")
CUSTOMERS = tuple(f"c{i}" for i in range(6))

# One generated event: (merchant, customer or None, minutes after base, type/status, late).
KINDS = (("payment", "succeeded"), ("payment", "failed"), ("payment", "pending"), ("refund", None))
event_specs = st.lists(
    st.tuples(
        st.sampled_from(MERCHANTS),
        st.one_of(st.none(), st.sampled_from(CUSTOMERS)),
        st.integers(0, 6 * 24 * 60),
        st.sampled_from(KINDS),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


def as_events(specs: Iterable[tuple[Any, ...]], base_ms: int) -> list[tuple[Event, bool]]:
    out = []
    for i, (merchant, customer, minutes, (kind, status), late) in enumerate(specs):
        event = Event(
            event_id=f"e{i}",
            merchant_id=merchant,
            event_type=kind,
            occurred_at_ms=base_ms + minutes * 60_000 + i,  # distinct: a tie hides nothing
            customer_id=customer,
            amount_milli=1000,
            currency="EUR",
            status=status,
        )
        out.append((event, late))
    return out


def oracle(events: Iterable[Event]) -> dict[fp.Key, int]:
    """First succeeded payment per (merchant, customer hash), one per event_id."""
    out: dict[fp.Key, int] = {}
    for e in {(e.merchant_id, e.event_id): e for e in events}.values():
        if e.event_type == "payment" and e.status == "succeeded" and e.customer_id:
            key = (e.merchant_id, customer_hash(e.customer_id))
            out[key] = min(e.occurred_at_ms, out.get(key, e.occurred_at_ms))
    return out


def stored(client: OpenSearch, settings: Settings, names: Names) -> dict[fp.Key, int]:
    """Every first-purchase document (refreshed; a duplicate key fails)."""
    index = fp.index_name(names, settings.generation)
    if not client.indices.exists(index=index):
        return {}  # no run has seen a succeeded payment with a customer yet
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"size": 10_000, "query": {"match_all": {}}})
    out: dict[fp.Key, int] = {}
    for hit in hits["hits"]["hits"]:
        src = hit["_source"]
        key = (src[fp.MERCHANT], int(src[fp.CUSTOMER]))
        assert key not in out and hit["_id"] == fp.doc_id(*key)
        out[key] = int(src[fp.FIRST_PAID_AT])
    return out


def fresh(rsettings: Settings) -> tuple[Settings, Names]:
    """A namespace of its own per generated example."""
    own = rsettings.model_copy(update={"namespace": f"fp{uuid.uuid4().hex[:10]}"})
    return own, names_for(own)


# No shrinking: each example runs the rollup job on the real engine (seconds each).
ENGINE_EXAMPLES = hsettings(
    max_examples=6,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


PAID = ("payment", "succeeded")
# Always run: c0's first on time, then a late earlier one (moves it) and a late later one;
# c2's on time and only a late later one (must not move it); a late duplicate; a customer
# whose only late payment failed.
SHOWCASE = [
    ("m0", "c0", 600, PAID, False),
    ("m0", "c0", 300, PAID, True),
    ("m0", "c0", 900, PAID, True),
    ("m0", "c2", 200, PAID, False),
    ("m0", "c2", 2000, PAID, True),
    ("m1", "c0", 100, PAID, True),
    ("m1", "c1", 50, ("payment", "failed"), True),
]


@ENGINE_EXAMPLES
@example(specs=SHOWCASE, duplicates=[1, 5])
@given(specs=event_specs, duplicates=st.lists(st.integers(0, 39), max_size=5))
def test_first_purchase_follows_late_events_and_duplicates(
    rsettings: Settings,
    os_client: OpenSearch,
    base_ms: int,
    specs: list[Any],
    duplicates: list[int],
) -> None:
    settings, names = fresh(rsettings)
    events = as_events(specs, base_ms)
    on_time = [e for e, late in events if not late]
    late = [e for e, late in events if late]
    # Duplicates: the same event (same event_id) delivered again, with the late batch.
    late += [events[i][0] for i in duplicates if i < len(events)]
    write_raw(os_client, settings, names, on_time, int(time.time() * 1000))
    catch_up(os_client, settings, names)
    assert stored(os_client, settings, names) == oracle(on_time)
    time.sleep(0.005)  # the late batch is ingested after the first run's watermark
    write_raw(os_client, settings, names, late, int(time.time() * 1000))
    catch_up(os_client, settings, names)
    assert stored(os_client, settings, names) == oracle(on_time + late)


def test_backfill_and_rebuild_follow_replaced_raw_events(
    rsettings: Settings, os_client: OpenSearch, base_ms: int
) -> None:
    settings, names = fresh(rsettings)
    first = [
        Event("a", "m0", "payment", base_ms + 3_600_000, customer_id="c1", status="succeeded"),
        Event("b", "m0", "payment", base_ms + 2 * DAY_MS, customer_id="c1", status="succeeded"),
        Event("c", "m0", "payment", base_ms + 3 * DAY_MS, customer_id="c2", status="succeeded"),
        Event("d", "m1", "payment", base_ms + 4 * DAY_MS, customer_id="c1", status="failed"),
    ]
    now = int(time.time() * 1000)
    write_raw(os_client, settings, names, first, now)
    backfill(os_client, settings, names, base_ms, base_ms + 5 * DAY_MS)
    assert stored(os_client, settings, names) == oracle(first)
    # A reprocess of day 0 and day 3 replaced their events: c1's first payment turned out
    # failed, c2's vanished, and m1's c1 payment on day 4 (outside the range) is untouched.
    replaced = [
        Event("a", "m0", "payment", base_ms + 3_600_000, customer_id="c1", status="failed"),
        first[1],
        Event("c", "m0", "payment", base_ms + 3 * DAY_MS, customer_id="c2", status="pending"),
        Event("e", "m0", "payment", base_ms + 3 * DAY_MS + 5, customer_id="c3", status="succeeded"),
        first[3],
    ]
    write_raw(os_client, settings, names, replaced, now)
    rebuild(os_client, settings, names, base_ms, base_ms + DAY_MS)
    rebuild(os_client, settings, names, base_ms + 3 * DAY_MS, base_ms + 4 * DAY_MS)
    assert stored(os_client, settings, names) == oracle(replaced)
    assert oracle(replaced)[("m0", customer_hash("c1"))] == base_ms + 2 * DAY_MS  # moved later


def test_a_run_folds_in_payments_of_the_open_hour(
    rsettings: Settings, os_client: OpenSearch
) -> None:
    """First purchases need no closed hour (min is idempotent): a payment a minute old is
    folded in by the next run, while the rollups wait for its hour to close."""
    settings, names = fresh(rsettings)
    now = int(time.time() * 1000)
    event = Event("o", "m0", "payment", now - 60_000, customer_id="c9", status="succeeded")
    write_raw(os_client, settings, names, [event], now - 1000)
    catch_up(os_client, settings, names)
    assert stored(os_client, settings, names) == {("m0", customer_hash("c9")): now - 60_000}
