"""The plain-data GraphQL executor and the remembered-documents extension of the API schema.

``Executor`` completes selections over plain data (no resolvers below) without graphql-core's
per-field machinery, with the same JSON; ``KnownDocuments`` skips parse and validation of a
query text that already passed both. See docs/decisions/0100-plain-data-executor.md.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from operator import attrgetter
from typing import Any, ClassVar

from graphql import (
    DocumentNode,
    GraphQLEnumType,
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
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

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
