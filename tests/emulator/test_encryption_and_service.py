"""Service properties, encryption scopes and customer-provided keys: stored, echoed and enforced."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.filedatalake import (
    CustomerProvidedEncryptionKey,
    DataLakeServiceClient,
    EncryptionScopeOptions,
    RetentionPolicy,
    StaticWebsite,
)

from devtools.adls_emulator.auth import DEV_ACCOUNT, DEV_KEY


def _cpk() -> CustomerProvidedEncryptionKey:
    raw = os.urandom(32)
    return CustomerProvidedEncryptionKey(base64.b64encode(raw).decode(),
                                         base64.b64encode(hashlib.sha256(raw).digest()).decode())


def test_service_properties_are_merged_stored_and_checked(emu_service):
    props = emu_service.get_service_properties()
    assert props["hour_metrics"].enabled is True and props["delete_retention_policy"].enabled is False
    emu_service.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=3),
                                       static_website=StaticWebsite(enabled=True, index_document="index.html"))
    emu_service.set_service_properties(target_version="2021-08-06")  # keeps the others
    props = emu_service.get_service_properties()
    assert props["delete_retention_policy"].days == 3 and props["static_website"].index_document == "index.html"
    assert props["target_version"] == "2021-08-06"
    with pytest.raises(HttpResponseError) as exc:
        emu_service.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=366))
    assert exc.value.status_code == 400
    assert emu_service.get_service_properties()["delete_retention_policy"].days == 3


def test_encryption_scope_of_the_file_system_is_echoed(emu_service):
    fs = emu_service.get_file_system_client(f"fs{uuid.uuid4().hex[:12]}")
    options = EncryptionScopeOptions("scope1", prevent_encryption_scope_override=True)
    fs.create_file_system(encryption_scope_options=options)
    assert fs.get_file_system_properties().encryption_scope.default_encryption_scope == "scope1"
    assert fs.get_file_system_properties().encryption_scope.prevent_encryption_scope_override is True
    f = fs.create_file("d/f")
    assert f.get_file_properties().encryption_scope == "scope1"
    assert [p.encryption_scope for p in fs.get_paths()] == ["scope1", "scope1"]
    listed = [x for x in emu_service.list_file_systems() if x.name == fs.file_system_name][0]
    assert listed.encryption_scope.default_encryption_scope == "scope1"


@pytest.fixture
def tls_fs(tls_files):
    from devtools.adls_emulator.server import start_in_thread

    cert, key = tls_files
    running = start_in_thread(tls_cert=cert, tls_key=key)
    svc = DataLakeServiceClient(running.url, credential={"account_name": DEV_ACCOUNT, "account_key": DEV_KEY},
                                connection_verify=cert, retry_total=0)
    yield svc.create_file_system(f"fs{uuid.uuid4().hex[:12]}")
    running.stop()


def test_customer_provided_key_is_needed_to_read_and_write(tls_fs):
    emu_fs, key = tls_fs, _cpk()
    f = emu_fs.get_file_client("secret")
    f.create_file(cpk=key)
    f.append_data(b"abc", 0, cpk=key)
    f.flush_data(3, cpk=key)
    assert f.download_file(cpk=key).readall() == b"abc"
    assert f.get_file_properties(cpk=key).size == 3
    for call in (lambda: f.download_file().readall(), lambda: f.get_file_properties(),
                 lambda: f.download_file(cpk=_cpk()).readall(), lambda: f.append_data(b"x", 3)):
        with pytest.raises(HttpResponseError) as exc:
            call()
        assert exc.value.status_code == 409
    plain = emu_fs.create_file("plain")
    with pytest.raises(HttpResponseError) as exc:
        plain.get_file_properties(cpk=key)
    assert exc.value.error_code == "BlobDoesNotUseCustomerSpecifiedEncryption"


def test_a_bad_customer_key_is_refused(tls_fs):
    fs = tls_fs
    bad = CustomerProvidedEncryptionKey(base64.b64encode(b"k" * 32).decode(), base64.b64encode(b"x" * 32).decode())
    with pytest.raises(HttpResponseError) as exc:
        fs.get_file_client("f").create_file(cpk=bad)
    assert exc.value.status_code == 400


def test_encryption_context_is_kept(emu_fs):
    f = emu_fs.create_file("g", encryption_context="ctx")
    assert f.get_file_properties().encryption_context == "ctx"
    assert [p.encryption_context for p in emu_fs.get_paths()] == ["ctx"]


def test_file_expiry_is_kept_shown_and_applied(emu_fs):
    import time
    from datetime import datetime, timedelta, timezone

    f = emu_fs.get_file_client("soon")
    f.create_file(expires_on=1500)  # milliseconds from now
    props = f.get_file_properties()
    assert props.expiry_time is not None
    assert [p.expiry_time is not None for p in emu_fs.get_paths()] == [True]
    later = emu_fs.create_file("later")
    later.set_file_expiry("Absolute", expires_on=datetime.now(timezone.utc) + timedelta(days=1))
    assert later.get_file_properties().expiry_time is not None
    later.set_file_expiry("NeverExpire")
    assert later.get_file_properties().expiry_time is None
    with pytest.raises(HttpResponseError) as exc:
        emu_fs.create_directory("d").get_file_client("x")  # a file client on a missing path
        emu_fs.get_file_client("d").set_file_expiry("RelativeToNow", expires_on=1000)
    assert exc.value.status_code == 400
    time.sleep(2)
    assert not f.exists()
    assert [p.name for p in emu_fs.get_paths()] == ["d", "later"]


def test_quick_query_csv_and_json(emu_fs):
    from azure.storage.filedatalake import DelimitedJsonDialect, DelimitedTextDialect

    f = emu_fs.create_file("data.csv")
    f.upload_data(b"name,size\r\na,100\r\nb,300\r\nshort\r\n", overwrite=True)
    errors = []
    reader = f.query_file("SELECT name FROM BlobStorage WHERE size > 250", on_error=errors.append,
                          file_format=DelimitedTextDialect(has_header=True),
                          output_format=DelimitedJsonDialect())
    assert reader.readall() == b'{"name":"b"}\n' and len(reader) == 32
    reader = f.query_file("SELECT size FROM BlobStorage", on_error=errors.append,
                          file_format=DelimitedTextDialect(has_header=True),
                          output_format=DelimitedTextDialect(delimiter=";", lineterminator="|"))
    assert reader.readall() == b"100|300|"
    assert [(e.is_fatal, e.position) for e in errors] == [(False, 25)]  # "short" has no size column
    j = emu_fs.create_file("data.json")
    j.upload_data(b'{"a": 1}\n{"b": 2}\n{bad}', overwrite=True)
    errors.clear()
    assert j.query_file("SELECT a FROM BlobStorage", on_error=errors.append,
                        file_format=DelimitedJsonDialect()).readall() == b'{"a":1}\n{}\n'
    assert [e.is_fatal for e in errors] == [True]
    with pytest.raises(HttpResponseError) as exc:
        f.query_file("SELECT COUNT(*) FROM BlobStorage").readall()
    assert exc.value.status_code == 501


def test_quick_query_arrow_output(emu_fs):
    import io

    import polars as pl
    from azure.storage.filedatalake import ArrowDialect, ArrowType, DelimitedTextDialect

    f = emu_fs.create_file("rows.csv")
    f.upload_data(b"id,name,price,ok,at\n1,apple,2.50,true,2026-01-02T03:04:05Z\n2,,x,false,\n"
                  b"3,pear,10,true,2026-03-04T05:06:07.250Z\n", overwrite=True)
    errors = []
    schema = [ArrowDialect(ArrowType.INT64, name="id"), ArrowDialect(ArrowType.STRING, name="name"),
              ArrowDialect(ArrowType.DECIMAL, name="price", precision=6, scale=2),
              ArrowDialect(ArrowType.BOOL, name="ok"), ArrowDialect(ArrowType.TIMESTAMP_MS, name="at")]
    stream = f.query_file("SELECT * FROM BlobStorage WHERE id > 1", on_error=errors.append,
                          file_format=DelimitedTextDialect(has_header=True), output_format=schema).readall()
    table = pl.read_ipc_stream(io.BytesIO(stream))  # an Arrow IPC stream any Arrow reader takes
    assert table.columns == ["id", "name", "price", "ok", "at"]
    assert table["id"].to_list() == [2, 3] and table["name"].to_list() == ["", "pear"]
    assert [str(v) if v is not None else None for v in table["price"].to_list()] == [None, "10.00"]
    assert table["ok"].to_list() == [False, True]
    assert table["at"].to_list()[1].isoformat() == "2026-03-04T05:06:07.250000"
    assert [(e.is_fatal, e.error) for e in errors] == [(False, "InvalidTypeConversion")]  # price "x"
    schema = [ArrowDialect(ArrowType.DOUBLE, name="p")]
    stream = f.query_file("SELECT price FROM BlobStorage WHERE id = 3", file_format=DelimitedTextDialect(
        has_header=True), output_format=schema).readall()
    assert pl.read_ipc_stream(io.BytesIO(stream))["p"].to_list() == [10.0]


def test_soft_delete_and_undelete_of_paths_and_file_systems():
    from azure.storage.filedatalake import RetentionPolicy

    from devtools.adls_emulator.server import start_in_thread

    running = start_in_thread(filesystem_soft_delete_days=7)
    try:
        svc = DataLakeServiceClient(running.url, credential={"account_name": DEV_ACCOUNT, "account_key": DEV_KEY},
                                    retry_total=0)
        fs = svc.create_file_system("soft")
        fs.get_file_client("d/a").upload_data(b"abc", overwrite=True)
        assert fs.get_file_client("d/a").delete_file().get("deletion_id") is None  # soft delete is off
        svc.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=2))
        fs.get_file_client("d/a").upload_data(b"abc", overwrite=True)
        fs.create_file("d/b")
        deleted = fs.get_file_client("d/a").delete_file()["deletion_id"]
        fs.get_directory_client("d").delete_directory()
        assert [(p.name, p.remaining_retention_days) for p in fs.list_deleted_paths()] == [("d", 1), ("d/a", 1)]
        assert len(list(next(fs.list_deleted_paths(results_per_page=1).by_page()))) == 1
        restored = fs._undelete_path("d/a", deleted)
        assert restored.download_file().readall() == b"abc"  # its parent directory is made again
        assert [p.name for p in fs.list_deleted_paths()] == ["d"]
        fs.delete_file_system()
        gone = [x for x in svc.list_file_systems(include_deleted=True) if x.deleted]
        assert [x.name for x in gone] == ["soft"]
        back = svc.undelete_file_system("soft", gone[0].deleted_version, new_name="again")
        assert [p.name for p in back.get_paths()] == ["d", "d/a"]
    finally:
        running.stop()


def test_only_the_accounts_encryption_scopes_are_accepted(emu_service):
    fs = emu_service.get_file_system_client(f"fs{uuid.uuid4().hex[:12]}")
    with pytest.raises(HttpResponseError) as exc:
        fs.create_file_system(encryption_scope_options=EncryptionScopeOptions("no-such-scope"))
    assert (exc.value.status_code, exc.value.error_code) == (404, "EncryptionScopeNotFound")
    fs.create_file_system()
    with pytest.raises(HttpResponseError) as exc:
        fs.create_file("f", headers={"x-ms-encryption-scope": "no-such-scope"})
    assert (exc.value.status_code, exc.value.error_code) == (404, "EncryptionScopeNotFound")
    assert [p.name for p in fs.get_paths()] == []  # nothing was made
    g = fs.create_file("g", headers={"x-ms-encryption-scope": "scope2"})
    assert g.get_file_properties().encryption_scope == "scope2"
    assert fs.create_file("h", headers={"x-ms-encryption-scope": "$account-encryption-key"})


def test_declared_encryption_scopes_replace_the_default_list():
    from azure.storage.filedatalake import FileSystemSasPermissions, generate_file_system_sas

    from devtools.adls_emulator.server import start_in_thread

    running = start_in_thread(encryption_scopes=["team-a"])
    try:
        svc = DataLakeServiceClient(running.url, credential={"account_name": DEV_ACCOUNT, "account_key": DEV_KEY},
                                    retry_total=0)
        fs = svc.create_file_system("scoped", encryption_scope_options=EncryptionScopeOptions("team-a"))
        assert fs.create_file("f").get_file_properties().encryption_scope == "team-a"
        with pytest.raises(HttpResponseError) as exc:
            fs.create_file("g", headers={"x-ms-encryption-scope": "scope1"})
        assert exc.value.error_code == "EncryptionScopeNotFound"
        # A SAS's encryption scope (ses) must exist too.
        for scope, ok in (("team-a", True), ("team-b", False)):
            sas = generate_file_system_sas(DEV_ACCOUNT, "scoped", DEV_KEY, FileSystemSasPermissions(write=True),
                                           expiry=datetime.now(timezone.utc) + timedelta(hours=1),
                                           encryption_scope=scope)
            via_sas = DataLakeServiceClient(running.url, credential=sas, retry_total=0).get_file_system_client("scoped")
            if ok:
                via_sas.create_file(f"by-sas-{scope}")
            else:
                with pytest.raises(HttpResponseError) as exc:
                    via_sas.create_file(f"by-sas-{scope}")
                assert exc.value.error_code == "EncryptionScopeNotFound"
    finally:
        running.stop()


def test_soft_deleted_items_and_service_properties_survive_a_restart(tmp_path):
    from devtools.adls_emulator.server import start_in_thread

    key = {"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}
    data_dir = str(tmp_path / "adls")
    first = start_in_thread(data_dir=data_dir, filesystem_soft_delete_days=7)
    try:
        svc = DataLakeServiceClient(first.url, credential=key, retry_total=0)
        svc.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=2),
                                   static_website=StaticWebsite(enabled=True, index_document="index.html"))
        fs = svc.create_file_system("keep")
        fs.get_file_client("d/a").upload_data(b"abc", overwrite=True)
        fs.get_file_client("d/b").upload_data(b"bbb", overwrite=True)
        deleted_a = fs.get_file_client("d/a").delete_file()["deletion_id"]
        gone = svc.create_file_system("gone")
        gone.get_file_client("x").upload_data(b"xyz", overwrite=True)
        gone.get_file_client("y").upload_data(b"y", overwrite=True)
        gone.get_file_client("y").delete_file()  # a soft-deleted path inside a deleted file system
        gone.delete_file_system()
    finally:
        first.stop()
    second = start_in_thread(data_dir=data_dir, filesystem_soft_delete_days=7)
    try:
        svc = DataLakeServiceClient(second.url, credential=key, retry_total=0)
        props = svc.get_service_properties()
        assert (props["delete_retention_policy"].enabled, props["delete_retention_policy"].days) == (True, 2)
        assert props["static_website"].index_document == "index.html"
        fs = svc.get_file_system_client("keep")
        assert [(p.name, p.deletion_id) for p in fs.list_deleted_paths()] == [("d/a", deleted_a)]
        assert fs._undelete_path("d/a", deleted_a).download_file().readall() == b"abc"
        assert list(fs.list_deleted_paths()) == []
        deleted = [x for x in svc.list_file_systems(include_deleted=True) if x.deleted]
        assert [x.name for x in deleted] == ["gone"]
        back = svc.undelete_file_system("gone", deleted[0].deleted_version)
        assert back.get_file_client("x").download_file().readall() == b"xyz"
        assert [p.name for p in back.list_deleted_paths()] == ["y"]
    finally:
        second.stop()
    third = start_in_thread(data_dir=data_dir, filesystem_soft_delete_days=7)
    try:  # what was restored stays restored, and nothing is listed as deleted twice
        svc = DataLakeServiceClient(third.url, credential=key, retry_total=0)
        assert [x.name for x in svc.list_file_systems(include_deleted=True) if x.deleted] == []
        assert svc.get_file_system_client("keep").get_file_client("d/a").download_file().readall() == b"abc"
        assert [p.name for p in svc.get_file_system_client("gone").list_deleted_paths()] == ["y"]
    finally:
        third.stop()
