"""Overlapping runs: one writer per pipeline at a time, through the lease on the checkpoint row.

Each case runs twice: ``pinned`` (plain events from a fixed first position) and ``defaults`` (the
product's defaults: ``updateLookup``, pre-images ``whenAvailable``, ``START_AT=now``). Where a run
dies or fails and another completes its work, every document changes in between; under the defaults
the dead run's batch holds events of two one-minute windows."""

from __future__ import annotations

import random
import time
from datetime import datetime

import pytest

from shared.runlease import RUN_LEASE_SECONDS

from .harness import (DEFAULTS, MODES, ONE_MINUTE_WINDOWS, assert_in_their_windows, change_documents,
                      pipeline_in_mode, wait_for_the_next_window, write_round)

SMALL = {"ROLL_MAX_BYTES": "8KiB", "MAX_BUFFER_BYTES": "16KiB"}
ROUNDS = 8


def _interval(report: dict) -> tuple[float, float]:
    start = datetime.fromisoformat(report["started_at"].replace("Z", "+00:00")).timestamp()
    return start, start + report["duration_seconds"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_two_drains_started_together(make_pipeline, emulator_control, mode):
    """``ROUNDS`` times: writes, then two drain processes started at once. The first append of each
    round is held for a few seconds (an emulator delay) so the runs overlap; the first round also
    races the creation of the checkpoint row (409 for the loser), and under ``START_AT=now`` the
    first position its winner stores (the first round's writes come before it)."""
    pipeline = pipeline_in_mode(make_pipeline, mode, begin=False, **SMALL)
    rng = random.Random(3)
    skipped = 0
    for _ in range(ROUNDS):
        write_round(pipeline, rng, inserts=10)
        emulator_control.add_fault(op="append", filesystem=pipeline.filesystem, action="delay", delay_seconds=3)
        procs = [pipeline.start_drain(), pipeline.start_drain()]
        results = [pipeline.finish(p) for p in procs]
        for result in results:
            assert result.returncode == 0, result.describe()
        outcomes = sorted(r.outcome for r in results)
        if "skipped" in outcomes:
            skipped += 1
            assert outcomes != ["skipped", "skipped"], "neither run drained"
            loser = next(r for r in results if r.outcome == "skipped")
            assert loser.report["events"] == 0 and loser.report["files"] == 0 and loser.report["commits"] == 0
            assert loser.report["error"]["kind"] == "lease_held"
            assert "leaves without writing" in loser.report["error"]["message"]
        else:
            # both wrote: then one ran after the other, never at the same time
            (a0, a1), (b0, b1) = sorted(_interval(r.report) for r in results)
            assert a1 <= b0, f"two runs wrote at the same time: {[r.report for r in results]}"
        pipeline.assert_exactly_once()
    assert skipped >= ROUNDS // 2, "the runs did not overlap: the test proved nothing"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_dead_runs_lease_blocks_until_it_expires_then_is_taken_over(make_pipeline, mode):
    across = {**ONE_MINUTE_WINDOWS, "MAX_BUFFER_BYTES": "1MiB"} if mode == DEFAULTS else {}
    pipeline = pipeline_in_mode(make_pipeline, mode, **{**SMALL, **across})
    rng = random.Random(5)
    write_round(pipeline, rng, inserts=20)
    if across:
        wait_for_the_next_window()
        write_round(pipeline, rng, inserts=20)
    before = time.time()
    dead = pipeline.drain(failpoint="after_flush:2")
    assert dead.killed
    checkpoint = pipeline.checkpoint()
    seq = pipeline.assert_position_safe()
    if across:
        windows = {path.rsplit("/part-", 1)[1][:14] for path in checkpoint.intent.files}
        assert len(windows) >= 2, f"the dead run's batch did not span two windows: {checkpoint.intent.files}"
    # a short lease (renewed while a run works): a dead run blocks its pipeline for less than a tick
    assert checkpoint.lease_owner and before < checkpoint.lease_until <= time.time() + RUN_LEASE_SECONDS

    blocked = pipeline.drain()
    assert blocked.returncode == 0 and blocked.outcome == "skipped", blocked.describe()
    assert checkpoint.lease_owner in blocked.report["error"]["message"]
    assert pipeline.checkpoint().seq == checkpoint.seq  # the skipped run moved nothing

    change_documents(pipeline)
    assert pipeline.expire_lease()  # the lease's time has passed
    taken = pipeline.drain()
    assert taken.outcome == "caught_up", taken.describe()
    assert taken.report["recovered_files"] >= 1  # it found what the dead run had flushed
    after = pipeline.checkpoint()
    assert after.lease_until == 0.0  # released with the last commit
    pipeline.assert_position_safe(seq)
    lines = pipeline.assert_exactly_once()
    if across:
        assert_in_their_windows(lines)
    pipeline.assert_lake_verifies()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_run_whose_checkpoint_changes_under_it_stops_without_moving_it(make_pipeline, emulator_control, mode):
    """A 412 on the commit: the row's ETag changes while the run holds its first append (as when a
    run's lease is taken over). The run fails (transient) without moving the position; the next run
    completes the work."""
    from azure.data.tables import UpdateMode

    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    write_round(pipeline, random.Random(9), inserts=10)
    pipeline.drain_until_caught_up()  # the row exists
    write_round(pipeline, random.Random(10), inserts=10)
    emulator_control.add_fault(op="append", filesystem=pipeline.filesystem, action="delay", delay_seconds=4)
    proc = pipeline.start_drain()
    table = pipeline.store()._table
    for _ in range(200):  # until the run holds the lease (it wrote the row): then change the row
        row = table.get_entity(pipeline.name, "checkpoint")
        if row["lease_until"] > time.time():
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the run never took the lease")
    seq = int(row["seq"].value if hasattr(row["seq"], "value") else row["seq"])
    table.update_entity({"PartitionKey": pipeline.name, "RowKey": "checkpoint", "touched": 1}, mode=UpdateMode.MERGE)
    result = pipeline.finish(proc)
    assert result.returncode == 1 and result.outcome == "failed", result.describe()
    assert result.report["error"]["kind"] == "transient"
    assert "changed under this run" in result.report["error"]["message"]
    assert pipeline.checkpoint().seq == seq
    pipeline.assert_position_safe(seq)
    change_documents(pipeline)
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


@pytest.mark.parametrize("mode", MODES)
def test_a_run_that_loses_the_race_to_create_the_checkpoint_row_leaves(make_pipeline, mode):
    """A 409 on the first run's create of the checkpoint row: another run created it between this
    run's load and its lease. This run leaves (``skipped``) and writes nothing (under
    ``START_AT=now`` not even a first position)."""
    from shared.checkpoint import CheckpointStore

    pipeline = pipeline_in_mode(make_pipeline, mode, collections=("items",), begin=False, scope="collection")
    pipeline.collection().insert_many([{"i": i} for i in range(3)])
    other = pipeline.store()

    class RacedStore(CheckpointStore):
        def load(self):
            state = super().load()
            assert state.checkpoint is None
            other.acquire(other.load(), "other-run", time.time(), 300)  # the other run wins
            return state

    report = pipeline.drain_in_process(store=RacedStore(pipeline.settings()))
    assert report.outcome == "skipped" and report.error["kind"] == "lease_held", report
    assert "at the same moment" in report.error["message"]
    assert pipeline.lake_files() == {}
    checkpoint = pipeline.checkpoint()
    assert checkpoint.lease_owner == "other-run" and checkpoint.position is None and checkpoint.seq == 0
