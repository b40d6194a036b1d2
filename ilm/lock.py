"""Only one manager acts at a time: a lease document in the engine.

Acquire = create the document (``op_type=create``: 409 when it exists); an expired lease, or
our own, is taken over with compare-and-set (``if_seq_no``/``if_primary_term``), so two
managers racing for an expired lease cannot both win. The holder renews between actions;
a crashed holder's lease simply expires.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError

from storage.templates import create_index

log = logging.getLogger(__name__)

LOCK_ID = "manager-lock"

STATE_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "kind": {"type": "keyword"},
        "owner": {"type": "keyword"},
        "expires_at": {"type": "date", "format": "epoch_millis"},
        "index": {"type": "keyword"},
        "at": {"type": "date", "format": "epoch_millis"},
        "removed": {"type": "long"},
    },
}


def ensure_state_index(client: OpenSearch, index: str) -> None:
    if not client.indices.exists(index=index):
        create_index(
            client, index, {"mappings": STATE_MAPPINGS, "settings": {"number_of_shards": 1}}
        )


class LockLost(RuntimeError):
    """Another manager holds (or took over) the lease; stop acting."""


@dataclass(frozen=True)
class Lease:
    owner: str
    expires_at_ms: int
    seq_no: int
    primary_term: int


class ManagerLock:
    """A lease named ``manager-lock`` in ``index``, held by ``owner`` for ``ttl_s``."""

    def __init__(self, client: OpenSearch, index: str, owner: str, ttl_s: float) -> None:
        if not owner:
            raise ValueError("a lock owner id is required")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.client, self.index, self.owner, self.ttl_s = client, index, owner, ttl_s

    def _body(self) -> dict[str, Any]:
        expires = int((time.time() + self.ttl_s) * 1000)
        return {"kind": "lock", "owner": self.owner, "expires_at": expires}

    def current(self) -> Lease | None:
        try:
            doc = self.client.get(index=self.index, id=LOCK_ID)
        except NotFoundError:
            return None
        src = doc["_source"]
        return Lease(src["owner"], int(src["expires_at"]), doc["_seq_no"], doc["_primary_term"])

    def acquire(self) -> bool:
        """True when this owner now holds the lease."""
        try:
            self.client.index(
                index=self.index, id=LOCK_ID, body=self._body(), op_type="create", refresh=True
            )
            return True
        except ConflictError:
            pass
        lease = self.current()
        if lease is None:
            return self.acquire()  # released between our create and our read
        if lease.owner != self.owner and lease.expires_at_ms > time.time() * 1000:
            return False
        if lease.owner != self.owner:
            log.warning("taking over expired ilm lock", extra={"previous": lease.owner})
        return self._cas(lease)

    def renew(self) -> None:
        """Extend our lease; raises LockLost if another manager holds it now."""
        lease = self.current()
        if lease is None or lease.owner != self.owner or not self._cas(lease):
            raise LockLost(f"ilm lock is no longer held by {self.owner}")

    def release(self) -> None:
        lease = self.current()
        if lease is None or lease.owner != self.owner:
            return
        # Conflict/NotFound: someone took over an expired lease; it is theirs now.
        with contextlib.suppress(ConflictError, NotFoundError):
            self.client.delete(
                index=self.index,
                id=LOCK_ID,
                if_seq_no=lease.seq_no,
                if_primary_term=lease.primary_term,
                refresh=True,
            )

    def _cas(self, lease: Lease) -> bool:
        try:
            self.client.index(
                index=self.index,
                id=LOCK_ID,
                body=self._body(),
                if_seq_no=lease.seq_no,
                if_primary_term=lease.primary_term,
                refresh=True,
            )
            return True
        except ConflictError:
            return False
