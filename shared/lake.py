"""ADLS Gen2: write batches of lines under a file lease, and read back what a failed run left.

Per touched file and commit: one append at the committed length that also acquires the file's
lease for this run (``x-ms-lease-action: acquire``, the run's lease id) and one flush to the new
length with ``If-Match`` on the ETag recorded at the last commit that releases it (a new file: one
create with ``If-None-Match: *`` first). Folders are written in parallel, the files of one folder in
order. The lease is the fencing token Azure storage offers: once a later run has broken it and
taken its own, every append or flush of the earlier run fails (412), and whatever the service
applied before the break is visible to the later run's read-back.

``recover`` is what a run does with the files of an intent it finds (see ``intent``): take each
file's lease (breaking a dead run's), read what the file holds beyond its recorded length, and
flush it at its own length, which releases the lease, changes the ETag (so a stale run's flush
fails on ``If-Match`` as well) and drops any appended-but-unflushed data. A file of the intent that
does not exist yet is created empty, so a dead run's create that arrives late fails too.

Every request carries a deadline: it must end before this run's pipeline lease does (see
``runlease``), so no request of a run outlives the lease that makes it the only writer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable
from urllib.parse import urlsplit

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.filedatalake import DataLakeLeaseClient, DataLakeServiceClient, FileSystemClient

from . import invocation, layout
from .batch import FileState, PendingFile
from .errors import ErrorContext, LeaseLostError, TerminalError, TransientError, sdk_message
from .intent import line_key
from .settings import Settings

log = logging.getLogger(__name__)

APPEND_CHUNK = 100 * 1024 * 1024  # the SDK's own chunk size; the service allows up to 4000 MiB
FILE_LEASE_SECONDS = 60  # the longest finite lease; a dead run's lease is broken, not waited for
READ_TIMEOUT = 120.0
CONNECTION_TIMEOUT = 10.0
MIN_REQUEST_SECONDS = 2.0  # a request with less time than this before the deadline is not sent
_CONFLICT_CODES = {"InvalidFlushPosition", "ConditionNotMet", "PathAlreadyExists", "PathNotFound",
                   "LeaseIdMissing", "LeaseIdMismatch", "LeaseNotPresent", "LeaseIdMismatchWithBlobOperation",
                   "LeaseNotPresentWithBlobOperation", "LeaseLost"}

Failpoint = Callable[[str], None]


def _no_failpoint(name: str) -> None:
    return None


class Deadline:
    """The time (``time.time()``) by which every lake request of a run must have ended."""

    def __init__(self, until: Callable[[], float] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.until, self.clock = until, clock

    def __call__(self, request) -> None:
        """``raw_request_hook``: runs before every attempt (the SDK's retries included)."""
        if self.until is None:
            return
        left = self.until() - self.clock()
        if left < MIN_REQUEST_SECONDS:
            raise LeaseLostError("this run's lease ends before a lake request could finish; it stops writing "
                                 "(the next run continues from the checkpoint)")
        options = request.context.options
        options["read_timeout"] = min(float(options.get("read_timeout") or READ_TIMEOUT), left)
        options["connection_timeout"] = min(float(options.get("connection_timeout") or CONNECTION_TIMEOUT), left)
        # Why the server timeout too: the service fails a request it has not finished within
        # ``timeout`` seconds, so a request the client gave up on is not applied long after the
        # lease (what bounds a stale per-event upload; see docs/design.md).
        http = request.http_request
        base, _, query = http.url.partition("?")
        kept = [p for p in query.split("&") if p and not p.startswith("timeout=")]
        http.url = f"{base}?{'&'.join(kept + [f'timeout={max(1, int(left))}'])}"


def make_service_client(settings: Settings, deadline: Deadline | None = None, blob: bool = False):
    """The lake client for the configured credential (SAS, key, connection string, or Entra ID);
    ``blob``: a ``BlobServiceClient`` of the same account (its Blob endpoint), for Put Blob."""
    # Why: the storage SDK's ExponentialRetry ignores retry_backoff_factor/_max; its own defaults
    # (15 s, then 15 + 3**n s) would spend a whole run's budget on a few throttled requests. These
    # sleep about 1, 3, 5, 9 and 17 s, and the deadline hook stops them at the run's lease.
    options = dict(
        retry_total=5,
        initial_backoff=1,
        increment_base=2,
        random_jitter_range=1,
        connection_timeout=CONNECTION_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    if deadline is not None:
        options["raw_request_hook"] = deadline
    kind = DataLakeServiceClient
    url = settings.adls_account_url
    if blob:
        from azure.storage.blob import BlobServiceClient  # deferred: only FILE_LAYOUT=per_event uses it

        kind, url = BlobServiceClient, blob_url(url)
    if settings.adls_connection_string:
        return kind.from_connection_string(str(settings.adls_connection_string), **options)
    if settings.adls_sas:
        credential = str(settings.adls_sas)
    elif settings.adls_shared_key:
        credential = {"account_name": account_name(settings.adls_account_url), "account_key": str(settings.adls_shared_key)}
    else:
        from azure.identity import DefaultAzureCredential  # deferred: heavy, and only for Entra ID

        credential = DefaultAzureCredential()
    return kind(url, credential=credential, **options)


def blob_url(url: str) -> str:
    """The Blob endpoint of a lake account URL (``.dfs.`` -> ``.blob.``; an emulator serves both)."""
    parts = urlsplit(url)
    host = parts.netloc.replace(".dfs.", ".blob.")
    return parts._replace(netloc=host).geturl()


def account_name(url: str) -> str:
    """``https://acct.dfs.core.windows.net`` -> acct; ``http://127.0.0.1:10100/devstoreaccount1`` -> devstoreaccount1."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.replace(".", "").isdigit() or host == "localhost":
        return parts.path.strip("/").split("/")[0]
    return host.split(".")[0]


class Conflict(Exception):
    """The file is not as the checkpoint recorded."""


@dataclass
class Recovery:
    """What ``Lake.recover`` found in the files of an intent."""

    durable: dict[str, int] = field(default_factory=dict)  # line key -> _seq of every line found
    clusters: dict[int, tuple[int, int]] = field(default_factory=dict)  # _seq -> cluster time of each line
    states: list[FileState] = field(default_factory=list)  # each file as it is now (lease released)
    lines: int = 0
    last_cluster: int | None = None  # the latest cluster time among the lines found


class Lake:
    def __init__(self, settings: Settings, service: DataLakeServiceClient | None = None,
                 failpoint: Failpoint = _no_failpoint, max_workers: int = 8) -> None:
        self._secrets = settings.secrets
        self.deadline = Deadline()
        self._service = service or make_service_client(settings, self.deadline)
        self._fs: FileSystemClient = self._service.get_file_system_client(settings.adls_filesystem)
        self._failpoint = failpoint
        self._max_workers = max_workers
        self._fs_lock = threading.Lock()
        self._fs_created = False
        self.recoveries = 0

    def _parallel(self, fn, items: list) -> list:
        if len(items) <= 1 or self._max_workers <= 1:
            return [fn(item) for item in items]
        # Why invocation.Executor: the Functions host keeps only log records that carry the invocation id
        with invocation.Executor(max_workers=min(self._max_workers, len(items)), thread_name_prefix="lake") as pool:
            return list(pool.map(fn, items))

    # -- the batch -------------------------------------------------------------------------------
    def write(self, files: list[PendingFile], lease_id: str) -> list[FileState]:
        """Append and flush every file under ``lease_id``; returns each file's state after it."""
        folders: dict[str, list[PendingFile]] = {}
        for pending in files:
            folders.setdefault(pending.base.dir, []).append(pending)
        results = self._parallel(lambda group: [self._write_file(p, lease_id) for p in group], list(folders.values()))
        return [state for group in results for state in group]

    def _write_file(self, pending: PendingFile, lease_id: str) -> FileState:
        try:
            return self._append_flush(pending, lease_id)
        except Conflict as exc:
            raise TransientError(f"{exc}; the file changed under this run, the next run reads it back") from None

    def _append_flush(self, pending: PendingFile, lease_id: str) -> FileState:
        base = pending.base
        client = self._fs.get_file_client(base.path)
        etag = base.etag
        if etag is None:
            etag = self._create(client, base.path)
        position, data = base.length, memoryview(pending.data)
        end = position + len(data)
        with self._errors(f"appending {len(data)} bytes to {base.path} at {position}"):
            for start in range(0, len(data), APPEND_CHUNK):
                chunk = data[start:start + APPEND_CHUNK].tobytes()
                if start == 0:
                    self._append_acquiring(client, chunk, position, lease_id)
                else:
                    client.append_data(chunk, offset=position + start, length=len(chunk), lease=lease_id)
        self._failpoint("after_append")
        try:
            with self._errors(f"flushing {base.path} to {end}"):
                result = client.flush_data(end, etag=etag, match_condition=MatchConditions.IfNotModified,
                                           lease=lease_id, lease_action="release")
            new_etag = result["etag"]
        except Conflict as exc:
            # The flush may have been applied and only its response lost (the SDK retried it).
            new_etag = self._applied(client, base, bytes(pending.data))
            if new_etag is None:
                raise TransientError(f"flushing {base.path}: the file changed under this run ({exc}); the next "
                                     "run reads it back") from None
        self._failpoint("after_flush")
        return replace(base, length=end, etag=new_etag)

    def _append_acquiring(self, client, chunk: bytes, position: int, lease_id: str) -> None:
        try:
            client.append_data(chunk, offset=position, length=len(chunk), lease_action="acquire",
                               lease_duration=FILE_LEASE_SECONDS, lease=lease_id)
        except ResourceExistsError as exc:  # 409 LeaseAlreadyPresent: a failed run's lease is still on it
            if getattr(exc, "error_code", None) not in ("LeaseAlreadyPresent", "LeaseIsBreakingAndCannotBeAcquired"):
                raise
            # Only the holder of the pipeline lease writes, so a file lease that is not ours belongs to
            # a run that failed or lost the pipeline lease: break it, which also fences that run.
            DataLakeLeaseClient(client).break_lease(lease_break_period=0)
            client.append_data(chunk, offset=position, length=len(chunk), lease_action="acquire",
                               lease_duration=FILE_LEASE_SECONDS, lease=lease_id)

    def _applied(self, client, base: FileState, data: bytes) -> str | None:
        """The file's ETag if it holds exactly ``data`` after ``base.length`` (our own flush landed)."""
        with self._errors(f"checking whether the flush of {base.path} was applied"):
            props = client.get_file_properties()
            if props.size != base.length + len(data):
                return None
            found = client.download_file(offset=base.length, length=len(data)).readall() if data else b""
        return props.etag if found == data else None

    def _create(self, client, path: str) -> str:
        """Create a new file (``If-None-Match: *``); the file system too, the first time it is missing."""
        with self._errors(f"creating {path}"):
            try:
                try:
                    return client.create_file(match_condition=MatchConditions.IfMissing)["etag"]
                except ResourceNotFoundError as exc:
                    if getattr(exc, "error_code", None) not in ("FilesystemNotFound", "ContainerNotFound"):
                        raise
                self._create_filesystem()
                return client.create_file(match_condition=MatchConditions.IfMissing)["etag"]
            except ResourceExistsError:
                # Our own create whose response was lost (retried by the SDK) leaves an empty file.
                props = client.get_file_properties()
                if props.size == 0:
                    return props.etag
                raise TransientError(f"creating {path}: a file with data is already there; the next run reads "
                                     "it back") from None

    def _create_filesystem(self) -> None:
        with self._fs_lock:
            if not self._fs_created:
                try:
                    self._fs.create_file_system()
                except ResourceExistsError:
                    pass
                self._fs_created = True

    def list_folder(self, folder: str) -> list[str]:
        """The names of the files directly in ``folder`` (none when it or the file system is missing)."""
        with self._errors(f"listing {folder}"):
            try:
                return [p.name.rsplit("/", 1)[-1] for p in self._fs.get_paths(path=folder, recursive=False)
                        if not p.is_directory]
            except ResourceNotFoundError:
                return []

    # -- recovery -------------------------------------------------------------------------------
    def recover(self, files: dict[str, int], lease_id: str) -> Recovery:
        """Fence and read back every file of an intent (path -> length before the intent)."""
        try:
            found = self._parallel(lambda item: self._recover_file(item[0], item[1], lease_id), sorted(files.items()))
        except Conflict as exc:
            raise TransientError(f"{exc}; another writer changed the file during the read-back") from None
        recovery = Recovery()
        for state, lines in found:
            recovery.states.append(state)
            for key, seq, cluster in lines:
                recovery.lines += 1
                if key is not None:
                    recovery.durable[key] = seq
                if cluster is not None:
                    recovery.clusters[seq] = cluster
                    if recovery.last_cluster is None or cluster[0] > recovery.last_cluster:
                        recovery.last_cluster = cluster[0]
        self.recoveries += len(found)
        return recovery

    def read_lines(self, path: str) -> list[tuple[str | None, int, tuple[int, int] | None]]:
        """(key, ``_seq``, cluster time) of every line of a whole file (a per-event file being recovered)."""
        with self._errors(f"reading back {path} (a run before this one created it and did not commit)"):
            data = self._fs.get_file_client(path).download_file().readall()
        return _parse_lines(data, path)

    def _recover_file(self, path: str, start: int, lease_id: str):
        folder, name = path.rsplit("/", 1)
        window, part, gen = layout.parse_file_name(name)
        client = self._fs.get_file_client(path)
        doing = f"reading back {path} (a run before this one wrote to it and did not commit)"
        with self._errors(doing):
            self._take_lease(client, path, lease_id)
            props = client.get_file_properties()
            size = props.size
            if size < start:
                raise TerminalError(f"{doing}: it holds {size} bytes, fewer than the {start} the checkpoint "
                                    "recorded; something other than this app changed it")
            data = client.download_file(offset=start, length=size - start).readall() if size > start else b""
            result = client.flush_data(size, etag=props.etag, match_condition=MatchConditions.IfNotModified,
                                       lease=lease_id, lease_action="release")
        lines = _parse_lines(data, path)
        if lines:
            log.warning("recovered %s: %d lines (_seq %d..%d) a failed run wrote are kept", path, len(lines),
                        min(s for _, s, _ in lines), max(s for _, s, _ in lines))
        return FileState(folder, window, part, size, result["etag"], gen), lines

    def _take_lease(self, client, path: str, lease_id: str) -> None:
        """Hold the file's lease for this run: create the file if it is missing, break a dead run's lease."""
        lease = DataLakeLeaseClient(client, lease_id=lease_id)
        for _ in range(5):
            try:
                lease.acquire(lease_duration=FILE_LEASE_SECONDS)
                return
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) in ("FilesystemNotFound", "ContainerNotFound"):
                    self._create_filesystem()
                try:
                    client.create_file(match_condition=MatchConditions.IfMissing)
                except ResourceExistsError:
                    pass  # it appeared meanwhile (a failed run's late create): take its lease
            except ResourceExistsError as exc:
                if getattr(exc, "error_code", None) not in ("LeaseAlreadyPresent", "LeaseIsBreakingAndCannotBeAcquired"):
                    raise
                lease.break_lease(lease_break_period=0)
        raise TransientError(f"taking the lease of {path}: another writer keeps taking it")

    def _errors(self, doing: str):
        return _LakeErrors(doing, self._secrets)


def _parse_lines(data: bytes, path: str) -> list[tuple[str | None, int, tuple[int, int] | None]]:
    """(key, _seq, cluster time) of every line of ``data``; a line this app did not write is an error."""
    if data and not data.endswith(b"\n"):
        raise TerminalError(f"reading back {path}: it ends in a partial line; it was not written by this app")
    out = []
    for raw in data.splitlines():
        try:
            line = orjson.loads(raw)
            seq = line["_seq"]
            seq = int(seq["$numberLong"]) if isinstance(seq, dict) else int(seq)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise TerminalError(f"reading back {path}: a line is not a line this app wrote ({exc.__class__.__name__})"
                                ) from None
        cluster = line.get("clusterTime")
        stamp = cluster.get("$timestamp", {}) if isinstance(cluster, dict) else {}
        pair = (int(stamp["t"]), int(stamp.get("i", 0))) if isinstance(stamp, dict) and "t" in stamp else None
        out.append((line_key(line), seq, pair))
    return out


class _LakeErrors(ErrorContext):
    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, AzureError):
            return False
        code = getattr(exc, "error_code", None)
        if isinstance(exc, (ResourceExistsError, ResourceModifiedError)) or code in _CONFLICT_CODES:
            raise Conflict(f"{self.doing}: {code or exc.__class__.__name__}") from exc
        message = sdk_message(exc, self.secrets)
        if isinstance(exc, ClientAuthenticationError) or code in ("AuthorizationFailure", "AuthenticationFailed",
                                                                   "AuthorizationPermissionMismatch"):
            raise TerminalError(f"{self.doing}: the lake refused the credentials ({message})") from None
        if isinstance(exc, HttpResponseError) and exc.status_code in (400, 404) and code not in (None, "ServerBusy"):
            raise TerminalError(f"{self.doing}: {message}") from None
        raise TransientError(f"{self.doing}: {message}") from None
