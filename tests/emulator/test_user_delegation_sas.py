"""User delegation SAS, checked as the service does: the key's signature, its validity window and
service, the SAS's permissions and scope, and dynamic SAS (signed request headers and query
parameters). Real HTTPS requests through the Azure SDK against the emulator."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlencode

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.storage.filedatalake import (
    DataLakeFileClient,
    DataLakeServiceClient,
    DirectorySasPermissions,
    FileSasPermissions,
    generate_directory_sas,
    generate_file_sas,
)

from devtools.adls_emulator.auth import DEV_ACCOUNT

OID = "00000000-0000-4000-8000-0000000000aa"


class Token:
    def get_token(self, *scopes, **kwargs):
        def enc(obj: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        claims = {"aud": "https://storage.azure.com", "oid": OID, "tid": "tenant-1", "exp": int(time.time()) + 3600}
        return AccessToken(f"{enc({'alg': 'none'})}.{enc(claims)}.", int(time.time()) + 3600)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def setup(tls_files):
    from devtools.adls_emulator.server import start_in_thread

    cert, key = tls_files
    running = start_in_thread(tls_cert=cert, tls_key=key)
    svc = DataLakeServiceClient(running.url, credential=Token(), connection_verify=cert, retry_total=0)
    fs = svc.create_file_system("udfs")
    fs.create_directory("dir").create_file("doc").upload_data(b"abc", overwrite=True)
    fs.create_file("outside").upload_data(b"out", overwrite=True)
    yield running, cert, svc
    running.stop()


def _file(setup, path: str, sas: str) -> DataLakeFileClient:
    running, cert, _ = setup
    return DataLakeFileClient(running.url, "udfs", path, credential=sas, connection_verify=cert, retry_total=0)


def _status(call) -> int:
    with pytest.raises(HttpResponseError) as exc:
        call()
    return exc.value.status_code


def test_permissions_and_scope_of_a_directory_sas(setup):
    _, _, svc = setup
    key = svc.get_user_delegation_key(_now() - timedelta(minutes=5), _now() + timedelta(hours=1))
    sas = generate_directory_sas(DEV_ACCOUNT, "udfs", "dir", key, permission=DirectorySasPermissions(read=True),
                                 expiry=_now() + timedelta(hours=1))
    assert _file(setup, "dir/doc", sas).download_file().readall() == b"abc"
    assert _status(lambda: _file(setup, "outside", sas).download_file().readall()) == 403  # out of scope
    assert _status(lambda: _file(setup, "dir/doc", sas).append_data(b"x", 3)) == 403  # read only
    assert _status(lambda: _file(setup, "dir/doc", sas).delete_file()) == 403


def test_key_validity_window(setup):
    _, _, svc = setup
    expired = svc.get_user_delegation_key(_now() - timedelta(hours=2), _now() - timedelta(hours=1))
    future = svc.get_user_delegation_key(_now() + timedelta(hours=1), _now() + timedelta(hours=2))
    for key in (expired, future):
        sas = generate_file_sas(DEV_ACCOUNT, "udfs", "dir", "doc", key, permission=FileSasPermissions(read=True),
                                expiry=_now() + timedelta(hours=1))
        assert _status(lambda: _file(setup, "dir/doc", sas).download_file().readall()) == 403
    # A key for longer than seven days is refused when it is asked for.
    assert _status(lambda: svc.get_user_delegation_key(_now(), _now() + timedelta(days=8))) == 400


def test_a_sas_for_another_key_or_tampered_fields_is_refused(setup):
    _, _, svc = setup
    key = svc.get_user_delegation_key(_now() - timedelta(minutes=5), _now() + timedelta(hours=1))
    sas = generate_file_sas(DEV_ACCOUNT, "udfs", "dir", "doc", key, permission=FileSasPermissions(read=True),
                            expiry=_now() + timedelta(hours=1))
    assert _file(setup, "dir/doc", sas).download_file().readall() == b"abc"
    for field, value in (("sktid", "tenant-2"), ("ske", quote("2030-01-01T00:00:00Z", safe="")),
                         ("sp", "rw"), ("sks", "q")):
        original = next(p for p in sas.split("&") if p.startswith(field + "="))
        tampered = sas.replace(original, f"{field}={value}")
        assert _status(lambda: _file(setup, "dir/doc", tampered).download_file().readall()) == 403, field
    key.value = base64.b64encode(b"k" * 32).decode()  # a key the emulator never gave
    forged = generate_file_sas(DEV_ACCOUNT, "udfs", "dir", "doc", key, permission=FileSasPermissions(read=True),
                               expiry=_now() + timedelta(hours=1))
    assert _status(lambda: _file(setup, "dir/doc", forged).download_file().readall()) == 403


def test_dynamic_user_delegation_sas(setup):
    _, _, svc = setup
    key = svc.get_user_delegation_key(_now() - timedelta(minutes=5), _now() + timedelta(hours=1))
    headers = {"foo$": "bar!", "company": "msft"}
    params = {"hello$": "world!", "firstName": "john,Tim"}
    sas = generate_file_sas(DEV_ACCOUNT, "udfs", "dir", "doc", key, permission=FileSasPermissions(read=True),
                            expiry=_now() + timedelta(hours=1), request_headers=headers,
                            request_query_params=params)

    def hook(given_headers: dict, given_params: dict):
        def callback(request):
            for k, v in given_headers.items():
                request.http_request.headers[k] = v
            if given_params:
                request.http_request.url += "&" + urlencode(given_params, quote_via=quote, safe="")
        return callback

    doc = _file(setup, "dir/doc", sas)
    assert doc.get_file_properties(raw_request_hook=hook(headers, params)).size == 3
    # Without the signed headers or parameters, or with other values, the signature does not match.
    assert _status(lambda: doc.get_file_properties()) == 403
    assert _status(lambda: doc.get_file_properties(raw_request_hook=hook(headers, {}))) == 403
    assert _status(lambda: doc.get_file_properties(
        raw_request_hook=hook({**headers, "company": "other"}, params))) == 403
    assert _status(lambda: doc.get_file_properties(
        raw_request_hook=hook(headers, {**params, "firstName": "jane"}))) == 403
