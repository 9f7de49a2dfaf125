"""Credentials never appear in logs, run reports, exceptions, Table rows or lake files.

The Mongo URI carries a user and password (a user created on the private server), the lake uses
a shared key and the checkpoint table a connection string with an account key. Each scenario
captures everything the run leaves behind and scans it for every secret value (and the password's
URL-encoded form)."""

from __future__ import annotations

import json
import logging
import urllib.parse

import pytest

PASSWORD = "s3cr3t/Pa55:w@rd!"


@pytest.fixture(scope="module")
def mongo_user(test_commands_mongo):
    test_commands_mongo.client.admin.command("createUser", "drain-reader", pwd=PASSWORD, roles=["read"])
    return "drain-reader"


def _uri(server, user: str, password: str) -> str:
    return server.uri.replace("mongodb://", f"mongodb://{user}:{urllib.parse.quote(password, safe='')}@")


def _secrets(pipeline) -> list[str]:
    values = [PASSWORD, urllib.parse.quote(PASSWORD, safe=""), pipeline.env["ADLS_SHARED_KEY"]]
    for part in pipeline.env["CHECKPOINT_CONNECTION_STRING"].split(";"):
        if part.startswith("AccountKey="):
            values.append(part.removeprefix("AccountKey="))
    return values


def _everything(pipeline, *texts: str) -> str:
    table = pipeline.store()._table
    rows = [dict(r) for r in table.query_entities(f"PartitionKey eq '{pipeline.name}'")]
    lake = b"".join(pipeline.lake_files().values()).decode("utf-8", "replace")
    return "\n".join([*texts, json.dumps(rows, default=str), lake, "\n".join(pipeline.lake_files())])


def _assert_clean(pipeline, *texts: str) -> None:
    haystack = _everything(pipeline, *texts)
    leaked = [i for i, secret in enumerate(_secrets(pipeline)) if secret in haystack]
    if leaked:  # not an assert: pytest would print the values it compared
        pytest.fail(f"secrets number {leaked} of {_secrets.__name__}() leaked (values not shown)")


@pytest.mark.slow
def test_no_secret_in_a_successful_run(make_failpoint_pipeline, test_commands_mongo, mongo_user):
    pipeline = make_failpoint_pipeline(scope="collection")
    pipeline.env["MONGO_URI"] = _uri(test_commands_mongo, mongo_user, PASSWORD)
    pipeline.collection().insert_many([{"i": i, "note": "no secrets here"} for i in range(20)])
    result = pipeline.drain()
    assert result.outcome == "caught_up" and result.report["events"] == 20, result.describe()
    _assert_clean(pipeline, result.stdout, result.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["mongo_password", "lake_key", "lake_unreachable"])
def test_no_secret_in_a_failed_run(make_failpoint_pipeline, test_commands_mongo, mongo_user, what):
    pipeline = make_failpoint_pipeline(scope="collection")
    pipeline.env["MONGO_URI"] = _uri(test_commands_mongo, mongo_user, PASSWORD)
    pipeline.collection().insert_many([{"i": i} for i in range(5)])
    if what == "mongo_password":
        # the right user with a wrong password that contains the real one: redaction must not depend
        # on the failing value being the configured one
        pipeline.env["MONGO_URI"] = _uri(test_commands_mongo, mongo_user, PASSWORD + "x")
        expected = "refused the credentials"
    elif what == "lake_key":
        # a valid-looking key that is not the account's
        pipeline.env["ADLS_SHARED_KEY"] = "QUJD" * 22
        expected = "refused the credentials"
    else:
        pipeline.env["ADLS_ACCOUNT_URL"] = "http://127.0.0.1:9/devstoreaccount1"  # nothing listens there
        expected = "creating"
    result = pipeline.drain(DRAIN_BUDGET_SECONDS=10)
    assert result.returncode in (1, 2) and result.outcome == "failed", result.describe()
    assert expected in result.report["error"]["message"], result.describe()
    _assert_clean(pipeline, result.stdout, result.stderr)


@pytest.mark.slow
def test_no_secret_in_debug_logs_of_a_run_in_process(make_failpoint_pipeline, test_commands_mongo, mongo_user,
                                                   caplog):
    """Every logger at DEBUG (the app's, pymongo's, the Azure SDK's HTTP logging)."""
    pipeline = make_failpoint_pipeline(scope="collection")
    pipeline.env["MONGO_URI"] = _uri(test_commands_mongo, mongo_user, PASSWORD)
    pipeline.collection().insert_many([{"i": i} for i in range(5)])
    with caplog.at_level(logging.DEBUG):
        report = pipeline.drain_in_process()
        bad = pipeline.drain_in_process(env_overrides={"MONGO_URI": _uri(test_commands_mongo, mongo_user, "wrong")})
    assert report.outcome == "caught_up" and bad.outcome == "failed", (report, bad)
    assert caplog.records, "nothing was logged: the scan would prove nothing"
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    _assert_clean(pipeline, text, json.dumps(report.as_dict(), default=str), json.dumps(bad.as_dict(), default=str),
                  repr(pipeline.settings()))
