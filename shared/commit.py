"""The commit of a sealed batch: the one place that orders "record the intent, write, commit".

``Committer.commit`` takes a ``Sealed`` batch (its files, and the checkpoint that follows exactly
its events: position, ``_seq``, the intent that stays open or none) and

1. records the batch's intent in the checkpoint row (conditional on the run lease: see ``intent``),
2. appends and flushes every touched file under this run's file lease (``lake.write``),
3. commits the new checkpoint and the files' states in the Table (``CheckpointStore.commit``),
4. calls the registered after-commit hooks with what the commit made durable.

Before-commit stamps (``Committer.stamps``) run between 2 and 3: they may set fields of the new
checkpoint (what the after-commit hooks will owe the lake), so those are saved in the same Table
transaction as the position. Hooks run after every commit, also one without files (it may close a
failed run's range, whose lines the next run kept).

A failure at any step raises; the run stops there and the next run recovers from the intent.
Hooks run after the position moved: what they write (manifests, markers) is outside the
exactly-once path and must be idempotent by name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from .batch import FileState, PendingFile
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

    def commit(self, sealed: Sealed, final: bool = False) -> list[FileState]:
        """Write, then commit the position; ``final`` also stops renewing and releases the lease."""
        results: list[FileState] = []
        if sealed.files:
            self._lease.check("recording its commit intent")
            self._store.record_intent(self.committed, sealed.intent)
            self._lease.check("writing its batch")
            results = self._lake.write(sealed.files, self._lease_id)
            self.bytes += sum(len(p.data) for p in sealed.files)
            self.files += len(sealed.files)
        done = [CommittedFile(p.path, p.base.length, p.end, p.first_seq, p.last_seq, p.events,
                              p.first_cluster, p.last_cluster, hashlib.sha256(p.data).hexdigest())
                for p in sealed.files]
        for stamp in self.stamps:
            stamp(sealed.checkpoint, done)
        if final:
            self._lease.stop()
        self._failpoint("before_commit")
        self._store.commit(sealed.checkpoint, results + sealed.states, release=final)
        self.committed = sealed.checkpoint
        self.commits += 1
        self._failpoint("after_commit")
        for hook in self.hooks:
            hook(sealed.checkpoint, done)
        return results
