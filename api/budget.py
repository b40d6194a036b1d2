"""The cost budget of one GraphQL request, checked after validation and before any resolver.

A request is refused (BAD_USER_INPUT, with the cost and the limit in the message) when it
selects more fields, aliases or nesting than the settings allow, or when the reports it asks
for add up to more *points* than ``max_request_points``. A report's points are its planned
values, buckets x metrics x groups, for its range and for its ``compareTo`` range, computed by
the planner's own pure functions (``build_plan``, ``cost_limits``, ``time_buckets``): nothing
is read from an engine to price a request. The rate limiter then charges the request
``tokens`` — one per ``rate_limit_points_per_token`` points, at least one per report — so a
key's minute buys the same amount of work however it is split into requests and aliases.

Field counts are memoised per fragment, so a "fragment bomb" (fragments spreading each other
twice, 2^n fields) is counted in linear time and refused. See docs/decisions/0140.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.extensions import SchemaExtension

from api import customers, funnel, funnel_schema, planner
from api.errors import BadInput, ClientError
from api.model import Dimension, Granularity, Metric, QueryPlan
from pulse.lru import LockedLRU
from pulse.settings import Settings

REPORT_FIELD = "metrics"  # the root field whose cost is its planned points
COHORTS_FIELD = "cohorts"  # priced as its matrix: cohorts x periods (api.customers)
FUNNEL_FIELD = "funnel"  # priced by api.funnel.price: steps x hours read


@dataclass(frozen=True)
class Shape:
    """What a selection costs to walk: fields (fragments expanded), aliases, depth."""

    fields: int = 0
    aliases: int = 0
    depth: int = 0

    def __add__(self, other: Shape) -> Shape:
        return Shape(
            self.fields + other.fields,
            self.aliases + other.aliases,
            max(self.depth, other.depth),
        )


@dataclass(frozen=True)  # remembered and shared by requests (``PRICED``)
class Cost:
    """The priced request: its shape, its points, and the tokens the rate limiter takes."""

    shape: Shape
    points: int
    tokens: int
    reports: int = 0


class _Walker:
    """Shapes of selection sets, each fragment's shape computed once."""

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self._memo: dict[str, Shape] = {}
        self._open: set[str] = set()

    def shape(self, selections: SelectionSetNode | None) -> Shape:
        total = Shape()
        for node in selections.selections if selections else ():
            if isinstance(node, FieldNode):
                inner = self.shape(node.selection_set)
                own = Shape(1, 1 if node.alias else 0, 1)
                total += Shape(own.fields + inner.fields, own.aliases + inner.aliases,
                               1 + inner.depth)  # fmt: skip
            elif isinstance(node, InlineFragmentNode):
                total += self.shape(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                total += self._fragment(node.name.value)
        return total

    def _fragment(self, name: str) -> Shape:
        if name in self._memo:
            return self._memo[name]
        definition = self.fragments.get(name)
        if definition is None or name in self._open:  # validation refuses both: no cost
            return Shape()
        self._open.add(name)
        self._memo[name] = found = self.shape(definition.selection_set)
        self._open.discard(name)
        return found

    def root_fields(self, selections: SelectionSetNode) -> Iterator[FieldNode]:
        """The root fields, fragments expanded (bounded: the shape was checked first)."""
        for node in selections.selections:
            if isinstance(node, FieldNode):
                yield node
            elif isinstance(node, InlineFragmentNode):
                yield from self.root_fields(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                definition = self.fragments.get(node.name.value)
                if definition is not None:
                    yield from self.root_fields(definition.selection_set)


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in operations if o.name and o.name.value == name), None)
    return operations[0] if len(operations) == 1 else None


def _member(enum: type[Enum], value: Any) -> Any:
    return enum(value.value if isinstance(value, Enum) else value)


