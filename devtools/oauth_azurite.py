"""Azurite's Table service over HTTPS with OAuth (``--oauth basic``), for tests of the Entra ID path.

The storage SDKs send bearer tokens over HTTPS only, and Azurite checks a bearer token (audience
``https://storage.azure.com``, a known issuer, ``nbf``/``exp``; not the signature) only in
``--oauth basic`` mode with a certificate. This starts such an Azurite (Table service only, in
memory, on a free port) beside the ordinary local stack, and stops it by its PID::

    cert, key = self_signed_cert(folder)  # devtools.adls_emulator.tls
    with OAuthTableAzurite(folder, cert, key) as azurite:
        azurite.url      # https://127.0.0.1:PORT/devstoreaccount1 (CHECKPOINT_ACCOUNT_URL)

Clients must trust ``cert`` (``connection_verify=cert`` or ``REQUESTS_CA_BUNDLE=cert``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from .stack import DEV_ACCOUNT, HOST, REPO_ROOT, StackError, _pdeathsig, port_open


def _free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class OAuthTableAzurite:
    """One ``azurite-table --oauth basic`` process over HTTPS; ``start()``/``stop()`` or ``with``."""

    def __init__(self, base_dir: str | os.PathLike[str], cert: str, key: str, port: int | None = None,
                 startup_timeout: float = 60.0) -> None:
        self.base_dir = Path(base_dir)
        self.cert, self.key = cert, key
        self.port = port or _free_port()
        self.startup_timeout = startup_timeout
        self._popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}/{DEV_ACCOUNT}"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "azurite-oauth.log"

    def command(self) -> list[str]:
        script = REPO_ROOT / "node_modules" / ".bin" / "azurite-table"
        node = shutil.which("node")
        if not script.exists() or node is None:
            raise StackError(f"azurite-table not found at {script} (run `make node_modules`), or node not on PATH")
        return [node, str(script), "--tableHost", HOST, "--tablePort", str(self.port), "--oauth", "basic",
                "--cert", self.cert, "--key", self.key, "--inMemoryPersistence", "--skipApiVersionCheck",
                "--silent", "--disableTelemetry"]

    def start(self) -> "OAuthTableAzurite":
        argv = self.command()
        if port_open(self.port):
            raise StackError(f"port {self.port} is already in use")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"starting: {shlex.join(argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                argv, cwd=self.base_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
                preexec_fn=_pdeathsig if sys.platform == "linux" else None,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        context = ssl.create_default_context(cafile=self.cert)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._popen.poll() is not None:
                raise StackError(f"azurite-table exited ({self._popen.returncode}); see {self.log_file}")
            if port_open(self.port):
                try:  # a TLS handshake and any HTTP answer: the server is up
                    with socket.create_connection((HOST, self.port), timeout=2) as raw:
                        with context.wrap_socket(raw, server_hostname=HOST) as tls:
                            tls.sendall(f"GET /{DEV_ACCOUNT}/Tables HTTP/1.1\r\nHost: {HOST}\r\n"
                                        "Connection: close\r\n\r\n".encode())
                            if tls.recv(16).startswith(b"HTTP/1.1"):
                                return
                except OSError:
                    pass
            if time.monotonic() >= deadline:
                raise StackError(f"azurite-table did not answer within {self.startup_timeout:.0f}s; see {self.log_file}")
            time.sleep(0.1)

    def stop(self) -> None:
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)  # its own session: the group is this process and its children
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=5)

    def __enter__(self) -> "OAuthTableAzurite":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
