"""Fixtures for the ADLS Gen2 emulator's own tests: an emulator in a thread on a free port.

Independent of the session stack in ``tests/conftest.py``: these tests never start other services.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
from azure.storage.filedatalake import DataLakeServiceClient

from devtools.adls_emulator.auth import DEV_ACCOUNT, DEV_KEY
from devtools.adls_emulator.control import EmulatorControl
from devtools.adls_emulator.server import RunningEmulator, start_in_thread

SHARED_KEY = {"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}


@pytest.fixture
def emu() -> Iterator[RunningEmulator]:
    """A fresh in-memory emulator per test."""
    running = start_in_thread()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def emu_service(emu: RunningEmulator) -> DataLakeServiceClient:
    # No retries by default, so that fault-injection tests see each answer; tests that want
    # the SDK's retry policy build their own client.
    return DataLakeServiceClient(emu.url, credential=SHARED_KEY, retry_total=0)


@pytest.fixture
def emu_fs(emu_service: DataLakeServiceClient):
    client = emu_service.get_file_system_client(f"fs{uuid.uuid4().hex[:12]}")
    client.create_file_system()
    return client


@pytest.fixture
def emu_control(emu: RunningEmulator) -> EmulatorControl:
    return EmulatorControl(emu.base_url)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (the SDK sends bearer tokens over HTTPS only)."""
    from devtools.adls_emulator.tls import self_signed_cert

    return self_signed_cert(tmp_path_factory.mktemp("tls"))
