"""Routing and buffering of numbered lines into per-file batches. Pure: no I/O.

A ``FileState`` is what the checkpoint table records per partition folder after each commit: the
file the folder appends to, its committed length and ETag, and ``hwm``, the highest ``_seq``
durably written anywhere in that folder. A ``Batch`` routes each numbered line to its folder's file
(rolling by window and size, see ``layout``), drops lines at or below the folder's ``hwm`` (events a
replay delivers again), and keeps the bytes per file until the commit.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field, replace

from . import layout


@dataclass(frozen=True)
class FileState:
    dir: str
    window: int
    part: int
    length: int
    etag: str | None  # None: the file has not been created yet
    hwm: int  # highest _seq durably written in this folder
    gen: str  # the pipeline generation that owns the file (part of its name)

    @property
    def path(self) -> str:
        return f"{self.dir}/{layout.file_name(self.window, self.part, self.gen)}"


@dataclass
class PendingFile:
    """New lines for one file: appended at ``base.length`` with ``If-Match: base.etag``."""

    base: FileState
    data: bytearray = field(default_factory=bytearray)
    seqs: array = field(default_factory=lambda: array("q"))
    ends: array = field(default_factory=lambda: array("q"))

    @property
    def path(self) -> str:
        return self.base.path

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]

    def add(self, seq: int, line: bytes) -> None:
        self.data += line
        self.seqs.append(seq)
        self.ends.append(len(self.data))

    def after(self, hwm: int) -> bytes:
        """The bytes of the lines whose seq is above ``hwm`` (lines are in seq order)."""
        for i, seq in enumerate(self.seqs):
            if seq > hwm:
                start = self.ends[i - 1] if i else 0
                return bytes(self.data[start:])
        return b""

    def seqs_after(self, hwm: int) -> list[int]:
        return [s for s in self.seqs if s > hwm]


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
        self.lines = 0
        self.skipped = 0

    def is_replayed(self, folder: str, seq: int) -> bool:
        state = self.states.get(folder)
        return state is not None and seq <= state.hwm

    def add(self, folder: str, cluster_seconds: int, seq: int, line: bytes) -> None:
        if self.is_replayed(folder, seq):
            self.skipped += 1
            return
        window = layout.window_start(cluster_seconds, self.window_seconds)
        pending = self.pending.get(folder)
        current = pending.base if pending else self.states.get(folder)
        open_now = None
        if current is not None:
            length = current.length + (len(pending.data) if pending else 0)
            open_now = layout.OpenFile(current.window, current.part, length)
        target = layout.next_file(open_now, window, len(line), self.max_file_bytes)
        if pending is None or (target.window, target.part) != (pending.base.window, pending.base.part):
            if pending is not None:
                self.sealed.append(pending)
            if current is not None and (target.window, target.part) == (current.window, current.part):
                base = current  # appending to the committed file
            else:
                hwm = current.hwm if current is not None else 0
                base = FileState(folder, target.window, target.part, 0, None, hwm, self.gen)
            pending = self.pending[folder] = PendingFile(base)
        pending.add(seq, line)
        self.bytes += len(line)
        self.lines += 1

    def files(self) -> list[PendingFile]:
        """Every file with new lines, sealed parts first within a folder (they precede in seq)."""
        return self.sealed + list(self.pending.values())

    def committed(self, results: list[FileState]) -> None:
        """Record the states the lake reported after the flushes; empty the batch."""
        for state in results:
            known = self.states.get(state.dir)
            if known is None or (state.hwm, state.window, state.part) >= (known.hwm, known.window, known.part):
                self.states[state.dir] = state
        self.pending.clear()
        self.sealed.clear()
        self.bytes = self.lines = 0


def advanced(state: FileState, length: int, etag: str, hwm: int) -> FileState:
    return replace(state, length=length, etag=etag, hwm=max(state.hwm, hwm))
