"""The funnel's engine read: the events that can count, sorted by (key, occurred_at, event_id),
paged with ``search_after`` inside one point in time.

Only the sort values and two doc values of each event are fetched (no ``_source``). The
point in time pins the indices and their contents for the whole read, so pages never mix two
generations during a reprocessing switch nor see an event that arrived between two pages.
The first page asks for the exact total: a read over ``funnel_max_events`` is refused before
any further page (docs/decisions/0215-funnels-on-opensearch.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from api import funnel
from api.dsl import filter_clause
from api.engine import engine_errors
from api.errors import BadInput, UnexpectedAnswer
from api.funnel import EventRow, FunnelPlan
from api.model import Source
from api.sources import Ctx
from storage import served

log = logging.getLogger(__name__)

Body = dict[str, Any]
KEEP_ALIVE = "1m"  # between two pages; each page takes well under a second
FILTER_PATH = "pit_id,hits.total,hits.hits.sort,hits.hits.fields"


def query(plan: FunnelPlan) -> Body:
    """The merchant's events that can count: a key, a step's kind, filters, read window."""
    kinds: list[Body] = []
    for step in dict.fromkeys(plan.steps):
        clauses: list[Body] = [{"term": {"event_type": step.event_type}}]
        if step.status is not None:
            clauses.append({"term": {"status": step.status}})
        kinds.append({"bool": {"filter": clauses}})
    window = {"gte": plan.start_ms, "lt": plan.read_end_ms, "format": "epoch_millis"}
    clauses = [
        {"term": {"merchant_id": plan.merchant_id}},
        {"range": {"occurred_at": window}},
        {"exists": {"field": plan.key.field}},
        {"bool": {"should": kinds, "minimum_should_match": 1}},
        *(filter_clause(Source.RAW, f) for f in plan.filters),
    ]
    return {"bool": {"filter": clauses}}


def page_body(plan: FunnelPlan, size: int, pit: str, after: list[Any] | None) -> Body:
    body: Body = {
        "size": size,
        "query": query(plan),
        "pit": {"id": pit, "keep_alive": KEEP_ALIVE},
        "sort": [{plan.key.field: "asc"}, {"occurred_at": "asc"}, {"event_id": "asc"}],
        "_source": False,
        "docvalue_fields": ["event_type", "status"],
        "track_total_hits": after is None,  # exact, on the first page only
    }
    if after is not None:
        body["search_after"] = after
    return body


def counts(ctx: Ctx, plan: FunnelPlan) -> list[int]:
    """Keys reaching each step (api.funnel.count over the engine's sorted events)."""
    settings = ctx.settings
    routed = _indices(ctx, plan)
    if routed is None:
        return [0] * len(plan.steps)
    pit = [_open(ctx, routed)]  # the engine may hand back a new id with any page
    try:
        return funnel.count(plan, _rows(ctx, plan, pit), settings.funnel_max_keys)
    finally:
        _close(ctx, pit[0])


def _indices(ctx: Ctx, plan: FunnelPlan) -> str | None:
    with engine_errors("funnel routing"):
        return served.indices_for(
            ctx.client, ctx.names.events_alias, plan.start_ms, plan.read_end_ms
        )


def _open(ctx: Ctx, indices: str) -> str:
    with engine_errors("funnel point in time"):
        answer = ctx.client.transport.perform_request(
            "POST",
            f"/{indices}/_search/point_in_time",
            params={"keep_alive": KEEP_ALIVE},
            timeout=ctx.settings.api_request_timeout_s,
        )
    pit = answer.get("pit_id") if isinstance(answer, dict) else None
    if not isinstance(pit, str):
        raise UnexpectedAnswer("no pit_id in the engine's answer")
    return pit


def _close(ctx: Ctx, pit: str) -> None:
    """Free the point in time now rather than at keep-alive; a failure only logs (it expires)."""
    try:
        ctx.client.transport.perform_request(
            "DELETE", "/_search/point_in_time", body={"pit_id": [pit]}
        )
    except Exception as exc:  # the answer is complete; the engine drops it at keep-alive
        log.warning("could not delete a funnel point in time: %s", str(exc)[:200])


def _rows(ctx: Ctx, plan: FunnelPlan, pit: list[str]) -> Iterator[EventRow]:
    """Every event of the read, page by page; refuses a read over ``funnel_max_events``.
    ``pit`` holds the point in time's id, updated when an answer carries a new one."""
    size = ctx.settings.funnel_page_size
    after: list[Any] | None = None
    deadline = time.monotonic() + ctx.settings.funnel_timeout_s
    while True:
        answer = _page(ctx, page_body(plan, size, pit[0], after))
        pit[0] = answer.get("pit_id") or pit[0]
        hits = (answer.get("hits") or {}).get("hits") or []
        if after is None:
            _check_total(answer, ctx.settings.funnel_max_events)
        for hit in hits:
            yield _row(hit)
        if len(hits) < size:
            return
        if time.monotonic() > deadline:
            raise BadInput(
                f"this funnel took longer than {ctx.settings.funnel_timeout_s:g} s "
                "(funnel_timeout_s); shorten the range or add filters"
            )
        after = hits[-1]["sort"]


def _page(ctx: Ctx, body: Body) -> Any:
    with engine_errors("funnel read"):
        return ctx.client.search(
            body=body,
            params={"filter_path": FILTER_PATH},
            request_timeout=ctx.settings.api_request_timeout_s,
        )


def _check_total(answer: Any, limit: int) -> None:
    total = (answer.get("hits") or {}).get("total") or {}
    value = int(total.get("value", 0)) if isinstance(total, dict) else int(total)
    if value > limit:
        raise BadInput(
            f"this funnel would read {value} events, more than the limit of {limit} "
            "(funnel_max_events); shorten the range, add filters or use fewer steps"
        )


def _row(hit: Body) -> EventRow:
    try:
        key, occurred, event_id = hit["sort"]
        fields = hit.get("fields") or {}
        status = fields.get("status")
        return EventRow(
            key=str(key),
            occurred_ms=int(occurred),
            event_id=str(event_id),
            event_type=str(fields["event_type"][0]),
            status=str(status[0]) if status else None,
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UnexpectedAnswer(f"a funnel hit the shaper cannot read: {exc}") from None
