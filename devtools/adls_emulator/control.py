"""Client for the emulator's control API (standard library only).

    ctl = EmulatorControl("http://127.0.0.1:10100")
    ctl.add_fault(op="flush", path="db/*", count=2, status=503, code="ServerBusy")
    ctl.add_fault(op="append", action="drop_response")
    ctl.stats()["append"]; ctl.reset_stats(); ctl.clear_faults(); ctl.health()
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any


class EmulatorControl:
    def __init__(self, base_url: str, timeout: float = 10.0, cafile: str | None = None):
        """``base_url`` is ``http://HOST:PORT`` (an account URL ``.../devstoreaccount1`` also works);
        ``cafile`` trusts the certificate of an emulator started with ``--tls-cert``."""
        parts = base_url.rstrip("/").split("/")
        self.base_url = "/".join(parts[:3])
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=cafile) if cafile else None

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.base_url + "/_emulator" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def add_fault(self, op: str = "*", path: str = "*", *, filesystem: str | None = None, count: int = 1,
                  status: int = 503, code: str = "ServerBusy", action: str = "error",
                  delay_seconds: float = 0.0, message: str | None = None) -> list[dict[str, Any]]:
        rule = {"op": op, "path": path, "filesystem": filesystem, "count": count, "status": status,
                "code": code, "action": action, "delay_seconds": delay_seconds, "message": message}
        return self._call("POST", "/faults", rule)["faults"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def stats(self) -> dict[str, int]:
        return self._call("GET", "/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")
