"""Entra ID: with no key, SAS or connection string, the app reaches the lake and the checkpoint
table through the real ``DefaultAzureCredential`` chain.

The chain gets its token the way it does on App Service: ``ManagedIdentityCredential`` calls the
endpoint in ``IDENTITY_ENDPOINT`` (here a loopback stand-in, ``devtools.managed_identity``), for the
user-assigned identity named by ``AZURE_CLIENT_ID`` or for the system-assigned one. The table is an
Azurite started here in ``--oauth basic`` mode over HTTPS; the lake is the ADLS emulator over HTTPS.
Both check the token's audience, so a token for another audience fails the run.
"""

from __future__ import annotations

import uuid

import pytest
from azure.functions.timer import TimerRequest

import function_app
from devtools.functions_worker import invoke
from devtools.adls_emulator.server import start_in_thread
from devtools.adls_emulator.tls import self_signed_cert
from devtools.managed_identity import ManagedIdentityEndpoint
from devtools.oauth_azurite import OAuthTableAzurite
from shared.checkpoint import CheckpointStore, make_table_client
from shared.drain import run_drain
from shared.lake import make_service_client
from shared.settings import Settings

from .conftest import call_status

USER_ASSIGNED = "5f0c4e1a-7d2b-4c3e-9a8f-0123456789ab"

# Variables that would let another credential of the chain answer first, or point managed identity
# elsewhere; the tests remove them so the chain behaves as on a Functions host.
CREDENTIAL_VARIABLES = (
    "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
    "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("entra-tls"))


@pytest.fixture(scope="module")
def oauth_table(tls, tmp_path_factory):
    cert, key = tls
    with OAuthTableAzurite(tmp_path_factory.mktemp("entra-azurite"), cert, key) as azurite:
        yield azurite


@pytest.fixture(scope="module")
def tls_lake(tls):
    cert, key = tls
    emulator = start_in_thread(tls_cert=cert, tls_key=key)
    try:
        yield emulator.url.replace("http://", "https://")
    finally:
        emulator.stop()


def use_identity(monkeypatch, identity: ManagedIdentityEndpoint, cert: str) -> None:
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in identity.env.items():
        monkeypatch.setenv(name, value)
    if identity.client_id:
        monkeypatch.setenv("AZURE_CLIENT_ID", identity.client_id)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # trust the self-signed certificate of both servers


@pytest.fixture
def entra_env(stack_env, oauth_table, tls_lake, fresh_db_name) -> dict:
    """Settings with Entra ID for both services: account URLs, no credential settings at all."""
    return {
        "MONGO_URI": stack_env["MONGO_URI"],
        "MONGO_DB": fresh_db_name,
        "ADLS_ACCOUNT_URL": tls_lake,
        "ADLS_FILESYSTEM": f"entra-{uuid.uuid4().hex[:12]}",
        "CHECKPOINT_ACCOUNT_URL": oauth_table.url,
        "CHECKPOINT_TABLE": f"t{uuid.uuid4().hex[:16]}",
        "DRAIN_BUDGET_SECONDS": "20",
    }


@pytest.mark.parametrize("client_id", [USER_ASSIGNED, None], ids=["user-assigned", "system-assigned"])
def test_a_full_drain_with_managed_identity_for_lake_and_table(client_id, entra_env, tls, monkeypatch, app_env,
                                                              mongo_client):
    settings = Settings.from_env(entra_env)
    lake_credentials = (settings.adls_sas, settings.adls_shared_key, settings.adls_connection_string)
    assert not any(lake_credentials) and not settings.checkpoint_connection_string  # Entra ID for both
    with ManagedIdentityEndpoint(client_id=client_id) as identity:
        use_identity(monkeypatch, identity, tls[0])
        app_env(entra_env)
        invoke(function_app.drain, TimerRequest(past_due=False))  # first tick: creates the table, saves the start
        mongo_client[entra_env["MONGO_DB"]].orders.insert_many([{"i": i} for i in range(5)])
        invoke(function_app.drain, TimerRequest(past_due=False))

        checkpoint = CheckpointStore(settings).load().checkpoint
        assert checkpoint.seq == 5 and checkpoint.last_run["events"] == 5
        lake = make_service_client(settings).get_file_system_client(entra_env["ADLS_FILESYSTEM"])
        every = [p.name for p in lake.get_paths(recursive=True) if not p.is_directory]
        paths = [p for p in every if not p.startswith("_manifests/")]
        assert len(paths) == 1 and paths[0].startswith(f"{entra_env['MONGO_DB']}/orders/")
        assert len(every) == 2  # and its manifest, written with the same credential
        data = lake.get_file_client(paths[0]).download_file().readall()
        assert len(data.splitlines()) == 5

        code, body, _ = call_status()
        assert code == 200 and body["pipelines"][0]["checkpoint"]["seq"] == 5

        # every token came from the managed-identity endpoint, for storage, for the configured identity
        assert identity.requests
        assert all(r["header_ok"] and r["resource"] == "https://storage.azure.com" and r["client_id"] == client_id
                   for r in identity.requests)


def test_a_token_for_another_audience_is_refused_by_both_services(entra_env, tls, monkeypatch):
    from azure.core.exceptions import HttpResponseError

    settings = Settings.from_env(entra_env)
    with ManagedIdentityEndpoint(client_id=USER_ASSIGNED, audience="https://vault.azure.net") as identity:
        use_identity(monkeypatch, identity, tls[0])
        with pytest.raises(HttpResponseError) as table_error:
            list(make_table_client(settings).query_entities("PartitionKey eq 'x'"))
        assert table_error.value.status_code == 403
        with pytest.raises(HttpResponseError) as lake_error:
            make_service_client(settings).create_file_system(entra_env["ADLS_FILESYSTEM"])
        # the lake answers as the live service does: 401 with a WWW-Authenticate challenge
        assert lake_error.value.status_code == 401
        report = run_drain(settings, env=entra_env)
        assert report.outcome == "failed" and report.error["kind"] == "terminal"
        assert identity.requests and all(r["client_id"] == USER_ASSIGNED for r in identity.requests)


def test_another_identity_gets_no_token(entra_env, tls, monkeypatch):
    """AZURE_CLIENT_ID picks the identity: the endpoint serves only the one it knows."""
    settings = Settings.from_env(entra_env)
    with ManagedIdentityEndpoint(client_id=USER_ASSIGNED) as identity:
        use_identity(monkeypatch, identity, tls[0])
        monkeypatch.setenv("AZURE_CLIENT_ID", "99999999-0000-0000-0000-000000000000")
        report = run_drain(settings, env=entra_env)
        assert report.outcome == "failed" and report.error["kind"] == "terminal"
        assert "refused the credentials" in report.error["message"]
        assert identity.requests[0]["client_id"] == "99999999-0000-0000-0000-000000000000"
