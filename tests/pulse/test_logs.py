"""Engine request logging: an expected 404 is not a warning; a connection failure is one
line, without the traceback the client attaches (the caller gets the exception)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from opensearchpy.exceptions import ConnectionError as EngineConnectionError
from opensearchpy.exceptions import NotFoundError, RequestError

from pulse.clients import opensearch_client
from pulse.engines import free_port
from pulse.logs import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    engine = logging.getLogger("opensearch")
    filters, engine_level = list(engine.filters), engine.level
    yield
    root.handlers[:], engine.filters[:] = handlers, filters
    root.setLevel(level)
    engine.setLevel(engine_level)


def test_expected_404s_are_quiet_and_failures_are_one_line(
    opensearch_url: str, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("INFO", json_logs=False)
    client = opensearch_client(opensearch_url)
    with pytest.raises(NotFoundError):
        client.get(index="pulse-no-such-index", id="state")
    assert "404" not in capsys.readouterr().err

    dead = opensearch_client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(EngineConnectionError):
        dead.info()
    err = capsys.readouterr().err
    assert "WARNING opensearch GET" in err and "[status:N/A" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    index = f"pulse-logs-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index)
    with pytest.raises(RequestError):
        client.search(index=index, body={"query": {"no_such_query": {}}})
    assert "[status:400" in capsys.readouterr().err  # other failures are still logged
