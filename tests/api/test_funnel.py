"""The ``funnel`` field end to end: GraphQL -> plan -> osmem (point in time, search_after) ->
count, compared with the brute-force oracle (tests/api/funnel_oracle.py); its limits, tenant
check and price."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch, helpers

from api.app import create_app
from api.keys import create_key
from ingest.contract import validate
from pulse.naming import Names, day_of
from pulse.settings import Settings
from storage.templates import ensure_templates, write_target
from tests.api.conftest import post
from tests.api.funnel_oracle import KINDS, STEPS, OEvent, funnel_counts
from tests.api.helpers import iso

QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $steps: [FunnelStepInput!]!, $by: FunnelKey,
      $w: Int, $f: [DimensionFilter!]) {
  funnel(merchantId: $m, range: {start: $s, end: $e}, steps: $steps, by: $by,
         withinSeconds: $w, filters: $f) {
    steps { eventType status count conversion }
    meta { sources watermark tookMs }
  }
}
"""
BASE = int(
    (datetime.now(tz=UTC) - timedelta(days=20))
    .replace(hour=23, minute=59, second=50, microsecond=0)
    .timestamp()
    * 1000
)  # 10 s before a UTC midnight: generated events fall on two days (two indices)
MERCHANTS: Iterator[int] = itertools.count()


@pytest.fixture(scope="module")
def paged(api_settings: Settings, api_client: OpenSearch) -> TestClient:
    """An app reading funnels 3 events per page: every case crosses pages mid-key."""
    return TestClient(
        create_app(api_settings.model_copy(update={"funnel_page_size": 3}), api_client)
    )


def write(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    events: list[dict[str, Any]],
    copies: list[dict[str, Any]],
) -> None:
    """Create-first-wins writes as the indexer's (a re-sent event_id is refused), and
    ``copies`` written again into a second backing index of their day: two copies of one
    event under the read alias, which the funnel must count once."""
    ensure_templates(client, settings, names)
    actions = []
    for raw in events:
        event = validate(dict(raw))
        target = write_target(client, names, settings.generation, day_of(event.occurred_at_ms))
        actions.append(
            {
                "_op_type": "create",
                "_index": target,
                "_id": event.doc_id,
                "_source": event.to_doc(0),
            }
        )
    for raw in copies:
        event = validate(dict(raw))
        second = names.raw_backing_index(settings.generation, day_of(event.occurred_at_ms), 2)
        if not client.indices.exists(index=second):
            client.indices.create(index=second)
            client.indices.put_alias(index=second, name=names.events_alias)
        actions.append(
            {
                "_op_type": "create",
                "_index": second,
                "_id": event.doc_id,
                "_source": event.to_doc(0),
            }
        )
    helpers.bulk(client, actions, refresh="wait_for", raise_on_error=False)


def raw_of(merchant: str, e: OEvent) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": e.event_id,
        "merchant_id": merchant,
        "event_type": e.event_type,
        "occurred_at": e.occurred_ms,
        "channel": "web" if int(e.event_id[1:]) % 3 else "app",
    }
    for field in ("status", "session_id", "customer_id"):
        if getattr(e, field) is not None:
            raw[field] = getattr(e, field)
    return raw


def ask(
    http: TestClient,
    key: str,
    merchant: str,
    steps: Sequence[tuple[str, str | None]],
    start: int,
    end: int,
    **kw: Any,
) -> Any:
    variables = {
        "m": merchant,
        "s": iso(start),
        "e": iso(end),
        "steps": [{"eventType": t, "status": s} for t, s in steps],
        **kw,
    }
    return post(http, key, QUERY, variables)


def counts_of(body: Any) -> list[int]:
    assert "errors" not in body, body
    return [s["count"] for s in body["data"]["funnel"]["steps"]]


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    events: list[OEvent] = []
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(KINDS))
        second = draw(st.integers(0, 20))  # 10 s before midnight to 10 s after: two days
        events.append(
            OEvent(
                event_id=f"e{i}",
                occurred_ms=BASE + second * 1000 + draw(st.sampled_from([0, 0, 1, -1])),
                event_type=kind[0],
                status=kind[1],
                session_id=draw(st.sampled_from(["s0", "s1", "s2", None])),
                customer_id=draw(st.sampled_from(["c0", "c1", None])),
            )
        )
    resent = draw(st.lists(st.integers(0, len(events) - 1), max_size=3))
    copied = draw(st.lists(st.integers(0, len(events) - 1), max_size=3))
    steps = draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=4))
    if draw(st.booleans()):
        steps = [("payment", None), ("payment", "succeeded"), *steps][: max(2, len(steps))]
    start = BASE + draw(st.integers(0, 12)) * 1000
    end = start + draw(st.integers(1, 10)) * 1000
    within = draw(st.sampled_from([0, 1, 2, 5]))
    order = draw(st.permutations(range(len(events))))  # written out of order
    return {
        "events": events, "resent": resent, "copied": copied, "steps": steps,
        "start": start, "end": end, "within": within, "order": order,
    }  # fmt: skip


