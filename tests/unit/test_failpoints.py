"""Failpoints: parsing of DRAIN_TEST_FAILPOINT and when they fire (pure; the kill is patched)."""

import pytest

from shared import failpoints
from shared.failpoints import RUN_STEPS, STEPS, Failpoints


def test_without_the_setting_every_step_is_a_no_op():
    points = Failpoints({})
    for step in STEPS:
        points(step)


def test_the_nth_time_a_step_is_reached_kills(monkeypatch):
    killed = []
    monkeypatch.setattr(failpoints.os, "kill", lambda pid, sig: killed.append(sig))
    points = Failpoints({"DRAIN_TEST_FAILPOINT": "after_flush:3"})
    points("after_flush")
    points("after_append")
    points("after_flush")
    assert killed == []
    points("after_flush")
    assert killed == [failpoints.signal.SIGKILL]


def test_an_unknown_step_is_refused():
    with pytest.raises(ValueError, match="unknown step"):
        Failpoints({"DRAIN_TEST_FAILPOINT": "after_lunch"})


def test_run_steps_are_the_steps_every_run_reaches():
    assert set(RUN_STEPS) < set(STEPS) and "after_restart" not in RUN_STEPS
