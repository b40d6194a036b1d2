"""NEW/RETURNING_CUSTOMERS and cohorts against a Python oracle (tests/api/customers_oracle):
generated customers with late earlier payments (before and after the rollup job folded them
in), duplicates, zones with DST and +05:30, DAY/WEEK/MONTH/ALL periods, groupBy."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from api import customers, service
from api.keys import Principal
from api.model import Dimension, Granularity, Metric, QueryPlan
from api.sources import Ctx
from ingest.contract import Event
from pulse.naming import names_for
from pulse.settings import Settings
from rollups.job import catch_up
from rollups.state import hold
from storage.arrivals import Arrivals
from tests.api import customers_oracle as oracle
from tests.api.helpers import index_events

DAY_MS = oracle.DAY_MS
ADMIN = Principal("test", None, admin=True)
ZONES = ("UTC", "Europe/Berlin", "Asia/Kolkata")
SPAN_DAYS = 70


def dst_base() -> int:
    """UTC midnight a few days before the latest Europe/Berlin DST change that still leaves
    SPAN_DAYS of history before today: every generated dataset straddles one."""
    berlin = ZoneInfo("Europe/Berlin")
    day = datetime.now(tz=UTC).date() - timedelta(days=SPAN_DAYS + 2)
    while True:
        after = day + timedelta(days=1)
        noon = [datetime(d.year, d.month, d.day, 12, tzinfo=berlin) for d in (day, after)]
        if noon[0].utcoffset() != noon[1].utcoffset():
            return oracle.midnight(day - timedelta(days=5), ZoneInfo("UTC"))
        day -= timedelta(days=1)


BASE = dst_base()
STATUSES = ("succeeded", "succeeded", "succeeded", "failed")

# (merchant, customer, day, minute of day, status, channel, late)
payments = st.lists(
    st.tuples(
        st.sampled_from(("m0", "m1")),
        st.integers(0, 7),
        st.integers(0, SPAN_DAYS - 1),
        st.integers(0, 24 * 60 - 1),
        st.sampled_from(STATUSES),
        st.sampled_from((None, "web", "app")),
        st.booleans(),
    ),
    min_size=1,
    max_size=45,
)


def as_events(specs: list[Any]) -> list[tuple[Event, bool]]:
    out = []
    for i, (merchant, customer, day, minute, status, channel, late) in enumerate(specs):
        when = BASE + day * DAY_MS + minute * 60_000
        event = Event(
            f"p{i}", merchant, "payment", when, customer_id=f"c{customer}", status=status,
            amount_milli=5000, currency="EUR", channel=channel,
        )  # fmt: skip
        out.append((event, late))
    return out


def write(ctx: Ctx, events: list[Event]) -> None:
    """Index as the indexer does: the days' arrival bounds first (storage.arrivals: readers
    skip the days nothing arrived in after the watermark), then the documents."""
    stamp = int(time.time() * 1000)
    days = {e.occurred_at_ms // DAY_MS for e in events}
    Arrivals(ctx.client, ctx.names, lookahead_ms=0).cover(days, stamp)
    index_events(ctx.client, ctx.settings, ctx.names, events, stamp)


def metrics_points(ctx: Ctx, plan: QueryPlan) -> oracle.Counts:
    """The service's answer as oracle Counts (zero cells left out, as the oracle does)."""
    report = service.report(ctx, service.process(ctx, plan, ADMIN))
    out: oracle.Counts = {}
    for series in report.series:
        group = series.group[0][1] if series.group else None
        for point in series.points:
            new, ret = (v.value for v in point.values)
            if new or ret:
                bucket = plan.start_ms if plan.granularity is Granularity.ALL else point.start_ms
                out[(group, bucket)] = (int(new or 0), int(ret or 0))
    new, ret = (v.value for v in report.totals)
    if new or ret:
        out[("*", None)] = (int(new or 0), int(ret or 0))
    return out


