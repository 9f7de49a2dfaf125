"""Several pipelines: the PIPELINES setting, concurrent isolated runs, the timer and the command."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from azure.functions.timer import TimerRequest

import function_app
from devtools.functions_worker import Context, WorkerLogHandler, invoke
from shared.drain import RunReport
from shared.errors import SettingsError
from shared.pipelines import failure_message, load_pipelines, run_pipelines
from shared.settings import Settings

from .conftest import call_status, run_cli

BASE = {
    "MONGO_URI": "mongodb://127.0.0.1:27017/?replicaSet=rs",
    "ADLS_ACCOUNT_URL": "https://acct.dfs.core.windows.net",
    "CHECKPOINT_ACCOUNT_URL": "https://acct.table.core.windows.net",
    "ROLL_WINDOW": "1h",
}


def pipelines(value, **env) -> tuple[Settings, ...]:
    return load_pipelines({**BASE, **env, "PIPELINES": value if isinstance(value, str) else json.dumps(value)})


def problems(value, **env) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        pipelines(value, **env)
    return list(caught.value.problems)


# -- the setting ------------------------------------------------------------------------------------

def test_without_pipelines_there_is_one_pipeline_from_the_top_level_settings():
    (only,) = load_pipelines({**BASE, "MONGO_DB": "shop", "PIPELINES": ""})
    assert only.scope.db == "shop" and only.pipeline_name == "db-shop"
    assert load_pipelines({**BASE, "MONGO_DB": "shop"}) == (only,)


def test_each_entry_has_its_scope_and_overrides_and_shares_the_rest():
    orders, audit = pipelines([
        {"PIPELINE_NAME": "orders", "MONGO_DB": "shop", "MONGO_COLL": "orders",
         "MONGO_PIPELINE": [{"$match": {"operationType": "insert"}}]},
        {"PIPELINE_NAME": "audit", "MONGO_DB": "audit", "ROLL_WINDOW": "1d", "DRAIN_BUDGET_SECONDS": 30},
    ])
    assert (orders.pipeline_name, orders.scope.db, orders.scope.coll) == ("orders", "shop", "orders")
    assert orders.mongo_pipeline == ({"$match": {"operationType": "insert"}},)
    assert (audit.pipeline_name, audit.scope.kind, audit.roll_window_seconds) == ("audit", "database", 86400)
    assert orders.roll_window_seconds == 3600 and audit.drain_budget_seconds == 30
    assert orders.mongo_uri == audit.mongo_uri and orders.checkpoint_table == audit.checkpoint_table
    assert orders.pipeline_identity != audit.pipeline_identity


def test_an_entry_error_names_the_entry_and_the_setting():
    found = problems([{"PIPELINE_NAME": "a", "MONGO_DB": "shop"}, {"PIPELINE_NAME": "b", "MONGO_COLL": "x"}])
    assert found == ["PIPELINES[1].MONGO_COLL: needs MONGO_DB (a collection is watched within a database)"]
    found = problems([{"PIPELINE_NAME": "a", "MONGO_DB": "shop", "ROLL_WINDOW": "7m"}])
    assert len(found) == 1 and found[0].startswith("PIPELINES[0].ROLL_WINDOW: '7m'")


def test_names_are_required_and_unique():
    found = problems([{"MONGO_DB": "a"}, {"PIPELINE_NAME": "x", "MONGO_DB": "b"}, {"PIPELINE_NAME": "x", "MONGO_DB": "c"}])
    assert found[0].startswith("PIPELINES[0].PIPELINE_NAME: required")
    assert found[1] == "PIPELINES[2].PIPELINE_NAME: 'x' is also the name of PIPELINES[1]"
    assert problems([{"PIPELINE_NAME": "a/b"}])[0].startswith("PIPELINES[0].PIPELINE_NAME: at most 200")


@pytest.mark.parametrize("value, expected", [
    ("[{", "PIPELINES: not valid JSON"),
    ('{"PIPELINE_NAME": "a"}', "PIPELINES: expected a non-empty JSON array"),
    ("[]", "PIPELINES: expected a non-empty JSON array"),
    ('["orders"]', "PIPELINES[0]: expected an object"),
    ('[{"PIPELINE_NAME": "a", "MONGO_URI": "mongodb://x"}]', "PIPELINES[0].MONGO_URI: not a per-pipeline setting"),
    ('[{"PIPELINE_NAME": "a", "DRAIN_SCHEDULE": "0 * * * * *"}]', "PIPELINES[0].DRAIN_SCHEDULE: not a per-pipeline"),
    ('[{"PIPELINE_NAME": "a", "MONGO_DB": true}]', "PIPELINES[0].MONGO_DB: expected a string"),
])
def test_malformed_pipelines_are_named(value, expected):
    assert any(p.startswith(expected) for p in problems(value)), problems(value)


def test_top_level_scope_settings_conflict_with_pipelines():
    found = problems([{"PIPELINE_NAME": "a", "MONGO_DB": "shop"}], MONGO_DB="other", MONGO_PIPELINE="[]")
    assert found == ["MONGO_DB: leave it empty when PIPELINES is set (each entry states its own scope)"]


def test_a_shared_setting_error_is_reported_once_without_an_entry():
    found = problems([{"PIPELINE_NAME": "a", "MONGO_DB": "x"}, {"PIPELINE_NAME": "b", "MONGO_DB": "y"}],
                     JSON_MODE="pretty")
    assert found == ["JSON_MODE: 'pretty' is not one of relaxed, canonical"]


# -- running several ----------------------------------------------------------------------------------

def two() -> tuple[Settings, ...]:
    return pipelines([{"PIPELINE_NAME": "a", "MONGO_DB": "x"}, {"PIPELINE_NAME": "b", "MONGO_DB": "y"}])


def test_pipelines_run_concurrently():
    both_running = threading.Barrier(2, timeout=30)  # broken unless both runs are in progress at once

    def run(settings):
        both_running.wait()
        return RunReport(settings.pipeline_name, "r", "t", outcome="caught_up")

    reports = run_pipelines(two(), run=run)
    assert [(r.pipeline, r.outcome) for r in reports] == [("a", "caught_up"), ("b", "caught_up")]
    assert failure_message(reports) is None


def test_a_pipeline_that_raises_does_not_stop_the_other_and_is_named():
    seen = []

    def run(settings):
        if settings.pipeline_name == "a":
            raise RuntimeError("boom mongodb://127.0.0.1:27017/?replicaSet=rs")
        return RunReport(settings.pipeline_name, "r", "t", outcome="caught_up")

    reports = run_pipelines(two(), run=run, on_report=lambda s, r: seen.append(r.pipeline))
    assert [r.outcome for r in reports] == ["failed", "caught_up"] and sorted(seen) == ["a", "b"]
    assert reports[0].error["kind"] == "transient" and "mongodb://" not in reports[0].error["message"]
    message = failure_message(reports)
    assert message.startswith("drain failed for 1 of 2 pipelines (a): ") and '"pipeline": "a"' in message


# -- against the local stack ----------------------------------------------------------------------------

@pytest.fixture
def two_pipelines(stack_env, fresh_filesystem, fresh_table_name, fresh_db_name, table_service) -> dict:
    """Two pipelines in one app: ``good`` on collection orders, ``broken`` on collection audit, whose
    checkpoint row is corrupt (its scope is fine)."""
    entries = [
        {"PIPELINE_NAME": "good", "MONGO_DB": fresh_db_name, "MONGO_COLL": "orders"},
        {"PIPELINE_NAME": "broken", "MONGO_DB": fresh_db_name, "MONGO_COLL": "audit", "ROLL_WINDOW": "1d"},
    ]
    table_service.create_table(fresh_table_name).create_entity(
        {"PartitionKey": "broken", "RowKey": "checkpoint", "schema": 1, "seq": "corrupt"})
    return {**stack_env, "ADLS_FILESYSTEM": fresh_filesystem, "CHECKPOINT_TABLE": fresh_table_name,
            "DRAIN_BUDGET_SECONDS": "20", "PIPELINES": json.dumps(entries)}


def test_one_failing_pipeline_does_not_stop_the_other(two_pipelines, app_env, mongo_client, datalake_service):
    env = two_pipelines
    db = mongo_client[json.loads(env["PIPELINES"])[0]["MONGO_DB"]]
    app_env(env)
    with pytest.raises(RuntimeError, match=r"1 of 2 pipelines \(broken\)"):
        invoke(function_app.drain, TimerRequest(past_due=False))  # good saves its starting position
    db.orders.insert_many([{"i": i} for i in range(4)])
    db.audit.insert_many([{"i": i} for i in range(2)])
    with pytest.raises(RuntimeError) as raised:
        invoke(function_app.drain, TimerRequest(past_due=False))
    assert "broken" in str(raised.value) and '"pipeline": "good"' not in str(raised.value)
    assert "terminal" in str(raised.value) and "corrupt" in str(raised.value)

    fs = datalake_service.get_file_system_client(env["ADLS_FILESYSTEM"])
    paths = [p.name for p in fs.get_paths(recursive=True) if not p.is_directory and not p.name.startswith("_manifests/")]
    assert len(paths) == 1 and paths[0].startswith(f"{db.name}/orders/")
    assert len(fs.get_file_client(paths[0]).download_file().readall().splitlines()) == 4

    code, body, _ = call_status()
    assert code == 503 and body["reason"] == "unhealthy: broken"
    good, broken = body["pipelines"]
    assert good["pipeline"] == "good" and good["healthy"] is True and good["checkpoint"]["seq"] == 4
    assert broken["pipeline"] == "broken" and broken["healthy"] is False
    assert broken["error"]["kind"] == "terminal" and "corrupt" in broken["error"]["message"]


def test_the_command_drains_and_shows_every_pipeline(two_pipelines, mongo_client):
    env = two_pipelines
    proc = run_cli("drain", env=env)
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 2  # a terminal failure among them
    assert [(r["pipeline"], r["outcome"]) for r in reports] == [("good", "caught_up"), ("broken", "failed")]
    status = run_cli("status", env=env)
    assert status.returncode == 3
    assert [p["pipeline"] for p in json.loads(status.stdout)["pipelines"]] == ["good", "broken"]


def test_a_settings_error_in_an_entry_fails_the_tick_naming_it(two_pipelines, app_env):
    entries = json.loads(two_pipelines["PIPELINES"])
    entries[1]["MONGO_DB"] = ""
    app_env({**two_pipelines, "PIPELINES": json.dumps(entries)})
    with pytest.raises(SettingsError, match=r"PIPELINES\[1\]\.MONGO_COLL: needs MONGO_DB"):
        invoke(function_app.drain, TimerRequest(past_due=False))
    code, body, _ = call_status()
    assert code == 500 and "PIPELINES[1].MONGO_COLL" in body["error"]["message"]


def test_every_pipeline_run_report_reaches_the_host(two_pipelines, app_env):
    """The worker keeps only records whose thread carries the invocation id: both run reports,
    logged from the pipelines' threads, must be kept under the timer's invocation."""
    handler = WorkerLogHandler()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    app_env(two_pipelines)
    try:
        with pytest.raises(RuntimeError, match=r"\(broken\)"):
            invoke(function_app.drain, TimerRequest(past_due=False), context=Context(invocation_id="tick-1"))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    reports = [json.loads(r.getMessage()) for inv, r in handler.kept if r.getMessage().startswith("{")]
    assert sorted(r["pipeline"] for r in reports) == ["broken", "good"]
    assert {inv for inv, _ in handler.kept} == {"tick-1"}
    assert not [r.getMessage() for r in handler.dropped if r.name.startswith("shared")]
