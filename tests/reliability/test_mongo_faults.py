"""Database faults: the local MongoDB restarted mid-drain, a dropped connection, refused credentials.

Each case runs twice: ``pinned`` (plain events from a fixed first position) and ``defaults`` (the
product's defaults: ``updateLookup``, pre-images ``whenAvailable``, ``START_AT=now``). Every document
changes between a run a fault stopped and the run that replays its events, so under the defaults the
replay's update lines (looked up at read time) differ from the ones the failed run read."""

from __future__ import annotations

import random
import time

import pytest

from .harness import DEFAULTS, MODES, change_documents, pipeline_in_mode, write_round


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_server_restarted_mid_drain(make_pipeline, mongo_restart, emulator_control, mode):
    """A backlog drained with small buffers and slowed appends (many commits, a run of several
    seconds); the server is restarted (same storage) once the run holds its lease. pymongo resumes,
    or the run fails and the next one resumes: either way, exactly once."""
    pipeline = pipeline_in_mode(make_pipeline, mode, ROLL_MAX_BYTES="16KiB", MAX_BUFFER_BYTES="16KiB")
    write_round(pipeline, random.Random(4), inserts=150)
    emulator_control.add_fault(op="append", filesystem=pipeline.filesystem, action="delay", delay_seconds=0.2,
                               count=40)
    proc = pipeline.start_drain()
    table = pipeline.store()._table
    for _ in range(400):
        row = table.get_entity(pipeline.name, "checkpoint") if _has_row(table, pipeline.name) else None
        if row is not None and row["lease_until"] > time.time() and int(_value(row["seq"])) > 0:
            break  # it has committed at least once, and is still running
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the restart: the test would prove nothing"
    mongo_restart()
    result = pipeline.finish(proc)
    assert result.returncode in (0, 1), result.describe()
    if result.returncode == 1:
        assert result.report["error"]["kind"] == "transient", result.describe()
    emulator_control.clear_faults()
    seq = pipeline.assert_position_safe()
    change_documents(pipeline)
    write_round(pipeline, random.Random(5), inserts=5)
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


def _has_row(table, name) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        table.get_entity(name, "checkpoint")
        return True
    except ResourceNotFoundError:
        return False


def _value(v):
    return getattr(v, "value", v)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_dropped_connection_is_resumed_by_the_driver(make_failpoint_pipeline, test_commands_mongo, mode):
    """The server closes the connection on the stream's getMore (a server-side failpoint): pymongo
    resumes the change stream from its last token; nothing is lost or written twice. Half the
    documents are updated before the run (under the defaults their update lines carry the document
    looked up), and every document changes before the next run."""
    pipeline = pipeline_in_mode(make_failpoint_pipeline, mode, collections=("items",), scope="collection")
    coll = pipeline.collection()
    coll.insert_many([{"i": i} for i in range(2500)])  # more than one batch: a getMore follows
    coll.update_many({"i": {"$lt": 1250}}, {"$set": {"u": 1}})
    test_commands_mongo.client.admin.command({
        "configureFailPoint": "failCommand", "mode": {"times": 2},
        "data": {"failCommands": ["getMore"], "closeConnection": True}})
    try:
        result = pipeline.drain()
    finally:
        test_commands_mongo.client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert result.returncode in (0, 1), result.describe()
    seq = pipeline.assert_position_safe()
    change_documents(pipeline, ["items"])
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    lines = pipeline.assert_exactly_once()
    assert len(lines) == 2500 + 1250 + 2500
    pipeline.assert_lake_verifies()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_refused_credentials_end_the_run_as_terminal(make_failpoint_pipeline, test_commands_mongo, mode):
    """A user the server does not know: one clear, terminal failure; the position is not touched.
    Under ``START_AT=now`` the pipeline's first run (with the right credentials) stored its position
    before; pinned, the refused run stores ``START_AT`` itself before opening the stream."""
    pipeline = pipeline_in_mode(make_failpoint_pipeline, mode, collections=("items",), scope="collection")
    before = pipeline.checkpoint() if mode == DEFAULTS else None
    secret = "Rel1ability-Pa55word"
    pipeline.env["MONGO_URI"] = test_commands_mongo.uri.replace("mongodb://", f"mongodb://drain-user:{secret}@")
    result = pipeline.drain()
    assert result.returncode == 2 and result.outcome == "failed", result.describe()
    assert result.report["error"]["kind"] == "terminal"
    assert "refused the credentials" in result.report["error"]["message"]
    assert secret not in result.stdout + result.stderr
    checkpoint = pipeline.checkpoint()
    if before is None:
        # only the first position (START_AT) was stored, before the stream was opened
        assert checkpoint.position.kind == "start_at" and checkpoint.seq == 0 and checkpoint.intent is None
    else:  # the position the first run stored, untouched
        assert (checkpoint.position, checkpoint.origin, checkpoint.seq) == (before.position, before.origin, 0)
        assert checkpoint.intent is None
    assert checkpoint.last_error["kind"] == "terminal" and checkpoint.lease_until == 0.0
