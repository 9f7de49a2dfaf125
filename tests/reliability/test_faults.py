"""Storage faults: the emulator's fault injection on the lake (503, 500, delays past the client's
timeout, responses lost after the operation was applied) and faults injected into the Table client
through an azure-core pipeline policy. Each case ends with the exactly-once check.

Each case runs twice: ``pinned`` (plain events, so a replay reads exactly what the failed run read)
and ``defaults`` (the product's defaults: ``updateLookup``, pre-images ``whenAvailable``,
``START_AT=now``). Where a failed run is replayed, every document changes in between, so under the
defaults the replay's lines differ from the failed run's; under the defaults the run that cannot
flush fails with a batch of two one-minute windows."""

from __future__ import annotations

import random

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy

from .harness import (DEFAULTS, MODES, ONE_MINUTE_WINDOWS, assert_in_their_windows, change_documents,
                      pipeline_in_mode, wait_for_the_next_window, write_round)

SMALL = {"ROLL_MAX_BYTES": "8KiB", "MAX_BUFFER_BYTES": "16KiB"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op,status,code", [
    ("create_file", 503, "ServerBusy"), ("append", 503, "ServerBusy"), ("flush", 503, "ServerBusy"),
    ("flush", 500, "InternalError"), ("append", 500, "InternalError"),
])
def test_transient_lake_errors_are_retried_within_the_run(make_pipeline, emulator_control, op, status, code,
                                                          mode):
    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    write_round(pipeline, random.Random(1), inserts=15)
    emulator_control.add_fault(op=op, filesystem=pipeline.filesystem, status=status, code=code, count=3)
    result = pipeline.drain()
    assert result.outcome == "caught_up", result.describe()
    assert emulator_control.faults() == []  # every injected fault was met, and retried past
    pipeline.assert_exactly_once()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", ["append", "flush"])
def test_a_lost_response_after_the_operation_was_applied(make_pipeline, emulator_control, op, mode):
    """``drop_response``: the emulator applies the append or flush, then closes the connection."""
    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    rng = random.Random(2)
    write_round(pipeline, rng, inserts=15)
    emulator_control.add_fault(op=op, filesystem=pipeline.filesystem, action="drop_response", count=2)
    first = pipeline.drain()
    assert first.returncode in (0, 1), first.describe()
    assert emulator_control.faults() == []
    seq = pipeline.assert_position_safe()
    change_documents(pipeline)
    write_round(pipeline, rng, inserts=5)
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_run_that_cannot_flush_fails_without_moving_the_position(make_pipeline, emulator_control, mode):
    """Under the defaults the failed batch holds events of two one-minute windows (files of each)."""
    across = {**ONE_MINUTE_WINDOWS, "MAX_BUFFER_BYTES": "1MiB"} if mode == DEFAULTS else {}
    pipeline = pipeline_in_mode(make_pipeline, mode, **{**SMALL, **across})
    rng = random.Random(3)
    write_round(pipeline, rng, inserts=10)
    pipeline.drain_until_caught_up()
    seq = pipeline.checkpoint().seq
    write_round(pipeline, rng, inserts=10)
    if across:
        wait_for_the_next_window()
        write_round(pipeline, rng, inserts=10)
    emulator_control.add_fault(op="flush", filesystem=pipeline.filesystem, status=503, code="ServerBusy", count=1000)
    failed = pipeline.drain()
    assert failed.returncode == 1 and failed.outcome == "failed", failed.describe()
    assert failed.report["error"]["kind"] == "transient" and "flushing" in failed.report["error"]["message"]
    checkpoint = pipeline.checkpoint()
    assert checkpoint.seq == seq and checkpoint.last_error["kind"] == "transient"
    assert checkpoint.lease_until == 0.0  # the failed run released its lease
    if across:
        windows = {path.rsplit("/part-", 1)[1][:14] for path in checkpoint.intent.files}
        assert len(windows) >= 2, f"the failed batch did not span two windows: {checkpoint.intent.files}"
    emulator_control.clear_faults()
    change_documents(pipeline)
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    lines = pipeline.assert_exactly_once()
    if across:
        assert_in_their_windows(lines)
    pipeline.assert_lake_verifies()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("load", ["idle", "busy"])
