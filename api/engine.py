"""Execution: send a DSL body to the engine with a timeout, mapping failures to SystemFailures."""

from __future__ import annotations

import logging
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import (
    ConnectionError as OSConnectionError,
)
from opensearchpy.exceptions import (
    ConnectionTimeout,
    NotFoundError,
    TransportError,
)

from api.errors import EngineTimeout, EngineUnavailable, UnexpectedAnswer
from ilm import served

log = logging.getLogger(__name__)


EMPTY: dict[str, Any] = {"hits": {"hits": []}, "aggregations": {}}


def search(
    client: OpenSearch,
    index: str,
    body: dict[str, Any],
    timeout_s: float,
    span: tuple[int, int] | None = None,
) -> Any:
    """Run one search; a missing index (nothing written yet) is an empty answer, not an error.

    ``span`` (epoch ms [start, end) of every instant the body can match) sends the search to
    the members of the alias ``index`` that can hold it (``ilm.served``) instead of all.
    """
    try:
        if span is not None:
            routed = served.indices_for(client, index, *span)
            if routed is None:
                return EMPTY
            index = routed
        return client.search(
            index=index,
            body=body,
            request_timeout=timeout_s,
            params={"ignore_unavailable": "true", "allow_no_indices": "true"},
        )
    except NotFoundError:
        return EMPTY
    except ConnectionTimeout:
        raise EngineTimeout() from None
    except OSConnectionError:
        raise EngineUnavailable() from None
    except TransportError as exc:
        # Keep the engine's words in our logs, never in the response.
        log.error("engine refused a query: %s %s", exc.status_code, str(exc)[:500])
        raise UnexpectedAnswer() from None


def mget(client: OpenSearch, docs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Fetch documents by index and id, in order; one in an index that does not exist (nothing
    written there yet) reads as not found. Failures map like ``search``'s."""
    try:
        found: list[dict[str, Any]] = client.mget(body={"docs": docs}, request_timeout=timeout_s)[
            "docs"
        ]
    except ConnectionTimeout:
        raise EngineTimeout() from None
    except OSConnectionError:
        raise EngineUnavailable() from None
    except TransportError as exc:
        log.error("engine refused a get: %s %s", exc.status_code, str(exc)[:500])
        raise UnexpectedAnswer() from None
    for doc in found:
        error = doc.get("error")
        if error and error.get("type") != "index_not_found_exception":
            log.error("engine failed a get: %s", str(error)[:500])
            raise UnexpectedAnswer()
    return found
