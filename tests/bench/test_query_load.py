"""bench.query loads an empty namespace, reuses a full one and refuses a partial one."""

from __future__ import annotations

import pytest

from bench.query import to_load


def test_an_empty_namespace_is_loaded_and_a_full_one_reused() -> None:
    assert to_load(0, 1000, "benchq") is True
    assert to_load(1000, 1000, "benchq") is False
    assert to_load(5000, 1000, "benchq") is False


def test_a_partial_namespace_is_refused_with_what_to_do() -> None:
    with pytest.raises(
        SystemExit, match=r"holds 400 raw events, fewer than --events 1000.*benchq\*"
    ):
        to_load(400, 1000, "benchq")