def test_a_flush_that_times_out_but_was_applied(make_pipeline, emulator_control, request, load, mode):
    """A flush held by the service past the client's read timeout: in process, with a lake client
    whose read timeout is 1 s and no retries. The run fails; the flush lands whenever the service
    gets to it, before or after the next run reads the file back (on a busy machine, after): the
    file lease that run took fences it, so the lake holds every event once either way."""
    if load == "busy":
        request.getfixturevalue("busy_machine")
    from azure.storage.filedatalake import DataLakeServiceClient

    from shared.lake import Lake

    from .harness import lake_credential

    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    rng = random.Random(4)
    write_round(pipeline, rng, inserts=10)
    emulator_control.add_fault(op="flush", filesystem=pipeline.filesystem, action="delay", delay_seconds=3, count=1)
    service = DataLakeServiceClient(pipeline.env["ADLS_ACCOUNT_URL"], credential=lake_credential(pipeline.env),
                                    read_timeout=1, retry_total=0)
    report = pipeline.drain_in_process(lake=Lake(pipeline.settings(), service=service))
    assert report.outcome == "failed" and report.error["kind"] == "transient", report
    seq = pipeline.assert_position_safe()
    change_documents(pipeline)
    write_round(pipeline, rng, inserts=5)
    results = pipeline.drain_until_caught_up()
    assert sum(r.report["recovered_files"] for r in results) >= 1
    pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


class TableFaults(SansIOHTTPPolicy):
    """Per-retry policy: ``refuse`` requests fail before they are sent (retried by the SDK);
    requests matching ``lose`` are sent and applied, then their response is lost."""

    def __init__(self, refuse: int = 0, lose: str | None = None, lose_count: int = 1) -> None:
        self.refuse, self.lose, self.lose_count = refuse, lose, lose_count
        self.refused = self.lost = 0

    def on_request(self, request):
        if self.refused < self.refuse:
            self.refused += 1
            raise ServiceRequestError("injected: connection refused")

    def on_response(self, request, response):
        http = request.http_request
        if self.lose and self.lost < self.lose_count and self.lose in f"{http.method} {http.url}":
            self.lost += 1
            raise ServiceResponseError("injected: connection reset after the request was applied")


def _table_client(pipeline, policy):
    from azure.data.tables import TableClient

    return TableClient.from_connection_string(pipeline.env["CHECKPOINT_CONNECTION_STRING"],
                                              pipeline.env["CHECKPOINT_TABLE"], per_retry_policies=[policy],
                                              retry_backoff_factor=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_table_requests_refused_are_retried(make_pipeline, mode):
    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    write_round(pipeline, random.Random(5), inserts=10)
    policy = TableFaults(refuse=3)
    report = pipeline.drain_in_process(store=pipeline.store(table=_table_client(pipeline, policy)))
    assert report.outcome == "caught_up" and policy.refused == 3, report
    pipeline.assert_exactly_once()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_commit_applied_whose_response_was_lost(make_pipeline, mode):
    """The commit transaction reached the table, its answer did not: the run cannot know whether
    the position moved. Whatever it reports, the next runs write nothing twice and lose nothing."""
    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    rng = random.Random(6)
    write_round(pipeline, rng, inserts=10)
    policy = TableFaults(lose="POST", lose_count=1)  # the first transaction: the commit
    report = pipeline.drain_in_process(store=pipeline.store(table=_table_client(pipeline, policy)))
    assert policy.lost == 1
    assert report.outcome in ("failed", "caught_up"), report
    seq = pipeline.assert_position_safe()
    change_documents(pipeline)
    write_round(pipeline, rng, inserts=5)
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()
