"""The GraphQL schema of DESIGN.md (a public contract: only ever extended) and thin resolvers.

Resolvers only translate arguments into a QueryPlan and a Report back into these types; the
work happens in api.planner / api.service, run in a worker thread (the engine client blocks).
``Executor`` completes selections over plain data (no resolvers below) without graphql-core's
per-field machinery, with the same JSON; see docs/decisions/0100-plain-data-executor.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime
from enum import Enum
from operator import attrgetter
from typing import Any, ClassVar, cast

import strawberry
from anyio import to_thread
from graphql import (
    DocumentNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    Undefined,
    get_named_type,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path
from graphql.type.scalars import serialize_boolean, serialize_float, serialize_string
from opensearchpy.exceptions import OpenSearchException
from strawberry.extensions import SchemaExtension
from strawberry.fastapi import BaseContext
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from api import model, planner, report, service
from api.authcache import KeyGuard
from api.budget import Cost
from api.errors import EngineUnavailable, Forbidden, RateLimited, Unauthenticated
from api.keys import Principal, lookup
from api.ratelimit import RateLimiter
from api.sources import Ctx
from api.timebuckets import iso, zone

Metric = strawberry.enum(model.Metric)
Granularity = strawberry.enum(model.Granularity)
Dimension = strawberry.enum(model.Dimension)


@strawberry.enum(description="Which source answers a report (extension; RAW is admin-only).")
class ForceSource(Enum):
    AUTO = "AUTO"
    RAW = "RAW"


@strawberry.input
class TimeRange:
    start: datetime
    end: datetime


@strawberry.input
class DimensionFilter:
    dimension: Dimension  # type: ignore[valid-type]
    values: list[str]
    exclude: bool | None = False


@strawberry.type
class DimensionValue:
    dimension: Dimension  # type: ignore[valid-type]
    value: str


@strawberry.type
class MetricValue:
    metric: Metric  # type: ignore[valid-type]
    value: float | None
    error_bound: float | None = strawberry.field(
        description="Absolute half-width of a ~95% interval; 0 when exact."
    )


@strawberry.type
class Point:
    start: datetime
    values: list[MetricValue]
    complete: bool = strawberry.field(
        description="The bucket lies wholly inside the range and has fully elapsed."
    )


@strawberry.type
class Series:
    group: list[DimensionValue]
    points: list[Point]


@strawberry.type
class ReportMeta:
    sources: list[str]
    watermark: datetime | None
    took_ms: int


@strawberry.type
class Report:
    series: list[Series]
    totals: list[MetricValue]
    comparison: Report | None
    meta: ReportMeta


@strawberry.type
class Freshness:
    ingested_through: datetime | None
    rolled_up_through: datetime | None


class Context(BaseContext):
    """Per request: the shared execution context, the limiter, the presented key, the key
    guard (caches, api.authcache) and client address, and the cost priced by api.budget."""

    def __init__(
        self,
        ctx: Ctx,
        limiter: RateLimiter,
        authorization: str | None,
        guard: KeyGuard | None = None,
        address: str = "",
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.limiter = limiter
        self.authorization = authorization
        self.guard = guard
        self.address = address
        self.principal: Principal | None = None
        self.cost: Cost | None = None
        self.charged = False
        self.refused: RateLimited | None = None
        self.lock = threading.Lock()  # fields resolve concurrently: one lookup, one charge

    def tokens(self) -> int:
        """Rate-limit tokens of this request: its cost, or one without a budget extension."""
        return self.cost.tokens if self.cost else 1


def _principal(info: Info[Context, None]) -> Principal:
    """The caller, from the bearer key; charges the request's tokens (its cost) once.
    Blocking (engine reads): resolvers call it in a worker thread, never on the event loop."""
    context = info.context
    with context.lock:
        if context.principal is None:
            context.principal = _authenticate(context)
        if context.refused is not None:
            raise context.refused
        if not context.charged:
            context.charged = True
            try:
                context.limiter.take(context.principal.key_id, context.tokens())
            except RateLimited as refused:
                context.refused = refused  # the request's other fields get the same answer
                raise
            except OpenSearchException:
                raise EngineUnavailable() from None
    return context.principal


def _authenticate(context: Context) -> Principal:
    header = (context.authorization or "").strip()
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("send an API key: Authorization: Bearer <key>")

    def fetch(presented: str) -> Principal | None:
        return lookup(context.ctx.client, context.ctx.names, presented)

    try:
        if context.guard is not None:
            return context.guard.principal(key.strip(), context.address, fetch)
        principal = fetch(key.strip())
    except OpenSearchException:
        raise EngineUnavailable() from None
    if principal is None:
        raise Unauthenticated("unknown or revoked API key")
    return principal


def _metric_values(values: list[report.MetricValue]) -> list[MetricValue]:
    """Served as they are: api.report.MetricValue has MetricValue's attributes (metric, value,
    error_bound) and the type has no resolvers or interfaces, so both executors read them like
    MetricValue objects; copying 3,600 of them per 30-day hourly report cost ~1.3 ms."""
    return cast("list[MetricValue]", values)


def _ts(ms: int | None, tz_name: str) -> datetime | None:
    return None if ms is None else iso(ms, zone(tz_name))


def to_graphql(rep: report.Report) -> Report:
    tz = zone(rep.timezone)
    series = [
        Series(
            group=[DimensionValue(dimension=d, value=v) for d, v in s.group],
            points=[
                Point(
                    start=iso(p.start_ms, tz), values=_metric_values(p.values), complete=p.complete
                )
                for p in s.points
            ],
        )
        for s in rep.series
    ]
    meta = ReportMeta(
        sources=rep.sources, watermark=_ts(rep.watermark_ms, rep.timezone), took_ms=rep.took_ms
    )
    comparison = to_graphql(rep.comparison) if rep.comparison else None
    return Report(
        series=series, totals=_metric_values(rep.totals), comparison=comparison, meta=meta
    )


def _filters(filters: list[DimensionFilter] | None) -> list[model.Filter]:
    return [model.Filter(f.dimension, tuple(f.values), bool(f.exclude)) for f in (filters or [])]


@strawberry.type
class Query:
    @strawberry.field(description="A time-series report for one merchant.")  # type: ignore[untyped-decorator]
    async def metrics(
        self,
        info: Info[Context, None],
        merchant_id: strawberry.ID,
        range: TimeRange,
        metrics: list[Metric],  # type: ignore[valid-type]
        granularity: Granularity | None = model.Granularity.HOUR,  # type: ignore[valid-type]
        timezone: str | None = "UTC",
        group_by: list[Dimension] | None = (),  # type: ignore[valid-type,assignment]
        filters: list[DimensionFilter] | None = (),  # type: ignore[assignment]
        compare_to: TimeRange | None = strawberry.UNSET,
        limit: int | None = 10,
        force_source: ForceSource | None = ForceSource.AUTO,
    ) -> Report:
        principal = await to_thread.run_sync(_principal, info)
        if force_source is ForceSource.RAW and not principal.admin:
            raise Forbidden("forceSource: RAW is for admin keys")
        plan = planner.build_plan(
            str(merchant_id),
            range.start,
            range.end,
            metrics,
            granularity=granularity or model.Granularity.HOUR,
            timezone=timezone or "UTC",
            group_by=group_by or (),
            filters=_filters(list(filters or [])),
            limit=10 if limit is None else limit,
            now_ms=int(time.time() * 1000),
            force_source=model.Source.RAW if force_source is ForceSource.RAW else None,
        )
        if compare_to:
            plan = planner.with_comparison(plan, compare_to.start, compare_to.end)
        ctx = info.context.ctx
        plan = service.process(ctx, plan, principal)
        rep = await to_thread.run_sync(service.report, ctx, plan)
        return to_graphql(rep)

    @strawberry.field(description="How fresh a merchant's data is.")  # type: ignore[untyped-decorator]
    async def freshness(self, info: Info[Context, None], merchant_id: strawberry.ID) -> Freshness:
        principal = await to_thread.run_sync(_principal, info)
        planner.tenant_scope(
            model.QueryPlan(str(merchant_id), 0, 1, (model.Metric.EVENTS,)), principal
        )
        ingested, rolled = await to_thread.run_sync(
            service.freshness, info.context.ctx, str(merchant_id)
        )
        return Freshness(
            ingested_through=_ts(ingested, "UTC"), rolled_up_through=_ts(rolled, "UTC")
        )


Complete = Callable[[Any], Any]  # a runtime value -> its completed (JSON-ready) value
Parts = tuple[tuple[str, Complete, Complete], ...]
# graphql-core's output coercions that return a value of exactly this type unchanged (floats:
# when finite).
_IDENTITY_COERCIONS: dict[Any, type] = {
    serialize_float: float,
    serialize_boolean: bool,
    serialize_string: str,
}


class _Slow(Exception):
    """A value the plain path does not complete: graphql-core's own path takes over."""


