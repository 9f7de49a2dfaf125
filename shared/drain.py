"""One drain run: reads the change stream, numbers and routes events, and hands sealed batches to
the committer (``commit``), the only place that orders "record the intent, write, commit".

1. Load the checkpoint and file states (one Table query) and take the pipeline's run lease (a new
   pipeline: the row is created at a concrete first position, ``START_AT`` or the server's time).
2. An intent in the row means a run wrote and did not commit: read its files back (``lake.recover``,
   which also fences that run's requests) and skip, by resume token, every event already there.
3. Open the change stream at the stored position and read with ``try_next`` until none is waiting
   (caught up), the budget ends (leaving time to write and commit), or an ``invalidate`` closes the
   stream. Number each event (``intent.Numbering``), encode it, route it to its folder's file.
4. Seal and commit the batch when the buffers reach ``MAX_BUFFER_BYTES`` and at the end.
5. A run with no events still commits the post-batch position, so quiet streams stay fresh.
6. With ``SNAPSHOT`` on, whenever a collection is being copied and no chunk is waiting, read its next
   chunk between two watermarks and write its rows once the stream has passed the second
   (``shared.snapshot``); the copy's progress is part of the checkpoint each batch seals.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Mapping

from . import layout, lifecycle, per_event, runlease, snapshot
from .batch import MAX_FILES_PER_BATCH, Batch
from .checkpoint import Checkpoint, CheckpointStore
from .commit import Committer, Sealed
from .encode import LineEncoder
from .errors import DrainError, HistoryLostError, LeaseHeldError, kind_of, redact
from .failpoints import Failpoints
from .fields import event_fields
from .intent import Intent, Numbering, gap_key
from .lake import Lake
from .publisher import Publisher
from .runlease import RunLease
from .settings import Settings
from .source import ChangeSource, DeadLetter, Position, read_ahead_bytes

log = logging.getLogger("shared.run")

Clock = Callable[[], float]
MAX_FOLDERS_PER_BATCH = 1000  # keeps a batch's intent well inside the checkpoint row
# A batch this large is sealed as soon as the committer is free, so writing overlaps reading and the
# run's last commit (which nothing overlaps) stays small; a busy committer lets it grow to half of
# MAX_BUFFER_BYTES (the other half is the batch being written).
EARLY_SEAL_BYTES = 8 * 1024 * 1024
CHUNK_AWAIT_MS = 20  # how long a read waits for an event while a snapshot chunk waits for the stream


def write_reserve(budget: float) -> float:
    """Seconds of the budget kept for the last write and commit."""
    return min(15.0, max(1.0, budget * 0.2))


@dataclass
class RunReport:
    pipeline: str
    run_id: str
    started_at: str
    outcome: str = "failed"  # caught_up, budget, invalidated, skipped, failed
    events: int = 0
    replayed_events_skipped: int = 0
    bytes: int = 0
    files: int = 0
    partitions: int = 0
    commits: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_cluster_time: str | None = None
    last_cluster_time: str | None = None
    lag_seconds: float | None = None
    duration_seconds: float = 0.0
    recovered_files: int = 0
    retired_seqs: int = 0  # numbers of a failed run's range that no line holds (see intent.Numbering)
    history_lost: dict | None = None  # the gap when ON_HISTORY_LOST=restart moved the position
    dead_letters: int = 0  # events over 16 MB written to a dead-letter file
    snapshot_rows: int = 0  # snapshot rows written (see shared.snapshot)
    snapshot: list | None = None  # per collection being copied: copied, estimate, rate, warning
    late_events: int = 0  # events for a day whose _SUCCESS markers were already written (see publisher)
    table_requests: int = 0
    error: dict | None = None
    _touched: set = field(default_factory=set, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def run_drain(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    source: ChangeSource | None = None,
    lake: Lake | None = None,
    store: CheckpointStore | None = None,
    clock: Clock = time.time,
) -> RunReport:
    """Run one drain and return its report (also logged as one JSON line). A failed run does not
    raise: the report's ``outcome`` is ``failed`` and ``error`` has its kind and message."""
    run = _DrainRun(settings, env if env is not None else os.environ, source, lake, store, clock)
    return run.run()


