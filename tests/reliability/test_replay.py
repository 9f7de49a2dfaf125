"""Exactly once when a replay differs from the run that died.

A run killed after some flushes and before its commit leaves lines in the lake that no checkpoint
counts. The next run replays from the stored position, and what it reads need not be what the dead
run read: with ``updateLookup`` a document changed in between (other bytes, so other roll decisions
and other commit points), a setting changed (``ROLL_*``, ``JSON_MODE``, ``MAX_BUFFER_BYTES``), the
batch crossed a ``ROLL_WINDOW`` boundary, ``START_AT=now`` meant another moment, the history was
lost, a ``$match`` on the document now selects other events. Each case kills a real drain process
and checks that every event is in the lake once (by resume token), with ``_seq`` unique.

The cases that do not depend on how rolling files are laid out run in both file layouts
(``FILE_LAYOUT``: ``rolling`` and ``per_event``).
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from .harness import DEFAULTS, lose_history, write_round

LAYOUTS = pytest.mark.parametrize("layout", ["rolling", "per_event"])


def _kill(pipeline, failpoint: str, **overrides):
    pipeline.expire_lease()
    result = pipeline.drain(failpoint=failpoint, **overrides)
    assert result.killed, f"{failpoint} not reached: {result.describe()}"
    return result


def _grow_documents(pipeline, names=("a", "b", "c"), pad: int = 900) -> None:
    """Every document gets larger: a replay with updateLookup writes longer lines than the dead run."""
    for name in names:
        pipeline.collection(name).update_many({}, {"$set": {"grown": "g" * pad}})


@pytest.mark.slow
@LAYOUTS
def test_a_first_run_killed_before_its_first_commit_with_start_at_now(make_pipeline, layout):
    """``START_AT=now``, a steady writer: the first run flushes and dies before its first commit. The
    next run opens where the first one did (the first position was stored before anything was
    read), not at a new "now", so nothing is lost and nothing numbered twice."""
    pipeline = make_pipeline(mode=DEFAULTS, MAX_BUFFER_BYTES="16KiB", ROLL_MAX_BYTES="8KiB", FILE_LAYOUT=layout)
    coll = pipeline.collection("a")
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.wait(0.02):
            coll.insert_one({"i": i, "pad": "x" * 300})
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(1.0)
        _kill(pipeline, "after_flush:1")
        time.sleep(1.0)
        pipeline.expire_lease()
        middle = pipeline.drain()
        assert middle.returncode == 0, middle.describe()
    finally:
        stop.set()
        thread.join()
    pipeline.drain_until_caught_up()
    lines = pipeline.assert_exactly_once()
    assert len(lines) > 50


@pytest.mark.slow
@LAYOUTS
@pytest.mark.parametrize("changed", [
    {"ROLL_MAX_BYTES": "4KiB", "JSON_MODE": "canonical"},
    {"ROLL_WINDOW": "5m", "MAX_BUFFER_BYTES": "4KiB"},
], ids=["roll-size-and-json-mode", "window-and-buffer"])
def test_a_replay_with_other_settings_and_changed_documents(make_pipeline, changed, layout):
    """The dead run wrote with one set of settings; the replay runs with others, and every document
    grew in between (updateLookup): its lines roll at other places, go to other files and commit at
    other events. Nothing the dead run made durable is written again."""
    pipeline = make_pipeline(mode=DEFAULTS, MAX_BUFFER_BYTES="64KiB", ROLL_MAX_BYTES="64KiB", FILE_LAYOUT=layout)
    pipeline.enable_preimages()
    pipeline.begin()
    rng = random.Random(11)
    write_round(pipeline, rng, inserts=40)
    for name in ("a", "b", "c"):  # updates, so that replayed update events look their documents up
        pipeline.collection(name).update_many({}, {"$set": {"touched": 1}})
    _kill(pipeline, "after_flush:2")
    _grow_documents(pipeline)
    pipeline.expire_lease()
    pipeline.drain_until_caught_up(**changed)
    pipeline.assert_exactly_once()


@pytest.mark.slow
def test_a_batch_across_a_window_boundary_replayed_with_commits_at_other_events(make_pipeline):
    """One-minute windows: the dead run's batch holds events of two windows (a file of each). The
    replay, with a small ``MAX_BUFFER_BYTES`` and larger documents, commits at other events."""
    pipeline = make_pipeline(mode=DEFAULTS, ROLL_WINDOW="1m", MAX_BUFFER_BYTES="1MiB", ROLL_MAX_BYTES="1MiB")
    pipeline.begin()
    rng = random.Random(12)
    time.sleep((58.0 - time.time() % 60) % 60)  # just before a minute ends
    write_round(pipeline, rng, inserts=30)
    if time.time() % 60 > 30:  # still in the same minute: wait for the next one
        time.sleep(60.5 - time.time() % 60)
    write_round(pipeline, rng, inserts=30)
    windows = {int(e["clusterTime"].time // 60) for e in pipeline.independent_events()}
    assert len(windows) >= 2, "the writes did not cross a minute boundary"
    _kill(pipeline, "before_commit:1")
    files = pipeline.lake_files()
    assert len({path.split("part-")[1][:14] for path in files}) >= 2, "the dead run wrote one window only"
    _grow_documents(pipeline)
    pipeline.expire_lease()
    pipeline.drain_until_caught_up(MAX_BUFFER_BYTES="8KiB")
    pipeline.assert_exactly_once()


@pytest.mark.slow
def test_a_stale_runs_flush_that_lands_after_a_takeover_is_fenced(make_pipeline, emulator_control):
    """Run A's flush is held by the service for 8 s. Meanwhile A's lease is taken over (as after a
    stall) and run B reads A's files back and completes the work. A's flush then arrives: it carries
    A's file lease, which B broke, so it fails, and the lake holds every event once."""
    pipeline = make_pipeline(scope="collection", coll="a")
    pipeline.collection("a").insert_many([{"i": i} for i in range(20)])
    emulator_control.add_fault(op="flush", filesystem=pipeline.filesystem, action="delay", delay_seconds=8, count=1)
    stale = pipeline.start_drain()
    taken = pipeline.take_over(stale)
    assert taken.report["events"] == 20  # A's flush had not landed: B wrote them
    result = pipeline.finish(stale)
    assert result.outcome == "failed" and result.report["error"]["kind"] == "transient", result.describe()
    pipeline.drain_until_caught_up()
    lines = pipeline.assert_exactly_once()
    assert len(lines) == 20


