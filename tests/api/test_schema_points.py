"""Served bucket starts (api.schema._start) serialize exactly as ``iso(ms, tz).isoformat()``:
they carry their ISO text so the DateTime scalar does not look the zone's offset up again."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from api.schema import _start
from api.timebuckets import iso, zone

ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe",
         "Europe/Berlin", "Pacific/Chatham")  # fmt: skip
# 1970 .. 2100, on whole minutes as buckets are, and off them (the text must not care)
INSTANTS = st.integers(min_value=0, max_value=4_102_444_800_000)


@settings(max_examples=300, deadline=None)
@given(ms=INSTANTS, name=st.sampled_from(ZONES), minute=st.booleans())
def test_the_text_is_isoformat_of_the_same_instant(ms: int, name: str, minute: bool) -> None:
    ms = ms - ms % 60_000 if minute else ms
    tz = zone(name)
    expected = iso(ms, tz)
    served = _start(ms, tz)
    assert served.isoformat() == expected.isoformat()
    assert served == expected and served.utcoffset() == expected.utcoffset()
    assert served.isoformat(" ") == expected.isoformat(" ")  # other forms are datetime's own