class Executor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, completing selections over plain data without per-field calls.

    A selection is *plain* when every field in it (recursively) is a strawberry basic field
    (no resolver, arguments or field extensions: an attribute read) or ``__typename``, on
    object types without ``is_type_of``, with no ``@defer``/``@stream`` and no resolver
    middleware. Such a selection is compiled once per request into closures that read
    attributes and coerce leaves with the very ``coerce_output_value`` graphql-core calls, so
    the output is the same JSON. Anything the closures do not handle exactly like
    graphql-core — a null for a non-null field, a value that fails coercion, an unexpected
    value shape — makes them give up and re-complete that value on graphql-core's path, which
    then produces the usual data and errors (the read is repeated: it has no side effects).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._plain_ok = not (manager and manager.middlewares)
        self._compiled: dict[tuple[int, int], tuple[Any, Complete | None]] = {}
        self._enum_names: dict[tuple[int, Any], str] = {}

    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[Any]:
        if self._plain_ok and position_context is None:
            complete = self._plain(return_type, field_details_list)
            if complete is not None:
                try:
                    return complete(result)
                except Exception:  # graphql-core's path below completes (or reports) it
                    pass
        return super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _plain(self, return_type: GraphQLOutputType, fields: FieldDetailsList) -> Complete | None:
        """The compiled completion of an object-typed selection, or None when not plain."""
        key = (id(return_type), id(fields))
        hit = self._compiled.get(key)
        if hit is None:
            plain = isinstance(get_named_type(return_type), GraphQLObjectType)
            # The key's objects stay referenced, so their ids are not reused meanwhile.
            hit = (return_type, fields), self._compile(return_type, fields) if plain else None
            self._compiled[key] = hit
        return hit[1]

    def _compile(
        self, type_: GraphQLOutputType, fields: FieldDetailsList, non_null: bool = False
    ) -> Complete | None:
        if isinstance(type_, GraphQLNonNull):
            return self._compile(type_.of_type, fields, non_null=True)
        if isinstance(type_, GraphQLList):
            if any(d.name.value == "stream" for f in fields for d in f.node.directives or ()):
                return None
            item = self._compile(type_.of_type, fields)
            return _list_of(item, non_null) if item else None
        if is_leaf_type(type_):
            return self._leaf(type_, non_null)
        if isinstance(type_, GraphQLObjectType) and type_.is_type_of is None:
            parts = self._object(type_, fields)
            return _object_of(parts, non_null) if parts is not None else None
        return None

    def _object(self, type_: GraphQLObjectType, fields: FieldDetailsList) -> Parts | None:
        """(response key, attribute read, completion) per selected field, when all are plain."""
        grouped, new_defers, _forbidden = self.collect_subfields(type_, fields)
        if new_defers:
            return None
        parts: list[tuple[str, Complete, Complete]] = []
        for key, sub_fields in grouped.items():
            name = sub_fields[0].node.name.value
            if name == "__typename":
                parts.append((key, _constant(type_.name), _same))
                continue
            field = self.schema.get_field(type_, name)
            getter = _basic_getter(field)
            complete = self._compile(field.type, sub_fields) if field and getter else None
            if getter is None or complete is None:
                return None
            parts.append((key, getter, complete))
        return tuple(parts)

    def _leaf(self, type_: GraphQLLeafType, non_null: bool) -> Complete:
        coerce = type_.coerce_output_value
        if isinstance(type_, GraphQLEnumType):
            coerce = self._memo(type_, coerce)

        def leaf(value: Any) -> Any:
            if value is None:
                if non_null:
                    raise _Slow
                return None
            if isinstance(value, Exception):
                raise _Slow
            coerced = coerce(value)
            if coerced is None or coerced is Undefined:
                raise _Slow
            return coerced

        return _with_identity_shortcut(leaf, _IDENTITY_COERCIONS.get(coerce))

    def _memo(self, type_: GraphQLEnumType, coerce: Complete) -> Complete:
        """Enum coercion remembered per (type, member) for this request: it is a pure lookup."""
        names = self._enum_names
        type_id = id(type_)

        def coerce_enum(value: Any) -> Any:
            key = (type_id, value)
            try:
                return names[key]
            except KeyError:
                names[key] = name = coerce(value)
                return name

        return coerce_enum