@pytest.mark.slow
def test_more_than_99_folders_in_one_commit(make_pipeline):
    """150 collections, one batch: the commit needs two Table transactions, each conditional on the
    run's lease. Killed before the commit and replayed, then checked: once each."""
    pipeline = make_pipeline(scope="database", MAX_BUFFER_BYTES="8MiB")
    database = pipeline.mongo[pipeline.db]
    for i in range(150):
        database[f"c{i:03d}"].insert_one({"i": i})
    _kill(pipeline, "after_flush:120")
    pipeline.drain_until_caught_up()
    lines = pipeline.assert_exactly_once()
    assert len({line["__path"].split("/")[1] for line in lines}) == 150
    rows = list(pipeline.store()._table.query_entities(f"PartitionKey eq '{pipeline.name}'"))
    assert len(rows) == 151  # the checkpoint and one row per folder


def test_a_run_that_lost_its_lease_cannot_write_folder_rows(make_pipeline):
    """More than 99 folders: every transaction of the commit carries the checkpoint row's ETag, so a
    run whose lease was taken over writes no folder row at all (none is upserted unconditionally)."""
    from shared.checkpoint import CheckpointStore

    pipeline = make_pipeline(scope="database", MAX_BUFFER_BYTES="8MiB")
    database = pipeline.mongo[pipeline.db]
    for i in range(120):
        database[f"c{i:03d}"].insert_one({"i": i})

    class Overtaken(CheckpointStore):
        def commit(self, checkpoint, files, release=False):
            if files:  # another run takes the pipeline over between the flushes and the commit
                other = pipeline.store()
                pipeline.expire_lease()
                other.acquire(other.load(), "the-other-run", time.time(), 30)
            return super().commit(checkpoint, files, release)

    report = pipeline.drain_in_process(store=Overtaken(pipeline.settings()))
    assert report.outcome == "failed" and "changed under this run" in report.error["message"], report
    rows = list(pipeline.store()._table.query_entities(f"PartitionKey eq '{pipeline.name}'"))
    assert [r["RowKey"] for r in rows] == ["checkpoint"]


