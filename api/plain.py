"""Generated completion functions for plain GraphQL selections (api.executor, decision 0245).

A plain selection (attribute reads down to the leaves) is described by its ``Shape``: object
types with their selected (response key, attribute, shape) parts in order, lists, non-nulls
and leaf types. For each shape one Python function is generated — one ``def`` per object
selection, lists as comprehensions, the identity coercions inline — and remembered across
requests (bounded LRU per schema). It builds exactly the dicts and lists the closures of
decision 0100 built: the same attribute reads, the same ``coerce_output_value`` calls, and
``_Slow`` wherever graphql-core's own path must take over (a null for a non-null, an
exception object, a value that fails coercion, a non-list for a list).

Why generated code: a 30-day hourly report completes ~720 points x 5 values; with one closure
call per field and a dict comprehension per object, completion was ~70 % of the GraphQL
layer's CPU (cProfile of bench.graphql_exec's schema case). One function per object type with
the reads and the float/str/bool checks inline does the same work with a few calls per object.
"""

from __future__ import annotations

import keyword
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLEnumType, GraphQLLeafType, GraphQLObjectType, GraphQLSchema, Undefined
from graphql.type.scalars import serialize_boolean, serialize_float, serialize_string

from api.encoded import MEMO, Keyed

Complete = Callable[[Any], Any]  # a runtime value -> its completed (JSON-ready) value
# graphql-core's output coercions that return a value of exactly this type unchanged (floats:
# when finite).
_IDENTITY_COERCIONS: dict[Any, type] = {
    serialize_float: float,
    serialize_boolean: bool,
    serialize_string: str,
}
MAX_FUNCTIONS = 256  # shapes remembered per process; a shape is a query text's selection


class Slow(Exception):
    """A value the generated function does not complete: graphql-core's path takes over."""


@dataclass(frozen=True)
class Leaf:
    type_: GraphQLLeafType


@dataclass(frozen=True)
class Constant:
    value: str  # __typename


@dataclass(frozen=True)
class NonNull:
    of: Shape


@dataclass(frozen=True)
class ListOf:
    item: Shape


@dataclass(frozen=True)
class Object:
    type_: GraphQLObjectType
    parts: tuple[Part, ...]


Shape = Leaf | Constant | NonNull | ListOf | Object
Part = tuple[str, str | None, Shape]  # response key, attribute (None: __typename), shape

_functions: OrderedDict[tuple[GraphQLSchema, Shape], Complete] = OrderedDict()
_lock = threading.Lock()


def completion(schema: GraphQLSchema, shape: Shape) -> Complete:
    """The completion function of ``shape`` (generated once, then remembered)."""
    key = (schema, shape)
    with _lock:
        found = _functions.get(key)
        if found is not None:
            _functions.move_to_end(key)
            return found
    made = _Source().entry(shape)
    with _lock:
        _functions[key] = made
        while len(_functions) > MAX_FUNCTIONS:
            _functions.popitem(last=False)
    return made


