"""Raw HTTP requests to the emulator, SharedKey-signed by the storage SDK's own signing policy.

Used where the SDK's high-level clients cannot send a request as-is (recordings, odd headers).
"""

from __future__ import annotations

import email.utils

from azure.core.pipeline import Pipeline
from azure.core.pipeline.transport import HttpRequest, RequestsTransport
from azure.storage.filedatalake._shared.authentication import SharedKeyCredentialPolicy

from devtools.adls_emulator.auth import DEV_ACCOUNT, DEV_KEY


class RawClient:
    def __init__(self, base_url: str, account: str = DEV_ACCOUNT, key: str = DEV_KEY):
        """``base_url`` is ``http://HOST:PORT`` (no account)."""
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.pipeline = Pipeline(transport=RequestsTransport(), policies=[SharedKeyCredentialPolicy(account, key)])

    def send(self, method: str, path_and_query: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """``path_and_query`` starts with ``/ACCOUNT/...``. Returns status, headers, body."""
        all_headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2026-06-06"}
        all_headers.update(headers or {})
        request = HttpRequest(method, self.base_url + path_and_query, headers=all_headers)
        if body is not None:
            request.set_bytes_body(body)
        response = self.pipeline.run(request).http_response
        return response.status_code, dict(response.headers), response.body()
