"""Settings: one typed object from the environment; every problem names its setting, no secret shown."""

import json
import re
from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import (
    FUNCTION_TIMEOUT_SECONDS,
    SETTINGS,
    Scope,
    Settings,
    default_pipeline_name,
    identity_differences,
)

ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "s3cr3t-P@ss"
BASE = {
    "MONGO_URI": f"mongodb://user:{PASSWORD}@db.example.net:27017/?replicaSet=rs0",
    "ADLS_ACCOUNT_URL": "https://lake.dfs.core.windows.net",
    "CHECKPOINT_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=QUJDREVGRw==;",
}


def parse(**changes):
    env = {**BASE, **{k: v for k, v in changes.items() if v is not None}}
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
    return Settings.from_env(env)


def test_defaults():
    s = parse()
    assert s.scope.kind == "deployment"
    assert s.full_document == "updateLookup" and s.full_document_before_change == "whenAvailable"
    assert s.adls_filesystem == "bronze" and s.checkpoint_table == "changestreamcheckpoints"
    assert s.drain_budget_seconds == 45 and s.start_at is None and s.json_mode == "relaxed"
    assert s.roll_window_seconds == 3600 and s.roll_max_bytes == 128 * 1024 * 1024
    assert s.drain_schedule == "0 */1 * * * *" and s.on_history_lost == "fail"
    assert s.pipeline_name == "deployment"


@pytest.mark.parametrize("db,coll,kind,name", [
    ("shop", "orders", "collection", "coll-shop.orders"),
    ("shop", None, "database", "db-shop"),
    (None, None, "deployment", "deployment"),
])
def test_scopes(db, coll, kind, name):
    s = parse(MONGO_DB=db, MONGO_COLL=coll)
    assert s.scope == Scope(db, coll) and s.scope.kind == kind and s.pipeline_name == name


@pytest.mark.parametrize("name,value,expected", [
    ("MONGO_URI", None, "MONGO_URI: required"),
    ("MONGO_URI", "http://x", "MONGO_URI: must start with"),
    ("MONGO_COLL", "orders", "MONGO_COLL: needs MONGO_DB"),
    ("MONGO_PIPELINE", "{not json", "MONGO_PIPELINE: not valid JSON"),
    ("MONGO_PIPELINE", '{"$match": {}}', "MONGO_PIPELINE: expected a JSON array"),
    ("MONGO_PIPELINE", '[{"match": {}}]', "does not start with $"),
    ("MONGO_FULL_DOC", "always", "MONGO_FULL_DOC: 'always' is not one of"),
    ("MONGO_FULL_DOC_BEFORE_CHANGE", "yes", "MONGO_FULL_DOC_BEFORE_CHANGE:"),
    ("ADLS_ACCOUNT_URL", None, "ADLS_ACCOUNT_URL: required"),
    ("ADLS_ACCOUNT_URL", "lake.dfs.core.windows.net", "ADLS_ACCOUNT_URL: must be an http(s) URL"),
    ("ADLS_FILESYSTEM", "Bad_Name", "ADLS_FILESYSTEM:"),
    ("CHECKPOINT_TABLE", "1abc", "CHECKPOINT_TABLE:"),
    ("CHECKPOINT_CONNECTION_STRING", None, "CHECKPOINT_CONNECTION_STRING: set it"),
    ("DRAIN_SCHEDULE", "*/5 * * * *", "DRAIN_SCHEDULE: '*/5 * * * *' needs six fields"),
    ("DRAIN_SCHEDULE", "0 */1 * * * foo", "DRAIN_SCHEDULE:"),
    ("DRAIN_BUDGET_SECONDS", "fast", "DRAIN_BUDGET_SECONDS: 'fast' is not a number"),
    ("DRAIN_BUDGET_SECONDS", "0", "DRAIN_BUDGET_SECONDS: '0' must be between"),
    ("START_AT", "yesterday", "START_AT: 'yesterday' is neither"),
    ("JSON_MODE", "strict", "JSON_MODE:"),
    ("ROLL_WINDOW", "7m", "ROLL_WINDOW: '7m' must be at least a minute and divide a day"),
    ("ROLL_WINDOW", "hourly", "ROLL_WINDOW: 'hourly' is not a duration"),
    ("ROLL_MAX_BYTES", "big", "ROLL_MAX_BYTES: 'big' is not a size"),
    ("MAX_BUFFER_BYTES", "10", "MAX_BUFFER_BYTES: '10' is smaller than"),
    ("ON_HISTORY_LOST", "skip", "ON_HISTORY_LOST:"),
    ("PIPELINE_NAME", "a/b", "PIPELINE_NAME:"),
])
def test_invalid_values_name_the_setting(name, value, expected):
    with pytest.raises(SettingsError) as info:
        parse(**{name: value})
    assert expected in str(info.value)
    assert PASSWORD not in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(SettingsError) as info:
        parse(JSON_MODE="x", ROLL_WINDOW="x", DRAIN_BUDGET_SECONDS="x")
    assert all(n in str(info.value) for n in ("JSON_MODE", "ROLL_WINDOW", "DRAIN_BUDGET_SECONDS"))


