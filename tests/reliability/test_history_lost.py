"""Lost history (code 286): ON_HISTORY_LOST=fail stops loudly and keeps the position;
ON_HISTORY_LOST=restart starts from the server's current time and writes a gap record first.

A private SecantusDB keeps 100 oplog entries (pruned every 1000 writes): 1100 writes after the
stored position push it out of the oplog.

Each case runs twice: ``pinned`` (plain events from a fixed first position) and ``defaults`` (the
product's defaults: ``updateLookup``, pre-images ``whenAvailable``, ``START_AT=now``). Between a
killed run and its replay documents are written and changed; under the defaults one case's replay
writes in the one-minute window after the killed run's."""

from __future__ import annotations

import pytest
from bson import Timestamp

from shared.status import pipeline_status

from .harness import (DEFAULTS, MODES, ONE_MINUTE_WINDOWS, assert_in_their_windows, _key, change_documents,
                      lose_history, pipeline_in_mode, wait_for_the_next_window, windows_of)


def _prepare(pipeline):
    pipeline.collection().insert_many([{"i": i} for i in range(5)])
    first = pipeline.drain()
    assert first.outcome == "caught_up" and first.report["events"] == 5, first.describe()
    # the stored position is now the post-batch token after these 5 events
    lose_history(pipeline)
    return pipeline.checkpoint()


def _pipeline(make_private_pipeline, mode, **settings):
    return pipeline_in_mode(make_private_pipeline, mode, collections=("items",), scope="collection", coll="items",
                            **settings)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_fail_policy_stops_loudly_and_keeps_the_position(make_private_pipeline, mode):
    pipeline = _pipeline(make_private_pipeline, mode)
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
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kill", [None, "after_restart:1", "after_flush:1", "before_commit:1"])
def test_restart_policy_writes_a_gap_record_then_continues(make_private_pipeline, kill, mode):
    across = ONE_MINUTE_WINDOWS if mode == DEFAULTS and kill == "before_commit:1" else {}
    pipeline = _pipeline(make_private_pipeline, mode, ON_HISTORY_LOST="restart", **across)
    before = _prepare(pipeline)
    between = 0
    if kill:
        killed = pipeline.drain(failpoint=kill)
        assert killed.killed, killed.describe()
        seq = pipeline.assert_position_safe(before.seq)
        if across:
            wait_for_the_next_window()
        pipeline.collection().insert_many([{"after": i} for i in range(3)])  # writes in between
        change_documents(pipeline, ["items"])  # and every document changes
        between = 3 + 8
        pipeline.expire_lease()
    result = pipeline.drain()
    assert result.outcome == "caught_up", result.describe()
    if kill:
        pipeline.assert_position_safe(seq)
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
    assert [_key(d) for d in after] == [_key(e) for e in pipeline.independent_events()]
    assert len(after) == 4 + between
    assert pipeline.checkpoint().gap is None
    if across:
        assert windows_of([gap]) != windows_of(after[:1]), "the replay wrote in the killed run's window"
        assert_in_their_windows(lines)
    pipeline.assert_lake_verifies()
