"""The local stack: SecantusDB (MongoDB wire protocol), Azurite and the project's ADLS Gen2 emulator.

Used by ``make services`` (through the CLI below) and by the pytest fixtures in ``tests/conftest.py``,
so developers and tests run exactly the same processes.

    python -m devtools.stack up     [--dir .local]   start what is not running, wait, write stack.env
    python -m devtools.stack down   [--dir .local]   stop the processes recorded in DIR
    python -m devtools.stack status [--dir .local]   show what runs
    python -m devtools.stack env    [--dir .local]   print ``export KEY='value'`` lines for a shell

Layout of the base directory (``.local/`` by default, git-ignored)::

    stack.env            the connection settings (KEY=value lines)
    data/{mongo,azurite,adls}/
    logs/{mongo,azurite,adls}.log
    run/{mongo,azurite,adls}.json   pid, start time and command line of each process this code started

Ports come from ``STACK_MONGO_PORT``, ``STACK_BLOB_PORT``, ``STACK_QUEUE_PORT``, ``STACK_TABLE_PORT`` and
``STACK_ADLS_PORT`` (defaults 27117, 10000, 10001, 10002, 10100). Every process gets its own session
(so it outlives the ``make`` that started it) and is stopped by SIGTERM to its process group, then
SIGKILL after a timeout, only after checking that the recorded PID still is the process started here.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import fcntl
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import ClassVar

from shared.envfile import read_env

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ".local"
HOST = "127.0.0.1"

DEV_ACCOUNT = "devstoreaccount1"
# The well-known Azurite / storage emulator key: public, for local development only.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_FILESYSTEM = "bronze"
MONGO_REPLICA_SET = "secantus"

SERVICES = ("mongo", "azurite", "adls")

# Setting names, in the order stack.env lists them.
SETTING_NAMES = (
    "MONGO_URI",
    "ADLS_ACCOUNT_URL",
    "ADLS_FILESYSTEM",
    "ADLS_SHARED_KEY",
    "CHECKPOINT_CONNECTION_STRING",
    "AzureWebJobsStorage",
)


class StackError(RuntimeError):
    """A service could not be started, stopped or reached."""


# --------------------------------------------------------------------------------------------------
# Ports and settings (pure)
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ports:
    mongo: int = 27117
    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    adls: int = 10100

    ENV: ClassVar[dict[str, str]] = {
        "mongo": "STACK_MONGO_PORT",
        "blob": "STACK_BLOB_PORT",
        "queue": "STACK_QUEUE_PORT",
        "table": "STACK_TABLE_PORT",
        "adls": "STACK_ADLS_PORT",
    }

    def __post_init__(self) -> None:
        values = dataclasses.astuple(self)
        for field, value in zip(self.names(), values, strict=True):
            if not isinstance(value, int) or not 0 < value < 65536:
                raise ValueError(f"port {field}={value!r} is not a TCP port number")
        if len(set(values)) != len(values):
            raise ValueError(f"ports must differ from each other: {self.as_dict()}")

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(Ports))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Ports:
        """Defaults, overridden by ``STACK_*_PORT`` variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for field, var in cls.ENV.items():
            raw = environ.get(var, "").strip()
            if raw:
                try:
                    values[field] = int(raw)
                except ValueError:
                    raise ValueError(f"{var}={raw!r} is not a port number") from None
        return cls(**values)

    @classmethod
    def free(cls, host: str = HOST) -> Ports:
        """Five distinct ports the OS reports free right now (for private stacks, e.g. a test session)."""
        socks = []
        try:
            for _ in cls.names():
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((host, 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()


def mongo_uri(port: int, host: str = HOST) -> str:
    return f"mongodb://{host}:{port}/?replicaSet={MONGO_REPLICA_SET}"


def adls_account_url(port: int, host: str = HOST) -> str:
    return f"http://{host}:{port}/{DEV_ACCOUNT}"


def azurite_connection_string(
    *, blob: int | None = None, queue: int | None = None, table: int | None = None, host: str = HOST
) -> str:
    """An Azurite connection string with the endpoints whose ports are given."""
    parts = ["DefaultEndpointsProtocol=http", f"AccountName={DEV_ACCOUNT}", f"AccountKey={DEV_KEY}"]
    for name, port in (("BlobEndpoint", blob), ("QueueEndpoint", queue), ("TableEndpoint", table)):
        if port is not None:
            parts.append(f"{name}=http://{host}:{port}/{DEV_ACCOUNT}")
    return ";".join(parts) + ";"


def stack_settings(ports: Ports, filesystem: str = DEFAULT_FILESYSTEM, host: str = HOST) -> dict[str, str]:
    """The connection settings of a stack on ``ports``, under the names the app reads."""
    return {
        "MONGO_URI": mongo_uri(ports.mongo, host),
        "ADLS_ACCOUNT_URL": adls_account_url(ports.adls, host),
        "ADLS_FILESYSTEM": filesystem,
        "ADLS_SHARED_KEY": DEV_KEY,
        "CHECKPOINT_CONNECTION_STRING": azurite_connection_string(table=ports.table, host=host),
        "AzureWebJobsStorage": azurite_connection_string(
            blob=ports.blob, queue=ports.queue, table=ports.table, host=host
        ),
    }


def format_env(settings: Mapping[str, str], header: str = "") -> str:
    """``KEY=value`` lines (values unquoted, as written; a value may contain ``=`` and ``;``)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key, value in settings.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"{key}: a value in an env file cannot contain a line break")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def shell_exports(settings: Mapping[str, str]) -> str:
    """``export KEY='value'`` lines a POSIX shell can ``eval``."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in settings.items())


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


def _proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat); None if gone/zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: not running anymore
        return None
    return int(fields[19])


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _argv_matches(cmdline: list[str], argv: list[str]) -> bool:
    """Whether ``cmdline`` (from /proc) is ``argv`` as exec'd: identical, or run by an interpreter
    (a ``#!`` script shows up as ``interpreter [options] script args...``)."""
    if cmdline == argv:
        return True
    n = len(argv)
    return len(cmdline) > n and cmdline[-n:] == argv


@dataclasses.dataclass
class ProcessRecord:
    """What ``run/NAME.json`` holds about a process this code started."""

    name: str
    pid: int
    start_time: int
    argv: list[str]
    ports: dict[str, int]
    log: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

    def alive(self) -> bool:
        """True if the PID is still the process that was started (same start time and command line)."""
        if _proc_start_time(self.pid) != self.start_time:
            return False
        cmdline = _proc_cmdline(self.pid)
        return cmdline is not None and _argv_matches(cmdline, self.argv)


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM this child when its parent dies (private stacks of test sessions)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_gone(record: ProcessRecord, popen: subprocess.Popen | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=0.05)
        if not record.alive():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (each service is a session leader), else the PID."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# --------------------------------------------------------------------------------------------------
# Readiness checks (TCP, then one real request of each protocol)
# --------------------------------------------------------------------------------------------------


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_mongo(port: int, host: str = HOST, timeout: float = 3.0) -> None:
    """``hello`` + ``ping`` through pymongo, requiring the single-node replica set primary."""
    import pymongo  # deferred: heavy, and only the checks need it (not `down` or `env`)

    ms = int(timeout * 1000)
    client = pymongo.MongoClient(
        mongo_uri(port, host), serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
    )
    try:
        hello = client.admin.command("hello")
        client.admin.command("ping")
    finally:
        client.close()
    if hello.get("setName") != MONGO_REPLICA_SET or not hello.get("isWritablePrimary"):
        raise StackError(f"MongoDB on port {port} is not the primary of replica set {MONGO_REPLICA_SET!r}")


def _http_get(port: int, path: str, host: str = HOST, timeout: float = 3.0) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def check_azurite(ports: Ports, host: str = HOST, timeout: float = 3.0) -> None:
    """A signed Table-service request (list tables) through azure-data-tables; blob and queue must
    answer HTTP as Azurite."""
    from azure.data.tables import TableServiceClient  # deferred: heavy, only this check needs it

    service = TableServiceClient.from_connection_string(
        azurite_connection_string(table=ports.table, host=host),
        connection_timeout=timeout,
        read_timeout=timeout,
        retry_total=0,
    )
    with service:
        next(iter(service.list_tables(results_per_page=1)), None)
    for name, port in (("blob", ports.blob), ("queue", ports.queue)):
        response = _http_get(port, f"/{DEV_ACCOUNT}?comp=list", host, timeout)
        if not response.getheader("Server", "").startswith("Azurite"):
            raise StackError(f"port {port} ({name}) does not answer as Azurite")


def check_adls(port: int, host: str = HOST, timeout: float = 3.0) -> None:
    response = _http_get(port, "/_emulator/health", host, timeout)
    if response.status != 200:
        raise StackError(f"ADLS emulator health check on port {port} answered {response.status}")


# --------------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------------


def _find_secantusd() -> str:
    candidate = Path(sys.executable).parent / "secantusd-py"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("secantusd-py")
    if found:
        return found
    raise StackError(
        f"secantusd-py not found next to {sys.executable}: install the dev requirements "
        "(`make venv`, or pip install -r requirements-dev.txt)"
    )


def _find_azurite() -> list[str]:
    """``[node, node_modules/.bin/azurite]``: node is named so the process is exec'd once (no
    ``/usr/bin/env`` hop) and its command line is stable from the start."""
    override = os.environ.get("STACK_AZURITE_BIN")
    candidate = Path(override) if override else REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if not candidate.exists():
        raise StackError(f"azurite not found at {candidate}: run `make node_modules` (npm ci) first")
    node = shutil.which("node")
    if node is None:
        raise StackError("node not found on PATH: Azurite needs Node.js (20 or newer)")
    return [node, str(candidate)]


class LocalStack:
    """SecantusDB + Azurite + the ADLS Gen2 emulator, with their state under ``base_dir``.

    ``services`` chooses which of ``("mongo", "azurite", "adls")`` this stack manages (the others are
    left alone, e.g. when a test session uses a real mongod). ``die_with_parent`` makes the services
    end if the starting process dies without stopping them (used for test sessions).
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] = DEFAULT_DIR,
        ports: Ports | None = None,
        *,
        services: Iterable[str] = SERVICES,
        filesystem: str = DEFAULT_FILESYSTEM,
        die_with_parent: bool = False,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        log: Callable[[str], None] | None = None,
    ):
        self.base_dir = Path(base_dir).resolve()
        self.ports = ports if ports is not None else Ports.from_env()
        self.services = tuple(services)
        unknown = set(self.services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; choose from {SERVICES}")
        self.filesystem = filesystem
        self.die_with_parent = die_with_parent
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._log = log or (lambda message: None)
        self._popen: dict[str, subprocess.Popen] = {}

    # ---- paths ----------------------------------------------------------------------------------
    @property
    def env_file(self) -> Path:
        return self.base_dir / "stack.env"

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    def data_dir(self, name: str) -> Path:
        return self.base_dir / "data" / name

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _record_file(self, name: str) -> Path:
        return self.base_dir / "run" / f"{name}.json"

    # ---- settings -------------------------------------------------------------------------------
    def settings(self) -> dict[str, str]:
        """Settings of the services this stack manages (all of :data:`SETTING_NAMES` for a full stack)."""
        full = stack_settings(self.ports, self.filesystem)
        keep = set()
        if "mongo" in self.services:
            keep.add("MONGO_URI")
        if "adls" in self.services:
            keep |= {"ADLS_ACCOUNT_URL", "ADLS_FILESYSTEM", "ADLS_SHARED_KEY"}
        if "azurite" in self.services:
            keep |= {"CHECKPOINT_CONNECTION_STRING", "AzureWebJobsStorage"}
        return {k: v for k, v in full.items() if k in keep}

    def write_env(self) -> Path:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        text = format_env(
            self.settings(),
            header="Local stack connection settings, written by `python -m devtools.stack up`.\n"
            "Local development only: the key is the public Azurite development key.",
        )
        tmp = self.env_file.with_suffix(".env.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.env_file)
        return self.env_file

    # ---- commands -------------------------------------------------------------------------------
    def command(self, name: str) -> tuple[list[str], Path, dict[str, int]]:
        """argv, working directory and ports of service ``name``."""
        p = self.ports
        if name == "mongo":
            config = self.base_dir / "secantusd.toml"  # empty: no ~/.secantus or /etc config leaks in
            argv = [
                _find_secantusd(),
                "--config",
                str(config),
                "--host",
                HOST,
                "--port",
                str(p.mongo),
                "--storage-path",
                str(self.data_dir("mongo")),
            ]
            return argv, self.base_dir, {"mongo": p.mongo}
        if name == "azurite":
            argv = [
                *_find_azurite(),
                "--skipApiVersionCheck",
                "--silent",
                "--disableTelemetry",
                "--location",
                str(self.data_dir("azurite")),
                "--blobHost",
                HOST,
                "--blobPort",
                str(p.blob),
                "--queueHost",
                HOST,
                "--queuePort",
                str(p.queue),
                "--tableHost",
                HOST,
                "--tablePort",
                str(p.table),
            ]
            return argv, self.base_dir, {"blob": p.blob, "queue": p.queue, "table": p.table}
        if name == "adls":
            argv = [
                sys.executable,
                "-m",
                "devtools.adls_emulator",
                "--host",
                HOST,
                "--port",
                str(p.adls),
                "--data-dir",
                str(self.data_dir("adls")),
            ]
            return argv, REPO_ROOT, {"adls": p.adls}
        raise ValueError(f"unknown service {name!r}")

    def check(self, name: str, timeout: float = 3.0) -> None:
        """One readiness probe of ``name``; raises if it does not answer properly."""
        if name == "mongo":
            check_mongo(self.ports.mongo, timeout=timeout)
        elif name == "azurite":
            check_azurite(self.ports, timeout=timeout)
        elif name == "adls":
            check_adls(self.ports.adls, timeout=timeout)
        else:
            raise ValueError(f"unknown service {name!r}")

    # ---- records --------------------------------------------------------------------------------
    def record(self, name: str) -> ProcessRecord | None:
        """The recorded process of ``name`` if it is still running, else None (a stale record is removed)."""
        path = self._record_file(name)
        try:
            record = ProcessRecord.from_json(path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            return None
        if record.alive():
            return record
        path.unlink(missing_ok=True)
        popen = self._popen.pop(name, None)
        if popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=1)
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down/restart on one base directory (two `make services` at once)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with open(self.base_dir / "stack.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---- start / stop ---------------------------------------------------------------------------
    def start(self) -> dict[str, str]:
        """Start every managed service that is not already running, wait until each answers, write
        stack.env and return the settings. Idempotent. On failure, stops what this call started."""
        with self._locked():
            started: list[str] = []
            try:
                for name in self.services:
                    if self._ensure(name):
                        started.append(name)
            except BaseException:
                for name in reversed(started):
                    with contextlib.suppress(Exception):
                        self._stop(name)
                raise
            self.write_env()
        return self.settings()

    up = start

    def _ensure(self, name: str) -> bool:
        """Make sure ``name`` runs and answers; returns True if it was started by this call."""
        _, _, ports = self.command(name)
        record = self.record(name)
        if record is not None:
            if record.ports == ports:
                try:
                    self._wait_ready(name, record, deadline=time.monotonic() + self.startup_timeout)
                    self._log(f"{name}: already running (pid {record.pid})")
                    return False
                except StackError:
                    self._log(f"{name}: running (pid {record.pid}) but not answering; restarting it")
            else:
                self._log(f"{name}: running on ports {record.ports}, wanted {ports}; restarting it")
            self._stop(name)
        self._start(name)
        return True

    def _start(self, name: str) -> ProcessRecord:
        argv, cwd, ports = self.command(name)
        for port_name, port in ports.items():
            if port_open(port):
                raise StackError(
                    f"{name}: port {port} is already in use by another process; stop it or choose "
                    f"another port with {Ports.ENV[port_name]}"
                )
        self.data_dir(name).mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._record_file(name).parent.mkdir(parents=True, exist_ok=True)
        if name == "mongo":
            (self.base_dir / "secantusd.toml").touch()
        env = dict(os.environ)
        if name == "adls":
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        log_path = self.log_file(name)
        with open(log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(argv)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                # The kernel's "parent" is the forking thread: only the main thread's lifetime is the
                # process's, so a restart from a worker thread does not tie the server to that thread.
                preexec_fn=_pdeathsig  # noqa: PLW1509 - sets one process attribute, no locks
                if self.die_with_parent
                and sys.platform == "linux"
                and threading.current_thread() is threading.main_thread()
                else None,
            )
        start_time = None
        for _ in range(100):  # /proc entry appears at once; the exec may take a moment
            start_time = _proc_start_time(popen.pid)
            if start_time is not None and _argv_matches(_proc_cmdline(popen.pid) or [], argv):
                break
            if popen.poll() is not None:
                break
            time.sleep(0.01)
        record = ProcessRecord(name, popen.pid, start_time or 0, argv, ports, str(log_path))
        self._popen[name] = popen
        self._record_file(name).write_text(record.to_json())
        self._log(f"{name}: started (pid {popen.pid}), log {log_path}")
        try:
            self._wait_ready(name, record, deadline=time.monotonic() + self.startup_timeout, popen=popen)
        except BaseException:
            with contextlib.suppress(Exception):
                self._stop(name)
            raise
        return record

    def _wait_ready(
        self, name: str, record: ProcessRecord, deadline: float, popen: subprocess.Popen | None = None
    ) -> None:
        last_error: Exception | None = None
        while True:
            # a process this call started is judged by its exit status: its /proc entry can be
            # inconsistent for a moment while it execs an interpreter
            if (popen.poll() is not None) if popen is not None else not record.alive():
                raise StackError(
                    f"{name} exited before it was ready; last lines of {record.log}:\n" + self.log_tail(name)
                )
            if all(port_open(port) for port in record.ports.values()):
                try:
                    self.check(name, timeout=min(3.0, max(0.5, deadline - time.monotonic())))
                    return
                except Exception as exc:  # noqa: BLE001 - not ready yet: keep polling until the deadline
                    last_error = exc
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{name} did not become ready within {self.startup_timeout:.0f}s "
                    f"(last error: {last_error!r}); last lines of {record.log}:\n" + self.log_tail(name)
                )
            time.sleep(0.1)

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self.log_file(name).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> list[str]:
        """Stop every managed service this base directory has a live record of; returns their names.
        Processes not started by this code are never touched."""
        with self._locked():
            stopped = [name for name in reversed(self.services) if self._stop(name)]
        return stopped

    down = stop

    def _stop(self, name: str) -> bool:
        record = self.record(name)
        popen = self._popen.pop(name, None)
        if record is None:
            return False
        self._log(f"{name}: stopping (pid {record.pid})")
        _signal_group(record.pid, signal.SIGTERM)
        if not _wait_gone(record, popen, self.stop_timeout):
            self._log(f"{name}: still running after {self.stop_timeout:.0f}s; sending SIGKILL")
            if record.alive():
                _signal_group(record.pid, signal.SIGKILL)
            if not _wait_gone(record, popen, 5.0):
                raise StackError(f"{name} (pid {record.pid}) did not stop")
        self._record_file(name).unlink(missing_ok=True)
        return True

    def restart_mongo(self) -> None:
        """Stop the MongoDB server and start it again on the same port and storage (data kept).
        Clients see a dropped connection; pymongo and change streams resume against the new process."""
        self._require("mongo")
        with self._locked():
            self._stop("mongo")
            self._start("mongo")

    def _require(self, name: str) -> None:
        if name not in self.services:
            raise StackError(f"this stack does not manage {name!r} (it manages {', '.join(self.services)})")

    def manages(self, name: str) -> bool:
        return name in self.services

    def status(self) -> dict[str, dict]:
        """Per service: ``running`` (bool), ``pid``, ``ports``, ``ready`` (answers its protocol check)."""
        out: dict[str, dict] = {}
        for name in self.services:
            record = self.record(name)
            entry: dict = {
                "running": record is not None,
                "pid": record.pid if record else None,
                "ports": record.ports if record else self.command_ports(name),
                "ready": False,
            }
            if record is not None:
                try:
                    self.check(name, timeout=2.0)
                    entry["ready"] = True
                except Exception as exc:  # noqa: BLE001 - reported, not raised
                    entry["error"] = repr(exc)
            out[name] = entry
        return out

    def command_ports(self, name: str) -> dict[str, int]:
        p = self.ports
        return {
            "mongo": {"mongo": p.mongo},
            "azurite": {"blob": p.blob, "queue": p.queue, "table": p.table},
            "adls": {"adls": p.adls},
        }[name]

    def pids(self) -> dict[str, int]:
        """PIDs of the running services this base directory recorded."""
        return {name: record.pid for name in self.services if (record := self.record(name)) is not None}

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _stack_from_args(args: argparse.Namespace) -> LocalStack:
    def log(message: str) -> None:
        print(f"stack: {message}", file=sys.stderr, flush=True)

    return LocalStack(
        args.dir,
        Ports.from_env(),
        filesystem=os.environ.get("STACK_ADLS_FILESYSTEM", DEFAULT_FILESYSTEM),
        log=log,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.stack",
        description="Start/stop the local stack (SecantusDB, Azurite, ADLS Gen2 emulator).",
    )
    parser.add_argument("command", choices=("up", "down", "status", "env"))
    parser.add_argument("--dir", default=DEFAULT_DIR, help="state directory (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        stack = _stack_from_args(args)
        if args.command == "up":
            settings = stack.start()
            print(f"# settings written to {_display(stack.env_file)}")
            print(format_env(settings), end="")
        elif args.command == "down":
            stopped = stack.stop()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        elif args.command == "status":
            for name, entry in stack.status().items():
                ports = ", ".join(f"{k} {v}" for k, v in entry["ports"].items())
                if not entry["running"]:
                    state = "stopped"
                elif entry["ready"]:
                    state = f"running (pid {entry['pid']})"
                else:
                    state = f"running (pid {entry['pid']}) but NOT answering: {entry.get('error')}"
                print(f"{name:8} {state:24} ports: {ports}")
            print(f"settings: {_display(stack.env_file)}" + ("" if stack.env_file.exists() else " (missing)"))
        elif args.command == "env":
            if not stack.env_file.exists():
                print(f"{_display(stack.env_file)} not found: run `make services` first", file=sys.stderr)
                return 1
            print(shell_exports(read_env(stack.env_file)), end="")
    except (StackError, ValueError) as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