def test_one_lake_credential_at_most():
    with pytest.raises(SettingsError, match="ADLS_SAS, ADLS_SHARED_KEY: set at most one"):
        parse(ADLS_SAS="sv=1&sig=abc", ADLS_SHARED_KEY="QUJD")


def test_values_parsed():
    s = parse(ROLL_WINDOW="15m", ROLL_MAX_BYTES="64MB", MAX_BUFFER_BYTES="1GiB", START_AT="2026-01-31T00:00:00Z",
              MONGO_PIPELINE='[{"$match": {"operationType": "insert"}}]', MONGO_FULL_DOC_BEFORE_CHANGE="off",
              ADLS_SAS="?sv=2024&sig=abc")
    assert s.roll_window_seconds == 900 and s.roll_max_bytes == 64_000_000 and s.max_buffer_bytes == 1024**3
    assert s.start_at.isoformat() == "2026-01-31T00:00:00+00:00"
    assert s.stages == s.mongo_pipeline == ({"$match": {"operationType": "insert"}},)
    assert s.full_document_before_change is None
    assert s.adls_sas == "sv=2024&sig=abc"


def test_checkpoint_falls_back_to_webjobs_storage():
    s = parse(CHECKPOINT_CONNECTION_STRING=None, AzureWebJobsStorage="UseDevelopmentStorage=true")
    assert "devstoreaccount1" in s.checkpoint_connection_string


def test_secrets_never_in_repr():
    s = parse(ADLS_SHARED_KEY="QUJDREVGR0hJSktM")
    text = repr(s) + str(s)
    assert PASSWORD not in text and "QUJDREVGR0hJSktM" not in text and "QUJDREVGRw==" not in text
    assert PASSWORD in s.secrets and "QUJDREVGRw==" in s.secrets


def test_identity_names_what_decides_the_events_and_the_lake():
    s = parse(MONGO_DB="shop", MONGO_PIPELINE='[{"$match": {"n": {"$numberLong": "1"}}}]')
    assert s.identity == {
        "MONGO_URI": {"hosts": ["db.example.net:27017"], "replicaSet": "rs0"},
        "MONGO_DB": "shop", "MONGO_COLL": None,
        "MONGO_PIPELINE": '[{"$match":{"n":{"$numberLong":"1"}}}]',
        "MONGO_FULL_DOC": "updateLookup", "MONGO_FULL_DOC_BEFORE_CHANGE": "whenAvailable",
        "ADLS_ACCOUNT_URL": "lake.dfs.core.windows.net", "ADLS_FILESYSTEM": "bronze",
    }
    assert json.loads(json.dumps(s.identity)) == s.identity
    assert set(s.identity) == {x.name for x in SETTINGS if x.identity}
    assert re.fullmatch(r"[0-9a-f]{32}", s.pipeline_identity)
    assert PASSWORD not in json.dumps(s.identity) and "user" not in json.dumps(s.identity)


@pytest.mark.parametrize("changes", [
    {"JSON_MODE": "canonical"}, {"ROLL_WINDOW": "5m"}, {"ROLL_MAX_BYTES": "1MiB"}, {"MAX_BUFFER_BYTES": "1MiB"},
    {"PIPELINE_NAME": "other"}, {"ADLS_SHARED_KEY": "QUJD"}, {"DRAIN_BUDGET_SECONDS": "30"},
    {"MONGO_URI": "mongodb://other:pw@DB.example.net/?replicaSet=rs0&tls=true"},  # same hosts, other user
    {"ADLS_ACCOUNT_URL": "https://LAKE.dfs.core.windows.net/"},
])
def test_identity_ignores_what_a_replay_handles(changes):
    assert parse(MONGO_DB="shop", **changes).pipeline_identity == parse(MONGO_DB="shop").pipeline_identity


