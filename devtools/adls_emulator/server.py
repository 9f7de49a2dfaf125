"""HTTP front end of the emulator: request routing, headers, error bodies, control API.

One port serves the account under ``/{account}/...`` (both the dfs requests and the Blob-API
requests the DataLake SDK sends to an IP-style URL) and the control API under ``/_emulator/``.
See the package docstring for the operation names.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import re
import socket
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from . import content as cv
from . import query as qq
from . import store as st
from .auth import DEV_ACCOUNT, DEV_KEY, Authenticator, check_sas_permission, parse_query
from .authz import AclChecker, Principal
from .errors import StorageError, error
from .faults import FaultRegistry, FaultRule, Stats
from .features import check_request, not_implemented
from .persistence import SqlitePersistence
from .service_props import ServiceProperties

DEFAULT_VERSION = "2026-06-06"
CONTROL_PREFIX = "/_emulator"


@dataclass
class Request:
    method: str
    raw_path: str  # still percent-encoded, as signed
    query: str  # raw query string
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # lower-case names, decoded values
    filesystem: str | None = None
    path: str = ""
    op: str = "unknown"
    flavor: str = "dfs"  # "dfs" -> JSON errors, "blob" -> XML errors
    caller: str = "$superuser"  # the bearer token's object ID, else the account's superuser
    tenant: str = ""  # the bearer token's tenant ID
    scheme_used: str = ""  # sharedkey | sas | bearer
    sas: dict | None = None  # what the SAS allows, when a SAS authorized the request
    acl: Any = None  # the AclChecker when ACLs restrict the caller on this file system

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def flag(self, name: str) -> bool:
        return self.params.get(name.lower(), "").lower() == "true"


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError) as exc:
        raise error(400, "InvalidHeaderValue", f"Bad date {value!r}.") from exc


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise error(400, "InvalidQueryParameterValue", f"{name} must be an integer.") from exc


# ---------------------------------------------------------------------------- classification
def classify(req: Request) -> None:
    """Fill ``op``, ``flavor``, ``filesystem`` and ``path`` from method, path, query and headers."""
    m, p, h = req.method, req.params, req.headers
    restype, comp, resource, action = p.get("restype"), p.get("comp"), p.get("resource"), p.get("action")
    if req.filesystem is None:
        if comp == "userdelegationkey" and restype == "service" and m == "POST":
            req.op, req.flavor = "get_user_delegation_key", "blob"
        elif comp == "properties" and restype == "service" and m in ("GET", "PUT"):
            req.op, req.flavor = ("get_service_properties" if m == "GET" else "set_service_properties"), "blob"
        elif comp == "list" or resource == "account":
            req.op, req.flavor = "list_filesystems", ("blob" if comp == "list" else "dfs")
        else:
            req.op, req.flavor = "unknown", "blob"
        return
    if not req.path:
        if restype == "container" or (resource != "filesystem" and comp):
            req.flavor = "blob"
            if comp == "metadata" and m == "PUT":
                req.op = "set_filesystem_metadata"
            elif comp == "lease":
                req.op = "filesystem_lease"
            elif comp == "list":
                req.op = "list_deleted_paths" if (p.get("showonly") or "").lower() == "deleted" and m == "GET" \
                    else "unknown"
            elif comp == "undelete":
                req.op = "undelete_filesystem" if m == "PUT" else "unknown"
            elif m == "PUT":
                req.op = "create_filesystem"
            elif m in ("GET", "HEAD"):
                req.op = "get_filesystem_properties"
            elif m == "DELETE":
                req.op = "delete_filesystem"
            return
        req.flavor = "dfs"
        if (action or "").lower() in ("setaccesscontrol", "getaccesscontrol") and m in ("PATCH", "HEAD"):
            # The file system's root directory ("/").
            req.op = "set_access_control" if m == "PATCH" else "get_properties"
            return
        req.op = {"PUT": "create_filesystem", "GET": "list_paths", "HEAD": "get_filesystem_properties",
                  "PATCH": "set_filesystem_metadata", "DELETE": "delete_filesystem"}.get(m, "unknown")
        if m == "GET" and resource != "filesystem":
            req.op = "unknown"
        return
    # A path inside a file system.
    if comp:
        req.flavor = "blob"
        req.op = {"lease": "lease", "metadata": "set_metadata", "properties": "set_properties",
                  "expiry": "set_expiry", "tags": "set_tags"}.get(comp, "unknown")
        if m != "PUT" and req.op != "unknown":
            req.op = "get_properties" if comp == "metadata" and m in ("GET", "HEAD") else \
                "get_tags" if comp == "tags" and m == "GET" else "unknown"
        if comp == "query" and m == "POST":
            req.op = "query"
        if comp == "undelete" and m == "PUT":
            req.op = "undelete_path"
        return
    if m == "PUT":
        req.flavor = "dfs"
        if "x-ms-rename-source" in h:
            req.op = "rename"
        elif resource == "file":
            req.op = "create_file"
        elif resource == "directory":
            req.op = "create_directory"
        elif "x-ms-blob-type" in h:
            req.op, req.flavor = "put_blob", "blob"
        else:
            req.op, req.flavor = "unknown", "blob"
    elif m == "PATCH":
        req.flavor = "dfs"
        req.op = {"append": "append", "flush": "flush", "setaccesscontrol": "set_access_control",
                  "setaccesscontrolrecursive": "set_access_control_recursive",
                  "setproperties": "set_metadata"}.get((action or "").lower(), "unknown")
    elif m == "POST":
        req.flavor = "dfs"
        req.op = "lease" if "x-ms-lease-action" in h else "unknown"
    elif m == "HEAD":
        req.flavor = "dfs" if action else "blob"
        req.op = "get_properties"
    elif m == "GET":
        req.flavor = "blob"
        req.op = "read"
    elif m == "DELETE":
        req.flavor = "dfs"
        req.op = "delete"


# ---------------------------------------------------------------------------- the account
class AccountHandlers:
    """One method per operation name; each takes a classified Request and returns a Response."""

    def __init__(self, store: st.Store, account: str):
        self.store = store
        self.account = account
        self.public_url = ""  # set by the server once the port is known
        self.key_deriver: Callable[[str, str, str, str, str], str] | None = None  # user delegation keys
        self.service_properties = ServiceProperties()
        self.encryption_scopes = frozenset(DEFAULT_ENCRYPTION_SCOPES)  # the account's (set by the Emulator)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def conditions(req: Request, prefix: str = "") -> st.Conditions:
        def get(name: str) -> str | None:
            return req.header(prefix + name) if prefix else req.header(name)

        return st.Conditions(
            if_match=get("if-match"), if_none_match=get("if-none-match"),
            if_modified_since=parse_http_date(get("if-modified-since")),
            if_unmodified_since=parse_http_date(get("if-unmodified-since")))

    @staticmethod
    def http_headers_from(req: Request, prefix: str) -> dict[str, str]:
        """Content settings from ``x-ms-content-*`` (dfs) or ``x-ms-blob-content-*`` (blob) headers."""
        names = {"content_type": "content-type", "content_encoding": "content-encoding",
                 "content_language": "content-language", "content_disposition": "content-disposition",
                 "cache_control": "cache-control", "content_md5": "content-md5"}
        out = {}
        for key, name in names.items():
            value = req.header(prefix + name)
            if value is not None:
                out[key] = value
        return out

    @staticmethod
    def metadata_from(req: Request) -> dict[str, str]:
        return {k[len("x-ms-meta-"):]: v for k, v in req.headers.items() if k.startswith("x-ms-meta-")}

    @staticmethod
    def lease_duration(req: Request) -> int | None:
        return _int(req.header("x-ms-lease-duration"), "x-ms-lease-duration")

    def path_headers(self, info: st.PathInfo, req: Request) -> dict[str, str]:
        hh = info.http_headers
        out = {
            "ETag": info.etag, "Last-Modified": http_date(info.last_modified),
            "Content-Type": hh.get("content_type") or "application/octet-stream",
            "Accept-Ranges": "bytes", "x-ms-resource-type": info.kind,
            "x-ms-creation-time": http_date(info.created), "x-ms-blob-type": "BlockBlob",
            "x-ms-server-encrypted": "true", "x-ms-access-tier": "Hot", "x-ms-access-tier-inferred": "true",
            "x-ms-owner": info.owner, "x-ms-group": info.group, "x-ms-permissions": info.permissions,
            "x-ms-acl": info.acl,
        }
        for key, name in (("content_encoding", "Content-Encoding"), ("content_language", "Content-Language"),
                          ("content_disposition", "Content-Disposition"), ("cache_control", "Cache-Control"),
                          ("content_md5", "Content-MD5")):
            if hh.get(key):
                out[name] = hh[key]
        out.update(info.lease_headers)
        out.update(encryption_headers(info.encryption, with_context=True))
        if info.expires_at is not None:
            out["x-ms-expiry-time"] = http_date(info.expires_at)
        if info.tag_count:
            out["x-ms-tag-count"] = str(info.tag_count)
        metadata = dict(info.metadata)
        if info.is_dir:
            metadata.setdefault("hdi_isfolder", "true")
        for k, v in metadata.items():
            out[f"x-ms-meta-{k}"] = v
        if req.flavor == "dfs":
            out["x-ms-properties"] = st.encode_properties(info.metadata)
        return out

    @staticmethod
    def write_headers(etag: str, last_modified: float) -> dict[str, str]:
        return {"ETag": etag, "Last-Modified": http_date(last_modified)}

    # -- file systems -----------------------------------------------------------------------
    def create_filesystem(self, req: Request) -> Response:
        metadata = self.metadata_from(req) if req.flavor == "blob" else st.parse_properties(
            req.header("x-ms-properties"))
        deny = (req.header("x-ms-deny-encryption-scope-override") or "false").lower()
        if deny not in ("true", "false"):
            raise error(400, "InvalidHeaderValue", "x-ms-deny-encryption-scope-override must be true or false.")
        scope = req.header("x-ms-default-encryption-scope")
        check_scope(scope, self.encryption_scopes)
        if deny == "true" and not scope:
            raise error(400, "InvalidHeaderValue",
                        "x-ms-deny-encryption-scope-override needs x-ms-default-encryption-scope.")
        fs = self.store.create_filesystem(req.filesystem, metadata, req.flavor, default_scope=scope,
                                          deny_scope_override=deny == "true",
                                          owner=req.caller if req.scheme_used == "bearer" and req.sas is None
                                          else "$superuser")
        headers = self.write_headers(fs.etag, fs.last_modified)
        if req.flavor == "dfs":
            headers["x-ms-namespace-enabled"] = "true"
        return Response(201, headers)

    def get_filesystem_properties(self, req: Request) -> Response:
        info = self.store.filesystem_info(req.filesystem, req.flavor, req.header("x-ms-lease-id"))
        headers = self.write_headers(info["etag"], info["last_modified"])
        headers.update(info["lease"])
        if req.flavor == "blob":
            headers.update({"x-ms-has-immutability-policy": "false", "x-ms-has-legal-hold": "false",
                            "x-ms-default-encryption-scope": info["default_scope"],
                            "x-ms-deny-encryption-scope-override": str(info["deny_scope_override"]).lower()})
            for k, v in info["metadata"].items():
                headers[f"x-ms-meta-{k}"] = v
        else:
            headers["x-ms-properties"] = st.encode_properties(info["metadata"])
            headers["x-ms-namespace-enabled"] = "true"
        return Response(200, headers)

    def set_filesystem_metadata(self, req: Request) -> Response:
        metadata = self.metadata_from(req) if req.flavor == "blob" else st.parse_properties(
            req.header("x-ms-properties"))
        cond = st.Conditions(if_modified_since=parse_http_date(req.header("if-modified-since")))
        fs = self.store.set_filesystem_metadata(req.filesystem, metadata, req.header("x-ms-lease-id"), cond,
                                                req.flavor)
        return Response(200, self.write_headers(fs.etag, fs.last_modified))

    def delete_filesystem(self, req: Request) -> Response:
        cond = st.Conditions(if_modified_since=parse_http_date(req.header("if-modified-since")),
                             if_unmodified_since=parse_http_date(req.header("if-unmodified-since")))
        self.store.delete_filesystem(req.filesystem, cond, req.header("x-ms-lease-id"), req.flavor)
        return Response(202)

    def filesystem_lease(self, req: Request) -> Response:
        action = (req.header("x-ms-lease-action") or "").lower()
        out = self.store.filesystem_lease(
            req.filesystem, action, req.header("x-ms-lease-id"), req.header("x-ms-proposed-lease-id"),
            self.lease_duration(req) or -1, _int(req.header("x-ms-lease-break-period"), "break period"))
        info = self.store.filesystem_info(req.filesystem)
        headers = self.write_headers(info["etag"], info["last_modified"])
        headers.update(out)
        return Response(_LEASE_STATUS.get(action, 200), headers)

    def list_filesystems(self, req: Request) -> Response:
        prefix = req.params.get("prefix", "")
        items = self.store.list_filesystems(prefix)
        includes = {v.strip().lower() for v in req.params.get("include", "").split(",")}
        if "system" not in includes or req.flavor == "dfs":
            items = [i for i in items if not i["name"].startswith("$")]  # system file systems ($logs)
        marker = req.params.get("marker") or req.params.get("continuation")
        if marker:
            items = [i for i in items if i["name"] >= marker]
        limit = _int(req.params.get("maxresults"), "maxresults", 5000) or 5000
        next_marker = items[limit]["name"] if len(items) > limit else ""
        items = items[:limit]
        if req.flavor == "dfs":
            body = {"filesystems": [{"name": i["name"], "etag": i["etag"],
                                     "lastModified": http_date(i["last_modified"])} for i in items]}
            headers = {"Content-Type": "application/json; charset=utf-8"}
            if next_marker:
                headers["x-ms-continuation"] = next_marker
            return Response(200, headers, json.dumps(body).encode())
        include_meta = "metadata" in req.params.get("include", "")
        if "deleted" in req.params.get("include", "").lower():
            deleted = self.store.deleted_filesystems(prefix)
            for d in deleted:
                d["lease"] = {"x-ms-lease-status": "unlocked", "x-ms-lease-state": "expired"}
            items = sorted(items + deleted, key=lambda i: (i["name"], i.get("version", "")))
        parts = [f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
                 f'ServiceEndpoint="{escape(self.public_url)}/">']
        if prefix:
            parts.append(f"<Prefix>{escape(prefix)}</Prefix>")
        if marker:
            parts.append(f"<Marker>{escape(marker)}</Marker>")
        if req.params.get("maxresults"):
            parts.append(f"<MaxResults>{limit}</MaxResults>")
        parts.append("<Containers>")
        for i in items:
            lease = i["lease"]
            deleted_part = (f"<Deleted>true</Deleted><Version>{i['version']}</Version>" if "version" in i else "")
            deleted_props = (f"<DeletedTime>{http_date(i['deleted_time'])}</DeletedTime>"
                             f"<RemainingRetentionDays>{i['remaining_days']}</RemainingRetentionDays>"
                             if "version" in i else "")
            parts.append(
                f"<Container><Name>{escape(i['name'])}</Name>{deleted_part}<Properties>"
                f"<Last-Modified>{http_date(i['last_modified'])}</Last-Modified><Etag>{escape(i['etag'])}</Etag>"
                f"<LeaseStatus>{lease['x-ms-lease-status']}</LeaseStatus>"
                f"<LeaseState>{lease['x-ms-lease-state']}</LeaseState>"
                + (f"<LeaseDuration>{lease['x-ms-lease-duration']}</LeaseDuration>"
                   if "x-ms-lease-duration" in lease else "")
                + f"<DefaultEncryptionScope>{escape(i['default_scope'])}</DefaultEncryptionScope>"
                f"<DenyEncryptionScopeOverride>{str(i['deny_scope_override']).lower()}</DenyEncryptionScopeOverride>"
                "<HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold>"
                + deleted_props + "</Properties>")
            if include_meta:
                parts.append("<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in i["metadata"].items())
                             + "</Metadata>")
            parts.append("</Container>")
        parts.append("</Containers>")
        parts.append(f"<NextMarker>{escape(next_marker)}</NextMarker>" if next_marker else "<NextMarker />")
        parts.append("</EnumerationResults>")
        return Response(200, {"Content-Type": "application/xml"}, "".join(parts).encode())

    def get_user_delegation_key(self, req: Request) -> Response:
        if req.scheme_used != "bearer":
            raise error(403, "AuthenticationFailed", "A user delegation key needs a bearer token (Entra ID).")
        text = req.body.decode("utf-8-sig", errors="replace")
        start = _xml_value(text, "Start") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        expiry = _xml_value(text, "Expiry")
        if not expiry:
            raise error(400, "InvalidXmlDocument", "KeyInfo needs an Expiry.")
        try:
            start_at = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
            expiry_at = datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise error(400, "InvalidXmlNodeValue", "KeyInfo Start and Expiry must be ISO 8601 times.") from exc
        if expiry_at <= start_at or expiry_at > time.time() + 7 * 86400:
            raise error(400, "InvalidXmlNodeValue",
                        "The key's expiry must be after its start and within seven days of the current time.")
        version = req.header("x-ms-version") or DEFAULT_VERSION
        oid, tid = req.caller, req.tenant
        delegated_tid = _xml_value(text, "DelegatedUserTid")
        value = self.key_deriver(oid, tid, start, expiry, version)
        body = ('<?xml version="1.0" encoding="utf-8"?><UserDelegationKey>'
                f"<SignedOid>{escape(oid)}</SignedOid><SignedTid>{escape(tid)}</SignedTid>"
                f"<SignedStart>{escape(start)}</SignedStart><SignedExpiry>{escape(expiry)}</SignedExpiry>"
                f"<SignedService>b</SignedService><SignedVersion>{escape(version)}</SignedVersion>"
                + (f"<SignedDelegatedUserTid>{escape(delegated_tid)}</SignedDelegatedUserTid>"
                   if delegated_tid else "")
                + f"<Value>{value}</Value></UserDelegationKey>")
        return Response(200, {"Content-Type": "application/xml"}, body.encode())

    def get_service_properties(self, req: Request) -> Response:
        return Response(200, {"Content-Type": "application/xml"}, self.service_properties.xml())

    def set_service_properties(self, req: Request) -> Response:
        self.service_properties.set(req.body)
        self.store.save_setting("service_properties", self.service_properties.elements)
        return Response(202)

    # -- paths ------------------------------------------------------------------------------
    def _create(self, req: Request, kind: str) -> Response:
        info = self.store.create_path(
            req.filesystem, req.path, kind, conditions=self.conditions(req), lease_id=req.header("x-ms-lease-id"),
            metadata=st.parse_properties(req.header("x-ms-properties")),
            http_headers=self.http_headers_from(req, "x-ms-"),
            proposed_lease_id=req.header("x-ms-proposed-lease-id"), lease_duration=self.lease_duration(req),
            permissions=req.header("x-ms-permissions"), umask=req.header("x-ms-umask"),
            owner=req.header("x-ms-owner"), group=req.header("x-ms-group"), acl=req.header("x-ms-acl"),
            caller=req.caller, encryption=lambda fs: new_path_encryption(req, fs, kind, self.encryption_scopes),
            expiry=create_expiry(req, kind))
        headers = self.write_headers(info.etag, info.last_modified)
        headers["x-ms-request-server-encrypted"] = "true"
        headers.update(encryption_headers(info.encryption))
        return Response(201, headers)

    def create_file(self, req: Request) -> Response:
        return self._create(req, "file")

    def create_directory(self, req: Request) -> Response:
        return self._create(req, "directory")

    def put_blob(self, req: Request) -> Response:
        """Put Blob (Blob endpoint): the whole file in one request; with ``If-None-Match: *`` it fails
        409 ``BlobAlreadyExists`` when the path exists. Only block blobs (what an HNS file is)."""
        blob_type = req.header("x-ms-blob-type") or ""
        if blob_type != "BlockBlob":
            raise not_implemented(f"Put Blob of x-ms-blob-type {blob_type!r} (only BlockBlob)")
        data, validation = self.validated_body(req)
        info = self.store.put_blob(
            req.filesystem, req.path, data, conditions=self.conditions(req), lease_id=req.header("x-ms-lease-id"),
            metadata=self.metadata_from(req), http_headers=self.http_headers_from(req, "x-ms-blob-"),
            caller=req.caller)
        headers = self.write_headers(info.etag, info.last_modified)
        headers["x-ms-request-server-encrypted"] = "true"
        headers["Content-MD5"] = cv.md5_b64(data)
        headers.update({k: v for k, v in validation.items() if k != "Content-MD5"})
        return Response(201, headers)

    def check_encryption(self, req: Request) -> None:
        """The customer-provided key a request carries must be the one the path is encrypted with."""
        enc = self.store.encryption_of(req.filesystem, req.path)
        if enc is not None:
            check_customer_key(req, enc)

    def get_properties(self, req: Request) -> Response:
        if (req.params.get("action") or "").lower() != "getaccesscontrol":
            self.check_encryption(req)
        info = self.store.get_path(req.filesystem, req.path, self.conditions(req), req.flavor,
                                   req.header("x-ms-lease-id"))
        headers = self.path_headers(info, req)
        headers["Content-Length"] = str(info.length)
        return Response(200, headers)

    def read(self, req: Request) -> Response:
        rng = req.header("x-ms-range") or req.header("range")
        start = end = None
        if rng:
            start, end = _parse_range(rng)
        want_md5 = (req.header("x-ms-range-get-content-md5") or "").lower() == "true"
        if want_md5 and (not rng or end is None or end - start + 1 > 4 * 1024 * 1024):
            raise error(400, "InvalidHeaderValue", "x-ms-range-get-content-md5 needs a range of at most 4 MiB.")
        structured = req.header("x-ms-structured-body")
        if structured is not None and structured.strip().lower().replace(" ", "") != \
                cv.SM_V1_CRC64.lower().replace(" ", ""):
            raise error(400, "InvalidHeaderValue", f"x-ms-structured-body {structured!r} is not supported.")
        self.check_encryption(req)
        info, data, first, last = self.store.read(req.filesystem, req.path, start, end, self.conditions(req),
                                                  req.header("x-ms-lease-id"))
        headers = self.path_headers(info, req)
        if want_md5:
            headers["Content-MD5"] = cv.md5_b64(data)
        elif rng and "Content-MD5" in headers:
            # On a range read the stored MD5 of the whole file is x-ms-blob-content-md5.
            headers["x-ms-blob-content-md5"] = headers.pop("Content-MD5")
        body = data
        if structured is not None:
            body = cv.encode_structured(data)
            headers["x-ms-structured-body"] = cv.SM_V1_CRC64
            headers["x-ms-structured-content-length"] = str(len(data))
        if rng:
            headers["Content-Range"] = f"bytes {first}-{last}/{info.length}"
            return Response(206, headers, body)
        return Response(200, headers, body)

    def append(self, req: Request) -> Response:
        position = _int(req.params.get("position"), "position")
        if position is None:
            raise error(400, "InvalidQueryParameterValue", "position is required.")
        flush = req.flag("flush")
        self.check_encryption(req)
        data, validation = self.validated_body(req)
        info, extra = self.store.append(
            req.filesystem, req.path, position, data, lease_id=req.header("x-ms-lease-id"),
            lease_action=req.header("x-ms-lease-action"), proposed_lease_id=req.header("x-ms-proposed-lease-id"),
            lease_duration=self.lease_duration(req), flush=flush, close=req.flag("close"),
            http_headers=self.http_headers_from(req, "x-ms-") if flush else None)
        headers = {"x-ms-request-server-encrypted": "true", **validation, **encryption_headers(info.encryption)}
        if flush:
            headers.update(self.write_headers(info.etag, info.last_modified))
        headers.update(extra)
        return Response(202, headers)

    @staticmethod
    def validated_body(req: Request) -> tuple[bytes, dict[str, str]]:
        """The content of an upload after its transactional checks, and the headers that echo them.

        A structured message (``x-ms-structured-body``) is checked and unwrapped: only its content is
        stored. ``Content-MD5`` / ``x-ms-content-crc64`` must match the body (400 otherwise)."""
        structured = req.header("x-ms-structured-body")
        if structured is not None:
            data = cv.decode_structured(req.body, structured, req.header("x-ms-structured-content-length"))
            return data, {"x-ms-structured-body": cv.SM_V1_CRC64}
        echo = {}
        if req.header("content-md5") is not None:
            cv.check_md5(req.body, req.header("content-md5"))
            echo["Content-MD5"] = req.header("content-md5")
        if req.header("x-ms-content-crc64") is not None:
            cv.check_crc64(req.body, req.header("x-ms-content-crc64"))
            echo["x-ms-content-crc64"] = req.header("x-ms-content-crc64")
        return req.body, echo

    def flush(self, req: Request) -> Response:
        position = _int(req.params.get("position"), "position")
        if position is None:
            raise error(400, "InvalidQueryParameterValue", "position is required.")
        if req.body:
            raise error(400, "InvalidRequestBody", "A flush request must not have a body.")
        self.check_encryption(req)
        info, extra = self.store.flush(
            req.filesystem, req.path, position, retain=req.flag("retainUncommittedData"), close=req.flag("close"),
            conditions=self.conditions(req), lease_id=req.header("x-ms-lease-id"),
            lease_action=req.header("x-ms-lease-action"), proposed_lease_id=req.header("x-ms-proposed-lease-id"),
            lease_duration=self.lease_duration(req), http_headers=self.http_headers_from(req, "x-ms-"))
        headers = self.write_headers(info.etag, info.last_modified)
        headers["x-ms-request-server-encrypted"] = "true"
        headers.update(encryption_headers(info.encryption))
        headers.update(extra)
        return Response(200, headers)

    def delete(self, req: Request) -> Response:
        deletion_id = self.store.delete_path(
            req.filesystem, req.path, recursive=req.flag("recursive"), conditions=self.conditions(req),
            lease_id=req.header("x-ms-lease-id"), soft_delete_days=self.service_properties.delete_retention_days())
        if deletion_id is None:
            return Response(200, {"x-ms-delete-type-permanent": "true"})
        return Response(200, {"x-ms-deletion-id": deletion_id})

    def list_deleted_paths(self, req: Request) -> Response:
        items = self.store.deleted_paths(req.filesystem, req.params.get("prefix", ""))
        marker = req.params.get("marker")
        if marker:
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(marker.encode())))
            except ValueError as exc:
                raise error(400, "InvalidQueryParameterValue", "marker is not one this listing gave.") from exc
            start = (st.sort_key(after[0]), after[1])
            items = [i for i in items if (st.sort_key(i["name"]), i["deletion_id"]) >= start]
        limit = _int(req.params.get("maxresults"), "maxresults", 5000) or 5000
        next_marker = base64.urlsafe_b64encode(json.dumps([items[limit]["name"], items[limit]["deletion_id"]])
                                               .encode()).decode() if len(items) > limit else ""
        parts = ['<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
                 f'ServiceEndpoint="{escape(self.public_url)}/" ContainerName="{escape(req.filesystem)}">']
        for name in ("prefix", "marker", "maxresults"):
            if req.params.get(name):
                tag = {"prefix": "Prefix", "marker": "Marker", "maxresults": "MaxResults"}[name]
                parts.append(f"<{tag}>{escape(req.params[name])}</{tag}>")
        parts.append("<Blobs>")
        for i in items[:limit]:
            info = i["info"]
            parts.append(
                f"<Blob><Name>{escape(i['name'])}</Name><Deleted>true</Deleted><DeletionId>{i['deletion_id']}"
                f"</DeletionId><Properties><Creation-Time>{http_date(info.created)}</Creation-Time>"
                f"<Last-Modified>{http_date(info.last_modified)}</Last-Modified><Etag>{escape(info.etag)}</Etag>"
                f"<Content-Length>{info.length}</Content-Length><ResourceType>{info.kind}</ResourceType>"
                f"<DeletedTime>{http_date(i['deleted_time'])}</DeletedTime>"
                f"<RemainingRetentionDays>{i['remaining_days']}</RemainingRetentionDays></Properties></Blob>")
        parts.append("</Blobs>")
        parts.append(f"<NextMarker>{escape(next_marker)}</NextMarker>" if next_marker else "<NextMarker />")
        parts.append("</EnumerationResults>")
        return Response(200, {"Content-Type": "application/xml"}, "".join(parts).encode())

    def undelete_path(self, req: Request) -> Response:
        source = req.header("x-ms-undelete-source") or req.path
        source_path, _, query = source.partition("?")
        deletion_id = dict(parse_query(query)).get("deletionid")
        if normalize_source(source_path) != req.path:
            raise error(400, "InvalidHeaderValue", "x-ms-undelete-source must name the path of the request.")
        info = self.store.undelete_path(req.filesystem, req.path, deletion_id)
        return Response(200, {"x-ms-resource-type": info.kind, "x-ms-creation-time": http_date(info.created)})

    def undelete_filesystem(self, req: Request) -> Response:
        name = req.header("x-ms-deleted-container-name")
        version = req.header("x-ms-deleted-container-version")
        if not name or not version:
            raise error(400, "MissingRequiredHeader",
                        "x-ms-deleted-container-name and x-ms-deleted-container-version are required.")
        fs = self.store.undelete_filesystem(name, version, req.filesystem)
        return Response(201, self.write_headers(fs.etag, fs.last_modified))

    def rename(self, req: Request) -> Response:
        source = req.header("x-ms-rename-source") or ""
        source_path = urlsplit(source).path if "://" in source else source.split("?", 1)[0]
        parts = source_path.lstrip("/").split("/", 1)
        if len(parts) != 2 or not parts[1]:
            raise error(400, "InvalidSourceUri", "x-ms-rename-source must be /{filesystem}/{path}.")
        src_fs, src_path = unquote(parts[0]), unquote(parts[1])
        info = self.store.rename(
            src_fs, src_path, req.filesystem, req.path, conditions=self.conditions(req),
            source_conditions=self.conditions(req, "x-ms-source-"), lease_id=req.header("x-ms-lease-id"),
            source_lease_id=req.header("x-ms-source-lease-id"))
        return Response(201, self.write_headers(info.etag, info.last_modified))

    def list_paths(self, req: Request) -> Response:
        infos, token = self.store.list_paths(
            req.filesystem, directory=req.params.get("directory", ""), recursive=req.flag("recursive"),
            max_results=_int(req.params.get("maxresults"), "maxResults"),
            continuation=req.params.get("continuation") or req.header("x-ms-continuation"),
            begin_from=req.params.get("beginfrom"))
        paths = []
        for info in infos:
            entry = {"contentLength": str(info.length), "creationTime": st.filetime(info.created),
                     "etag": info.etag.strip('"'), "group": info.group,
                     "expiryTime": st.filetime(info.expires_at) if info.expires_at is not None else "0",
                     "lastModified": http_date(info.last_modified), "name": info.name, "owner": info.owner,
                     "permissions": info.permissions}
            if info.is_dir:
                entry["isDirectory"] = "true"
            if info.encryption.get("scope"):
                entry["EncryptionScope"] = info.encryption["scope"]
            if info.encryption.get("context"):
                entry["EncryptionContext"] = info.encryption["context"]
            paths.append(dict(sorted(entry.items())))
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if token:
            headers["x-ms-continuation"] = token
        return Response(200, headers, json.dumps({"paths": paths}).encode())

    def set_metadata(self, req: Request) -> Response:
        self.check_encryption(req)
        if req.flavor == "dfs":  # PATCH ?action=setProperties
            metadata = st.parse_properties(req.header("x-ms-properties"))
        else:
            metadata = self.metadata_from(req)
        info = self.store.set_path_metadata(req.filesystem, req.path, metadata, conditions=self.conditions(req),
                                            lease_id=req.header("x-ms-lease-id"), flavor=req.flavor)
        headers = self.write_headers(info.etag, info.last_modified)
        headers["x-ms-request-server-encrypted"] = "true"
        headers.update(encryption_headers(info.encryption))
        return Response(200, headers)

    def set_properties(self, req: Request) -> Response:
        info = self.store.set_path_http_headers(req.filesystem, req.path, self.http_headers_from(req, "x-ms-blob-"),
                                                conditions=self.conditions(req), lease_id=req.header("x-ms-lease-id"))
        return Response(200, self.write_headers(info.etag, info.last_modified))

    def query(self, req: Request) -> Response:
        parsed = qq.parse_request(req.body)
        self.check_encryption(req)
        info, data, _, _ = self.store.read(req.filesystem, req.path, None, None, self.conditions(req),
                                           req.header("x-ms-lease-id"))
        headers = self.path_headers(info, req)
        headers["Content-Type"] = "avro/binary"
        for name in ("Content-MD5", "Content-Encoding", "Content-Language", "Content-Disposition", "Cache-Control"):
            headers.pop(name, None)
        return Response(200, headers, qq.run(parsed, data))

    def set_expiry(self, req: Request) -> Response:
        option = (req.header("x-ms-expiry-option") or "").lower()
        value = req.header("x-ms-expiry-time")
        relative = None
        expiry: float | None = None
        if option == "neverexpire":
            if value:
                raise error(400, "InvalidHeaderValue", "NeverExpire takes no x-ms-expiry-time.")
        elif option == "relativetocreation":
            relative = _expiry_ms(value) / 1000
        elif option in ("relativetonow", "absolute"):
            expiry = _expiry_at(option, value)
        else:
            raise error(400, "InvalidHeaderValue", "x-ms-expiry-option must be RelativeToCreation, RelativeToNow, "
                        "Absolute or NeverExpire.")
        info = self.store.set_expiry(req.filesystem, req.path, expiry, relative, req.header("x-ms-lease-id"))
        return Response(200, self.write_headers(info.etag, info.last_modified))

    def set_tags(self, req: Request) -> Response:
        """Set Blob Tags: replaces the path's tags; ETag and Last-Modified stay as they are."""
        if req.header("content-md5") is not None:
            cv.check_md5(req.body, req.header("content-md5"))
        if req.header("x-ms-content-crc64") is not None:
            cv.check_crc64(req.body, req.header("x-ms-content-crc64"))
        tags = parse_tags(req.body)
        self.store.set_tags(req.filesystem, req.path, tags, conditions=self.conditions(req, "x-ms-blob-"),
                            lease_id=req.header("x-ms-lease-id"))
        return Response(204)

    def get_tags(self, req: Request) -> Response:
        tags = self.store.get_tags(req.filesystem, req.path, conditions=self.conditions(req, "x-ms-blob-"),
                                   lease_id=req.header("x-ms-lease-id"))
        body = ('<?xml version="1.0" encoding="utf-8"?><Tags><TagSet>'
                + "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in tags.items())
                + "</TagSet></Tags>")
        return Response(200, {"Content-Type": "application/xml"}, body.encode())

    def set_access_control(self, req: Request) -> Response:
        info = self.store.set_access_control(
            req.filesystem, req.path, permissions=req.header("x-ms-permissions"), owner=req.header("x-ms-owner"),
            group=req.header("x-ms-group"), acl=req.header("x-ms-acl"), conditions=self.conditions(req),
            lease_id=req.header("x-ms-lease-id"))
        return Response(200, self.write_headers(info.etag, info.last_modified))

    def set_access_control_recursive(self, req: Request) -> Response:
        if req.header("x-ms-permissions") or req.header("x-ms-owner") or req.header("x-ms-group") or \
                req.header("x-ms-umask"):
            raise error(400, "InvalidHeaderValue", "setAccessControlRecursive takes only x-ms-acl.")
        result, token = self.store.set_access_control_recursive(
            req.filesystem, req.path, req.params.get("mode", ""), req.header("x-ms-acl") or "",
            max_records=_int(req.params.get("maxrecords"), "maxRecords"),
            continuation=req.params.get("continuation"),
            may_change=req.acl.can_change_acl if req.acl is not None else None, force=req.flag("forceFlag"))
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if token:
            headers["x-ms-continuation"] = token
        return Response(200, headers, json.dumps(result).encode())

    def lease(self, req: Request) -> Response:
        action = (req.header("x-ms-lease-action") or "").lower()
        duration = self.lease_duration(req)
        info, out = self.store.path_lease(
            req.filesystem, req.path, action, lease_id=req.header("x-ms-lease-id"),
            proposed_lease_id=req.header("x-ms-proposed-lease-id"), duration=-1 if duration is None else duration,
            break_period=_int(req.header("x-ms-lease-break-period"), "x-ms-lease-break-period"),
            conditions=self.conditions(req), flavor=req.flavor)
        headers = self.write_headers(info.etag, info.last_modified)
        headers.update(out)
        return Response(_LEASE_STATUS.get(action, 200), headers)

    def unknown(self, req: Request) -> Response:
        raise not_implemented(f"the request {req.method} {req.raw_path}?{req.query}")


