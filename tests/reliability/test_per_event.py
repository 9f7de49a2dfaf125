"""``FILE_LAYOUT=per_event``: one file per change event, exactly once, against the local stack.

The crash matrix and the soak run in this layout too (``test_crash``); these cases check what is
particular to it: the names and contents of the files, the intent that records folders (and no folder
rows), a replay that finds its own earlier files, a conflict that fails loudly, a stale upload held by
the service, and switching an existing pipeline between layouts.

Each case runs twice: ``pinned`` (plain events from a fixed first position) and ``defaults`` (the
product's defaults: ``updateLookup``, pre-images ``whenAvailable``, ``START_AT=now``). Every document
changes between a killed or stalled run and the run that replays its events, so under the defaults
the replay's update lines (looked up at read time) differ from the ones the earlier run wrote.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest

from .harness import DEFAULTS, MODES, change_documents, pipeline_in_mode, write_round

PER_EVENT = {"FILE_LAYOUT": "per_event", "MAX_BUFFER_BYTES": "16KiB"}
NAME = re.compile(r"(\d{20})-([A-Za-z]+)-([0-9a-f]{16})-([0-9a-f]{8})\.json")


def _kill(pipeline, failpoint: str, **overrides):
    pipeline.expire_lease()
    result = pipeline.drain(failpoint=failpoint, **overrides)
    assert result.killed, f"{failpoint} not reached: {result.describe()}"
    return result


def _rows(pipeline) -> list[str]:
    return [r["RowKey"] for r in pipeline.store()._table.query_entities(f"PartitionKey eq '{pipeline.name}'")]


@pytest.mark.parametrize("mode", MODES)
def test_each_event_is_one_file_holding_the_line_a_rolling_file_holds(make_pipeline, mode):
    pipeline = pipeline_in_mode(make_pipeline, mode, **PER_EVENT)
    rolling = replace(pipeline, env={**pipeline.env, "PIPELINE_NAME": pipeline.name + "-rolling",
                                     "FILE_LAYOUT": "rolling"}, _files={})
    if mode == DEFAULTS:
        rolling.begin()  # its own first position (now), before the writes both pipelines read
    write_round(pipeline, random.Random(3), inserts=20)
    report = pipeline.drain().report
    assert report["outcome"] == "caught_up" and report["events"] > 30
    assert report["files"] == report["events"] and report["commits"] > 1
    assert rolling.drain().outcome == "caught_up"
    lines = pipeline.assert_exactly_once()
    gen = pipeline.checkpoint().generation
    for line in lines:
        folder, name = line["__path"].rsplit("/", 1)
        seq, op, _, file_gen = NAME.fullmatch(name).groups()
        assert (int(seq), op, file_gen) == (line["_seq"], line["operationType"], gen)
        assert re.search(r"/year=\d{4}/month=\d\d/day=\d\d$", folder)
    files = pipeline.lake_files()
    rolling_lines = {}
    for path, data in files.items():
        if path.endswith(f"-{rolling.checkpoint().generation}.jsonl"):
            for raw in data.splitlines(keepends=True):
                rolling_lines[int(re.search(rb'"_seq": ?(\d+)', raw).group(1))] = (path.rsplit("/", 1)[0], raw)
    for line in lines:  # the same bytes, in the same folder
        assert rolling_lines[line["_seq"]] == (line["__path"].rsplit("/", 1)[0], files[line["__path"]])
    assert _rows(pipeline) == ["checkpoint"]  # no folder rows for this layout


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_replay_skips_the_files_a_killed_run_created(make_pipeline, mode):
    pipeline = pipeline_in_mode(make_pipeline, mode, **PER_EVENT)
    write_round(pipeline, random.Random(4), inserts=30)
    _kill(pipeline, "after_flush:45")
    intent = pipeline.checkpoint().intent
    assert intent is not None and intent.folders and not intent.files  # folders, never the files
    durable = {line["_seq"] for line in pipeline.lake_lines()}
    assert len(durable) >= 45
    seq = pipeline.assert_position_safe()
    change_documents(pipeline)
    pipeline.expire_lease()
    result = pipeline.drain()
    assert result.outcome == "caught_up", result.describe()
    skipped = result.report["replayed_events_skipped"]
    assert skipped == len(durable - set(range(1, intent.first_seq)))
    pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_two_files_with_one_seq_fail_the_recovery_as_terminal(make_pipeline, datalake_service, mode):
    pipeline = pipeline_in_mode(make_pipeline, mode, **PER_EVENT)
    write_round(pipeline, random.Random(5), inserts=30)
    _kill(pipeline, "after_flush:3")
    stored = pipeline.assert_position_safe()
    intent = pipeline.checkpoint().intent
    path = next(line["__path"] for line in pipeline.lake_lines() if line["_seq"] >= intent.first_seq)
    folder, name = path.rsplit("/", 1)
    seq, op, _, gen = NAME.fullmatch(name).groups()
    intruder = f"{folder}/{seq}-{op}-{'0' * 16}-{gen}.json"
    datalake_service.get_file_system_client(pipeline.filesystem).get_file_client(intruder).upload_data(
        b'{"_seq": 1}\n', overwrite=True)
    change_documents(pipeline)
    pipeline.expire_lease()
    result = pipeline.drain()
    assert result.outcome == "failed" and result.report["error"]["kind"] == "terminal", result.describe()
    assert intruder in result.report["error"]["message"] and path in result.report["error"]["message"]
    assert pipeline.checkpoint().seq == stored  # the failed recovery moved nothing


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_stale_upload_that_lands_after_a_takeover_is_not_a_duplicate(make_pipeline, emulator_control, mode):
    """Run A's upload of one file is held by the service for 8 s; meanwhile A's lease is taken over
    and run B lists A's folders and completes the work. B reads the same events and numbers them as A
    did, so A's late file has the name B's upload of that event has: whichever lands second gets
    409 and is skipped, and the lake holds every event once. Each document is updated before A runs
    and changes again while A stalls (under the defaults B's update lines hold what B looked up)."""
    pipeline = pipeline_in_mode(make_pipeline, mode, collections=("a",), scope="collection", coll="a",
                                **PER_EVENT)
    coll = pipeline.collection("a")
    coll.insert_many([{"_id": i, "i": i} for i in range(20)])
    for i in range(0, 20, 2):
        coll.update_one({"_id": i}, {"$set": {"u": 1}})
    emulator_control.add_fault(op="put_blob", filesystem=pipeline.filesystem, action="delay", delay_seconds=8,
                               count=1)
    stale = pipeline.start_drain()
    pipeline.take_over(stale, between=lambda: change_documents(pipeline, ["a"]))
    pipeline.finish(stale)
    pipeline.drain_until_caught_up()
    lines = pipeline.assert_exactly_once()
    assert len(lines) == 20 + 10 + 20
    pipeline.assert_lake_verifies()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", [("rolling", "per_event", "rolling"), ("per_event", "rolling", "per_event")],
                         ids=["rolling-first", "per_event-first"])
def test_switching_layouts_applies_from_the_next_seq_on(make_pipeline, order, mode):
    """Each layout's run is killed after some files with its intent open; the next run, in the other
    layout, recovers that intent as the layout that recorded it wrote it, and goes on in its own.
    Every document changes after each kill."""
    pipeline = pipeline_in_mode(make_pipeline, mode, MAX_BUFFER_BYTES="16KiB", ROLL_MAX_BYTES="8KiB")
    rng = random.Random(6)
    seq = 0
    for layout in order:
        write_round(pipeline, rng, inserts=20)
        _kill(pipeline, "after_flush:4", FILE_LAYOUT=layout)
        seq = pipeline.assert_position_safe(seq)
        change_documents(pipeline)
    write_round(pipeline, rng, inserts=20)
    for _ in pipeline.drain_until_caught_up(FILE_LAYOUT=order[-1]):
        seq = pipeline.assert_position_safe(seq)
    lines = pipeline.assert_exactly_once()
    kinds = {line["__path"].endswith(".jsonl") for line in lines}
    assert kinds == {True, False}  # both layouts hold lines
    pipeline.assert_lake_verifies()
