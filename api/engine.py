"""The API's only engine access: searches, gets, and the one mapping of engine failures to
SystemFailures (``engine_errors``, also around the key lookup and the rollup-state reads)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import (
    ConnectionError as OSConnectionError,
)
from opensearchpy.exceptions import (
    ConnectionTimeout,
    NotFoundError,
    OpenSearchException,
    TransportError,
)

from api.errors import EngineTimeout, EngineUnavailable, UnexpectedAnswer
from api.model import DocVersion
from storage import served

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
    the members of the alias ``index`` that can hold it (``storage.served``) instead of all.
    """
    with engine_errors("query"):
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


def mget(client: OpenSearch, docs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Fetch documents by index and id, in order; one in an index that does not exist (nothing
    written there yet) reads as not found. Failures map like ``search``'s."""
    with engine_errors("get"):
        answer = client.mget(body={"docs": docs}, request_timeout=timeout_s)
    return checked(answer["docs"])


def checked(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``mget`` answers, failing on a document the engine could not get (other than one in an
    index that does not exist, which reads as not found)."""
    for doc in found:
        error = doc.get("error")
        if error and error.get("type") != "index_not_found_exception":
            log.error("engine failed a get: %s", str(error)[:500])
            raise UnexpectedAnswer()
    return found


def doc_version(found: dict[str, Any]) -> DocVersion | None:
    """An ``mget`` answer's (index, id, found, seq_no, primary_term); None when a found
    document comes without its sequence number (nothing to key a cache on)."""
    index, key = str(found.get("_index")), str(found.get("_id"))
    if not found.get("found"):
        return index, key, False, -1, -1
    seq_no, term = found.get("_seq_no"), found.get("_primary_term")
    if seq_no is None or term is None:
        return None
    return index, key, True, int(seq_no), int(term)


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Engine failures as the API's errors, the one mapping every engine call of the API goes
    through; the engine's words go to our logs, never to the response."""
    try:
        yield
    except ConnectionTimeout:
        raise EngineTimeout() from None
    except OSConnectionError:
        raise EngineUnavailable() from None
    except TransportError as exc:
        log.error("engine refused a %s: %s %s", what, exc.status_code, str(exc)[:500])
        raise UnexpectedAnswer() from None
    except OpenSearchException as exc:  # the client's own failures (serialization, config)
        log.error("engine client failed a %s: %s", what, str(exc)[:500])
        raise EngineUnavailable() from None
