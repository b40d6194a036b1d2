"""The plain-data GraphQL executor and the remembered-documents extension of the API schema.

``Executor`` completes selections over plain data (no resolvers below) without graphql-core's
per-field machinery, with the same JSON; ``KnownDocuments`` skips parse and validation of a
query text that already passed both. See docs/decisions/0100-plain-data-executor.md.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, ClassVar

from graphql import (
    DocumentNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    get_named_type,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

from api import plain
from api.plain import Complete


class Executor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, completing selections over plain data without per-field calls.

    A selection is *plain* when every field in it (recursively) is a strawberry basic field
    (no resolver, arguments or field extensions: an attribute read) or ``__typename``, on
    object types without ``is_type_of``, with no ``@defer``/``@stream`` and no resolver
    middleware. Such a selection is described by its *shape* (api.plain: types, response
    keys, attribute names), for which one Python function is generated and remembered across
    requests; it reads attributes and coerces leaves with the very ``coerce_output_value``
    graphql-core calls, so the output is the same JSON. Anything the function does not handle
    exactly like graphql-core — a null for a non-null field, a value that fails coercion, an
    unexpected value shape — makes it give up, and that value is completed again on
    graphql-core's path, which then produces the usual data and errors (the read is repeated:
    it has no side effects).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._plain_ok = not (manager and manager.middlewares)
        self._compiled: dict[tuple[int, int], tuple[Any, Complete | None]] = {}

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
        """The generated completion of an object-typed selection, or None when not plain."""
        key = (id(return_type), id(fields))
        hit = self._compiled.get(key)
        if hit is None:
            complete = None
            if isinstance(get_named_type(return_type), GraphQLObjectType):
                found = self._shape(return_type, fields)
                complete = plain.completion(self.schema, found) if found else None
            # The key's objects stay referenced, so their ids are not reused meanwhile.
            hit = (return_type, fields), complete
            self._compiled[key] = hit
        return hit[1]

    def _shape(self, type_: GraphQLOutputType, fields: FieldDetailsList) -> plain.Shape | None:
        if isinstance(type_, GraphQLNonNull):
            inner = self._shape(type_.of_type, fields)
            return plain.NonNull(inner) if inner else None
        if isinstance(type_, GraphQLList):
            if any(d.name.value == "stream" for f in fields for d in f.node.directives or ()):
                return None
            item = self._shape(type_.of_type, fields)
            return plain.ListOf(item) if item else None
        if is_leaf_type(type_):
            return plain.Leaf(type_)
        if isinstance(type_, GraphQLObjectType) and type_.is_type_of is None:
            parts = self._object(type_, fields)
            return plain.Object(type_, parts) if parts is not None else None
        return None

    def _object(
        self, type_: GraphQLObjectType, fields: FieldDetailsList
    ) -> tuple[plain.Part, ...] | None:
        """(response key, attribute name, shape) per selected field, when all are plain."""
        grouped, new_defers, _forbidden = self.collect_subfields(type_, fields)
        if new_defers:
            return None
        parts: list[plain.Part] = []
        for key, sub_fields in grouped.items():
            name = sub_fields[0].node.name.value
            if name == "__typename":
                parts.append((key, None, plain.Constant(type_.name)))
                continue
            field = self.schema.get_field(type_, name)
            attribute = _basic_attribute(field)
            shape = self._shape(field.type, sub_fields) if field and attribute else None
            if attribute is None or shape is None:
                return None
            parts.append((key, attribute, shape))
        return tuple(parts)


def _basic_attribute(field: GraphQLField | None) -> str | None:
    """The attribute a strawberry basic field reads (its resolver is exactly that read)."""
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
    return definition.python_name


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
