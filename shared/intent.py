"""Commit intents and the numbering of a replay. Pure: no I/O.

Before a run writes a batch it records an ``Intent`` in the checkpoint row (conditional on its
lease): the range of ``_seq`` numbers the batch gives out, the resume token (``_id``) and cluster
time of its last event, and every file it will write with the length the file had before. The
commit that follows clears it in the same Table transaction that moves the position. So an intent
found by the next run means: lines of this range may be durable in these files, beyond those
lengths, and nothing else of the range is anywhere.

A run that finds an intent reads those files back (``lake.recover``) and gets the key and ``_seq``
of every line already there. ``Numbering`` then decides, for each event the replay reads, whether it
is already in the lake (skip it, wherever this run would route it) or gets a number. A replay may
differ from the run that died: with ``updateLookup`` a document changed in between, so a line has
other bytes and rolls elsewhere; a setting (``ROLL_*``, ``JSON_MODE``) changed; a ``$match`` on the
document or ``$changeStreamSplitLargeEvent`` now yields more or fewer events. Skipping by resume
token makes all of these safe. New events of the range take the smallest numbers of the range that
no durable line holds, so a replay that delivers the same events numbers them exactly as the dead
run did; numbers of the range that end up unused (an event the replay no longer delivers, and
that was not durable) are *retired*: they appear nowhere, and the run report counts them.

The range ends at the event whose ``_id`` is the intent's last one, at the first event with a later
cluster time, when the stream is caught up, or at an invalidate: after that, numbering continues
after the highest number the range used.

Snapshot rows (``shared.snapshot``) have a key of their own: their copy and ``_id``. Two rules keep
a replay's ``_seq`` order in cluster-time order when the replay reads chunks at other moments than
the failed run did: a new number is always above every durable line of an earlier cluster time
(``durable_clusters``), and the range stays open (``hold``) until the replay's copies have read past
every row the failed run made durable, so those rows are skipped and never written twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bson import Timestamp


def event_key(event: Any) -> str:
    """The identity of a change event: its resume token's ``_data`` (the whole token otherwise)."""
    token = event["_id"]
    try:
        return token["_data"]
    except (KeyError, TypeError):
        from bson import json_util  # deferred: a token without _data is rare

        return json_util.dumps(token, json_options=json_util.CANONICAL_JSON_OPTIONS)


