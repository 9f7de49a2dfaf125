"""The run lease: renewed while a run works, and a run that cannot renew it stops writing.

A stalled run (its renewals fail: a network partition from the Table, a paused VM) must stop before
its lease ends, because then another run may take the pipeline over. Every lake request carries a
deadline before the lease's end, so such a run's writes end in time, and the next run recovers.

Each case runs twice: ``pinned`` (plain events from a fixed first position) and ``defaults`` (the
product's defaults: ``updateLookup``, pre-images ``whenAvailable``, ``START_AT=now``). Under the
defaults the stalled run's batch holds events of two one-minute windows; every document changes
before the next run replays it.
"""

from __future__ import annotations

import threading
import time

import pytest

from shared import runlease
from shared.checkpoint import CheckpointStore
from shared.errors import TransientError

from .harness import (DEFAULTS, MODES, ONE_MINUTE_WINDOWS, assert_in_their_windows, change_documents,
                      pipeline_in_mode, wait_for_the_next_window)


class _NoRenewals(CheckpointStore):
    def renew(self, until: float) -> None:
        raise TransientError("renewing the pipeline lease: injected: the table cannot be reached")


@pytest.mark.parametrize("mode", MODES)
def test_a_run_that_cannot_renew_its_lease_stops_writing(make_pipeline, emulator_control, monkeypatch, mode):
    across = ONE_MINUTE_WINDOWS if mode == DEFAULTS else {}
    pipeline = pipeline_in_mode(make_pipeline, mode, collections=("items",), scope="collection", **across)
    monkeypatch.setattr(runlease, "RUN_LEASE_SECONDS", 9.0)
    monkeypatch.setattr(runlease, "RENEW_EVERY_SECONDS", 1.0)
    pipeline.collection().insert_many([{"i": i} for i in range(3)])
    if across:
        pipeline.collection().update_many({}, {"$set": {"u": 1}})
        wait_for_the_next_window()
        pipeline.collection().insert_many([{"i": i} for i in range(3, 6)])
    # the first append hangs (longer than the lease): the run must give up on it, not outlive its lease
    emulator_control.add_fault(op="append", filesystem=pipeline.filesystem, action="delay", delay_seconds=15)
    started = time.time()
    report = pipeline.drain_in_process(store=_NoRenewals(pipeline.settings()))
    assert report.outcome == "failed" and report.error["kind"] == "transient", report
    assert "lease" in report.error["message"]
    assert time.time() - started < 9.0 + 2.0  # its requests ended before its lease did
    checkpoint = pipeline.checkpoint()
    assert checkpoint.seq == 0 and checkpoint.intent is not None  # it moved nothing; the next run recovers
    if across:
        windows = {path.rsplit("/part-", 1)[1][:14] for path in checkpoint.intent.files}
        assert len(windows) >= 2, f"the stalled run's batch did not span two windows: {checkpoint.intent.files}"
    change_documents(pipeline, ["items"])
    time.sleep(6)  # the hung append lands now, after the lease: the next run must not be fooled by it
    results = pipeline.drain_until_caught_up()
    assert results[-1].outcome == "caught_up"
    pipeline.assert_position_safe()
    lines = pipeline.assert_exactly_once()
    if across:
        assert_in_their_windows(lines)
    pipeline.assert_lake_verifies()


@pytest.mark.parametrize("mode", MODES)
def test_a_long_run_renews_its_lease(make_pipeline, monkeypatch, mode):
    """A run working longer than its lease keeps it: nobody can take the pipeline over meanwhile.
    The documents it reads change while it reads them (updates looked up under the defaults)."""
    pipeline = pipeline_in_mode(make_pipeline, mode, collections=("items",), scope="collection",
                                DRAIN_BUDGET_SECONDS="20")
    monkeypatch.setattr(runlease, "RUN_LEASE_SECONDS", 10.0)
    monkeypatch.setattr(runlease, "RENEW_EVERY_SECONDS", 1.0)
    coll = pipeline.collection()
    seen = []

    class Watching(CheckpointStore):
        def renew(self, until: float) -> None:
            super().renew(until)
            seen.append(until)

    stop = threading.Event()

    def writer():  # a steady stream, so the run reads until its budget ends
        i = 0
        while not stop.wait(0.05):
            coll.insert_one({"_id": i, "at": time.time()})
            if i >= 5:  # and documents that change after their insert was written
                coll.update_one({"_id": i - 5}, {"$set": {"changed": time.time()}})
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = pipeline.drain_in_process(store=Watching(pipeline.settings()))
    finally:
        stop.set()
        thread.join()
    assert report.outcome == "budget" and report.error is None, report
    assert len(seen) >= 5 and seen == sorted(seen)
    assert pipeline.checkpoint().lease_until == 0.0  # released with the final commit
    pipeline.assert_position_safe()
    pipeline.drain_until_caught_up()
    pipeline.assert_exactly_once()
