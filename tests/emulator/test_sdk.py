"""The emulator driven through the real ``azure-storage-file-datalake`` SDK."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from azure.core import MatchConditions
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.filedatalake import (
    ContentSettings,
    DataLakeLeaseClient,
    DataLakeServiceClient,
    FileSystemSasPermissions,
    LinearRetry,
    generate_file_system_sas,
)

from devtools.adls_emulator.auth import DEV_ACCOUNT, DEV_KEY
from devtools.adls_emulator.control import EmulatorControl
from devtools.adls_emulator.server import start_in_thread

from .conftest import SHARED_KEY
from .rawclient import RawClient

REPO_ROOT = Path(__file__).resolve().parents[2]


def error_code(exc: pytest.ExceptionInfo) -> str | None:
    return exc.value.error_code


def unique(prefix: str = "f") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# ----------------------------------------------------------------------------- file systems
def test_file_system_lifecycle(emu_service: DataLakeServiceClient):
    name = unique("fs")
    fs = emu_service.create_file_system(name, metadata={"team": "bronze"})
    assert fs.exists()
    props = fs.get_file_system_properties()
    assert props.metadata == {"team": "bronze"}
    assert props.etag.startswith('"0x')
    with pytest.raises(ResourceExistsError) as exc:
        emu_service.create_file_system(name)
    assert error_code(exc) == "ContainerAlreadyExists"

    fs.set_file_system_metadata({"a": "1", "b": "two"})
    props2 = fs.get_file_system_properties()
    assert props2.metadata == {"a": "1", "b": "two"}
    assert props2.etag != props.etag

    other = unique("fs")
    emu_service.create_file_system(other)
    names = [f.name for f in emu_service.list_file_systems()]
    assert {name, other} <= set(names)
    listed = {f.name: f for f in emu_service.list_file_systems(name_starts_with=name, include_metadata=True)}
    assert set(listed) == {name} and listed[name].metadata == {"a": "1", "b": "two"}

    fs.delete_file_system()
    assert not fs.exists()
    with pytest.raises(ResourceNotFoundError) as exc:
        fs.delete_file_system()
    assert error_code(exc) == "ContainerNotFound"


def test_list_file_systems_paged(emu_service: DataLakeServiceClient):
    for i in range(5):
        emu_service.create_file_system(f"paged{i}")
    pages = list(emu_service.list_file_systems(name_starts_with="paged", results_per_page=2).by_page())
    assert [[fs.name for fs in page] for page in pages] == [["paged0", "paged1"], ["paged2", "paged3"], ["paged4"]]


# ----------------------------------------------------------------------------- paths
def test_create_file_and_directory(emu_fs):
    d = emu_fs.create_directory("a/b")  # implicit parent "a"
    assert d.get_directory_properties().metadata.get("hdi_isfolder") == "true"
    f = emu_fs.create_file("a/b/c.txt", metadata={"k": "v"},
                           content_settings=ContentSettings(content_type="text/plain", content_language="en"))
    props = f.get_file_properties()
    assert props.size == 0 and props.metadata == {"k": "v"}
    assert props.content_settings.content_type == "text/plain"
    assert props.content_settings.content_language == "en"
    assert [(p.name, p.is_directory) for p in emu_fs.get_paths()] == [
        ("a", True), ("a/b", True), ("a/b/c.txt", False)]


def test_create_if_missing_conflicts(emu_fs):
    f = emu_fs.create_file("x")
    with pytest.raises(ResourceExistsError) as exc:
        f.create_file(match_condition=MatchConditions.IfMissing)
    assert error_code(exc) == "PathAlreadyExists"
    # Without the condition, create overwrites (length 0).
    f.upload_data(b"abc", overwrite=True)
    f.create_file()
    assert f.get_file_properties().size == 0


def test_put_blob_creates_a_whole_file_once(emu, emu_fs):
    """Put Blob on the Blob endpoint (``upload_blob(overwrite=False)``: ``If-None-Match: *``): the file
    appears whole, with its parent folders, to the dfs side; a second one fails 409
    ``BlobAlreadyExists`` and leaves the file as it was; a leased file needs the lease id."""
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient(emu.url, credential=SHARED_KEY, retry_total=0)
    blob = blobs.get_blob_client(emu_fs.file_system_name, "db/coll/day=01/00001-insert.json")
    result = blob.upload_blob(b'{"a":1}\n', overwrite=False)
    assert [(p.name, p.is_directory, p.content_length) for p in emu_fs.get_paths(recursive=True)] == [
        ("db", True, 0), ("db/coll", True, 0), ("db/coll/day=01", True, 0),
        ("db/coll/day=01/00001-insert.json", False, 8)]
    file = emu_fs.get_file_client("db/coll/day=01/00001-insert.json")
    props = file.get_file_properties()
    assert props.etag == result["etag"] and props.size == 8
    assert file.download_file().readall() == b'{"a":1}\n'
    with pytest.raises(ResourceExistsError) as exc:
        blob.upload_blob(b'{"a":2}\n', overwrite=False)
    assert error_code(exc) == "BlobAlreadyExists" and exc.value.status_code == 409
    assert file.download_file().readall() == b'{"a":1}\n'
    with pytest.raises(ResourceModifiedError) as exc:
        blob.upload_blob(b"x", overwrite=True, etag='"0x1"', match_condition=MatchConditions.IfNotModified)
    assert error_code(exc) == "ConditionNotMet"
    lease = DataLakeLeaseClient(file)
    lease.acquire(lease_duration=15)
    with pytest.raises(HttpResponseError) as exc:
        blob.upload_blob(b"y", overwrite=True)
    assert error_code(exc) == "LeaseIdMissing"
    blob.upload_blob(b"z\n", overwrite=True, lease=lease.id)
    assert file.download_file().readall() == b"z\n"


def test_unflushed_data_is_invisible(emu_fs):
    f = emu_fs.create_file("db/coll/part-0.jsonl")
    created = f.get_file_properties()
    f.append_data(b'{"a":1}\n', offset=0, length=8)
    after_append = f.get_file_properties()
    assert after_append.size == 0
    assert after_append.etag == created.etag
    assert after_append.last_modified == created.last_modified
    assert f.download_file().readall() == b""
    assert [p.content_length for p in emu_fs.get_paths("db/coll")] == [0]

    time.sleep(1.1)  # Last-Modified has one-second resolution
    f.flush_data(8)
    flushed = f.get_file_properties()
    assert flushed.size == 8
    assert flushed.etag != created.etag
    assert flushed.last_modified > created.last_modified
    assert f.download_file().readall() == b'{"a":1}\n'
    assert [p.content_length for p in emu_fs.get_paths("db/coll")] == [8]


def test_every_flush_changes_the_etag(emu_fs):
    f = emu_fs.create_file("e")
    etags = {f.get_file_properties().etag}
    for _ in range(3):
        etags.add(f.flush_data(0)["etag"])
    assert len(etags) == 4


def test_flush_with_stale_if_match_fails(emu_fs):
    f = emu_fs.create_file("m")
    created = f.get_file_properties().etag
    f.append_data(b"abc", 0)
    f.flush_data(3, etag=created, match_condition=MatchConditions.IfNotModified)
    f.append_data(b"abc", 3)
    with pytest.raises(ResourceModifiedError) as exc:
        f.flush_data(6, etag=created, match_condition=MatchConditions.IfNotModified)
    assert error_code(exc) == "ConditionNotMet"
    current = f.get_file_properties().etag
    f.flush_data(6, etag=current, match_condition=MatchConditions.IfNotModified)
    assert f.download_file().readall() == b"abcabc"


def test_flush_if_missing_on_existing_file_fails(emu_fs):
    f = emu_fs.create_file("exists")
    f.append_data(b"abc", 0)
    with pytest.raises(ResourceModifiedError) as exc:
        f.flush_data(3, match_condition=MatchConditions.IfMissing)
    assert error_code(exc) == "ConditionNotMet"
    with pytest.raises(ResourceModifiedError) as exc:
        f.upload_data(b"new")  # overwrite=False: the final flush carries If-None-Match: * (recorded: 412)
    assert error_code(exc) == "ConditionNotMet"


def test_invalid_flush_positions(emu_fs):
    f = emu_fs.create_file("p")
    f.append_data(b"abc", 0)
    with pytest.raises(HttpResponseError) as exc:
        f.flush_data(4)  # beyond the appended data
    assert exc.value.status_code == 400 and error_code(exc) == "InvalidFlushPosition"
    f.append_data(b"xyz", 5)  # gap at [3, 5)
    with pytest.raises(HttpResponseError) as exc:
        f.flush_data(8)
    assert error_code(exc) == "InvalidFlushPosition"
    f.flush_data(3)
    assert f.download_file().readall() == b"abc"
    with pytest.raises(HttpResponseError) as exc:
        f.flush_data(2)  # below the committed length
    assert error_code(exc) == "InvalidFlushPosition"


def test_overlapping_append_later_wins(emu_fs):
    f = emu_fs.create_file("o")
    f.append_data(b"Hello world", 0)
    f.flush_data(11)
    f.append_data(b"HELLO", 0)  # over committed data: accepted, as the service does
    f.append_data(b"J", 0)  # over uncommitted data: the later append wins
    f.flush_data(11)
    assert f.download_file().readall() == b"JELLO world"


def test_data_beyond_flush_position_discarded_or_retained(emu_fs):
    f = emu_fs.create_file("r")
    f.append_data(b"abc", 0)
    f.append_data(b"def", 3)
    f.flush_data(3)  # retainUncommittedData=false: "def" is dropped
    with pytest.raises(HttpResponseError) as exc:
        f.flush_data(6)
    assert error_code(exc) == "InvalidFlushPosition"

    g = emu_fs.create_file("r2")
    g.append_data(b"abc", 0)
    g.append_data(b"def", 3)
    g.flush_data(3, retain_uncommitted_data=True)
    assert g.download_file().readall() == b"abc"
    g.flush_data(6)
    assert g.download_file().readall() == b"abcdef"


def test_append_with_flush(emu_fs):
    f = emu_fs.create_file("af")
    before = f.get_file_properties().etag
    result = f.append_data(b"abc", 0, flush=True)
    assert result["etag"] != before
    assert f.get_file_properties().size == 3


def test_parallel_appends_at_distinct_positions(emu_fs):
    f = emu_fs.create_file("par")
    f.append_data(b"world", 6)
    f.append_data(b"hello ", 0)
    f.flush_data(11)
    assert f.download_file().readall() == b"hello world"


def test_concurrent_appends_from_threads(emu_fs):
    from concurrent.futures import ThreadPoolExecutor

    f = emu_fs.create_file("threads")
    chunks = [bytes([65 + i]) * 1000 for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: f.append_data(chunks[i], offset=i * 1000), range(16)))
    f.flush_data(16000)
    assert f.download_file().readall() == b"".join(chunks)


def test_read_ranges(emu_fs):
    data = b"12345" * 1025
    f = emu_fs.create_file("big")
    f.upload_data(data, overwrite=True)
    assert f.download_file(offset=1024, length=1024).readall() == data[1024:2048]
    assert f.download_file(offset=5120).readall() == data[5120:]
    downloader = f.download_file(max_concurrency=1)
    assert downloader.readall() == data
    assert emu_fs.get_file_client("big").download_file(offset=5124, length=1).readall() == b"5"


def test_range_request_headers(emu, emu_fs):
    f = emu_fs.create_file("rng")
    f.upload_data(b"0123456789", overwrite=True)
    assert f.download_file(offset=2, length=3).readall() == b"234"
    raw = RawClient(emu.base_url)
    url = f"/{DEV_ACCOUNT}/{emu_fs.file_system_name}/rng"
    status, headers, body = raw.send("GET", url, {"x-ms-range": "bytes=2-4"})
    assert (status, headers["Content-Range"], headers["Content-Length"], body) == (206, "bytes 2-4/10", "3", b"234")
    status, headers, body = raw.send("GET", url, {"Range": "bytes=8-"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 8-9/10", b"89")
    status, headers, _ = raw.send("GET", url, {"x-ms-range": "bytes=10-20"})
    assert (status, headers["x-ms-error-code"]) == (416, "InvalidRange")
    status, headers, body = raw.send("GET", url)
    assert (status, body) == (200, b"0123456789")


def test_list_paths(emu_fs):
    for d in ("dir10", "dir11", "dir12"):
        emu_fs.create_directory(f"{d}/subdir/subsub")
        emu_fs.create_file(f"{d}/subdir/file")
    recursive = [p.name for p in emu_fs.get_paths()]
    assert recursive[:4] == ["dir10", "dir10/subdir", "dir10/subdir/file", "dir10/subdir/subsub"]
    assert len(recursive) == 12
    assert [p.name for p in emu_fs.get_paths(recursive=False)] == ["dir10", "dir11", "dir12"]
    assert [p.name for p in emu_fs.get_paths(path="dir11", recursive=False)] == ["dir11/subdir"]
    pages = list(emu_fs.get_paths(max_results=5).by_page())
    assert [len(list(page)) for page in pages] == [5, 5, 2]
    with pytest.raises(ResourceNotFoundError) as exc:
        list(emu_fs.get_paths(path="missing"))
    assert error_code(exc) == "PathNotFound"


def test_delete_file_and_directories(emu_fs):
    f = emu_fs.create_file("d/e/f")
    f.delete_file()
    assert not f.exists()
    with pytest.raises(ResourceNotFoundError):
        f.delete_file()
    emu_fs.create_file("d/e/g")
    emu_fs.get_directory_client("d").delete_directory()  # recursive
    assert list(emu_fs.get_paths()) == []


def test_delete_non_empty_directory_without_recursive(emu, emu_fs):
    emu_fs.create_file("nd/file")
    # The SDK always deletes directories recursively: send the request by hand.
    raw = RawClient(emu.base_url)
    status, headers, body = raw.send("DELETE", f"/{DEV_ACCOUNT}/{emu_fs.file_system_name}/nd?recursive=false")
    assert (status, headers["x-ms-error-code"]) == (409, "DirectoryNotEmpty")
    assert json.loads(body)["error"]["code"] == "DirectoryNotEmpty"


def test_rename_file_and_directory(emu_service, emu_fs):
    f = emu_fs.create_file("src/file")
    f.upload_data(b"abc", overwrite=True)
    etag = f.get_file_properties().etag
    emu_fs.create_directory("dst")
    renamed = f.rename_file(f"{emu_fs.file_system_name}/dst/renamed")
    props = renamed.get_file_properties()
    assert props.etag == etag  # rename keeps ETag
    assert renamed.download_file().readall() == b"abc"
    assert not f.exists()

    d = emu_fs.get_directory_client("src")
    emu_fs.create_file("src/a/b")
    other = emu_service.create_file_system(unique("fs"))
    moved = d.rename_directory(f"{other.file_system_name}/moved")
    assert [p.name for p in other.get_paths()] == ["moved", "moved/a", "moved/a/b"]
    assert moved.exists()
    assert not d.exists()


def test_rename_conditions(emu_fs):
    src = emu_fs.create_file("s1")
    stale = src.get_file_properties().etag
    src.upload_data(b"x", overwrite=True)
    with pytest.raises(ResourceModifiedError):
        src.rename_file(f"{emu_fs.file_system_name}/t1", source_etag=stale,
                        source_match_condition=MatchConditions.IfNotModified)
    emu_fs.create_file("t1")
    with pytest.raises(ResourceModifiedError):
        src.rename_file(f"{emu_fs.file_system_name}/t1", match_condition=MatchConditions.IfMissing)
    current = src.get_file_properties().etag
    src.rename_file(f"{emu_fs.file_system_name}/t1", source_etag=current,
                    source_match_condition=MatchConditions.IfNotModified)  # replaces t1
    assert emu_fs.get_file_client("t1").download_file().readall() == b"x"
    with pytest.raises(ResourceNotFoundError) as exc:
        emu_fs.get_file_client("nope").rename_file(f"{emu_fs.file_system_name}/t2")
    assert error_code(exc) == "SourcePathNotFound"


def test_metadata(emu_fs):
    f = emu_fs.create_file("meta", metadata={"hello": "world", "number": "42"})
    props = f.get_file_properties()
    assert props.metadata == {"hello": "world", "number": "42"}
    f.set_metadata({"only": "this"})
    props2 = f.get_file_properties()
    assert props2.metadata == {"only": "this"}
    assert props2.etag != props.etag
    d = emu_fs.create_directory("mdir", metadata={"a": "b"})
    assert d.get_directory_properties().metadata["a"] == "b"
    f.set_http_headers(ContentSettings(content_type="application/x-ndjson"))
    assert f.get_file_properties().content_settings.content_type == "application/x-ndjson"


def test_flush_content_settings_echoed(emu_fs):
    f = emu_fs.create_file("cs")
    f.append_data(b"abc", 0)
    f.flush_data(3, content_settings=ContentSettings(content_language="spanish", content_disposition="inline"))
    props = f.get_file_properties()
    assert props.content_settings.content_language == "spanish"
    assert props.content_settings.content_disposition == "inline"


# ----------------------------------------------------------------------------- leases
def test_lease_lifecycle(emu_fs):
    f = emu_fs.create_file("leased")
    lease = DataLakeLeaseClient(f, lease_id=str(uuid.uuid4()))
    lease.acquire(lease_duration=15)
    props = f.get_file_properties()
    assert (props.lease.state, props.lease.status, props.lease.duration) == ("leased", "locked", "fixed")

    with pytest.raises(HttpResponseError) as exc:
        f.append_data(b"a", 0)
    assert exc.value.status_code == 412 and error_code(exc) == "LeaseIdMissing"
    with pytest.raises(HttpResponseError) as exc:
        f.append_data(b"a", 0, lease=str(uuid.uuid4()))
    assert exc.value.status_code == 412 and error_code(exc) == "LeaseIdMismatch"
    f.append_data(b"a", 0, lease=lease)
    f.flush_data(1, lease=lease)
    with pytest.raises(HttpResponseError) as exc:
        f.delete_file()
    assert error_code(exc) == "LeaseIdMissing"
    with pytest.raises(HttpResponseError) as exc:
        f.set_metadata({"x": "y"})  # blob endpoint
    assert error_code(exc) == "LeaseIdMissing"

    with pytest.raises(HttpResponseError) as exc:
        DataLakeLeaseClient(f, lease_id=str(uuid.uuid4())).acquire(lease_duration=15)
    assert exc.value.status_code == 409 and error_code(exc) == "LeaseAlreadyPresent"

    lease.renew()
    new_id = str(uuid.uuid4())
    lease.change(new_id)
    assert lease.id == new_id
    lease.release()
    assert f.get_file_properties().lease.state == "available"

    lease2 = DataLakeLeaseClient(f)
    lease2.acquire()  # infinite
    assert f.get_file_properties().lease.duration == "infinite"
    assert lease2.break_lease() == 0
    assert f.get_file_properties().lease.state == "broken"
    f.append_data(b"b", 1)  # a broken lease no longer blocks writes
    f.flush_data(2)


def test_lease_expires(emu_fs):
    f = emu_fs.create_file("short")
    lease = DataLakeLeaseClient(f)
    lease.acquire(lease_duration=15)
    # Move the lease's expiry into the past instead of waiting 15 s.
    node_lease = _node(emu_fs, "short").lease
    node_lease.expires_at = time.time() - 1
    assert f.get_file_properties().lease.state == "expired"
    f.append_data(b"a", 0)  # no lease id needed any more


def test_lease_actions_on_append_and_flush(emu_fs):
    f = emu_fs.create_file("la")
    lease_id = str(uuid.uuid4())
    f.append_data(b"Hello world", 0, lease_action="acquire", lease_duration=30, lease=lease_id)
    props = f.get_file_properties()
    assert (props.lease.state, props.lease.duration, props.size) == ("leased", "fixed", 0)
    f.append_data(b"Hello world", 0, lease_action="auto-renew", lease=lease_id)
    f.flush_data(11, lease_action="release", lease=lease_id)
    props = f.get_file_properties()
    assert (props.lease.state, props.size) == ("available", 11)
    f.append_data(b"Hello world", 0, flush=True, lease_action="acquire-release", lease=lease_id)
    assert f.get_file_properties().lease.state == "available"


def test_directory_created_with_lease(emu_fs):
    lease_id = str(uuid.uuid4())
    d = emu_fs.create_directory("ldir", lease_id=lease_id, lease_duration=15)
    props = d.get_directory_properties()
    assert (props.lease.state, props.lease.duration) == ("leased", "fixed")


def test_file_system_lease(emu_fs):
    lease = emu_fs.acquire_lease(lease_duration=-1)
    assert emu_fs.get_file_system_properties().lease.state == "leased"
    with pytest.raises(HttpResponseError):
        emu_fs.delete_file_system()
    lease.release()
    emu_fs.delete_file_system()


# ----------------------------------------------------------------------------- authentication
def _jwt(aud: str) -> str:
    def enc(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc({'aud': aud, 'exp': int(time.time()) + 3600})}."


class StaticTokenCredential:
    """A TokenCredential handing out an unsigned JWT with the given audience."""

    def __init__(self, audience: str):
        self.audience = audience

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(_jwt(self.audience), int(time.time()) + 3600)


def test_bad_shared_key_is_refused(emu):
    wrong = base64.b64encode(b"not the key" * 4).decode()
    svc = DataLakeServiceClient(emu.url, credential={"account_name": DEV_ACCOUNT, "account_key": wrong},
                                retry_total=0)
    with pytest.raises(ClientAuthenticationError) as exc:
        svc.create_file_system("nope")
    assert exc.value.status_code == 403 and error_code(exc) == "AuthenticationFailed"


def test_anonymous_is_refused(emu):
    svc = DataLakeServiceClient(emu.url, retry_total=0)
    with pytest.raises(HttpResponseError) as exc:
        svc.create_file_system("nope")
    assert exc.value.status_code == 403


def test_sas_token(emu, emu_fs):
    from datetime import datetime, timedelta, timezone

    sas = generate_file_system_sas(DEV_ACCOUNT, emu_fs.file_system_name, credential=DEV_KEY,
                                   permission=FileSystemSasPermissions(read=True, write=True, list=True,
                                                                       create=True, move=True),
                                   expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    svc = DataLakeServiceClient(emu.url, credential=sas, retry_total=0)
    fs = svc.get_file_system_client(emu_fs.file_system_name)
    f = fs.create_file("via-sas")
    f.upload_data(b"sas", overwrite=True)
    assert f.download_file().readall() == b"sas"
    f.rename_file(f"{emu_fs.file_system_name}/renamed-via-sas")  # rename source carries the SAS
    assert [p.name for p in fs.get_paths()] == ["renamed-via-sas"]


def test_bearer_token(tls_files):
    cert, key = tls_files
    running = start_in_thread(tls_cert=cert, tls_key=key)
    try:
        assert running.url.startswith("https://")
        svc = DataLakeServiceClient(running.url, credential=StaticTokenCredential("https://storage.azure.com/"),
                                    connection_verify=cert, retry_total=0)
        fs = svc.create_file_system("tokenfs")
        f = fs.create_file("t")
        f.upload_data(b"token", overwrite=True)
        assert f.download_file().readall() == b"token"
        assert EmulatorControl(running.base_url, cafile=cert).health()["status"] == "ok"

        bad = DataLakeServiceClient(running.url, credential=StaticTokenCredential("https://vault.azure.net"),
                                    connection_verify=cert, retry_total=0)
        # A token for another audience: 401 with the service's WWW-Authenticate challenge (the SDK
        # asks for a token for its resource_id, gets the same wrong one here, and gives up).
        with pytest.raises(ClientAuthenticationError) as exc:
            bad.get_file_system_client("tokenfs").get_file_system_properties()
        assert exc.value.status_code == 401
        with pytest.raises(HttpResponseError) as exc:
            bad.get_file_system_client("tokenfs").create_file("x")
        assert exc.value.status_code == 401 and error_code(exc) == "InvalidAuthenticationInfo"
        assert "resource_id=https://storage.azure.com" in exc.value.response.headers["WWW-Authenticate"]
    finally:
        running.stop()


# ----------------------------------------------------------------------------- persistence
def test_persistence_across_restart(tmp_path):
    data_dir = str(tmp_path / "adls")
    first = start_in_thread(data_dir=data_dir)
    try:
        svc = DataLakeServiceClient(first.url, credential=SHARED_KEY)
        fs = svc.create_file_system("persist", metadata={"m": "1"})
        f = fs.create_file("db/c/f.jsonl", metadata={"k": "v"})
        f.append_data(b"line1\n", 0)
        f.flush_data(6)
        f.append_data(b"line2\n", 6)  # appended, not flushed
        etag = f.get_file_properties().etag
        fs.create_directory("db/c/renamed-src").rename_directory("persist/db/c/renamed")
        DataLakeLeaseClient(f, lease_id="11111111-2222-3333-4444-555555555555").acquire()
    finally:
        first.stop()
    second = start_in_thread(data_dir=data_dir)
    try:
        svc = DataLakeServiceClient(second.url, credential=SHARED_KEY)
        fs = svc.get_file_system_client("persist")
        assert fs.get_file_system_properties().metadata == {"m": "1"}
        f = fs.get_file_client("db/c/f.jsonl")
        props = f.get_file_properties()
        assert (props.etag, props.size, props.metadata) == (etag, 6, {"k": "v"})
        assert props.lease.state == "leased"
        assert f.download_file().readall() == b"line1\n"
        assert [p.name for p in fs.get_paths()] == ["db", "db/c", "db/c/f.jsonl", "db/c/renamed"]
        lease = "11111111-2222-3333-4444-555555555555"
        f.flush_data(12, lease=lease)  # the unflushed append survived the restart too
        assert f.download_file().readall() == b"line1\nline2\n"
    finally:
        second.stop()


def test_persistence_of_files_grown_rewritten_replaced_and_moved(tmp_path):
    """Content is persisted by what an append or flush adds: a file grown over several restarts, with
    appends left unflushed each time, an append that rewrites committed bytes, a file overwritten by
    a new one at its path, a file renamed away and another created at its old path, a file deleted:
    each restart reads back exactly the content the service had."""
    data_dir = str(tmp_path / "adls")
    expected: dict[str, bytes] = {}
    for round_ in range(3):
        running = start_in_thread(data_dir=data_dir)
        try:
            fs_client = DataLakeServiceClient(running.url, credential=SHARED_KEY).get_file_system_client("grow")
            if round_ == 0:
                fs_client.create_file_system()
            for name, content in expected.items():  # what the last restart left, unflushed tail included
                assert fs_client.get_file_client(name).download_file().readall() == content, (round_, name)
            grown = fs_client.get_file_client("grown")
            if round_ == 0:
                grown.create_file()
                size = 0
            else:
                size = len(expected["grown"])
                grown.flush_data(size + 4)  # the append left unflushed before the restart
                size += 4
            for i in range(5):
                block = bytes([65 + round_]) * (1000 + i)
                grown.append_data(block, size)
                size += len(block)
                if i % 2:
                    grown.flush_data(size)
            grown.flush_data(size)
            grown.append_data(b"tail", size)  # unflushed: flushed after the restart
            content = grown.download_file().readall()
            expected["grown"] = content
            if round_ == 1:
                rewritten = fs_client.create_file("rewritten")
                rewritten.append_data(b"0123456789", 0)
                rewritten.flush_data(10)
                rewritten.append_data(b"ab", 2)  # over committed bytes: a later append wins
                rewritten.flush_data(10)
                expected["rewritten"] = b"01ab456789"
                replaced = fs_client.create_file("replaced")
                replaced.append_data(b"old content", 0)
                replaced.flush_data(11)
                replaced = fs_client.create_file("replaced")  # overwritten by a new, empty file
                replaced.append_data(b"new", 0)
                replaced.flush_data(3)
                expected["replaced"] = b"new"
                moved = fs_client.create_file("moved-src")
                moved.append_data(b"moved", 0)
                moved.flush_data(5)
                moved.rename_file("grow/moved")
                again = fs_client.create_file("moved-src")
                again.append_data(b"second", 0)
                again.flush_data(6)
                expected.update({"moved": b"moved", "moved-src": b"second"})
                gone = fs_client.create_file("gone")
                gone.append_data(b"x" * 100, 0)
                gone.flush_data(100)
                gone.delete_file()
            if round_ == 2:
                moved = fs_client.get_file_client("moved")
                moved.append_data(b"!", 5)
                moved.flush_data(6)
                expected["moved"] = b"moved!"
                assert "gone" not in [p.name for p in fs_client.get_paths()]
        finally:
            running.stop()
    running = start_in_thread(data_dir=data_dir)
    try:
        fs_client = DataLakeServiceClient(running.url, credential=SHARED_KEY).get_file_system_client("grow")
        for name, content in expected.items():
            assert fs_client.get_file_client(name).download_file().readall() == content, name
        assert sorted(p.name for p in fs_client.get_paths()) == sorted(expected)
    finally:
        running.stop()


# ----------------------------------------------------------------------------- faults and stats
def test_fault_error_is_consumed(emu, emu_fs, emu_control):
    emu_control.add_fault(op="flush", path="db/*", count=2, status=503, code="ServerBusy")
    f = emu_fs.create_file("db/x")
    other = emu_fs.create_file("elsewhere")
    other.flush_data(0)  # path does not match the glob
    f.append_data(b"abc", 0)
    for _ in range(2):
        with pytest.raises(HttpResponseError) as exc:
            f.flush_data(3)
        assert exc.value.status_code == 503 and error_code(exc) == "ServerBusy"
    f.flush_data(3)
    assert f.download_file().readall() == b"abc"
    assert emu_control.faults() == []


def test_fault_error_is_retried_by_the_sdk(emu, emu_fs, emu_control):
    svc = DataLakeServiceClient(emu.url, credential=SHARED_KEY,
                                retry_policy=LinearRetry(backoff=0, random_jitter_range=0, retry_total=3))
    f = svc.get_file_system_client(emu_fs.file_system_name).create_file("retried")
    emu_control.add_fault(op="append", count=2, status=500, code="InternalError")
    emu_control.reset_stats()
    f.append_data(b"abc", 0)
    assert emu_control.stats()["append"] == 3


def test_fault_filters_on_filesystem(emu_service, emu_fs, emu_control):
    other = emu_service.create_file_system(unique("fs"))
    emu_control.add_fault(op="create_file", filesystem=other.file_system_name, status=500, code="InternalError")
    emu_fs.create_file("fine")
    with pytest.raises(HttpResponseError) as exc:
        other.create_file("fails")
    assert exc.value.status_code == 500


def test_drop_response_still_applies_the_append(emu_fs, emu_control):
    f = emu_fs.create_file("dropped")
    emu_control.add_fault(op="append", path="dropped", action="drop_response")
    with pytest.raises((ServiceResponseError, ServiceRequestError)):
        f.append_data(b"abc", 0)
    f.flush_data(3)  # the append was in fact applied
    assert f.download_file().readall() == b"abc"


def test_delay(emu_fs, emu_control):
    f = emu_fs.create_file("slow")
    emu_control.add_fault(op="get_properties", action="delay", delay_seconds=0.5)
    start = time.monotonic()
    assert f.get_file_properties().size == 0
    assert time.monotonic() - start >= 0.5
    start = time.monotonic()
    f.get_file_properties()
    assert time.monotonic() - start < 0.5


def test_stats(emu_service, emu_control):
    emu_control.reset_stats()
    fs = emu_service.create_file_system("stats")
    f = fs.create_file("a/b")
    f.append_data(b"x", 0)
    f.flush_data(1)
    f.get_file_properties()
    f.download_file().readall()
    list(fs.get_paths())
    f.rename_file("stats/c")
    fs.get_file_client("c").delete_file()
    stats = emu_control.stats()
    for op in ("create_filesystem", "create_file", "append", "flush", "get_properties", "read",
               "list_paths", "rename", "delete"):
        assert stats.get(op, 0) >= 1, op
    assert stats["total"] == sum(v for k, v in stats.items() if k != "total")
    emu_control.reset_stats()
    assert emu_control.stats() == {"total": 0}


def test_control_api_rejects_bad_rules(emu_control):
    with pytest.raises(RuntimeError, match="400"):
        emu_control.add_fault(op="flush", action="explode")


# ----------------------------------------------------------------------------- CLI
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_health_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "devtools.adls_emulator", "--host", "127.0.0.1",
                             "--port", str(port), "--data-dir", str(tmp_path / "d")],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/health", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        svc = DataLakeServiceClient(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}", credential=SHARED_KEY)
        svc.create_file_system("cli").create_file("f").upload_data(b"x", overwrite=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode()
    assert "listening" in output and "stopped" in output


def _node(fs_client, path: str):
    """The store's node behind ``path`` (for tests that need to move time forward)."""
    running = fs_client._emulator  # set by the fixture below
    return running.emulator.store._fs[fs_client.file_system_name].nodes[path]  # noqa: SLF001


@pytest.fixture(autouse=True)
def _attach_emulator(request):
    """Let ``_node`` find the emulator behind ``emu_fs``."""
    if "emu_fs" in request.fixturenames:
        request.getfixturevalue("emu_fs")._emulator = request.getfixturevalue("emu")


def test_a_request_whose_body_is_cut_short_is_not_applied(emu, emu_fs):
    """A client that dies while sending a Put Blob or an append: the service applies nothing."""
    host, port = "127.0.0.1", emu.port
    path = f"/{DEV_ACCOUNT}/{emu_fs.file_system_name}/cut.json"
    with socket.create_connection((host, port)) as sock:
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nx-ms-blob-type: BlockBlob\r\n"
                      "Content-Length: 100\r\n\r\n").encode() + b'{"partial":')
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        assert sock.recv(100) == b""  # no answer: the connection is closed
    assert [p.name for p in emu_fs.get_paths()] == []
