"""What the emulator implements, request part by request part: nothing is silently ignored.

Every ``x-ms-*`` request header and every query parameter a request carries must be one the
operation implements (or one that never changes an answer, such as ``x-ms-client-request-id`` or
``timeout``). Anything else is refused before the operation runs, with 501 ``NotImplemented`` and
a message naming the feature, rather than answering success while ignoring part of the request.
Values that select a feature are checked too (``include=deleted``, ``upn=true``, ...).
"""

from __future__ import annotations

from .errors import StorageError

# Never change what the service answers (tracing, versioning, dates, authentication).
_ALWAYS_HEADERS = {"x-ms-version", "x-ms-date", "x-ms-client-request-id", "x-ms-return-client-request-id",
                   "x-emulator-request-id"}
_ALWAYS_PARAMS = {"timeout"}
# SAS parameters (checked by the authenticator).
SAS_PARAMS = {"sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "sr", "sig", "sdd", "si", "skoid", "sktid",
              "skt", "ske", "sks", "skv", "saoid", "suoid", "scid", "rscc", "rscd", "rsce", "rscl", "rsct",
              "ses", "sduoid", "skdutid", "srh", "srq"}

_LEASE = {"x-ms-lease-id"}
_LEASE_OPS = {"x-ms-lease-action", "x-ms-lease-id", "x-ms-proposed-lease-id", "x-ms-lease-duration",
              "x-ms-lease-break-period"}
_DFS_CONTENT = {"x-ms-content-type", "x-ms-content-encoding", "x-ms-content-language",
                "x-ms-content-disposition", "x-ms-cache-control", "x-ms-content-md5"}
_BLOB_CONTENT = {"x-ms-blob-content-type", "x-ms-blob-content-encoding", "x-ms-blob-content-language",
                 "x-ms-blob-content-disposition", "x-ms-blob-cache-control", "x-ms-blob-content-md5"}
_SOURCE_CONDITIONS = {"x-ms-source-if-match", "x-ms-source-if-none-match", "x-ms-source-if-modified-since",
                      "x-ms-source-if-unmodified-since"}
# Set/Get Blob Tags take their conditions on the blob as x-ms-blob-if-*.
_BLOB_CONDITIONS = {"x-ms-blob-if-match", "x-ms-blob-if-none-match", "x-ms-blob-if-modified-since",
                    "x-ms-blob-if-unmodified-since"}
_CPK = {"x-ms-encryption-key", "x-ms-encryption-key-sha256", "x-ms-encryption-algorithm"}
_ACCESS = {"x-ms-permissions", "x-ms-umask", "x-ms-owner", "x-ms-group", "x-ms-acl"}
_EXPIRY = {"x-ms-expiry-option", "x-ms-expiry-time"}

