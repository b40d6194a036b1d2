"""Engine failures become the API's errors, never engine text (api.engine), for search and mget."""

from __future__ import annotations

from typing import Any

import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, NotFoundError, TransportError

from api.app import ENGINE_CONNECTIONS, _engine
from api.engine import EMPTY, mget, search
from api.errors import EngineTimeout, EngineUnavailable, UnexpectedAnswer
from pulse.curl_transport import CurlTransport
from pulse.settings import Settings
from tests.pulse.test_clients import opened_by


class Failing:
    """A client whose search and mget raise ``exc`` (or answer ``docs`` for mget)."""

    def __init__(self, exc: Exception | None = None, docs: list[dict[str, Any]] | None = None):
        self.exc, self.docs = exc, docs

    def search(self, **_kwargs: Any) -> Any:
        assert self.exc is not None
        raise self.exc

    def mget(self, **_kwargs: Any) -> Any:
        if self.exc is not None:
            raise self.exc
        return {"docs": self.docs}


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionTimeout("TIMEOUT", "secret", Exception()), EngineTimeout),
        (OSConnectionError("N/A", "secret", Exception()), EngineUnavailable),
        (TransportError(500, "secret engine text"), UnexpectedAnswer),
    ],
)
def test_failures_map_to_api_errors(exc: Exception, expected: type[Exception]) -> None:
    for call in (lambda: search(Failing(exc), "i", {}, 1.0), lambda: mget(Failing(exc), [], 1.0)):  # type: ignore[arg-type]
        with pytest.raises(expected) as raised:
            call()
        assert "secret" not in str(raised.value)


def test_missing_indices_read_as_empty_or_not_found() -> None:
    assert search(Failing(NotFoundError(404, "index_not_found")), "i", {}, 1.0) is EMPTY  # type: ignore[arg-type]
    missing = {"_id": "a", "error": {"type": "index_not_found_exception", "reason": "x"}}
    assert mget(Failing(docs=[missing]), [], 1.0) == [missing]  # type: ignore[arg-type]
    broken = {"_id": "a", "error": {"type": "shard_failure", "reason": "secret"}}
    with pytest.raises(UnexpectedAnswer):
        mget(Failing(docs=[broken]), [], 1.0)  # type: ignore[arg-type]


def test_the_api_client_keeps_a_connection_per_concurrent_read(api_settings: Settings) -> None:
    """Reads side by side (a report's, and concurrent requests') reuse kept connections."""
    client = _engine(api_settings)
    assert isinstance(client.transport, CurlTransport)  # libcurl (decision 0290)
    assert opened_by(client, ENGINE_CONNECTIONS, 20 * ENGINE_CONNECTIONS) <= ENGINE_CONNECTIONS