class _DrainRun:
    def __init__(self, settings, env, source, lake, store, clock) -> None:
        self.settings = settings
        self.clock = clock
        self.failpoint = Failpoints(env)
        self.started = clock()
        self.report = RunReport(settings.pipeline_name, uuid.uuid4().hex[:12], _iso(self.started))
        self._source, self._lake, self._store = source, lake, store
        self.exception: BaseException | None = None
        self.committer: Committer | None = None  # once this run holds the lease
        self.copier: snapshot.Copier | None = None  # the run's snapshot work (see _drain)
        self.scope = settings.scope  # read for every event

    def run(self) -> RunReport:
        settings = self.settings
        store = None
        try:
            store = self._store or CheckpointStore(settings)
            state = store.load()
            source = self._source or ChangeSource(settings)
            try:
                checkpoint = store.acquire(state, self.report.run_id, self.started, runlease.RUN_LEASE_SECONDS)
                lease = RunLease(store, self.clock, runlease.RUN_LEASE_SECONDS, runlease.RENEW_EVERY_SECONDS)
                lease.start()
                try:
                    lake = self._lake or Lake(settings, failpoint=self.failpoint)
                    lake.deadline.until, lake.deadline.clock = lease.deadline, self.clock
                    lease_id = str(uuid.uuid4())  # this run's file leases
                    writer = lake  # the one place the layout's writer is chosen (FILE_LAYOUT)
                    if settings.file_layout == per_event.PER_EVENT:
                        writer = per_event.PerEventWriter(settings, lake, failpoint=self.failpoint)
                    self.committer = Committer(store, writer, lease, lease_id, checkpoint, self.failpoint)
                    # manifests and day markers: after-commit hooks (pays first what a failed run owed)
                    Publisher(settings, checkpoint, self.report, self.failpoint).attach(self.committer)
                    try:
                        self._drain(state, source, lake, lease_id)
                    finally:
                        self.committer.close()
                finally:
                    lease.stop()
            finally:
                if self.copier is not None:
                    self.copier.close_scan()  # its read-ahead thread ends before the client closes
                source.close()
        except LeaseHeldError as exc:
            self.report.outcome = "skipped"
            self.report.error = {"kind": "lease_held", "message": str(exc)}
            self.committer = None  # not ours: leave the row alone
        except Exception as exc:  # every failure ends in the report; the position stays where it was
            self.exception = exc
            self.report.outcome = "failed"
            self.report.error = {
                "kind": kind_of(exc),
                "message": redact(str(exc) if isinstance(exc, DrainError) else f"{exc.__class__.__name__}: {exc}",
                                  settings.secrets)[:2000],
            }
        self.report.duration_seconds = round(self.clock() - self.started, 3)
        if store is not None:
            self.report.table_requests = store.requests
        if self.committer is not None and self.report.outcome == "failed":
            # the row keeps the intent a failed commit recorded: the next run recovers from it
            self._save_failure(store, self.committer.committed)  # the store keeps the intent the row holds
        log.info(json.dumps(self.report.as_dict(), default=str))
        return self.report

    def _first_position(self, source: ChangeSource) -> Position:
        """Where a new pipeline starts: ``START_AT``, or the server's cluster time for ``now``. Stored
        with the first lease, before anything is read, so a replay of a failed first run reads the
        same events (never a new "now")."""
        if self.settings.start_at is not None:
            return Position("start_at", f"{int(self.settings.start_at.timestamp())}.0")
        return Position("start_at", lifecycle.timestamp_text(source.server_time()))

    def _drain(self, state, source: ChangeSource, lake: Lake, lease_id: str) -> None:
        settings, report, committer = self.settings, self.report, self.committer
        if committer.committed.position is None:
            # A new pipeline: store a concrete first position (START_AT, or the server's time for
            # "now") before anything is read, so a replay of a failed first run reads the same events.
            first = self._first_position(source)
            plan = None
            if settings.snapshot != "off":  # the collections as they are after the first position
                plan = snapshot.Progress()
                start = lifecycle.parse_timestamp(first.token)
                plan.start(source.chunk_reader().namespaces(settings.scope), "initial", (start.time, start.inc))
            committer.commit(Sealed([], replace(committer.committed, position=first, origin=first.token,
                                                snapshot=plan), None), control=True)
        checkpoint = self.planned = committer.committed  # planned: the checkpoint after the last sealed batch
        deadline = self.deadline = (self.started + settings.drain_budget_seconds
                                    - write_reserve(settings.drain_budget_seconds))
        self.encoder = LineEncoder(settings.json_mode)
        if settings.file_layout == per_event.PER_EVENT:
            self.batch = per_event.EventBatch(checkpoint.generation, state.files)
        else:
            self.batch = Batch(state.files, settings.roll_window_seconds, settings.roll_max_bytes,
                               checkpoint.generation)
        self.numbering = Numbering(checkpoint.seq)
        self.carry: Intent | None = None  # an open range of a failed run, until a commit passes its end
        self.last_cluster = checkpoint.last_cluster_time
        self.last_read: tuple[str, tuple[int, int]] | None = None  # key and cluster time of the last event read
        self.batch_first: int | None = None
        self.gap_added = False  # the pending gap's line is in this run's batches (or already durable)
        self.copier = self._copier(source, checkpoint)
        self.chunk_files = 0  # files the waiting chunk may add to the batch (see _room_for_chunk)
        if checkpoint.intent is not None:
            self._recover(checkpoint, lake, lease_id)
        try:
            source.open(checkpoint.position)
        except HistoryLostError as exc:
            self._restart(source, exc)
        self.failpoint("after_open")
        if committer.committed.gap is not None:
            self._add_gap(committer.committed.gap)
        outcome = "budget"
        # MAX_BUFFER_BYTES bounds the events read ahead, the batch filling and the one being written
        # (and, while copying, a chunk waiting for the stream)
        seal_at = self.seal_at = max(1, (settings.max_buffer_bytes - read_ahead_bytes(settings))
                                     // (3 if self.copier is not None else 2))
        while True:
            dead = None
            if committer.busy:
                self.failpoint("during_commit")  # an event read while the previous batch is written
            else:
                committer.check()  # a failed commit stops the reading
            try:
                # a chunk waiting for the stream to pass its high watermark: quiet reads return soon
                waiting = self.copier is not None and self.copier.window is not None
                event = source.next_event(CHUNK_AWAIT_MS) if waiting else source.next_event()
            except HistoryLostError as exc:
                # the stream fell off the oplog mid-run: keep what was read, then restart (or fail)
                if not self._restarts_on_loss:
                    raise
                self._commit(source)
                self._restart(source, exc)
                self._add_gap(committer.committed.gap)
                continue
            except DeadLetter as letter:
                # the server cannot deliver this event: a dead letter takes its place and its _seq
                event, dead = letter.event, letter.code
                report.dead_letters += 1
                log.error("pipeline %s: an event over 16 MB (code %s) went to the dead-letter folder: %s",
                          settings.pipeline_name, dead, lifecycle.describe_event(event))
            if event is None:
                self.numbering.end_of_range()  # caught up: no event of an open range is still to come
                if self.copier is not None and self.copier.busy and self.clock() >= deadline:
                    break  # the budget ends while copying: a waiting chunk is read again next time
                if self._snapshot_step(source):
                    continue
                outcome = "caught_up"
                break
            operation, seconds, increment, key, db, coll = event_fields(event)
            if self.copier is not None and self.copier.busy:
                pair = (seconds, increment)
                window = self.copier.window
                if window is not None and window.closes_at(pair):
                    self._write_chunk(window)  # the chunk's rows go before the first event after it
                self.copier.on_event(event, pair)
            self.last_read = (key, (seconds, increment))
            seq = self.numbering.assign(key, self.last_read[1])
            if seq is not None:
                folder = self._folder(db, coll, seconds)
                raw = event.raw
                if dead is not None:
                    folder = lifecycle.dead_letter_folder(folder)
                    raw = lifecycle.dead_letter_record(raw, dead)
                self._add(folder, seconds, seq, self.encoder.encode(raw, seq), operation, key)
            if self.copier is not None and self.copier.window is None and self.copier.has_work:
                self._snapshot_step(source)  # a stream that is never caught up still gets chunks
            if source.invalidated:
                self.numbering.end_of_range()
                outcome = "invalidated"
                break
            size = self.batch.bytes
            if size >= seal_at or self.batch.folders >= MAX_FOLDERS_PER_BATCH or self.batch.full or (
                    size >= EARLY_SEAL_BYTES and not committer.busy) or not self._room_for_chunk():
                self._commit(source)
            if self.clock() >= deadline:
                break
        self.failpoint("after_drain")
        if self.copier is not None:
            self.copier.discard()  # a chunk still waiting for the stream is read again next time
            report.snapshot = self.copier.report()
        report.outcome = outcome
        report.replayed_events_skipped = self.numbering.skipped
        report.retired_seqs = self.numbering.retired
        report.last_cluster_time = _iso(self.last_cluster) if report.events else None
        report.lag_seconds = 0.0 if outcome == "caught_up" or self.last_cluster is None else round(
            max(0.0, self.clock() - self.last_cluster), 3)
        report.partitions = len(report._touched)
        self._commit(source, final=True)

    def _add(self, folder: str, cluster_seconds: int, seq: int, line: bytes, operation: str | None = None,
             key: str | None = None) -> None:
        self.batch.add(folder, cluster_seconds, seq, line, operation, key)
        report = self.report
        report._touched.add(folder)
        report.events += 1
        report.first_seq = report.first_seq or seq
        report.last_seq = seq if report.last_seq is None else max(report.last_seq, seq)
        report.first_cluster_time = report.first_cluster_time or _iso(cluster_seconds)
        self.last_cluster = cluster_seconds if self.last_cluster is None else max(self.last_cluster, cluster_seconds)
        if self.batch_first is None:
            self.batch_first = seq

    def _recover(self, checkpoint: Checkpoint, lake: Lake, lease_id: str) -> None:
        """A run wrote and did not commit: fence and read back the files of its intent, make their
        folder rows true, and skip by resume token what it made durable."""
        intent = checkpoint.intent
        recovery = lake.recover(intent.files, lease_id)
        # FILE_LAYOUT=per_event folders: listed; read back too while copying (the keys and cluster
        # times of snapshot rows, which their names do not carry; see intent.Numbering)
        listed = per_event.recover(lake, intent, checkpoint.generation,
                                   read_back=self.copier is not None and self.copier.has_work)
        self.report.recovered_files = lake.recoveries + listed.files
        self.numbering = Numbering(checkpoint.seq, intent, {**recovery.durable, **listed.durable}, listed.hashed,
                                   durable_clusters={**recovery.clusters, **listed.clusters})
        if self.copier is not None:
            self.numbering.release(self.copier.progress.pending)
        self.carry = intent
        self.batch.adopt(recovery.states)
        if recovery.last_cluster is not None:
            self.last_cluster = max(self.last_cluster or 0, recovery.last_cluster)
        self.committer.commit(Sealed([], checkpoint, None, recovery.states), control=True)
        self.planned = self.committer.committed
        log.warning("pipeline %s: a run wrote %d lines and did not commit; they are kept and will not be "
                    "written again", self.settings.pipeline_name, recovery.lines + listed.files)

    def _folder(self, db: str | None, coll: str | None, cluster_seconds: int) -> str:
        scope = self.scope
        if db is None and scope.db:
            # invalidate events name no namespace: they go with the scope they belong to
            db, coll = scope.db, scope.coll
        return _partition_dir(db, coll, cluster_seconds // 86400)

    def _restart(self, source: ChangeSource, exc: HistoryLostError) -> None:
        """ON_HISTORY_LOST: ``fail`` re-raises (terminal; the position stays). ``restart`` moves the
        position to the server's current cluster time with the lost window as a pending gap, and
        commits that before reading anything from the new stream: the gap line (next ``_seq``) and
        the events after it are then numbered the same by any replay from this checkpoint. Lines a
        failed run made durable stay; its range is closed first (see ``intent.Numbering``)."""
        if not self._restarts_on_loss:
            raise exc
        self.committer.wait()
        self.numbering.close()
        restart = source.server_time()
        last = self.last_cluster
        committed = self.committer.committed
        if last is None and committed.origin is not None:
            last = lifecycle.parse_timestamp(committed.origin).time
        gap = lifecycle.gap_window(last, restart, self.numbering.seq, exc.code, str(exc))
        progress = committed.snapshot
        if self.copier is not None:
            self.copier.discard()
            if self.settings.snapshot == "when_needed":  # what changed in the gap: copy everything again
                self.copier.progress.start(source.chunk_reader().namespaces(self.settings.scope), "history_lost",
                                           (restart.time, restart.inc))
            progress = self.copier.progress.clone()
        new = replace(committed, position=Position("start_at", lifecycle.timestamp_text(restart)), gap=gap,
                      seq=self.numbering.seq, intent=None, last_cluster_time=self.last_cluster, snapshot=progress)
        self.committer.commit(Sealed([], new, None), control=True)
        self.planned = new
        self.carry = None
        self.gap_added = False
        self.report.history_lost = gap
        log.error("pipeline %s: the stored position left the oplog; ON_HISTORY_LOST=restart: restarting at %s, "
                  "events after cluster time %s are lost (gap record written)", self.settings.pipeline_name,
                  gap["to"], gap["from"])
        self.failpoint("after_restart")
        source.open(new.position)

    @property
    def _restarts_on_loss(self) -> bool:
        return self.settings.on_history_lost == "restart" or self.settings.snapshot == "when_needed"

    def _copier(self, source: ChangeSource, checkpoint: Checkpoint) -> snapshot.Copier | None:
        """The run's snapshot work: copies in progress, and requests stored by ``python -m shared snapshot``."""
        progress = checkpoint.snapshot
        if progress is None and self.settings.snapshot != "when_needed":
            return None
        scope = self.settings.scope
        chunk_docs = self.settings.snapshot_chunk_docs
        if self.settings.file_layout == per_event.PER_EVENT:
            # a row a file: a chunk's rows fit a batch (MAX_FILES_PER_BATCH files) with room to spare
            chunk_docs = min(chunk_docs, MAX_FILES_PER_BATCH // 2)
        copier = snapshot.Copier(progress.clone() if progress else snapshot.Progress(), source.chunk_reader(),
                                 self.clock, lambda db, coll: _in_scope(scope, db, coll),
                                 chunk_docs, self.settings.max_buffer_bytes // 16)
        # a request's copy starts from the committed position (the same for a replay of this run)
        last = checkpoint.last_cluster_time
        if last is None and checkpoint.origin is not None:
            last = lifecycle.parse_timestamp(checkpoint.origin).time
        for ns in copier.start_requests((last, 0) if last is not None else None):
            log.warning("pipeline %s: snapshot request for %s ignored: not in the scope (%s)",
                        self.settings.pipeline_name, ns, scope.describe())
        # the oplog window (for the warning that a copy may outlast it), every 10 minutes at most, once
        # a copy has a rate to compare with it: reading it costs a sorted read of the oplog on some
        # servers, which a copy that ends within its first run need not pay
        if (any(c.copied for c in copier.progress.copies)
                and (copier.progress.oplog_checked or 0) < self.clock() - 600):
            copier.progress.oplog_window = copier.reader.oplog_window()  # every 10 minutes at most
            copier.progress.oplog_checked = round(self.clock())
        return copier

    def _snapshot_step(self, source: ChangeSource) -> bool:
        """Write the chunk waiting for this moment (caught up), or read the next one. False when there
        is no snapshot work left (or none may start now: a failed run's range is still being replayed)."""
        copier = self.copier
        if copier is None:
            return False
        window = copier.window
        if window is not None:
            if not copier.stream_passed(window, source.token_cluster()):
                return True
            self._write_chunk(window)
            if self.batch.bytes >= self.seal_at or self.batch.full:
                self._commit(source)
            # the next chunk at once (a read of the stream now would wait for nothing)
            if self.clock() >= self.deadline or self.numbering.replaying:
                return True
        if not copier.has_work or (self.numbering.replaying and not self.numbering.hold):
            return False
        while True:
            window = copier.open_window()
            self.failpoint("snapshot_chunk_read")
            self.chunk_files = self._chunk_files(window)
            if not self._room_for_chunk() and self.batch.file_count:
                self._commit(source)  # the chunk's rows, and an event after them, go in the next batch
            if not copier.stream_reached(window, source.token_cluster()):
                return True  # written meanwhile: read the stream up to the chunk's high watermark
            # nothing was written since the stream's position: the rows go now, and the next chunk
            self._write_chunk(window)
            if self.batch.bytes >= self.seal_at or self.batch.full:
                self._commit(source)
            if not copier.has_work or self.clock() >= self.deadline or self.numbering.replaying:
                return True

    def _chunk_files(self, window: snapshot.Window) -> int:
        """Files a chunk's rows may add to a batch: one a row and one for the copy's end line with
        ``FILE_LAYOUT=per_event``; in rolling files its folder's file and the parts its bytes roll into."""
        if self.settings.file_layout == per_event.PER_EVENT:
            return len(window.docs) + 1
        return sum(len(doc) for doc in window.docs) // max(1, self.settings.roll_max_bytes) + 2

    def _room_for_chunk(self) -> bool:
        """Whether the chunk waiting for the stream fits the batch being filled, with the event that
        closes its window after it (written before that event, it cannot wait for the next batch):
        a commit names at most ``MAX_FILES_PER_BATCH`` files."""
        if self.copier is None or self.copier.window is None:
            return True
        return self.batch.file_count + self.chunk_files + 1 <= MAX_FILES_PER_BATCH

    def _write_chunk(self, window: snapshot.Window) -> None:
        """The chunk's rows (less the keys the stream touched meanwhile) at the chunk's high watermark."""
        copier, numbering = self.copier, self.numbering
        t = window.high[0]
        folder = _partition_dir(window.db, window.coll, t // 86400)
        rows = 0
        key = None
        for key, raw in copier.rows(window):
            rows += 1
            seq = numbering.assign(key, window.high)
            if seq is not None:
                self._add(folder, t, seq, self.encoder.encode(raw, seq), "snapshot", key)
                self.report.snapshot_rows += 1
        end = copier.end_line(window)
        if end is not None:  # the copy's last chunk: a line that says it is complete
            key = end[0]
            seq = numbering.assign(key, window.high)
            if seq is not None:
                self._add(folder, t, seq, self.encoder.encode(end[1], seq), "snapshotEnd", key)
        if key is not None:
            self.last_read = (key, window.high)
        copier.chunk_done(window, rows)
        numbering.release(copier.progress.pending)
        self.failpoint("snapshot_rows_added")

    def _add_gap(self, gap: dict) -> None:
        """The gap line of a pending restart, numbered right after the checkpoint's ``seq``."""
        scope = self.settings.scope
        to = lifecycle.parse_timestamp(gap["to"])
        seq = self.numbering.assign(gap_key(gap), (to.time, to.inc))
        self.gap_added = True
        if seq is None:
            return  # a failed run made it durable already
        self._add(lifecycle.gap_folder(gap, scope.db, scope.coll), to.time, seq,
                  self.encoder.encode(lifecycle.gap_record(gap, scope.db, scope.coll), seq), "gap", gap_key(gap))

    def _commit(self, source: ChangeSource, final: bool = False) -> None:
        """Seal the batch with the position after its last event and hand it to the committer: in
        its thread (the reading goes on), or, for the run's last commit, here once all is done."""
        committer, report = self.committer, self.report
        if final:
            committer.wait()
        sealed = self._seal(source)
        if not final:
            committer.submit(sealed)
            return
        now = self.clock()
        report.commits = committer.commits + 1
        report.duration_seconds = round(now - self.started, 3)
        report.bytes, report.files = committer.bytes + sealed.bytes, committer.files + len(sealed.files)
        sealed.checkpoint.last_run = report.as_dict()
        sealed.checkpoint.last_error = None
        committer.commit(sealed, final=True)
        report.bytes, report.files, report.commits = committer.bytes, committer.files, committer.commits
        stale = layout.stale_folders(list(self.batch.states), self.last_cluster)
        if stale:
            committer._store.forget_folders(stale)

    def _seal(self, source: ChangeSource) -> Sealed:
        """The batch as a ``Sealed`` one: its files, the checkpoint that follows exactly its events,
        and its intent (which stays open while a failed run's range is being replayed)."""
        planned, numbering = self.planned, self.numbering
        files = self.batch.seal()
        paths, folders = self.batch.intent_of(files)  # per-event batches record folders, not files
        carry = self.carry
        if numbering.replaying:  # the failed run's range goes on past this batch: it stays open
            kept = carry.extended(paths, numbering.highest(), folders=folders)
            intent = kept
        else:
            key, cluster = self.last_read if self.last_read else (None, None)
            if carry is not None:
                intent = carry.extended(paths, numbering.highest(), key, cluster, ends_later=True, folders=folders)
            else:
                intent = Intent(self.batch_first or numbering.seq + 1, numbering.seq, key, cluster, paths, folders)
            kept = None
        new = replace(planned, position=source.position() or planned.position, seq=numbering.seq, intent=kept,
                      last_cluster_time=self.last_cluster,
                      committed_at=datetime.fromtimestamp(self.clock(), tz=timezone.utc),
                      gap=None if self.gap_added else planned.gap,
                      snapshot=self.copier.progress.clone() if self.copier is not None else planned.snapshot)
        self.planned, self.carry, self.batch_first = new, kept, None
        return Sealed(files, new, intent if files else None, self.batch.rows_ahead(files))

    def _save_failure(self, store: CheckpointStore, checkpoint: Checkpoint) -> None:
        failed = replace(checkpoint, last_error={**(self.report.error or {}), "run_id": self.report.run_id,
                                                  "at": _iso(self.clock())},
                         last_run=self.report.as_dict())
        try:
            store.save_report(failed)
        except DrainError as exc:
            log.warning("could not save the failure report: %s", exc)


@functools.lru_cache(maxsize=4096)
def _partition_dir(db: str | None, coll: str | None, day: int) -> str:
    """``layout.partition_dir`` once per namespace and UTC day: it encodes the names byte by byte,
    which the drain profile showed at about 4 us per event."""
    return layout.partition_dir(db, coll, day * 86400)


def _in_scope(scope, db: str, coll: str) -> bool:
    if scope.kind == "collection":
        return (db, coll) == (scope.db, scope.coll)
    if scope.kind == "database":
        return db == scope.db
    return db not in snapshot.SYSTEM_DATABASES


def _iso(seconds: float | int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")
