"""Where an event goes: partition folder, file name, and when to roll. Pure functions, no I/O.

Folders: ``{db}/{coll}/year=YYYY/month=MM/day=DD/`` by the event's cluster time in UTC.
Files:   ``part-YYYYMMDDTHHMMZ-NNNNN-GGGGGGGG.jsonl``: the UTC start of the roll window, the part
         number and the pipeline generation; one pipeline's names sort in event order in a folder.
         With ``FILE_LAYOUT=per_event`` one file per event instead (``event_file_name``):
         ``<_seq, 20 digits>-<operationType>-<16 hex of the resume token's sha256>-GGGGGGGG.json``.

Names are made path-safe with a reversible encoding (``encode_name`` / ``decode_name``):
ASCII letters, digits, ``-`` and ``.`` stay as they are, and ``_`` too except at the start; every
other byte of the UTF-8 name is written ``%XX``. A leading ``.`` or ``_`` is encoded as well, so no
name is ``.`` or ``..`` and none is hidden from Spark or Hive (which skip ``_``/``.``-prefixed
paths). ``/``, ``%``, ``=``, spaces, control characters and non-ASCII are always encoded, so no name
can escape its folder, look like a ``key=value`` partition, or collide with another. A name whose
encoding is longer than 200 characters is cut to 183 characters plus ``~`` and 16 hex digits of
its SHA-256: still unique, and the full name is in every line's ``ns`` field.

Events that name no collection go to reserved folders no encoded name can produce (they start with
``_``): ``{db}/_events/`` for database-level events (``dropDatabase``; ``invalidate`` of a database
stream) and ``_cluster/_events/`` for events that name no database.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._")
MAX_ENCODED = 200
DB_EVENTS = "_events"
CLUSTER_DB = "_cluster"


def encode_name(name: str) -> str:
    data = name.encode("utf-8", "surrogatepass")
    out = []
    for i, byte in enumerate(data):
        if byte in _SAFE and not (i == 0 and byte in b"._"):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    encoded = "".join(out)
    if len(encoded) > MAX_ENCODED:
        head = encoded[:183]
        escape = head.rfind("%")
        if escape > 180:  # never cut inside a %XX escape
            head = head[:escape]
        encoded = head + "~" + hashlib.sha256(data).hexdigest()[:16]
    return encoded


def decode_name(encoded: str) -> str:
    """Inverse of ``encode_name`` for names that were not shortened (no ``~``)."""
    if "~" in encoded:
        raise ValueError(f"{encoded!r} was shortened; read the full name from the lines' ns field")
    out = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "%":
            out.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(encoded[i]))
            i += 1
    return out.decode("utf-8", "surrogatepass")


def partition_dir(db: str | None, coll: str | None, cluster_seconds: int) -> str:
    """The folder of one event, from its namespace and cluster time (seconds since the epoch)."""
    day = datetime.fromtimestamp(cluster_seconds, tz=timezone.utc)
    if db is None:
        prefix = f"{CLUSTER_DB}/{DB_EVENTS}"
    elif coll is None:
        prefix = f"{encode_name(db)}/{DB_EVENTS}"
    else:
        prefix = f"{encode_name(db)}/{encode_name(coll)}"
    return f"{prefix}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


def folder_day(folder: str) -> str | None:
    """``YYYY-MM-DD`` of a partition folder (``None`` if it is not one), comparable as text."""
    parts = folder.rsplit("/", 3)
    if len(parts) != 4 or not (parts[1].startswith("year=") and parts[2].startswith("month=")
                               and parts[3].startswith("day=")):
        return None
    return f"{parts[1][5:]}-{parts[2][6:]}-{parts[3][4:]}"


def stale_folders(folders, last_cluster_seconds: int | None) -> list[str]:
    """Folders whose day ended more than a day before the last committed event.

    Cluster times only grow along a stream, and a replay starts at the committed position, so no
    event can reach them again: their checkpoint rows can go (the table stays small).
    """
    if last_cluster_seconds is None:
        return []
    cutoff = datetime.fromtimestamp(last_cluster_seconds - 86400, tz=timezone.utc).strftime("%Y-%m-%d")
    return [f for f in folders if (day := folder_day(f)) is not None and day < cutoff]


def window_start(cluster_seconds: int, window_seconds: int) -> int:
    return cluster_seconds - cluster_seconds % window_seconds


def file_name(window: int, part: int, gen: str) -> str:
    """``part-<window start>-<part>-<generation>.jsonl``.

    The generation is a random id created with the pipeline's checkpoint: two pipelines writing the
    same folders, or one whose checkpoint was reset, never share (and never misread) a file.
    """
    start = datetime.fromtimestamp(window, tz=timezone.utc)
    return f"part-{start:%Y%m%dT%H%M}Z-{part:05d}-{gen}.jsonl"


_FILE_NAME = re.compile(r"part-(\d{8}T\d{4})Z-(\d{5,})-([A-Za-z0-9]+)\.jsonl")


def parse_file_name(name: str) -> tuple[int, int, str]:
    """``(window start, part, generation)`` of a name ``file_name`` made; ValueError otherwise."""
    match = _FILE_NAME.fullmatch(name)
    if not match:
        raise ValueError(f"{name!r} is not a file name this app writes")
    start = datetime.strptime(match.group(1), "%Y%m%dT%H%M").replace(tzinfo=timezone.utc)
    return int(start.timestamp()), int(match.group(2)), match.group(3)


SEQ_DIGITS = 20  # any int64 _seq, so names sort in _seq order as text
MAX_OP_CHARS = 40


def event_file_name(seq: int, operation: str, token_hash: str, gen: str) -> str:
    """The name of one change event's file with ``FILE_LAYOUT=per_event``.

    ``_seq`` first (zero-padded: names sort in ``_seq`` order), then what the file is (the
    ``operationType``, encoded like a namespace name), the first 16 hex digits of the sha256 of the
    event's resume token (``intent.key_hash``: lets a recovering run learn which events are durable by
    listing, and makes a replay of the same event with the same number the same name) and the
    pipeline generation (two pipelines, or a reset one, never share a name). Never a document key.
    """
    op = encode_name(operation or "unknown")[:MAX_OP_CHARS]
    return f"{seq:0{SEQ_DIGITS}d}-{op}-{token_hash}-{gen}.json"


_EVENT_FILE_NAME = re.compile(r"(\d{20})-([A-Za-z0-9._%~-]+)-([0-9a-f]{16})-([A-Za-z0-9]+)\.json")


def parse_event_file_name(name: str) -> tuple[int, str, str, str] | None:
    """``(_seq, operationType as encoded, token hash, generation)`` of a per-event name; None otherwise."""
    match = _EVENT_FILE_NAME.fullmatch(name)
    if not match:
        return None
    return int(match.group(1)), match.group(2), match.group(3), match.group(4)


@dataclass(frozen=True)
class OpenFile:
    """The file a partition folder currently appends to, as last committed."""

    window: int
    part: int
    length: int


def next_file(current: OpenFile | None, window: int, line_bytes: int, max_bytes: int) -> OpenFile:
    """The file the next line of this folder goes to.

    Same file while the window is the same and the line fits under ``max_bytes`` (a line larger
    than ``max_bytes`` still goes into an empty file); a new part when it would not fit; part 0 of
    a new file when the window moved on.
    """
    if current is None or window != current.window:
        if current is not None and window < current.window:
            # Cluster times only grow along one stream; keep appending rather than reopen a window.
            return roll_if_full(current, line_bytes, max_bytes)
        return OpenFile(window, 0, 0)
    return roll_if_full(current, line_bytes, max_bytes)


def roll_if_full(current: OpenFile, line_bytes: int, max_bytes: int) -> OpenFile:
    if current.length > 0 and current.length + line_bytes > max_bytes:
        return OpenFile(current.window, current.part + 1, 0)
    return current
