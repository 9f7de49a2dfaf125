"""Azure Table Storage: the pipeline's position, its files' states, and its run lease.

One partition per pipeline (``PartitionKey`` = ``PIPELINE_NAME``):

* row ``checkpoint``: the position (resume token and how to use it), ``seq`` (the last ``_seq``
  given out), the pipeline identity (hash of scope and filter) and generation, the lease
  (``lease_owner``, ``lease_until``), the last run report and the last error;
* one row ``f-<hash of folder>`` per partition folder: the file it appends to, committed length,
  ETag and ``hwm`` (see ``batch.FileState``).

Every write of the checkpoint row carries ``If-Match`` on the ETag this run last saw, so a run
whose lease was taken over cannot move the position. A commit is one entity-group transaction
(checkpoint row plus up to 99 folder rows, atomic); more folders than that are written first, in
transactions of their own: folder rows only describe data already flushed, so writing them early
is safe (a replay skips lines at or below each folder's ``hwm``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets as _random
from dataclasses import dataclass, field
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

from .batch import FileState
from .errors import (
    ErrorContext,
    LeaseHeldError,
    LeaseLostError,
    PipelineMismatchError,
    TerminalError,
    TransientError,
    sdk_message,
)
from .settings import Settings
from .source import Position

log = logging.getLogger(__name__)

CHECKPOINT_ROW = "checkpoint"
FILE_ROW_PREFIX = "f-"
MAX_TRANSACTION = 100
SCHEMA = 1


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


@dataclass
class PipelineState:
    checkpoint: Checkpoint | None
    files: dict[str, FileState] = field(default_factory=dict)


def make_table_client(settings: Settings) -> TableClient:
    options = dict(retry_total=5, retry_backoff_factor=0.5, retry_backoff_max=8, connection_timeout=10, read_timeout=60)
    if settings.checkpoint_connection_string:
        service = TableServiceClient.from_connection_string(str(settings.checkpoint_connection_string), **options)
    else:
        from azure.identity import DefaultAzureCredential

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
            if _int(row.get("schema", 0)) != SCHEMA:
                raise ValueError(f"schema {row.get('schema')!r}")
            position = None
            if row.get("token"):
                kind = row["token_kind"]
                if kind not in ("resume_after", "start_after", "start_at"):
                    raise ValueError(f"token_kind {kind!r}")
                position = Position(kind, row["token"])
                if kind != "start_at":
                    position.watch_options()  # parses the token
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
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise TerminalError(
                f"loading the checkpoint of pipeline {name!r}: the row is corrupt or was not written by this "
                f"app ({exc.__class__.__name__}: {exc}); fix or delete it"
            ) from None
        if checkpoint.seq < 0 or not (checkpoint.generation.isalnum() and checkpoint.generation.isascii()):
            raise TerminalError(f"loading the checkpoint of pipeline {name!r}: the row is corrupt (seq or generation)")
        if checkpoint.identity != self._settings.pipeline_identity:
            raise PipelineMismatchError(
                f"the checkpoint of pipeline {name!r} was written for another scope or MONGO_PIPELINE filter "
                f"(identity {checkpoint.identity} here {self._settings.pipeline_identity}); its position and "
                "sequence numbers do not apply. Use another PIPELINE_NAME for the new scope or filter, or "
                "delete this pipeline's rows to start it again."
            )
        return checkpoint

    # -- the lease ----------------------------------------------------------------------------
    def acquire(self, state: PipelineState, owner: str, now: float, seconds: float) -> Checkpoint:
        """Take the pipeline's run lease, creating the checkpoint row on a first run.

        Raises ``LeaseHeldError`` when another run holds an unexpired lease or wins the race.
        """
        checkpoint = state.checkpoint
        if checkpoint is None:
            checkpoint = Checkpoint(None, 0, self._settings.pipeline_identity, new_generation())
        elif checkpoint.lease_owner and checkpoint.lease_owner != owner and checkpoint.lease_until > now:
            raise LeaseHeldError(
                f"pipeline {self._pipeline!r} is being drained by run {checkpoint.lease_owner} "
                f"(lease for {checkpoint.lease_until - now:.0f} s more); this run leaves without writing"
            )
        checkpoint.lease_owner, checkpoint.lease_until = owner, now + seconds
        entity = self._checkpoint_entity(checkpoint)
        with self._errors("taking the pipeline lease"):
            try:
                self.requests += 1
                if checkpoint.etag is None:
                    checkpoint.etag = self._table.create_entity(entity)["etag"]
                else:
                    checkpoint.etag = self._table.update_entity(
                        entity, mode=UpdateMode.REPLACE, etag=checkpoint.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )["etag"]
            except (ResourceExistsError, ResourceModifiedError):
                raise LeaseHeldError(
                    f"pipeline {self._pipeline!r}: another run took the lease at the same moment; "
                    "this run leaves without writing"
                ) from None
        state.checkpoint = checkpoint
        return checkpoint

    # -- the commit ---------------------------------------------------------------------------
    def commit(self, checkpoint: Checkpoint, files: list[FileState]) -> None:
        """Save the position and the touched files' states; the only place the position moves."""
        file_rows = [_file_entity(self._pipeline, f) for f in _latest_per_folder(files)]
        checkpoint_entity = self._checkpoint_entity(checkpoint)
        early, last = file_rows[: max(0, len(file_rows) - (MAX_TRANSACTION - 1))], file_rows[-(MAX_TRANSACTION - 1):]
        if len(file_rows) <= MAX_TRANSACTION - 1:
            early, last = [], file_rows
        with self._errors("committing the position"):
            for start in range(0, len(early), MAX_TRANSACTION):
                self.requests += 1
                self._table.submit_transaction([("upsert", row) for row in early[start:start + MAX_TRANSACTION]])
            operations: list[Any] = [("update", checkpoint_entity, {
                "mode": UpdateMode.REPLACE, "etag": checkpoint.etag, "match_condition": MatchConditions.IfNotModified,
            })]
            operations += [("upsert", row) for row in last]
            try:
                self.requests += 1
                results = self._table.submit_transaction(operations)
            except ResourceModifiedError:
                raise LeaseLostError(
                    f"pipeline {self._pipeline!r}: the checkpoint changed under this run (its lease was taken "
                    "over); the position was not moved"
                ) from None
            except Exception as exc:  # TableTransactionError carries the failing operation's error
                if "UpdateConditionNotSatisfied" in str(exc) or "ConditionNotMet" in str(exc):
                    raise LeaseLostError(
                        f"pipeline {self._pipeline!r}: the checkpoint changed under this run (its lease was "
                        "taken over); the position was not moved"
                    ) from None
                raise
        checkpoint.etag = results[0]["etag"]

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
        """Store the run report / error and release the lease (If-Match: only while this run owns it)."""
        with self._errors("saving the run report"):
            try:
                self.requests += 1
                checkpoint.etag = self._table.update_entity(
                    self._checkpoint_entity(checkpoint), mode=UpdateMode.REPLACE, etag=checkpoint.etag,
                    match_condition=MatchConditions.IfNotModified,
                )["etag"]
            except ResourceModifiedError:
                log.warning("pipeline %s: the lease was taken over before the report was saved", self._pipeline)

    def delete_pipeline(self) -> int:
        """Remove every row of this pipeline (used by tests and by users resetting a pipeline)."""
        rows = list(self._table.query_entities(f"PartitionKey eq '{_quote(self._pipeline)}'", select=["RowKey"]))
        for start in range(0, len(rows), MAX_TRANSACTION):
            self._table.submit_transaction(
                [("delete", {"PartitionKey": self._pipeline, "RowKey": r["RowKey"]}) for r in rows[start:start + 100]]
            )
        return len(rows)

    # -- rows ---------------------------------------------------------------------------------
    def _checkpoint_entity(self, cp: Checkpoint) -> dict[str, Any]:
        entity = {
            "PartitionKey": self._pipeline,
            "RowKey": CHECKPOINT_ROW,
            "schema": SCHEMA,
            "token": cp.position.token if cp.position else "",
            "token_kind": cp.position.kind if cp.position else "",
            "seq": EntityProperty(cp.seq, EdmType.INT64),
            "identity": cp.identity,
            "generation": cp.generation,
            "committed_at": cp.committed_at.isoformat() if cp.committed_at else "",
            "last_cluster_time": EntityProperty(cp.last_cluster_time, EdmType.INT64)
            if cp.last_cluster_time is not None else None,
            "last_run": json.dumps(cp.last_run, default=str)[:60000] if cp.last_run else "",
            "last_error": json.dumps(cp.last_error, default=str)[:60000] if cp.last_error else "",
            "lease_owner": cp.lease_owner,
            "lease_until": float(cp.lease_until),
            "gap": json.dumps(cp.gap) if cp.gap else "",
        }
        return {k: v for k, v in entity.items() if v is not None}

    def _errors(self, doing: str):
        return _TableErrors(doing, self._secrets)


def _latest_per_folder(files: list[FileState]) -> list[FileState]:
    latest: dict[str, FileState] = {}
    for f in files:
        known = latest.get(f.dir)
        if known is None or (f.hwm, f.window, f.part) >= (known.hwm, known.window, known.part):
            latest[f.dir] = f
    return list(latest.values())


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
        "hwm": EntityProperty(f.hwm, EdmType.INT64),
        "gen": f.gen,
    }


def _file_from(row) -> FileState:
    try:
        state = FileState(row["dir"], _int(row["window"]), _int(row["part"]), _int(row["length"]),
                          row["etag"] or None, _int(row["hwm"]), row["gen"])
        # the row names a file path: refuse what this app never writes (another folder's row, a
        # generation that is not a plain id, negative numbers)
        if row["RowKey"] != folder_row_key(state.dir):
            raise ValueError("the row key does not match its folder")
        if not (isinstance(state.gen, str) and state.gen.isalnum() and state.gen.isascii()):
            raise ValueError(f"generation {state.gen!r}")
        if min(state.window, state.part, state.length, state.hwm) < 0:
            raise ValueError("a negative window, part, length or hwm")
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
