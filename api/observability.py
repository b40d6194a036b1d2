"""Per-operation GraphQL metrics: what on-call asks of the API.

- ``pulse_api_graphql_operations_total{operation, code}``: operations by root field and
  outcome: ``OK`` or the ``extensions.code`` of the first error (RATE_LIMITED counts the
  rate-limit refusals, INTERNAL our failures).
- ``pulse_api_graphql_operation_seconds{operation, code}``: their latency (a refusal is fast,
  an engine timeout slow: by code, neither hides the other).
- ``pulse_api_engine_errors_total{kind}``: engine failures behind INTERNAL answers, by
  ``api.errors.SystemFailure`` class (EngineUnavailable, EngineTimeout, ...).

Labels stay bounded: ``operation`` is a root field of the schema (``invalid`` when the
document did not parse or validate, ``multiple`` for several root fields), ``code`` is an
``api.errors.Code``, ``kind`` a SystemFailure subclass; never a merchant id or a key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, GraphQLError, OperationDefinitionNode
from prometheus_client import CollectorRegistry, Counter, Histogram
from strawberry.extensions import SchemaExtension

from api.errors import ClientError, Code, SystemFailure

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class OperationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.operations = Counter(
            "pulse_api_graphql_operations",
            "GraphQL operations by root field and outcome code",
            ["operation", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "pulse_api_graphql_operation_seconds",
            "GraphQL operation latency by root field and outcome code",
            ["operation", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.engine_errors = Counter(
            "pulse_api_engine_errors",
            "Engine failures behind INTERNAL answers, by kind",
            ["kind"],
            registry=registry,
        )

    def extension(self) -> type[SchemaExtension]:
        """A schema extension class bound to these metrics (strawberry makes one instance
        per request). List it after ``CodedErrors``: hooks exit in reverse order, so it sees
        the errors before they are masked."""
        metrics = self

        class Observed(SchemaExtension):
            def on_operation(self) -> Iterator[None]:
                started = time.perf_counter()
                yield
                metrics.observe(self.execution_context, time.perf_counter() - started)

        return Observed

    def observe(self, ctx: Any, seconds: float) -> None:
        result = ctx.result
        errors: list[GraphQLError] = list(getattr(result, "errors", None) or [])
        operation = operation_of(ctx, errors)
        code = code_of(errors[0]) if errors else "OK"
        self.latency.labels(operation, code).observe(seconds)
        self.operations.labels(operation, code).inc()
        for error in errors:
            if isinstance(error.original_error, SystemFailure):
                self.engine_errors.labels(type(error.original_error).__name__).inc()


def operation_of(ctx: Any, errors: list[GraphQLError]) -> str:
    """The root field the operation asked for (bounded: only after a document validated)."""
    document = ctx.graphql_document
    if document is None or any(e.path is None for e in errors):
        return "invalid"
    wanted = ctx.operation_name
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if wanted is not None and (definition.name is None or definition.name.value != wanted):
            continue
        fields = {
            s.name.value for s in definition.selection_set.selections if isinstance(s, FieldNode)
        }
        if len(fields) == 1:
            return fields.pop()
        return "multiple" if fields else "invalid"
    return "invalid"


def code_of(error: GraphQLError) -> str:
    """The code the client will see (api.masking.classify, without its logging)."""
    given = (error.extensions or {}).get("code")
    if isinstance(given, str):  # already classified
        return given
    original = error.original_error
    if isinstance(original, ClientError):
        return original.code.value
    if error.path is None:
        return Code.BAD_USER_INPUT.value
    return Code.INTERNAL.value
