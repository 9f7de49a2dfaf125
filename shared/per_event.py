"""``FILE_LAYOUT=per_event``: one file per change event, created whole in one request, exactly once.

Each event's file holds exactly the line a rolling file would hold (the whole event in the configured
Extended JSON mode, with ``_seq``), in the same partition folder, named by ``layout.event_file_name``:
``<_seq>-<operationType>-<key hash>-<generation>.json``.

* **Batching** (``EventBatch``): the drain routes numbered lines here instead of to a ``batch.Batch``;
  a sealed batch is one ``EventFile`` per event. Its commit intent records the folders the batch
  writes, not the files (64 MiB of 1 KB events would be 64K names: too large for the checkpoint row).
* **Writing** (``PerEventWriter.write``, called by the committer in place of ``Lake.write``): every
  file is one Put Blob on the account's Blob endpoint with ``If-None-Match: *``
  (``upload_blob(overwrite=False)``), ``PER_EVENT_CONCURRENCY`` at a time, with the lake's retries and
  per-request deadline. 409 ``BlobAlreadyExists`` means this very name exists: the same event (token
  hash), with the same number, of the same generation, made durable by an earlier attempt (a retry
  whose first response was lost, or a run that died): it is skipped, never overwritten. The
  committer moves the position only after every file of the batch exists.
* **Recovery** (``recover``): a run that finds an intent with folders lists them and takes, from
  the names of this generation with ``_seq`` in the intent's range, key hash -> ``_seq``: the events
  already durable, which ``intent.Numbering`` skips wherever this run would put them. The files are
  not read back. Two names of the range with one ``_seq`` (or one event under two numbers) mean the
  lake no longer holds each event once: the run fails as terminal, naming the files. While a snapshot
  is being copied the files are read back as well (``read_back``): a snapshot row's name carries a
  hash of its key, but the replay needs its copy, ``_id`` and cluster time (see ``intent.Numbering``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from . import invocation, layout
from .batch import MAX_FILES_PER_BATCH, FileState, PendingFile
from .errors import TerminalError, TransientError
from .intent import Intent, key_hash
from .lake import Conflict, Failpoint, Lake, _no_failpoint, make_service_client
from .settings import Settings

log = logging.getLogger(__name__)

PER_EVENT = "per_event"


@dataclass
class EventFile(PendingFile):
    """One change event's file: ``base.dir`` is its folder, ``name`` its file name."""

    name: str = ""

    @property
    def path(self) -> str:
        return f"{self.base.dir}/{self.name}"


class EventBatch:
    """Numbered lines waiting for the next commit, one file each (the per-event ``batch.Batch``)."""

    def __init__(self, gen: str, states: dict[str, FileState] | None = None) -> None:
        self.gen = gen
        # the rolling layout's folder rows, kept as they are (their files are not touched) so a switch
        # back continues them; ``drain`` forgets the rows of folders no event can reach any more
        self.states = dict(states or {})
        self.files: list[EventFile] = []
        self._folders: set[str] = set()
        self.bytes = 0
        self.events = 0

    def add(self, folder: str, cluster_seconds: int, seq: int, line: bytes, operation: str | None = None,
            key: str | None = None) -> None:
        name = layout.event_file_name(seq, operation or "unknown", key_hash(key or ""), self.gen)
        event = EventFile(FileState(folder, 0, 0, 0, None, self.gen), name=name)
        event.add(seq, cluster_seconds, line)
        self.files.append(event)
        self._folders.add(folder)
        self.bytes += len(line)
        self.events += 1

    @property
    def folders(self) -> int:
        return len(self._folders)

    @property
    def file_count(self) -> int:
        return self.events

    @property
    def full(self) -> bool:
        return self.events >= MAX_FILES_PER_BATCH

    def seal(self) -> list[EventFile]:
        files, self.files, self._folders = self.files, [], set()
        self.bytes = self.events = 0
        return files

    @staticmethod
    def intent_of(files: list[EventFile]) -> tuple[dict[str, int], list[str]]:
        """What a commit intent records of these files: their folders only."""
        return {}, sorted({f.base.dir for f in files})

    def adopt(self, states) -> None:
        """Nothing to adopt: per-event files have no open state."""

    @staticmethod
    def rows_ahead(files: list[EventFile]) -> list[FileState]:
        """No folder rows to keep ahead (see ``batch.Batch.rows_ahead``)."""
        return []


