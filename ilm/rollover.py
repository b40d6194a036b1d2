"""Rollover of a day's write alias, and the reconcile step that closes the switch race.

Rollover (works on every engine: no ``_rollover`` API needed): create the next backing index
(already in ``events`` when the day is served, so every document stays readable), then move
the write flag in ONE atomic ``_aliases`` call, so the day has exactly one write index at
every instant and no write fails.

Reconcile (docs/decisions/0021): the indexer skips ids already in the day's sealed indices,
but a batch checked just before the switch may land in the new index although its ids are in
the old one. After the switch, wait ``engine_timeout_s`` (no bulk started before the switch is
still running), then delete from the new index every id also present in a sealed index of the
day, and record that the index is reconciled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import NotFoundError

from ilm.actions import Action, Refused
from ilm.inventory import IndexInfo
from pulse.clock import now_ms
from pulse.naming import Names
from storage.templates import create_index, day_alias_members

log = logging.getLogger(__name__)

CHUNK = 1000


def marker_id(index: str) -> str:
    return f"reconciled:{index}"


class Rollover(Action):
    """Add backing index N+1 to a day alias and make it the write index atomically."""

    kind = "rollover"

    def __init__(
        self,
        client: OpenSearch,
        names: Names,
        info: IndexInfo,
        reason: str,
        engine_timeout_s: float,
    ) -> None:
        if info.day_alias is None or info.seq is None or not info.is_write:
            raise ValueError(f"{info.name} is not the write index of a day alias")
        super().__init__(client, info.day_alias)
        self.names, self.current, self.reason = names, info, reason
        self.engine_timeout_s = engine_timeout_s
        self.next_index = names.raw_backing_index(info.generation, info.day, info.seq + 1)

    def describe(self) -> str:
        return f"{self.current.name} -> {self.next_index} ({self.reason})"

    def done(self) -> bool:
        return day_alias_members(self.client, self.target).get(self.next_index) is True

    def _execute(self) -> None:
        members = day_alias_members(self.client, self.target)
        writer = [index for index, is_write in members.items() if is_write]
        if writer not in ([self.current.name], [self.next_index]):
            raise Refused(f"{self.target} write index is {writer}, expected {self.current.name}")
        aliases: dict[str, Any] = {self.target: {"is_write_index": False}}
        if self._served():
            aliases[self.names.events_alias] = {}
        create_index(self.client, self.next_index, {"aliases": aliases})
        swap = [
            {"add": {"index": self.current.name, "alias": self.target, "is_write_index": False}},
            {"add": {"index": self.next_index, "alias": self.target, "is_write_index": True}},
        ]
        self.client.indices.update_aliases(body={"actions": swap})

    def _served(self) -> bool:
        """Is the day in the read alias now (read at switch time, not from the snapshot)?"""
        try:
            found = self.client.indices.get_alias(
                name=self.names.events_alias, index=self.current.name
            )
        except NotFoundError:
            return False
        return self.current.name in found

    def apply(self) -> None:
        super().apply()
        switched_at = time.time()
        sealed = sorted(set(day_alias_members(self.client, self.target)) - {self.next_index})
        Reconcile(
            self.client, self.names, self.next_index, sealed, switched_at, self.engine_timeout_s
        ).apply()


class Reconcile(Action):
    """Delete from ``index`` the ids that are also in ``sealed`` (the switch race), once."""

    kind = "reconcile"
    attempts: ClassVar[int] = 5

    def __init__(
        self,
        client: OpenSearch,
        names: Names,
        index: str,
        sealed: list[str],
        switched_at_s: float,
        engine_timeout_s: float,
    ) -> None:
        if not sealed:
            raise ValueError(f"{index} has no sealed predecessor to reconcile against")
        if index in sealed:
            raise ValueError("an index cannot be reconciled against itself")
        super().__init__(client, index)
        self.state_index = names.ilm_state_index
        self.sealed, self.switched_at_s = sorted(sealed), switched_at_s
        self.engine_timeout_s = engine_timeout_s
        self.removed = 0

    def describe(self) -> str:
        return f"drop ids also in {', '.join(self.sealed)}"

    def done(self) -> bool:
        return bool(self.client.exists(index=self.state_index, id=marker_id(self.target)))

    def _execute(self) -> None:
        due = self.switched_at_s + self.engine_timeout_s
        time.sleep(max(0.0, due - time.time()))  # every bulk begun before the switch has ended
        self.client.indices.refresh(index=",".join([self.target, *self.sealed]))
        for chunk in _chunks(self._candidates(), CHUNK):
            dupes = self._in_sealed(chunk)
            if dupes:
                self._delete(dupes)
        self.client.index(
            index=self.state_index,
            id=marker_id(self.target),
            body={
                "kind": "reconciled",
                "index": self.target,
                "at": now_ms(),
                "removed": self.removed,
            },
            refresh=True,
        )
        if self.removed:
            log.info(
                "reconcile removed duplicates",
                extra={"index": self.target, "removed": self.removed},
            )

    def _candidates(self) -> Iterator[str]:
        """Ids written early enough to have raced the switch. ``ingested_at`` is stamped by the
        indexer before its sealed check; twice the engine timeout covers clock skew."""
        until_ms = int((self.switched_at_s + 2 * self.engine_timeout_s) * 1000)
        query = {"query": {"range": {"ingested_at": {"lte": until_ms}}}, "_source": False}
        for hit in helpers.scan(self.client, index=self.target, query=query, size=CHUNK):
            yield str(hit["_id"])

    def _in_sealed(self, ids: list[str]) -> list[str]:
        docs = [{"_index": index, "_id": doc_id} for index in self.sealed for doc_id in ids]
        found = self.client.mget(body={"docs": docs}, _source=False)["docs"]
        return sorted({d["_id"] for d in found if d.get("found")})

    def _delete(self, ids: list[str]) -> None:
        body = [{"delete": {"_index": self.target, "_id": doc_id}} for doc_id in ids]
        result = self.client.bulk(body=body, refresh=True)
        # 404: already gone (a previous attempt), which is the outcome we want.
        failed = [i for i in result["items"] if i["delete"].get("status") not in (200, 404)]
        if failed:
            raise Refused(f"reconcile of {self.target} could not delete {len(failed)} duplicates")
        self.removed += len(ids)


def _chunks(items: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