def _expiry_ms(value: str | None) -> int:
    try:
        ms = int(value or "")
    except ValueError as exc:
        raise error(400, "InvalidHeaderValue", "x-ms-expiry-time must be a number of milliseconds.") from exc
    if ms < 0:
        raise error(400, "InvalidHeaderValue", "x-ms-expiry-time must not be negative.")
    return ms


def _expiry_at(option: str, value: str | None) -> float:
    """Epoch seconds for ``RelativeToNow`` (milliseconds) or ``Absolute`` (an HTTP date in the future)."""
    if option == "relativetonow":
        return time.time() + _expiry_ms(value) / 1000
    when = parse_http_date(value)
    if when is None:
        raise error(400, "InvalidHeaderValue", "Absolute needs x-ms-expiry-time.")
    if when <= time.time():
        raise error(400, "InvalidHeaderValue", "x-ms-expiry-time is in the past.")
    return when


def create_expiry(req: Request, kind: str) -> float | None:
    """The expiry a Path - Create asks for (files only): RelativeToNow, Absolute or NeverExpire."""
    option = (req.header("x-ms-expiry-option") or "").lower()
    if not option and req.header("x-ms-expiry-time") is None:
        return None
    if kind != "file":
        raise error(400, "InvalidHeaderValue", "An expiry time applies to files only.")
    if option == "neverexpire":
        return None
    if option not in ("relativetonow", "absolute"):
        raise error(400, "InvalidHeaderValue", "x-ms-expiry-option on create must be RelativeToNow, Absolute "
                    "or NeverExpire.")
    return _expiry_at(option, req.header("x-ms-expiry-time"))


