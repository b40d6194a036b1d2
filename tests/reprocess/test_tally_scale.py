"""The tally at many merchants (docs/decisions/0133): batch documents of bounded size, counted
exactly once across a crash between a batch document and the checkpoint that commits it, and
a verification that finds one event missing for one merchant among thousands."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from opensearchpy import OpenSearch

from ingest.loadgen import Generator, LoadSpec
from pulse.naming import Names
from reprocess import runs, service, tallies, verify
from reprocess.generations import day_start_ms
from reprocess.plan import Plan
from reprocess.service import Context, Resume
from reprocess.tally import Tally
from reprocess.verify import Expected
from storage import reprocess_index as store
from tests.reprocess.conftest import DAYS, live_write, oracle, reprocess, send

MERCHANTS = 2500
PER_DAY = 2500  # events per day, spread evenly over the merchants (zipf exponent 0)
BATCH = 250  # replay batch: one checkpoint, one tally batch document
ROW_BYTES = 64  # a row as JSON: a merchant id and four integers
RUN_DOC_BYTES = 32 * 1024
CRASH_AT_WRITE = 4


def test_many_merchants_tally_in_bounded_batches_once_and_verify_per_merchant(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _many_merchants()
    live_write(ctx.client, ctx.settings, ctx.names, events, send(ctx.settings, ctx.names, events))
    ctx.settings = ctx.settings.model_copy(update={"reprocess_batch_docs": BATCH})
    expected = oracle(events, DAYS)
    rows = sum(len(merchants) for merchants in expected.days.values())
    assert rows > 8 * BATCH  # far more rows than one batch document may hold
    assert len(orjson.dumps(expected.days)) > RUN_DOC_BYTES  # and too many for the run state

    # 1. Killed after a batch document is written, before the checkpoint that commits it.
    writes = 0
    real_write = tallies.Recorder._write

    def write_then_die(self: tallies.Recorder, tally: Tally) -> None:
        nonlocal writes
        real_write(self, tally)
        writes += 1
        if writes == CRASH_AT_WRITE:
            raise KeyboardInterrupt("killed between a batch document and its checkpoint")

    monkeypatch.setattr(tallies.Recorder, "_write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        reprocess(ctx).apply()
    monkeypatch.undo()

    # 2. Resumed; one raw document of the new generation is lost before verification.
    victim: dict[str, str] = {}
    real_verify = verify.verify

    def verify_after_a_loss(
        client: OpenSearch, names: Names, plan: Plan, read: Expected
    ) -> dict[str, Any]:
        victim.update(_delete_one(client, plan))
        return real_verify(client, names, plan, read)

    monkeypatch.setattr(service, "verify", verify_after_a_loss)
    run = Resume(ctx).apply()

    assert run.phase == runs.FAILED, run.report
    report = run.report["verify"]
    assert report["mismatches"] == 1, report["mismatch_sample"]
    [row] = report["mismatch_sample"]
    assert (row["day"], row["merchant"]) == (victim["day"], victim["merchant"])
    assert row["a"][0] == row["b"][0] + 1  # read one event more than the generation holds

    # Tallied exactly once: the uncommitted batch document of the crash is left out.
    reader = tallies.Reader(ctx.client, ctx.names, run.run_id)
    assert {d: reader.day_rows(d) for d in expected.days} == expected.days
    assert len(reader.ignored) == 1
    distinct = sum(r[0] for merchants in expected.days.values() for r in merchants.values())
    assert run.stats["tallied"] == distinct

    # Every batch document stays under a bound set by the batch size, not the merchants.
    docs = list(store.scan(ctx.client, ctx.names, {"kind": "tally", "run_id": run.run_id}))
    assert len(docs) >= rows // BATCH
    for doc in docs:
        assert sum(len(merchants) for merchants in doc["rows"].values()) <= BATCH
        assert len(orjson.dumps(doc["rows"])) <= BATCH * ROW_BYTES
    assert len(orjson.dumps(run.to_json())) < RUN_DOC_BYTES


def _many_merchants() -> list[dict[str, Any]]:
    gen = Generator(LoadSpec(merchants=MERCHANTS, zipf_s=0.0, seed=11, duplicate_rate=0.02))
    out: list[dict[str, Any]] = []
    for day in DAYS:
        start = day_start_ms(day)
        out += gen.stream(gen.events(PER_DAY, start, start + 86_400_000))
    return out


def _delete_one(client: OpenSearch, plan: Plan) -> dict[str, str]:
    """Delete one document of the new generation's first day; whose it was."""
    day = plan.days[0]
    client.indices.refresh(index=day.new_index)
    body = {"size": 1, "query": {"match_all": {}}}
    [hit] = client.search(index=day.new_index, body=body)["hits"]["hits"]
    client.delete(index=hit["_index"], id=hit["_id"], refresh=True)
    return {"day": day.day, "merchant": hit["_source"]["merchant_id"]}
