"""GraphQL types of the funnel (DESIGN.md "Cohorts and funnels", a public contract).

``api.schema`` declares the ``funnel`` root field with these types; the resolver's work is
``answer`` here (plan, tenant check, engine read in ``api.funnel_read``), kept out of
api.schema so features added beside it touch that module in one place each.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry

from api import funnel
from api.errors import Forbidden
from api.funnel import FunnelPlan, Step
from api.keys import Principal

if TYPE_CHECKING:
    from api.schema import ReportMeta

FUNNEL_LIMITS = (
    "Limits (server settings, defaults in brackets): range at most funnel_max_range_days [93] "
    "days; 1 to funnel_max_steps [10] steps; withinSeconds 0 to funnel_max_within_s "
    "[2678400]; at most funnel_max_events [1000000] events read (the merchant's events of the "
    "steps' kinds with the key, from range.start to range.end + withinSeconds); at most "
    "funnel_max_keys [500000] keys entering; at most funnel_timeout_s [20] seconds. Each "
    "exceeded one is a BAD_USER_INPUT error naming it."
)

FunnelKey = strawberry.enum(
    funnel.FunnelKey, description="What one trip through a funnel is: a session or a customer."
)
for _value in cast(Any, FunnelKey).__strawberry_definition__.values:
    _value.description = {
        "SESSION": "Events sharing a session_id (events without one are ignored).",
        "CUSTOMER": "Events sharing a customer_id (events without one are ignored).",
    }[_value.name]


@strawberry.input(description="One step of a funnel: the events that reach it.")
class FunnelStepInput:
    event_type: str = strawberry.field(
        description="The event_type an event must have (e.g. page_view, checkout_start, "
        "payment); 1 to 64 characters, matched exactly."
    )
    status: str | None = strawberry.field(
        default=None,
        description="When given, the status the event must also have (e.g. succeeded); "
        "null matches any status, and events without one.",
    )


@strawberry.type(description="How many keys reached one step of a funnel.")
class FunnelStepResult:
    event_type: str = strawberry.field(description="The step's eventType, as asked.")
    status: str | None = strawberry.field(description="The step's status, as asked (or null).")
    count: int = strawberry.field(
        description="Keys that entered the funnel and reached this step (exact; a duplicate "
        "event_id counts once)."
    )
    conversion: float | None = strawberry.field(
        description="count / the previous step's count, a fraction in [0, 1]; null for the "
        "first step and after a step no key reached."
    )


@strawberry.type(description="A funnel: one result per step, in the order asked.")
class FunnelReport:
    steps: list[FunnelStepResult] = strawberry.field(
        description="Keys reaching each step; counts never grow from one step to the next."
    )
    meta: Annotated[ReportMeta, strawberry.lazy("api.schema")] = strawberry.field(
        description="Sources (always raw: funnels read events), no watermark, server time."
    )


def steps_of(inputs: list[FunnelStepInput]) -> list[Step]:
    return [Step(s.event_type, s.status) for s in inputs]


def tenant_scope(plan: FunnelPlan, principal: Principal) -> FunnelPlan:
    """Merchant keys read only their merchant's funnels; admin keys any."""
    if not principal.may_read(plan.merchant_id):
        raise Forbidden("this API key may not read that merchant")
    return plan


def report(plan: FunnelPlan, counts: list[int], started: float) -> FunnelReport:
    """The GraphQL report of ``counts`` (keys per step) for ``plan``."""
    from api.schema import ReportMeta  # api.schema imports this module: resolved at run time

    took = int((time.perf_counter() - started) * 1000)
    rates = funnel.conversions(counts)
    steps = [
        FunnelStepResult(event_type=s.event_type, status=s.status, count=n, conversion=r)
        for s, n, r in zip(plan.steps, counts, rates, strict=True)
    ]
    return FunnelReport(steps=steps, meta=ReportMeta(sources=["raw"], watermark=None, took_ms=took))


def arguments(args: dict[str, Any]) -> dict[str, Any]:
    """Coerced ``funnel`` arguments (either naming) -> build_plan keywords, for api.budget."""
    span = args["range"]
    steps = [
        Step(_get(s, "event_type", "eventType"), _get(s, "status", "status")) for s in args["steps"]
    ]
    by = args.get("by") or funnel.FunnelKey.SESSION
    within = args.get("within_seconds", args.get("withinSeconds"))
    return {
        "merchant_id": str(args.get("merchant_id", args.get("merchantId"))),
        "start": _get(span, "start", "start"),
        "end": _get(span, "end", "end"),
        "steps": steps,
        "key": by
        if isinstance(by, funnel.FunnelKey)
        else funnel.FunnelKey(getattr(by, "value", by)),
        "within_seconds": 1800 if within is None else int(within),
        "filters": (),
    }


def _get(value: Any, snake: str, camel: str) -> Any:
    if isinstance(value, dict):
        return value.get(snake, value.get(camel))
    return getattr(value, snake, None)
