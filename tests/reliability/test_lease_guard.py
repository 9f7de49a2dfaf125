"""The run lease: renewed while a run works, and a run that cannot renew it stops writing.

A stalled run (its renewals fail: a network partition from the Table, a paused VM) must stop before
its lease ends, because then another run may take the pipeline over. Every lake request carries a
deadline before the lease's end, so such a run's writes end in time, and the next run recovers.
"""

from __future__ import annotations

import threading
import time

from shared import runlease
from shared.checkpoint import CheckpointStore
from shared.errors import TransientError


class _NoRenewals(CheckpointStore):
    def renew(self, until: float) -> None:
        raise TransientError("renewing the pipeline lease: injected: the table cannot be reached")


def test_a_run_that_cannot_renew_its_lease_stops_writing(make_pipeline, emulator_control, monkeypatch):
    monkeypatch.setattr(runlease, "RUN_LEASE_SECONDS", 9.0)
    monkeypatch.setattr(runlease, "RENEW_EVERY_SECONDS", 1.0)
    pipeline = make_pipeline(scope="collection")
    pipeline.collection().insert_many([{"i": i} for i in range(3)])
    # the first append hangs (longer than the lease): the run must give up on it, not outlive its lease
    emulator_control.add_fault(op="append", filesystem=pipeline.filesystem, action="delay", delay_seconds=15)
    started = time.time()
    report = pipeline.drain_in_process(store=_NoRenewals(pipeline.settings()))
    assert report.outcome == "failed" and report.error["kind"] == "transient", report
    assert "lease" in report.error["message"]
    assert time.time() - started < 9.0 + 2.0  # its requests ended before its lease did
    time.sleep(6)  # the hung append lands now, after the lease: the next run must not be fooled by it
    results = pipeline.drain_until_caught_up()
    assert results[-1].outcome == "caught_up"
    pipeline.assert_exactly_once()


def test_a_long_run_renews_its_lease(make_pipeline, monkeypatch):
    """A run working longer than its lease keeps it: nobody can take the pipeline over meanwhile."""
    monkeypatch.setattr(runlease, "RUN_LEASE_SECONDS", 10.0)
    monkeypatch.setattr(runlease, "RENEW_EVERY_SECONDS", 1.0)
    pipeline = make_pipeline(scope="collection", DRAIN_BUDGET_SECONDS="20")
    coll = pipeline.collection()
    seen = []

    class Watching(CheckpointStore):
        def renew(self, until: float) -> None:
            super().renew(until)
            seen.append(until)

    stop = threading.Event()

    def writer():  # a steady stream, so the run reads until its budget ends
        while not stop.wait(0.05):
            coll.insert_one({"at": time.time()})

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
