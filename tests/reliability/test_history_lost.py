"""Lost history (code 286): ON_HISTORY_LOST=fail stops loudly and keeps the position;
ON_HISTORY_LOST=restart starts from the server's current time and writes a gap record first.

A private SecantusDB keeps 100 oplog entries (pruned every 1000 writes): 1100 writes after the
stored position push it out of the oplog."""

from __future__ import annotations

import pytest
from bson import Timestamp

from shared.status import pipeline_status


def _lose_history(pipeline) -> None:
    pipeline.collection("filler").insert_many([{"i": i} for i in range(1100)])


def _prepare(pipeline):
    pipeline.collection().insert_many([{"i": i} for i in range(5)])
    first = pipeline.drain()
    assert first.outcome == "caught_up" and first.report["events"] == 5, first.describe()
    # the stored position is now the post-batch token after these 5 events
    _lose_history(pipeline)
    return pipeline.checkpoint()


@pytest.mark.slow
def test_fail_policy_stops_loudly_and_keeps_the_position(make_private_pipeline):
    pipeline = make_private_pipeline(scope="collection", coll="items")
    before = _prepare(pipeline)
    for _ in range(2):  # and again: it does not heal by itself, nor skip silently
        result = pipeline.drain()
        assert result.returncode == 2 and result.outcome == "failed", result.describe()
        assert result.report["error"]["kind"] == "terminal"
        assert "no longer in the oplog (code 286)" in result.report["error"]["message"]
        after = pipeline.checkpoint()
        assert (after.position, after.seq) == (before.position, before.seq)
    status = pipeline_status(pipeline.settings())
    assert "no longer in the oplog" in status["last_error"]["message"]
    assert [d["_seq"] for d in pipeline.lake_lines()] == [1, 2, 3, 4, 5]


@pytest.mark.slow
@pytest.mark.parametrize("kill", [None, "after_restart:1", "after_flush:1", "before_commit:1"])
def test_restart_policy_writes_a_gap_record_then_continues(make_private_pipeline, kill):
    pipeline = make_private_pipeline(scope="collection", coll="items", ON_HISTORY_LOST="restart")
    before = _prepare(pipeline)
    if kill:
        killed = pipeline.drain(failpoint=kill)
        assert killed.killed, killed.describe()
        pipeline.collection().insert_many([{"after": i} for i in range(3)])  # writes in between
        pipeline.expire_lease()
    result = pipeline.drain()
    assert result.outcome == "caught_up", result.describe()
    pipeline.collection().insert_many([{"later": i} for i in range(4)])
    pipeline.drain_until_caught_up()

    lines = pipeline.lake_lines()
    assert [d["_seq"] for d in lines] == list(range(1, len(lines) + 1))
    gaps = [d for d in lines if d["operationType"] == "gap"]
    assert len(gaps) == 1, gaps
    gap = gaps[0]
    assert gap["_seq"] == 6 and gap["gap"]["afterSeq"] == 5 and gap["gap"]["code"] == 286
    assert gap["gap"]["from"] == Timestamp(before.last_cluster_time, 0)
    assert isinstance(gap["gap"]["to"], Timestamp) and gap["gap"]["to"] > gap["gap"]["from"]
    assert gap["ns"] == {"db": pipeline.db, "coll": "items"}
    assert gap["__path"].startswith(f"{pipeline.db}/items/year=")
    # after the gap: exactly the events of an independent read from the restart time
    pipeline.start = gap["gap"]["to"]
    after = [d for d in lines if d["_seq"] > 6]
    from .harness import _key

    assert [_key(d) for d in after] == [_key(e) for e in pipeline.independent_events()]
    assert len(after) == 4 + (3 if kill else 0)
    assert pipeline.checkpoint().gap is None
