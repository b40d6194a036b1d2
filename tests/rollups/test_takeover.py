"""Three real `pulse rollups` processes share the shards; one is killed with SIGKILL in the
middle of its run and the other two finish its shards once its leases run out.

The test has an osmem-server of its own: its short leases and 1 s runs should not compete
with whatever the rest of the session left in the shared engine. The workers run without a
visibility margin, so the test pauses them (SIGSTOP) while it writes its events: a W taken
before the pause is below the events' ``ingested_at``, and the events are searchable before
any worker runs again. Session 6's CI stalls were that write outlasting its stamp (3 s ahead,
no pause) under full-suite load: W passed the events before they were visible, which the
product rightly never revisits (decision 0030). Under a load average of 15-20 the write alone
took over 9 s; paused workers make the test independent of that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from pulse.clients import opensearch_client
from pulse.engines import ENGINE_GRACE_S, Engine, start_opensearch
from pulse.naming import Names
from pulse.settings import Settings
from rollups import shards, state
from rollups.shards import Shard, shard_of
from storage import rollup_schema as rs
from tests.rollups.helpers import HOUR, assert_matches_oracle, make_events, write_raw

SHARDS = 6
# The lease: the workers take over a dead one's shards this long after it died. At 3 s, a
# load average of 12-20 on 2 cores let leases lapse between renewals and shards move mid-run.
TTL_S = 10


def env(settings: Settings) -> dict[str, str]:
    assert settings.opensearch_url
    return {
        **os.environ,
        "PULSE_OPENSEARCH_URL": settings.opensearch_url,
        "PULSE_NAMESPACE": settings.namespace,
        "PULSE_STATE_DIR": settings.state_dir,
        "PULSE_LOG_JSON": "false",
        "PULSE_ROLLUP_INTERVAL_S": "1",
        "PULSE_ROLLUP_VISIBILITY_MARGIN_S": "0",
        "PULSE_ROLLUP_SHARDS": str(SHARDS),
        "PULSE_ROLLUP_LEASE_TTL_S": str(TTL_S),
        "PULSE_ROLLUP_PAIRS_PER_QUERY": "1",  # many small chunks: a run lasts a few seconds
    }


@pytest.fixture(scope="module")
def own_engine() -> Iterator[Engine]:
    """An osmem-server for this module alone (stopped after it)."""
    engine = start_opensearch()
    yield engine
    engine.stop(ENGINE_GRACE_S)


@pytest.fixture
def tsettings(rsettings: Settings, own_engine: Engine) -> Settings:
    return rsettings.model_copy(update={"opensearch_url": own_engine.address})


@pytest.fixture
def client(tsettings: Settings) -> OpenSearch:
    assert tsettings.opensearch_url
    return opensearch_client(tsettings.opensearch_url)


@pytest.fixture
def workers(tsettings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    cmd = [sys.executable, "-m", "pulsectl.cli", "rollups"]
    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
    procs = []
    for log in logs:
        with log.open("wb") as sink:  # the child keeps its own descriptor
            procs.append(subprocess.Popen(cmd, env=env(tsettings), stderr=sink))
    yield procs
    for proc in procs:  # only the processes this test started, by their own handles
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # in case the test failed while they were paused
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for proc, log in zip(procs, logs, strict=True):  # pytest shows this only when the test fails
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print(f"--- worker pid {proc.pid} (exit {proc.returncode}), last stderr lines:")
        print("\n".join(tail))


def wait_for(what: str, ready: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def live(client: OpenSearch, names: Names) -> dict[int, Shard]:
    now = time.time() * 1000
    docs = shards.read_all(client, names, SHARDS)
    return {i: d for i, d in docs.items() if d.cas is not None and d.expires_at() > now}


def pid_of(owner: str | None) -> int:
    assert owner is not None
    return int(owner.split("-")[-2])  # rollups.job.default_owner: host-pid-random


def test_a_worker_killed_mid_run_has_its_shards_finished_by_the_others(
    tsettings: Settings,
    names: Names,
    client: OpenSearch,
    base_ms: int,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    def balanced() -> bool:
        held = live(client, names)
        owners = [d.owner() for d in held.values()]
        return len(held) == SHARDS and sorted(owners.count(o) for o in set(owners)) == [2, 2, 2]

    by_pid = {p.pid: p for p in workers}
    started = time.monotonic()
    wait_for("the three workers hold two shards each", balanced)
    print(f"balanced after {time.monotonic() - started:.1f} s")
    assert {pid_of(d.owner()) for d in live(client, names).values()} == set(by_pid)

    events = make_events(41, 1500, base_ms + 6 * HOUR, base_ms + 18 * HOUR, merchants=12)
    # Paused, no worker can take a W while the events are being written: the ones taken
    # before are below `ingested`, and the events are searchable when the workers resume.
    for proc in workers:
        proc.send_signal(signal.SIGSTOP)
    ingested = int(time.time() * 1000) + 1  # after every W taken before the pause
    write_raw(client, tsettings, names, events, ingested)
    for proc in workers:
        proc.send_signal(signal.SIGCONT)
    # A pause longer than a lease lets the first worker to wake take the others' shards:
    # choose the victim from the shares held once they are back to two each.
    wait_for("the three workers hold two shards each again", balanced)

    pairs: dict[int, set[tuple[str, int]]] = {}
    for e in events:
        pairs.setdefault(shard_of(e.merchant_id, SHARDS), set()).add(
            (e.merchant_id, rs.hour_start(e.occurred_at_ms))
        )
    owners = {i: d.owner() for i, d in live(client, names).items()}
    # The victim: the worker with the most pairs to do, so its run lasts longest.
    victim = max(
        set(owners.values()),
        key=lambda o: sum(len(pairs.get(i, ())) for i, w in owners.items() if w == o),
    )
    theirs = sorted(i for i, o in owners.items() if o == victim)
    their_merchants = sorted({m for i in theirs for m, _ in pairs.get(i, ())})

    def started_writing() -> bool:
        client.indices.refresh(index=names.rollups_pattern, allow_no_indices=True)
        query = {"terms": {rs.MERCHANT: their_merchants}}
        found = client.count(index=names.rollups_alias, body={"query": query})
        return int(found["count"]) > 0

    wait_for("the victim has written part of its shards", started_writing, timeout_s=120)
    os.kill(pid_of(victim), signal.SIGKILL)
    assert by_pid[pid_of(victim)].wait(10) == -signal.SIGKILL
    killed_at = shards.read_all(client, names, SHARDS)
    # The victim's shards when it died: under load a lease can lapse mid-run and its shard
    # move to another worker before the kill (fencing at work), so not always all of `theirs`.
    unfinished = [
        i
        for i, doc in killed_at.items()
        if doc.owner() == victim and (doc.watermark(tsettings.generation) or 0) < ingested
    ]
    assert unfinished, "the victim finished before it was killed: not a mid-run kill"

    def served() -> bool:
        w = state.watermark(client, names)
        return w is not None and w >= ingested

    wait_for("the survivors finished the victim's shards", served, timeout_s=90)

    after = shards.read_all(client, names, SHARDS)
    for i in unfinished:
        assert after[i].owner() != victim and after[i].epoch() > killed_at[i].epoch()
        assert (after[i].watermark(tsettings.generation) or 0) >= ingested
    assert all(p.poll() is None for p in workers if p.pid != pid_of(victim))
    assert_matches_oracle(client, names, events)
