"""Engine answers read straight into typed msgspec structs (docs/decisions/0300).

opensearch-py's transport reads every answer into dicts and lists. For the indexer's two
large answers per batch (``_bulk``: an item per document; the first-copy ``_mget``: a doc
per asked pair) that is thousands of dicts, tracked by the cyclic garbage collector: built
while young collections run, they are promoted to the oldest generation and, a few batches
later, trigger a full collection that walks every object of the process. Read into frozen
``gc=False`` structs instead (JSON is a tree: no cycles), only the answer's list is tracked,
and only the fields named are read.

``request_typed`` still goes through ``client.transport.perform_request`` (its errors, and
whatever wraps it, as for every other request); only the reading of the answer's text
changes: the client's deserializer is wrapped once by ``TypedAnswers``, which reads into
the type this thread asked for and hands every other answer to the wrapped deserializer.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from opensearchpy import OpenSearch
from opensearchpy.exceptions import SerializationError

T = TypeVar("T")
_DECODERS: dict[Any, Any] = {}
_ASKED = threading.local()  # .answer: the type the current request of this thread reads into
_WRAPPING = threading.Lock()


class UnexpectedAnswer(SerializationError):
    """The engine's answer is not JSON of the expected shape (what the transport raises for an
    answer it cannot read, ``SerializationError``)."""


class TypedAnswers:
    """A transport deserializer: answers to ``request_typed`` are read into the asked type,
    all others by the deserializer it wraps, unchanged."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def loads(self, s: str, mimetype: str | None = None) -> Any:
        answer = getattr(_ASKED, "answer", None)
        if answer is None:
            return self.inner.loads(s, mimetype)
        decoder = _DECODERS.get(answer)
        if decoder is None:
            decoder = _DECODERS[answer] = msgspec.json.Decoder(answer)
        try:
            return decoder.decode(s)
        except msgspec.MsgspecError as exc:
            raise UnexpectedAnswer(f"not a {answer.__name__}: {exc}") from exc


def request_typed(
    client: OpenSearch,
    method: str,
    path: str,
    answer: type[T],
    *,
    params: Mapping[str, Any],
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> T:
    """``client.transport.perform_request`` whose answer is read into ``answer``."""
    transport: Any = client.transport
    if not isinstance(transport.deserializer, TypedAnswers):
        with _WRAPPING:
            if not isinstance(transport.deserializer, TypedAnswers):
                transport.deserializer = TypedAnswers(transport.deserializer)
    _ASKED.answer = answer
    try:
        value = transport.perform_request(method, path, params=dict(params), body=body,
                                          headers=headers)  # fmt: skip
    finally:
        _ASKED.answer = None
    if not isinstance(value, answer):  # an empty answer is not read at all
        raise UnexpectedAnswer(f"{method} {path}: no {answer.__name__} in the answer")
    return value
