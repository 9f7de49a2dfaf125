"""A stand-in for the App Service managed-identity endpoint, on loopback, for tests and local runs.

On App Service (and Functions) the platform sets ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``;
``ManagedIdentityCredential`` (inside ``DefaultAzureCredential``) then asks
``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...[&client_id=...]`` with the header
``X-IDENTITY-HEADER``. This server answers like the platform, with an unsigned JWT whose ``aud`` is
the requested resource (``https://storage.azure.com`` for storage): enough for Azurite in
``--oauth basic`` mode and the project's ADLS emulator, which check claims, not signatures::

    with ManagedIdentityEndpoint(client_id="...") as identity:
        os.environ.update(identity.env)      # IDENTITY_ENDPOINT, IDENTITY_HEADER
        identity.requests                    # what was asked for, in order

``client_id``: the user-assigned identity it serves (a request for another client id gets 400, as on
App Service); None serves the system-assigned identity (a request naming any client id gets 400).
``audience``: issue tokens for this audience instead of the requested resource (a negative test).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TENANT = "00000000-0000-0000-0000-00000000cafe"


def unsigned_jwt(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class ManagedIdentityEndpoint:
    def __init__(self, client_id: str | None = None, audience: str | None = None, host: str = "127.0.0.1") -> None:
        self.client_id = client_id
        self.audience = audience
        self.secret = secrets.token_hex(16)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/msi/token"

    @property
    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}

    def start(self) -> "ManagedIdentityEndpoint":
        self._thread = threading.Thread(target=self._server.serve_forever, name="managed-identity", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ManagedIdentityEndpoint":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _answer(self, path: str, header: str | None) -> tuple[int, dict]:
        url = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(url.query))
        asked = {"path": url.path, "resource": query.get("resource"), "api_version": query.get("api-version"),
                 "client_id": query.get("client_id"), "header_ok": header == self.secret}
        with self._lock:
            self.requests.append(asked)
        if not asked["header_ok"]:
            return 401, {"error": "invalid_request", "error_description": "X-IDENTITY-HEADER missing or wrong"}
        if url.path != "/msi/token" or asked["api_version"] != "2019-08-01" or not asked["resource"]:
            return 400, {"error": "invalid_request", "error_description": "expected api-version=2019-08-01&resource="}
        if asked["client_id"] != self.client_id:
            return 400, {"error": "invalid_request", "error_description": "Unable to load the proper Managed Identity."}
        now = int(time.time())
        resource = asked["resource"]
        claims = {"aud": self.audience or resource, "iss": f"https://sts.windows.net/{TENANT}/", "iat": now,
                  "nbf": now - 60, "exp": now + 3600, "tid": TENANT, "oid": "mi-object-id",
                  "appid": self.client_id or "system-assigned", "idtyp": "app"}
        return 200, {"access_token": unsigned_jwt(claims), "expires_on": str(now + 3600), "resource": resource,
                     "token_type": "Bearer", "client_id": self.client_id or "system-assigned"}

    def _handler(self):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                status, body = endpoint._answer(self.path, self.headers.get("X-IDENTITY-HEADER"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        return Handler