def report_plan(args: Mapping[str, Any], settings: Settings, now_ms: int) -> QueryPlan:
    """The plan of a ``metrics`` field's coerced arguments, bucketed (BadInput when invalid)."""
    compare = args.get("compare_to") or args.get("compareTo")
    group_by = args.get("group_by", args.get("groupBy")) or ()
    span = args["range"]
    plan = planner.build_plan(
        str(args["merchant_id"] if "merchant_id" in args else args["merchantId"]),
        _instant(span, "start"),
        _instant(span, "end"),
        [_member(Metric, m) for m in args["metrics"]],
        granularity=_member(Granularity, args.get("granularity") or Granularity.HOUR),
        timezone=args.get("timezone") or "UTC",
        group_by=[_member(Dimension, d) for d in group_by],
        limit=10 if args.get("limit") is None else int(args["limit"]),
        now_ms=now_ms,
        reporting_currency=args.get("reporting_currency", args.get("reportingCurrency")),
    )
    if compare:
        plan = planner.with_comparison(plan, _instant(compare, "start"), _instant(compare, "end"))
    return planner.time_buckets(planner.cost_limits(plan, settings), settings)


def _instant(span: Any, key: str) -> datetime:
    value = span[key] if isinstance(span, Mapping) else getattr(span, key)
    if not isinstance(value, datetime):
        raise BadInput(f"range.{key} is not a DateTime")
    return value


def plan_points(plan: QueryPlan) -> int:
    """Planned values of a bucketed plan: buckets x metrics x groups, comparison included."""
    total = 0
    part: QueryPlan | None = plan
    while part is not None:
        groups = part.limit if part.group_by else 1
        total += part.buckets * len(part.metrics) * groups
        part = part.compare
    return total


class _Priced:
    """Costs of requests priced before, by (schema, document, operation, variables): a
    dashboard sends the same documents with the same variables again and again, and pricing
    one (variables coerced, every report planned and bucketed) cost ~0.15 ms. Only costs that
    do not depend on the clock are kept (a cohort matrix's does); the document is one object
    per query text (api.executor.KnownDocuments), keys hold ids and a hit checks identity."""

    MAX_ENTRIES = 512

    def __init__(self) -> None:
        self._entries: LockedLRU[Hashable, tuple[object, object, Settings, Cost]] = LockedLRU(
            self.MAX_ENTRIES
        )

    def key(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> Hashable | None:
        try:  # variables as sent (JSON); anything else is priced every time
            text = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None
        return id(schema), id(document), operation_name, text

    def get(
        self, key: Hashable, schema: GraphQLSchema, document: DocumentNode, settings: Settings
    ) -> Cost | None:
        found = self._entries.get(key)
        # By identity: a document compares equal by walking it, and ids can be reused.
        if found is None or not (found[0] is schema and found[1] is document):
            return None
        if found[2] is not settings:
            return None
        return found[3]

    def put(
        self,
        key: Hashable,
        schema: GraphQLSchema,
        document: DocumentNode,
        settings: Settings,
        cost: Cost,
    ) -> None:
        self._entries.put(key, (schema, document, settings, cost))

    def clear(self) -> None:
        self._entries.clear()


PRICED = _Priced()


def price(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    settings: Settings,
    now_ms: int | None = None,
) -> Cost | None:
    """The request's cost; BadInput when over a limit. None when the request cannot run at
    all (no such operation, bad variables): execution reports that itself, at no cost.
    Without ``now_ms``, a cost that does not depend on the clock is remembered (``PRICED``)."""
    key = PRICED.key(schema, document, operation_name, variables) if now_ms is None else None
    if key is not None:
        known = PRICED.get(key, schema, document, settings)
        if known is not None:
            return known
    cost, clocked = _price(schema, document, operation_name, variables, settings, now_ms)
    if key is not None and cost is not None and not clocked:
        PRICED.put(key, schema, document, settings, cost)
    return cost


def _price(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    settings: Settings,
    now_ms: int | None,
) -> tuple[Cost | None, bool]:
    """``price``'s work, and whether the cost depends on the clock (a cohorts field)."""
    operation = _operation(document, operation_name)
    if operation is None:
        return None, False
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walker = _Walker(fragments)
    shape = walker.shape(operation.selection_set)
    _check_shape(shape, settings)
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), dict(variables or {}), max_errors=1
    )
    if isinstance(coerced, list):
        return None, False
    root = schema.query_type
    clocked = False
    points, reports = 0, 0
    per_token = settings.rate_limit_points_per_token
    when = int(time.time() * 1000) if now_ms is None else now_ms
    priced: dict[str, int] = {}  # repeated identical fields are planned once
    for node in walker.root_fields(operation.selection_set):
        definition = root.fields.get(node.name.value) if root else None
        if definition is None:
            continue  # __typename, __schema, __type: no engine work
        planned = 0
        if node.name.value == REPORT_FIELD:
            reports += 1
            args = get_argument_values(definition, node, coerced)
            known = priced.get(key := repr(sorted(args.items())))
            planned = known if known is not None else _report_points(args, settings, when)
            priced[key] = planned
        elif node.name.value == COHORTS_FIELD:
            reports += 1
            clocked = True
            args = get_argument_values(definition, node, coerced)
            planned = _cohort_points(args, settings, when)
        elif node.name.value == FUNNEL_FIELD:
            reports += 1
            planned = _funnel_points(get_argument_values(definition, node, coerced), settings)
        points += max(per_token, planned)  # any field resolved costs a token at least
        if points > settings.max_request_points:
            break  # over already: the rest need not be planned
    if points > settings.max_request_points:
        raise BadInput(
            f"this request costs at least {points} points (buckets x metrics x groups, summed "
            f"over its reports and comparisons), more than the limit of "
            f"{settings.max_request_points}; shorten the ranges, coarsen the granularity, or "
            "ask for fewer metrics, groups or reports"
        )
    tokens = max(1, math.ceil(points / per_token))
    return Cost(shape, points, tokens, reports), clocked


