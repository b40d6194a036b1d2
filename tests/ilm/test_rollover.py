"""Rollover under live writes, and the reconcile step that closes the switch race."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime

from opensearchpy import OpenSearch, helpers

from ilm.manager import apply, plan
from pulse.naming import Names
from pulse.settings import Settings
from storage.templates import day_alias_members, ensure_templates, sealed_indices, write_target
from tests.ilm.conftest import bulk_write, raw_doc


class Writer(threading.Thread):
    """An indexer in miniature: per batch, resolve the write target, skip ids already in the
    day's sealed indices (mget), bulk the rest. Some ids are replays of earlier batches."""

    def __init__(self, client: OpenSearch, names: Names, batches: int) -> None:
        super().__init__(daemon=True)
        self.client, self.names, self.batches = client, names, batches
        self.day = datetime.now(tz=UTC).date()
        self.written: set[str] = set()
        self.failures: list[object] = []
        self.rng = random.Random(4)

    def run(self) -> None:
        try:
            for batch in range(self.batches):
                ids = [f"b{batch}-{i}" for i in range(6)]
                ids += self.rng.sample(sorted(self.written), min(3, len(self.written)))
                self.write(ids)
        except Exception as exc:  # surfaced by the test
            self.failures.append(exc)

    def write(self, ids: list[str]) -> None:
        now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)  # stamped before the check
        target = write_target(self.client, self.names, "g1", self.day)
        sealed = sealed_indices(self.client, self.names, "g1", self.day)
        if sealed:
            docs = [{"_index": s, "_id": i} for s in sealed for i in ids]
            found = self.client.mget(body={"docs": docs}, _source=False)["docs"]
            ids = [i for i in ids if i not in {d["_id"] for d in found if d.get("found")}]
        time.sleep(0.03)  # a slow indexer: a switch often lands between check and write
        actions = [
            {"_index": target, "_id": i, "_source": raw_doc(i, self.day, now_ms)} for i in ids
        ]
        _, errors = helpers.bulk(self.client, actions, raise_on_error=False, refresh=True)
        self.failures.extend(errors)
        self.written.update(ids)


class WriteIndexWatcher(threading.Thread):
    """Samples the day alias: exactly one write index at every look."""

    def __init__(self, client: OpenSearch, alias: str) -> None:
        super().__init__(daemon=True)
        self.client, self.alias = client, alias
        self.stop = threading.Event()
        self.samples = 0
        self.violations: list[dict[str, bool]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            members = day_alias_members(self.client, self.alias)
            if members and sum(members.values()) != 1:
                self.violations.append(members)
            self.samples += 1


def test_rollover_under_live_writes(
    os_client: OpenSearch, ilm_settings: Settings, names: Names
) -> None:
    settings = ilm_settings.model_copy(update={"ilm_rollover_max_docs": 30})
    ensure_templates(os_client, settings, names)
    writer = Writer(os_client, names, batches=40)
    alias = write_target(os_client, names, "g1", writer.day)
    watcher = WriteIndexWatcher(os_client, alias)
    watcher.start()
    writer.start()
    while writer.is_alive():
        apply(os_client, settings, names, plugins=[])
    writer.join()
    apply(os_client, settings, names, plugins=[])  # reconcile whatever the last switch left
    watcher.stop.set()
    watcher.join()

    assert writer.failures == []
    assert watcher.violations == [] and watcher.samples > 0
    backing = day_alias_members(os_client, alias)
    assert len(backing) >= 3, backing  # it really rolled over, more than once
    os_client.indices.refresh(index=names.events_alias)
    query = {"query": {"range": {"occurred_at": {"gte": writer.day.isoformat()}}}}
    hits = list(helpers.scan(os_client, index=names.events_alias, query=query, _source=False))
    served = [h["_id"] for h in hits]
    assert len(served) == len(set(served)), "a document is duplicated across backing indices"
    assert set(served) == writer.written


def test_reconcile_removes_ids_that_raced_the_switch(
    os_client: OpenSearch, ilm_settings: Settings, names: Names
) -> None:
    ensure_templates(os_client, ilm_settings, names)
    day = datetime.now(tz=UTC).date()
    alias = write_target(os_client, names, "g1", day)
    bulk_write(os_client, alias, [(i, raw_doc(i, day)) for i in ("a", "b", "c")])
    first, second = (names.raw_backing_index("g1", day, n) for n in (1, 2))
    # A switch done elsewhere (an ISM rollover, or a manager that died before reconciling).
    os_client.indices.create(index=second, body={"aliases": {names.events_alias: {}}})
    swap = [
        {"add": {"index": first, "alias": alias, "is_write_index": False}},
        {"add": {"index": second, "alias": alias, "is_write_index": True}},
    ]
    os_client.indices.update_aliases(body={"actions": swap})
    # "b" was checked against the sealed indices before the switch and written after it.
    now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
    bulk_write(os_client, alias, [(i, raw_doc(i, day, now_ms)) for i in ("b", "d")])
    assert os_client.count(index=names.events_alias)["count"] == 5

    planned = [a.dry_run() for a in plan(os_client, ilm_settings, names, plugins=[]).actions]
    assert any(line.startswith("reconcile") and second in line for line in planned), planned
    apply(os_client, ilm_settings, names, plugins=[])

    os_client.indices.refresh(index=names.events_alias)
    assert os_client.count(index=names.events_alias)["count"] == 4
    assert os_client.exists(index=first, id="b") and not os_client.exists(index=second, id="b")
    assert os_client.exists(index=second, id="d")
    again = [a.dry_run() for a in plan(os_client, ilm_settings, names, plugins=[]).actions]
    assert not any(line.startswith("reconcile") for line in again)
