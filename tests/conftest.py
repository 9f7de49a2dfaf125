"""Shared fixtures: a private local stack per test session, or real services from TEST_* variables.

Without TEST_* variables the session starts its own stack (SecantusDB, Azurite, the ADLS Gen2
emulator) through ``devtools.stack.LocalStack`` on free ports in a temporary directory, and stops it
at the end, also after failures. It never touches a stack started by ``make services``.

Real services replace local ones when their settings are given:

    TEST_MONGO_URI                       a real replica set (mongod, Atlas)
    TEST_ADLS_ACCOUNT_URL                a real ADLS Gen2 account (https://ACCOUNT.dfs.core.windows.net),
      with TEST_ADLS_SHARED_KEY or TEST_ADLS_SAS
    TEST_CHECKPOINT_CONNECTION_STRING    a real storage account's Table endpoint

Values of TEST_* variables may be secrets: fixtures never print them (``stack_env`` redacts its repr).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `pytest` run without `python -m` from the repo root
    sys.path.insert(0, str(REPO_ROOT))

from devtools.stack import LocalStack, Ports, StackError  # noqa: E402
from shared.lake import account_name  # noqa: E402

# Real-service overrides: TEST_* variable -> the setting it replaces.
TEST_OVERRIDES = {
    "TEST_MONGO_URI": "MONGO_URI",
    "TEST_ADLS_ACCOUNT_URL": "ADLS_ACCOUNT_URL",
    "TEST_ADLS_SHARED_KEY": "ADLS_SHARED_KEY",
    "TEST_ADLS_SAS": "ADLS_SAS",
    "TEST_CHECKPOINT_CONNECTION_STRING": "CHECKPOINT_CONNECTION_STRING",
}
_SECRET_KEYS = (
    "MONGO_URI",
    "ADLS_SHARED_KEY",
    "ADLS_SAS",
    "CHECKPOINT_CONNECTION_STRING",
    "AzureWebJobsStorage",
)


def _given(name: str) -> str:
    return os.environ.get(name, "").strip()


def external_services() -> dict[str, str]:
    """Local service -> the TEST_* variable that replaces it with a real one."""
    out = {}
    if _given("TEST_MONGO_URI"):
        out["mongo"] = "TEST_MONGO_URI"
    if _given("TEST_ADLS_ACCOUNT_URL"):
        out["adls"] = "TEST_ADLS_ACCOUNT_URL"
    if _given("TEST_CHECKPOINT_CONNECTION_STRING"):
        out["azurite"] = "TEST_CHECKPOINT_CONNECTION_STRING"
    return out


class StackSettings(dict):
    """The settings dict; its repr hides secret values (they may come from TEST_* variables)."""

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _SECRET_KEYS and v else v) for k, v in self.items()}
        return f"StackSettings({shown!r})"

    __str__ = __repr__


def pytest_configure(config: pytest.Config) -> None:
    if _given("TEST_ADLS_ACCOUNT_URL") and not (_given("TEST_ADLS_SHARED_KEY") or _given("TEST_ADLS_SAS")):
        raise pytest.UsageError("TEST_ADLS_ACCOUNT_URL needs TEST_ADLS_SHARED_KEY or TEST_ADLS_SAS")
    if _given("TEST_ADLS_SHARED_KEY") and _given("TEST_ADLS_SAS"):
        raise pytest.UsageError("set only one of TEST_ADLS_SHARED_KEY and TEST_ADLS_SAS")


def pytest_report_header(config: pytest.Config) -> list[str]:
    ext = external_services()
    where = {
        "mongo": "real replica set (TEST_MONGO_URI)" if "mongo" in ext else "local SecantusDB",
        "adls": "real ADLS Gen2 account (TEST_ADLS_ACCOUNT_URL)"
        if "adls" in ext
        else "local ADLS Gen2 emulator",
        "tables": "real Table endpoint (TEST_CHECKPOINT_CONNECTION_STRING)"
        if "azurite" in ext
        else "local Azurite",
    }
    return ["stack: " + ", ".join(f"{k}: {v}" for k, v in where.items())]


# --------------------------------------------------------------------------------------------------
# The session's stack
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The session's private ``LocalStack`` (free ports, temporary directory), managing the services
    not replaced by TEST_* variables (``stack.manages(name)``); stopped at the end of the session.
    Logs: ``stack.logs_dir``. ``stack.restart_mongo()`` restarts the local MongoDB server."""
    services = [name for name in ("mongo", "azurite", "adls") if name not in external_services()]
    base = tmp_path_factory.mktemp("stack")
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port can be taken between choosing and binding it: retry
        local = LocalStack(base, Ports.free(), services=services, die_with_parent=True)
        try:
            local.start()
        except StackError as exc:
            local.stop()
            last_error = exc
            if "already in use" in str(exc):
                continue
            raise
        break
    else:
        raise last_error  # type: ignore[misc]
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def stack_env(stack: LocalStack) -> StackSettings:
    """Connection settings (MONGO_URI, ADLS_ACCOUNT_URL, ADLS_FILESYSTEM, ADLS_SHARED_KEY or ADLS_SAS,
    CHECKPOINT_CONNECTION_STRING, AzureWebJobsStorage when Azurite runs): the session stack's,
    with TEST_* overrides applied. Treat as read-only (copy it: ``dict(stack_env)``)."""
    env = StackSettings(stack.settings())
    for var, key in TEST_OVERRIDES.items():
        if _given(var):
            env[key] = _given(var)
    if _given("TEST_ADLS_ACCOUNT_URL"):
        # the app accepts exactly one lake credential
        env.pop("ADLS_SHARED_KEY" if _given("TEST_ADLS_SAS") else "ADLS_SAS", None)
        env.setdefault("ADLS_FILESYSTEM", "bronze")
    return env