def _report_points(args: Mapping[str, Any], settings: Settings, now_ms: int) -> int:
    try:
        return plan_points(report_plan(args, settings, now_ms))
    except (ClientError, GraphQLError, KeyError, TypeError, ValueError):
        return 0  # the resolver refuses it with its usual error, before any engine read


def _cohort_points(args: Mapping[str, Any], settings: Settings, now_ms: int) -> int:
    """A cohort matrix's values, cohorts x periods, planned without reading anything."""
    try:
        span = args["range"]
        plan = customers.plan_request(
            settings,
            str(args.get("merchant_id", args.get("merchantId"))),
            _instant(span, "start"),
            _instant(span, "end"),
            _member(Granularity, args.get("granularity") or Granularity.WEEK),
            args.get("timezone") or "UTC",
            8 if args.get("periods") is None else int(args["periods"]),
            now_ms,
        )
    except (ClientError, GraphQLError, KeyError, TypeError, ValueError):
        return 0  # the resolver refuses it with its usual error, before any engine read
    return customers.cohort_points(plan)


def _funnel_points(args: Mapping[str, Any], settings: Settings) -> int:
    try:
        return funnel.price(
            funnel.build_plan(**funnel_schema.arguments(dict(args)), settings=settings)
        )
    except (ClientError, GraphQLError, KeyError, TypeError, ValueError):
        return 0  # the resolver refuses it with its usual error, before any engine read


def _check_shape(shape: Shape, settings: Settings) -> None:
    limits = (
        ("fields", shape.fields, settings.max_request_fields),
        ("aliases", shape.aliases, settings.max_request_aliases),
        ("levels of nesting", shape.depth, settings.max_request_depth),
    )
    for what, count, limit in limits:
        if count > limit:
            raise BadInput(
                f"this request selects {count} {what}, more than the limit of {limit} "
                "(fragments counted where they are spread)"
            )


class CostBudget(SchemaExtension):
    """Prices the request before execution; over budget, execution never starts. The cost is
    left on the context (``context.cost``) for the rate limiter to charge."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        request = context.context
        if document is not None and request is not None and hasattr(request, "ctx"):
            try:
                request.cost = price(
                    context.schema._schema,
                    document,
                    context.operation_name,
                    context.variables,
                    request.ctx.settings,
                )
            except BadInput as refused:
                error = GraphQLError(refused.message, original_error=refused)
                context.result = ExecutionResult(data=None, errors=[error])
        yield
