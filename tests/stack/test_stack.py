"""The local stack as developers use it: ``python -m devtools.stack up|status|down`` (what
``make services`` runs), in a temporary directory on free ports, then SDK calls against the settings
it printed. Also the session stack's MongoDB restart helper and the pure helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.stack import (
    DEV_KEY,
    SETTING_NAMES,
    LocalStack,
    Ports,
    ProcessRecord,
    StackError,
    _proc_start_time,
    format_env,
    shell_exports,
    stack_settings,
)
from shared.envfile import parse_env, read_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devtools.stack", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def recorded_pids(base: Path) -> dict[str, int]:
    return {p.stem: ProcessRecord.from_json(p.read_text()).pid for p in sorted((base / "run").glob("*.json"))}


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state not in ("Z", "X"):
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def cli_stack(tmp_path_factory):
    """A stack started by the CLI, the way `make services` does; stopped at the end in any case."""
    base = tmp_path_factory.mktemp("cli-stack") / ".local"
    ports = Ports.free()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACK_")}
    env.update({var: str(getattr(ports, field)) for field, var in Ports.ENV.items()})
    result = run_cli("up", "--dir", str(base), env=env)
    try:
        assert result.returncode == 0, result.stderr + result.stdout
        yield {"base": base, "ports": ports, "env": env, "up": result}
    finally:
        run_cli("down", "--dir", str(base), env=env)
        LocalStack(base, ports).stop()  # belt and braces: kills nothing that is not recorded


@pytest.fixture(scope="module")
def cli_settings(cli_stack) -> dict[str, str]:
    return read_env(cli_stack["base"] / "stack.env")


def test_up_writes_and_prints_settings(cli_stack, cli_settings):
    ports: Ports = cli_stack["ports"]
    assert list(cli_settings) == list(SETTING_NAMES)
    assert cli_settings == stack_settings(ports)
    assert cli_settings["MONGO_URI"] == f"mongodb://127.0.0.1:{ports.mongo}/?replicaSet=secantus"
    assert cli_settings["ADLS_ACCOUNT_URL"] == f"http://127.0.0.1:{ports.adls}/devstoreaccount1"
    assert cli_settings["ADLS_FILESYSTEM"] == "bronze"
    assert cli_settings["ADLS_SHARED_KEY"] == DEV_KEY
    assert (
        f"TableEndpoint=http://127.0.0.1:{ports.table}/devstoreaccount1"
        in cli_settings["CHECKPOINT_CONNECTION_STRING"]
    )
    for name, port in (("Blob", ports.blob), ("Queue", ports.queue), ("Table", ports.table)):
        assert (
            f"{name}Endpoint=http://127.0.0.1:{port}/devstoreaccount1;" in cli_settings["AzureWebJobsStorage"]
        )
    # what `up` printed is what it wrote
    assert parse_env(cli_stack["up"].stdout) == cli_settings
    base: Path = cli_stack["base"]
    assert sorted(recorded_pids(base)) == ["adls", "azurite", "mongo"]
    assert {p.name for p in (base / "logs").iterdir()} >= {"mongo.log", "azurite.log", "adls.log"}


def test_second_up_is_idempotent(cli_stack, cli_settings):
    base: Path = cli_stack["base"]
    before = recorded_pids(base)
    result = run_cli("up", "--dir", str(base), env=cli_stack["env"])
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    assert recorded_pids(base) == before
    assert read_env(base / "stack.env") == cli_settings
    # one process per service, no duplicates
    assert sorted(processes_mentioning(str(base / "data"))) == sorted(before.values())


def test_status_reports_running(cli_stack):
    result = run_cli("status", "--dir", str(cli_stack["base"]), env=cli_stack["env"])
    assert result.returncode == 0, result.stderr
    lines = [
        line for line in result.stdout.splitlines() if line.split()[:1] in (["mongo"], ["azurite"], ["adls"])
    ]
    assert len(lines) == 3
    assert all("running (pid" in line and "NOT" not in line for line in lines), result.stdout


def test_env_prints_shell_exports(cli_stack, cli_settings):
    result = run_cli("env", "--dir", str(cli_stack["base"]), env=cli_stack["env"])
    assert result.returncode == 0, result.stderr
    shell = subprocess.run(
        ["bash", "-c", result.stdout + 'printf "%s" "$AzureWebJobsStorage"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == cli_settings["AzureWebJobsStorage"]


def test_mongo_ping_and_change_stream(cli_settings):
    import pymongo

    client = pymongo.MongoClient(cli_settings["MONGO_URI"], serverSelectionTimeoutMS=10000)
    try:
        assert client.admin.command("ping")["ok"] == 1
        coll = client["stacktest"]["items"]
        with coll.watch(max_await_time_ms=500) as stream:
            coll.insert_one({"_id": 1, "x": "hello"})
            deadline = time.monotonic() + 10
            change = None
            while change is None and time.monotonic() < deadline:
                change = stream.try_next()
        assert change is not None
        assert change["operationType"] == "insert"
        assert change["fullDocument"] == {"_id": 1, "x": "hello"}
    finally:
        client.close()


def test_table_create(cli_settings):
    from azure.data.tables import TableServiceClient

    with TableServiceClient.from_connection_string(cli_settings["CHECKPOINT_CONNECTION_STRING"]) as service:
        table = service.create_table("stacktest")
        table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
        assert table.get_entity("p", "r")["v"] == 1


def test_azure_webjobs_storage_blob_and_queue(cli_settings):
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(cli_settings["AzureWebJobsStorage"]) as service:
        container = service.create_container("azure-webjobs-hosts")
        container.upload_blob("locks/x", b"lease me")
        assert container.download_blob("locks/x").readall() == b"lease me"


def test_adls_file_roundtrip(cli_settings):
    from azure.storage.filedatalake import DataLakeServiceClient

    credential = {"account_name": "devstoreaccount1", "account_key": cli_settings["ADLS_SHARED_KEY"]}
    with DataLakeServiceClient(cli_settings["ADLS_ACCOUNT_URL"], credential=credential) as service:
        fs = service.create_file_system(cli_settings["ADLS_FILESYSTEM"])
        file = fs.get_file_client("db/coll/year=2026/month=01/day=02/part-0001.jsonl")
        file.create_file()
        first, second = b'{"a": 1}\n', b'{"b": 2}\n'
        file.append_data(first, offset=0, length=len(first))
        file.append_data(second, offset=len(first), length=len(second))
        file.flush_data(len(first) + len(second))
        assert file.download_file().readall() == first + second
        assert [p.name for p in fs.get_paths(recursive=True) if not p.is_directory] == [file.path_name]


def test_down_stops_every_process(cli_stack):
    base: Path = cli_stack["base"]
    pids = recorded_pids(base)
    assert len(pids) == 3
    result = run_cli("down", "--dir", str(base), env=cli_stack["env"])
    assert result.returncode == 0, result.stderr
    for name, pid in pids.items():
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"), name
    assert processes_mentioning(str(base / "data")) == []
    assert recorded_pids(base) == {}
    again = run_cli("down", "--dir", str(base), env=cli_stack["env"])
    assert again.returncode == 0 and "nothing was running" in again.stdout
    ports: Ports = cli_stack["ports"]
    for port in ports.as_dict().values():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


# ---- the session stack's MongoDB restart (used by reliability tests) --------------------------------


def test_restart_mongo_keeps_data_and_streams_resume(stack, mongo_client, mongo_restart, fresh_db_name):
    coll = mongo_client[fresh_db_name]["items"]
    coll.insert_one({"_id": "before"})
    with coll.watch() as stream:
        old_pid = stack.pids()["mongo"]
        mongo_restart()
        assert stack.pids()["mongo"] != old_pid
        coll.insert_one({"_id": "after"})
        change = None
        deadline = time.monotonic() + 20
        while change is None and time.monotonic() < deadline:
            change = stream.try_next()
    assert change is not None and change["documentKey"] == {"_id": "after"}
    assert sorted(d["_id"] for d in coll.find()) == ["after", "before"]


def test_restart_from_a_worker_thread_outlives_the_thread(stack, mongo_client, mongo_restart):
    import threading

    worker = threading.Thread(target=mongo_restart)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()
    time.sleep(0.5)  # a server tied to the finished thread would be gone by now
    assert stack.status()["mongo"]["ready"]
    assert mongo_client.admin.command("ping")["ok"] == 1


# ---- safety: ports in use, foreign PIDs ---------------------------------------------------------------


def test_port_in_use_is_reported(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        free = Ports.free()
        stack = LocalStack(
            tmp_path, Ports(port, free.blob, free.queue, free.table, free.adls), services=("mongo",)
        )
        with pytest.raises(StackError, match=r"port \d+ is already in use.*STACK_MONGO_PORT"):
            stack.start()
    assert stack.pids() == {}


def test_down_never_kills_a_process_it_did_not_start(tmp_path):
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stack = LocalStack(tmp_path, Ports.free(), services=("mongo",))
        record_file = tmp_path / "run" / "mongo.json"
        record_file.parent.mkdir(parents=True)
        real_start = _proc_start_time(stranger.pid)
        # the PID now belongs to another program (PID reuse); the same program but started at another time
        for start_time, argv in (
            (real_start, ["/somewhere/secantusd-py", "--port", "1"]),
            (real_start - 1, ["sleep", "60"]),
        ):
            record = ProcessRecord("mongo", stranger.pid, start_time, argv, {"mongo": 1}, "log")
            record_file.write_text(record.to_json())
            assert stack.stop() == []
            assert stranger.poll() is None
            assert not record_file.exists()
        # control: the record of the very process is honoured
        record_file.write_text(
            ProcessRecord("mongo", stranger.pid, real_start, ["sleep", "60"], {"mongo": 1}, "log").to_json()
        )
        assert stack.stop() == ["mongo"]
        assert stranger.wait(timeout=5) == -15
    finally:
        stranger.kill()
        stranger.wait()


# ---- pure helpers ---------------------------------------------------------------------------------------


def test_ports_from_env_and_defaults():
    assert Ports.from_env({}) == Ports(27117, 10000, 10001, 10002, 10100)
    assert Ports.from_env({"STACK_MONGO_PORT": "28000", "STACK_ADLS_PORT": " 9999 "}).as_dict() == {
        "mongo": 28000,
        "blob": 10000,
        "queue": 10001,
        "table": 10002,
        "adls": 9999,
    }
    with pytest.raises(ValueError, match="STACK_TABLE_PORT"):
        Ports.from_env({"STACK_TABLE_PORT": "abc"})
    with pytest.raises(ValueError, match="differ"):
        Ports.from_env({"STACK_ADLS_PORT": "10000"})
    free = Ports.free()
    assert len(set(free.as_dict().values())) == 5


def test_env_file_round_trip_and_shell_quoting():
    settings = stack_settings(Ports())
    text = format_env(settings, header="two\nlines")
    assert text.startswith("# two\n# lines\n")
    assert parse_env(text) == settings
    assert parse_env("export A='x=1;y'\n\n# c\nB=\"q\"\n") == {"A": "x=1;y", "B": "q"}
    assert parse_env(shell_exports(settings)) == settings
    with pytest.raises(ValueError):
        format_env({"A": "line\nbreak"})
    with pytest.raises(ValueError, match="line 1"):
        parse_env("no equals sign")