def customer_key_sha256(req: Request) -> str | None:
    """The SHA-256 (base64) of the request's customer-provided key, after checking its headers."""
    key = req.header("x-ms-encryption-key")
    sha = req.header("x-ms-encryption-key-sha256")
    algorithm = req.header("x-ms-encryption-algorithm")
    if key is None and sha is None and algorithm is None:
        return None
    if key is None or sha is None or algorithm is None:
        raise error(400, "MissingRequiredHeader", "A customer-provided key needs x-ms-encryption-key, "
                    "x-ms-encryption-key-sha256 and x-ms-encryption-algorithm.")
    if algorithm != "AES256":
        raise error(400, "InvalidHeaderValue", "x-ms-encryption-algorithm must be AES256.")
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError as exc:
        raise error(400, "InvalidHeaderValue", "x-ms-encryption-key must be base64.") from exc
    if len(raw) != 32:
        raise error(400, "InvalidHeaderValue", "x-ms-encryption-key must be a 256-bit key.")
    if base64.b64encode(hashlib.sha256(raw).digest()).decode() != sha:
        raise error(400, "InvalidHeaderValue", "x-ms-encryption-key-sha256 is not the SHA-256 of the key.")
    return sha


def check_customer_key(req: Request, enc: dict[str, str]) -> None:
    given, used = customer_key_sha256(req), enc.get("key_sha256")
    if used and not given:
        raise error(409, "BlobUsesCustomerSpecifiedEncryption",
                    "The blob is encrypted with customer specified encryption, but it was not provided in the request.")
    if used and given != used:
        raise error(409, "BlobUsesCustomerSpecifiedEncryption",
                    "The given customer-provided key is not the key the blob is encrypted with.")
    if given and not used:
        raise error(409, "BlobDoesNotUseCustomerSpecifiedEncryption",
                    "The blob is not encrypted with customer specified encryption.")


