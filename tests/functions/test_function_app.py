"""The Functions app without the host: bindings from the indexed app, the function called directly."""

from __future__ import annotations

import json

import pytest
from azure.functions.timer import TimerRequest
from croniter import croniter

import function_app
from devtools.functions_worker import invoke
from shared.checkpoint import CheckpointStore
from shared.settings import SETTINGS, Settings


@pytest.fixture(scope="module")
def functions():
    # get_functions() may be called once per app object
    return {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


def test_drain_is_a_timer_on_the_schedule_setting(functions):
    binding = json.loads(functions["drain"].get_function_json())["bindings"][0]
    assert binding["type"] == "timerTrigger" and binding["direction"] == "IN"
    assert binding["schedule"] == "%DRAIN_SCHEDULE%"
    assert binding["runOnStartup"] is False and binding["useMonitor"] is True


def test_the_app_has_exactly_the_drain_timer_and_the_status_route(functions):
    assert set(functions) == {"drain", "status"}


def test_status_is_a_get_route_behind_a_function_key(functions):
    bindings = json.loads(functions["status"].get_function_json())["bindings"]
    trigger = next(b for b in bindings if b["type"] == "httpTrigger")
    assert trigger["direction"] == "IN" and trigger["route"] == "status"
    assert trigger["methods"] == ["GET"] and trigger["authLevel"] == "FUNCTION"
    assert any(b["type"] == "http" and b["direction"] == "OUT" for b in bindings)


def test_default_schedule_is_every_minute():
    default = next(s.default for s in SETTINGS if s.name == "DRAIN_SCHEDULE")
    assert default == "0 */1 * * * *"
    it = croniter(default, second_at_beginning=True, start_time=0)
    assert [it.get_next() for _ in range(3)] == [60, 120, 180]


def test_local_settings_example_points_at_the_local_stack():
    with open("local.settings.json.example", encoding="utf-8") as handle:
        values = json.load(handle)["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert {s.name for s in SETTINGS} <= set(values) | {"ADLS_SAS", "ADLS_CONNECTION_STRING", "CHECKPOINT_ACCOUNT_URL"}
    Settings.from_env(values)  # valid as shipped
    # The host resolves %DRAIN_SCHEDULE% itself and has no default: it must be in the host's settings.
    assert croniter.is_valid(values["DRAIN_SCHEDULE"], second_at_beginning=True)


def test_readme_starts_the_host_with_the_venv_active():
    with open("README.md", encoding="utf-8") as handle:
        text = handle.read()
    steps = text[text.index("cp local.settings.json.example local.settings.json"):]
    assert steps.index("source .venv/bin/activate") < steps.index("func start")
    assert "DRAIN_SCHEDULE` is required in the host's settings" in text


def test_timer_call_drains_against_the_local_stack(monkeypatch, stack_env, fresh_filesystem, fresh_table_name,
                                                    mongo_client, fresh_db_name, datalake_service):
    env = {**stack_env, "ADLS_FILESYSTEM": fresh_filesystem, "CHECKPOINT_TABLE": fresh_table_name,
           "MONGO_DB": fresh_db_name, "DRAIN_SCHEDULE": "0 */1 * * * *", "DRAIN_BUDGET_SECONDS": "20"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    invoke(function_app.drain, TimerRequest(past_due=False))  # first tick: saves the starting position
    mongo_client[fresh_db_name].orders.insert_many([{"i": i} for i in range(4)])
    invoke(function_app.drain, TimerRequest(past_due=True))
    checkpoint = CheckpointStore(Settings.from_env(env)).load().checkpoint
    assert checkpoint.seq == 4 and checkpoint.last_run["events"] == 4
    fs = datalake_service.get_file_system_client(fresh_filesystem)
    files = [p.name for p in fs.get_paths(recursive=True) if not p.is_directory]
    data = [f for f in files if not f.startswith("_manifests/")]
    assert len(data) == 1 and data[0].startswith(f"{fresh_db_name}/orders/year=")
    assert [f.rpartition("/")[2] for f in files if f.startswith("_manifests/")] == [
        "00000000000000000001-00000000000000000004.json"]


def test_a_failed_run_raises_so_the_host_records_it(monkeypatch, stack_env, fresh_table_name):
    env = {**stack_env, "CHECKPOINT_TABLE": fresh_table_name,
           "MONGO_URI": "mongodb://127.0.0.1:1/?replicaSet=x&serverSelectionTimeoutMS=300"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError, match="transient"):
        invoke(function_app.drain, TimerRequest(past_due=False))
