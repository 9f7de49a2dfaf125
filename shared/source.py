"""The MongoDB change stream: open at a position, hand out raw events, classify driver errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pymongo
from bson import Timestamp, json_util
from bson.raw_bson import RawBSONDocument
from pymongo import errors as mongo_errors

from .errors import ErrorContext, EventTooLargeError, HistoryLostError, TerminalError, TransientError, redact
from .fields import event_fields
from .lifecycle import STRIP_LARGE_FIELDS
from .prefetch import ReadAhead, set_await
from .settings import Settings

log = logging.getLogger(__name__)

# Server codes meaning "the stored position is gone": ChangeStreamHistoryLost, ChangeStreamFatalError,
# CappedPositionLost. InvalidResumeToken and the "resume token not found" code only when opening.
POSITION_LOST = {286, 280, 136}
POSITION_LOST_ON_OPEN = {260, 50811}
AUTH_FAILED = {18, 13, 8000}  # AuthenticationFailed, Unauthorized, Atlas "bad auth"
TOO_LARGE = {10334}  # BSONObjectTooLarge: an event over 16 MB (servers without $changeStreamSplitLargeEvent)


@dataclass(frozen=True)
class Position:
    """Where a stream resumes: a token with how to use it, or a cluster time to start at."""

    kind: str  # "resume_after", "start_after" or "start_at"
    token: str  # canonical Extended JSON of the resume token, or "<seconds>.<increment>" for start_at

    def watch_options(self) -> dict[str, Any]:
        if self.kind == "start_at":
            seconds, _, increment = self.token.partition(".")
            return {"start_at_operation_time": Timestamp(int(seconds), int(increment or 0))}
        return {self.kind: json_util.loads(self.token)}


def token_text(token: Any) -> str:
    return json_util.dumps(token, json_options=json_util.CANONICAL_JSON_OPTIONS)


class DeadLetter(Exception):
    """The next event is over 16 MB and the server cannot deliver it: ``event`` is that event read
    again without its document fields (``lifecycle.STRIP_LARGE_FIELDS``); the stream goes on after it."""

    def __init__(self, event: RawBSONDocument, code: int | None) -> None:
        super().__init__("an event over 16 MB")
        self.event, self.code = event, code


BATCH_SIZE = 2000
MAX_AWAIT_MS = 500  # a read of a quiet stream waits this long for an event before reporting none
READ_AHEAD_SHARE = 8  # the read-ahead holds at most MAX_BUFFER_BYTES / 8 of events not yet taken


def read_ahead_bytes(settings: Settings) -> int:
    """Bytes of events the read-ahead may hold beyond the batches (``MAX_BUFFER_BYTES`` bounds both)."""
    return settings.max_buffer_bytes // READ_AHEAD_SHARE


SINGLE_EVENTS = BATCH_SIZE  # events read one at a time before going back to whole batches


class ChangeSource:
    """One change stream over the configured scope; events come back as ``RawBSONDocument``."""

    def __init__(self, settings: Settings, client: pymongo.MongoClient | None = None) -> None:
        self._settings = settings
        self._own_client = client is None
        self._client = client or pymongo.MongoClient(
            str(settings.mongo_uri),
            document_class=RawBSONDocument,
            appname="mongo-adls-bronze",
            serverSelectionTimeoutMS=15000,
            connectTimeoutMS=10000,
        )
        self._stream = None
        self._position: Position | None = None  # where the stream was opened, until it hands out a token
        self._single = 0  # > 0: reading one event per batch to find an event over 16 MB
        self._pending_error: EventTooLargeError | None = None
        self.invalidated = False
        # Why computed once: ``Settings.secrets`` parses the URI and connection strings, and
        # ``errors()`` runs for every event read.
        self._secrets = settings.secrets

    def open(self, position: Position) -> None:
        """Open the stream at ``position`` (always a concrete one: a token or a cluster time)."""
        self._position = position
        self._open(position, single=False)

    def _open(self, position: Position, single: bool) -> None:
        settings = self._settings
        options: dict[str, Any] = {
            "full_document": None if settings.full_document == "default" else settings.full_document,
            "full_document_before_change": settings.full_document_before_change,
            # Why: a short await lets try_next() report "caught up" quickly instead of blocking the budget.
            "max_await_time_ms": MAX_AWAIT_MS,
            # Why one event per batch: a batch holding an event over 16 MB fails whole, so after such
            # a failure the events before it are read one by one, and the failing read is that event.
            "batch_size": 1 if single else BATCH_SIZE,
            **position.watch_options(),
        }
        if self._stream is not None:  # reopened (after lost history or an event over 16 MB)
            self._stream.close()
            self._stream = None
        self._pending_error = None
        try:
            with self.errors("opening the change stream", opening=True):
                stream = self._target().watch(list(settings.mongo_pipeline), **options)
            # Why not while reading one event per batch: that mode exists to find one event, and a
            # read-ahead would only read past it.
            self._stream = stream if single else ReadAhead(stream, read_ahead_bytes(settings))
        except EventTooLargeError as exc:
            # The first batch of the reopened aggregate holds the event: the next read reports it.
            self._pending_error = exc

    def server_time(self) -> Timestamp:
        """The deployment's current cluster time: where a new pipeline, or one restarted after lost
        history, begins."""
        with self.errors("reading the server's cluster time"):
            return self._client.admin.command("ping")["operationTime"]

    def next_event(self, await_ms: int | None = None) -> RawBSONDocument | None:
        """The next event, or None when none is waiting (caught up). Raises ``DeadLetter`` for an
        event the server cannot deliver. ``await_ms``: how long a read of a quiet stream waits for
        an event this time (default: the 500 ms the stream was opened with)."""
        try:
            if self._pending_error is not None:
                raise self._pending_error
            stream = self._stream
            try:
                if isinstance(stream, ReadAhead):
                    # the read-ahead thread applies it to its next read (reads happen there)
                    event = stream.try_next(await_ms)
                else:
                    set_await(stream, MAX_AWAIT_MS if await_ms is None else await_ms)
                    event = stream.try_next()
            except mongo_errors.PyMongoError as failure:
                # Why not a ``with`` around every read: it runs for every event; failures are rare
                with self.errors("reading the change stream"):
                    raise failure from None
        except EventTooLargeError as exc:
            here = self.position() or self._position
            if not self._single:
                # Which event is too large? Read again from here, one event per batch.
                self._single = SINGLE_EVENTS
                self._open(here, single=True)
                return self.next_event(await_ms)
            # One event per batch and the read still fails: the next event is the large one.
            raise DeadLetter(self._skip_too_large(here), exc.code) from None
        if event is not None:
            if event_fields(event)[0] == "invalidate":
                self.invalidated = True
            if self._single:
                self._single -= 1
                if not self._single:  # no event over 16 MB came: back to whole batches
                    self._open(self.position() or self._position, single=False)
        return event

    def _skip_too_large(self, here: Position) -> RawBSONDocument:
        """The event after ``here``, read again without its document fields; the stream then goes on
        after it with whole batches.

        Why a second stream: mongod fails the cursor on an event over 16 MB and resuming at the
        same token fails again; the same position with a ``$project`` stage yields the event's
        token, namespace and documentKey, and the main stream resumes after that token."""
        options = {**here.watch_options(), "max_await_time_ms": 500, "batch_size": 1,
                   "full_document": None, "full_document_before_change": None}
        stages = list(self._settings.mongo_pipeline) + [STRIP_LARGE_FIELDS]
        with self.errors("reading an event over 16 MB without its document fields", opening=True):
            with self._target().watch(stages, **options) as probe:
                event = None
                for _ in range(10):  # max_await_time_ms each: a few seconds at most
                    event = probe.try_next()
                    if event is not None:
                        break
        if event is None:
            raise TransientError("reading an event over 16 MB without its document fields: the stream "
                                 "returned nothing at its position")
        if event["operationType"] == "invalidate":
            self.invalidated = True
        self._single = 0
        after = Position("start_after" if self.invalidated else "resume_after", token_text(event["_id"]))
        self._position = after
        self._open(after, single=False)
        return event

    def _target(self):
        scope = self._settings.scope
        if scope.kind == "collection":
            return self._client[scope.db][scope.coll]
        if scope.kind == "database":
            return self._client[scope.db]
        return self._client

    def position(self) -> Position | None:
        """The position after the last event handed out (or the post-batch position when caught up);
        None before the stream handed out any token."""
        token = self._stream.resume_token if self._stream is not None else None
        if token is None:
            return self._position if self._position is not None and self._position.kind != "start_at" else None
        return Position("start_after" if self.invalidated else "resume_after", token_text(token))

    def token_cluster(self) -> tuple[int, int] | None:
        """The cluster time of the stream's current (post-batch) resume token, where it can be read."""
        from .snapshot import token_cluster  # deferred: only snapshots ask

        token = self._stream.resume_token if self._stream is not None else None
        return token_cluster(token) if token is not None else None

    def chunk_reader(self):
        """Snapshot chunks read through this source's client (raw BSON) and error handling."""
        from .snapshot import ChunkReader

        return ChunkReader(self._client, self.errors)

    def close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.close()
        finally:
            if self._own_client:
                self._client.close()

    def errors(self, doing: str, opening: bool = False):
        return _MongoErrors(doing, opening, self._secrets)


