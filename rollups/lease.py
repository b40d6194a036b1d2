"""One rollup writer at a time across replicas: a lease document in the state index.

The lease ``rollups.lease`` holds ``owner``, ``expires_at`` (epoch ms) and ``term`` (bumped
on every takeover). It is created with ``op_type=create`` (exactly one creator wins),
renewed with ``if_seq_no``/``if_primary_term`` (a renewal fails if anyone else wrote the
lease since our last write), and taken over by compare-and-set once expired. A holder that
loses it stops before its next write (``LeaseLost``); its already-written documents are
harmless because rollup writes are versioned (rollups.writer) and the watermark only moves
by compare-and-set (rollups.state).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError

from pulse.naming import Names

LEASE_ID = "rollups.lease"


class LeaseLost(RuntimeError):
    """Another scheduler holds (or took over) the lease."""


@dataclass
class Lease:
    """The rollup lease as seen by one ``owner``."""

    client: OpenSearch
    names: Names
    owner: str
    ttl_ms: int
    _cas: tuple[int, int] | None = None  # (seq_no, primary_term) of our last write
    term: int = 0

    def acquire(self, now_ms: int) -> bool:
        """Take or renew the lease; True when this owner holds it until now + ttl."""
        if self._cas is not None:
            try:
                self._write(now_ms, self.term, self._cas)
                return True
            except ConflictError:
                self._cas = None  # someone else wrote it since: look again
        current = self._read()
        if current is None:
            return self._create(now_ms)
        source, cas = current
        mine = source.get("owner") == self.owner
        if not mine and int(source.get("expires_at", 0)) > now_ms:
            return False
        term = int(source.get("term", 0)) + (0 if mine else 1)
        try:
            self._write(now_ms, term, cas)
        except ConflictError:
            return False  # a concurrent taker won
        return True

    def renew(self, now_ms: int) -> None:
        """Extend the lease before writing; raises LeaseLost when no longer ours."""
        if self._cas is None or not self.acquire(now_ms):
            raise LeaseLost(f"rollup lease is no longer held by {self.owner}")

    def release(self) -> None:
        """Expire the lease at once so another replica need not wait out the ttl."""
        if self._cas is None:
            return
        with contextlib.suppress(ConflictError):  # already taken over: nothing to release
            self._write(0, self.term, self._cas, ttl_ms=0)
        self._cas = None

    @property
    def held(self) -> bool:
        return self._cas is not None

    def _body(self, now_ms: int, term: int, ttl_ms: int) -> dict[str, Any]:
        return {"rollups": {"owner": self.owner, "expires_at": now_ms + ttl_ms, "term": term}}

    def _read(self) -> tuple[dict[str, Any], tuple[int, int]] | None:
        try:
            doc = self.client.get(index=self.names.state_index, id=LEASE_ID)
        except NotFoundError:
            return None
        return doc["_source"].get("rollups", {}), (doc["_seq_no"], doc["_primary_term"])

    def _create(self, now_ms: int) -> bool:
        try:
            result = self.client.create(
                index=self.names.state_index,
                id=LEASE_ID,
                body=self._body(now_ms, 1, self.ttl_ms),
                refresh=True,
            )
        except ConflictError:
            return False
        self.term = 1
        self._cas = (result["_seq_no"], result["_primary_term"])
        return True

    def _write(
        self, now_ms: int, term: int, cas: tuple[int, int], ttl_ms: int | None = None
    ) -> None:
        result = self.client.index(
            index=self.names.state_index,
            id=LEASE_ID,
            body=self._body(now_ms, term, self.ttl_ms if ttl_ms is None else ttl_ms),
            if_seq_no=cas[0],
            if_primary_term=cas[1],
            refresh=True,
        )
        self.term = term
        self._cas = (result["_seq_no"], result["_primary_term"])
