"""Crash safety: real drain processes SIGKILLed at every step boundary of a run (``shared.failpoints``),
then resumed; and a randomized soak of killed runs with writes in between.

Every case asserts, after each run, that the stored position never moved backwards nor past an
event missing from the lake, and at the end that the lake holds ``_seq`` 1..N exactly once and
equals an independent change-stream read from the pipeline's first position.

Small files and buffers (``ROLL_MAX_BYTES=8KiB``, ``MAX_BUFFER_BYTES=16KiB``) make one run write
dozens of files in three folders and commit many times, so every step is reached many times.

Each case runs twice: ``pinned`` (plain events, so a replay reads exactly what the killed run read)
and ``defaults`` (the product's defaults: ``updateLookup``, pre-images ``whenAvailable``,
``START_AT=now``), where documents are updated between a kill and its replay, so the replay's lines
differ from the killed run's, roll at other lines and commit at other events.

And each runs in both file layouts (``FILE_LAYOUT``): ``rolling`` and ``per_event`` (one file per
event, created whole by one request: there is no ``after_append`` step, so the cases that kill there
run in the rolling layout only; ``after_flush`` is reached after each file is created).
"""

from __future__ import annotations

import os
import random

import pytest

from shared.failpoints import RUN_STEPS as STEPS

from .harness import DEFAULTS, PINNED, kill_runs, write_round

SMALL = {"ROLL_MAX_BYTES": "8KiB", "MAX_BUFFER_BYTES": "16KiB"}
MODES = (PINNED, DEFAULTS)
LAYOUTS = ("rolling", "per_event")


def _pipeline(make_pipeline, mode: str, layout: str, **settings):
    pipeline = make_pipeline(mode=mode, FILE_LAYOUT=layout, **SMALL, **settings)
    if mode == DEFAULTS:
        pipeline.enable_preimages()
        pipeline.begin()
    return pipeline

# Each case: the failpoints of consecutive killed runs (writes happen between them), then resumed runs.
CASES = [[f"{step}:1"] for step in STEPS] + [
    ["after_append:7"], ["after_flush:7"], ["before_commit:4"], ["after_commit:4"],
    # a second run killed while it recovers what the first one left
    ["after_flush:5", "after_append:1"], ["after_flush:5", "after_flush:1"],
    ["after_append:3", "before_commit:1"], ["before_commit:2", "after_flush:3", "after_commit:1"],
]
LAYOUT_CASES = [(layout, case) for layout in LAYOUTS for case in CASES
                if layout == "rolling" or not any(f.startswith("after_append") for f in case)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("layout", "failpoints"), LAYOUT_CASES,
                         ids=[f"{layout}-{'+'.join(case)}" for layout, case in LAYOUT_CASES])
def test_killed_at_a_step_then_resumed(make_pipeline, layout, failpoints, mode):
    rng = random.Random(7)
    pipeline = _pipeline(make_pipeline, mode, layout)
    seq = kill_runs(pipeline, rng, failpoints)
    write_round(pipeline, rng, inserts=30)
    for result in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    lines = pipeline.assert_exactly_once()
    assert lines and seq == len(lines)
    pipeline.assert_lake_verifies()


SOAK_RUNS = int(os.environ.get("SOAK_RUNS", "50"))
SOAK_SEED = int(os.environ.get("SOAK_SEED", "20240601"))


SOAK_SETTINGS = {
    PINNED: {},
    # one-minute windows: a soak of a few minutes crosses several, with kills around their edges
    DEFAULTS: {"ROLL_WINDOW": "1m"},
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_soak_random_kills(make_pipeline, mode, layout):
    """``SOAK_RUNS`` runs (default 50; ``make soak`` runs more), seed ``SOAK_SEED``: before each run
    a random round of writes; each run is killed at a random failpoint, killed after a random
    delay, or left to finish. Now and then a setting that changes what a replay writes
    (``ROLL_MAX_BYTES``, ``JSON_MODE``) changes between a kill and the next run."""
    rng = random.Random(SOAK_SEED)
    pipeline = _pipeline(make_pipeline, mode, layout, **SOAK_SETTINGS[mode])
    seq, kills = 0, 0
    for _ in range(SOAK_RUNS):
        write_round(pipeline, rng, inserts=rng.choice((4, 10, 24)))
        pipeline.expire_lease()
        changed = {}
        if rng.random() < 0.2:
            changed = {"ROLL_MAX_BYTES": rng.choice(("4KiB", "8KiB", "64KiB")),
                       "JSON_MODE": rng.choice(("relaxed", "canonical"))}
        choice = rng.random()
        if choice < 0.45:
            result = pipeline.drain(failpoint=f"{rng.choice(STEPS)}:{rng.randint(1, 6)}", **changed)
        elif choice < 0.85:
            result = pipeline.drain(kill_after=rng.uniform(0.2, 2.0), **changed)
        else:
            result = pipeline.drain(**changed)
        if result.killed:
            kills += 1
        else:
            assert result.returncode == 0, result.describe()
        seq = pipeline.assert_position_safe(seq)
    pipeline.drain_until_caught_up()
    pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()
    assert kills >= SOAK_RUNS // 3  # the soak really killed runs


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nth", [1, 40])
def test_killed_while_one_batch_is_committed_and_the_next_is_read(make_pipeline, emulator_control, mode, nth):
    """The committer writes batch N in its thread while the reader reads batch N+1. A held flush
    (the emulator delays it) keeps a commit in flight, and the run is killed at the ``nth`` event
    read meanwhile; the next runs recover and the lake holds every event once."""
    rng = random.Random(17)
    pipeline = _pipeline(make_pipeline, mode, "rolling")
    write_round(pipeline, rng, inserts=60)
    emulator_control.add_fault(op="flush", filesystem=pipeline.filesystem, action="delay", delay_seconds=2, count=2)
    result = pipeline.drain(failpoint=f"during_commit:{nth}")
    assert result.killed, f"no event was read during a commit: {result.describe()}"
    seq = pipeline.assert_position_safe()
    emulator_control.clear_faults()
    write_round(pipeline, rng, inserts=20)
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
