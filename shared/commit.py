"""The commit of a sealed batch: the one place that orders "record the intent, write, commit".

``Committer`` takes a ``Sealed`` batch (its files, and the checkpoint that follows exactly its
events: position, ``_seq``, the intent that stays open or none) and

1. records the batch's intent in the checkpoint row (conditional on the run lease: see ``intent``),
2. appends and flushes every touched file under this run's file lease (``lake.write``),
3. commits the new checkpoint and the files' states in the Table (``CheckpointStore.commit``),
4. calls the registered after-commit hooks with what the commit made durable.

It works in a thread of its own beside the reading (``submit``): at most one commit is in flight,
the next sealed batch waits for it, and a failed commit stops the run before any later batch is
written (the failure is raised to the reader at its next ``submit``, ``wait`` or ``check``); the
next run recovers from the intent. A batch sealed while the previous one is still being written may
append to the same files: their ETags are known only once that commit is done, so such a file's
base carries ``PROJECTED`` and takes the ETag the previous flush returned.

Before-commit stamps (``Committer.stamps``) run between 2 and 3: they may set fields of the new
checkpoint (what the after-commit hooks will owe the lake), so those are saved in the same Table
transaction as the position. Hooks run after every commit, also one without files (it may close a
failed run's range, whose lines the next run kept).

Hooks run after the position moved: what they write (manifests, markers) is outside the
exactly-once path and must be idempotent by name.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Callable

from . import invocation
from .batch import PROJECTED, FileState, PendingFile
from .checkpoint import Checkpoint, CheckpointStore
from .intent import Intent
from .lake import Lake
from .runlease import RunLease


@dataclass
class Sealed:
    """A batch ready to commit."""

    files: list[PendingFile]
    checkpoint: Checkpoint  # what the row says once the batch is durable
    intent: Intent | None  # recorded before the files are written (None when there are none)
    states: list[FileState] = field(default_factory=list)  # more folder rows to save with the commit

    @property
    def bytes(self) -> int:
        return sum(len(p.data) for p in self.files)


@dataclass(frozen=True)
class CommittedFile:
    """What one commit added to one file (for after-commit hooks)."""

    path: str
    start: int  # byte range the commit added: [start, end)
    end: int
    first_seq: int
    last_seq: int
    events: int
    first_cluster: int | None
    last_cluster: int | None
    sha256: str = ""  # hex digest of the bytes [start, end)


Hook = Callable[[Checkpoint, list[CommittedFile]], None]


class Committer:
    def __init__(self, store: CheckpointStore, lake: Lake, lease: RunLease, lease_id: str,
                 committed: Checkpoint, failpoint: Callable[[str], None]) -> None:
        self._store, self._lake, self._lease, self._lease_id = store, lake, lease, lease_id
        self._failpoint = failpoint
        self.committed = committed  # the checkpoint as last saved
        self.hooks: list[Hook] = []
        self.stamps: list[Hook] = []  # before the Table commit: may set fields of the new checkpoint
        self.bytes = self.files = self.commits = 0
        self._etags: dict[str, str] = {}  # path -> ETag after this run's last flush of it
        self._pool = invocation.Executor(max_workers=1, thread_name_prefix="commit")
        self._inflight: Future | None = None
        self.inflight_bytes = 0
        self.results: list[FileState] = []  # the file states of the commits done so far (for the reader)

    # -- the pipeline --------------------------------------------------------------------------
    def submit(self, sealed: Sealed) -> None:
        """Commit ``sealed`` in the committer's thread, after the commit in flight (if any) is done."""
        self.wait()
        self.inflight_bytes = sealed.bytes
        self._inflight = self._pool.submit(self.commit, sealed)

    def wait(self) -> None:
        """Until no commit is in flight; raises the failure of the last one."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            try:
                inflight.result()
            finally:
                self.inflight_bytes = 0

    @property
    def busy(self) -> bool:
        return self._inflight is not None and not self._inflight.done()

    def check(self) -> None:
        """Raise now if the commit in flight failed (the reader stops early)."""
        if self._inflight is not None and self._inflight.done():
            self.wait()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- one commit ----------------------------------------------------------------------------
    def commit(self, sealed: Sealed, final: bool = False, control: bool = False) -> list[FileState]:
        """Write, then commit the position; ``final`` also stops renewing and releases the lease.
        ``control``: a commit of the position alone (first position, restart, recovered files),
        which the failpoints of batch commits do not count."""
        results: list[FileState] = []
        if sealed.files:
            for pending in sealed.files:
                if pending.base.etag == PROJECTED:  # the file the previous commit flushed
                    pending.base = replace(pending.base, etag=self._etags[pending.base.path])
            self._lease.check("recording its commit intent")
            self._store.record_intent(self.committed, sealed.intent)
            self._lease.check("writing its batch")
            results = self._lake.write(sealed.files, self._lease_id)
            self.bytes += sealed.bytes
            self.files += len(sealed.files)
        done = [CommittedFile(p.path, p.base.length, p.end, p.first_seq, p.last_seq, p.events,
                              p.first_cluster, p.last_cluster, hashlib.sha256(p.data).hexdigest())
                for p in sealed.files]
        for stamp in self.stamps:
            stamp(sealed.checkpoint, done)
        if final:
            self._lease.stop()
        if not control:
            self._failpoint("before_commit")
        self._store.commit(sealed.checkpoint, results + sealed.states, release=final)
        self.committed = sealed.checkpoint
        self.commits += 0 if control else 1
        for state in results + sealed.states:
            if state.etag is not None:
                self._etags[state.path] = state.etag
        self.results.extend(results + sealed.states)
        if not control:
            self._failpoint("after_commit")
        for hook in self.hooks:
            hook(sealed.checkpoint, done)
        return results