# The account's encryption scopes when none are declared (``--encryption-scope``): besides the
# account key's ``$account-encryption-key``, which always exists.
DEFAULT_ENCRYPTION_SCOPES = ("scope1", "scope2")


def check_scope(scope: str | None, scopes: frozenset[str]) -> None:
    """An encryption scope the account does not have is refused (the service knows its account's scopes)."""
    if scope and scope != st.ACCOUNT_KEY_SCOPE and scope not in scopes:
        raise error(404, "EncryptionScopeNotFound", f"The encryption scope {scope!r} does not exist in this account.")


def new_path_encryption(req: Request, fs: st.FileSystem, kind: str,
                        scopes: frozenset[str] = frozenset(DEFAULT_ENCRYPTION_SCOPES)) -> dict[str, str]:
    """How a path created by ``req`` in ``fs`` is encrypted (its encryption scope, customer key and context)."""
    enc: dict[str, str] = {}
    scope = req.header("x-ms-encryption-scope")
    sas_scope = (req.sas or {}).get("ses") or None
    check_scope(scope, scopes)
    check_scope(sas_scope, scopes)
    if scope and sas_scope and scope != sas_scope:
        raise error(403, "AuthorizationFailure", "The encryption scope of the request is not the SAS's (ses).")
    scope = scope or sas_scope
    if scope and fs.deny_scope_override and scope != fs.default_scope:
        raise error(409, "EncryptionScopeOverrideNotAllowed",
                    "The file system does not allow another encryption scope than its default.")
    scope = scope or fs.default_scope
    key_sha = customer_key_sha256(req)
    if key_sha and scope != st.ACCOUNT_KEY_SCOPE:
        raise error(409, "EncryptionScopeOverrideNotAllowed" if not req.header("x-ms-encryption-scope")
                    else "InvalidHeaderValue",
                    "A customer-provided key cannot be used together with an encryption scope.")
    if scope != st.ACCOUNT_KEY_SCOPE:
        enc["scope"] = scope
    if key_sha:
        enc["key_sha256"] = key_sha
    context = req.header("x-ms-encryption-context")
    if context is not None:
        if kind != "file":
            raise error(400, "InvalidHeaderValue", "x-ms-encryption-context applies to files only.")
        enc["context"] = context
    return enc


