"""The first-copy check's request body (storage/copies.py): the object orjson writes for the
same pairs, whatever the ids hold (decision 0280 builds it from per-index pieces)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from storage.copies import mget_body

ids = st.lists(st.text(max_size=8), max_size=4)
groups = st.lists(st.tuples(st.text(min_size=1, max_size=8), ids), max_size=4)


@given(groups)
def test_the_body_is_what_orjson_writes_for_every_pair_in_order(
    asked: list[tuple[str, list[str]]],
) -> None:
    docs = [{"_index": index, "_id": doc_id} for index, group in asked for doc_id in group]
    expected = orjson.dumps({"docs": docs}) if docs else None
    assert mget_body(asked) == expected


def test_ids_needing_escapes_stay_json() -> None:
    body = mget_body([("raw-2026.11.30", ['a"b', "c\\", "é\u2028", "\x00"]), ("x", [])])
    assert body is not None
    assert [d["_id"] for d in orjson.loads(body)["docs"]] == ['a"b', "c\\", "é\u2028", "\x00"]