class _Source:
    """The text of one generated module and the objects its names are bound to."""

    def __init__(self) -> None:
        self.defs: list[str] = []
        self.env: dict[str, Any] = {"_Slow": Slow, "_inf": math.inf, "_Exception": Exception}
        self.count = 0

    def entry(self, shape: Shape) -> Complete:
        body = self.expr(shape, "v", non_null=False, depth=0)
        self.defs.append(f"def _entry(v):\n    return {body}")
        exec(compile("\n\n".join(self.defs), "<api.plain>", "exec"), self.env)
        function: Complete = self.env["_entry"]
        return function

    def bind(self, value: Any, prefix: str) -> str:
        self.count += 1
        name = f"{prefix}{self.count}"
        self.env[name] = value
        return name

    def expr(self, shape: Shape, var: str, non_null: bool, depth: int) -> str:
        """An expression completing the value held by the local name ``var``."""
        if isinstance(shape, NonNull):
            return self.expr(shape.of, var, True, depth)
        if isinstance(shape, Leaf):
            return self.leaf(shape.type_, var, non_null)
        if isinstance(shape, ListOf):
            item = f"_x{depth}"
            inner = self.expr(shape.item, item, False, depth + 1)
            is_list = f"type({var}) is list or type({var}) is tuple"
            if not _of_objects(shape.item):
                other = self.bind(_not_a_list(non_null), "_nolist")
                return f"([{inner} for {item} in {var}] if {is_list} else {other}({var}))"
            # A list of objects may be Keyed (api.encoded): its items' JSON is remembered.
            self.count += 1
            complete_item = f"_item{self.count}"
            self.defs.append(f"def {complete_item}({item}):\n    return {inner}")
            other = self.bind(_keyed_or_not_a_list(non_null), "_keyed")
            return (
                f"([{inner} for {item} in {var}] if {is_list} else {other}({var}, {complete_item}))"
            )
        if isinstance(shape, Object):
            return f"{self.function(shape, non_null)}({var})"
        return repr(shape.value)

    def leaf(self, type_: GraphQLLeafType, var: str, non_null: bool) -> str:
        coerce = self.bind(_leaf(type_, non_null), "_leaf")
        same = _IDENTITY_COERCIONS.get(type_.coerce_output_value)
        if same is float:
            return f"({var} if type({var}) is float and -_inf < {var} < _inf else {coerce}({var}))"
        if same is not None:
            return f"({var} if type({var}) is {same.__name__} else {coerce}({var}))"
        return f"{coerce}({var})"

    def function(self, shape: Object, non_null: bool) -> str:
        """A ``def`` completing one object of ``shape``; returns its name."""
        self.count += 1
        name = f"_o{self.count}"
        lines = [
            f"def {name}(v):",
            "    if v is None:",
            "        raise _Slow" if non_null else "        return None",
            "    if isinstance(v, _Exception):",
            "        raise _Slow",
        ]
        items = []
        for i, (key, attribute, sub) in enumerate(shape.parts):
            if attribute is None:
                items.append(f"{key!r}: {self.expr(sub, '', False, 0)}")
                continue
            if attribute.isidentifier() and not keyword.iskeyword(attribute):
                lines.append(f"    a{i} = v.{attribute}")
            else:
                lines.append(f"    a{i} = getattr(v, {attribute!r})")
            items.append(f"{key!r}: {self.expr(sub, f'a{i}', False, 0)}")
        lines.append("    return {" + ", ".join(items) + "}")
        self.defs.append("\n".join(lines))
        return name


def _of_objects(shape: Shape) -> bool:
    return isinstance(shape.of if isinstance(shape, NonNull) else shape, Object)


def _keyed_or_not_a_list(non_null: bool) -> Callable[[Any, Complete], Any]:
    """A list value that is not a list or tuple: a Keyed one is encoded through the memo
    (api.encoded: its entries are relative to the item function, so to the selection);
    anything else as ``_not_a_list``."""
    not_a_list = _not_a_list(non_null)

    def keyed(value: Any, complete_item: Complete) -> Any:
        if isinstance(value, Keyed):
            return MEMO.encode(value, complete_item)
        return not_a_list(value)

    return keyed


def _not_a_list(non_null: bool) -> Complete:
    def not_a_list(value: Any) -> Any:
        if value is None and not non_null:
            return None
        raise Slow

    return not_a_list


def _leaf(type_: GraphQLLeafType, non_null: bool) -> Complete:
    coerce = type_.coerce_output_value
    if isinstance(type_, GraphQLEnumType):
        coerce = _memo(coerce)

    def leaf(value: Any) -> Any:
        if value is None:
            if non_null:
                raise Slow
            return None
        if isinstance(value, Exception):
            raise Slow
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise Slow
        return coerced

    return leaf


def _memo(coerce: Complete) -> Complete:
    """An enum's coercion remembered per member: a pure lookup (only values it accepted are
    kept, so the memo holds at most the enum's members)."""
    names: dict[Any, Any] = {}

    def coerce_enum(value: Any) -> Any:
        try:
            return names[value]
        except KeyError:
            names[value] = name = coerce(value)
            return name

    return coerce_enum
