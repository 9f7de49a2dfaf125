"""Database faults: the local MongoDB restarted mid-drain, a dropped connection, refused credentials."""

from __future__ import annotations

import random
import time

import pytest

from .harness import write_round


@pytest.mark.slow
def test_server_restarted_mid_drain(make_pipeline, mongo_restart, emulator_control):
    """A backlog drained with small buffers and slowed appends (many commits, a run of several
    seconds); the server is restarted (same storage) once the run holds its lease. pymongo resumes,
    or the run fails and the next one resumes: either way, exactly once."""
    pipeline = make_pipeline(ROLL_MAX_BYTES="16KiB", MAX_BUFFER_BYTES="16KiB")
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
    write_round(pipeline, random.Random(5), inserts=5)
    pipeline.drain_until_caught_up()
    pipeline.assert_exactly_once()


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
def test_a_dropped_connection_is_resumed_by_the_driver(make_failpoint_pipeline, test_commands_mongo):
    """The server closes the connection on the stream's getMore (a server-side failpoint): pymongo
    resumes the change stream from its last token; nothing is lost or written twice."""
    pipeline = make_failpoint_pipeline(scope="collection")
    coll = pipeline.collection()
    coll.insert_many([{"i": i} for i in range(2500)])  # more than one batch: a getMore follows
    test_commands_mongo.client.admin.command({
        "configureFailPoint": "failCommand", "mode": {"times": 2},
        "data": {"failCommands": ["getMore"], "closeConnection": True}})
    try:
        result = pipeline.drain()
    finally:
        test_commands_mongo.client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert result.returncode in (0, 1), result.describe()
    pipeline.drain_until_caught_up()
    lines = pipeline.assert_exactly_once()
    assert len(lines) == 2500


@pytest.mark.slow
def test_refused_credentials_end_the_run_as_terminal(make_failpoint_pipeline, test_commands_mongo):
    """A user the server does not know: one clear, terminal failure; the position is not touched."""
    pipeline = make_failpoint_pipeline(scope="collection")
    secret = "Rel1ability-Pa55word"
    pipeline.env["MONGO_URI"] = test_commands_mongo.uri.replace("mongodb://", f"mongodb://drain-user:{secret}@")
    result = pipeline.drain()
    assert result.returncode == 2 and result.outcome == "failed", result.describe()
    assert result.report["error"]["kind"] == "terminal"
    assert "refused the credentials" in result.report["error"]["message"]
    assert secret not in result.stdout + result.stderr
    checkpoint = pipeline.checkpoint()
    # only the first position (START_AT) was stored, before the stream was opened
    assert checkpoint.position.kind == "start_at" and checkpoint.seq == 0 and checkpoint.intent is None
    assert checkpoint.last_error["kind"] == "terminal" and checkpoint.lease_until == 0.0