def expected(events: list[Event], plan: QueryPlan, grouped: bool) -> oracle.Counts:
    tz = ZoneInfo(plan.timezone)
    got = oracle.new_returning(
        events, plan.merchant_id, plan.start_ms, plan.end_ms, plan.granularity.value, tz, grouped
    )
    # The per-group totals the service returns are not read above: keep buckets and the total.
    return {k: v for k, v in got.items() if k[1] is not None or k[0] == "*"}


def check(ctx: Ctx, events: list[Event], draw: dict[str, Any]) -> None:
    grouped = draw["grouped"]
    plan = QueryPlan(
        "m0",
        BASE + draw["start_h"] * 3_600_000,
        BASE + (SPAN_DAYS - draw["cut_days"]) * DAY_MS,
        (Metric.NEW_CUSTOMERS, Metric.RETURNING_CUSTOMERS),
        granularity=draw["gran"],
        timezone=draw["zone"],
        group_by=(Dimension.CHANNEL,) if grouped else (),
        limit=10,
        now_ms=int(time.time() * 1000),
    )
    assert metrics_points(ctx, plan) == expected(events, plan, grouped)
    cplan = customers.cohort_plan(
        "m0", plan.start_ms, BASE + draw["cohort_days"] * DAY_MS, draw["cgran"], draw["zone"],
        draw["periods"], draw["now"], 1098, 60, 400,
    )  # fmt: skip
    rows = [(r.start_ms, r.customers, r.retained) for r in service.cohort_report(ctx, cplan).rows]
    tz = ZoneInfo(draw["zone"])
    want = oracle.cohorts(
        events, "m0", plan.start_ms, BASE + draw["cohort_days"] * DAY_MS,
        draw["cgran"].value, tz, draw["periods"], draw["now"],
    )  # fmt: skip
    assert rows == want


queries = st.fixed_dictionaries(
    {
        "grouped": st.booleans(),
        "start_h": st.integers(0, 100),
        "cut_days": st.integers(0, 20),
        "gran": st.sampled_from(
            [Granularity.DAY, Granularity.WEEK, Granularity.MONTH, Granularity.ALL]
        ),
        "zone": st.sampled_from(ZONES),
        "cgran": st.sampled_from([Granularity.DAY, Granularity.WEEK, Granularity.MONTH]),
        "cohort_days": st.integers(5, SPAN_DAYS),
        "periods": st.integers(1, 10),
        # "now" inside the data: the later periods have not begun and must be null
        "now": st.integers(BASE + 20 * DAY_MS, BASE + SPAN_DAYS * DAY_MS),
    }
)

# No shrinking: each example writes to the real engine and runs the rollup job.
ENGINE_EXAMPLES = hsettings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def showcase(**draw: Any) -> dict[str, Any]:
    base = {
        "grouped": False, "start_h": 0, "cut_days": 0, "gran": Granularity.DAY,
        "zone": "Europe/Berlin", "cgran": Granularity.WEEK, "cohort_days": 30, "periods": 4,
        "now": BASE + SPAN_DAYS * DAY_MS,
    }  # fmt: skip
    return {**base, **draw}


@ENGINE_EXAMPLES
# A late payment earlier than the known first, read before the job folds it in.
@example(
    specs=[
        ("m0", 0, 10, 600, "succeeded", None, False),
        ("m0", 0, 2, 600, "succeeded", None, True),
    ],
    duplicates=[],
    draw=showcase(),
)
# The range cuts a month: the first payment lies in the month but before the range.
@example(
    specs=[
        ("m0", 1, 1, 120, "succeeded", "web", False),
        ("m0", 1, 1, 600, "succeeded", "web", False),
    ],
    duplicates=[0],
    draw=showcase(start_h=30, gran=Granularity.MONTH, zone="UTC", grouped=True),
)
@given(specs=payments, duplicates=st.lists(st.integers(0, 44), max_size=4), draw=queries)
def test_new_returning_and_cohorts_equal_the_oracle(
    settings: Settings, os_client: OpenSearch, specs: list[Any], duplicates: list[int],
    draw: dict[str, Any],
) -> None:  # fmt: skip
    own = settings.model_copy(update={"namespace": f"c{uuid.uuid4().hex[:10]}"})
    ctx = Ctx(os_client, names_for(own), own)
    events = as_events(specs)
    on_time = [e for e, late in events if not late]
    late = [e for e, late in events if late] + [events[i][0] for i in duplicates if i < len(events)]
    write(ctx, on_time)
    catch_up(os_client, own, ctx.names)  # first purchases of the on-time payments
    time.sleep(0.005)
    write(ctx, late)
    everything = on_time + late
    check(ctx, everything, draw)  # late payments not folded in yet: read from raw
    catch_up(os_client, own, ctx.names)
    check(ctx, everything, draw)  # now from the state