def _same_day(ms: int) -> int:
    return ms - 3000 if day_of(ms - 3000) == day_of(ms) else ms + 3000


@settings(
    max_examples=18,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
@example(  # one instant, a succeeded and a failed payment: needs the matching, not a greedy pick
    case={
        "events": [
            OEvent("e0", BASE, "payment", "succeeded", "s0", "c0"),
            OEvent("e1", BASE, "payment", "failed", "s0", "c0"),
        ],
        "resent": [],
        "copied": [0],
        "steps": [("payment", None), ("payment", "succeeded")],
        "start": BASE,
        "end": BASE + 1000,
        "within": 0,
        "order": [1, 0],
    }
)
def test_funnels_by_session_and_customer_equal_the_oracle(
    case: dict[str, Any], paged: TestClient, admin_key: str, api_client: OpenSearch,
    api_settings: Settings, api_names: Names,
) -> None:  # fmt: skip
    merchant = f"fo{next(MERCHANTS)}"
    events: list[OEvent] = case["events"]
    raws = [raw_of(merchant, events[i]) for i in case["order"]]
    # Re-sent event_ids with another time on the same UTC day: the first write wins.
    resent = [
        {**raw_of(merchant, events[i]), "occurred_at": _same_day(events[i].occurred_ms)}
        for i in case["resent"]
    ]
    write(
        api_client,
        api_settings,
        api_names,
        raws + resent,
        [raw_of(merchant, events[i]) for i in case["copied"]],
    )
    for by in ("SESSION", "CUSTOMER"):
        body = ask(
            paged,
            admin_key,
            merchant,
            case["steps"],
            case["start"],
            case["end"],
            by=by,
            w=case["within"],
        )
        field = "session_id" if by == "SESSION" else "customer_id"
        want = funnel_counts(
            events, case["steps"], field, case["start"], case["end"], case["within"] * 1000
        )
        assert counts_of(body) == want, (by, case)
        conversions = [s["conversion"] for s in body["data"]["funnel"]["steps"]]
        assert conversions == [None] + [b / a if a else None for a, b in itertools.pairwise(want)]


@pytest.fixture(scope="module")
def shop(api_client: OpenSearch, api_settings: Settings, api_names: Names) -> list[OEvent]:
    """Merchant fshop's six sessions."""
    events = []
    for n in range(6):  # session n views, then n >= 2 starts checkout, n >= 4 pays, n = 5 fails
        t = BASE + n * 60_000
        events.append(OEvent(f"e{n}0", t, "page_view", session_id=f"s{n}"))
        if n >= 2:
            events.append(OEvent(f"e{n}1", t + 1000, "checkout_start", session_id=f"s{n}"))
        if n >= 4:
            status = "failed" if n == 5 else "succeeded"
            events.append(OEvent(f"e{n}2", t + 1799_000, "payment", status, session_id=f"s{n}"))
    # s3 pays 1 ms too late (window 1800 s from the page view), and an app event is filtered out
    events.append(
        OEvent("e32", BASE + 3 * 60_000 + 1800_001, "payment", "succeeded", session_id="s3")
    )
    write(api_client, api_settings, api_names, [raw_of("fshop", e) for e in events], [])
    return events


def test_a_shop_funnel_with_filters_defaults_and_meta(
    http: TestClient, admin_key: str, shop: list[OEvent]
) -> None:
    merchant, events = "fshop", shop
    steps = [("page_view", None), ("checkout_start", None), ("payment", "succeeded")]
    body = ask(http, admin_key, merchant, steps, BASE, BASE + 3600_000)  # by, within: defaults
    funnel = body["data"]["funnel"]
    assert funnel["steps"] == [
        {"eventType": "page_view", "status": None, "count": 6, "conversion": None},
        {"eventType": "checkout_start", "status": None, "count": 4, "conversion": 4 / 6},
        {"eventType": "payment", "status": "succeeded", "count": 1, "conversion": 0.25},
    ]
    assert funnel["meta"]["sources"] == ["raw"] and funnel["meta"]["watermark"] is None
    # Entries must lie in the range; later steps may follow past its end (within the window).
    cut = ask(http, admin_key, merchant, steps[:2], BASE + 1, BASE + 5 * 60_000 + 1)
    assert counts_of(cut) == [5, 4]  # s0 entered 1 ms before start; s5's checkout is past end
    cut = ask(http, admin_key, merchant, steps[:2], BASE + 1, BASE + 5 * 60_000)
    assert counts_of(cut) == [4, 3]  # s5's page view is at the (excluded) end
    # raw_of marks every third event (e00, e30, e51, ...) as channel app: filtered out
    web = [{"dimension": "CHANNEL", "values": ["web"]}]
    body = ask(http, admin_key, merchant, steps, BASE, BASE + 3600_000, f=web)
    kept = [e for e in events if int(e.event_id[1:]) % 3]
    assert counts_of(body) == funnel_counts(
        kept, steps, "session_id", BASE, BASE + 3600_000, 1800_000
    )


def _error(body: Any) -> tuple[str, str]:
    assert body["data"] is None, body
    return body["errors"][0]["extensions"]["code"], body["errors"][0]["message"]


def test_limits_are_coded_errors(
    http: TestClient,
    admin_key: str,
    api_settings: Settings,
    api_client: OpenSearch,
    shop: list[OEvent],
) -> None:
    one = [("page_view", None)]
    day = 86_400_000
    cases = [
        (one, BASE, BASE + 94 * day, {}, "at most 93 days"),
        ([("page_view", None)] * 11, BASE, BASE + day, {}, "1 to 10 steps"),
        ([], BASE, BASE + day, {}, "1 to 10 steps"),
        (one, BASE, BASE + day, {"w": -1}, "withinSeconds must be 0 to"),
        (one, BASE, BASE + day, {"w": 31 * 86_400 + 1}, "withinSeconds must be 0 to"),
        (one, BASE + day, BASE, {}, "range.end must be after range.start"),
        ([("", None)], BASE, BASE + day, {}, "eventType is 1 to 64"),
    ]
    for steps, start, end, extra, message in cases:
        code, text = _error(ask(http, admin_key, "fshop", steps, start, end, **extra))
        assert code == "BAD_USER_INPUT" and message in text, text
    small = api_settings.model_copy(update={"funnel_max_events": 5, "funnel_max_keys": 2})
    tight = TestClient(create_app(small, api_client))
    code, text = _error(ask(tight, admin_key, "fshop", one, BASE, BASE + day))
    assert code == "BAD_USER_INPUT" and "read 6 events" in text and "funnel_max_events" in text
    roomy = small.model_copy(update={"funnel_max_events": 1000})
    code, text = _error(
        ask(TestClient(create_app(roomy, api_client)), admin_key, "fshop", one, BASE, BASE + day)
    )
    assert code == "BAD_USER_INPUT" and "more than 2 keys" in text


def test_merchant_keys_read_only_their_merchant(
    http: TestClient, api_client: OpenSearch, api_names: Names, shop: list[OEvent]
) -> None:
    key = create_key(api_client, api_names, "fshop", admin=False)[0]
    steps = [("page_view", None), ("checkout_start", None)]
    assert counts_of(ask(http, key, "fshop", steps, BASE, BASE + 3600_000)) == [6, 4]
    code, _ = _error(ask(http, key, "other", steps, BASE, BASE + 3600_000))
    assert code == "FORBIDDEN"


def test_a_funnel_is_priced_by_steps_and_hours(api_settings: Settings) -> None:
    from graphql import parse

    from api.app import EXTENSIONS
    from api.budget import price
    from api.schema import build_schema

    schema = build_schema(EXTENSIONS)._schema
    query = (
        '{ funnel(merchantId: "m1", range: {start: "2024-01-01T00:00:00Z", '
        'end: "2024-01-31T00:00:00Z"}, steps: [{eventType: "page_view"}, '
        '{eventType: "payment", status: "succeeded"}], withinSeconds: 3600) { steps { count } } }'
    )
    cost = price(schema, parse(query), None, None, api_settings)
    assert cost is not None
    assert cost.points == 2 * (30 * 24 + 1)  # steps x hours read (range + window)
    assert cost.tokens == -(-cost.points // api_settings.rate_limit_points_per_token)
