"""Client errors (the caller can fix them) and system errors (we must), kept apart.

Every error that reaches a GraphQL response carries ``extensions.code``. Only ``ClientError``
messages are shown verbatim; anything else is masked as INTERNAL (see api.masking).
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    BAD_USER_INPUT = "BAD_USER_INPUT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    FX_RATE_MISSING = "FX_RATE_MISSING"
    INTERNAL = "INTERNAL"


class ClientError(Exception):
    """A request the caller must change; the message is safe to show."""

    code: Code = Code.BAD_USER_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(ClientError):
    code = Code.BAD_USER_INPUT


class Unauthenticated(ClientError):
    code = Code.UNAUTHENTICATED


class Forbidden(ClientError):
    code = Code.FORBIDDEN


class RateLimited(ClientError):
    code = Code.RATE_LIMITED

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FxRateMissing(ClientError):
    """reportingCurrency needs a rate that ``pulse fx load`` has not provided (api.fx)."""

    code = Code.FX_RATE_MISSING


class SystemFailure(Exception):
    """Our side failed (engine down, timeout, unexpected answer). Never shown verbatim."""

    public_message = "internal error"


class EngineUnavailable(SystemFailure):
    public_message = "the analytics engine is unavailable; retry shortly"


class EngineTimeout(SystemFailure):
    public_message = "the query took too long; try a shorter range or coarser granularity"


class UnexpectedAnswer(SystemFailure):
    """The engine answered something the shaper cannot place (a bug or an engine mismatch)."""