def test_a_held_range_is_read_from_raw_not_from_the_stored_first(
    settings: Settings, os_client: OpenSearch
) -> None:
    """Between a reprocess switch and the rebuild of the first-purchase state (decision 0210),
    the range is held: a stored first inside it may be a payment the new data dropped, and the
    new data may hold an earlier one the state never saw. Readers decide both from raw."""
    own = settings.model_copy(update={"namespace": f"c{uuid.uuid4().hex[:10]}"})
    ctx = Ctx(os_client, names_for(own), own)
    at = lambda day, cust, i: Event(  # noqa: E731
        f"h{i}", "m0", "payment", BASE + day * DAY_MS + 600_000, customer_id=cust,
        status="succeeded", amount_milli=5000, currency="EUR",
    )  # fmt: skip
    dropped, kept_a = at(5, "a", 0), at(20, "a", 1)  # a's first lies in the held range
    first_b, next_b = at(10, "b", 2), at(11, "b", 3)  # b's stored first lies after it
    write(ctx, [dropped, kept_a, first_b, next_b])
    old_stamp = int(time.time() * 1000)
    catch_up(os_client, own, ctx.names)
    # The replay of days 4-6: a's payment is gone, b paid on day 5, stamped as first ingested.
    hold(os_client, ctx.names, "reprocess-test", BASE + 4 * DAY_MS, BASE + 6 * DAY_MS)
    os_client.delete_by_query(
        index=ctx.names.events_alias, body={"query": {"term": {"event_id": dropped.event_id}}},
        refresh=True,
    )  # fmt: skip
    index_events(os_client, own, ctx.names, [at(5, "b", 4)], old_stamp)

    def new_returning(day: int) -> tuple[int, int]:
        plan = QueryPlan(
            "m0", BASE + day * DAY_MS, BASE + (day + 1) * DAY_MS,
            (Metric.NEW_CUSTOMERS, Metric.RETURNING_CUSTOMERS), granularity=Granularity.ALL,
            timezone="UTC", now_ms=int(time.time() * 1000),
        )  # fmt: skip
        return metrics_points(ctx, plan)[("*", None)]

    everything = [kept_a, first_b, next_b, at(5, "b", 4)]
    assert new_returning(20) == (1, 0)  # a is new: its old first was dropped
    assert new_returning(10) == (0, 1)  # b returns: it first paid on day 5, not day 10
    cplan = customers.cohort_plan(
        "m0", BASE + 8 * DAY_MS, BASE + 22 * DAY_MS, Granularity.DAY, "UTC", 1,
        BASE + 60 * DAY_MS, 1098, 60, 400,
    )  # fmt: skip
    rows = {r.start_ms: r.customers for r in service.cohort_report(ctx, cplan).rows if r.customers}
    assert rows == {BASE + 20 * DAY_MS: 1}  # a's cohort; b's lies before the window
    want = oracle.cohorts(
        everything, "m0", BASE + 8 * DAY_MS, BASE + 22 * DAY_MS, "DAY", ZoneInfo("UTC"), 1,
        BASE + 60 * DAY_MS,
    )  # fmt: skip
    assert [(s, n) for s, n, _ in want if n] == list(rows.items())