class PerEventWriter:
    """Creates the files of a sealed per-event batch (the committer's writer for this layout)."""

    def __init__(self, settings: Settings, lake: Lake, blob_service=None, failpoint: Failpoint = _no_failpoint) -> None:
        self._lake = lake
        self._service = blob_service or make_service_client(settings, lake.deadline, blob=True)
        self._container = self._service.get_container_client(settings.adls_filesystem)
        self._concurrency = settings.per_event_concurrency
        self._failpoint = failpoint
        self._fs_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.created = self.existed = 0  # files this run created / found already there

    def write(self, files: list[EventFile], lease_id: str) -> list[FileState]:
        """Create every file (``If-None-Match: *``); returns no folder states (none are kept)."""
        if len(files) <= 1 or self._concurrency <= 1:
            for f in files:
                self._put(f)
            return []
        # Why invocation.Executor: the Functions host keeps only log records that carry the invocation id
        with invocation.Executor(max_workers=min(self._concurrency, len(files)),
                                 thread_name_prefix="per-event") as pool:
            for _ in pool.map(self._put, files):
                pass
        return []

    def _put(self, f: EventFile) -> None:
        blob = self._container.get_blob_client(f.path)
        data = bytes(f.data)
        try:
            with self._lake._errors(f"creating {f.path}"):
                try:
                    try:
                        blob.upload_blob(data, overwrite=False)
                    except ResourceNotFoundError as exc:
                        if getattr(exc, "error_code", None) not in ("ContainerNotFound", "FilesystemNotFound"):
                            raise
                        self._lake._create_filesystem()
                        blob.upload_blob(data, overwrite=False)
                    with self._count_lock:
                        self.created += 1
                except ResourceExistsError as exc:
                    if getattr(exc, "error_code", None) != "BlobAlreadyExists":
                        raise
                    # This exact name: the same event with the same number of this generation, made
                    # durable by an earlier attempt (a retried request whose response was lost, or a
                    # run that died). Exactly once holds by the event's identity: skip, never overwrite.
                    with self._count_lock:
                        self.existed += 1
        except Conflict as exc:
            raise TransientError(f"{exc}; the next run recovers from the commit intent") from None
        self._failpoint("after_flush")


@dataclass
class Listed:
    """What ``recover`` found in the folders of an intent."""

    hashed: dict[str, int]  # key hash -> _seq of every file of the range
    files: int
    durable: dict[str, int] = field(default_factory=dict)  # read back: line key -> _seq
    clusters: dict[int, tuple[int, int]] = field(default_factory=dict)  # read back: _seq -> cluster time


def recover(lake: Lake, intent: Intent, generation: str, read_back: bool = False) -> Listed:
    """The per-event files of ``intent``'s range in its folders (listed; ``read_back``: also read,
    for the key and cluster time of each line)."""
    folders = sorted(intent.folders)
    if not folders:
        return Listed({}, 0)

    def names(folder: str) -> list[tuple[str, str]]:
        return [(folder, name) for name in lake.list_folder(folder)]

    if len(folders) == 1:
        listed = [names(folders[0])]
    else:
        with invocation.Executor(max_workers=min(8, len(folders)), thread_name_prefix="per-event-list") as pool:
            listed = list(pool.map(names, folders))
    by_seq: dict[int, str] = {}
    hashed: dict[str, int] = {}
    for folder, name in (item for group in listed for item in group):
        parsed = layout.parse_event_file_name(name)
        if parsed is None:
            continue
        seq, _, token_hash, gen = parsed
        if gen != generation or not intent.first_seq <= seq <= intent.last_seq:
            continue
        path = f"{folder}/{name}"
        if seq in by_seq:
            raise TerminalError(f"recovering the per-event files of _seq {intent.first_seq}..{intent.last_seq}: "
                                f"{by_seq[seq]} and {path} both hold _seq {seq}; the lake no longer holds each "
                                "number once (a write from outside this pipeline, or a stale run's late upload). "
                                "Remove the wrong file, then let the pipeline run again.")
        if token_hash in hashed:
            raise TerminalError(f"recovering the per-event files of _seq {intent.first_seq}..{intent.last_seq}: "
                                f"one event is in the lake twice (_seq {hashed[token_hash]} and {path}). Remove one "
                                "of them, then let the pipeline run again.")
        by_seq[seq] = path
        hashed[token_hash] = seq
    if hashed:
        log.warning("recovered %d per-event files (_seq %d..%d) a failed run created; they are kept", len(hashed),
                    min(hashed.values()), max(hashed.values()))
    listed_files = Listed(hashed, len(hashed))
    if read_back and by_seq:
        with invocation.Executor(max_workers=min(16, len(by_seq)), thread_name_prefix="per-event-read") as pool:
            for lines in pool.map(lake.read_lines, sorted(by_seq.values())):
                for key, seq, cluster in lines:
                    if key is not None:
                        listed_files.durable[key] = seq
                    if cluster is not None:
                        listed_files.clusters[seq] = cluster
    return listed_files
