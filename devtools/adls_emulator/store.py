"""In-memory model of an ADLS Gen2 (hierarchical namespace) account: pure logic, no HTTP.

File systems hold a flat ``dict`` of paths (``"a/b/c"``) to :class:`Node` (file or directory).
Every public method takes the store's lock, so the store is safe to share between request threads.
Failures raise :class:`~devtools.adls_emulator.errors.StorageError`.

Write rules (see docs/adls-emulator.md):

* ``append(position=P)`` stores the bytes as an uncommitted segment ``(P, data)``; nothing a reader
  sees changes (no ETag, Last-Modified or length change). Any position is accepted, also one that
  overlaps committed or uncommitted data (the live service accepts those too).
* ``flush(position=L)`` builds the new content from the committed bytes overlaid with the
  uncommitted segments in arrival order (a later append wins where segments overlap). Every byte
  of ``[committed_length, L)`` must be covered by some segment and ``L`` must not be below the
  committed length, otherwise 400 ``InvalidFlushPosition``. The parts of segments at or above ``L``
  are discarded, or kept as uncommitted data when ``retainUncommittedData=true``. A flush always
  gives a new ETag and Last-Modified, even when no byte changed.
* Leases follow the Blob service's lease state machine (available, leased, expired, breaking,
  broken). Writes on a leased path need the matching lease ID.

``flavor`` arguments (``"dfs"`` or ``"blob"``) choose between the two endpoints' error codes for
the same condition (e.g. ``FilesystemNotFound`` vs ``ContainerNotFound``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import acl as acls
from .errors import StorageError, error

# Windows FILETIME epoch offset (100 ns ticks between 1601-01-01 and 1970-01-01).
_FILETIME_EPOCH = 116444736000000000

class _Clock:
    """Hands out strictly increasing ETag values shaped like the service's (``"0x8DE93FE34EFE2CC"``)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def etag(self) -> str:
        with self._lock:
            value = max(self._last + 1, _FILETIME_EPOCH + time.time_ns() // 100)
            self._last = value
        return f'"0x{value + 0x0700000000000000:015X}"'


_CLOCK = _Clock()


def new_etag() -> str:
    return _CLOCK.etag()


def filetime(ts: float) -> str:
    """Seconds since the epoch as the FILETIME decimal string the listing uses for creationTime."""
    return str(_FILETIME_EPOCH + int(ts * 10_000_000))


@dataclass
class Conditions:
    """HTTP conditional headers. Dates are POSIX seconds (already parsed)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None
    if_unmodified_since: float | None = None

    def empty(self) -> bool:
        return not (self.if_match or self.if_none_match or self.if_modified_since is not None
                    or self.if_unmodified_since is not None)

    def check(self, etag: str | None, last_modified: float | None, *, read: bool = False) -> None:
        """Raise 412 ConditionNotMet (or 304 for reads' "not modified" cases) when not met.

        ``etag=None`` means the resource does not exist.
        """
        exists = etag is not None
        if self.if_match:
            if not exists or (self.if_match.strip() != "*" and not _etag_in(etag, self.if_match)):
                raise error(412, "ConditionNotMet")
        if self.if_unmodified_since is not None and exists:
            if int(last_modified) > int(self.if_unmodified_since):
                raise error(412, "ConditionNotMet")
        if self.if_none_match:
            if exists and (self.if_none_match.strip() == "*" or _etag_in(etag, self.if_none_match)):
                if read:
                    raise StorageError(304, "ConditionNotMet", "Not Modified")
                raise error(412, "ConditionNotMet")
        if self.if_modified_since is not None and exists:
            if int(last_modified) <= int(self.if_modified_since):
                if read:
                    raise StorageError(304, "ConditionNotMet", "Not Modified")
                raise error(412, "ConditionNotMet")


def _etag_in(etag: str, header: str) -> bool:
    wanted = {part.strip() for part in header.split(",")}
    bare = etag.strip('"')
    return etag in wanted or bare in wanted or f'W/{etag}' in wanted


@dataclass
class Lease:
    """Blob-style lease. ``duration`` is -1 (infinite) or seconds; times are POSIX seconds."""

    state: str = "available"  # available | leased | expired | breaking | broken
    lease_id: str | None = None
    duration: int = -1
    expires_at: float | None = None
    break_at: float | None = None

    def refresh(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if self.state == "leased" and self.expires_at is not None and now >= self.expires_at:
            self.state = "expired"
        if self.state == "breaking" and self.break_at is not None and now >= self.break_at:
            self.state = "broken"

    @property
    def locked(self) -> bool:
        self.refresh()
        return self.state in ("leased", "breaking")

    def headers(self) -> dict[str, str]:
        self.refresh()
        out = {"x-ms-lease-state": self.state, "x-ms-lease-status": "locked" if self.locked else "unlocked"}
        if self.state == "leased":
            out["x-ms-lease-duration"] = "infinite" if self.duration == -1 else "fixed"
        return out

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Lease":
        return cls(**data)

    # -- lease operations (Blob service semantics) -------------------------------------------
    def acquire(self, proposed_id: str | None, duration: int) -> str:
        _check_duration(duration)
        self.refresh()
        if self.state == "breaking":
            raise error(409, "LeaseIsBreakingAndCannotBeAcquired")
        if self.state == "leased" and proposed_id != self.lease_id:
            raise error(409, "LeaseAlreadyPresent")
        self.state = "leased"
        self.lease_id = proposed_id or str(uuid.uuid4())
        self.duration = duration
        self.expires_at = None if duration == -1 else time.time() + duration
        self.break_at = None
        return self.lease_id

    def _check_holder(self, lease_id: str | None) -> None:
        """Renew and release need a current lease and its ID."""
        self.refresh()
        if self.state == "available" or self.lease_id is None:
            raise error(409, "LeaseNotPresentWithLeaseOperation")
        if lease_id != self.lease_id:
            raise error(409, "LeaseIdMismatchWithLeaseOperation")

    def renew(self, lease_id: str | None) -> str:
        self._check_holder(lease_id)
        if self.state in ("breaking", "broken"):
            raise error(409, "LeaseIsBrokenAndCannotBeRenewed")
        self.state = "leased"
        self.expires_at = None if self.duration == -1 else time.time() + self.duration
        return self.lease_id

    def release(self, lease_id: str | None) -> None:
        self._check_holder(lease_id)
        self.state, self.lease_id, self.expires_at, self.break_at = "available", None, None, None

    def change(self, lease_id: str | None, proposed_id: str | None) -> str:
        self.refresh()
        if not proposed_id:
            raise error(400, "InvalidHeaderValue", "x-ms-proposed-lease-id is required.")
        if self.state not in ("leased", "breaking"):
            raise error(409, "LeaseNotPresentWithLeaseOperation")
        if lease_id not in (self.lease_id, proposed_id):
            raise error(409, "LeaseIdMismatchWithLeaseOperation")
        if self.state == "breaking":
            raise error(409, "LeaseIsBreakingAndCannotBeChanged")
        self.lease_id = proposed_id
        return proposed_id

    def break_(self, period: int | None) -> int:
        """Break the lease; returns the seconds until it is broken (``x-ms-lease-time``)."""
        self.refresh()
        now = time.time()
        if self.state == "available":
            raise error(409, "LeaseNotPresentWithLeaseOperation")
        if self.state in ("broken", "expired"):
            self.state = "broken"
            return 0
        if self.state == "breaking":
            return max(0, int(round((self.break_at or now) - now)))
        remaining = None if self.expires_at is None else max(0.0, self.expires_at - now)
        if period is None:
            wait = 0.0 if remaining is None else remaining
        else:
            wait = float(period) if remaining is None else min(float(period), remaining)
        if wait <= 0:
            self.state, self.break_at = "broken", None
            return 0
        self.state, self.break_at = "breaking", now + wait
        return int(round(wait))

    def check_write(self, lease_id: str | None, flavor: str) -> None:
        """Raise the service's 412 when a write does not carry the right lease ID."""
        if self.locked:
            if not lease_id:
                raise error(412, "LeaseIdMissing")
            if lease_id != self.lease_id:
                raise error(412, "LeaseIdMismatchWithBlobOperation" if flavor == "blob" else "LeaseIdMismatch")
        elif lease_id:
            raise error(412, "LeaseNotPresentWithBlobOperation" if flavor == "blob" else "LeaseNotPresent")


def _check_duration(duration: int) -> None:
    if duration != -1 and not 15 <= duration <= 60:
        raise error(400, "InvalidHeaderValue", "x-ms-lease-duration must be -1 or between 15 and 60.")


ACCOUNT_KEY_SCOPE = "$account-encryption-key"


@dataclass
class Node:
    """A file or a directory. ``data`` is the committed content; ``uncommitted`` holds appended
    but not yet flushed segments ``(position, bytes)`` in arrival order."""

    kind: str  # "file" | "directory"
    etag: str
    last_modified: float
    created: float
    data: bytearray = field(default_factory=bytearray)
    uncommitted: list[tuple[int, bytes]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    http_headers: dict[str, str] = field(default_factory=dict)
    acl: list = field(default_factory=lambda: acls.base("rw-r-----"))  # access ACL entries
    default_acl: list = field(default_factory=list)  # directories only
    sticky: bool = False
    owner: str = "$superuser"
    group: str = "$superuser"
    lease: Lease = field(default_factory=Lease)
    # How the path is encrypted: "scope" (an encryption scope other than the account key),
    # "key_sha256" (a customer-provided key), "context" (x-ms-encryption-context, files).
    encryption: dict[str, str] = field(default_factory=dict)
    expiry: float | None = None  # files: when the file is deleted (set with x-ms-expiry-*)
    tags: dict[str, str] = field(default_factory=dict)  # blob index tags

    @property
    def is_dir(self) -> bool:
        return self.kind == "directory"

    @property
    def permissions(self) -> str:
        return acls.permissions_string(self.acl, self.sticky)

    def touch(self) -> None:
        self.etag = new_etag()
        self.last_modified = time.time()

    def to_record(self, content: bool = True) -> tuple[dict[str, Any], bytes, list[tuple[int, bytes]]]:
        """(properties, content, uncommitted appends); ``content=False``: the properties only."""
        meta = {
            "kind": self.kind, "etag": self.etag, "last_modified": self.last_modified,
            "created": self.created, "metadata": self.metadata, "http_headers": self.http_headers,
            "acl": self.acl, "default_acl": self.default_acl, "sticky": self.sticky, "owner": self.owner,
            "group": self.group, "lease": self.lease.to_dict(), "encryption": self.encryption,
            "expiry": self.expiry, "tags": self.tags,
        }
        if not content:
            return meta, b"", []
        return meta, bytes(self.data), list(self.uncommitted)

    @classmethod
    def from_record(cls, meta: dict[str, Any], data: bytes, uncommitted: list[tuple[int, bytes]]) -> "Node":
        return cls(
            kind=meta["kind"], etag=meta["etag"], last_modified=meta["last_modified"],
            created=meta["created"], data=bytearray(data), uncommitted=[(int(p), bytes(b)) for p, b in uncommitted],
            metadata=dict(meta["metadata"]), http_headers=dict(meta["http_headers"]),
            acl=meta.get("acl") or acls.base((meta.get("permissions") or "rw-r-----")[:9]),
            default_acl=meta.get("default_acl", []), sticky=meta.get("sticky", False),
            owner=meta.get("owner", "$superuser"), group=meta.get("group", "$superuser"),
            lease=Lease.from_dict(meta["lease"]), encryption=dict(meta.get("encryption") or {}),
            expiry=meta.get("expiry"), tags=dict(meta.get("tags") or {}),
        )


@dataclass
class FileSystem:
    name: str
    etag: str
    last_modified: float
    created: float
    metadata: dict[str, str] = field(default_factory=dict)
    lease: Lease = field(default_factory=Lease)
    nodes: dict[str, Node] = field(default_factory=dict)
    default_scope: str = ACCOUNT_KEY_SCOPE
    deny_scope_override: bool = False
    expiring: bool = True  # some file may have an expiry time (checked, then kept exact, by the store)
    # Soft-deleted paths: {"path", "deletion_id", "deleted_time", "days", "nodes": {path: Node}}.
    deleted: list[dict[str, Any]] = field(default_factory=list)
    # The root directory ("/"): its owner, group and ACLs (path "" in the store's calls).
    root: Node = field(default_factory=lambda: Node(kind="directory", etag=new_etag(), last_modified=time.time(),
                                                    created=time.time(), acl=acls.base("rwxr-x---")))

    def implicit_encryption(self) -> dict[str, str]:
        """Directories made on the way to a new path are encrypted with the file system's default scope."""
        return {} if self.default_scope == ACCOUNT_KEY_SCOPE else {"scope": self.default_scope}

    def to_meta(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, "last_modified": self.last_modified,
                "created": self.created, "metadata": self.metadata, "lease": self.lease.to_dict(),
                "default_scope": self.default_scope, "deny_scope_override": self.deny_scope_override,
                "root": self.root.to_record()[0]}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "FileSystem":
        return cls(name=meta["name"], etag=meta["etag"], last_modified=meta["last_modified"],
                   created=meta["created"], metadata=dict(meta["metadata"]),
                   lease=Lease.from_dict(meta["lease"]),
                   default_scope=meta.get("default_scope", ACCOUNT_KEY_SCOPE),
                   deny_scope_override=meta.get("deny_scope_override", False),
                   **({"root": Node.from_record(meta["root"], b"", [])} if meta.get("root") else {}))


@dataclass
class PathInfo:
    """A consistent snapshot of one path, handed to the HTTP layer."""

    name: str
    kind: str
    etag: str
    last_modified: float
    created: float
    length: int
    metadata: dict[str, str]
    http_headers: dict[str, str]
    permissions: str
    lease_headers: dict[str, str]
    owner: str = "$superuser"
    group: str = "$superuser"
    acl: str = ""
    expires_at: float | None = None
    encryption: dict[str, str] = field(default_factory=dict)
    tag_count: int = 0

    @property
    def is_dir(self) -> bool:
        return self.kind == "directory"


_last_stamp = 0


def _deletion_stamp() -> str:
    """A deletion ID / deleted version: increasing 100-ns ticks (the service's look)."""
    global _last_stamp
    _last_stamp = max(_last_stamp + 1, time.time_ns() // 100)
    return str(_last_stamp)


def normalize_path(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return "/".join(parts)


def sort_key(path: str) -> tuple[str, ...]:
    """Listing order: depth-first by path components (``dir1``, ``dir1/x``, ``dir1-a``)."""
    return tuple(path.split("/"))


def parse_properties(header: str | None) -> dict[str, str]:
    """Decode ``x-ms-properties`` (``k1=base64,k2=base64``) into metadata."""
    out: dict[str, str] = {}
    if not header:
        return out
    for item in header.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise error(400, "InvalidHeaderValue", "x-ms-properties is malformed.")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = base64.b64decode(value.strip()).decode("utf-8")
        except Exception as exc:  # noqa: BLE001 - any decoding problem is a client error
            raise error(400, "InvalidHeaderValue", "x-ms-properties values must be base64.") from exc
    return out


def encode_properties(metadata: dict[str, str]) -> str:
    return ",".join(f"{k}={base64.b64encode(v.encode()).decode()}" for k, v in metadata.items())


class Store:
    """All file systems of one account. ``persistence`` (optional) receives every change."""

    def __init__(self, persistence: "Any | None" = None) -> None:
        self._lock = threading.RLock()
        self.lock = self._lock  # for checks that must see the same state as the operation after them
        self._fs: dict[str, FileSystem] = {}
        self._persistence = persistence
        # Soft-deleted file systems, (name, version) -> (FileSystem, deleted_time, days).
        self._deleted_fs: dict[tuple[str, str], tuple[FileSystem, float, int]] = {}
        self.filesystem_soft_delete_days: int | None = None  # an account setting (management plane)
        if persistence is not None:
            self._fs = persistence.load()
            self._deleted_fs = persistence.load_deleted_filesystems()

    def save_setting(self, name: str, value: Any) -> None:
        """Keep an account setting (JSON) with the data, when there is a data directory."""
        if self._persistence is not None:
            self._persistence.save_setting(name, value)

    def load_setting(self, name: str) -> Any:
        return self._persistence.load_setting(name) if self._persistence is not None else None

    # ------------------------------------------------------------------ persistence helpers
    def _save_fs(self, fs: FileSystem) -> None:
        if self._persistence is not None:
            self._persistence.save_filesystem(fs)

    def _save_nodes(self, fs: FileSystem, paths: Iterable[str]) -> None:
        if self._persistence is None:
            return
        for path in paths:
            node = fs.nodes.get(path)
            if node is None:
                self._persistence.delete_node(fs.name, path)
            else:
                self._persistence.save_node(fs.name, path, node)

    # ------------------------------------------------------------------ file systems
    def create_filesystem(self, name: str, metadata: dict[str, str] | None = None, flavor: str = "blob",
                          default_scope: str | None = None, deny_scope_override: bool = False,
                          owner: str = "$superuser") -> FileSystem:
        """``owner``: who created it (a token's object ID, else ``$superuser``) owns its root
        directory and is its owning group."""
        with self._lock:
            if name in self._fs:
                raise error(409, "ContainerAlreadyExists" if flavor == "blob" else "FilesystemAlreadyExists")
            now = time.time()
            fs = FileSystem(name=name, etag=new_etag(), last_modified=now, created=now,
                            metadata=dict(metadata or {}), default_scope=default_scope or ACCOUNT_KEY_SCOPE,
                            deny_scope_override=deny_scope_override)
            fs.root.owner = fs.root.group = owner
            self._fs[name] = fs
            self._save_fs(fs)
            return fs

    def _get_fs(self, name: str, flavor: str) -> FileSystem:
        fs = self._fs.get(name)
        if fs is None:
            raise error(404, "ContainerNotFound" if flavor == "blob" else "FilesystemNotFound")
        if fs.expiring:
            self._delete_expired(fs)
        return fs

    def _delete_expired(self, fs: FileSystem) -> None:
        """Files whose expiry time has passed are gone (checked whenever their file system is used)."""
        now = time.time()
        gone = [p for p, n in fs.nodes.items() if n.expiry is not None and n.expiry <= now]
        for path in gone:
            del fs.nodes[path]
        self._save_nodes(fs, gone)
        fs.expiring = any(n.expiry is not None for n in fs.nodes.values())

    def set_expiry(self, fs_name: str, path: str, expiry: float | None, relative_to_creation: float | None = None,
                   lease_id: str | None = None) -> PathInfo:
        """Set Blob Expiry: ``expiry`` (epoch seconds, None = never), or ``relative_to_creation`` seconds."""
        with self._lock:
            fs = self._get_fs(fs_name, "blob")
            path = normalize_path(path)
            node = self._node(fs, path, "BlobNotFound")
            if node.is_dir:
                raise error(400, "InvalidHeaderValue", "An expiry time applies to files only.")
            node.lease.check_write(lease_id, "blob")
            if relative_to_creation is not None:
                expiry = node.created + relative_to_creation
            node.expiry = expiry
            fs.expiring = fs.expiring or expiry is not None
            self._save_nodes(fs, [path])
            return self._info(path, node)

    def filesystem_info(self, name: str, flavor: str = "blob", lease_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            fs = self._get_fs(name, flavor)
            if lease_id:
                fs.lease.check_write(lease_id, "blob")
            return {"name": fs.name, "etag": fs.etag, "last_modified": fs.last_modified,
                    "metadata": dict(fs.metadata), "lease": fs.lease.headers(), "default_scope": fs.default_scope,
                    "deny_scope_override": fs.deny_scope_override}

    def delete_filesystem(self, name: str, conditions: Conditions | None = None,
                          lease_id: str | None = None, flavor: str = "blob") -> None:
        with self._lock:
            fs = self._get_fs(name, flavor)
            if conditions:
                conditions.check(fs.etag, fs.last_modified)
            if fs.lease.locked or lease_id:
                fs.lease.check_write(lease_id, "blob")
            del self._fs[name]
            if self._persistence is not None:
                self._persistence.delete_filesystem(name)
            if self.filesystem_soft_delete_days:
                version, when = _deletion_stamp(), time.time()
                self._deleted_fs[(name, version)] = (fs, when, self.filesystem_soft_delete_days)
                if self._persistence is not None:
                    self._persistence.save_deleted_filesystem(name, version, fs, when,
                                                              self.filesystem_soft_delete_days)

    def _purge_deleted_filesystems(self) -> None:
        now = time.time()
        for key, (_, when, days) in list(self._deleted_fs.items()):
            if when + days * 86400 <= now:
                del self._deleted_fs[key]
                if self._persistence is not None:
                    self._persistence.drop_deleted_filesystem(*key)

    def deleted_filesystems(self, prefix: str = "") -> list[dict[str, Any]]:
        with self._lock:
            self._purge_deleted_filesystems()
            return [{"name": name, "version": version, "etag": fs.etag, "last_modified": fs.last_modified,
                     "metadata": dict(fs.metadata), "deleted_time": when,
                     "remaining_days": max(0, int((when + days * 86400 - time.time()) // 86400)),
                     "default_scope": fs.default_scope, "deny_scope_override": fs.deny_scope_override}
                    for (name, version), (fs, when, days) in sorted(self._deleted_fs.items())
                    if name.startswith(prefix)]

    def undelete_filesystem(self, name: str, version: str, new_name: str) -> FileSystem:
        """Restore a soft-deleted file system (with its paths) as ``new_name``."""
        with self._lock:
            self._purge_deleted_filesystems()
            entry = self._deleted_fs.get((name, version))
            if entry is None:
                raise error(404, "ContainerNotFound", "There is no deleted file system with this name and version.")
            if new_name in self._fs:
                raise error(409, "ContainerAlreadyExists")
            fs = entry[0]
            del self._deleted_fs[(name, version)]
            fs.name = new_name
            fs.lease = Lease()
            self._fs[new_name] = fs
            self._save_fs(fs)
            self._save_nodes(fs, list(fs.nodes))
            if self._persistence is not None:
                for d in fs.deleted:
                    self._persistence.save_deleted_path(new_name, d)
                self._persistence.drop_deleted_filesystem(name, version)
            return fs

    def set_filesystem_metadata(self, name: str, metadata: dict[str, str], lease_id: str | None = None,
                                conditions: Conditions | None = None, flavor: str = "blob") -> FileSystem:
        with self._lock:
            fs = self._get_fs(name, flavor)
            if conditions:
                conditions.check(fs.etag, fs.last_modified)
            if lease_id:
                fs.lease.check_write(lease_id, "blob")
            fs.metadata = dict(metadata)
            fs.etag, fs.last_modified = new_etag(), time.time()
            self._save_fs(fs)
            return fs

    def list_names(self) -> list[str]:
        with self._lock:
            return list(self._fs)

    def list_filesystems(self, prefix: str = "") -> list[dict[str, Any]]:
        with self._lock:
            return [{"name": fs.name, "etag": fs.etag, "last_modified": fs.last_modified,
                     "metadata": dict(fs.metadata), "lease": fs.lease.headers(), "default_scope": fs.default_scope,
                     "deny_scope_override": fs.deny_scope_override}
                    for name, fs in sorted(self._fs.items()) if name.startswith(prefix)]

    def filesystem_lease(self, name: str, action: str, lease_id: str | None, proposed_id: str | None,
                         duration: int, break_period: int | None) -> dict[str, str]:
        with self._lock:
            fs = self._get_fs(name, "blob")
            out = _lease_action(fs.lease, action, lease_id, proposed_id, duration, break_period)
            self._save_fs(fs)
            return out

    # ------------------------------------------------------------------ paths: helpers
    def _node(self, fs: FileSystem, path: str, missing_code: str = "PathNotFound") -> Node:
        if path == "":
            return fs.root
        node = fs.nodes.get(path)
        if node is None:
            raise error(404, missing_code)
        return node

    def _info(self, path: str, node: Node) -> PathInfo:
        return PathInfo(name=path, kind=node.kind, etag=node.etag, last_modified=node.last_modified,
                        created=node.created, length=len(node.data), metadata=dict(node.metadata),
                        http_headers=dict(node.http_headers), permissions=node.permissions,
                        lease_headers=node.lease.headers(), owner=node.owner, group=node.group,
                        acl=acls.format_acl(node.acl, node.default_acl), encryption=dict(node.encryption),
                        expires_at=node.expiry, tag_count=len(node.tags))

    def _ensure_parents(self, fs: FileSystem, path: str, changed: list[str], owner: str = "$superuser") -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            node = fs.nodes.get(parent)
            if node is None:
                now = time.time()
                grand = fs.nodes.get(parent.rsplit("/", 1)[0]) if "/" in parent else fs.root
                access, default = acls.inherit(grand.default_acl if grand else [], "rwxrwxrwx",
                                               acls.parse_umask(None), True)
                fs.nodes[parent] = Node(kind="directory", etag=new_etag(), last_modified=now, created=now,
                                        acl=access, default_acl=default, encryption=fs.implicit_encryption(),
                                        owner=owner, group=grand.group if grand else "$superuser")
                changed.append(parent)
            elif not node.is_dir:
                raise error(409, "PathConflict")

    def _children(self, fs: FileSystem, path: str) -> list[str]:
        if path == "":
            return list(fs.nodes)
        prefix = path + "/"
        return [p for p in fs.nodes if p.startswith(prefix)]

    # ------------------------------------------------------------------ paths: operations
    @staticmethod
    def _creation_target(fs: FileSystem, path: str, conditions: Conditions | None, exists_code: str,
                         exists_message: str | None = None) -> tuple[str, Node | None]:
        """The normalized ``path`` of a create and the node it replaces (None: a new path), once the
        request's conditions hold: ``If-None-Match: *`` on an existing path is 409 ``exists_code``."""
        path = normalize_path(path)
        if not path:
            raise error(400, "InvalidResourceName", "The path is empty.")
        existing = fs.nodes.get(path)
        conditions = conditions or Conditions()
        if existing is not None and conditions.if_none_match and conditions.if_none_match.strip() == "*":
            raise error(409, exists_code, exists_message)
        conditions.check(existing.etag if existing else None, existing.last_modified if existing else None)
        return path, existing

    def create_path(self, fs_name: str, path: str, kind: str, *, conditions: Conditions | None = None,
                    lease_id: str | None = None, metadata: dict[str, str] | None = None,
                    http_headers: dict[str, str] | None = None, proposed_lease_id: str | None = None,
                    lease_duration: int | None = None, permissions: str | None = None,
                    umask: str | None = None, owner: str | None = None, group: str | None = None,
                    acl: str | None = None, caller: str = "$superuser",
                    encryption: "Callable[[FileSystem], dict[str, str]] | None" = None,
                    expiry: float | None = None) -> PathInfo:
        """``encryption(fs)`` gives the new path's encryption (it may refuse by raising)."""
        with self._lock:
            fs = self._get_fs(fs_name, "dfs")
            enc = encryption(fs) if encryption else {}
            path, existing = self._creation_target(fs, path, conditions, "PathAlreadyExists")
            if existing is not None and existing.kind != kind:
                raise error(409, "PathConflict")
            if existing is not None:
                existing.lease.check_write(lease_id, "dfs")
            elif lease_id:
                raise error(412, "LeaseNotPresent")
            if permissions and acl:
                raise error(400, "InvalidRequest", "x-ms-permissions and x-ms-acl are mutually exclusive.")
            mode, sticky = acls.parse_permissions(permissions) if permissions else (
                "rwxrwxrwx" if kind == "directory" else "rw-rw-rw-", False)
            umask9 = acls.parse_umask(umask)
            given_access, given_default = acls.parse_acl(acl) if acl else ([], [])
            if given_default and kind == "file":
                raise error(400, "InvalidAccessControlList", "A file cannot have a default ACL.")
            changed: list[str] = [path]
            self._ensure_parents(fs, path, changed, caller)
            parent = fs.nodes.get(path.rsplit("/", 1)[0]) if "/" in path else fs.root
            access, default = acls.inherit(parent.default_acl if parent else [], mode, umask9, kind == "directory")
            if given_access:
                access = acls.check_access(given_access)
            if given_default:
                default = acls.check_default(given_default)
            now = time.time()
            lease = existing.lease if existing is not None else Lease()
            if existing is not None and kind == "directory":
                # Re-creating a directory keeps its children; it gets new properties and ETag.
                node = existing
                node.metadata = dict(metadata or {})
                if permissions or acl:
                    node.acl, node.sticky = access, sticky
                    if given_default:
                        node.default_acl = default
                node.owner = owner or node.owner
                node.group = group or node.group
                node.encryption = enc
                node.touch()
            else:
                if expiry is not None:
                    fs.expiring = True
                node = Node(kind=kind, encryption=enc, expiry=expiry, etag=new_etag(), last_modified=now,
                            created=now,
                            metadata=dict(metadata or {}), http_headers=dict(http_headers or {}),
                            acl=access, default_acl=default, sticky=sticky,
                            owner=owner or caller, group=group or (parent.group if parent else "$superuser"),
                            lease=lease)
                fs.nodes[path] = node
            if proposed_lease_id or lease_duration is not None:
                node.lease.acquire(proposed_lease_id, -1 if lease_duration is None else lease_duration)
            if kind == "directory" and "/" in path:
                # Recorded: creating a subdirectory gives the parent directory the new ETag (a rename
                # of the parent then answers it); creating a file leaves the parent unchanged.
                parent = fs.nodes[path.rsplit("/", 1)[0]]
                parent.etag, parent.last_modified = node.etag, node.last_modified
                changed.append(path.rsplit("/", 1)[0])
            self._save_nodes(fs, changed)
            return self._info(path, node)

    def put_blob(self, fs_name: str, path: str, data: bytes, *, conditions: Conditions | None = None,
                 lease_id: str | None = None, metadata: dict[str, str] | None = None,
                 http_headers: dict[str, str] | None = None, caller: str = "$superuser") -> PathInfo:
        """Put Blob of a block blob: create the file, or replace a file's content, in one request.

        ``If-None-Match: *`` on an existing path: 409 ``BlobAlreadyExists`` (what the service and the
        SDK's ``upload_blob(overwrite=False)`` report); other conditions: 412 ``ConditionNotMet``. A
        leased file needs its lease id. Parent directories are created as for a dfs create; an
        existing file keeps its ACL, owner and lease, and loses uncommitted appends."""
        with self._lock:
            fs = self._get_fs(fs_name, "blob")
            path, existing = self._creation_target(fs, path, conditions, "BlobAlreadyExists",
                                                   "The specified blob already exists.")
            if existing is not None and existing.is_dir:
                raise error(409, "PathConflict")
            if existing is not None:
                existing.lease.check_write(lease_id, "blob")
            elif lease_id:
                raise error(412, "LeaseNotPresentWithBlobOperation")
            headers = dict(http_headers or {})
            if not headers.get("content_md5"):
                headers["content_md5"] = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324
            changed: list[str] = [path]
            self._ensure_parents(fs, path, changed, caller)
            now = time.time()
            if existing is not None:
                node = existing
                node.metadata, node.http_headers = dict(metadata or {}), headers
            else:
                parent = fs.nodes.get(path.rsplit("/", 1)[0]) if "/" in path else None
                access, default = acls.inherit(parent.default_acl if parent else [], "rw-rw-rw-",
                                               acls.parse_umask(None), False)
                node = Node(kind="file", etag=new_etag(), last_modified=now, created=now,
                            metadata=dict(metadata or {}), http_headers=headers, acl=access, default_acl=default,
                            owner=caller, group=parent.group if parent else "$superuser")
                fs.nodes[path] = node
            node.data = bytearray(data)
            node.uncommitted = []
            node.touch()
            self._save_nodes(fs, changed)
            return self._info(path, node)

    def encryption_of(self, fs_name: str, path: str) -> dict[str, str] | None:
        """The path's encryption, or None when there is no such path (the operation then says so)."""
        with self._lock:
            fs = self._fs.get(fs_name)
            node = fs.nodes.get(normalize_path(path)) if fs else None
            return None if node is None else dict(node.encryption)

    def get_path(self, fs_name: str, path: str, conditions: Conditions | None = None,
                 flavor: str = "blob", lease_id: str | None = None) -> PathInfo:
        with self._lock:
            fs = self._get_fs(fs_name, flavor)
            path = normalize_path(path)
            node = self._node(fs, path, "BlobNotFound" if flavor == "blob" else "PathNotFound")
            if conditions:
                conditions.check(node.etag, node.last_modified, read=True)
            if lease_id and node.lease.lease_id != lease_id:
                node.lease.check_write(lease_id, flavor)
            return self._info(path, node)

    def read(self, fs_name: str, path: str, start: int | None, end: int | None,
             conditions: Conditions | None = None, lease_id: str | None = None) -> tuple[PathInfo, bytes, int, int]:
        """Committed bytes ``[start, end]`` (inclusive; ``end=None`` means to the end).

        Returns ``(info, data, first, last)``; raises 416 InvalidRange when ``start`` is past the end.
        """
        with self._lock:
            info = self.get_path(fs_name, path, conditions, "blob", lease_id)
            node = self._fs[fs_name].nodes[normalize_path(path)]
            size = len(node.data)
            if start is None:
                return info, bytes(node.data), 0, size - 1
            if start >= size:
                raise error(416, "InvalidRange", **{"Content-Range": f"bytes */{size}"})
            last = size - 1 if end is None else min(end, size - 1)
            return info, bytes(node.data[start:last + 1]), start, last

    def append(self, fs_name: str, path: str, position: int, data: bytes, *, lease_id: str | None = None,
               lease_action: str | None = None, proposed_lease_id: str | None = None,
               lease_duration: int | None = None, flush: bool = False, close: bool = False,
               http_headers: dict[str, str] | None = None) -> tuple[PathInfo, dict[str, str]]:
        """Append ``data`` at ``position``; with ``flush=True`` also commit up to ``position+len``.

        Returns the path info and extra response headers (lease results).
        """
        with self._lock:
            fs = self._get_fs(fs_name, "dfs")
            path = normalize_path(path)
            node = self._node(fs, path)
            if node.is_dir:
                raise error(409, "PathConflict")
            if position < 0:
                raise error(400, "InvalidQueryParameterValue", "position must be non-negative.")
            extra = _lease_before_write(node.lease, lease_action, lease_id, proposed_lease_id, lease_duration)
            node.uncommitted.append((position, bytes(data)))
            if flush:
                self._commit(node, position + len(data), retain=False, http_headers=http_headers)
            # Path - Update: "release" releases the lease only on flush; an append without
            # flush=true checks the lease id and keeps the lease.
            if flush or (lease_action or "").lower() != "release":
                _lease_after_write(node.lease, lease_action, extra)
            self._save_nodes(fs, [path])
            return self._info(path, node), extra

    def flush(self, fs_name: str, path: str, position: int, *, retain: bool = False, close: bool = False,
              conditions: Conditions | None = None, lease_id: str | None = None,
              lease_action: str | None = None, proposed_lease_id: str | None = None,
              lease_duration: int | None = None,
              http_headers: dict[str, str] | None = None) -> tuple[PathInfo, dict[str, str]]:
        with self._lock:
            fs = self._get_fs(fs_name, "dfs")
            path = normalize_path(path)
            node = self._node(fs, path)
            if node.is_dir:
                raise error(409, "PathConflict")
            if conditions:
                conditions.check(node.etag, node.last_modified)
            extra = _lease_before_write(node.lease, lease_action, lease_id, proposed_lease_id, lease_duration)
            self._commit(node, position, retain=retain, http_headers=http_headers)
            _lease_after_write(node.lease, lease_action, extra)
            self._save_nodes(fs, [path])
            return self._info(path, node), extra

    @staticmethod
    def _commit(node: Node, position: int, *, retain: bool, http_headers: dict[str, str] | None) -> None:
        committed = len(node.data)
        if position < committed:
            raise error(400, "InvalidFlushPosition")
        # Do the segments cover every byte of [committed, position)? (Intervals, not a byte map:
        # a flush must not need memory in proportion to what it commits beyond the data itself.)
        reach = committed
        for lo, hi in sorted((max(p, committed), min(p + len(seg), position)) for p, seg in node.uncommitted):
            if lo < hi:
                if lo > reach:
                    break
                reach = max(reach, hi)
        if reach < position:
            raise error(400, "InvalidFlushPosition")
        new = node.data
        if any(seg_pos < committed for seg_pos, _ in node.uncommitted):
            # committed bytes rewritten: new content (the persistence then writes it whole again;
            # content that only grows at its end is written by what it gained)
            new = node.data = bytearray(new)
        zeros = bytes(min(position - committed, 1 << 20))
        while len(new) < position:
            new.extend(zeros[:position - len(new)])
        kept: list[tuple[int, bytes]] = []
        segments, node.uncommitted = node.uncommitted, []
        for i, (seg_pos, seg) in enumerate(segments):  # arrival order: a later append wins on overlap
            end = seg_pos + len(seg)
            if seg_pos < position:
                piece_end = min(end, position)
                new[seg_pos:piece_end] = memoryview(seg)[:piece_end - seg_pos]
            if retain and end > position:
                start = max(seg_pos, position)
                kept.append((start, seg[start - seg_pos:]))
            segments[i] = (seg_pos, b"")  # let the appended bytes go as soon as they are copied
        node.uncommitted = kept
        if http_headers:
            node.http_headers.update({k: v for k, v in http_headers.items() if v is not None})
        node.touch()

    def delete_path(self, fs_name: str, path: str, *, recursive: bool = False,
                    conditions: Conditions | None = None, lease_id: str | None = None,
                    soft_delete_days: int | None = None) -> str | None:
        """Delete a path (and its subtree); with ``soft_delete_days`` keep it restorable and return
        its deletion ID."""
        with self._lock:
            fs = self._get_fs(fs_name, "dfs")
            path = normalize_path(path)
            node = self._node(fs, path)
            if conditions:
                conditions.check(node.etag, node.last_modified)
            node.lease.check_write(lease_id, "dfs")
            children = self._children(fs, path) if node.is_dir else []
            if children and not recursive:
                raise error(409, "DirectoryNotEmpty")
            removed = {p: fs.nodes[p] for p in [path, *children]}
            for child in children:
                del fs.nodes[child]
            del fs.nodes[path]
            self._save_nodes(fs, [path, *children])
            if not soft_delete_days:
                return None
            deletion_id = _deletion_stamp()
            entry = {"path": path, "deletion_id": deletion_id, "deleted_time": time.time(),
                     "days": soft_delete_days, "nodes": removed}
            fs.deleted.append(entry)
            if self._persistence is not None:
                self._persistence.save_deleted_path(fs.name, entry)
            return deletion_id

    def _live_deleted(self, fs: FileSystem) -> list[dict[str, Any]]:
        now = time.time()
        live = [d for d in fs.deleted if d["deleted_time"] + d["days"] * 86400 > now]
        if self._persistence is not None and len(live) != len(fs.deleted):
            kept = {id(d) for d in live}
            for d in fs.deleted:
                if id(d) not in kept:
                    self._persistence.drop_deleted_path(fs.name, d["deletion_id"])
        fs.deleted = live
        return fs.deleted

    def deleted_paths(self, fs_name: str, prefix: str = "") -> list[dict[str, Any]]:
        """Soft-deleted paths under ``prefix``, ordered by path then deletion ID."""
        with self._lock:
            fs = self._get_fs(fs_name, "blob")
            out = []
            for d in self._live_deleted(fs):
                if not d["path"].startswith(prefix):
                    continue
                out.append({"name": d["path"], "deletion_id": d["deletion_id"], "deleted_time": d["deleted_time"],
                            "remaining_days": max(0, int((d["deleted_time"] + d["days"] * 86400 - time.time())
                                                         // 86400)),
                            "info": self._info(d["path"], d["nodes"][d["path"]])})
            return sorted(out, key=lambda e: (sort_key(e["name"]), e["deletion_id"]))

    def undelete_path(self, fs_name: str, path: str, deletion_id: str | None) -> PathInfo:
        """Restore a soft-deleted path (with its subtree); missing parent directories are made."""
        with self._lock:
            fs = self._get_fs(fs_name, "blob")
            path = normalize_path(path)
            matches = [d for d in self._live_deleted(fs) if d["path"] == path
                       and (deletion_id is None or d["deletion_id"] == deletion_id)]
            if not matches:
                raise error(404, "PathNotFound", "There is no deleted path with this name and deletion ID.")
            entry = matches[-1]
            if any(p in fs.nodes for p in entry["nodes"]):
                raise error(409, "PathAlreadyExists")
            changed: list[str] = list(entry["nodes"])
            self._ensure_parents(fs, path, changed)
            fs.nodes.update(entry["nodes"])
            fs.deleted.remove(entry)
            self._save_nodes(fs, changed)
            if self._persistence is not None:
                self._persistence.drop_deleted_path(fs.name, entry["deletion_id"])
            return self._info(path, fs.nodes[path])

    def rename(self, src_fs_name: str, src_path: str, dst_fs_name: str, dst_path: str, *,
               conditions: Conditions | None = None, source_conditions: Conditions | None = None,
               lease_id: str | None = None, source_lease_id: str | None = None) -> PathInfo:
        """Move ``src_path`` (with its subtree) to ``dst_path``; ETag and Last-Modified are kept.

        An existing destination file, or an empty destination directory, is replaced.
        """
        with self._lock:
            src_fs = self._get_fs(src_fs_name, "dfs")
            dst_fs = self._get_fs(dst_fs_name, "dfs")
            src_path, dst_path = normalize_path(src_path), normalize_path(dst_path)
            node = src_fs.nodes.get(src_path)
            if node is None:
                raise error(404, "SourcePathNotFound")
            if source_conditions:
                source_conditions.check(node.etag, node.last_modified)
            node.lease.check_write(source_lease_id or None, "dfs")
            if src_fs is dst_fs and (dst_path == src_path or dst_path.startswith(src_path + "/")):
                if dst_path == src_path:
                    return self._info(dst_path, node)
                raise error(400, "InvalidDestinationPath")
            existing = dst_fs.nodes.get(dst_path)
            if conditions:
                conditions.check(existing.etag if existing else None,
                                 existing.last_modified if existing else None)
            if existing is not None:
                existing.lease.check_write(lease_id, "dfs")
                if existing.is_dir and self._children(dst_fs, dst_path):
                    raise error(409, "DirectoryNotEmpty")
                if existing.is_dir != node.is_dir:
                    raise error(409, "PathConflict")
            elif lease_id:
                raise error(412, "LeaseNotPresent")
            parent = dst_path.rsplit("/", 1)[0] if "/" in dst_path else ""
            if parent and (parent not in dst_fs.nodes or not dst_fs.nodes[parent].is_dir):
                raise error(404, "RenameDestinationParentPathNotFound")
            moved = [src_path, *(self._children(src_fs, src_path) if node.is_dir else [])]
            changed_src, changed_dst = [], []
            for old in moved:
                new = dst_path + old[len(src_path):]
                dst_fs.nodes[new] = src_fs.nodes.pop(old)
                changed_src.append(old)
                changed_dst.append(new)
            self._save_nodes(src_fs, changed_src)
            self._save_nodes(dst_fs, changed_dst)
            return self._info(dst_path, dst_fs.nodes[dst_path])

    def list_paths(self, fs_name: str, *, directory: str = "", recursive: bool = False,
                   max_results: int | None = None, continuation: str | None = None,
                   begin_from: str | None = None) -> tuple[list[PathInfo], str | None]:
        with self._lock:
            fs = self._get_fs(fs_name, "dfs")
            directory = normalize_path(directory)
            if directory:
                node = fs.nodes.get(directory)
                if node is None:
                    raise error(404, "PathNotFound")
                prefix = directory + "/"
            else:
                prefix = ""
            names = []
            for name in fs.nodes:
                if not name.startswith(prefix):
                    continue
                if not recursive and "/" in name[len(prefix):]:
                    continue
                names.append(name)
            names.sort(key=sort_key)
            if begin_from:
                # beginFrom is relative to the listed directory; the listing starts at it (inclusive).
                begin = normalize_path(begin_from)
                if not recursive and "/" in begin:
                    raise error(400, "InvalidQueryParameterValue",
                                "beginFrom may name only one level in a non-recursive listing.")
                start = sort_key(prefix + begin)
                names = [n for n in names if sort_key(n) >= start]
            if continuation:
                after = _decode_continuation(continuation)
                names = [n for n in names if sort_key(n) > sort_key(after)]
            token = None
            limit = max_results if max_results and max_results > 0 else 5000
            if len(names) > limit:
                names = names[:limit]
                token = _encode_continuation(names[-1])
            return [self._info(n, fs.nodes[n]) for n in names], token

    def set_path_metadata(self, fs_name: str, path: str, metadata: dict[str, str], *,
                          conditions: Conditions | None = None, lease_id: str | None = None,
                          flavor: str = "blob") -> PathInfo:
        with self._lock:
            fs = self._get_fs(fs_name, flavor)
            path = normalize_path(path)
            node = self._node(fs, path, "BlobNotFound" if flavor == "blob" else "PathNotFound")
            if conditions:
                conditions.check(node.etag, node.last_modified)
            node.lease.check_write(lease_id, flavor)
            node.metadata = dict(metadata)
            node.touch()
            self._save_nodes(fs, [path])
            return self._info(path, node)

    def _blob_to_change(self, fs_name: str, path: str, conditions: Conditions | None, lease_id: str | None):
        """The file system, normalized path and node of a blob request that changes the node, after
        its conditions and its lease are checked (the caller holds the lock)."""
        fs = self._get_fs(fs_name, "blob")
        path = normalize_path(path)
        node = self._node(fs, path, "BlobNotFound")
        if conditions:
            conditions.check(node.etag, node.last_modified)
        node.lease.check_write(lease_id, "blob")
        return fs, path, node

    def set_tags(self, fs_name: str, path: str, tags: dict[str, str], *, conditions: Conditions | None = None,
                 lease_id: str | None = None) -> None:
        """Set Blob Tags: replaces the tags; the path's ETag and Last-Modified do not change."""
        with self._lock:
            fs, path, node = self._blob_to_change(fs_name, path, conditions, lease_id)
            node.tags = dict(tags)
            self._save_nodes(fs, [path])

    def get_tags(self, fs_name: str, path: str, *, conditions: Conditions | None = None,
                 lease_id: str | None = None) -> dict[str, str]:
        with self._lock:
            fs = self._get_fs(fs_name, "blob")
            node = self._node(fs, normalize_path(path), "BlobNotFound")
            if conditions:
                conditions.check(node.etag, node.last_modified)
            if lease_id:
                node.lease.check_write(lease_id, "blob")
            return dict(node.tags)

    def set_path_http_headers(self, fs_name: str, path: str, http_headers: dict[str, str], *,
                              conditions: Conditions | None = None, lease_id: str | None = None) -> PathInfo:
        """Blob ``comp=properties``: replaces all HTTP headers (absent ones are cleared)."""
        with self._lock:
            fs, path, node = self._blob_to_change(fs_name, path, conditions, lease_id)
            node.http_headers = {k: v for k, v in http_headers.items() if v}
            node.touch()
            self._save_nodes(fs, [path])
            return self._info(path, node)

    def set_access_control(self, fs_name: str, path: str, *, permissions: str | None = None,
                           owner: str | None = None, group: str | None = None, acl: str | None = None,
                           conditions: Conditions | None = None, lease_id: str | None = None) -> PathInfo:
        """dfs ``action=setAccessControl``: owner, group, and either permissions or a full ACL."""
        with self._lock:
            fs = self._get_fs(fs_name, "dfs")
            path = normalize_path(path)
            node = self._node(fs, path)
            if conditions:
                conditions.check(node.etag, node.last_modified)
            node.lease.check_write(lease_id, "dfs")
            if permissions and acl:
                raise error(400, "InvalidRequest", "x-ms-permissions and x-ms-acl are mutually exclusive.")
            if permissions:
                perms9, node.sticky = acls.parse_permissions(permissions)
                node.acl = acls.set_permissions(node.acl, perms9)
            if acl:
                access, default = acls.parse_acl(acl)
                if default and not node.is_dir:
                    raise error(400, "InvalidAccessControlList", "A file cannot have a default ACL.")
                node.acl = acls.check_access(access)
                node.default_acl = acls.check_default(default)
            node.owner = owner or node.owner
            node.group = group or node.group
            node.touch()
            self._save_nodes(fs, [path])
            return self._info(path, node)

    def set_access_control_recursive(self, fs_name: str, path: str, mode: str, acl: str, *,
                                     max_records: int | None = None, continuation: str | None = None,
                                     may_change: "Callable[[Node], bool] | None" = None, force: bool = False
                                     ) -> tuple[dict[str, Any], str | None]:
        """dfs ``action=setAccessControlRecursive``: ``mode`` set / modify / remove on the path and
        everything below it, at most ``max_records`` paths per call (continuation for the rest).

        ``may_change(node)`` is the caller's ACL check per path: a path it refuses is a failed entry.
        Without ``force`` (``forceFlag``) the call stops at the first failure and gives no
        continuation; with it, it goes on."""
        mode = (mode or "").lower()
        if mode not in ("set", "modify", "remove"):
            raise error(400, "InvalidQueryParameterValue", "mode must be set, modify or remove.")
        if not acl:
            raise error(400, "MissingRequiredHeader", "x-ms-acl is required.")
        access, default = acls.parse_acl(acl, with_perms=(mode != "remove"))
        with self._lock:
            fs = self._get_fs(fs_name, "dfs")
            path = normalize_path(path)
            top = self._node(fs, path)
            names = [path] + (sorted(self._children(fs, path), key=sort_key) if top.is_dir else [])
            if continuation:
                after = _decode_continuation(continuation)
                names = [n for n in names if sort_key(n) > sort_key(after)]
            limit = max_records if max_records and 0 < max_records <= 2000 else 2000
            batch, rest = names[:limit], names[limit:]
            dirs = files = 0
            failed: list[dict[str, str]] = []
            done: list[str] = []
            for name in batch:
                node = self._node(fs, name)
                if may_change is not None and not may_change(node):
                    failed.append({"errorMessage": "This request is not authorized to perform this operation using "
                                                   "this permission.",
                                   "name": name, "type": "DIRECTORY" if node.is_dir else "FILE"})
                    if not force:
                        break
                    continue
                done.append(name)
                if mode == "set":
                    node.acl = acls.check_access(access)
                    if node.is_dir:
                        node.default_acl = acls.check_default(default)
                elif mode == "modify":
                    node.acl = acls.check_access(acls.modify(node.acl, access))
                    if node.is_dir and default:
                        node.default_acl = acls.check_default(acls.modify(node.default_acl, default))
                else:
                    node.acl = acls.check_access(acls.remove(node.acl, access, access=True))
                    if node.is_dir and default:
                        node.default_acl = acls.remove(node.default_acl, default, access=False)
                        node.default_acl = acls.check_default(node.default_acl) if any(
                            not e[1] for e in node.default_acl) else node.default_acl
                node.touch()
                if node.is_dir:
                    dirs += 1
                else:
                    files += 1
            self._save_nodes(fs, done)
            token = _encode_continuation(batch[-1]) if rest and batch else None
            if failed and not force:
                token = None  # the service stops at the first failure
            return {"directoriesSuccessful": dirs, "filesSuccessful": files, "failureCount": len(failed),
                    "failedEntries": failed}, token

    def path_lease(self, fs_name: str, path: str, action: str, *, lease_id: str | None = None,
                   proposed_lease_id: str | None = None, duration: int = -1,
                   break_period: int | None = None, conditions: Conditions | None = None,
                   flavor: str = "blob") -> tuple[PathInfo, dict[str, str]]:
        with self._lock:
            fs = self._get_fs(fs_name, flavor)
            path = normalize_path(path)
            node = self._node(fs, path, "BlobNotFound" if flavor == "blob" else "PathNotFound")
            if conditions:
                conditions.check(node.etag, node.last_modified)
            out = _lease_action(node.lease, action, lease_id, proposed_lease_id, duration, break_period)
            self._save_nodes(fs, [path])
            return self._info(path, node), out


def _lease_action(lease: Lease, action: str, lease_id: str | None, proposed_id: str | None,
                  duration: int, break_period: int | None) -> dict[str, str]:
    action = (action or "").lower()
    if action == "acquire":
        return {"x-ms-lease-id": lease.acquire(proposed_id, duration)}
    if action == "renew":
        return {"x-ms-lease-id": lease.renew(lease_id)}
    if action == "release":
        lease.release(lease_id)
        return {}
    if action == "change":
        return {"x-ms-lease-id": lease.change(lease_id, proposed_id)}
    if action == "break":
        return {"x-ms-lease-time": str(lease.break_(break_period))}
    raise error(400, "InvalidHeaderValue", f"Unknown x-ms-lease-action {action!r}.")


def _lease_before_write(lease: Lease, action: str | None, lease_id: str | None, proposed_id: str | None,
                        duration: int | None) -> dict[str, str]:
    """Lease handling before an append/flush with ``x-ms-lease-action``; returns response headers."""
    action = (action or "").lower()
    if action in ("acquire", "acquire-release"):
        if lease.locked and lease.lease_id != proposed_id:
            raise error(409, "LeaseAlreadyPresent")
        lease.acquire(proposed_id, -1 if duration is None else duration)
        return {}  # the service does not echo the lease ID on append/flush (recorded)
    lease.check_write(lease_id, "dfs")
    if action == "auto-renew":
        lease.renew(lease_id)
        return {"x-ms-lease-renewed": "true"}
    if action in ("", "release"):
        return {}
    raise error(400, "InvalidHeaderValue", f"Unknown x-ms-lease-action {action!r}.")


def _lease_after_write(lease: Lease, action: str | None, extra: dict[str, str]) -> None:
    if (action or "").lower() in ("release", "acquire-release"):
        lease.state, lease.lease_id, lease.expires_at, lease.break_at = "available", None, None, None


def _encode_continuation(last: str) -> str:
    return base64.b64encode(json.dumps({"after": last}).encode()).decode()


def _decode_continuation(token: str) -> str:
    try:
        return json.loads(base64.b64decode(token))["after"]
    except Exception as exc:  # noqa: BLE001
        raise error(400, "InvalidQueryParameterValue", "The continuation token is invalid.") from exc
