"""Positions fetched by offset: close positions are read as one stretch, far ones seeked."""

from __future__ import annotations

from reprocess.late import MAX_GAP, runs_of


def test_close_positions_share_a_stretch_and_far_ones_do_not() -> None:
    offsets = [4, 5, 6, 14, 14 + MAX_GAP, 15 + 2 * MAX_GAP + 1, 900]
    assert list(runs_of(offsets)) == [(4, 6), (14, 14), (46, 46), (80, 80), (900, 900)]
    assert list(runs_of(offsets, MAX_GAP)) == [(4, 46), (80, 80), (900, 900)]
    assert list(runs_of([], MAX_GAP)) == []
