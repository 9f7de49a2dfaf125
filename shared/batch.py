"""Routing and buffering of numbered lines into per-file batches. Pure: no I/O.

A ``FileState`` is what the checkpoint table records per partition folder after each commit: the
file the folder appends to, its committed length and ETag. A ``Batch`` routes each numbered line to
its folder's file (rolling by window and size, see ``layout``) and keeps the bytes per file until
the commit. Which events a replay must skip is decided before a line reaches the batch (by resume
token, see ``replay``), so routing may differ freely between a run and its replay.

A replay after a failed run starts with the files that run wrote (``adopt``): a folder's lines go to
the recovered file of their own window (its newest part), so a replay that reads events of an
earlier window than the failed run's last file puts them where a run that never failed would have.
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
        # files a failed run wrote, read back and not appended to since: folder -> (window, part) -> state
        self.recovered: dict[str, dict[tuple[int, int], FileState]] = {}
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
        found = self._recovered_file(folder, window, current, pending is None)
        if found is not None:  # the window's file a failed run wrote: the folder goes on there
            target = layout.roll_if_full(layout.OpenFile(found.window, found.part, found.length), len(line),
                                         self.max_file_bytes)
        order = (target.window, target.part)
        if pending is None or order != pending.base.order:
            if pending is not None:
                self.sealed.append(pending)
            if found is not None and order == found.order:
                base = found
            elif current is not None and order == current.order:
                base = current  # appending to the committed file
            else:
                base = FileState(folder, target.window, target.part, 0, None, self.gen)
            self.recovered.get(folder, {}).pop(order, None)  # appended to now: no longer as recovered
            pending = self.pending[folder] = PendingFile(base)
        pending.add(seq, cluster_seconds, line)
        self.bytes += len(line)
        self.events += 1

    def _recovered_file(self, folder: str, window: int, current: FileState | None, first: bool) -> FileState | None:
        """The newest recovered part of ``window`` in ``folder`` that a line of that window goes to:
        one after the folder's current file, or (``first`` line of the batch, while the folder is
        still at a recovered file this run has not appended to) an earlier one."""
        files = self.recovered.get(folder)
        parts = [order for order in files or () if order[0] == window]
        if not parts:
            return None
        order = max(parts)
        if current is None or order > current.order:
            return files[order]
        if order < current.order and first and files.get(current.order) is current:
            return files[order]
        return None  # the current file itself, or one the folder has gone past

    def rows_ahead(self, files: list[PendingFile]) -> list[FileState]:
        """Recovered files newer than where ``files`` leave their folders: saved with their commit, so
        a folder's row never goes back to an older file than one the lake holds."""
        ahead = []
        for folder, state in newest(f.base for f in files).items():
            later = [s for s in self.recovered.get(folder, {}).values() if s.order > state.order]
            if later:
                ahead.append(max(later, key=lambda s: s.order))
        return ahead

    @property
    def folders(self) -> int:
        return len(self.pending)

    @property
    def file_count(self) -> int:
        return len(self.sealed) + len(self.pending)

    @property
    def full(self) -> bool:
        """As many files as a commit's manifest may name (``MAX_FILES_PER_BATCH``)."""
        return self.file_count >= MAX_FILES_PER_BATCH

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
        """Make ``states`` (files a failed run wrote, as read back) the folders' current files where
        they are at least as new, and keep each for the lines of its window (see ``add``)."""
        states = list(states)
        for folder, state in newest(states).items():
            known = self.states.get(folder)
            if known is None or state.order >= known.order:
                self.states[folder] = state
        for state in states:
            self.recovered.setdefault(state.dir, {})[state.order] = state