def encryption_headers(enc: dict[str, str], with_context: bool = False) -> dict[str, str]:
    out = {}
    if enc.get("key_sha256"):
        out["x-ms-encryption-key-sha256"] = enc["key_sha256"]
    if enc.get("scope"):
        out["x-ms-encryption-scope"] = enc["scope"]
    if with_context and enc.get("context"):
        out["x-ms-encryption-context"] = enc["context"]
    return out


_TAG_TEXT = re.compile(r"^[A-Za-z0-9 +\-./:=_]*$")


def parse_tags(body: bytes) -> dict[str, str]:
    """The body of Set Blob Tags: at most 10 tags, keys of 1-128 and values of 0-256 characters out of
    letters, digits, space and ``+ - . / : = _`` (else 400 ``InvalidTag``)."""
    try:
        root = ET.fromstring(body.decode("utf-8-sig")) if body.strip() else None
    except (ET.ParseError, UnicodeDecodeError) as exc:
        raise error(400, "InvalidXmlDocument", "The tags are not well-formed XML.") from exc
    tags: dict[str, str] = {}
    for tag in ([] if root is None else root.iter("Tag")):
        key, value = tag.findtext("Key") or "", tag.findtext("Value") or ""
        if not 1 <= len(key) <= 128 or len(value) > 256 or not _TAG_TEXT.match(key) or not _TAG_TEXT.match(value) \
                or key in tags:
            raise error(400, "InvalidTag", "The tags specified are invalid. It contains characters that are not "
                        "permitted, a key or value of a length out of bounds, or a duplicate key.")
        tags[key] = value
    if len(tags) > 10:
        raise error(400, "InvalidTag", "At most 10 tags can be set on a blob.")
    return tags