class _MongoErrors(ErrorContext):
    """Turns driver exceptions into errors with a kind and a message that says what was being done."""

    def __init__(self, doing: str, opening: bool, secrets: tuple[str, ...]) -> None:
        super().__init__(doing, secrets)
        self.opening = opening

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, mongo_errors.PyMongoError):
            return False
        # the server's message without pymongo's ", full error: <reply>" dump (raw BSON bytes here)
        detail = redact(f"{exc.__class__.__name__}: {str(exc).split(', full error:')[0]}", self.secrets)[:500]
        code = getattr(exc, "code", None)
        labels = getattr(exc, "_error_labels", set()) or set()
        if code in POSITION_LOST or (self.opening and code in POSITION_LOST_ON_OPEN):
            error = HistoryLostError(
                f"{self.doing}: the stored position is no longer in the oplog (code {code}); {detail}")
            error.code = code
            raise error from None
        if code in TOO_LARGE:
            error = EventTooLargeError(f"{self.doing}: the next event is over 16 MB (code {code}); {detail}")
            error.code = code
            raise error from None
        if code in AUTH_FAILED or isinstance(exc, mongo_errors.ConfigurationError):
            raise TerminalError(f"{self.doing}: MongoDB refused the credentials or the URI; {detail}") from None
        if "NonResumableChangeStreamError" in labels and not isinstance(exc, mongo_errors.ConnectionFailure):
            raise TerminalError(f"{self.doing}: the change stream cannot continue; {detail}") from None
        if isinstance(exc, mongo_errors.OperationFailure) and code in (2, 9, 40324, 40573, 14, 15974):
            # BadValue, FailedToParse, unknown stage, not a replica set, type mismatch: a settings problem.
            raise TerminalError(f"{self.doing}: MongoDB rejected the stream options; {detail}") from None
        raise TransientError(f"{self.doing}: {detail}") from None
