"""One drain run: the only place that orders read -> write -> commit.

1. Load the checkpoint and file states (one Table query) and take the pipeline's run lease.
2. Open the change stream at the stored position (none: ``START_AT``).
3. Read events with ``try_next`` until none is waiting (caught up), the budget ends (leaving time to
   write and commit), or an ``invalidate`` closes the stream. Number each event (``_seq`` = the
   checkpoint's seq + i: a replay from the same checkpoint gives the same numbers), encode it,
   route it to its folder's file, buffer it.
4. ``_commit``: flush every touched file, then save the position in one Table transaction. When
   the buffers reach ``MAX_BUFFER_BYTES`` this happens early and the run goes on.
5. A run with no events still commits the post-batch position, so quiet streams stay fresh.
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

from . import layout, lifecycle
from .batch import Batch
from .checkpoint import Checkpoint, CheckpointStore
from .encode import LineEncoder
from .errors import (
    DrainError,
    EventTooLargeError,
    HistoryLostError,
    LeaseHeldError,
    LeaseLostError,
    kind_of,
    redact,
)
from .failpoints import Failpoints
from .lake import Lake
from .settings import Settings
from .source import ChangeSource, Position

log = logging.getLogger("shared.run")

Clock = Callable[[], float]


def write_reserve(budget: float) -> float:
    """Seconds of the budget kept for the last write and commit."""
    return min(15.0, max(1.0, budget * 0.2))


def lease_seconds(budget: float) -> float:
    """How long a run's lease lasts: a dead run's lease is taken over after this."""
    return budget + 120.0


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
    history_lost: dict | None = None  # the gap when ON_HISTORY_LOST=restart moved the position
    dead_letters: int = 0  # events over 16 MB written to a dead-letter file
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
        self.checkpoint: Checkpoint | None = None  # as last saved by this run (None: not this run's)

    def run(self) -> RunReport:
        settings = self.settings
        store = None
        try:
            store = self._store or CheckpointStore(settings)
            state = store.load()
            checkpoint = store.acquire(state, self.report.run_id, self.started, lease_seconds(settings.drain_budget_seconds))
            lake = self._lake or Lake(settings, failpoint=self.failpoint)
            source = self._source or ChangeSource(settings)
            self.checkpoint = checkpoint
            try:
                self._drain(store, lake, source, state, checkpoint)
            finally:
                source.close()
        except LeaseHeldError as exc:
            self.report.outcome = "skipped"
            self.report.error = {"kind": "lease_held", "message": str(exc)}
            self.checkpoint = None  # not ours: leave the row alone
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
        if self.checkpoint is not None and self.report.outcome == "failed":
            self._save_failure(store, self.checkpoint)
        log.info(json.dumps(self.report.as_dict(), default=str))
        return self.report

    def _drain(self, store: CheckpointStore, lake: Lake, source: ChangeSource, state, checkpoint: Checkpoint):
        settings, report = self.settings, self.report
        deadline = self.started + settings.drain_budget_seconds - write_reserve(settings.drain_budget_seconds)
        encoder = LineEncoder(settings.json_mode)
        batch = Batch(state.files, settings.roll_window_seconds, settings.roll_max_bytes, checkpoint.generation)
        try:
            source.open(checkpoint.position, settings.start_at)
        except HistoryLostError as exc:
            checkpoint = self._restart(store, source, checkpoint, exc)
        self.failpoint("after_open")
        seq = checkpoint.seq
        last_cluster = checkpoint.last_cluster_time
        if checkpoint.gap is not None:
            seq = self._add_gap(batch, encoder, checkpoint.gap, seq)
        outcome = "budget"
        while True:
            try:
                event = source.next_event()
                raw, dead = (event.raw if event is not None else None), False
            except HistoryLostError as exc:
                # the stream fell off the oplog mid-run: keep what was read, then restart (or fail)
                if settings.on_history_lost != "restart":
                    raise
                checkpoint = self._commit(store, lake, source, batch, checkpoint, seq, last_cluster)
                checkpoint = self._restart(store, source, checkpoint, exc)
                seq = self._add_gap(batch, encoder, checkpoint.gap, seq)
                continue
            except EventTooLargeError as exc:
                # the server cannot deliver this event: a dead letter takes its place and its _seq
                event = source.skip_too_large(source.position() or checkpoint.position)
                raw, dead = lifecycle.dead_letter_record(event.raw, exc.code), True
                report.dead_letters += 1
                log.error("pipeline %s: an event over 16 MB (code %s) went to the dead-letter folder: %s",
                          settings.pipeline_name, exc.code, lifecycle.describe_event(event))
            if event is None:
                outcome = "caught_up"
                break
            seq += 1
            cluster_seconds = event["clusterTime"].time
            folder = self._folder(event, cluster_seconds)
            if dead:
                folder = lifecycle.dead_letter_folder(folder)
            batch.add(folder, cluster_seconds, seq, encoder.encode(raw, seq))
            report._touched.add(folder)
            report.events += 1
            report.first_seq = report.first_seq or seq
            report.first_cluster_time = report.first_cluster_time or _iso(cluster_seconds)
            last_cluster = cluster_seconds
            if source.invalidated:
                outcome = "invalidated"
                break
            if batch.bytes >= settings.max_buffer_bytes:
                checkpoint = self._commit(store, lake, source, batch, checkpoint, seq, last_cluster)
            if self.clock() >= deadline:
                break
        self.failpoint("after_drain")
        report.outcome = outcome
        report.last_seq = seq if report.events else None
        report.last_cluster_time = _iso(last_cluster) if report.events else None
        report.lag_seconds = 0.0 if outcome == "caught_up" or last_cluster is None else round(
            max(0.0, self.clock() - last_cluster), 3)
        report.partitions = len(report._touched)
        report.replayed_events_skipped = batch.skipped
        return self._commit(store, lake, source, batch, checkpoint, seq, last_cluster, final=True)

    def _folder(self, event, cluster_seconds: int) -> str:
        ns = event.get("ns")
        db = ns.get("db") if ns is not None else None
        coll = ns.get("coll") if ns is not None else None
        scope = self.settings.scope
        if db is None and scope.db:
            # invalidate events name no namespace: they go with the scope they belong to
            db, coll = scope.db, scope.coll
        return _partition_dir(db, coll, cluster_seconds // 86400)

    def _restart(self, store: CheckpointStore, source: ChangeSource, checkpoint: Checkpoint,
                 exc: HistoryLostError) -> Checkpoint:
        """ON_HISTORY_LOST: ``fail`` re-raises (terminal; the position stays). ``restart`` moves the
        position to the server's current cluster time with the lost window as a pending gap, and
        commits that before reading anything from the new stream: the gap line (next ``_seq``) and
        the events after it are then numbered the same by any replay from this checkpoint."""
        if self.settings.on_history_lost != "restart":
            raise exc
        restart = source.server_time()
        last = checkpoint.last_cluster_time
        if last is None and checkpoint.position is None and self.settings.start_at is not None:
            last = int(self.settings.start_at.timestamp())
        gap = lifecycle.gap_window(last, restart, checkpoint.seq, exc.code, str(exc))
        new = replace(checkpoint, position=Position("start_at", lifecycle.timestamp_text(restart)), gap=gap)
        store.commit(new, [])
        self.checkpoint = new
        self.report.history_lost = gap
        log.error("pipeline %s: the stored position left the oplog; ON_HISTORY_LOST=restart: restarting at %s, "
                  "events after cluster time %s are lost (gap record written)", self.settings.pipeline_name,
                  gap["to"], gap["from"])
        self.failpoint("after_restart")
        source.open(new.position, None)
        return new

    def _add_gap(self, batch: Batch, encoder: LineEncoder, gap: dict, seq: int) -> int:
        """The gap line of a pending restart, numbered right after the checkpoint's ``seq``."""
        scope = self.settings.scope
        seq += 1
        folder = lifecycle.gap_folder(gap, scope.db, scope.coll)
        batch.add(folder, lifecycle.parse_timestamp(gap["to"]).time, seq,
                  encoder.encode(lifecycle.gap_record(gap, scope.db, scope.coll), seq))
        self.report._touched.add(folder)
        self.report.first_seq = self.report.first_seq or seq
        return seq

    def _commit(self, store, lake, source, batch: Batch, checkpoint: Checkpoint, seq: int,
                last_cluster: int | None, final: bool = False) -> Checkpoint:
        """Write, then commit the position: flush every touched file; only then save the position."""
        files = batch.files()
        if files and self.clock() >= checkpoint.lease_until:
            # Why: after its lease another run may own the pipeline; two writers on one folder can
            # both be right about their own files and still write an event twice. Stop unwritten.
            raise LeaseLostError(f"pipeline {self.settings.pipeline_name!r}: this run's lease ran out before "
                                 "it wrote its batch; it stops without writing (the next run continues)")
        results = lake.write(files) if files else []
        self.report.bytes += batch.bytes
        self.report.files += len(files)
        self.report.recovered_files = lake.recoveries
        self.failpoint("before_commit")
        position = source.position() or checkpoint.position
        now = self.clock()
        new = replace(checkpoint, position=position, seq=seq, last_cluster_time=last_cluster,
                      committed_at=datetime.fromtimestamp(now, tz=timezone.utc),
                      gap=None)  # a pending gap's line was in this batch
        if final:
            self.report.commits += 1
            self.report.duration_seconds = round(now - self.started, 3)
            new.last_run = self.report.as_dict()
            new.last_error = None
            new.lease_until = 0.0  # released with the last commit
        store.commit(new, results)
        if not final:
            self.report.commits += 1
        self.checkpoint = new
        self.failpoint("after_commit")
        batch.committed(results)
        if final:
            stale = layout.stale_folders(list(batch.states), last_cluster)
            if stale:
                store.forget_folders(stale)
                for folder in stale:
                    del batch.states[folder]
        return new

    def _save_failure(self, store: CheckpointStore, checkpoint: Checkpoint) -> None:
        failed = replace(checkpoint, last_error={**(self.report.error or {}), "run_id": self.report.run_id,
                                                  "at": _iso(self.clock())},
                         last_run=self.report.as_dict(), lease_until=0.0)
        try:
            store.save_report(failed)
        except DrainError as exc:
            log.warning("could not save the failure report: %s", exc)


@functools.lru_cache(maxsize=4096)
def _partition_dir(db: str | None, coll: str | None, day: int) -> str:
    """``layout.partition_dir`` once per namespace and UTC day: it encodes the names byte by byte,
    which the drain profile showed at about 4 us per event."""
    return layout.partition_dir(db, coll, day * 86400)


def _iso(seconds: float | int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")
