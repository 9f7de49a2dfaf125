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
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)
