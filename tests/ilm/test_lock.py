"""The manager lock: one holder; an expired lease is taken over by compare-and-set."""

from __future__ import annotations

import time

import pytest
from opensearchpy import OpenSearch

from ilm.lock import LockLost, ManagerLock, ensure_state_index
from pulse.naming import Names


def test_only_one_holder_until_release(os_client: OpenSearch, names: Names) -> None:
    ensure_state_index(os_client, names.ilm_state_index)
    a = ManagerLock(os_client, names.ilm_state_index, "a", ttl_s=60)
    b = ManagerLock(os_client, names.ilm_state_index, "b", ttl_s=60)
    assert a.acquire()
    assert not b.acquire()
    a.renew()
    assert a.acquire()  # re-entrant for its owner
    a.release()
    assert b.acquire()
    with pytest.raises(LockLost):
        a.renew()


def test_expired_lease_is_taken_over_once(os_client: OpenSearch, names: Names) -> None:
    ensure_state_index(os_client, names.ilm_state_index)
    crashed = ManagerLock(os_client, names.ilm_state_index, "crashed", ttl_s=0.05)
    assert crashed.acquire()
    time.sleep(0.1)
    lease = crashed.current()
    assert lease is not None
    b = ManagerLock(os_client, names.ilm_state_index, "b", ttl_s=60)
    c = ManagerLock(os_client, names.ilm_state_index, "c", ttl_s=60)
    assert b.acquire()
    # c read the same expired lease: its compare-and-set on that version must lose.
    assert not c._cas(lease)
    assert not c.acquire()
    crashed.release()  # not the holder any more: a no-op
    assert b.current() is not None and b.current().owner == "b"  # type: ignore[union-attr]
