"""Every GraphQL error gets ``extensions.code``; only client errors keep their words.

- ClientError from a resolver: its message and code.
- Errors with no resolver path (syntax, validation, variable coercion): graphql-core's
  message, which only describes the request, as BAD_USER_INPUT.
- Anything else (SystemFailure, bugs, engine exceptions): a fixed message, INTERNAL; the
  details go to the server log only.
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from api.errors import ClientError, Code, SystemFailure

log = logging.getLogger(__name__)


def classify(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, ClientError):
        return _with(error, original.message, original.code, original.details)
    if error.path is None:  # raised before execution: it can only be about the request
        return _with(error, error.message, Code.BAD_USER_INPUT)
    if isinstance(original, SystemFailure):
        log.warning("system failure", extra={"kind": type(original).__name__, "path": error.path})
        return _with(error, original.public_message, Code.INTERNAL)
    if original is None:
        # graphql-core's own error inside execution (e.g. a null for a non-null field): ours.
        log.error("graphql execution error", extra={"graphql_error": error.message})
        return _with(error, "internal error", Code.INTERNAL)
    log.error("unexpected error in a resolver", exc_info=original)
    return _with(error, "internal error", Code.INTERNAL)


def _with(
    error: GraphQLError, message: str, code: Code, details: dict[str, Any] | None = None
) -> GraphQLError:
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={"code": code.value, **(details or {})},
    )


class CodedErrors(MaskErrors):
    """strawberry's MaskErrors, classifying every error instead of masking some."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return classify(error)

    def _process_result(self, result: object) -> None:
        # strawberry checks ``isinstance(result, _ResultWithErrors)``, a runtime Protocol whose
        # check walks the protocol's attributes on every request (~4 % of an empty query's
        # CPU); the results it is given are execution results, which all have ``errors``.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]