@pytest.mark.parametrize("changes", [
    {"MONGO_COLL": "orders"}, {"MONGO_PIPELINE": '[{"$match": {"x": 1}}]'}, {"MONGO_FULL_DOC": "default"},
    {"MONGO_FULL_DOC_BEFORE_CHANGE": "off"}, {"ADLS_FILESYSTEM": "silver"},
    {"ADLS_ACCOUNT_URL": "https://other.dfs.core.windows.net"},
    {"MONGO_URI": "mongodb://db2.example.net:27017/?replicaSet=rs0"},
    {"MONGO_URI": "mongodb://db.example.net:27017/?replicaSet=rs1"},
])
def test_identity_changes_with_what_decides_the_stream(changes):
    assert parse(MONGO_DB="shop", **changes).pipeline_identity != parse(MONGO_DB="shop").pipeline_identity


def test_identity_of_mongo_hosts_and_lake_forms():
    many = parse(MONGO_URI="mongodb://u:p@B.example:27018,a.example/?replicaSet=rs").identity["MONGO_URI"]
    assert many == {"hosts": ["a.example:27017", "b.example:27018"], "replicaSet": "rs"}
    srv = parse(MONGO_URI="mongodb+srv://u:p@Cluster0.abc.mongodb.net/db").identity["MONGO_URI"]
    assert srv == {"srv": "cluster0.abc.mongodb.net"}
    by_conn = parse(ADLS_ACCOUNT_URL=None, ADLS_CONNECTION_STRING="DefaultEndpointsProtocol=https;"
                    "AccountName=Lake;AccountKey=QUJD;EndpointSuffix=core.windows.net").identity
    assert by_conn["ADLS_ACCOUNT_URL"] == "lake.dfs.core.windows.net"
    emulator = parse(ADLS_ACCOUNT_URL="http://127.0.0.1:10004/devstoreaccount1").identity
    assert emulator["ADLS_ACCOUNT_URL"] == "127.0.0.1:10004/devstoreaccount1"


def test_identity_differences_are_readable_and_hide_the_hosts():
    stored = parse(MONGO_FULL_DOC="default").identity
    current = parse(MONGO_FULL_DOC="updateLookup", MONGO_URI="mongodb://other.example/?replicaSet=rs0").identity
    assert identity_differences(stored, current) == [
        "MONGO_URI: the MongoDB hosts changed",
        "MONGO_FULL_DOC: 'default' when the checkpoint was written, 'updateLookup' now",
    ]
    assert identity_differences(current, current) == []
    assert identity_differences({}, {"MONGO_DB": "shop"}) == [
        "MONGO_DB: not recorded when the checkpoint was written, 'shop' now"]


def test_secrets_hold_the_mongo_password_encoded_and_decoded():
    s = parse(MONGO_URI="mongodb://user:p%40ss%2Fw%3Ard@db.example.net/?replicaSet=rs0")
    assert "p@ss/w:rd" in s.secrets and "p%40ss%2Fw%3Ard" in s.secrets


@pytest.mark.parametrize("value", ["0 */5 * * * *", "00:01:00", "00:00:30", "23:59:59", "1.00:00:00"])
def test_schedule_accepts_ncrontab_and_a_timespan(value):
    assert parse(DRAIN_SCHEDULE=value).drain_schedule == value


@pytest.mark.parametrize("value", ["00:00:00", "24:00:00", "00:61:00", "1.00:00:01", "2.00:00:00"])
def test_schedule_refuses_a_timespan_out_of_range(value):
    with pytest.raises(SettingsError, match="DRAIN_SCHEDULE: .*TimeSpan"):
        parse(DRAIN_SCHEDULE=value)


def test_budget_leaves_the_final_commit_inside_the_function_timeout():
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    hours, minutes, seconds = (int(x) for x in host["functionTimeout"].split(":"))
    assert FUNCTION_TIMEOUT_SECONDS == hours * 3600 + minutes * 60 + seconds
    assert parse(DRAIN_BUDGET_SECONDS=str(FUNCTION_TIMEOUT_SECONDS - 60)).drain_budget_seconds == 540
    with pytest.raises(SettingsError, match="DRAIN_BUDGET_SECONDS: '541' must be between 5 and 540 .*functionTimeout"):
        parse(DRAIN_BUDGET_SECONDS="541")
    assert parse().drain_budget_seconds == 45


def test_default_pipeline_name_is_table_safe():
    name = default_pipeline_name(Scope("a/b#c", "d?e"))
    assert not any(c in name for c in "/\\#?")


def test_settings_list_is_complete():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for field_name in ("MONGO_URI", "DRAIN_SCHEDULE", "ROLL_WINDOW", "ON_HISTORY_LOST"):
        assert field_name in names


def test_settings_are_frozen():
    s = parse()
    with pytest.raises(AttributeError):
        s.json_mode = "canonical"