def key_hash(key: str) -> str:
    """The first 16 hex digits of the sha256 of an event's key: what a per-event file's name carries
    (``layout.event_file_name``), so a recovering run learns which events are durable by listing."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def gap_key(gap: dict) -> str:
    """The identity of a gap record (it has no resume token): the restart time it names."""
    return f"gap:{gap['to']}"


def line_key(line: dict) -> str | None:
    """The identity of a line read back from the lake (parsed JSON), as ``event_key`` gives it."""
    token = line.get("_id")
    if token is None:
        if line.get("operationType") in ("snapshot", "snapshotEnd"):
            from .snapshot import line_row_key  # deferred: only snapshot rows need it

            return line_row_key(line)
        gap = line.get("gap")
        if line.get("operationType") == "gap" and isinstance(gap, dict):
            to = gap.get("to", {}).get("$timestamp", {})
            return f"gap:{to.get('t')}.{to.get('i')}"
        return None
    if isinstance(token, dict) and isinstance(token.get("_data"), str):
        return token["_data"]
    from bson import json_util  # deferred: see event_key

    return json_util.dumps(json_util.loads(json.dumps(token)), json_options=json_util.CANONICAL_JSON_OPTIONS)


def cluster_pair(ts: Timestamp | None) -> tuple[int, int] | None:
    return None if ts is None else (ts.time, ts.inc)


@dataclass
class Intent:
    """What a batch is about to write (see the module doc); stored as JSON in the checkpoint row."""

    first_seq: int
    last_seq: int
    last_key: str | None  # key of the range's last event (None: the range ends with a gap record)
    last_cluster: tuple[int, int] | None
    files: dict[str, int] = field(default_factory=dict)  # path -> its length before the range
    # FILE_LAYOUT=per_event: the folders the range's one-file-per-event files go to (never the files)
    folders: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        data = {"first_seq": self.first_seq, "last_seq": self.last_seq, "last_key": self.last_key,
                "last_cluster": list(self.last_cluster) if self.last_cluster else None, "files": self.files}
        if self.folders:
            data["folders"] = self.folders
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Intent":
        data = json.loads(text)
        files = data["files"]
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, int) and v >= 0
                                                  for k, v in files.items()):
            raise ValueError("intent files must map paths to lengths")
        folders = data.get("folders", [])
        if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
            raise ValueError("intent folders must be a list of folders")
        cluster = data.get("last_cluster")
        intent = cls(int(data["first_seq"]), int(data["last_seq"]), data.get("last_key"),
                     (int(cluster[0]), int(cluster[1])) if cluster else None, dict(files), list(folders))
        if intent.first_seq < 1 or intent.last_seq < intent.first_seq - 1:
            raise ValueError(f"intent range {intent.first_seq}..{intent.last_seq}")
        return intent

    def extended(self, files: dict[str, int], last_seq: int, last_key: str | None = None,
                 last_cluster: tuple[int, int] | None = None, ends_later: bool = False,
                 folders: list[str] = ()) -> "Intent":
        """This range with more files (a path already listed keeps its earlier length) and per-event
        folders, and numbers up to ``last_seq``; ``ends_later``: the range now ends at ``last_key`` /
        ``last_cluster``."""
        merged = dict(files)
        merged.update(self.files)
        more = sorted(set(self.folders) | set(folders))
        if ends_later:
            return Intent(self.first_seq, max(self.last_seq, last_seq), last_key, last_cluster, merged, more)
        return Intent(self.first_seq, max(self.last_seq, last_seq), self.last_key, self.last_cluster, merged, more)


class Numbering:
    """Gives out ``_seq`` numbers; while an earlier run's range is open, skips what it made durable.

    ``seq`` is the last number committed; ``open_range`` the intent found at the start of the run
    (or None) and ``durable`` the key -> ``_seq`` of every line read back from its files;
    ``hashed`` the ``key_hash`` -> ``_seq`` of every per-event file of the range found by listing;
    ``durable_clusters`` the ``_seq`` -> cluster time of the lines read back (see ``_floor``).
    """

    def __init__(self, seq: int, open_range: Intent | None = None, durable: dict[str, int] | None = None,
                 hashed: dict[str, int] | None = None,
                 durable_clusters: dict[int, tuple[int, int]] | None = None) -> None:
        self.seq = seq
        self.range = open_range
        self.durable = durable or {}
        self.hashed = hashed or {}
        self.used: set[int] = set(self.durable.values()) | set(self.hashed.values())
        self._cursor = (open_range.first_seq - 1) if open_range else seq
        self.skipped = 0  # events of the range found durable
        self.retired = 0  # numbers of the range that no line holds
        # (cluster, seq) of durable lines, for the floor of a new number (see ``_floor``)
        self._floors = sorted((c, s) for s, c in (durable_clusters or {}).items())
        self._floor_max: list[int] = []
        top = 0
        for _, s in self._floors:
            top = max(top, s)
            self._floor_max.append(top)
        # (copy, _id) of snapshot rows the failed run made durable: the range stays open until the
        # replay's copies have read past them again (``release``)
        self.hold: set[tuple[int, str]] = set()
        if open_range is not None:
            from .snapshot import copy_of_key  # deferred: snapshots are optional

            self.hold = {c for c in map(copy_of_key, self.durable) if c is not None}
        self._ended = False  # the failed run's events are all read; only held chunks keep the range open

    @property
    def replaying(self) -> bool:
        return self.range is not None

    def assign(self, key: str, cluster: tuple[int, int] | None) -> int | None:
        """The number of the next event, or None when it is already in the lake."""
        open_range = self.range
        if open_range is not None:
            if (cluster is not None and open_range.last_cluster is not None
                    and cluster > open_range.last_cluster):
                self.end_of_range()
        if self.range is not None:
            found = self.durable.get(key)
            if found is None and self.hashed:
                found = self.hashed.get(key_hash(key))
            if found is None:
                number = self._next_free(self._floor(cluster))
            if key == open_range.last_key:
                self.end_of_range()
            if found is not None:
                self.skipped += 1
                return None
            return number
        self.seq += 1
        return self.seq

    def _floor(self, cluster: tuple[int, int] | None) -> int:
        """The highest number of a durable line with an earlier cluster time: a new number goes above
        it. The failed run numbered in cluster-time order, so an identical replay is unaffected."""
        if cluster is None or not self._floors:
            return 0
        import bisect

        index = bisect.bisect_left(self._floors, (cluster, -1))
        return self._floor_max[index - 1] if index else 0

    def end_of_range(self) -> None:
        """The failed run's events are all read (its last one, a later one, caught up or an
        invalidate): the range closes, unless a held chunk is still to be read again."""
        self._ended = True
        if not self.hold:
            self.close()

    def release(self, still_pending) -> None:
        """Forget held rows that will not be read again (``still_pending(copy, id_text)`` false: the
        copy read past them, or it ended); the range then closes if its events are all read."""
        self.hold = {c for c in self.hold if still_pending(*c)}
        if self._ended and not self.hold and self.range is not None:
            self.close()

    def _next_free(self, floor: int = 0) -> int:
        candidate = max(self._cursor, floor) + 1
        while candidate in self.used:
            candidate += 1
        self._cursor = candidate
        self.used.add(candidate)
        return candidate

    def close(self) -> None:
        """The range is over: later events are numbered after the highest number it used."""
        open_range = self.range
        if open_range is None:
            return
        top = max([open_range.last_seq, self.seq, *self.used]) if self.used else max(open_range.last_seq, self.seq)
        self.retired = sum(1 for n in range(open_range.first_seq, top + 1) if n not in self.used)
        self.seq = top
        self.range = None
        self.hold = set()

    def highest(self) -> int:
        """The highest number given out or found so far (for the intent of the next batch)."""
        return max([self.seq, *self.used]) if self.used else self.seq
