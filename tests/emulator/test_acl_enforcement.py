"""POSIX ACLs applied to callers with an identity: bearer tokens, and user delegation SAS with ``suoid``.

Real HTTPS requests through the Azure SDK against the emulator. The file system is made with the
account key (so its root belongs to ``$superuser``) unless a test says otherwise.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.storage.filedatalake import (
    DataLakeDirectoryClient,
    DataLakeServiceClient,
    DirectorySasPermissions,
    generate_directory_sas,
)

from devtools.adls_emulator.auth import DEV_ACCOUNT, DEV_KEY

ALICE = "00000000-0000-4000-8000-00000000a11c"
BOB = "00000000-0000-4000-8000-000000000b0b"
OWNER = "00000000-0000-4000-8000-0000000000de"  # a configured superuser (Storage Blob Data Owner)
GROUP = "00000000-0000-4000-8000-00000000900a"


class Token:
    def __init__(self, oid: str, groups: tuple[str, ...] = ()):
        self.oid, self.groups = oid, groups

    def get_token(self, *scopes, **kwargs):
        def enc(obj: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        claims = {"aud": "https://storage.azure.com", "oid": self.oid, "tid": "tenant-1",
                  "exp": int(time.time()) + 3600, "groups": list(self.groups)}
        return AccessToken(f"{enc({'alg': 'none'})}.{enc(claims)}.", int(time.time()) + 3600)


@pytest.fixture
def acl_emu(tls_files):
    from devtools.adls_emulator.server import start_in_thread

    cert, key = tls_files
    running = start_in_thread(tls_cert=cert, tls_key=key, superusers=[OWNER])
    yield running, cert
    running.stop()


def _svc(acl_emu, credential) -> DataLakeServiceClient:
    running, cert = acl_emu
    return DataLakeServiceClient(running.url, credential=credential, connection_verify=cert, retry_total=0)


def _key_fs(acl_emu, name: str = "aclfs"):
    fs = _svc(acl_emu, {"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}).create_file_system(name)
    return fs


def _as(acl_emu, oid: str, name: str = "aclfs", groups: tuple[str, ...] = ()):
    return _svc(acl_emu, Token(oid, groups)).get_file_system_client(name)


def _refused(call) -> None:
    with pytest.raises(HttpResponseError) as exc:
        call()
    assert exc.value.status_code == 403
    assert exc.value.error_code == "AuthorizationPermissionMismatch"


def test_reading_needs_execute_on_every_parent_and_read_on_the_file(acl_emu):
    fs = _key_fs(acl_emu)
    f = fs.create_directory("a").create_sub_directory("b").create_file("data.txt")
    f.upload_data(b"secret", overwrite=True)
    alice = _as(acl_emu, ALICE).get_file_client("a/b/data.txt")

    _refused(lambda: alice.download_file().readall())  # root is rwxr-x---: others may not even traverse
    fs._get_root_directory_client().set_access_control(acl="user::rwx,group::r-x,other::--x")
    fs.get_directory_client("a").set_access_control(acl="user::rwx,group::r-x,other::--x")
    _refused(lambda: alice.download_file().readall())  # a/b still closed
    fs.get_directory_client("a/b").set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{ALICE}:--x")
    _refused(lambda: alice.download_file().readall())  # the file gives her nothing
    f.set_access_control(acl=f"user::rw-,group::r--,other::---,user:{ALICE}:r--")
    assert alice.download_file().readall() == b"secret"
    assert alice.get_file_properties().size == 6  # properties need only the traversal
    _refused(lambda: alice.append_data(b"x", 6))  # no w on the file

    f.set_access_control(acl=f"user::rw-,group::r--,other::---,user:{ALICE}:rw-,mask::r--")
    _refused(lambda: alice.append_data(b"x", 6))  # the mask limits named users
    f.set_access_control(acl=f"user::rw-,group::r--,other::---,user:{ALICE}:rw-,mask::rw-")
    alice.append_data(b"!", 6)
    alice.flush_data(7)
    assert f.download_file().readall() == b"secret!"
    # Bob is only "other": the traversal of a/b fails
    _refused(lambda: _as(acl_emu, BOB).get_file_client("a/b/data.txt").get_file_properties())


def test_groups_from_the_token(acl_emu):
    fs = _key_fs(acl_emu)
    fs._get_root_directory_client().set_access_control(acl=f"user::rwx,group::---,other::---,group:{GROUP}:r-x")
    fs.create_file("f").set_access_control(acl=f"user::rw-,group::---,other::---,group:{GROUP}:r--")
    _refused(lambda: _as(acl_emu, ALICE).get_file_client("f").download_file().readall())
    assert _as(acl_emu, ALICE, groups=(GROUP,)).get_file_client("f").download_file().readall() == b""
    assert [p.name for p in _as(acl_emu, ALICE, groups=(GROUP,)).get_paths()] == ["f"]


def test_create_delete_and_list_need_the_parent(acl_emu):
    fs = _key_fs(acl_emu)
    fs._get_root_directory_client().set_access_control(acl="user::rwx,group::r-x,other::--x")
    fs.create_directory("dir")
    alice = _as(acl_emu, ALICE)
    _refused(lambda: alice.create_file("dir/new"))
    _refused(lambda: list(alice.get_paths()))  # listing / needs r-x on /
    _refused(lambda: list(alice.get_paths("dir")))
    fs.get_directory_client("dir").set_access_control(acl="user::rwx,group::r-x,other::-wx")
    mine = alice.create_file("dir/new")  # -wx on the parent is enough to create
    assert mine.get_access_control()["owner"] == ALICE
    _refused(lambda: list(alice.get_paths("dir")))  # ... not to list
    fs.get_directory_client("dir").set_access_control(acl="user::rwx,group::r-x,other::rwx")
    assert [p.name for p in alice.get_paths("dir")] == ["dir/new"]
    fs.create_file("dir/theirs")  # owned by $superuser, no permissions for others
    alice.get_file_client("dir/theirs").delete_file()  # write on the file is not needed to delete it
    fs.get_directory_client("dir").set_access_control(acl="user::rwx,group::r-x,other::r-x")
    _refused(lambda: alice.get_file_client("dir/new").delete_file())  # no w on the parent any more
    _refused(lambda: alice.get_directory_client("dir").create_sub_directory("sub"))


def test_sticky_bit(acl_emu):
    fs = _key_fs(acl_emu)
    fs._get_root_directory_client().set_access_control(acl="user::rwx,group::r-x,other::--x")
    shared = fs.create_directory("shared")
    shared.set_access_control(permissions="rwxrwxrwt")
    assert shared.get_access_control()["permissions"] == "rwxrwxrwt"
    alice, bob = _as(acl_emu, ALICE), _as(acl_emu, BOB)
    alice.create_file("shared/alices")
    bob.create_file("shared/bobs")
    _refused(lambda: bob.get_file_client("shared/alices").delete_file())
    _refused(lambda: bob.get_file_client("shared/alices").rename_file("aclfs/shared/stolen"))
    _refused(lambda: bob.create_file("shared/alices"))  # overwriting removes her file too
    bob.get_file_client("shared/bobs").rename_file("aclfs/shared/bobs2")
    alice.get_file_client("shared/alices").delete_file()
    fs.get_file_client("shared/bobs2").delete_file()  # the account key is the superuser


def test_recursive_delete_needs_rwx_on_every_directory(acl_emu):
    fs = _key_fs(acl_emu)
    fs._get_root_directory_client().set_access_control(acl="user::rwx,group::r-x,other::rwx")
    alice = _as(acl_emu, ALICE)
    top = alice.create_directory("top", permissions="0777", umask="0000")
    alice.create_directory("top/sub", permissions="0777", umask="0000")
    fs.create_directory("top/locked")  # rwxr-x--- for $superuser
    _refused(lambda: top.delete_directory())
    fs.get_directory_client("top/locked").set_access_control(permissions="rwxrwxrwx")
    top.delete_directory()
    assert [p.name for p in fs.get_paths()] == []


def test_only_the_owner_changes_acls_and_only_a_superuser_the_owner(acl_emu):
    fs = _key_fs(acl_emu)
    fs._get_root_directory_client().set_access_control(acl="user::rwx,group::r-x,other::rwx")
    alice = _as(acl_emu, ALICE, groups=(GROUP,))
    f = alice.create_file("f")
    f.set_access_control(permissions="rw-------")
    assert f.get_access_control()["permissions"] == "rw-------"
    _refused(lambda: _as(acl_emu, BOB).get_file_client("f").set_access_control(permissions="rwxrwxrwx"))
    _refused(lambda: f.set_access_control(owner=BOB))
    _refused(lambda: f.set_access_control(group="some-other-group"))
    f.set_access_control(group=GROUP)  # a group she is a member of
    _refused(lambda: alice.create_file("g", owner=BOB))
    _as(acl_emu, OWNER).get_file_client("f").set_access_control(owner=BOB)  # a superuser may
    assert f.get_access_control()["owner"] == BOB


def test_default_acl_and_umask_on_create_by_a_user(acl_emu):
    fs = _key_fs(acl_emu)
    fs._get_root_directory_client().set_access_control(acl="user::rwx,group::r-x,other::rwx")
    alice = _as(acl_emu, ALICE)
    d = alice.create_directory("d")
    assert d.get_access_control()["permissions"] == "rwxr-x---"  # 0777 limited by the umask 0027
    d.set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{BOB}:--x,default:user::rwx,default:group::r-x,"
                             f"default:other::---,default:user:{BOB}:r-x")
    child = alice.create_file("d/child")
    acl = child.get_access_control()
    assert acl["owner"] == ALICE and f"user:{BOB}:r-x" in acl["acl"] and acl["permissions"] == "rw-r-----+"
    assert _as(acl_emu, BOB).get_file_client("d/child").download_file().readall() == b""
    _refused(lambda: _as(acl_emu, BOB).get_file_client("d/child").append_data(b"x", 0))


def test_superusers_and_the_file_system_owner_are_not_restricted(acl_emu):
    fs = _key_fs(acl_emu)
    fs.create_directory("closed").set_access_control(permissions="---------")
    _as(acl_emu, OWNER).create_file("closed/by-owner")
    _refused(lambda: _as(acl_emu, ALICE).create_file("closed/by-alice"))
    own = _svc(acl_emu, Token(ALICE)).create_file_system("alices")  # she made it: its root is hers
    own.create_directory("x").set_access_control(permissions="---------")
    own.create_file("x/y")
    assert own._get_root_directory_client().get_access_control()["owner"] == ALICE


def _udk_sas(acl_emu, fs_name: str, directory: str, **kwargs) -> str:
    svc = _svc(acl_emu, Token(OWNER))
    now = datetime.now(timezone.utc)
    key = svc.get_user_delegation_key(now - timedelta(minutes=5), now + timedelta(hours=1))
    return generate_directory_sas(DEV_ACCOUNT, fs_name, directory, key, permission=DirectorySasPermissions(
        read=True, add=True, create=True, write=True, delete=True, list=True, move=True, execute=True,
        manage_ownership=True, manage_access_control=True), expiry=now + timedelta(hours=1), **kwargs)


def _tree(fs) -> None:
    fs._get_root_directory_client().set_access_control(acl="user::--x,group::--x,other::--x")
    fs.create_directory("dir", owner=ALICE)
    fs.create_directory("dir/sub", owner=ALICE, permissions="0777")
    fs.create_file("dir/sub/file1", owner=ALICE, permissions="0777")
    fs.create_file("dir/file3")  # not hers
    fs.create_directory("dir/zdir")  # not hers either


def test_user_delegation_sas_with_an_unauthorized_user_checks_acls(acl_emu):
    running, cert = acl_emu
    fs = _key_fs(acl_emu)
    _tree(fs)
    sas = _udk_sas(acl_emu, "aclfs", "dir", agent_object_id=ALICE)  # suoid
    client = DataLakeDirectoryClient(running.url, "aclfs", "dir", credential=sas, connection_verify=cert,
                                     retry_total=0)
    batches = []
    result = client.set_access_control_recursive(acl="user::rwx,group::r-x,other::rwx", batch_size=2,
                                                 continue_on_failure=True,
                                                 progress_hook=lambda r: batches.append(r.batch_failures))
    assert result.counters.failure_count == 2
    assert (result.counters.directories_successful, result.counters.files_successful) == (2, 1)
    failures = sorted((f.name, f.is_directory) for batch in batches for f in batch)
    assert failures == [("dir/file3", False), ("dir/zdir", True)]
    assert fs.get_file_client("dir/file3").get_access_control()["acl"] == "user::rw-,group::r--,other::---"
    assert fs.get_file_client("dir/sub/file1").get_access_control()["acl"] == "user::rwx,group::r-x,other::rwx"

    # Without continue_on_failure the service stops at the first failure.
    result = client.set_access_control_recursive(acl="user::rwx,group::r-x,other::r-x", batch_size=2)
    assert result.counters.failure_count == 1 and result.continuation is None

    # The same SAS for a preauthorized user (saoid): no ACL check.
    sas = _udk_sas(acl_emu, "aclfs", "dir", preauthorized_agent_object_id=ALICE)
    client = DataLakeDirectoryClient(running.url, "aclfs", "dir", credential=sas, connection_verify=cert,
                                     retry_total=0)
    result = client.set_access_control_recursive(acl="user::rwx,group::r-x,other::rwx")
    assert result.counters.failure_count == 0
    # Data operations under suoid are checked too: Bob may not read Alice's file.
    sas = _udk_sas(acl_emu, "aclfs", "dir", agent_object_id=BOB)
    fs.get_file_client("dir/sub/file1").set_access_control(permissions="rw-------")
    bobs = DataLakeDirectoryClient(running.url, "aclfs", "dir", credential=sas, connection_verify=cert,
                                   retry_total=0).get_file_client("sub/file1")
    _refused(lambda: bobs.download_file().readall())