_LEASE_STATUS = {"acquire": 201, "renew": 200, "change": 200, "release": 200, "break": 202}


def normalize_source(path: str) -> str:
    return st.normalize_path(unquote(path))


def _xml_value(text: str, tag: str) -> str | None:
    start = text.find(f"<{tag}>")
    end = text.find(f"</{tag}>")
    return text[start + len(tag) + 2:end].strip() if start >= 0 and end > start else None


def _parse_range(value: str) -> tuple[int, int | None]:
    try:
        unit, _, spec = value.partition("=")
        first, _, last = spec.partition("-")
        if unit.strip() != "bytes" or not first:
            raise ValueError
        start = int(first)
        end = int(last) if last else None
        if end is not None and end < start:
            raise ValueError
        return start, end
    except ValueError as exc:
        raise error(400, "InvalidHeaderValue", f"Bad range {value!r}.") from exc


# The account's system file system, listed only with include=system; nothing is logged into it.
SYSTEM_FILESYSTEM = "$logs"


# ---------------------------------------------------------------------------- the emulator
class Emulator:
    """Ties store, authentication, faults and counters together; independent of the socket layer."""

    def __init__(self, account: str = DEV_ACCOUNT, data_dir: str | None = None, key: str = DEV_KEY,
                 filesystem_soft_delete_days: int | None = None, superusers: Iterable[str] = (),
                 encryption_scopes: Iterable[str] | None = None):
        """``superusers``: object IDs that act as holding Storage Blob Data Owner (ACLs do not
        restrict their bearer tokens). ``encryption_scopes``: the account's encryption scopes
        (default :data:`DEFAULT_ENCRYPTION_SCOPES`); others are refused."""
        self.account = account
        self.superusers = frozenset(superusers)
        self.persistence = SqlitePersistence(data_dir) if data_dir else None
        self.store = st.Store(self.persistence)
        self.store.filesystem_soft_delete_days = filesystem_soft_delete_days
        self.auth = Authenticator(account, key)
        self.faults = FaultRegistry()
        self.stats = Stats()
        self.handlers = AccountHandlers(self.store, account)
        self.handlers.key_deriver = self.auth.delegation_key
        if SYSTEM_FILESYSTEM not in self.store.list_names():
            self.store.create_filesystem(SYSTEM_FILESYSTEM)
        saved = self.store.load_setting("service_properties")
        if saved:
            self.handlers.service_properties.elements.update(saved)
        self.handlers.encryption_scopes = frozenset(DEFAULT_ENCRYPTION_SCOPES if encryption_scopes is None
                                                    else encryption_scopes)
        self.scheme = "http"  # set by the server

    def parse(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Request:
        raw_path, _, query = target.partition("?")
        req = Request(method=method, raw_path=raw_path, query=query, headers=headers, body=body)
        req.params = {k.lower(): v for k, v in parse_query(query)}
        segments = raw_path.lstrip("/").split("/", 2)
        if len(segments) >= 2 and segments[1]:
            req.filesystem = unquote(segments[1])
        if len(segments) == 3:
            req.path = st.normalize_path(unquote(segments[2]))
        classify(req)
        return req

    def handle(self, req: Request) -> tuple[Response, FaultRule | None]:
        """Run an account request. Returns the response and the fault rule that applied, if any."""
        self.stats.count(req.op)
        rule = self.faults.take(req.op, req.filesystem, req.path)
        if rule is not None and rule.action == "delay":
            time.sleep(rule.delay_seconds)
        try:
            if rule is not None and rule.action == "error":
                raise error(rule.status, rule.code, rule.message)
            account = unquote(req.raw_path.lstrip("/").split("/", 1)[0])
            if account != self.account:
                raise error(400, "InvalidUri", f"Unknown account {account!r}; this emulator serves {self.account!r}.")
            req.scheme_used, req.caller, sas = self.auth.check(req.method, req.raw_path, req.query, req.headers,
                                                               self.scheme)
            req.sas = sas
            if req.scheme_used == "bearer":
                req.tenant = self.auth.tenant_of(req.headers)
            check_request(req.op, req.headers, req.params, (sas or {}).get("signed_query") or set())
            if sas is not None:
                op = req.op
                if op == "get_properties" and (req.params.get("action") or "").lower() == "getaccesscontrol":
                    op = "get_access_control"
                check_sas_permission(sas, op, owner_change=bool(req.header("x-ms-owner") or req.header("x-ms-group"))
                                     and op == "set_access_control")
            handler: Callable[[Request], Response] = getattr(self.handlers, req.op)
            who = self.acl_principal(req, sas)
            if who is None:
                resp = handler(req)
            else:
                # The check and the operation see the same state: both run under the store's lock.
                with self.store.lock:
                    checker = AclChecker(self.store, who)
                    if checker.check(req):
                        req.acl = checker
                    resp = handler(req)
        except StorageError as exc:
            resp = self.error_response(req, exc)
        return resp, rule

    def acl_principal(self, req: Request, sas: dict | None) -> Principal | None:
        """Whose ACL rights a request is checked against (see :mod:`.authz`), or None for no check."""
        if sas is not None:
            return Principal(sas["suoid"]) if sas.get("suoid") else None
        if req.scheme_used != "bearer" or req.caller == "$superuser" or req.caller in self.superusers:
            return None
        groups = self.auth.claims_of(req.headers).get("groups") or []
        return Principal(req.caller, frozenset(str(g) for g in groups if isinstance(g, str)))

    def error_response(self, req: Request, exc: StorageError) -> Response:
        headers = {"x-ms-error-code": exc.code, **exc.headers}
        if req.method == "HEAD" or exc.status == 304:
            return Response(exc.status, headers)
        request_id = req.headers.get("x-emulator-request-id", "")
        text = f"{exc.message}\nRequestId:{request_id}\nTime:{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}Z"
        if req.flavor == "blob":
            body = ('\ufeff<?xml version="1.0" encoding="utf-8"?><Error><Code>' + escape(exc.code)
                    + "</Code><Message>" + escape(text) + "</Message></Error>").encode("utf-8")
            headers["Content-Type"] = "application/xml"
        else:
            body = json.dumps({"error": {"code": exc.code, "message": text}}).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        return Response(exc.status, headers, body)

    def control(self, method: str, raw_path: str, body: bytes) -> Response:
        sub = raw_path[len(CONTROL_PREFIX):].rstrip("/")

        def ok(payload: Any, status: int = 200) -> Response:
            return Response(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())

        if sub == "/health" and method in ("GET", "HEAD"):
            return ok({"status": "ok", "account": self.account, "persistent": self.persistence is not None})
        if sub == "/faults":
            if method == "GET":
                return ok({"faults": self.faults.list()})
            if method == "DELETE":
                self.faults.clear()
                return ok({"faults": []})
            if method == "POST":
                try:
                    data = json.loads(body or b"{}")
                    rules = data if isinstance(data, list) else [data]
                    for item in rules:
                        self.faults.add(FaultRule.from_json(item))
                except (ValueError, TypeError) as exc:
                    return ok({"error": str(exc)}, 400)
                return ok({"faults": self.faults.list()}, 201)
        if sub == "/stats" and method == "GET":
            return ok(self.stats.snapshot())
        if sub == "/stats/reset" and method == "POST":
            self.stats.reset()
            return ok(self.stats.snapshot())
        return ok({"error": f"unknown control endpoint {method} {raw_path}"}, 404)

    def close(self) -> None:
        if self.persistence is not None:
            self.persistence.close()


# ---------------------------------------------------------------------------- HTTP plumbing
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Windows-Azure-HDFS/1.0 adls-emulator"
    emulator: Emulator  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _read_body(self) -> bytes | None:
        """The request's body; None when the client went away before sending all of it (the service
        never applies a request whose body it did not receive whole)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                if not line:
                    return None
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    return None
                chunks.append(chunk)
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:  # a truncated request (the client died or gave up): nothing is applied
            self.close_connection = True
            return
        if self.path.startswith(CONTROL_PREFIX + "/") or self.path == CONTROL_PREFIX:
            resp = self.emulator.control(self.command, self.path.split("?", 1)[0], body)
            self._send(resp, self.headers.get("x-ms-version"))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        request_id = str(uuid.uuid4())
        headers["x-emulator-request-id"] = request_id
        req = self.emulator.parse(self.command, self.path, headers, body)
        resp, rule = self.emulator.handle(req)
        if rule is not None and rule.action == "drop_response":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        resp.headers.setdefault("x-ms-request-id", request_id)
        if "x-ms-client-request-id" in headers:
            resp.headers.setdefault("x-ms-client-request-id", headers["x-ms-client-request-id"])
        self._send(resp, headers.get("x-ms-version"))

    def _send(self, resp: Response, version: str | None) -> None:
        self.send_response(resp.status)
        headers = dict(resp.headers)
        headers.setdefault("x-ms-version", version or DEFAULT_VERSION)
        is_head = self.command == "HEAD"
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(resp.body))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if resp.body and not is_head:
            self.wfile.write(resp.body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, emulator: Emulator, tls_cert: str | None = None,
                 tls_key: str | None = None):
        """``tls_cert``/``tls_key`` (PEM files) serve HTTPS instead of HTTP: the storage SDK sends
        token (bearer) credentials only over HTTPS."""
        handler = type("BoundHandler", (_Handler,), {"emulator": emulator})
        super().__init__((host, port), handler)
        self.scheme = "http"
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.emulator = emulator
        self.emulator.scheme = self.scheme
        self.emulator.handlers.public_url = self.account_url

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.server_address[0]}:{self.port}"

    @property
    def account_url(self) -> str:
        return f"{self.base_url}/{self.emulator.account}"


class RunningEmulator:
    """A server running in a background thread (see :func:`start_in_thread`)."""

    def __init__(self, server: EmulatorServer):
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="adls-emulator", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        """The account URL to give the SDK: ``http://HOST:PORT/ACCOUNT``."""
        return self.server.account_url

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``, for :class:`~devtools.adls_emulator.control.EmulatorControl`."""
        return self.server.base_url

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
        self.server.emulator.close()


def start_in_thread(host: str = "127.0.0.1", port: int = 0, data_dir: str | None = None,
                    account: str = DEV_ACCOUNT, tls_cert: str | None = None,
                    tls_key: str | None = None, filesystem_soft_delete_days: int | None = None,
                    superusers: Iterable[str] = (), encryption_scopes: Iterable[str] | None = None) -> RunningEmulator:
    """Start an emulator on ``host:port`` (0 = a free port) in a daemon thread.

    With ``tls_cert``/``tls_key`` it serves HTTPS (needed for token credentials). ``superusers``:
    object IDs whose tokens ACLs do not restrict (Storage Blob Data Owner). ``encryption_scopes``:
    the account's encryption scopes (default ``scope1``, ``scope2``).
    """
    emulator = Emulator(account=account, data_dir=data_dir, filesystem_soft_delete_days=filesystem_soft_delete_days,
                        superusers=superusers, encryption_scopes=encryption_scopes)
    return RunningEmulator(EmulatorServer(host, port, emulator, tls_cert, tls_key))