def _same(value: Any) -> Any:
    return value


def _constant(value: Any) -> Complete:
    return lambda _source: value


def _basic_getter(field: GraphQLField | None) -> Complete | None:
    """An attribute read equal to the field's resolver, for strawberry basic fields only."""
    if field is None:
        return None
    definition = field.extensions.get("strawberry-definition")
    if (
        not isinstance(definition, StrawberryField)
        or not definition.is_basic_field
        or definition.default_resolver is not getattr
        or getattr(field.resolve, "__name__", None) != "_get_basic_result"
        or field.args
    ):
        return None
    return attrgetter(definition.python_name)


def _with_identity_shortcut(leaf: Complete, same: type | None) -> Complete:
    """``leaf``, skipped for values its coercion returns unchanged (finite floats, str, bool)."""
    if same is float:
        return lambda value: (
            value if type(value) is float and -math.inf < value < math.inf else leaf(value)
        )
    if same is not None:
        return lambda value: value if type(value) is same else leaf(value)
    return leaf


def _list_of(item: Complete, non_null: bool) -> Complete:
    def list_of(value: Any) -> Any:
        if type(value) is list or type(value) is tuple:
            return [item(element) for element in value]
        if value is None and not non_null:
            return None
        raise _Slow

    return list_of


def _object_of(parts: Parts, non_null: bool) -> Complete:
    def object_of(value: Any) -> Any:
        if value is None:
            if non_null:
                raise _Slow
            return None
        if isinstance(value, Exception):
            raise _Slow
        return {key: complete(get(value)) for key, get, complete in parts}

    return object_of