def datalake_credential(env: dict) -> object:
    """The credential object for the lake settings in ``env`` (shared key or SAS)."""
    from azure.core.credentials import AzureSasCredential

    if env.get("ADLS_SAS"):
        return AzureSasCredential(env["ADLS_SAS"].lstrip("?"))
    return {"account_name": account_name(env["ADLS_ACCOUNT_URL"]), "account_key": env["ADLS_SHARED_KEY"]}


# --------------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mongo_client(stack_env: StackSettings):
    """A pymongo MongoClient on MONGO_URI (replica set: change streams work)."""
    import pymongo

    client = pymongo.MongoClient(stack_env["MONGO_URI"], serverSelectionTimeoutMS=15000)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fresh_db_name(mongo_client) -> Iterator[str]:
    """A unique MongoDB database name, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture(scope="session")
def datalake_service(stack_env: StackSettings):
    """An azure.storage.filedatalake DataLakeServiceClient on ADLS_ACCOUNT_URL."""
    from azure.storage.filedatalake import DataLakeServiceClient

    client = DataLakeServiceClient(stack_env["ADLS_ACCOUNT_URL"], credential=datalake_credential(stack_env))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def table_service(stack_env: StackSettings):
    """An azure.data.tables TableServiceClient on CHECKPOINT_CONNECTION_STRING."""
    from azure.data.tables import TableServiceClient

    client = TableServiceClient.from_connection_string(stack_env["CHECKPOINT_CONNECTION_STRING"])
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fresh_filesystem(datalake_service) -> Iterator[str]:
    """A unique ADLS file system name, created before and deleted after the test."""
    from azure.core.exceptions import ResourceNotFoundError

    name = f"test-{uuid.uuid4().hex[:16]}"
    datalake_service.create_file_system(name)
    yield name
    try:
        datalake_service.delete_file_system(name)
    except ResourceNotFoundError:
        pass


@pytest.fixture
def fresh_table_name(table_service) -> Iterator[str]:
    """A unique Table name (not created); the table is deleted after the test if it exists."""
    name = f"t{uuid.uuid4().hex[:16]}"
    yield name
    table_service.delete_table(name)  # no error when it does not exist


# --------------------------------------------------------------------------------------------------
# Local-only helpers (skipped with a reason when a real service is configured)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def emulator_control(stack: LocalStack):
    """``devtools.adls_emulator.control.EmulatorControl`` of the session's emulator (fault injection,
    request counts), with faults cleared and counters reset before the test and faults cleared after.
    Skipped when a real ADLS Gen2 account is configured."""
    if not stack.manages("adls"):
        pytest.skip(
            "needs the local ADLS Gen2 emulator: a real account is configured (TEST_ADLS_ACCOUNT_URL)"
        )
    from devtools.adls_emulator.control import EmulatorControl

    control = EmulatorControl(f"http://127.0.0.1:{stack.ports.adls}")
    control.clear_faults()
    control.reset_stats()
    yield control
    control.clear_faults()


@pytest.fixture
def mongo_restart(stack: LocalStack) -> Callable[[], None]:
    """A callable that restarts the local MongoDB server (same port and storage: data kept).
    Skipped when a real replica set is configured (TEST_MONGO_URI)."""
    if not stack.manages("mongo"):
        pytest.skip("needs the local MongoDB server: a real replica set is configured (TEST_MONGO_URI)")
    return stack.restart_mongo