# op -> (x-ms-* headers, query parameters) it implements. ``x-ms-meta-*`` is allowed where "meta" is listed.
IMPLEMENTED: dict[str, tuple[set[str], set[str]]] = {
    "create_filesystem": ({"meta", "x-ms-properties", "x-ms-default-encryption-scope",
                           "x-ms-deny-encryption-scope-override"}, {"restype", "resource"}),
    "delete_filesystem": (_LEASE, {"restype", "resource"}),
    "get_filesystem_properties": (_LEASE, {"restype", "resource"}),
    "set_filesystem_metadata": ({"meta", "x-ms-properties", *_LEASE}, {"restype", "resource", "comp"}),
    "filesystem_lease": (_LEASE_OPS, {"restype", "comp"}),
    "list_filesystems": (set(), {"comp", "resource", "prefix", "marker", "continuation", "maxresults", "include"}),
    "list_paths": (set(), {"resource", "directory", "recursive", "maxresults", "continuation", "upn",
                           "beginfrom"}),
    "create_file": ({"x-ms-properties", *_DFS_CONTENT, *_LEASE, "x-ms-proposed-lease-id", "x-ms-lease-duration",
                     *_ACCESS, *_CPK, "x-ms-encryption-scope", "x-ms-encryption-context", *_EXPIRY}, {"resource"}),
    "create_directory": ({"x-ms-properties", *_DFS_CONTENT, *_LEASE, "x-ms-proposed-lease-id",
                          "x-ms-lease-duration", *_ACCESS, *_CPK, "x-ms-encryption-scope"}, {"resource"}),
    # The service ignores content settings on a rename (recorded: test_rename_from).
    "rename": ({"x-ms-rename-source", *_SOURCE_CONDITIONS, *_LEASE, "x-ms-source-lease-id", *_DFS_CONTENT},
               {"mode"}),
    "append": ({*_LEASE_OPS, "x-ms-content-crc64", "x-ms-structured-body", "x-ms-structured-content-length",
                *_DFS_CONTENT, *_CPK}, {"action", "position", "flush", "close"}),
    "flush": ({*_LEASE_OPS, *_DFS_CONTENT, *_CPK}, {"action", "position", "retainuncommitteddata", "close"}),
    "put_blob": ({"x-ms-blob-type", "meta", *_BLOB_CONTENT, *_LEASE, "x-ms-content-crc64", "x-ms-structured-body",
                  "x-ms-structured-content-length"}, set()),
    "get_properties": ({*_LEASE, *_CPK, "x-ms-upn"}, {"action", "upn"}),
    "read": ({*_LEASE, "x-ms-range", "x-ms-range-get-content-md5", "x-ms-structured-body", *_CPK}, set()),
    # paginated=true (sent with token credentials): the service checks the ACLs page by page, then
    # deletes at once; the emulator checks them all in one call, so it never answers a continuation.
    "delete": (_LEASE, {"recursive", "paginated"}),
    "lease": (_LEASE_OPS, {"comp"}),
    "set_metadata": ({"meta", "x-ms-properties", *_LEASE, *_CPK}, {"comp", "action"}),
    "set_properties": ({*_BLOB_CONTENT, *_LEASE}, {"comp"}),
    "set_access_control": ({"x-ms-permissions", "x-ms-owner", "x-ms-group", "x-ms-acl", *_LEASE}, {"action", "upn"}),
    "set_access_control_recursive": (_ACCESS, {"action", "mode", "maxrecords", "continuation", "forceflag"}),
    "get_user_delegation_key": (set(), {"restype", "comp"}),
    "get_service_properties": (set(), {"restype", "comp"}),
    "set_expiry": ({*_EXPIRY, *_LEASE}, {"comp"}),
    "set_tags": ({*_LEASE, *_BLOB_CONDITIONS, "x-ms-content-crc64"}, {"comp"}),
    "get_tags": ({*_LEASE, *_BLOB_CONDITIONS}, {"comp"}),
    "query": ({*_LEASE, *_CPK}, {"comp"}),
    "list_deleted_paths": (set(), {"restype", "comp", "showonly", "prefix", "marker", "maxresults"}),
    "undelete_path": ({"x-ms-undelete-source"}, {"comp"}),
    "undelete_filesystem": ({"x-ms-deleted-container-name", "x-ms-deleted-container-version"}, {"restype", "comp"}),
    "set_service_properties": (set(), {"restype", "comp"}),
}

# Names (or name prefixes) of headers / parameters to the feature they belong to, for the message.
_FEATURES = {
    "x-ms-encryption-scope": "encryption scopes",
    "x-ms-default-encryption-scope": "encryption scopes",
    "x-ms-deny-encryption-scope-override": "encryption scopes",
    "x-ms-encryption-key": "customer-provided keys",
    "x-ms-encryption-context": "encryption context",
    "x-ms-blob-public-access": "public access to file systems",
    "x-ms-range-get-content-crc64": "CRC64 of a read range",
    "x-ms-tags": "blob index tags",
    "x-ms-immutability": "immutability policies",
    "x-ms-legal-hold": "legal holds",
    "x-ms-expiry": "file expiry",
    "x-ms-undelete": "soft delete / undelete",
    "x-ms-deletion-id": "soft delete / undelete",
    "x-ms-copy": "copying",
    "x-ms-source": "copying",
    "snapshot": "snapshots",
    "versionid": "versions",
    "showonly": "soft delete / listing deleted paths",
}


def _feature(name: str) -> str:
    for prefix, feature in _FEATURES.items():
        if name.startswith(prefix):
            return f"{feature} ({name})"
    return name


def not_implemented(what: str) -> StorageError:
    return StorageError(501, "NotImplemented", f"The ADLS emulator does not implement {what}.")


def check_request(op: str, headers: dict[str, str], params: dict[str, str], signed: set[str] = frozenset()) -> None:
    """Raise 501 NotImplemented when the request uses a header, parameter or value the emulator
    would otherwise ignore. ``headers``/``params`` have lower-case names; ``signed`` are query
    parameters a dynamic user delegation SAS signs (they are the caller's, not the service's)."""
    if op == "unknown":
        return
    allowed_headers, allowed_params = IMPLEMENTED.get(op, (set(), set()))
    for name in headers:
        if not name.startswith("x-ms-") or name in _ALWAYS_HEADERS or name in allowed_headers:
            continue
        if name.startswith("x-ms-meta-") and "meta" in allowed_headers:
            continue
        raise not_implemented(f"the request header {_feature(name)} on this operation")
    for name in params:
        if name in _ALWAYS_PARAMS or name in SAS_PARAMS or name in allowed_params or name in signed:
            continue
        raise not_implemented(f"the query parameter {_feature(name)} on this operation")
    # Values that select features the emulator does not have.
    if op == "list_filesystems":
        extra = {v.strip().lower() for v in params.get("include", "").split(",") if v.strip()} - {"metadata",
                                                                                                  "deleted", "system"}
        if extra:
            raise not_implemented(f"listing file systems with include={','.join(sorted(extra))}")
