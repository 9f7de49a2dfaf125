"""POSIX ACL checks: which callers they apply to and what each operation needs.

Who is checked (Access control model in Azure Data Lake Storage Gen2):

* Shared Key, account SAS and service SAS carry no identity: no ACL check (the SAS's permissions
  apply, see :func:`~devtools.adls_emulator.auth.check_sas_permission`).
* A user delegation SAS with ``suoid`` (the SDK's ``agent_object_id``): its permissions apply *and* the
  ACLs are checked for that object ID. With ``saoid`` (``preauthorized_agent_object_id``) or neither,
  no ACL check.
* A bearer token: the ACLs are checked for its ``oid`` (groups from its ``groups`` claim), unless the
  caller is a superuser. The emulator has no role assignments, so superusers are the object IDs it is
  told hold Storage Blob Data Owner (``--superuser``) and, on one file system, the owner of that file
  system's root directory (the principal that created it with a token).

What is checked (the service's rules, as its ACL article states them): execute on every directory
from the root down to the target's parent; read on a file to read it; write on a file to append,
flush or change its properties; write and execute on the parent to create or delete (the sticky bit
on the parent then lets only the child's or the parent's owner delete or rename it); read, write and
execute on every directory of a recursive delete; read and execute on a directory to list it; only
the owner changes permissions and ACLs, only a superuser the owner, and the owner the owning group
only to a group it belongs to. Account and file-system-level operations (create or delete a file
system, its properties and metadata, listing file systems, service properties, user delegation keys,
listing deleted paths) are not governed by ACLs and are not checked.

A refusal is 403 ``AuthorizationPermissionMismatch``, as the service answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from . import acl as acls
from .errors import StorageError, error


@dataclass(frozen=True)
class Principal:
    oid: str
    groups: frozenset[str] = field(default_factory=frozenset)


def denied() -> StorageError:
    return error(403, "AuthorizationPermissionMismatch",
                 "This request is not authorized to perform this operation using this permission.")


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


class AclChecker:
    """The checks for one request, on the store's nodes (call with the store's lock held)."""

    def __init__(self, store, who: Principal):
        self.store = store
        self.who = who

    # -- primitives ---------------------------------------------------------------------------
    def _fs(self, name: str | None):
        return self.store._fs.get(name) if name is not None else None

    @staticmethod
    def _node(fs, path: str):
        return fs.root if path == "" else fs.nodes.get(path)

    def is_superuser(self, fs) -> bool:
        return fs is not None and fs.root.owner == self.who.oid

    def may(self, node, perms: str) -> bool:
        return all(acls.allowed(node.acl, node.owner, node.group, self.who.oid, set(self.who.groups), p)
                   for p in perms)

    def need(self, fs, path: str, perms: str) -> None:
        node = self._node(fs, path)
        if node is not None and not self.may(node, perms):
            raise denied()

    def traverse(self, fs, path: str) -> None:
        """Execute on the root and every directory above ``path`` (those that exist)."""
        if path == "":
            return
        parts = path.split("/")
        for i in range(len(parts)):
            ancestor = "/".join(parts[:i])
            node = self._node(fs, ancestor)
            if node is None:
                return
            if not self.may(node, "x"):
                raise denied()

    def deepest_existing_parent(self, fs, path: str) -> str:
        parent = _parent(path)
        while parent and parent not in fs.nodes:
            parent = _parent(parent)
        return parent

    def sticky(self, fs, path: str) -> None:
        """With the sticky bit on the parent, only the child's or the parent's owner may remove it."""
        parent, child = self._node(fs, _parent(path)), self._node(fs, path)
        if parent is not None and child is not None and parent.sticky and \
                self.who.oid not in (child.owner, parent.owner):
            raise denied()

    def can_change_acl(self, node) -> bool:
        return node.owner == self.who.oid

    # -- per operation ------------------------------------------------------------------------
    def check(self, req) -> bool:
        """Raise 403 when the ACLs refuse ``req``; False when they do not apply to the caller here
        (a superuser, or no such file system: that answers its own 404)."""
        fs = self._fs(req.filesystem)
        if fs is None or self.is_superuser(fs):
            return False
        self._check(req, fs)
        return True

    def _check(self, req, fs) -> None:
        op, path = req.op, req.path
        if op in ("read", "query", "get_tags"):
            self.traverse(fs, path)
            self.need(fs, path, "r")
        elif op == "get_properties":
            self.traverse(fs, path)
        elif op in ("append", "flush", "set_metadata", "set_properties", "set_expiry", "lease", "set_tags"):
            self.traverse(fs, path)
            self.need(fs, path, "w")
        elif op in ("create_file", "create_directory", "put_blob", "undelete_path"):
            self.traverse(fs, path)
            self.need(fs, self.deepest_existing_parent(fs, path), "wx")
            existing = self._node(fs, path)
            if existing is not None and not existing.is_dir and op != "undelete_path":
                self.sticky(fs, path)  # overwriting a file removes the old one
            owner = req.header("x-ms-owner")
            if owner and owner != self.who.oid:
                raise denied()  # only a superuser sets another owner
            group = req.header("x-ms-group")
            if group and group not in self.who.groups:
                raise denied()
        elif op == "delete":
            self.traverse(fs, path)
            self.need(fs, _parent(path), "wx")
            self.sticky(fs, path)
            node = self._node(fs, path)
            if node is not None and node.is_dir and req.flag("recursive"):
                prefix = path + "/"
                for name in [path, *(p for p in fs.nodes if p.startswith(prefix))]:
                    if fs.nodes[name].is_dir and not self.may(fs.nodes[name], "rwx"):
                        raise denied()
        elif op == "rename":
            self._check_rename_source(req)
            self.traverse(fs, path)
            self.need(fs, self.deepest_existing_parent(fs, path), "wx")
            if self._node(fs, path) is not None:
                self.sticky(fs, path)
        elif op == "list_paths":
            directory = "/".join(p for p in (req.params.get("directory") or "").split("/") if p)
            self.traverse(fs, directory)
            self.need(fs, directory, "rx")
        elif op == "set_access_control":
            self.traverse(fs, path)
            node = self._node(fs, path)
            if node is None:
                return
            if not self.can_change_acl(node):
                raise denied()
            owner, group = req.header("x-ms-owner"), req.header("x-ms-group")
            if owner and owner != node.owner:
                raise denied()  # only a superuser changes the owner
            if group and group != node.group and group not in self.who.groups:
                raise denied()
        elif op == "set_access_control_recursive":
            self.traverse(fs, path)  # each path's own check is made as it is changed

    def _check_rename_source(self, req) -> None:
        source = req.header("x-ms-rename-source") or ""
        source_path = urlsplit(source).path if "://" in source else source.split("?", 1)[0]
        parts = source_path.lstrip("/").split("/", 1)
        if len(parts) != 2:
            return  # the rename answers its own 400
        fs = self._fs(unquote(parts[0]))
        if fs is None or self.is_superuser(fs):
            return
        path = "/".join(p for p in unquote(parts[1]).split("/") if p)
        self.traverse(fs, path)
        self.need(fs, _parent(path), "wx")
        self.sticky(fs, path)
