"""ADLS Gen2: append and flush batches of lines, and recover a file another run changed.

Per touched file and commit: one append at the committed length and one flush to the new length
with ``If-Match`` on the ETag recorded at the last commit (a new file: one create with
``If-None-Match: *`` first). Folders are written in parallel, the files of one folder in order.

When a create, append or flush meets a file that is not as the checkpoint recorded (409, 412,
``InvalidFlushPosition``, 404), an earlier run died after flushing and before committing, or a
flush's response was lost after it was applied. ``_recover`` reads what the file holds beyond the
recorded length, finds the highest ``_seq`` there, and writes only the lines above it, into the
next part: a file that had such a conflict is never appended to again.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.filedatalake import DataLakeServiceClient, FileSystemClient

from .batch import FileState, PendingFile
from .errors import ErrorContext, TerminalError, TransientError, sdk_message
from .settings import Settings

log = logging.getLogger(__name__)

APPEND_CHUNK = 100 * 1024 * 1024  # the SDK's own chunk size; the service allows up to 4000 MiB
MAX_RECOVERY_PARTS = 50
_CONFLICT_CODES = {"InvalidFlushPosition", "ConditionNotMet", "PathAlreadyExists", "PathNotFound", "LeaseIdMissing"}

Failpoint = Callable[[str], None]


def _no_failpoint(name: str) -> None:
    return None


def make_service_client(settings: Settings) -> DataLakeServiceClient:
    """The lake client for the configured credential (SAS, key, connection string, or Entra ID)."""
    # Why: the storage SDK's ExponentialRetry ignores retry_backoff_factor/_max; its own defaults
    # (15 s, then 15 + 3**n s) would spend a whole run's budget, and outlast its lease, on a few
    # throttled requests. These sleep about 1, 3, 5, 9 and 17 s (35 s at most in all).
    options = dict(
        retry_total=5,
        initial_backoff=1,
        increment_base=2,
        random_jitter_range=1,
        connection_timeout=10,
        read_timeout=120,
    )
    if settings.adls_connection_string:
        return DataLakeServiceClient.from_connection_string(str(settings.adls_connection_string), **options)
    if settings.adls_sas:
        credential = str(settings.adls_sas)
    elif settings.adls_shared_key:
        credential = {"account_name": account_name(settings.adls_account_url), "account_key": str(settings.adls_shared_key)}
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return DataLakeServiceClient(settings.adls_account_url, credential=credential, **options)


def account_name(url: str) -> str:
    """``https://acct.dfs.core.windows.net`` -> acct; ``http://127.0.0.1:10100/devstoreaccount1`` -> devstoreaccount1."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.replace(".", "").isdigit() or host == "localhost":
        return parts.path.strip("/").split("/")[0]
    return host.split(".")[0]


class Conflict(Exception):
    """The file is not as the checkpoint recorded; recover it."""


