"""Azure Table Storage: the pipeline's position, its commit intent, its files' states, its run lease.

One partition per pipeline (``PartitionKey`` = ``PIPELINE_NAME``):

* row ``checkpoint``: the position (resume token and how to use it; a concrete one from the first
  run on, never "now"), ``seq`` (the last ``_seq`` committed), the open commit intent if a run is
  writing or died writing (see ``intent``), the pipeline identity (hash and items: see
  ``Settings.identity``) and generation, the run lease (``lease_owner``, ``lease_until``), the
  first position (``origin``), the last run report and the last error, what the after-commit
  hooks owe the lake (``readers``: manifests and day markers not yet written, see ``publisher``), and
  the snapshot progress (``snapshot_<n>``, see ``snapshot.Progress``), which moves with the position
  in the same transaction;
* one row ``f-<hash of folder>`` per partition folder: the file it appends to, committed length
  and ETag (see ``batch.FileState``).

Every write of the checkpoint row carries ``If-Match`` on the ETag this run last saw, so a run
whose lease was taken over can neither record an intent nor move the position. A commit is one
entity-group transaction (checkpoint row plus up to 99 folder rows, atomic). A commit with more
folders is several transactions, each of which also updates the checkpoint row under ``If-Match``
(so each is refused to a run that lost its lease); only the last moves the position and clears the
intent, and a run that dies between them leaves the intent for the next run to recover from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets as _random
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, EntityProperty, TableClient, TableServiceClient, UpdateMode

from . import layout
from .batch import FileState, newest
from .errors import (
    ErrorContext,
    LeaseHeldError,
    LeaseLostError,
    PipelineMismatchError,
    TerminalError,
    TransientError,
    sdk_message,
)
from .intent import Intent
from .snapshot import Progress
from .settings import Settings, identity_differences
from .source import Position

log = logging.getLogger(__name__)

CHECKPOINT_ROW = "checkpoint"
FILE_ROW_PREFIX = "f-"
MAX_TRANSACTION = 100
SCHEMA = 2
# Table string properties hold 64 KiB (32K UTF-16 characters): long values are cut or split.
MAX_TEXT = 30000
MAX_INTENT_PARTS = 24  # an intent of up to ~720K characters (the row may hold 1 MiB)
MAX_READERS_PARTS = 8  # the readers' state (compressed by its owner, ``publisher``)
MAX_SNAPSHOT_PARTS = 4  # snapshot progress of up to ~120K characters


@dataclass
class Checkpoint:
    position: Position | None
    seq: int
    identity: str
    generation: str
    committed_at: datetime | None = None
    last_cluster_time: int | None = None  # seconds since the epoch, of the last event written
    last_run: dict | None = None
    last_error: dict | None = None
    lease_owner: str = ""
    lease_until: float = 0.0
    etag: str | None = None  # of the row as this run last saw it; None: no row yet
    gap: dict | None = None  # a restart after lost history whose gap record is not written yet
    intent: Intent | None = None  # a batch being written (or left by a run that failed writing it)
    identity_items: dict | None = None  # what the identity hash covers, to name what changed
    origin: str | None = None  # the pipeline's first position ("<seconds>.<increment>")
    readers: dict | None = None  # manifests and markers owed to the lake, saved with the position (publisher)
    snapshot: Progress | None = None  # collections being copied (and requests), as of this position


@dataclass
class PipelineState:
    checkpoint: Checkpoint | None
    files: dict[str, FileState] = field(default_factory=dict)


def make_table_client(settings: Settings) -> TableClient:
    options = dict(retry_total=5, retry_backoff_factor=0.5, retry_backoff_max=8, connection_timeout=10, read_timeout=30)
    if settings.checkpoint_connection_string:
        service = TableServiceClient.from_connection_string(str(settings.checkpoint_connection_string), **options)
    else:
        from azure.identity import DefaultAzureCredential  # deferred: heavy, and only for Entra ID

        service = TableServiceClient(settings.checkpoint_account_url, credential=DefaultAzureCredential(), **options)
    return service.get_table_client(settings.checkpoint_table)


def new_generation() -> str:
    return _random.token_hex(4)


class CheckpointStore:
    def __init__(self, settings: Settings, table: TableClient | None = None) -> None:
        self._settings = settings
        self._pipeline = settings.pipeline_name
        self._table = table or make_table_client(settings)
        self._secrets = settings.secrets
        # Why a lock: the lease keeper renews from its own thread; every write of the checkpoint
        # row reads and replaces the ETag this run last saw.
        self._row_lock = threading.RLock()
        self._legacy = False
        # The row as this run last wrote it: every conditional write uses and replaces the ETag.
        self._etag: str | None = None
        self._row_intent: Intent | None = None  # the intent the row holds as this run last wrote it
        self._owner = ""
        self.lease_until = 0.0
        self.requests = 0

    # -- reading ------------------------------------------------------------------------------
    def load(self) -> PipelineState:
        """The checkpoint and file states of this pipeline (one query); a missing table is created."""
        query = f"PartitionKey eq '{_quote(self._pipeline)}'"
        with self._errors("loading the checkpoint"):
            try:
                self.requests += 1
                rows = list(self._table.query_entities(query))
            except ResourceNotFoundError:
                self.requests += 1
                try:
                    self._table.create_table()
                except ResourceExistsError:
                    pass
                rows = []
        state = PipelineState(None)
        for row in rows:
            if row["RowKey"] == CHECKPOINT_ROW:
                state.checkpoint = self._checkpoint_from(row)
            elif row["RowKey"].startswith(FILE_ROW_PREFIX):
                file_state = _file_from(row)
                state.files[file_state.dir] = file_state
        checkpoint = state.checkpoint
        if checkpoint is not None and checkpoint.intent is None and self._legacy:
            # A row of schema 1 kept no intent: treat every folder's file as possibly holding lines of
            # a run that failed after its flush, so the first run reads them back before writing.
            files = {f.path: f.length for f in state.files.values() if f.etag is not None}
            if files:
                checkpoint.intent = Intent(checkpoint.seq + 1, checkpoint.seq, None, None, files)
        if state.checkpoint is None and state.files:
            raise TerminalError(
                f"loading the checkpoint of pipeline {self._pipeline!r}: the table holds file states but no "
                "checkpoint row; the position was deleted or corrupted. Restore the row, or delete the "
                "pipeline's rows to start again (a new generation of files) from START_AT."
            )
        return state

    def _checkpoint_from(self, row) -> Checkpoint:
        name = self._pipeline
        try:
            schema = _int(row.get("schema", 0))
            if schema not in (1, SCHEMA):
                raise ValueError(f"schema {row.get('schema')!r}")
            self._legacy = schema == 1
            position = None
            if row.get("token"):
                kind = row["token_kind"]
                if kind not in ("resume_after", "start_after", "start_at"):
                    raise ValueError(f"token_kind {kind!r}")
                position = Position(kind, row["token"])
                position.watch_options()  # parses the token
            intent_text = "".join(row.get(f"intent_{i}") or "" for i in range(MAX_INTENT_PARTS))
            snapshot_text = "".join(row.get(f"snapshot_{i}") or "" for i in range(MAX_SNAPSHOT_PARTS))
            checkpoint = Checkpoint(
                position=position,
                seq=_int(row["seq"]),
                identity=row["identity"],
                generation=row["generation"],
                committed_at=_time(row.get("committed_at")),
                last_cluster_time=_int(row["last_cluster_time"]) if row.get("last_cluster_time") is not None else None,
                last_run=json.loads(row["last_run"]) if row.get("last_run") else None,
                last_error=json.loads(row["last_error"]) if row.get("last_error") else None,
                lease_owner=row.get("lease_owner", ""),
                lease_until=float(row.get("lease_until", 0.0)),
                etag=row.metadata["etag"],
                gap=json.loads(row["gap"]) if row.get("gap") else None,
                intent=Intent.from_json(intent_text) if intent_text else None,
                identity_items=json.loads(row["identity_items"]) if row.get("identity_items") else None,
                origin=row.get("origin") or None,
                readers=_parts_json(row, "readers", MAX_READERS_PARTS),
                snapshot=Progress.from_json(snapshot_text) if snapshot_text else None,
            )
            if checkpoint.intent is not None:
                for path in checkpoint.intent.files:
                    _check_path(path, checkpoint.generation)
                for folder in checkpoint.intent.folders:
                    _check_folder(folder)
        except (KeyError, ValueError, TypeError) as exc:
            raise TerminalError(
                f"loading the checkpoint of pipeline {name!r}: the row is corrupt or was not written by this "
                f"app ({exc.__class__.__name__}: {exc}); fix or delete it"
            ) from None
        if checkpoint.seq < 0 or not (checkpoint.generation.isalnum() and checkpoint.generation.isascii()):
            raise TerminalError(f"loading the checkpoint of pipeline {name!r}: the row is corrupt (seq or generation)")
        if checkpoint.identity != self._settings.pipeline_identity:
            raise PipelineMismatchError(self._mismatch(checkpoint))
        return checkpoint

    def _mismatch(self, checkpoint: Checkpoint) -> str:
        name = self._pipeline
        changed = ""
        if checkpoint.identity_items:
            changed = "; ".join(identity_differences(checkpoint.identity_items, self._settings.identity))
        return (f"the checkpoint of pipeline {name!r} was written for another stream or lake"
                f"{' (' + changed + ')' if changed else ''} (identity {checkpoint.identity}, here "
                f"{self._settings.pipeline_identity}); its position and sequence numbers do not apply here. Give "
                "the new stream its own PIPELINE_NAME, restore the settings, or delete this pipeline's rows to "
                "start it again.")

    # -- the lease ----------------------------------------------------------------------------
    def acquire(self, state: PipelineState, owner: str, now: float, seconds: float) -> Checkpoint:
        """Take the pipeline's run lease, creating the checkpoint row (without a position) on a first run.

        Raises ``LeaseHeldError`` when another run holds an unexpired lease or wins the race.
        """
        checkpoint = state.checkpoint
        if checkpoint is None:
            checkpoint = Checkpoint(None, 0, self._settings.pipeline_identity, new_generation(),
                                    identity_items=self._settings.identity)
        elif checkpoint.lease_owner and checkpoint.lease_owner != owner and checkpoint.lease_until > now:
            raise LeaseHeldError(
                f"pipeline {self._pipeline!r} is being drained by run {checkpoint.lease_owner} "
                f"(lease for {checkpoint.lease_until - now:.0f} s more); this run leaves without writing"
            )
        with self._row_lock, self._errors("taking the pipeline lease"):
            self._owner, self.lease_until = owner, now + seconds
            entity = self._checkpoint_entity(checkpoint)
            try:
                self.requests += 1
                if checkpoint.etag is None:
                    self._etag = self._table.create_entity(entity)["etag"]
                else:
                    self._etag = self._table.update_entity(
                        entity, mode=UpdateMode.REPLACE, etag=checkpoint.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )["etag"]
            except (ResourceExistsError, ResourceModifiedError):
                self.lease_until = 0.0
                raise LeaseHeldError(
                    f"pipeline {self._pipeline!r}: another run took the lease at the same moment; "
                    "this run leaves without writing"
                ) from None
        checkpoint.lease_owner, checkpoint.lease_until, checkpoint.etag = owner, self.lease_until, self._etag
        self._row_intent = checkpoint.intent
        state.checkpoint = checkpoint
        return checkpoint

    def renew(self, until: float) -> None:
        """Extend this run's lease to ``until`` (``If-Match``: refused once another run took it)."""
        with self._row_lock, self._errors("renewing the pipeline lease"):
            if not self.lease_until:
                return  # released with the final commit
            try:
                self.requests += 1
                self._etag = self._table.update_entity(
                    {"PartitionKey": self._pipeline, "RowKey": CHECKPOINT_ROW, "lease_until": float(until)},
                    mode=UpdateMode.MERGE, etag=self._etag, match_condition=MatchConditions.IfNotModified,
                )["etag"]
            except ResourceModifiedError:
                raise self._lost("its lease could not be renewed") from None
            self.lease_until = until

    # -- the intent and the commit ------------------------------------------------------------
    def record_intent(self, checkpoint: Checkpoint, intent: Intent | None) -> None:
        """Save ``checkpoint`` with ``intent`` before the batch it describes is written."""
        with self._row_lock, self._errors("recording the commit intent"):
            entity = self._checkpoint_entity(checkpoint, intent=intent)
            try:
                self.requests += 1
                self._etag = self._table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=self._etag, match_condition=MatchConditions.IfNotModified,
                )["etag"]
            except ResourceModifiedError:
                raise self._lost("it could not record its commit intent") from None
            self._row_intent = intent

    def commit(self, checkpoint: Checkpoint, files: list[FileState], release: bool = False) -> None:
        """Save ``checkpoint`` (the new position, its intent or none) and the touched files' states;
        the only place the position moves. ``release``: also give up the run lease.

        More than 99 folders: the earlier transactions carry 99 folder rows each and a conditional
        touch of the checkpoint row; the last one carries the rest and the checkpoint itself."""
        file_rows = [_file_entity(self._pipeline, f) for f in newest(files).values()]
        chunk = MAX_TRANSACTION - 1
        groups = [file_rows[i:i + chunk] for i in range(0, len(file_rows), chunk)] or [[]]
        with self._row_lock, self._errors("committing the position"):
            for index, rows in enumerate(groups):
                last = index == len(groups) - 1
                if last and release:
                    self.lease_until = 0.0
                entity = self._checkpoint_entity(checkpoint) if last else {
                    "PartitionKey": self._pipeline, "RowKey": CHECKPOINT_ROW, "lease_until": float(self.lease_until)}
                operations: list[Any] = [("update", entity, {
                    "mode": UpdateMode.REPLACE if last else UpdateMode.MERGE, "etag": self._etag,
                    "match_condition": MatchConditions.IfNotModified,
                })]
                operations += [("upsert", row) for row in rows]
                try:
                    self.requests += 1
                    results = self._table.submit_transaction(operations)
                except ResourceModifiedError:
                    raise self._lost("its commit was refused") from None
                except Exception as exc:  # TableTransactionError carries the failing operation's error
                    if "UpdateConditionNotSatisfied" in str(exc) or "ConditionNotMet" in str(exc):
                        raise self._lost("its commit was refused") from None
                    raise
                self._etag = results[0]["etag"]
            self._row_intent = checkpoint.intent

    def _lost(self, what: str) -> LeaseLostError:
        return LeaseLostError(f"pipeline {self._pipeline!r}: the checkpoint changed under this run (another run "
                              f"took its lease), so {what}; the position was not moved")

    def forget_folders(self, folders: list[str]) -> None:
        """Delete the rows of folders no event can reach any more (best effort: a leftover row is harmless)."""
        keys = [folder_row_key(f) for f in folders]
        for start in range(0, len(keys), MAX_TRANSACTION):
            try:
                self.requests += 1
                self._table.submit_transaction(
                    [("delete", {"PartitionKey": self._pipeline, "RowKey": k}) for k in keys[start:start + MAX_TRANSACTION]]
                )
            except AzureError as exc:
                log.info("pipeline %s: old folder rows not deleted (%s)", self._pipeline, exc.__class__.__name__)

    def save_report(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` (as last committed, with the run report / error) and release the lease
        (If-Match: only while this run owns it). The intent the row holds stays: a batch this run
        began to write is read back by the next run."""
        with self._row_lock, self._errors("saving the run report"):
            self.lease_until = 0.0
            try:
                self.requests += 1
                self._etag = self._table.update_entity(
                    self._checkpoint_entity(replace(checkpoint, intent=self._row_intent)),
                    mode=UpdateMode.REPLACE, etag=self._etag,
                    match_condition=MatchConditions.IfNotModified,
                )["etag"]
            except ResourceModifiedError:
                log.warning("pipeline %s: the lease was taken over before the report was saved", self._pipeline)

    # -- snapshot requests --------------------------------------------------------------------
    def request_snapshot(self, namespace: str, clock, sleep, wait_seconds: float) -> Progress:
        """Store a re-snapshot request for ``namespace`` ("db.coll") in the checkpoint row, for the next
        run to pick up. Written only while no run holds the lease, with ``If-Match`` on the row as read
        (a run holding the lease would otherwise find its row changed and stop); waits for a running
        drain up to ``wait_seconds``."""
        deadline = clock() + wait_seconds
        while True:
            checkpoint = self.load().checkpoint
            if checkpoint is None or checkpoint.position is None:
                raise TerminalError(f"pipeline {self._pipeline!r} has no checkpoint yet: its first run copies the "
                                    "collections with SNAPSHOT=initial; a request needs a pipeline that ran")
            now = clock()
            if checkpoint.lease_owner and checkpoint.lease_until > now:
                if now >= deadline:
                    raise TransientError(f"pipeline {self._pipeline!r}: a run held the lease for {wait_seconds:.0f} s; "
                                         "the request was not stored, try again")
                sleep(min(2.0, max(0.1, checkpoint.lease_until - now)))
                continue
            progress = checkpoint.snapshot.clone() if checkpoint.snapshot is not None else Progress()
            if namespace not in progress.requests:
                progress.requests.append(namespace)
            entity = {"PartitionKey": self._pipeline, "RowKey": CHECKPOINT_ROW,
                      **snapshot_properties(progress, self._pipeline)}
            with self._errors("storing the snapshot request"):
                try:
                    self.requests += 1
                    self._table.update_entity(entity, mode=UpdateMode.MERGE, etag=checkpoint.etag,
                                              match_condition=MatchConditions.IfNotModified)
                    return progress
                except ResourceModifiedError:
                    continue  # a run started or ended meanwhile: read the row again

    # -- rows ---------------------------------------------------------------------------------
    def _checkpoint_entity(self, cp: Checkpoint, intent: Intent | None = None) -> dict[str, Any]:
        """The checkpoint row; the lease is this store's (owner and ``lease_until`` as last written)."""
        intent = intent if intent is not None else cp.intent
        entity = {
            "PartitionKey": self._pipeline,
            "RowKey": CHECKPOINT_ROW,
            "schema": SCHEMA,
            "token": cp.position.token if cp.position else "",
            "token_kind": cp.position.kind if cp.position else "",
            "seq": EntityProperty(cp.seq, EdmType.INT64),
            "identity": cp.identity,
            "identity_items": json.dumps(cp.identity_items, sort_keys=True)[:MAX_TEXT] if cp.identity_items else "",
            "generation": cp.generation,
            "origin": cp.origin or "",
            "committed_at": cp.committed_at.isoformat() if cp.committed_at else "",
            "last_cluster_time": EntityProperty(cp.last_cluster_time, EdmType.INT64)
            if cp.last_cluster_time is not None else None,
            "last_run": _cut_json(cp.last_run),
            "last_error": _cut_json(cp.last_error),
            "lease_owner": self._owner if self.lease_until else "",
            "lease_until": float(self.lease_until),
            "gap": json.dumps(cp.gap) if cp.gap else "",
        }
        text = intent.to_json() if intent is not None else ""
        parts = [text[i:i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)]
        if len(parts) > MAX_INTENT_PARTS:
            raise TransientError(f"pipeline {self._pipeline!r}: a commit intent of {len(text)} characters does not "
                                 "fit the checkpoint row")
        for i in range(MAX_INTENT_PARTS):
            entity[f"intent_{i}"] = parts[i] if i < len(parts) else ""
        entity.update(_readers_parts(self._pipeline, cp.readers))
        entity.update(snapshot_properties(cp.snapshot, self._pipeline))
        return {k: v for k, v in entity.items() if v is not None}

    def _errors(self, doing: str):
        return _TableErrors(doing, self._secrets)


def snapshot_properties(progress: Progress | None, pipeline: str) -> dict[str, str]:
    """The row's ``snapshot_<n>`` properties for ``progress`` (every part written, empty when unused)."""
    text = progress.to_json() if progress is not None else ""
    parts = [text[i:i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)]
    if len(parts) > MAX_SNAPSHOT_PARTS:
        raise TerminalError(f"pipeline {pipeline!r}: the snapshot progress ({len(text)} characters) does not fit "
                            "the checkpoint row; snapshot fewer collections at a time")
    return {f"snapshot_{i}": parts[i] if i < len(parts) else "" for i in range(MAX_SNAPSHOT_PARTS)}


def _cut_json(value: dict | None) -> str:
    if not value:
        return ""
    text = json.dumps(value, default=str)
    return text if len(text) <= MAX_TEXT else json.dumps({"truncated": text[:MAX_TEXT - 100]})


def _readers_parts(pipeline: str, readers: dict | None) -> dict[str, str]:
    text = json.dumps(readers, separators=(",", ":")) if readers else ""
    parts = [text[i:i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)]
    if len(parts) > MAX_READERS_PARTS:
        raise TransientError(f"pipeline {pipeline!r}: the manifests owed ({len(text)} characters) do not fit "
                             "the checkpoint row")
    return {f"readers_{i}": parts[i] if i < len(parts) else "" for i in range(MAX_READERS_PARTS)}


def _parts_json(row, name: str, count: int) -> dict | None:
    text = "".join(row.get(f"{name}_{i}") or "" for i in range(count))
    return json.loads(text) if text else None


def _check_path(path: str, generation: str) -> None:
    """An intent names files: refuse paths this app never writes (another generation, ``..``)."""
    folder, _, name = path.rpartition("/")
    _, _, gen = layout.parse_file_name(name)
    if gen != generation:
        raise ValueError(f"intent path {path!r}")
    _check_folder(folder)


def _check_folder(folder: str) -> None:
    """A folder an intent names (its files, or its per-event folders): a partition folder, no ``..``."""
    if not folder or any(p in ("", ".", "..") for p in folder.split("/")) or layout.folder_day(folder) is None:
        raise ValueError(f"intent folder {folder!r}")


def folder_row_key(folder: str) -> str:
    return FILE_ROW_PREFIX + hashlib.sha256(folder.encode()).hexdigest()[:40]


def _file_entity(pipeline: str, f: FileState) -> dict[str, Any]:
    return {
        "PartitionKey": pipeline,
        "RowKey": folder_row_key(f.dir),
        "dir": f.dir,
        "window": EntityProperty(f.window, EdmType.INT64),
        "part": f.part,
        "length": EntityProperty(f.length, EdmType.INT64),
        "etag": f.etag or "",
        "gen": f.gen,
    }


def _file_from(row) -> FileState:
    try:
        state = FileState(row["dir"], _int(row["window"]), _int(row["part"]), _int(row["length"]),
                          row["etag"] or None, row["gen"])
        # the row names a file path: refuse what this app never writes (another folder's row, a
        # generation that is not a plain id, negative numbers)
        if row["RowKey"] != folder_row_key(state.dir):
            raise ValueError("the row key does not match its folder")
        if not (isinstance(state.gen, str) and state.gen.isalnum() and state.gen.isascii()):
            raise ValueError(f"generation {state.gen!r}")
        if min(state.window, state.part, state.length) < 0:
            raise ValueError("a negative window, part or length")
        return state
    except (KeyError, ValueError, TypeError) as exc:
        raise TerminalError(
            f"loading file states: row {row.get('RowKey')!r} is corrupt ({exc.__class__.__name__}: {exc})"
        ) from None


def _int(value) -> int:
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, bool):
        raise TypeError("boolean where a number was expected")
    return int(value)


def _time(value) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _quote(value: str) -> str:
    return value.replace("'", "''")


class _TableErrors(ErrorContext):
    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, AzureError):
            return False
        if isinstance(exc, (ResourceModifiedError, ResourceExistsError)):
            return False  # handled by the caller
        message = sdk_message(exc, self.secrets)
        if isinstance(exc, ClientAuthenticationError) or getattr(exc, "status_code", None) == 403:
            raise TerminalError(f"{self.doing}: the checkpoint table refused the credentials ({message})") from None
        raise TransientError(f"{self.doing}: {message}") from None
