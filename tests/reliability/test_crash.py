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


SNAPSHOT_SOAK_RUNS = int(os.environ.get("SNAPSHOT_SOAK_RUNS", "30"))
SNAPSHOT_SOAK = {"SNAPSHOT": "initial", "SNAPSHOT_CHUNK_DOCS": "30", "DRAIN_BUDGET_SECONDS": "5"}
SNAPSHOT_SOAK_CASES = [(PINNED, "rolling"), (DEFAULTS, "rolling"), (DEFAULTS, "per_event")]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "layout"), SNAPSHOT_SOAK_CASES, ids=[f"{m}-{lay}" for m, lay in SNAPSHOT_SOAK_CASES])
def test_soak_random_kills_with_a_snapshot(make_pipeline, mode, layout):
    """A ``SNAPSHOT=initial`` pipeline whose backlog of existing documents is larger than one run's
    budget copies, under ``SNAPSHOT_SOAK_RUNS`` runs (default 30) killed at a random failpoint (the
    snapshot steps included) or after a random delay, with writes between runs. With the defaults
    the documents change between a kill and its replay, and one-minute windows are crossed. At the
    end the lake replayed by ``_seq`` equals every collection's contents, no snapshot row is older
    than an event before it, and ``verify`` passes."""
    from .test_snapshot import assert_replay_matches

    rng = random.Random(SOAK_SEED)
    settings = {**SMALL, **SNAPSHOT_SOAK, **SOAK_SETTINGS[mode]}
    if mode == PINNED:
        settings["MONGO_FULL_DOC"] = "updateLookup"  # a snapshot needs whole documents on updates
    pipeline = make_pipeline(mode=mode, FILE_LAYOUT=layout, **settings)
    if mode == DEFAULTS:
        pipeline.enable_preimages()
    for name in ("a", "b", "c"):  # the backlog: more than a run's budget copies on this machine
        pipeline.collection(name).insert_many(
            [{"n": rng.random(), "pad": "x" * rng.randint(50, 600)} for _ in range(600)])
    steps = STEPS + ("snapshot_chunk_read", "snapshot_rows_added")
    seq, kills, runs = 0, 0, 0
    for _ in range(SNAPSHOT_SOAK_RUNS):
        write_round(pipeline, rng, inserts=rng.choice((4, 10, 24)))
        pipeline.expire_lease()
        choice = rng.random()
        if choice < 0.45:
            result = pipeline.drain(failpoint=f"{rng.choice(steps)}:{rng.randint(1, 6)}")
        elif choice < 0.85:
            result = pipeline.drain(kill_after=rng.uniform(0.3, 3.0))
        else:
            result = pipeline.drain()
        runs += 1
        if result.killed:
            kills += 1
        else:
            assert result.returncode == 0, result.describe()
        seq = _position_not_back(pipeline, seq)
    for _ in range(40):  # then runs until the copies are done and the stream is caught up
        pipeline.expire_lease()
        result = pipeline.drain()
        assert result.returncode == 0, result.describe()
        progress = pipeline.checkpoint().snapshot
        if result.outcome == "caught_up" and not (progress and (progress.copies or progress.requests)):
            break
    else:
        raise AssertionError(f"the copies did not finish: {result.describe()}")
    _position_not_back(pipeline, seq)
    # verify: the manifests chain every number of 1..seq as a line of the lake or a retired number
    lines = assert_replay_matches(pipeline, ("a", "b", "c"))
    assert any(line["operationType"] == "snapshot" for line in lines)
    assert kills >= SNAPSHOT_SOAK_RUNS // 3


def _position_not_back(pipeline, previous_seq: int) -> int:
    """The stored ``seq`` never moves backwards. (Not every number up to it need be a line: a replay
    whose chunks are cut elsewhere retires numbers of the failed run's range, which its manifest
    lists; ``verify`` checks that at the end.)"""
    checkpoint = pipeline.checkpoint()
    seq = checkpoint.seq if checkpoint else 0
    assert seq >= previous_seq, f"the stored position moved backwards: seq {previous_seq} -> {seq}"
    return seq
