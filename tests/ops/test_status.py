"""The ``status`` HTTP function and ``python -m shared status``: one body, 200 healthy, 503 not."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from azure.data.tables import UpdateMode

from devtools.stack import DEV_KEY
from shared.drain import run_drain
from shared.settings import Settings

from .conftest import call_status, run_cli


def drain(env: dict):
    report = run_drain(Settings.from_env(env), env=env)
    assert report.outcome != "failed", report.error
    return report


def without_clock(body: dict) -> dict:
    """The body without what moves with the clock between two calls."""
    body = json.loads(json.dumps(body))
    body.pop("checked_at")
    for pipeline in body["pipelines"]:
        if pipeline.get("checkpoint"):
            pipeline["checkpoint"].pop("position_age_seconds")
    return body


def test_a_pipeline_that_never_ran_is_unhealthy(ops_env, app_env):
    app_env(ops_env)
    code, body, _ = call_status()
    assert code == 503 and body["healthy"] is False
    (status,) = body["pipelines"]
    assert status["checkpoint"] is None and "no checkpoint yet" in status["reason"]


def test_after_a_run_status_is_200_with_position_event_time_lag_and_last_run(ops_env, app_env, mongo_client):
    drain(ops_env)  # first run: saves the starting position
    mongo_client[ops_env["MONGO_DB"]].orders.insert_many([{"i": i} for i in range(3)])
    drain(ops_env)
    app_env(ops_env)
    code, body, _ = call_status()
    assert code == 200, body
    assert body["healthy"] is True and body["reason"] == "ok"
    (status,) = body["pipelines"]
    assert status["pipeline"] == f"coll-{ops_env['MONGO_DB']}.orders" and status["healthy"] is True
    checkpoint = status["checkpoint"]
    assert 0 <= checkpoint["position_age_seconds"] < 600 and checkpoint["position_saved_at"]
    assert checkpoint["seq"] == 3 and checkpoint["last_event_cluster_time"].endswith("Z")
    assert status["lag_seconds"] == 0.0
    assert status["last_run"]["events"] == 3 and status["last_run"]["outcome"] == "caught_up"
    assert status["last_error"] is None


def test_an_old_position_answers_503(ops_env, app_env, table_service):
    drain(ops_env)
    table = table_service.get_table_client(ops_env["CHECKPOINT_TABLE"])
    name = Settings.from_env(ops_env).pipeline_name
    old = (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat()
    table.update_entity({"PartitionKey": name, "RowKey": "checkpoint", "committed_at": old}, mode=UpdateMode.MERGE)
    app_env(ops_env)
    code, body, _ = call_status()
    assert code == 503 and body["healthy"] is False and name in body["reason"]
    (status,) = body["pipelines"]
    assert status["checkpoint"]["position_age_seconds"] > 7000
    assert "limit 600 s" in status["reason"]
    app_env({**ops_env, "STATUS_MAX_POSITION_AGE_SECONDS": "86400"})  # a looser limit: healthy again
    assert call_status()[0] == 200


def test_a_failed_last_run_answers_503_with_its_error(ops_env, app_env):
    drain(ops_env)
    # the same deployment (so the same pipeline identity), unreachable: TLS against a plain server
    broken = {**ops_env, "MONGO_URI": ops_env["MONGO_URI"] + "&tls=true&serverSelectionTimeoutMS=300"}
    assert run_drain(Settings.from_env(broken), env=broken).outcome == "failed"
    app_env(ops_env)
    code, body, _ = call_status()
    (status,) = body["pipelines"]
    assert code == 503 and "last run failed (transient)" in status["reason"]
    assert status["last_error"]["kind"] == "transient" and status["last_run"]["outcome"] == "failed"


def test_the_command_shows_the_same_as_the_function(ops_env, app_env, mongo_client):
    drain(ops_env)
    mongo_client[ops_env["MONGO_DB"]].orders.insert_one({"x": 1})
    drain(ops_env)
    app_env(ops_env)
    code, body, _ = call_status()
    proc = run_cli("status", env=ops_env)
    assert code == 200 and proc.returncode == 0, proc.stderr
    assert without_clock(json.loads(proc.stdout)) == without_clock(body)


def test_the_command_exits_3_when_unhealthy_with_the_same_body(ops_env, app_env):
    app_env(ops_env)
    code, body, _ = call_status()
    proc = run_cli("status", env=ops_env)
    assert code == 503 and proc.returncode == 3
    assert without_clock(json.loads(proc.stdout)) == without_clock(body)


def test_no_secret_in_the_response(ops_env, app_env, table_service):
    password = "St4tusS3cretPw"
    env = {**ops_env, "MONGO_URI": f"mongodb://admin:{password}@127.0.0.1:1/?replicaSet=x"}
    # a corrupt checkpoint row: the status names the problem, still without a secret
    name = Settings.from_env(env).pipeline_name
    table_service.create_table(env["CHECKPOINT_TABLE"]).create_entity(
        {"PartitionKey": name, "RowKey": "checkpoint", "schema": 1, "seq": "not a number"})
    app_env(env)
    code, body, text = call_status()
    assert code == 503 and body["pipelines"][0]["error"]["kind"] == "terminal"
    assert "corrupt" in body["pipelines"][0]["error"]["message"]
    for secret in (password, DEV_KEY, env["CHECKPOINT_CONNECTION_STRING"], env["ADLS_SHARED_KEY"]):
        assert secret not in text
    proc = run_cli("status", env=env)
    assert proc.returncode == 3 and password not in proc.stdout + proc.stderr and DEV_KEY not in proc.stdout


def test_invalid_settings_answer_500_naming_the_setting(ops_env, app_env):
    app_env({**ops_env, "ROLL_WINDOW": "7m"})
    code, body, text = call_status()
    assert code == 500 and body["healthy"] is False and "ROLL_WINDOW" in body["error"]["message"]
    assert DEV_KEY not in text
