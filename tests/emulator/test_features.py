"""Features beyond the core dfs operations: nothing silently ignored, content validation, ..."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError

from devtools.adls_emulator import content as cv
from devtools.adls_emulator.auth import DEV_ACCOUNT, DEV_KEY

from .rawclient import RawClient


@pytest.fixture
def raw(emu) -> RawClient:
    return RawClient(emu.base_url)


def _lower(headers: dict) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _new_file(raw: RawClient) -> str:
    fs = f"fs{uuid.uuid4().hex[:12]}"
    assert raw.send("PUT", f"/{DEV_ACCOUNT}/{fs}?resource=filesystem")[0] == 201
    url = f"/{DEV_ACCOUNT}/{fs}/file"
    assert raw.send("PUT", url + "?resource=file")[0] == 201
    return url


# --------------------------------------------------------------------------- nothing silently ignored
@pytest.mark.parametrize("header, feature", [
    ("x-ms-immutability-policy-mode", "immutability policies"),
    ("x-ms-tags", "blob index tags"),
    ("x-ms-something-new", "x-ms-something-new"),
])
def test_an_unimplemented_header_is_refused_naming_it(raw, header, feature):
    url = _new_file(raw)
    status, headers, body = raw.send("PUT", url + "?resource=file", {header: "x"})
    assert status == 501 and _lower(headers)["x-ms-error-code"] == "NotImplemented"
    assert feature in body.decode()
    assert raw.send("HEAD", url)[0] == 200  # and nothing was done


def test_an_unimplemented_query_parameter_is_refused_naming_it(raw):
    url = _new_file(raw)
    status, headers, body = raw.send("GET", url + "?snapshot=2026-01-01T00:00:00Z")
    assert status == 501 and "snapshots" in body.decode()
    fs = url.rsplit("/", 1)[0]
    status, _, body = raw.send("GET", f"/{DEV_ACCOUNT}?comp=list&include=snapshots")
    assert status == 501 and b"include=snapshots" in body
    status, _, body = raw.send("GET", fs + "?resource=filesystem&recursive=true&showonly=deleted")
    assert status == 501


def test_an_unknown_request_answers_501(raw):
    url = _new_file(raw)
    status, headers, _ = raw.send("PUT", url + "?comp=tier", {"x-ms-access-tier": "Cool"})
    assert status == 501 and _lower(headers)["x-ms-error-code"] == "NotImplemented"


# --------------------------------------------------------------------------- CRC64 and MD5
def test_crc64_is_the_azure_storage_crc64():
    assert cv.crc64(b"123456789") == 0xAE8B14860A799888
    assert cv.crc64(b"56789", cv.crc64(b"1234")) == cv.crc64(b"123456789")
    assert cv.crc64(b"") == 0


def test_structured_message_round_trip():
    data = bytes(range(256)) * 41
    message = cv.encode_structured(data, segment_size=1000)
    assert cv.decode_structured(message, cv.SM_V1_CRC64, str(len(data))) == data


def _append(raw, url, body, position=0, **headers):
    return raw.send("PATCH", f"{url}?action=append&position={position}", headers, body)


def test_append_with_content_md5_is_checked_and_echoed(raw):
    url = _new_file(raw)
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    status, headers, _ = _append(raw, url, b"abc", **{"Content-MD5": good})
    assert status == 202 and _lower(headers)["content-md5"] == good
    status, headers, _ = _append(raw, url, b"xyz", 3, **{"Content-MD5": good})
    assert status == 400 and _lower(headers)["x-ms-error-code"] == "Md5Mismatch"
    assert raw.send("PATCH", f"{url}?action=flush&position=3")[0] == 200
    assert raw.send("PATCH", f"{url}?action=flush&position=6")[0] == 400  # the bad append was not kept


def test_append_with_crc64_is_checked(raw):
    url = _new_file(raw)
    status, headers, _ = _append(raw, url, b"abc", **{"x-ms-content-crc64": cv.crc64_b64(b"abc")})
    assert status == 202 and _lower(headers)["x-ms-content-crc64"] == cv.crc64_b64(b"abc")
    status, headers, _ = _append(raw, url, b"abd", 3, **{"x-ms-content-crc64": cv.crc64_b64(b"abc")})
    assert status == 400 and _lower(headers)["x-ms-error-code"] == "Crc64Mismatch"


def test_structured_append_stores_the_content_only(raw):
    url = _new_file(raw)
    data = b"hello structured world" * 100
    message = cv.encode_structured(data, segment_size=512)
    status, headers, _ = _append(raw, url, message, **{"x-ms-structured-body": cv.SM_V1_CRC64,
                                                        "x-ms-structured-content-length": str(len(data))})
    assert status == 202 and _lower(headers)["x-ms-structured-body"] == cv.SM_V1_CRC64
    assert raw.send("PATCH", f"{url}?action=flush&position={len(data)}")[0] == 200
    status, _, body = raw.send("GET", url)
    assert status == 200 and body == data


@pytest.mark.parametrize("damage", ["crc", "length", "segment_count", "content_length_header"])
def test_a_damaged_structured_append_is_refused_and_nothing_is_stored(raw, damage):
    url = _new_file(raw)
    data = b"0123456789" * 50
    message = bytearray(cv.encode_structured(data, segment_size=128))
    length_header = str(len(data))
    if damage == "crc":
        message[20] ^= 0xFF  # a content byte: the segment CRC no longer matches
    elif damage == "length":
        message = message[:-3]
    elif damage == "segment_count":
        message[11] += 1
    else:
        length_header = str(len(data) - 1)
    status, headers, _ = _append(raw, url, bytes(message), **{"x-ms-structured-body": cv.SM_V1_CRC64,
                                                               "x-ms-structured-content-length": length_header})
    assert status == 400
    assert raw.send("PATCH", f"{url}?action=flush&position={len(data)}")[0] == 400
    assert raw.send("PATCH", f"{url}?action=flush&position={len(message)}")[0] == 400


def test_range_read_with_content_md5(raw):
    url = _new_file(raw)
    data = bytes(range(256)) * 20
    assert _append(raw, url, data)[0] == 202
    assert raw.send("PATCH", f"{url}?action=flush&position={len(data)}")[0] == 200
    status, headers, body = raw.send("GET", url, {"x-ms-range": "bytes=100-1123", "x-ms-range-get-content-md5": "true"})
    assert status == 206 and body == data[100:1124]
    assert _lower(headers)["content-md5"] == base64.b64encode(hashlib.md5(data[100:1124]).digest()).decode()
    # Without a range, or with one over 4 MiB, the service refuses the header.
    assert raw.send("GET", url, {"x-ms-range-get-content-md5": "true"})[0] == 400
    assert raw.send("GET", url, {"x-ms-range": f"bytes=0-{4 * 1024 * 1024}",
                                 "x-ms-range-get-content-md5": "true"})[0] == 400


def test_structured_read(raw):
    url = _new_file(raw)
    data = b"abcdefghij" * 1000
    assert _append(raw, url, data)[0] == 202
    assert raw.send("PATCH", f"{url}?action=flush&position={len(data)}")[0] == 200
    status, headers, body = raw.send("GET", url, {"x-ms-range": "bytes=10-5009",
                                                  "x-ms-structured-body": cv.SM_V1_CRC64})
    h = _lower(headers)
    assert status == 206 and h["x-ms-structured-body"] == cv.SM_V1_CRC64
    assert h["x-ms-structured-content-length"] == "5000" and h["content-range"] == f"bytes 10-5009/{len(data)}"
    assert cv.decode_structured(body, cv.SM_V1_CRC64, "5000") == data[10:5010]


def test_sdk_md5_validation_round_trip(emu_fs):
    f = emu_fs.create_file("md5")
    data = b"x" * 5000
    f.append_data(data, 0, validate_content=True)
    f.flush_data(len(data))
    assert f.download_file(validate_content=True).readall() == data
    assert f.download_file(offset=10, length=100, validate_content=True).readall() == data[10:110]


def test_sdk_crc64_structured_message_round_trip(emu_fs):
    pytest.importorskip("azure.storage.extensions.checksums")
    f = emu_fs.get_file_client("crc")
    data = bytes(range(256)) * 4096 + b"tail"  # > 1 MiB, several blocks
    f.upload_data(data, overwrite=True, validate_content="crc64", chunk_size=256 * 1024)
    assert f.download_file().readall() == data  # the envelope was not stored
    assert f.download_file(validate_content="crc64").readall() == data
    f.append_data(b"more", len(data), validate_content="crc64")
    f.flush_data(len(data) + 4)
    assert f.download_file(offset=len(data), validate_content="crc64").readall() == b"more"


def test_customer_provided_keys_are_enforced_or_refused(raw):
    url = _new_file(raw)
    key = b"k" * 32
    cpk = {"x-ms-encryption-key": base64.b64encode(key).decode(),
           "x-ms-encryption-key-sha256": base64.b64encode(hashlib.sha256(key).digest()).decode(),
           "x-ms-encryption-algorithm": "AES256"}
    status, headers, _ = raw.send("PUT", url + "?resource=file", cpk)
    assert status == 201 and _lower(headers)["x-ms-encryption-key-sha256"] == cpk["x-ms-encryption-key-sha256"]
    status, headers, _ = raw.send("HEAD", url)
    assert status == 409 and _lower(headers)["x-ms-error-code"] == "BlobUsesCustomerSpecifiedEncryption"
    assert raw.send("HEAD", url, cpk)[0] == 200
    # An operation that takes no key does not silently ignore one.
    status, _, body = raw.send("DELETE", url, cpk)
    assert status == 501 and b"customer-provided keys" in body


# --------------------------------------------------------------------------- ACLs
OID = "6f0a7a67-0000-4000-8000-00000000000a"
GID = "0c2e8f11-0000-4000-8000-00000000000b"


def test_acl_set_and_returned(emu_fs):
    f = emu_fs.create_file("acl-file")
    assert f.get_access_control()["permissions"] == "rw-r-----"  # 0666 & ~0027
    f.set_access_control(acl=f"user::rwx,user:{OID}:r-x,group::r--,other::---")
    got = f.get_access_control()
    assert got["acl"] == f"user::rwx,user:{OID}:r-x,group::r--,mask::r-x,other::---"
    assert got["permissions"] == "rwxr-x---+"
    f.set_access_control(owner=OID, group=GID)
    got = f.get_access_control()
    assert (got["owner"], got["group"]) == (OID, GID)
    f.set_access_control(permissions="0640")
    assert f.get_access_control()["acl"] == f"user::rw-,user:{OID}:r-x,group::r--,mask::r--,other::---"
    f.set_access_control(permissions="rwxrwxrwT")
    assert f.get_access_control()["permissions"] == "rwxrwxrwT+"
    props = f.get_file_properties()
    assert props.owner == OID and props.group == GID


def test_invalid_acls_are_refused(emu_fs):
    f = emu_fs.create_file("bad-acl")
    for bad in ("user::rwx", "user::rwx,group::r--,other::---,bogus::rwx", "user::rwz,group::---,other::---"):
        with pytest.raises(HttpResponseError) as exc:
            f.set_access_control(acl=bad)
        assert exc.value.status_code == 400
    with pytest.raises(HttpResponseError) as exc:
        f.set_access_control(acl="user::rwx,group::r--,other::---,default:user::rwx,default:group::---,"
                                 "default:other::---")
    assert exc.value.status_code == 400  # a file has no default ACL


def test_create_with_owner_group_permissions_umask_and_acl(emu_fs):
    d = emu_fs.create_directory("d1", owner=OID, group=GID, permissions="0777", umask="0057")
    got = d.get_access_control()
    assert (got["owner"], got["group"], got["permissions"]) == (OID, GID, "rwx-w----")
    f = emu_fs.create_file("f1", acl=f"user::rw-,group:{GID}:r--,group::---,other::---")
    assert f.get_access_control()["acl"] == f"user::rw-,group::---,group:{GID}:r--,mask::r--,other::---"


def test_children_inherit_the_default_acl(emu_fs):
    d = emu_fs.create_directory("parent")
    d.set_access_control(acl=f"user::rwx,group::r-x,other::---,default:user::rwx,default:user:{OID}:rwx,"
                             "default:group::r-x,default:other::---")
    sub = d.create_sub_directory("child")
    assert sub.get_access_control()["acl"] == (
        f"user::rwx,user:{OID}:rwx,group::r-x,mask::rwx,other::---,"
        f"default:user::rwx,default:user:{OID}:rwx,default:group::r-x,default:mask::rwx,default:other::---")
    f = d.create_file("file")
    assert f.get_access_control()["acl"] == f"user::rw-,user:{OID}:rwx,group::r-x,mask::rw-,other::---"


def test_listing_shows_owner_group_and_permissions(emu_fs):
    emu_fs.create_file("lf", owner=OID, permissions="0600")
    [entry] = [p for p in emu_fs.get_paths() if p.name == "lf"]
    assert (entry.owner, entry.permissions) == (OID, "rw-------")


def _tree(emu_fs, n_files=5):
    d = emu_fs.create_directory("tree")
    for i in range(n_files):
        d.create_file(f"f{i}")
    d.create_sub_directory("sub").create_file("g")
    return d


def test_recursive_set_update_remove(emu_fs):
    d = _tree(emu_fs)
    result = d.set_access_control_recursive(acl=f"user::rwx,user:{OID}:r-x,group::r-x,other::---")
    assert (result.counters.directories_successful, result.counters.files_successful,
            result.counters.failure_count) == (2, 6, 0)
    assert emu_fs.get_file_client("tree/sub/g").get_access_control()["acl"] == (
        f"user::rwx,user:{OID}:r-x,group::r-x,mask::r-x,other::---")
    d.update_access_control_recursive(acl=f"user:{OID}:rwx,group:{GID}:r--")
    assert emu_fs.get_file_client("tree/f0").get_access_control()["acl"] == (
        f"user::rwx,user:{OID}:rwx,group::r-x,group:{GID}:r--,mask::r-x,other::---")
    d.remove_access_control_recursive(acl=f"user:{OID},group:{GID}")
    assert emu_fs.get_file_client("tree/f3").get_access_control()["acl"] == (
        "user::rwx,group::r-x,mask::r-x,other::---")


def test_recursive_with_continuation(emu_fs):
    d = _tree(emu_fs, n_files=7)  # 2 directories + 8 files
    seen = []
    result = d.set_access_control_recursive(acl="user::rwx,group::---,other::---", batch_size=3,
                                            progress_hook=lambda c: seen.append(c.batch_counters))
    assert result.counters.directories_successful + result.counters.files_successful == 10
    assert len(seen) == 4 and result.continuation is None
    result = d.set_access_control_recursive(acl="user::rwx,group::r--,other::---", batch_size=2, max_batches=2)
    assert result.counters.directories_successful + result.counters.files_successful == 4
    assert result.continuation
    result = d.set_access_control_recursive(acl="user::rwx,group::r--,other::---", continuation=result.continuation)
    assert result.counters.directories_successful + result.counters.files_successful == 6
    assert all(emu_fs.get_file_client(p.name).get_access_control()["acl"] == "user::rwx,group::r--,other::---"
               for p in emu_fs.get_paths("tree"))


# --------------------------------------------------------------------------- SAS
def _expiry(hours: float = 1):
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) + timedelta(hours=hours)


def _sas_service(emu, sas):
    from azure.storage.filedatalake import DataLakeServiceClient

    return DataLakeServiceClient(emu.url, credential=sas, retry_total=0)


def _code_of(exc) -> tuple[int, str | None]:
    return exc.value.status_code, exc.value.error_code


def test_read_only_sas_cannot_write(emu, emu_fs):
    from azure.storage.filedatalake import FileSystemSasPermissions, generate_file_system_sas

    emu_fs.create_file("ro").upload_data(b"data", overwrite=True)
    sas = generate_file_system_sas(DEV_ACCOUNT, emu_fs.file_system_name, credential=DEV_KEY,
                                   permission=FileSystemSasPermissions(read=True, list=True), expiry=_expiry())
    fs = _sas_service(emu, sas).get_file_system_client(emu_fs.file_system_name)
    assert fs.get_file_client("ro").download_file().readall() == b"data"
    assert [p.name for p in fs.get_paths()] == ["ro"]
    for action in (lambda: fs.create_file("new"), lambda: fs.get_file_client("ro").append_data(b"x", 4),
                   lambda: fs.get_file_client("ro").delete_file(),
                   lambda: fs.get_file_client("ro").set_access_control(permissions="0777")):
        with pytest.raises(HttpResponseError) as exc:
            action()
        assert _code_of(exc) == (403, "AuthorizationPermissionMismatch")


def test_file_scoped_sas_reaches_only_its_file(emu, emu_fs):
    from azure.storage.filedatalake import FileSasPermissions, generate_file_sas

    emu_fs.create_file("mine").upload_data(b"mine", overwrite=True)
    emu_fs.create_file("other").upload_data(b"other", overwrite=True)
    sas = generate_file_sas(DEV_ACCOUNT, emu_fs.file_system_name, "", "mine", credential=DEV_KEY,
                            permission=FileSasPermissions(read=True, write=True), expiry=_expiry())
    fs = _sas_service(emu, sas).get_file_system_client(emu_fs.file_system_name)
    assert fs.get_file_client("mine").download_file().readall() == b"mine"
    fs.get_file_client("mine").append_data(b"!", 4)
    with pytest.raises(HttpResponseError) as exc:
        fs.get_file_client("other").download_file()
    assert exc.value.status_code == 403
    with pytest.raises(HttpResponseError) as exc:
        fs.get_file_client("other").append_data(b"x", 5)
    assert exc.value.status_code == 403
    with pytest.raises(HttpResponseError) as exc:
        list(fs.get_paths())
    assert exc.value.status_code == 403


def test_directory_sas_covers_its_subtree(emu, emu_fs):
    from azure.storage.filedatalake import DirectorySasPermissions, generate_directory_sas

    emu_fs.create_directory("a/b")
    emu_fs.create_directory("c")
    sas = generate_directory_sas(DEV_ACCOUNT, emu_fs.file_system_name, "a", credential=DEV_KEY,
                                 permission=DirectorySasPermissions(read=True, write=True, create=True),
                                 expiry=_expiry())
    fs = _sas_service(emu, sas).get_file_system_client(emu_fs.file_system_name)
    fs.create_file("a/b/new").upload_data(b"ok", overwrite=True)
    with pytest.raises(HttpResponseError) as exc:
        fs.create_file("c/new")
    assert exc.value.status_code == 403


def test_expired_or_tampered_sas_is_refused(emu, emu_fs):
    from azure.storage.filedatalake import FileSystemSasPermissions, generate_file_system_sas

    perms = FileSystemSasPermissions(read=True, write=True, list=True, create=True)
    expired = generate_file_system_sas(DEV_ACCOUNT, emu_fs.file_system_name, credential=DEV_KEY,
                                       permission=perms, expiry=_expiry(-1))
    with pytest.raises(HttpResponseError) as exc:
        list(_sas_service(emu, expired).get_file_system_client(emu_fs.file_system_name).get_paths())
    assert _code_of(exc) == (403, "AuthenticationFailed")
    good = generate_file_system_sas(DEV_ACCOUNT, emu_fs.file_system_name, credential=DEV_KEY,
                                    permission=FileSystemSasPermissions(read=True, list=True), expiry=_expiry())
    tampered = good.replace("sp=rl", "sp=rwlc")
    assert tampered != good
    with pytest.raises(HttpResponseError) as exc:
        _sas_service(emu, tampered).get_file_system_client(emu_fs.file_system_name).create_file("x")
    assert _code_of(exc) == (403, "AuthenticationFailed")


def test_account_sas_resource_types_and_permissions(emu, emu_fs):
    from azure.storage.filedatalake import AccountSasPermissions, ResourceTypes, generate_account_sas

    sas = generate_account_sas(DEV_ACCOUNT, DEV_KEY, ResourceTypes(object=True),
                               AccountSasPermissions(read=True, write=True, create=True), _expiry())
    svc = _sas_service(emu, sas)
    fs = svc.get_file_system_client(emu_fs.file_system_name)
    fs.create_file("acct").upload_data(b"x", overwrite=True)
    with pytest.raises(HttpResponseError) as exc:
        list(fs.get_paths())  # listing is a container-level operation
    assert _code_of(exc) == (403, "AuthorizationResourceTypeMismatch")
    with pytest.raises(HttpResponseError) as exc:
        fs.get_file_client("acct").delete_file()
    assert _code_of(exc) == (403, "AuthorizationPermissionMismatch")


# --------------------------------------------------------------------------- bearer tokens
def _jwt(aud: str, oid: str = "00000000-0000-4000-8000-0000000000aa", tid: str = "tenant-1") -> str:
    import json
    import time

    def enc(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"aud": aud, "oid": oid, "tid": tid, "exp": int(time.time()) + 3600}
    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}."


class ScopedCredential:
    """Hands out a token for the audience of the scope asked for, except the first time (wrong one)."""

    def __init__(self, first_audience: str | None = None):
        self.first = first_audience
        self.scopes: list[str] = []

    def get_token(self, *scopes, **kwargs):
        import time

        from azure.core.credentials import AccessToken

        self.scopes.append(scopes[0])
        aud = scopes[0].removesuffix("/.default")
        if self.first is not None:
            aud, self.first = self.first, None
        return AccessToken(_jwt(aud), int(time.time()) + 3600)


@pytest.fixture
def tls_emu(tls_files):
    from devtools.adls_emulator.server import start_in_thread

    cert, key = tls_files
    running = start_in_thread(tls_cert=cert, tls_key=key)
    yield running, cert
    running.stop()


@pytest.mark.parametrize("audience", [f"https://{DEV_ACCOUNT}.blob.core.windows.net",
                                      f"https://{DEV_ACCOUNT}.dfs.core.windows.net/", "https://storage.azure.com"])
def test_bearer_audiences_the_service_accepts(tls_emu, audience):
    from azure.storage.filedatalake import DataLakeServiceClient

    running, cert = tls_emu
    svc = DataLakeServiceClient(running.url, credential=ScopedCredential(), audience=audience.rstrip("/"),
                                connection_verify=cert, retry_total=0)
    svc.create_file_system("audfs").create_file("x")


def test_bad_audience_gets_the_challenge_and_the_sdk_retries(tls_emu):
    from azure.storage.filedatalake import DataLakeServiceClient

    running, cert = tls_emu
    credential = ScopedCredential(first_audience="https://vault.azure.net")
    svc = DataLakeServiceClient(running.url, credential=credential, connection_verify=cert, retry_total=0)
    svc.create_file_system("challenged")
    assert credential.scopes[-1] == "https://storage.azure.com/.default" and len(credential.scopes) == 2


def test_owner_of_what_a_bearer_caller_creates_is_its_oid(tls_emu):
    from azure.storage.filedatalake import DataLakeServiceClient

    running, cert = tls_emu
    svc = DataLakeServiceClient(running.url, credential=ScopedCredential(), connection_verify=cert, retry_total=0)
    f = svc.create_file_system("owned").create_file("mine")
    assert f.get_access_control()["owner"] == "00000000-0000-4000-8000-0000000000aa"


def test_user_delegation_sas(tls_emu):
    from azure.storage.filedatalake import (
        DataLakeServiceClient,
        FileSasPermissions,
        generate_file_sas,
    )

    running, cert = tls_emu
    svc = DataLakeServiceClient(running.url, credential=ScopedCredential(), connection_verify=cert, retry_total=0)
    fs = svc.create_file_system("udfs")
    fs.create_file("doc").upload_data(b"delegated", overwrite=True)
    key = svc.get_user_delegation_key(_expiry(-0.1), _expiry(1))
    assert key.signed_oid == "00000000-0000-4000-8000-0000000000aa" and key.value
    sas = generate_file_sas(DEV_ACCOUNT, "udfs", "", "doc", credential=key,
                            permission=FileSasPermissions(read=True), expiry=_expiry())
    via_sas = DataLakeServiceClient(running.url, credential=sas, connection_verify=cert, retry_total=0)
    doc = via_sas.get_file_system_client("udfs").get_file_client("doc")
    assert doc.download_file().readall() == b"delegated"
    with pytest.raises(HttpResponseError) as exc:
        doc.append_data(b"x", 9)
    assert _code_of(exc) == (403, "AuthorizationPermissionMismatch")
    forged = sas.replace(f"skoid={key.signed_oid}", "skoid=00000000-0000-4000-8000-0000000000bb")
    with pytest.raises(HttpResponseError) as exc:
        DataLakeServiceClient(running.url, credential=forged, connection_verify=cert, retry_total=0) \
            .get_file_system_client("udfs").get_file_client("doc").download_file()
    assert exc.value.status_code == 403


# --------------------------------------------------------------------------- beginFrom
def test_listing_begins_from(emu_fs):
    for name in ("top/a", "top/b/x", "top/b/y", "top/c", "top/d"):
        emu_fs.create_file(name)
    names = [p.name for p in emu_fs.get_paths("top", recursive=True, start_from="b/y")]
    assert names == ["top/b/y", "top/c", "top/d"]
    names = [p.name for p in emu_fs.get_paths("top", recursive=False, start_from="c")]
    assert names == ["top/c", "top/d"]
    with pytest.raises(HttpResponseError) as exc:
        list(emu_fs.get_paths("top", recursive=False, start_from="b/y"))
    assert exc.value.status_code == 400
    pages = emu_fs.get_paths("top", recursive=True, start_from="b", max_results=2).by_page()
    assert [[p.name for p in page] for page in pages] == [["top/b", "top/b/x"], ["top/b/y", "top/c"], ["top/d"]]


def test_delegated_user_tid_and_a_sas_that_comes_with_a_token(tls_emu):
    from azure.storage.filedatalake import DataLakeServiceClient, FileSystemSasPermissions, generate_file_system_sas

    running, cert = tls_emu
    svc = DataLakeServiceClient(running.url, credential=ScopedCredential(), connection_verify=cert, retry_total=0)
    fs = svc.create_file_system("delegated")
    fs.create_file("doc")
    key = svc.get_user_delegation_key(_expiry(-0.1), _expiry(1), delegated_user_tid="tenant-2")
    assert key.signed_delegated_user_tid == "tenant-2"
    oid = "00000000-0000-4000-8000-0000000000aa"
    for user, allowed in ((oid, True), ("00000000-0000-4000-8000-0000000000cc", False)):
        sas = generate_file_system_sas(DEV_ACCOUNT, "delegated", key, permission=FileSystemSasPermissions(list=True),
                                       expiry=_expiry(), user_delegation_oid=user)
        both = DataLakeServiceClient(f"{running.url}?{sas}", credential=ScopedCredential(), connection_verify=cert,
                                     retry_total=0).get_file_system_client("delegated")
        if allowed:
            assert [p.name for p in both.get_paths()] == ["doc"]
            with pytest.raises(HttpResponseError) as exc:  # the SAS's permissions still apply
                both.get_file_client("doc").append_data(b"x", 0)
            assert exc.value.status_code == 403
        else:
            with pytest.raises(HttpResponseError):
                list(both.get_paths())


# --------------------------------------------------------------------------- the root directory
def test_root_directory_acl_is_kept_and_inherited(emu_fs):
    root = emu_fs._get_root_directory_client()
    assert root.get_access_control()["acl"] == "user::rwx,group::r-x,other::---"
    root.set_access_control(acl="user::rwx,group::r-x,other::rwx,default:user::rwx,default:group::r--,"
                                "default:other::---")
    assert root.get_access_control()["permissions"] == "rwxr-xrwx"
    assert emu_fs.create_directory("top").get_access_control()["acl"].startswith("user::rwx,group::r--,other::---")


def test_rename_with_a_write_sas(emu, emu_fs):
    from azure.storage.filedatalake import FileSystemSasPermissions, generate_file_system_sas

    emu_fs.create_file("old")
    sas = generate_file_system_sas(DEV_ACCOUNT, emu_fs.file_system_name, DEV_KEY,
                                   permission=FileSystemSasPermissions(read=True, write=True), expiry=_expiry())
    via_sas = _sas_service(emu, sas).get_file_system_client(emu_fs.file_system_name)
    renamed = via_sas.get_file_client("old").rename_file(f"{emu_fs.file_system_name}/new")
    assert renamed.path_name == "new"


def test_get_blob_properties_shows_the_acl(emu_fs):
    f = emu_fs.create_directory("dir").create_file("f")
    props = f.get_file_properties(upn=True)  # x-ms-upn: true; identities come back as stored
    assert (props["owner"], props["acl"]) == ("$superuser", "user::rw-,group::r--,other::---")


# --------------------------------------------------------------------------- blob index tags, $logs
def test_blob_index_tags(emu_fs):
    f = emu_fs.create_file("tagged")
    etag = f.get_file_properties().etag
    assert f.get_tags() == {}
    f.set_tags({"project": "lake", "stage": "raw data/2026:a=b_c+d.e-f"})
    assert f.get_tags() == {"project": "lake", "stage": "raw data/2026:a=b_c+d.e-f"}
    props = f.get_file_properties()
    assert props.etag == etag  # tags do not change the ETag
    assert f._blob_client.get_blob_properties().tag_count == 2  # x-ms-tag-count
    f.set_tags({"only": "one"}, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert f.get_tags() == {"only": "one"}
    with pytest.raises(HttpResponseError) as exc:
        f.set_tags({"x": "y"}, etag='"0x1"', match_condition=MatchConditions.IfNotModified)
    assert exc.value.status_code == 412
    for bad in ({"a": "b!"}, {"": "empty key"}, {"k" * 129: "v"}, {f"t{i}": "v" for i in range(11)}):
        with pytest.raises(HttpResponseError) as exc:
            f.set_tags(bad)
        assert (exc.value.status_code, exc.value.error_code) == (400, "InvalidTag")
    f.set_tags({})
    assert f.get_tags() == {}
    with pytest.raises(HttpResponseError) as exc:  # conditions on tags (x-ms-if-tags) are not implemented
        f.get_tags(if_tags_match_condition="\"only\"='one'")
    assert exc.value.status_code == 501


def test_tags_need_the_t_permission(emu, emu_fs):
    from azure.storage.filedatalake import generate_file_sas

    emu_fs.create_file("f").set_tags({"a": "1"})
    for perms, ok in (("rw", False), ("t", True)):
        sas = generate_file_sas(DEV_ACCOUNT, emu_fs.file_system_name, "", "f", DEV_KEY, permission=perms,
                                expiry=_expiry())
        f = _sas_service(emu, sas).get_file_system_client(emu_fs.file_system_name).get_file_client("f")
        if ok:
            assert f.get_tags() == {"a": "1"}
        else:
            with pytest.raises(HttpResponseError) as exc:
                f.get_tags()
            assert exc.value.status_code == 403


def test_system_file_system_is_listed_only_when_asked(emu_service, emu_fs):
    assert "$logs" not in [x.name for x in emu_service.list_file_systems()]
    assert "$logs" in [x.name for x in emu_service.list_file_systems(include_system=True)]
