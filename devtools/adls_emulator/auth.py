"""Request authentication for the emulated account.

Accepted:

* ``Authorization: SharedKey <account>:<signature>``: the HMAC-SHA256 signature is recomputed over the
  Blob/DFS string-to-sign (verb, standard headers, canonicalized ``x-ms-*`` headers, canonicalized
  resource with the query) with the account key and must match.
* SAS: a query string carrying ``sig=``. Only the presence of ``sig`` (and, if given, an ``se``
  expiry that is not in the past) is checked; the SAS signature itself is NOT verified.
* ``Authorization: Bearer <jwt>``: the token's payload is decoded (the JWT signature is NOT
  verified) and its ``aud`` must be ``https://storage.azure.com`` (with or without the trailing
  slash) or the account's own URL.

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

    def check(self, method: str, raw_path: str, query: str, headers: dict[str, str]) -> tuple[str, str]:
        """Return the scheme used (``sharedkey``, ``sas``, ``bearer``) and the caller (``$superuser``
        for the account key and SAS, the token's ``oid`` for a bearer token), or raise 403."""
        auth = headers.get("authorization", "")
        if auth.startswith("SharedKey "):
            self._check_shared_key(method, raw_path, query, headers, auth[len("SharedKey "):])
            return "sharedkey", "$superuser"
        if auth.startswith("Bearer "):
            payload = self._check_bearer(auth[len("Bearer "):].strip())
            return "bearer", str(payload.get("oid") or payload.get("sub") or "$superuser")
        params = dict(parse_query(query))
        if params.get("sig"):
            self._check_sas(params)
            return "sas", "$superuser"
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
        if not any(a in STORAGE_AUDIENCES for a in auds):
            raise _denied("Audience validation failed. Audience did not match.")
        exp = payload.get("exp")
        if isinstance(exp, (int, float)) and exp < time.time():
            raise _denied("Lifetime validation failed. The token is expired.")
        return payload

    def _check_sas(self, params: dict[str, str]) -> None:
        expiry = params.get("se")
        if expiry:
            try:
                when = datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
            except ValueError as exc:
                raise _denied("Signed expiry time is malformed.") from exc
            if when < time.time():
                raise _denied("Signed expiry time has passed.")


def _denied(message: str | None = None) -> StorageError:
    return error(403, "AuthenticationFailed", message)
