"""Settings: one typed object from the environment; every problem names its setting, no secret shown."""

import pytest

from shared.errors import SettingsError
from shared.settings import SETTINGS, Scope, Settings, default_pipeline_name

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
    assert s.mongo_pipeline == ({"$match": {"operationType": "insert"}},)
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


def test_identity_depends_on_scope_and_filter_only():
    a = parse(MONGO_DB="shop")
    assert a.pipeline_identity == parse(MONGO_DB="shop", JSON_MODE="canonical").pipeline_identity
    assert a.pipeline_identity != parse(MONGO_DB="shop", MONGO_COLL="orders").pipeline_identity
    assert a.pipeline_identity != parse(MONGO_DB="shop", MONGO_PIPELINE='[{"$match": {"x": 1}}]').pipeline_identity


def test_default_pipeline_name_is_table_safe():
    name = default_pipeline_name(Scope("a/b#c", "d?e"))
    assert not any(c in name for c in "/\\#?")


def test_settings_list_is_complete():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for field_name in ("MONGO_URI", "DRAIN_SCHEDULE", "ROLL_WINDOW", "ON_HISTORY_LOST"):
        assert field_name in names
