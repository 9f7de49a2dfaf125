"""Routing and buffering of numbered lines into per-file batches. Pure: no I/O.

A ``FileState`` is what the checkpoint table records per partition folder after each commit: the
file the folder appends to, its committed length and ETag. A ``Batch`` routes each numbered line to
its folder's file (rolling by window and size, see ``layout``) and keeps the bytes per file until
the commit. Which events a replay must skip is decided before a line reaches the batch (by resume
token, see ``replay``), so routing may differ freely between a run and its replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import layout

# The ETag of a file a batch still being committed appends to: known once that commit is done.
PROJECTED = "<projected>"


# A commit names at most this many files. Why: its manifest waits in the checkpoint row until it is
# written (``publisher``), compressed at about 90 characters a file against the row's 240,000 for
# it, and a manifest a failed publish left owed must fit beside the next one.
MAX_FILES_PER_BATCH = 1000


@dataclass(frozen=True)
class FileState:
    dir: str
    window: int
    part: int
    length: int
    etag: str | None  # None: the file has not been created yet
    gen: str  # the pipeline generation that owns the file (part of its name)

    @property
    def path(self) -> str:
        return f"{self.dir}/{layout.file_name(self.window, self.part, self.gen)}"

    @property
    def order(self) -> tuple[int, int]:
        """Files of one folder are written in this order: a newer state has a larger one."""
        return (self.window, self.part)


@dataclass
class PendingFile:
    """New lines for one file: appended at ``base.length`` with ``If-Match: base.etag``."""

    base: FileState
    data: bytearray = field(default_factory=bytearray)
    first_seq: int = 0
    last_seq: int = 0
    events: int = 0
    first_cluster: int | None = None  # cluster seconds of the first and last line
    last_cluster: int | None = None

    @property
    def path(self) -> str:
        return self.base.path

    @property
    def end(self) -> int:
        return self.base.length + len(self.data)

    def add(self, seq: int, cluster_seconds: int, line: bytes) -> None:
        self.data += line
        if not self.events:
            self.first_seq, self.first_cluster = seq, cluster_seconds
        self.last_seq, self.last_cluster = seq, cluster_seconds
        self.events += 1


def newest(states) -> dict[str, FileState]:
    """The newest state of each folder among ``states`` (a later one wins a tie)."""
    latest: dict[str, FileState] = {}
    for state in states:
        known = latest.get(state.dir)
        if known is None or state.order >= known.order:
            latest[state.dir] = state
    return latest


class Batch:
    """Lines waiting for the next commit, grouped by file."""

    def __init__(self, states: dict[str, FileState], window_seconds: int, max_file_bytes: int, gen: str) -> None:
        self.gen = gen
        self.states = states  # folder -> state as last committed (updated by ``committed``)
        self.window_seconds = window_seconds
        self.max_file_bytes = max_file_bytes
        self.pending: dict[str, PendingFile] = {}  # folder -> lines of its current file (in order)
        self.sealed: list[PendingFile] = []  # files of this batch the folder already rolled past
        self.bytes = 0
        self.events = 0

    def add(self, folder: str, cluster_seconds: int, seq: int, line: bytes, operation: str | None = None,
            key: str | None = None) -> None:
        """Route a numbered line to its folder's file (``operation`` and ``key``: per-event layout only)."""
        window = layout.window_start(cluster_seconds, self.window_seconds)
        pending = self.pending.get(folder)
        current = pending.base if pending else self.states.get(folder)
        open_now = None
        if current is not None:
            length = current.length + (len(pending.data) if pending else 0)
            open_now = layout.OpenFile(current.window, current.part, length)
        target = layout.next_file(open_now, window, len(line), self.max_file_bytes)
        if pending is None or (target.window, target.part) != pending.base.order:
            if pending is not None:
                self.sealed.append(pending)
            if current is not None and (target.window, target.part) == current.order:
                base = current  # appending to the committed file
            else:
                base = FileState(folder, target.window, target.part, 0, None, self.gen)
            pending = self.pending[folder] = PendingFile(base)
        pending.add(seq, cluster_seconds, line)
        self.bytes += len(line)
        self.events += 1

    @property
    def folders(self) -> int:
        return len(self.pending)

    @property
    def full(self) -> bool:
        """As many files as a commit's manifest may name (``MAX_FILES_PER_BATCH``)."""
        return len(self.sealed) + len(self.pending) >= MAX_FILES_PER_BATCH

    def files(self) -> list[PendingFile]:
        """Every file with new lines, sealed parts first within a folder (they precede in order)."""
        return self.sealed + list(self.pending.values())

    def seal(self) -> list[PendingFile]:
        """The batch's files, and an empty batch whose folders go on where these files will end
        (lengths known; ETags ``PROJECTED`` until the commit of these files is done)."""
        files = self.files()
        for folder, pending in self.pending.items():
            self.states[folder] = replace(pending.base, length=pending.end, etag=PROJECTED)
        self.pending = {}
        self.sealed = []
        self.bytes = self.events = 0
        return files

    @staticmethod
    def intent_of(files: list[PendingFile]) -> tuple[dict[str, int], list[str]]:
        """What a commit intent records of these files: each path with its length before the batch."""
        return {p.path: p.base.length for p in files}, []

    def adopt(self, states) -> None:
        """Make ``states`` the folders' current files where they are at least as new."""
        for folder, state in newest(states).items():
            known = self.states.get(folder)
            if known is None or state.order >= known.order:
                self.states[folder] = state
