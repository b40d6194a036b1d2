"""Source resolution (api.resolve): the split by the rollup state, holds kept out, and the
late-event re-split as a step of resolution (docs/decisions/0230). The engine is a stand-in
answering the state, holds, arrival bounds and the late-event search; the real-engine
behaviour is tests/api/test_seam.py's."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from api import planner, resolve
from api.model import HOUR_MS, Dimension, Granularity, Metric, ResolvedPlan, Source, Versions
from api.sources import Ctx
from pulse.clock import DAY_MS
from pulse.naming import Names
from pulse.settings import Settings
from rollups import state
from storage import arrivals, fx, late_events
from storage import rollup_schema as rs

SETTINGS = Settings(opensearch_url="http://127.0.0.1:9")
DAY = 1_704_067_200_000  # 2024-01-01T00:00Z
W = DAY + 20 * HOUR_MS  # the rollups are complete through 20:00
HELD = DAY + 3 * HOUR_MS
LATE = DAY + 7 * HOUR_MS


class Engine:
    """The rollup state (W, one hold), arrival bounds (``bounds``: none by default, so every
    day is searched), and a raw search finding a late event in ``late``; every call is
    recorded, and the ids each ``mget`` asked for."""

    def __init__(
        self, late: set[int], bounds: dict[str, int] | None = None,
        versions: dict[str, str | None] | None = None,
    ) -> None:  # fmt: skip
        self.late = late
        self.bounds = bounds or {}
        self.versions = versions or {}  # found documents: the rates' version, packs (no seq_no)
        self.calls: list[str] = []
        self.ids: list[list[str]] = []
        self.indices = self
        self.cat = self

    def mget(self, body: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        self.calls.append("mget")
        ids = [entry["_id"] for entry in body["docs"]]
        self.ids.append(ids)
        docs: dict[str, Any] = {
            "rollups.state": {
                "rollups": {"generation": SETTINGS.generation, "schema": rs.SCHEMA_VERSION,
                            "watermark": W}
            },
            "rollups.holds": {"rollups": {"holds": {"r1": {"start": HELD, "end": HELD + 1}}}},
        }  # fmt: skip
        docs |= {key: {"arrivals": {"newest": bound}} for key, bound in self.bounds.items()}
        answers = []
        for entry in body["docs"]:
            i, index = entry["_id"], entry["_index"]
            if i in docs:
                answers.append({"_index": index, "_id": i, "found": True, "_source": docs[i],
                                "_seq_no": 1, "_primary_term": 1})  # fmt: skip
            elif i in self.versions:
                version = self.versions[i]
                answers.append(
                    {"_index": index, "_id": i, "found": True, "_source": {"version": version}}
                )
            else:
                answers.append({"_index": index, "_id": i, "found": False})
        return {"docs": answers}

    def get_alias(self, name: str) -> dict[str, Any]:
        return {f"{name}-all": {}}  # one member without a day: searched for every range

    def aliases(self, name: str, h: str) -> str:  # _cat/aliases, as storage.served reads it
        assert h == "index"
        return f"{name}-all\n"

    def search(self, index: str, body: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        self.calls.append("search")
        # the hours given to rollups: 00:00 to W, less the held 03:00 (inside that span)
        assert body == late_events.hours_body("m1", DAY, W, W)
        buckets = [{"key": h, "doc_count": 1} for h in sorted(self.late)]
        return {"aggregations": {"h": {"buckets": buckets}}}


def plan(
    force_raw: bool = False, currency: str | None = None, group_by: list[Dimension] | None = None
) -> Any:
    p = planner.build_plan(
        "m1", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC),
        [Metric.EVENTS, Metric.GROSS_SALES], granularity=Granularity.DAY,
        now_ms=DAY + 30 * HOUR_MS, force_source=Source.RAW if force_raw else None,
        reporting_currency=currency, group_by=group_by or [],
    )  # fmt: skip
    return planner.time_buckets(p, SETTINGS)


def ctx(engine: Engine) -> Ctx:
    return Ctx(engine, Names(namespace="t"), SETTINGS)  # type: ignore[arg-type]


def rollup_hours(resolved: ResolvedPlan) -> set[int]:
    return resolve.hours_of(resolved.split.rollups)


def assert_partition(resolved: ResolvedPlan) -> None:
    pieces = sorted([*resolved.split.raw, *resolved.split.rollups])
    assert pieces[0][0] == resolved.plan.start_ms and pieces[-1][1] == resolved.plan.end_ms
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))


def test_held_hours_stay_raw_and_late_hours_are_split_again_by_resolution() -> None:
    engine = Engine(late={LATE})
    resolution = resolve.resolve(ctx(engine), plan())
    first = resolution.speculative
    closed = set(range(DAY, W, HOUR_MS))
    assert rollup_hours(first) == closed - {HELD} and first.held == {HELD}
    assert first.split.watermark_ms == W and first.late == frozenset()
    settled = resolution.settle()
    assert rollup_hours(settled) == closed - {HELD, LATE}
    assert settled.late == {LATE} and settled.held == {HELD} and settled.split.watermark_ms == W
    assert settled.plan is first.plan  # the plan is not made again, only the split
    for resolved in (first, settled):
        assert_partition(resolved)
    # state, holds, the day's arrival bound and its pack's version in one read, then the search
    assert engine.calls == ["mget", "search"]
    pack = rs.pack_id("m1", DAY)
    assert engine.ids == [["rollups.state", "rollups.holds", arrivals.doc_id(DAY // DAY_MS), pack]]
    index = rs.index_for(Names(namespace="t"), SETTINGS.generation, DAY)
    assert first.versions == settled.versions == Versions(((index, pack, False, -1, -1),), None)


def test_the_rates_version_and_the_packs_versions_come_with_the_state() -> None:
    """Decision 0260: a converting report asks for the rates' version in the state's read;
    a grouped one reads no packs, so asks for no pack versions; raw reads neither."""
    engine = Engine(late=set(), versions={fx.VERSION_ID: "v1"})
    resolved = resolve.resolve(ctx(engine), plan(currency="EUR")).settle()
    assert len(engine.ids) == 1 and engine.ids[0][-1] == fx.VERSION_ID  # one read
    assert resolved.versions.rates == "v1" and resolved.versions.packs is not None
    assert len(resolved.versions.packs) == 1
    grouped = Engine(late=set())
    resolved = resolve.resolve(ctx(grouped), plan(group_by=[Dimension.CHANNEL])).settle()
    assert grouped.ids == [["rollups.state", "rollups.holds", arrivals.doc_id(DAY // DAY_MS)]]
    assert resolved.versions == Versions(None, None)
    unversioned = Engine(late=set(), versions={rs.pack_id("m1", DAY): None})
    resolved = resolve.resolve(ctx(unversioned), plan(currency="EUR")).settle()
    assert resolved.versions == Versions(None, None)  # a found pack without a seq_no: no key


def test_days_settled_at_w_are_not_searched_and_nothing_runs_aside() -> None:
    """A day whose arrival bound is <= W received nothing after W (decision 0048): read with
    the state, it leaves no late-event search, not even one started in the background."""
    engine = Engine(late={LATE}, bounds={arrivals.doc_id(DAY // DAY_MS): W})
    resolution = resolve.resolve(ctx(engine), plan())
    assert resolution.late.done() and resolution.settle() is resolution.speculative
    assert engine.calls == ["mget"]
    raised = Engine(late={LATE}, bounds={arrivals.doc_id(DAY // DAY_MS): W + 1})
    assert resolve.resolve(ctx(raised), plan()).settle().late == {LATE}
    assert raised.calls == ["mget", "search"]


def test_nothing_late_keeps_the_speculative_plan() -> None:
    resolution = resolve.resolve(ctx(Engine(late=set())), plan())
    assert resolution.settle() is resolution.speculative  # the service then reads once


def test_force_raw_reads_no_state() -> None:
    engine = Engine(late={LATE})
    resolved = resolve.resolve(ctx(engine), plan(force_raw=True)).settle()
    assert resolved.split.raw == ((DAY, DAY + 24 * HOUR_MS),) and not resolved.split.rollups
    assert engine.calls == []


def test_only_hours_of_days_not_settled_at_w_are_searched() -> None:
    hours = {DAY + i * HOUR_MS for i in range(48)}
    first, second = DAY // DAY_MS, DAY // DAY_MS + 1
    assert state.unsettled(hours, {first: W}, W) == {h for h in hours if h >= DAY + DAY_MS}
    assert state.unsettled(hours, {first: W + 1, second: W}, W) == hours - {
        h for h in hours if h >= DAY + DAY_MS
    }
    assert state.unsettled(hours, {}, W) == hours  # no bound: never settled
    assert state.unsettled(hours, {first: W, second: W - 5}, W) == set()
