"""A run that outlives its lease (stalled past ``lease_seconds``) writes nothing more."""

from __future__ import annotations

import itertools
import time

from shared.drain import lease_seconds, run_drain


def test_a_run_past_its_lease_stops_before_writing(make_pipeline):
    pipeline = make_pipeline(scope="collection")
    pipeline.collection().insert_many([{"i": i} for i in range(3)])
    budget = float(pipeline.env["DRAIN_BUDGET_SECONDS"])
    start = time.time()
    # the run starts at `start`; every later reading of its clock is past its lease (a stalled run)
    ticks = itertools.chain([start], itertools.repeat(start + lease_seconds(budget) + 1))
    report = run_drain(pipeline.settings(), env=pipeline.env, clock=lambda: next(ticks))
    assert report.outcome == "failed" and report.error["kind"] == "transient", report
    assert "lease ran out" in report.error["message"]
    assert pipeline.lake_files() == {}
    checkpoint = pipeline.checkpoint()
    assert checkpoint.seq == 0 and checkpoint.position is None
