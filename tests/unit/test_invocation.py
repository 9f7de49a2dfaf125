"""Logs from the app's threads reach the host: the worker's rule (devtools.functions_worker) applied
to shared.invocation and to the pipelines' pool."""

from __future__ import annotations

import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from devtools.functions_worker import Context, WorkerLogHandler, current_invocation_id, invoke
from shared import invocation
from shared.drain import RunReport
from shared.pipelines import run_pipelines
from shared.settings import Settings

log = logging.getLogger("shared.test_invocation")


@pytest.fixture
def host_logs():
    """The worker's handler on the root logger, as in the host."""
    handler = WorkerLogHandler()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_the_rule_a_plain_thread_loses_its_records(host_logs):
    """What the issue describes: a pool thread started without the id logs into the void."""

    def function(context):
        log.info("from the invocation's thread")
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(log.info, "from a plain pool thread").result()

    invoke(function, context=Context(invocation_id="inv-1"))
    assert host_logs.messages() == ["from the invocation's thread"]
    assert [r.getMessage() for r in host_logs.dropped] == ["from a plain pool thread"]


def test_the_executor_carries_the_id_into_every_thread(host_logs):
    def function(context):
        with invocation.bind(context):
            with invocation.Executor(max_workers=3) as pool:
                list(pool.map(lambda i: log.info("map %d", i), range(3)))
                pool.submit(log.warning, "submitted").result()

    invoke(function, context=Context(invocation_id="inv-2"))
    assert not host_logs.dropped
    assert sorted(host_logs.messages()) == ["map 0", "map 1", "map 2", "submitted"]
    assert {inv for inv, _ in host_logs.kept} == {"inv-2"}


def test_submit_wrap_and_start_thread(host_logs):
    def function(context):
        with invocation.bind(context):
            with ThreadPoolExecutor(max_workers=1) as pool:
                invocation.submit(pool, log.info, "submit %s", "helper").result()
            thread = invocation.start_thread(log.error, name="committer", args=("from a started thread",))
            thread.join()
            plain = threading.Thread(target=invocation.wrap(log.info), args=("wrapped",))
            plain.start()
            plain.join()

    invoke(function, context=Context(invocation_id="inv-3"))
    assert not host_logs.dropped
    assert sorted(host_logs.messages()) == ["from a started thread", "submit helper", "wrapped"]


def test_a_pooled_thread_is_left_as_it_was_found():
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with invocation.bind(Context(invocation_id="inv-4")):
            seen = invocation.submit(pool, current_invocation_id).result()
        after = pool.submit(current_invocation_id).result()
    finally:
        pool.shutdown()
    assert (seen, after) == ("inv-4", None)


def test_concurrent_invocations_keep_their_own_ids(host_logs):
    barrier = threading.Barrier(4)

    def work(name):
        barrier.wait(timeout=10)
        log.info("%s", name)

    def function(context, name):
        with invocation.bind(context), invocation.Executor(max_workers=2) as pool:
            list(pool.map(work, [name, name]))

    with ThreadPoolExecutor(max_workers=2) as host:  # two invocations at once
        futures = [host.submit(lambda n=n: _invoke_in_thread(function, n)) for n in ("a", "b")]
        [f.result(timeout=20) for f in futures]
    assert not host_logs.dropped
    assert sorted((inv, r.getMessage()) for inv, r in host_logs.kept) == [
        ("inv-a", "a"), ("inv-a", "a"), ("inv-b", "b"), ("inv-b", "b")]


def _invoke_in_thread(function, name):
    context = Context(invocation_id=f"inv-{name}")
    context.thread_local_storage.invocation_id = context.invocation_id
    try:
        function(context, name)
    finally:
        context.thread_local_storage.invocation_id = None


def test_context_variables_follow_the_call():
    var = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    with invocation.Executor(max_workers=1) as pool:
        assert pool.submit(var.get).result() == "caller"


def test_without_a_binding_everything_behaves_as_plain_threads(host_logs):
    assert invocation.current() is None
    with invocation.bind(None) as bound:
        assert bound is None
        with invocation.Executor(max_workers=1) as pool:
            assert pool.submit(lambda: 6 * 7).result() == 42
            pool.submit(log.info, "outside any invocation").result()
    assert [r.getMessage() for r in host_logs.dropped] == ["outside any invocation"]


def test_an_exception_in_the_thread_reaches_the_caller_and_clears_the_id():
    def boom():
        raise ValueError("boom")

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with invocation.bind(Context(invocation_id="inv-5")):
            with pytest.raises(ValueError, match="boom"):
                invocation.submit(pool, boom).result()
        assert pool.submit(current_invocation_id).result() is None
    finally:
        pool.shutdown()


def test_every_pipeline_thread_logs_as_part_of_the_invocation(host_logs):
    env = {"MONGO_URI": "mongodb://127.0.0.1:27017/?replicaSet=rs",
           "ADLS_ACCOUNT_URL": "https://acct.dfs.core.windows.net",
           "CHECKPOINT_ACCOUNT_URL": "https://acct.table.core.windows.net"}
    pipelines = [Settings.from_env({**env, "PIPELINE_NAME": name, "MONGO_DB": name}) for name in ("a", "b", "c")]

    def fake_run(settings):
        logging.getLogger("shared.drain").error("pipeline %s: run report", settings.pipeline_name)
        return RunReport(settings.pipeline_name, "run", "2026-01-01T00:00:00Z")

    def reported(settings, report):
        logging.getLogger("shared.telemetry").info("recorded %s", report.pipeline)

    def function(context):
        with invocation.bind(context):
            return run_pipelines(pipelines, run=fake_run, on_report=reported)

    reports = invoke(function, context=Context(invocation_id="inv-6"))
    assert [r.pipeline for r in reports] == ["a", "b", "c"]
    assert not host_logs.dropped
    assert sorted(host_logs.messages()) == sorted(
        [f"pipeline {n}: run report" for n in "abc"] + [f"recorded {n}" for n in "abc"])
    assert {inv for inv, _ in host_logs.kept} == {"inv-6"}