@pytest.mark.slow
@LAYOUTS
def test_a_filter_on_the_document_that_selects_other_events_on_replay(make_pipeline, layout):
    """``$match`` on ``fullDocument`` with ``updateLookup``: the events a replay delivers depend on
    the documents at replay time. Documents change between the kill and the replay, so the replay
    delivers some events the dead run did not and misses some it did: still no event twice, no
    number twice, and numbers the replay could not use are reported as retired."""
    stages = '[{"$match": {"fullDocument.open": true}}]'
    pipeline = make_pipeline(mode=DEFAULTS, scope="collection", coll="a", MONGO_PIPELINE=stages,
                             MAX_BUFFER_BYTES="4KiB", ROLL_MAX_BYTES="4KiB", FILE_LAYOUT=layout)
    pipeline.begin()
    coll = pipeline.collection("a")
    coll.insert_many([{"_id": i, "open": i % 2 == 0, "pad": "x" * 200} for i in range(40)])
    coll.update_many({}, {"$set": {"u": 1}})  # update events: looked up at read time
    _kill(pipeline, "after_flush:2")
    coll.update_many({"_id": {"$lt": 20}}, [{"$set": {"open": {"$not": "$open"}}}])
    pipeline.expire_lease()
    results = pipeline.drain_until_caught_up()
    lines = pipeline.lake_lines()
    tokens = [line["_id"]["_data"] for line in lines]
    seqs = [line["_seq"] for line in lines]
    assert len(tokens) == len(set(tokens)), "an event is in the lake twice"
    assert len(seqs) == len(set(seqs)), "a number is in the lake twice"
    retired = sum(r.report.get("retired_seqs", 0) for r in results)
    assert max(seqs) == len(seqs) + retired


@pytest.mark.slow
@LAYOUTS
def test_restart_after_lost_history_keeps_what_a_failed_run_made_durable(make_private_pipeline, layout):
    """A run flushes and dies; then the stored position leaves the oplog. With
    ``ON_HISTORY_LOST=restart`` the next run keeps the dead run's durable lines (they are events
    that happened), numbers the gap record after them, and drops nothing after the gap."""
    pipeline = make_private_pipeline(scope="collection", coll="items", ON_HISTORY_LOST="restart",
                                     MAX_BUFFER_BYTES="2KiB", ROLL_MAX_BYTES="2KiB", FILE_LAYOUT=layout)
    pipeline.collection().insert_many([{"i": i, "pad": "p" * 200} for i in range(5)])
    assert pipeline.drain().outcome == "caught_up"
    pipeline.collection().insert_many([{"j": j, "pad": "q" * 200} for j in range(30)])
    _kill(pipeline, "before_commit:2")
    durable = {line["_seq"] for line in pipeline.lake_lines()}
    assert max(durable) > 5
    lose_history(pipeline)
    pipeline.expire_lease()
    result = pipeline.drain()
    assert result.outcome == "caught_up", result.describe()
    pipeline.collection().insert_many([{"later": i} for i in range(4)])
    pipeline.drain_until_caught_up()
    lines = pipeline.lake_lines()
    seqs = [line["_seq"] for line in lines]
    assert seqs == list(range(1, len(lines) + 1)), "numbers not 1..N once each"
    (gap,) = [line for line in lines if line["operationType"] == "gap"]
    assert gap["gap"]["afterSeq"] == max(durable) and gap["_seq"] == max(durable) + 1
    after = [line for line in lines if line["_seq"] > gap["_seq"]]
    assert [line["fullDocument"]["later"] for line in after] == [0, 1, 2, 3]