class KnownDocuments(SchemaExtension):
    """Remembers query texts that parsed and validated without errors (bounded LRU).

    Parse + validation cost ~2.5 ms for the report queries and depend only on the text and
    the schema — never on variables, data or the caller. A remembered text reuses its
    (read-only) document and skips validation; any other text, including every invalid one,
    takes strawberry's normal path, so errors are produced and coded exactly as before.
    (strawberry's ParserCache raises syntax errors past the masking extension: not used.)
    """

    MAX_ENTRIES = 128
    MAX_QUERY_CHARS = 20_000
    _known: ClassVar[OrderedDict[tuple[object, str], DocumentNode]] = OrderedDict()

    def _key(self) -> tuple[object, str] | None:
        context = self.execution_context
        query = context.query
        if not query or len(query) > self.MAX_QUERY_CHARS:
            return None
        return context.schema, query  # the schema itself: an id could be reused

    def on_parse(self) -> Iterator[None]:
        key = self._key()
        document = self._known.get(key) if key else None
        if document is not None:
            self._known.move_to_end(key)  # type: ignore[arg-type]
            self.execution_context.graphql_document = document
            self.execution_context.pre_execution_errors = []  # validated when remembered
        yield

    def on_validate(self) -> Iterator[None]:
        yield
        context, key = self.execution_context, self._key()
        if key and context.graphql_document is not None and context.pre_execution_errors == []:
            self._known[key] = context.graphql_document
            while len(self._known) > self.MAX_ENTRIES:
                self._known.popitem(last=False)


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """No-op: api.masking logs what is ours; client mistakes are not server errors."""


def build_schema(extensions: list[Any], *, plain_executor: bool = True) -> strawberry.Schema:
    """The API schema; ``plain_executor=False`` keeps graphql-core's executor (benchmarks)."""
    executor = Executor if plain_executor else None
    return Schema(query=Query, extensions=extensions, execution_context_class=executor)
