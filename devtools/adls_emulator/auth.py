"""Request authentication for the emulated account.

Accepted:

* ``Authorization: SharedKey <account>:<signature>``: the HMAC-SHA256 signature is recomputed over the
  Blob/DFS string-to-sign (verb, standard headers, canonicalized ``x-ms-*`` headers, canonicalized
  resource with the query) with the account key and must match.
* SAS (``sig=`` in the query): the signature is verified (service SAS for a file system, file or
  directory; account SAS; user delegation SAS signed with a key from ``comp=userdelegationkey``),
  with start, expiry, ``spr=https`` and the permissions each operation needs
  (:func:`check_sas_permission`). Stored access policies (``si``) and IP ranges (``sip``) answer 501.
* ``Authorization: Bearer <jwt>``: the token's payload is decoded (the JWT signature is NOT
  verified); its ``aud`` must be ``https://storage.azure.com`` (with or without the trailing slash)
  or the account's blob/dfs host, else 401 ``InvalidAuthenticationInfo`` with the service's
  ``WWW-Authenticate`` challenge. The token's ``oid`` is the caller (owner of what it creates);
  bearer callers are treated as holding a data-owner role, so ACLs do not restrict them.

Anything else is refused with 403 ``AuthenticationFailed``, as the service does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime
from functools import cmp_to_key
from urllib.parse import unquote

from .errors import StorageError, error
from .features import not_implemented

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STORAGE_AUDIENCES = ("https://storage.azure.com", "https://storage.azure.com/")

_SIGNED_HEADERS = (
    "content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
    "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
)


def parse_query(query: str) -> list[tuple[str, str]]:
    """Split a raw query string; values are percent-decoded once ('+' stays '+', as the SDK signs it)."""
    out = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out.append((unquote(name), unquote(value)))
    return out


def sign(key: str, string_to_sign: str) -> str:
    digest = hmac.new(base64.b64decode(key), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _hyphen_insensitive(a: str, b: str) -> int:
    """The service sorts canonical headers ignoring '-' first (a culture-aware collation)."""
    ka, kb = a.replace("-", ""), b.replace("-", "")
    if ka != kb:
        return -1 if ka < kb else 1
    return -1 if a < b else (1 if a > b else 0)


def string_to_sign(method: str, raw_path: str, query: str, headers: dict[str, str], account: str,
                   *, include_range: bool, header_order: str = "plain") -> str:
    """Build the SharedKey string-to-sign. ``headers`` keys must be lower case."""
    standard = []
    for name in _SIGNED_HEADERS:
        value = headers.get(name, "")
        if name == "content-length" and value == "0":
            value = ""
        if name == "range" and not include_range:
            value = ""
        standard.append(value)
    xms = sorted(((k, v) for k, v in headers.items() if k.startswith("x-ms-")), key=lambda kv: kv[0])
    if header_order == "collation":
        xms = sorted(xms, key=cmp_to_key(lambda x, y: _hyphen_insensitive(x[0], y[0])))
    canon_headers = "".join(f"{k}:{v.strip()}\n" for k, v in xms)
    resource = "/" + account + raw_path
    params: dict[str, list[str]] = {}
    for k, v in parse_query(query):
        params.setdefault(k.lower(), []).append(v)
    for k in sorted(params):
        resource += "\n" + k + ":" + ",".join(sorted(params[k]))
    return method + "\n" + "\n".join(standard) + "\n" + canon_headers + resource


class Authenticator:
    def __init__(self, account: str = DEV_ACCOUNT, key: str = DEV_KEY):
        self.account = account
        self.key = key

    def check(self, method: str, raw_path: str, query: str, headers: dict[str, str],
              scheme: str = "http") -> tuple[str, str, dict | None]:
        """Return the scheme used (``sharedkey``, ``sas``, ``bearer``), the caller (``$superuser``
        for the account key and SAS, the token's ``oid`` for a bearer token) and, for a SAS, what it
        allows (see :func:`check_sas_permission`); or raise 403."""
        auth = headers.get("authorization", "")
        if auth.startswith("SharedKey "):
            self._check_shared_key(method, raw_path, query, headers, auth[len("SharedKey "):])
            return "sharedkey", "$superuser", None
        params = dict(parse_query(query))
        if auth.startswith("Bearer "):
            payload = self._check_bearer(auth[len("Bearer "):].strip())
            oid = str(payload.get("oid") or payload.get("sub") or "$superuser")
            if not params.get("sig"):
                return "bearer", oid, None
            # A user delegation SAS for a delegated user (sduoid) comes with that user's token: both count.
            sas = self._check_sas(params, raw_path, scheme, headers, query)
            if params.get("sduoid") and params["sduoid"] != oid:
                raise _denied("The token's object ID is not the SAS's delegated user (sduoid).")
            return "bearer", oid, sas
        if params.get("sig"):
            sas = self._check_sas(params, raw_path, scheme, headers, query)
            return "sas", "$superuser", sas
        raise _denied("No supported authentication information was found in the request.")

    def _check_shared_key(self, method, raw_path, query, headers, credential: str) -> None:
        account, _, signature = credential.partition(":")
        if account != self.account or not signature:
            raise _denied("The account name in the Authorization header is not this account.")
        for include_range in (False, True):
            for order in ("plain", "collation"):
                expected = sign(self.key, string_to_sign(method, raw_path, query, headers, self.account,
                                                         include_range=include_range, header_order=order))
                if hmac.compare_digest(expected, signature):
                    return
        raise _denied()

    def claims_of(self, headers: dict[str, str]) -> dict:
        """The bearer token's claims (already checked by :meth:`check`); {} without one."""
        token = headers.get("authorization", "")[len("Bearer "):].strip()
        try:
            part = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            return claims if isinstance(claims, dict) else {}
        except Exception:  # noqa: BLE001
            return {}

    def tenant_of(self, headers: dict[str, str]) -> str:
        return str(self.claims_of(headers).get("tid", ""))

    def _check_bearer(self, token: str) -> dict:
        parts = token.split(".")
        if len(parts) < 2:
            raise _denied("The bearer token is not a JWT.")
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except Exception as exc:  # noqa: BLE001
            raise _denied("The bearer token payload cannot be decoded.") from exc
        aud = payload.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        accepted = {*STORAGE_AUDIENCES}
        for host in (f"https://{self.account}.blob.core.windows.net", f"https://{self.account}.dfs.core.windows.net"):
            accepted.update((host, host + "/"))
        if not any(a in accepted for a in auds):
            raise _challenge("Audience validation failed. Audience did not match.", payload)
        exp = payload.get("exp")
        if isinstance(exp, (int, float)) and exp < time.time():
            raise _challenge("Lifetime validation failed. The token is expired.", payload)
        return payload

    def _check_sas(self, params: dict[str, str], raw_path: str, scheme: str, headers: dict[str, str] | None = None,
                   query: str = "") -> dict:
        """Verify a SAS: its signature (service SAS for a file system, file or directory; account
        SAS; user delegation SAS signed with a key from :meth:`user_delegation_key`, also a dynamic
        one that signs request headers ``srh`` and query parameters ``srq``), its start and expiry,
        the key's validity and its protocol. Returns what the permission check needs."""
        now = time.time()
        for name, message in (("se", "Signed expiry time"), ("st", "Signed start time")):
            if params.get(name):
                try:
                    when = datetime.fromisoformat(params[name].replace("Z", "+00:00")).timestamp()
                except ValueError as exc:
                    raise _denied(f"{message} is malformed.") from exc
                if name == "se" and when < now:
                    raise _denied("Signed expiry time has passed.")
                if name == "st" and when > now + 300:  # the service allows some clock skew
                    raise _denied("Signed start time is in the future.")
        if not params.get("se"):
            raise _denied("Signed expiry time is required.")
        if params.get("spr") == "https" and scheme != "https":
            raise error(403, "AuthorizationProtocolMismatch",
                        "This request is not authorized to perform this operation using this protocol.")
        if params.get("si"):
            raise not_implemented("stored access policies (the SAS parameter si)")
        if params.get("sip"):
            raise not_implemented("SAS IP ranges (the SAS parameter sip)")
        sig = params.get("sig", "")
        if params.get("ss") or params.get("srt"):
            return self._check_account_sas(params, sig)
        segments = [unquote(p) for p in raw_path.lstrip("/").split("/")[1:] if p]
        sr = params.get("sr", "")
        if sr == "c":
            scope = segments[:1]
        elif sr == "b":
            scope = segments
        elif sr == "d":
            depth = int(params.get("sdd") or 0)
            if len(segments) < depth + 1:
                raise _denied("The request is outside the directory the SAS is for.")
            scope = segments[:depth + 1]
        else:
            raise _denied(f"Unknown signed resource {sr!r}.")
        resource = "/blob/" + self.account + "/" + "/".join(scope)

        def v(name: str) -> str:
            return params.get(name, "")

        tail = [v("sip"), v("spr"), v("sv"), v("sr"), v("snapshot"), v("ses")]
        rsc = [v("rscc"), v("rscd"), v("rsce"), v("rscl"), v("rsct")]
        head = [v("sp"), v("st"), v("se"), resource]
        signed_query: set[str] = set()
        if params.get("skoid"):
            if params.get("saoid") and params.get("suoid"):
                raise _denied("saoid and suoid cannot be used together.")
            if v("sks") != "b":
                raise _denied("The user delegation key is not for the Blob service (sks).")
            key = self.delegation_key(v("skoid"), v("sktid"), v("skt"), v("ske"), v("skv"))
            delegation = [v("skoid"), v("sktid"), v("skt"), v("ske"), v("sks"), v("skv"), v("saoid"), v("suoid"),
                          v("scid")]
            srh, srq, signed_query = _dynamic_blocks(params, headers or {}, query)
            candidates = ["\n".join(head + delegation + [v("skdutid"), v("sduoid")] + tail) + "\n" + srh + srq
                          + "\n".join(rsc)]
            if not (params.get("srh") or params.get("srq")):
                candidates.append("\n".join(head + delegation + tail + rsc))  # versions before 2025-07-05
        else:
            if params.get("srh") or params.get("srq"):
                raise _denied("Signed request headers and query parameters need a user delegation SAS.")
            key = self.key
            candidates = ["\n".join(head + [v("si")] + tail + rsc)]
        if not any(hmac.compare_digest(sign(key, c), sig) for c in candidates):
            raise _denied("Signature did not match.")
        if params.get("skoid"):
            try:
                key_start = datetime.fromisoformat(v("skt").replace("Z", "+00:00")).timestamp()
                key_expiry = datetime.fromisoformat(v("ske").replace("Z", "+00:00")).timestamp()
            except ValueError as exc:
                raise _denied("Signed key start or expiry time is malformed.") from exc
            if key_expiry < now:
                raise _denied("The user delegation key has expired.")
            if key_start > now + 300:
                raise _denied("The user delegation key is not valid yet.")
        return {"kind": "service", "sp": v("sp"), "sr": sr, "ses": v("ses"),
                "suoid": v("suoid") if params.get("skoid") else "", "signed_query": signed_query}

    def _check_account_sas(self, params: dict[str, str], sig: str) -> dict:
        fields = [self.account] + [params.get(n, "") for n in ("sp", "ss", "srt", "st", "se", "sip", "spr", "sv",
                                                               "ses")]
        if not hmac.compare_digest(sign(self.key, "\n".join(fields) + "\n"), sig):
            raise _denied("Signature did not match.")
        if "b" not in params.get("ss", ""):
            raise error(403, "AuthorizationServiceMismatch",
                        "This request is not authorized to perform this operation using this service.")
        return {"kind": "account", "sp": params.get("sp", ""), "srt": params.get("srt", ""),
                "ses": params.get("ses", "")}

    def delegation_key(self, oid: str, tid: str, start: str, expiry: str, version: str) -> str:
        """The value of a user delegation key: derived from the account key and the key's fields, so
        it is the same whenever asked for and needs no storage."""
        return sign(self.key, f"user-delegation-key\n{oid}\n{tid}\n{start}\n{expiry}\n{version}")


def _dynamic_blocks(params: dict[str, str], headers: dict[str, str], query: str) -> tuple[str, str, set[str]]:
    """The string-to-sign parts of a dynamic user delegation SAS: the request headers named by ``srh``
    and the query parameters named by ``srq``, with the values this request carries (so the SAS is
    good only for requests that carry them). Returns (headers block, query block, names in ``srq``)."""
    srh_block = srq_block = "\n"
    names: set[str] = set()
    if params.get("srh"):
        lines = [f"{name}:{headers.get(name.lower(), '')}" for name in
                 (unquote(n) for n in params["srh"].split(","))]
        srh_block = "\n".join(lines) + "\n\n"
    if params.get("srq"):
        given = dict(parse_query(query))
        keys = [unquote(n) for n in params["srq"].split(",")]
        names = {k.lower() for k in keys}
        srq_block = "\n" + "\n".join(f"{k}:{given.get(k, '')}" for k in keys) + "\n"
    return srh_block, srq_block, names


# Service SAS permissions each operation needs (any one of the letters listed).
SAS_PERMISSIONS = {
    "create_filesystem": "cw", "delete_filesystem": "d", "get_filesystem_properties": "r",
    "set_filesystem_metadata": "w", "filesystem_lease": "w", "list_paths": "l", "list_filesystems": "l",
    "create_file": "cw", "create_directory": "cw", "rename": "mw", "append": "aw", "flush": "w", "put_blob": "cw",
    "get_properties": "r", "read": "r", "delete": "d", "lease": "w", "set_metadata": "w", "set_properties": "w",
    "set_access_control": "p", "set_access_control_recursive": "p", "get_access_control": "er",
    "get_service_properties": "r", "set_service_properties": "w", "set_expiry": "w", "query": "r",
    "list_deleted_paths": "l", "undelete_path": "w", "undelete_filesystem": "w", "set_tags": "t", "get_tags": "t",
}
# Account SAS resource types: s = service, c = container (file system), o = object (path).
_SERVICE_LEVEL = ("list_filesystems", "get_service_properties", "set_service_properties")
_ACCOUNT_LEVEL = {**{op: "s" for op in _SERVICE_LEVEL}, "create_filesystem": "c", "delete_filesystem": "c",
                  "get_filesystem_properties": "c", "set_filesystem_metadata": "c", "filesystem_lease": "c",
                  "list_paths": "c", "list_deleted_paths": "c", "undelete_filesystem": "c"}


def check_sas_permission(sas: dict, op: str, owner_change: bool = False) -> None:
    """403 AuthorizationPermissionMismatch / AuthorizationResourceTypeMismatch when the SAS does not
    allow ``op``."""
    if sas["kind"] == "account":
        if _ACCOUNT_LEVEL.get(op, "o") not in sas["srt"]:
            raise error(403, "AuthorizationResourceTypeMismatch",
                        "This request is not authorized to perform this operation using this resource type.")
    elif op in _SERVICE_LEVEL or (op in _ACCOUNT_LEVEL and op != "list_paths" and sas["sr"] != "c"):
        raise error(403, "AuthorizationResourceTypeMismatch",
                    "This request is not authorized to perform this operation using this resource type.")
    needed = "o" if owner_change else SAS_PERMISSIONS.get(op, "")
    if op == "set_access_control_recursive" or (op == "set_access_control" and not owner_change):
        needed = "p"
    if not needed or not any(letter in sas["sp"] for letter in needed):
        raise error(403, "AuthorizationPermissionMismatch",
                    "This request is not authorized to perform this operation using this permission.")


def _challenge(message: str, payload: dict) -> StorageError:
    """401 with the ``WWW-Authenticate`` challenge the service sends for a token it does not accept;
    the storage SDK asks its credential for a token for ``resource_id`` and retries once."""
    tenant = payload.get("tid") or "common"
    return error(401, "InvalidAuthenticationInfo", f"Server failed to authenticate the request. {message}",
                 **{"WWW-Authenticate": f"Bearer authorization_uri=https://login.microsoftonline.com/{tenant}/"
                                        "oauth2/authorize resource_id=https://storage.azure.com"})


def _denied(message: str | None = None) -> StorageError:
    return error(403, "AuthenticationFailed", message)