class Lake:
    def __init__(self, settings: Settings, service: DataLakeServiceClient | None = None,
                 failpoint: Failpoint = _no_failpoint, max_workers: int = 8) -> None:
        self._secrets = settings.secrets
        self._service = service or make_service_client(settings)
        self._fs: FileSystemClient = self._service.get_file_system_client(settings.adls_filesystem)
        self._filesystem = settings.adls_filesystem
        self._failpoint = failpoint
        self._max_workers = max_workers
        self._fs_lock = threading.Lock()
        self._fs_created = False
        self.recoveries = 0

    # -- the batch -------------------------------------------------------------------------------
    def write(self, files: list[PendingFile]) -> list[FileState]:
        """Append and flush every file; returns each folder's state after it (one per file)."""
        folders: dict[str, list[PendingFile]] = {}
        for pending in files:
            folders.setdefault(pending.base.dir, []).append(pending)
        groups = list(folders.values())
        if len(groups) <= 1 or self._max_workers <= 1:
            results = [self._write_folder(g) for g in groups]
        else:
            with ThreadPoolExecutor(max_workers=min(self._max_workers, len(groups))) as pool:
                results = list(pool.map(self._write_folder, groups))
        return [state for group in results for state in group]

    def _write_folder(self, files: list[PendingFile]) -> list[FileState]:
        out = []
        min_part = -1
        hwm = 0
        for pending in files:
            if pending.seqs[0] <= hwm:
                # an earlier file of this folder was recovered and the folder already holds lines up
                # to hwm (a folder is written in seq order): write only the lines above it
                if pending.last_seq <= hwm:
                    continue
                pending = PendingFile(pending.base, bytearray(pending.after(hwm)), _tail(pending.seqs, hwm),
                                      _shifted_ends(pending, hwm))
            if pending.base.part <= min_part and pending.base.etag is None:
                # an earlier file of this folder was recovered into later parts: follow them
                pending = PendingFile(replace(pending.base, part=min_part + 1), pending.data, pending.seqs, pending.ends)
            state = self._write_file(pending)
            # a part recovery left uncreated (etag None) is still free for the next file
            min_part = max(min_part, state.part if state.etag is not None else state.part - 1)
            hwm = max(hwm, state.hwm)
            out.append(state)
        return out

    def _write_file(self, pending: PendingFile) -> FileState:
        try:
            return self._append_flush(pending)
        except Conflict:
            return self._recover(pending)

    def _append_flush(self, pending: PendingFile) -> FileState:
        base = pending.base
        client = self._fs.get_file_client(base.path)
        etag = base.etag
        with self._errors(f"creating {base.path}"):
            if etag is None:
                etag = self._create(client)
        position = base.length
        data = memoryview(pending.data)
        with self._errors(f"appending {len(data)} bytes to {base.path} at {position}"):
            for start in range(0, len(data), APPEND_CHUNK):
                chunk = data[start:start + APPEND_CHUNK]
                client.append_data(chunk.tobytes(), offset=position + start, length=len(chunk))
        self._failpoint("after_append")
        end = position + len(data)
        with self._errors(f"flushing {base.path} to {end}"):
            result = client.flush_data(end, etag=etag, match_condition=MatchConditions.IfNotModified)
        self._failpoint("after_flush")
        return replace(base, length=end, etag=result["etag"], hwm=max(base.hwm, pending.last_seq))

    def _create(self, client) -> str:
        """Create a new file (``If-None-Match: *``); the file system too, the first time it is missing."""
        try:
            return client.create_file(match_condition=MatchConditions.IfMissing)["etag"]
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) not in ("FilesystemNotFound", "ContainerNotFound"):
                raise
        with self._fs_lock:
            if not self._fs_created:
                try:
                    self._fs.create_file_system()
                except ResourceExistsError:
                    pass
                self._fs_created = True
        return client.create_file(match_condition=MatchConditions.IfMissing)["etag"]

    # -- recovery -------------------------------------------------------------------------------
    def _recover(self, pending: PendingFile) -> FileState:
        """Write the lines of ``pending`` that the file (and its later parts) do not hold yet."""
        self.recoveries += 1
        hwm = pending.base.hwm
        base = pending.base
        for _ in range(MAX_RECOVERY_PARTS):
            client = self._fs.get_file_client(base.path)
            with self._errors(f"reading the properties of {base.path} to recover it"):
                try:
                    props = client.get_file_properties()
                except ResourceNotFoundError:
                    props = None
            if props is None:
                if base.etag is None:
                    raise TransientError(f"recovering {base.path}: the file vanished while it was being created")
                # a file the checkpoint knows was deleted by someone: continue in the next part
                found, size, etag = b"", 0, None
            else:
                size, etag = props.size, props.etag
                start = base.length if size >= base.length else 0
                with self._errors(f"reading {base.path} from {start} to recover it"):
                    found = client.download_file(offset=start, length=size - start).readall() if size > start else b""
            if base.etag is not None and size == base.length + len(pending.data) and found == bytes(pending.data):
                # our own flush was applied and its response lost: the file holds exactly our lines
                return replace(base, length=size, etag=etag, hwm=max(hwm, pending.last_seq))
            hwm = max(hwm, _last_seq(found, base.path))
            rest = pending.after(hwm)
            log.warning("recovered %s: it held lines up to _seq %d; %d bytes go to the next part",
                        base.path, hwm, len(rest))
            base = FileState(base.dir, base.window, base.part + 1, 0, None, hwm, base.gen)
            if not rest:
                return base  # the folder continues in the next part, created when lines come
            pending = PendingFile(base, bytearray(rest), _tail(pending.seqs, hwm),
                                  _shifted_ends(pending, hwm))
            try:
                return self._append_flush(pending)
            except Conflict:
                continue
        raise TransientError(f"recovering {pending.base.dir}: more than {MAX_RECOVERY_PARTS} parts conflicted")

    def read(self, path: str) -> bytes:
        with self._errors(f"reading {path}"):
            return self._fs.get_file_client(path).download_file().readall()

    def _errors(self, doing: str):
        return _LakeErrors(doing, self._secrets)


def _tail(seqs, hwm):
    from array import array

    return array("q", [s for s in seqs if s > hwm])


def _shifted_ends(pending: PendingFile, hwm: int):
    from array import array

    out = array("q")
    offset = None
    for i, seq in enumerate(pending.seqs):
        if seq > hwm:
            if offset is None:
                offset = pending.ends[i - 1] if i else 0
            out.append(pending.ends[i] - offset)
    return out


def _last_seq(data: bytes, path: str) -> int:
    """The ``_seq`` of the last complete line of ``data`` (0 when there is none)."""
    lines = data.rstrip(b"\n").rsplit(b"\n", 1)
    last = lines[-1] if lines else b""
    if not last:
        return 0
    try:
        seq = json.loads(last)["_seq"]
        return int(seq["$numberLong"]) if isinstance(seq, dict) else int(seq)
    except (ValueError, KeyError, TypeError) as exc:
        raise TerminalError(f"recovering {path}: its last line is not a line this app wrote ({exc})") from None


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
