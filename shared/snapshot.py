"""Snapshots: copying the documents that already exist, in chunks by ``_id``, between the stream's
events, so that no copied row is older than an event before it (the watermark method of Netflix's
DBLog, which Debezium's incremental snapshots follow).

A *copy* is the snapshot of one collection (``CollectionCopy``): where it got to (the last ``_id``
read, ``after``), how many chunks it read and rows it wrote. ``Progress`` is every copy of a pipeline
plus the requests not yet started; it is stored in the checkpoint row and moves only with the commit
of the rows it describes (the drain puts it into the checkpoint that follows the batch).

One chunk (``Window``):

1. note the server's cluster time ``low`` (whenever no chunk is waiting, the stream caught up or not);
2. read up to ``SNAPSHOT_CHUNK_DOCS`` documents after ``after`` in ``_id`` order, as raw BSON;
3. note the cluster time ``high``;
4. read the stream on until it has passed ``high`` (an event later than ``high``, or a post-batch
   resume token at or after it): every event read meanwhile keeps its place before the chunk, and
   every document key such an event touched after ``low`` is dropped from the chunk (the event
   carries the newer state); a drop, rename or dropDatabase of the collection drops the whole chunk;
5. write the rest as ``operationType: "snapshot"`` rows with ``clusterTime`` = ``high`` (each row is
   the document as it was at ``high``), then the event that passed ``high``.

So for every key, rows and events are in cluster-time order in ``_seq`` order, and a replay of the
lake (snapshot rows and inserts/replaces as upserts, updates by their full document, deletes)
yields the collection's contents once the drain has caught up.

This module decides; ``ChunkReader`` is its only I/O (``find`` and ``ping`` on MongoDB).
"""

from __future__ import annotations

import json
import queue
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import bson
from bson import Int64, json_util
from bson.raw_bson import RawBSONDocument
from pymongo.errors import OperationFailure

SNAP_PREFIX = "snap:"
END_PREFIX = "snapend:"
MODES = ("off", "initial", "when_needed")
SYSTEM_DATABASES = ("admin", "local", "config")
KEEP_FINISHED = 20  # finished copies kept in the checkpoint for status

# BSON comparison order of types (mongod's canonical type brackets). ``$gt`` compares only within
# one bracket, so a chunk that reaches the end of one bracket goes on with the next brackets' types.
_RANK = {0xFF: 1, 0x0A: 5, 0x06: 5, 0x01: 10, 0x10: 10, 0x12: 10, 0x13: 10, 0x0E: 15, 0x02: 15, 0x03: 20,
         0x04: 25, 0x05: 30, 0x07: 35, 0x08: 40, 0x09: 45, 0x11: 47, 0x0B: 50, 0x0C: 55, 0x0D: 60,
         0x0F: 65, 0x7F: 100}
_ALIASES = {5: ["null", "undefined"], 10: ["double", "int", "long", "decimal"], 15: ["string", "symbol"],
            20: ["object"], 25: ["array"], 30: ["binData"], 35: ["objectId"], 40: ["bool"], 45: ["date"],
            47: ["timestamp"], 50: ["regex"], 55: ["dbPointer"], 60: ["javascript"], 65: ["javascriptWithScope"],
            100: ["maxKey"]}


_DOCUMENTS = 20  # the bracket of embedded documents


def _no_such_index(exc: OperationFailure) -> bool:
    return exc.code in (2, 17007) and "hint" in str(exc).lower()


def types_after(rank: int) -> list[str]:
    """The ``$type`` aliases of every bracket after ``rank`` (for the next chunk after a bracket ends)."""
    return [alias for r, aliases in sorted(_ALIASES.items()) if r > rank for alias in aliases]


def id_element(raw: bytes) -> bytes:
    """The ``_id`` element (type byte, name, value) of a raw BSON document, as bytes."""
    pos, end = 4, len(raw) - 1
    while pos < end:
        kind = raw[pos]
        name_end = raw.index(b"\x00", pos + 1)
        start = name_end + 1
        stop = start + _value_size(raw, kind, start)
        if raw[pos + 1:name_end] == b"_id":
            return raw[pos:stop]
        pos = stop
    raise ValueError("a document without _id")


def _value_size(raw: bytes, kind: int, at: int) -> int:
    fixed = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16, 0x06: 0, 0x0A: 0,
             0xFF: 0, 0x7F: 0}
    if kind in fixed:
        return fixed[kind]
    (length,) = struct.unpack_from("<i", raw, at)
    if kind in (0x02, 0x0D, 0x0E):
        return 4 + length
    if kind in (0x03, 0x04, 0x0F):
        return length
    if kind == 0x05:
        return 5 + length
    if kind == 0x0C:
        return 4 + length + 12
    if kind == 0x0B:
        first = raw.index(b"\x00", at)
        return raw.index(b"\x00", first + 1) + 1 - at
    raise ValueError(f"BSON type {kind:#x}")


def id_rank(element: bytes) -> int:
    return _RANK.get(element[0], 0)


def id_value(element: bytes) -> Any:
    """The ``_id`` value of an ``id_element``."""
    return bson.decode(_doc(element))["_id"]


def _doc(element: bytes) -> bytes:
    return struct.pack("<i", len(element) + 5) + element + b"\x00"


def _normal(value: Any) -> Any:
    """Numbers by value (1, 1.0 and Int64(1) are one ``_id`` in MongoDB), so that a key made from a
    raw document and one made from a line read back (relaxed or canonical JSON) agree."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Int64)):
        return int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def id_text(value: Any) -> str:
    return json_util.dumps(_normal(value), json_options=json_util.RELAXED_JSON_OPTIONS, sort_keys=False)


def element_text(element: bytes) -> str:
    """``id_text`` of an ``id_element``, without decoding the common kinds (ObjectId, integers, strings)."""
    kind = element[0]
    if element[1:5] == b"_id\x00":
        if kind == 0x07:
            return '{"$oid": "' + element[5:17].hex() + '"}'
        if kind == 0x10:
            return str(struct.unpack_from("<i", element, 5)[0])
        if kind == 0x12:
            return str(struct.unpack_from("<q", element, 5)[0])
    return id_text(id_value(element))


def row_key(copy: int, id_value_: Any) -> str:
    """The identity of a snapshot row for ``intent.Numbering``: the copy (unique in the pipeline) and the
    document's ``_id``. A copy reads each ``_id`` at most once (ascending, after the last one read), so
    this is unique. No chunk number: a replay may cut chunks elsewhere. No namespace: a copy keeps its
    number across a rename, so a row a failed run made durable is recognised under the new name."""
    return f"{SNAP_PREFIX}{copy}:{id_text(id_value_)}"


def end_key(copy: int) -> str:
    """The identity of a copy's end line."""
    return f"{END_PREFIX}{copy}"


def line_row_key(line: dict) -> str | None:
    """``row_key`` (or ``end_key``) of a snapshot line read back from the lake (JSON parsed by orjson)."""
    snap, key = line.get("snapshot"), line.get("documentKey")
    if line.get("operationType") == "snapshotEnd" and isinstance(snap, dict):
        return end_key(int(_plain(snap.get("copy"))))
    if not isinstance(snap, dict) or not isinstance(key, dict) or "_id" not in key:
        return None
    value = json_util.loads(json.dumps({"v": key["_id"]}))["v"]
    return row_key(int(_plain(snap.get("copy"))), value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return next(iter(value.values()))  # {"$numberInt": "3"} / {"$numberLong": "3"}
    return value


def copy_of_key(key: str) -> tuple[int, str | None] | None:
    """(copy, ``_id`` text) of a snapshot row key, (copy, None) of an end line's; None for other keys."""
    if key.startswith(END_PREFIX):
        return int(key[len(END_PREFIX):]), None
    if not key.startswith(SNAP_PREFIX):
        return None
    copy, text = key[len(SNAP_PREFIX):].split(":", 1)
    return int(copy), text


def compare_ids(a: Any, b: Any) -> int:
    """BSON comparison of two ``_id`` values (-1, 0, 1), as mongod orders an index: type bracket first,
    then the value (numbers by value, strings by UTF-8 bytes, documents field by field)."""
    ra, rb = _rank_of(a), _rank_of(b)
    if ra != rb:
        return -1 if ra < rb else 1
    ka, kb = _sort_value(a, ra), _sort_value(b, rb)
    if ra == 20:  # documents: element by element (type bracket, field name, value), shorter first
        for (na, va), (nb, vb) in zip(ka, kb):
            ta, tb = _rank_of(va), _rank_of(vb)
            if ta != tb:
                return -1 if ta < tb else 1
            if na != nb:
                return -1 if na.encode() < nb.encode() else 1
            c = compare_ids(va, vb)
            if c:
                return c
        return (len(ka) > len(kb)) - (len(ka) < len(kb))
    if ra == 25:
        for va, vb in zip(ka, kb):
            c = compare_ids(va, vb)
            if c:
                return c
        return (len(ka) > len(kb)) - (len(ka) < len(kb))
    return (ka > kb) - (ka < kb)


def _rank_of(value: Any) -> int:
    return id_rank(id_element(bson.encode({"_id": value})))


def _sort_value(value: Any, rank: int) -> Any:
    import decimal

    if rank == 10:
        return value.to_decimal() if hasattr(value, "to_decimal") else decimal.Decimal(repr(value)) \
            if isinstance(value, float) else decimal.Decimal(int(value))
    if rank == 15:
        return str(value).encode()
    if rank == 20:
        return list(value.items())
    if rank == 25:
        return list(value)
    if rank == 30:
        return (len(value), getattr(value, "subtype", 0), bytes(value))
    if rank == 35:
        return value.binary
    if rank == 45:
        from bson.datetime_ms import _datetime_to_millis

        return value._value if hasattr(value, "_value") else _datetime_to_millis(value)
    if rank == 47:
        return (value.time, value.inc)
    if rank == 50:
        return (value.pattern, value.flags)
    if rank in (1, 5, 100):
        return 0
    return value


# -- progress ---------------------------------------------------------------------------------

@dataclass
class CollectionCopy:
    copy: int  # unique in the pipeline
    db: str
    coll: str
    reason: str  # initial, history_lost, requested
    after: str | None = None  # canonical Extended JSON of {"_id": last _id read}; None: from the start
    chunks: int = 0  # chunks done (the next chunk's number)
    copied: int = 0  # rows written
    estimated: int | None = None  # estimatedDocumentCount when the copy started
    started: float | None = None  # when its first chunk was read (seconds)
    # the cluster time the copy starts from: the position its run began at, the same for every replay
    # (rows of a failed run that a replay keeps are later); None in progress stored by older versions,
    # which then take the low watermark of the first chunk written
    since: list[int] | None = None
    seconds: float = 0.0  # time spent reading and writing its chunks
    finished: str | None = None  # done, dropped, renamed_out, database_dropped, replaced

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.coll}"

    def after_id(self) -> tuple[bool, Any]:
        if self.after is None:
            return False, None
        return True, json_util.loads(self.after)["_id"]


@dataclass
class Progress:
    copies: list[CollectionCopy] = field(default_factory=list)  # unfinished, in copy order
    finished: list[CollectionCopy] = field(default_factory=list)  # the last few finished
    next_copy: int = 1
    requests: list[str] = field(default_factory=list)  # "db.coll" asked for by `python -m shared snapshot`
    oplog_window: float | None = None  # seconds of history the oplog held at the last run (for warnings)
    oplog_checked: float | None = None  # when oplog_window was read (seconds)

    # -- storage --
    def to_json(self) -> str:
        return json.dumps({"copies": [asdict(c) for c in self.copies], "finished": [asdict(c) for c in self.finished],
                           "next_copy": self.next_copy, "requests": self.requests,
                           "oplog_window": self.oplog_window, "oplog_checked": self.oplog_checked},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Progress":
        data = json.loads(text)
        progress = cls([CollectionCopy(**c) for c in data.get("copies", [])],
                       [CollectionCopy(**c) for c in data.get("finished", [])],
                       int(data.get("next_copy", 1)), [str(r) for r in data.get("requests", [])],
                       data.get("oplog_window"), data.get("oplog_checked"))
        if progress.next_copy < 1 or any(c.copy >= progress.next_copy or c.chunks < 0 for c in progress.copies):
            raise ValueError("snapshot progress numbers")
        return progress

    def clone(self) -> "Progress":
        return Progress.from_json(self.to_json())

    # -- decisions --
    @property
    def active(self) -> CollectionCopy | None:
        return self.copies[0] if self.copies else None

    def start(self, namespaces: Iterable[tuple[str, str]], reason: str,
              since: tuple[int, int] | None = None) -> list[CollectionCopy]:
        """New copies of ``namespaces`` (a copy already running for one of them is replaced), from the
        cluster time ``since`` (see ``CollectionCopy.since``)."""
        made = []
        for db, coll in namespaces:
            for old in [c for c in self.copies if (c.db, c.coll) == (db, coll)]:
                self._finish(old, "replaced")
            copy = CollectionCopy(self.next_copy, db, coll, reason, since=list(since) if since else None)
            self.next_copy += 1
            self.copies.append(copy)
            made.append(copy)
        return made

    def _finish(self, copy: CollectionCopy, how: str) -> None:
        copy.finished = how
        self.copies = [c for c in self.copies if c.copy != copy.copy]
        self.finished = (self.finished + [copy])[-KEEP_FINISHED:]

    def chunk_written(self, copy_id: int, after: str | None, rows: int, seconds: float, exhausted: bool,
                      low: tuple[int, int] | None = None) -> None:
        copy = self.find(copy_id)
        if copy is None:
            return
        if copy.since is None and low is not None:
            copy.since = list(low)
        copy.after = after if after is not None else copy.after
        copy.chunks += 1
        copy.copied += rows
        copy.seconds = round(copy.seconds + seconds, 3)
        if exhausted:
            self._finish(copy, "done")

    def find(self, copy_id: int) -> CollectionCopy | None:
        return next((c for c in self.copies if c.copy == copy_id), None)

    def pending(self, copy_id: int, text: str | None) -> bool:
        """Whether the copy ``copy_id`` has still to read the ``_id`` of ``text`` (an ``id_text``), or
        (``text`` None) to end."""
        copy = self.find(copy_id)
        if copy is None:
            return False
        if text is None:
            return True
        has_after, after = copy.after_id()
        return not has_after or compare_ids(json_util.loads(text), after) > 0

    def on_event(self, kind: str, db: str | None, coll: str | None, to: tuple[str, str] | None,
                 in_scope) -> None:
        """A drop, rename or dropDatabase read from the stream: copies of that collection end, or follow
        the rename (``in_scope(db, coll)`` says whether the new name is watched)."""
        if kind == "drop":
            for c in [c for c in self.copies if (c.db, c.coll) == (db, coll)]:
                self._finish(c, "dropped")
        elif kind == "dropDatabase":
            for c in [c for c in self.copies if c.db == db]:
                self._finish(c, "database_dropped")
        elif kind == "rename" and to is not None:
            for c in [c for c in self.copies if (c.db, c.coll) == to]:
                self._finish(c, "dropped")  # dropTarget: the old target's documents are gone
            for c in [c for c in self.copies if (c.db, c.coll) == (db, coll)]:
                if in_scope(*to):
                    c.db, c.coll = to
                else:
                    self._finish(c, "renamed_out")


# -- one chunk ----------------------------------------------------------------------------------

@dataclass
class Window:
    """A chunk read and not yet written: its rows wait until the stream has passed ``high``."""

    copy: int
    chunk: int
    db: str
    coll: str
    low: tuple[int, int]
    high: tuple[int, int]
    docs: list[bytes]  # raw BSON documents in _id order
    after: str | None  # canonical Extended JSON of {"_id": last _id read}
    exhausted: bool  # fewer documents than asked: the collection has no more after this chunk
    seconds: float = 0.0  # when the chunk was started (clock)
    touched: set = field(default_factory=set)  # _id elements an event changed after ``low``
    discarded: bool = False  # the collection was dropped or renamed meanwhile: write nothing
    empty_reads: int = 0  # caught-up reads since ``high`` (see ``passed``)

    def observe(self, kind: str, db: str | None, coll: str | None, key_element: bytes | None,
                cluster: tuple[int, int], lookup_failed: bool = False) -> None:
        """An event read before the stream passed ``high``. An update whose looked-up document is
        missing (``updateLookup`` found it gone: deleted or renamed by the time it was read) carries
        no state to replace a row with, and announces a rename as well as a delete: the chunk is
        read again later."""
        if db != self.db:
            return
        if kind == "dropDatabase" or (coll == self.coll and (kind in ("drop", "rename") or lookup_failed)):
            self.discarded = True
        elif coll == self.coll and key_element is not None and cluster > self.low:
            self.touched.add(key_element)

    def closes_at(self, cluster: tuple[int, int]) -> bool:
        """Whether an event at ``cluster`` comes after the chunk (the rows go before it)."""
        return cluster > self.high

    def reached(self, token_cluster: tuple[int, int] | None) -> bool:
        """Whether the stream's position (a post-batch token while caught up) is at or after ``high``."""
        return token_cluster is not None and token_cluster >= self.high

    def passed(self, token_cluster: tuple[int, int] | None) -> bool:
        """Caught up: the stream has passed ``high`` when its post-batch token is at or after it, or
        (a server whose token does not move on a quiet stream) after two empty reads since ``high``:
        a read that began after ``high`` was noted sees every event up to it."""
        self.empty_reads += 1
        return (token_cluster is not None and token_cluster >= self.high) or self.empty_reads >= 2

    def rows(self) -> list[tuple[bytes, bytes]]:
        """(``_id`` element, raw document) of every document no event touched in the window."""
        if self.discarded:
            return []
        out = []
        touched = self.touched
        for raw in self.docs:
            element = id_element(raw)
            if element not in touched:
                out.append((element, raw))
        return out


class RowBuilder:
    """Snapshot rows of one chunk as raw BSON, for the stream's line encoder::

        {"operationType": "snapshot", "clusterTime": Timestamp(high), "ns": {"db", "coll"},
         "documentKey": {"_id": ...}, "fullDocument": {...}, "snapshot": {"copy": c, "chunk": n}}
    """

    def __init__(self, window: Window) -> None:
        t, i = window.high
        self._head = (b"\x02operationType\x00" + struct.pack("<i", 9) + b"snapshot\x00"
                      + b"\x11clusterTime\x00" + struct.pack("<II", i, t)
                      + b"\x03ns\x00" + bson.encode({"db": window.db, "coll": window.coll}))
        self._tail = b"\x03snapshot\x00" + bson.encode({"copy": window.copy, "chunk": window.chunk})

    def build(self, element: bytes, raw: bytes) -> bytes:
        body = self._head + b"\x03documentKey\x00" + _doc(element) + b"\x03fullDocument\x00" + raw + self._tail
        return struct.pack("<i", len(body) + 5) + body + b"\x00"


def token_cluster(token: Any) -> tuple[int, int] | None:
    """The cluster time a resume token stands for, where its format is known: mongod's KeyString
    (``_data`` starting with type byte 130, then the timestamp big-endian) and SecantusDB's hex BSON
    (a ``t`` timestamp). None otherwise."""
    try:
        data = bytes.fromhex(token["_data"])
    except (KeyError, TypeError, ValueError):
        return None
    if len(data) >= 9 and data[0] == 130:
        t, i = struct.unpack(">II", data[1:9])
        return t, i
    try:
        ts = bson.decode(data).get("t")
        return (ts.time, ts.inc) if isinstance(ts, bson.Timestamp) else None
    except Exception:  # noqa: BLE001 - an opaque token
        return None


def event_facts(event: RawBSONDocument) -> tuple[str, str | None, str | None, tuple[str, str] | None, bytes | None]:
    """(operationType, db, coll, rename target, documentKey ``_id`` element) of a raw change event;
    an update without its document (see ``Window.observe``) reports ``update_without_document``."""
    kind = event["operationType"]
    ns = event.get("ns")
    db = ns.get("db") if ns is not None else None
    coll = ns.get("coll") if ns is not None else None
    to = None
    if kind == "rename":
        target = event.get("to")
        to = (target["db"], target["coll"]) if target is not None else None
    if kind == "update" and "fullDocument" in event and event["fullDocument"] is None:
        kind = "update_without_document"
    key = event.get("documentKey")
    element = None
    if key is not None:
        try:
            element = id_element(key.raw)
        except ValueError:
            element = None
    return kind, db, coll, to, element


# -- status figures -------------------------------------------------------------------------------

def figures(copy: CollectionCopy, oplog_window: float | None, chunk_docs: int) -> dict:
    """What the run report and ``status`` show for one copy."""
    rate = copy.copied / copy.seconds if copy.seconds > 0 else None
    left = max(0, copy.estimated - copy.copied) if copy.estimated is not None else None
    out = {"ns": copy.ns, "copy": copy.copy, "reason": copy.reason, "copied": copy.copied, "chunks": copy.chunks,
           "estimated_documents": copy.estimated, "remaining_estimate": left,
           "chunks_left_estimate": None if left is None else -(-left // max(1, chunk_docs)),
           "docs_per_second": round(rate, 1) if rate else None,
           "eta_seconds": round(left / rate) if rate and left is not None else None,
           "finished": copy.finished}
    if out["eta_seconds"] is not None and oplog_window is not None and out["eta_seconds"] > oplog_window * 0.8:
        out["warning"] = (f"the copy of {copy.ns} is likely to take {out['eta_seconds']} s, longer than (80% of) "
                          f"the oplog window of {oplog_window:.0f} s: the stored position may leave the oplog")
    return out


# -- reading chunks (the I/O) ---------------------------------------------------------------------

class ChunkReader:
    """Reads chunks by ``_id`` range as raw BSON, and the server's cluster time."""

    def __init__(self, client, errors) -> None:
        self._client = client  # a MongoClient with document_class=RawBSONDocument
        self._errors = errors  # ChangeSource.errors: driver errors with a kind

    def server_time(self) -> tuple[int, int]:
        with self._errors("reading the server's cluster time for a snapshot chunk"):
            ts = self._client.admin.command("ping")["operationTime"]
        return ts.time, ts.inc

    def scan(self, copy: CollectionCopy, low: tuple[int, int]) -> "Scan":
        """A cursor over the copy's documents after its ``after``, in BSON ``_id`` order."""
        return Scan(self, copy, low)

    def _cursor(self, copy: CollectionCopy, query: dict, batch: int, hinted: bool):
        """A cursor in ``_id`` order. ``hinted``: walking the ``_id`` index, which a server without an
        index walk for a sorted range would otherwise not do (SecantusDB sorts the whole collection in
        memory, 1.6x as long as the walk). Not for document ``_id``s (see ``Scan``)."""
        options = {"hint": [("_id", 1)]} if hinted else {}
        return self._client[copy.db][copy.coll].find_raw_batches(query, sort=[("_id", 1)], batch_size=batch,
                                                                 **options)

    def estimate(self, db: str, coll: str) -> int | None:
        try:
            with self._errors(f"estimating the size of {db}.{coll}"):
                return int(self._client[db][coll].estimated_document_count())
        except Exception:  # noqa: BLE001 - a figure for status only
            return None

    def namespaces(self, scope) -> list[tuple[str, str]]:
        """The collections of the scope, in name order (views and system collections left out)."""
        with self._errors("listing the collections to snapshot"):
            if scope.kind == "collection":
                names = self._client[scope.db].list_collection_names(filter={"name": scope.coll})
                return [(scope.db, scope.coll)] if names else []
            dbs = [scope.db] if scope.kind == "database" else sorted(
                d for d in self._client.list_database_names() if d not in SYSTEM_DATABASES)
            out = []
            for db in dbs:
                for info in self._client[db].list_collections():
                    name, kind = info["name"], info.get("type", "collection")
                    if kind == "collection" and not name.startswith("system."):
                        out.append((db, name))
            return sorted(out)

    def oplog_window(self) -> float | None:
        """Seconds of history the oplog holds now (first to last entry), when the server shows it."""
        try:
            oplog = self._client["local"]["oplog.rs"]
            first = oplog.find_one({}, sort=[("$natural", 1)], projection={"ts": 1})
            if first is None:
                return None
            return float(self.server_time()[0] - first["ts"].time)
        except Exception:  # noqa: BLE001 - not every user may read local.oplog.rs
            return None


class Scan:
    """One cursor over a copy's documents, read chunk by chunk (``next_chunk``).

    Why one cursor for many chunks: a server without an ``_id`` index walk for a sorted range
    (SecantusDB sorts the whole collection for each ``find``) would otherwise read the collection
    once per chunk. A server may also hand out documents of a later batch as they were when the
    cursor opened, so every chunk of a scan takes the scan's opening time as its ``low`` watermark,
    and the keys the stream touched since then (``touched``, kept between chunks) are dropped from
    each chunk. A scan ends after ``MAX_SCAN_SECONDS`` or ``MAX_SCAN_KEYS`` touched keys, and when
    a chunk is not written (it is read again from a new scan).

    The reads walk the ``_id`` index (a hint), except the bracket of document ``_id``s, which is read
    sorted: SecantusDB's index orders documents unlike BSON comparison (every other bracket as mongod
    does), so a walk that meets a document ``_id`` stops there and goes on with a sorted read of that
    bracket, then a walk of the brackets after it. A collection without an ``_id`` index to walk is
    read sorted."""

    MAX_SCAN_SECONDS = 300.0
    MAX_SCAN_KEYS = 200_000

    def __init__(self, reader: ChunkReader, copy: CollectionCopy, low: tuple[int, int]) -> None:
        self.reader, self.copy_id, self.ns, self.after = reader, copy.copy, (copy.db, copy.coll), copy.after
        self.low = low
        self.touched: set = set()
        self.opened = None  # clock reading, set by the copier
        has_after, after = copy.after_id()
        # (query, walk the _id index): a bracket of document _ids is read sorted, not walked
        self._queries: list[tuple[dict, bool]] = [({"_id": {"$gt": after}}, True)] if has_after else [({}, True)]
        if has_after:
            rank = id_rank(id_element(bson.encode({"_id": after})))
            self._queries[0] = (self._queries[0][0], rank != _DOCUMENTS)
            later = types_after(rank)
            if later and rank != 1:  # after MinKey, $gt already reaches every type
                self._queries.append(({"_id": {"$type": later}}, True))
        self._copy = copy
        self._cursor: Replies | None = None
        self._query: dict = {}
        self._hinted = False
        self._docs: list[bytes] = []  # the documents of the reply being taken
        self._taken = 0
        self.done = False

    def fits(self, copy: CollectionCopy, now: float) -> bool:
        """Whether this scan can give the copy's next chunk."""
        return ((self.copy_id, self.ns, self.after) == (copy.copy, (copy.db, copy.coll), copy.after)
                and not self.done and now - self.opened < self.MAX_SCAN_SECONDS
                and len(self.touched) < self.MAX_SCAN_KEYS)

    def next_chunk(self, limit: int, max_bytes: int) -> tuple[list[bytes], str | None, bool]:
        """Up to ``limit`` documents (and about ``max_bytes``) in ``_id`` order: (raw documents, the
        new ``after``, whether the collection has no more)."""
        docs: list[bytes] = []
        size = 0
        # the server's replies: about a chunk each (see Replies)
        batch = max(1, min(limit, max_bytes // 1100))
        with self.reader._errors(f"reading a snapshot chunk of {self.ns[0]}.{self.ns[1]}"):
            while len(docs) < limit and size < max_bytes:
                if self._taken >= len(self._docs):
                    if self._cursor is None:
                        if not self._queries:
                            self.done = True
                            break
                        self._query, self._hinted = self._queries.pop(0)
                        self._cursor = Replies(self.reader._cursor(self._copy, self._query, batch, self._hinted),
                                               limit, max_bytes)
                    try:
                        reply = self._cursor.take()
                    except OperationFailure as exc:
                        if not (self._hinted and _no_such_index(exc)):
                            raise
                        # no _id index to walk (a clustered collection on an older server): sorted reads
                        self._end_cursor()
                        self._queries.insert(0, (self._query, False))
                        continue
                    if reply is None:
                        self._end_cursor()
                        continue
                    self._docs, self._taken = reply, 0
                    continue
                raw = self._docs[self._taken]
                if self._hinted and (raw[4] if raw[5:9] == b"_id\x00" else id_element(raw)[0]) == 0x03:
                    # the index walk reached the documents' bracket, whose order only a sort gives
                    # (SecantusDB's index orders document _ids unlike BSON comparison): that
                    # bracket sorted, then the brackets after it walked again
                    self._end_cursor()
                    self._queries = [({"_id": {"$type": _ALIASES[_DOCUMENTS]}}, False),
                                     ({"_id": {"$type": types_after(_DOCUMENTS)}}, True)]
                    continue
                self._taken += 1
                docs.append(raw)
                size += len(raw)
        after = None
        if docs:
            after = json_util.dumps(bson.decode(_doc(id_element(docs[-1]))),
                                    json_options=json_util.CANONICAL_JSON_OPTIONS)
            self.after = after
        return docs, after, self.done

    def _end_cursor(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        self._docs, self._taken = [], 0

    def close(self) -> None:
        self.done = True
        self._end_cursor()


def split_documents(reply: bytes) -> list[bytes]:
    """The documents of a raw batch (BSON documents one after another)."""
    out, pos, end = [], 0, len(reply)
    while pos < end:
        size = int.from_bytes(reply[pos:pos + 4], "little")
        if size < 5 or pos + size > end:
            raise ValueError(f"a raw batch cut inside a document at byte {pos}")
        out.append(reply[pos:pos + size])
        pos += size
    return out


class Replies:
    """A cursor's raw replies, read one ahead in a thread: the server prepares the next chunk's
    documents while the run writes this one's rows (the copy's reads and its writes overlap).

    Its memory: the reply being taken, one waiting and one being received, each about a chunk
    (``limit`` documents, ``max_bytes``): after each reply the next is asked for as many documents
    as fit ``max_bytes`` at that reply's average size. Errors come to ``take`` in order. Only the
    thread uses the cursor until ``close``, which waits for a read in flight, then closes it."""

    ABANDONED_SECONDS = 600.0  # longer than a scan lives (Scan.MAX_SCAN_SECONDS)

    def __init__(self, cursor, limit: int, max_bytes: int) -> None:
        self._cursor = cursor
        self._limit, self._max_bytes = limit, max_bytes
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshot-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for reply in self._cursor:
                docs = split_documents(reply)
                self._size_next(len(reply), len(docs))
                if not self._put(("reply", docs)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, in order
            self._put(("error", exc))

    def _size_next(self, size: int, count: int) -> None:
        if count and hasattr(self._cursor, "_batch_size"):
            average = max(1, size // count)
            self._cursor._batch_size = max(1, min(self._limit, self._max_bytes // average))

    def _put(self, item) -> bool:
        """Hand ``item`` over; False once closed, or when nothing was taken for ``ABANDONED_SECONDS``
        (a consumer gone without ``close``: the thread ends rather than wait for ever)."""
        given_up = time.monotonic() + self.ABANDONED_SECONDS
        while not self._stop.is_set() and time.monotonic() < given_up:
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def take(self) -> list[bytes] | None:
        """The next reply's raw documents; None at the cursor's end."""
        kind, value = self._queue.get()
        if kind == "error":
            raise value
        return value if kind == "reply" else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._cursor.close()


# -- the copier: one run's snapshot work, for the drain --------------------------------------------

class Copier:
    """The snapshot side of one drain run: the progress, the chunk being read (``window``), and the
    figures of the run report. The drain decides when (``shared.drain``); this decides what."""

    def __init__(self, progress: Progress, reader: ChunkReader, clock, in_scope, chunk_docs: int,
                 max_bytes: int) -> None:
        self.progress = progress
        self.reader = reader
        self.clock = clock
        self.in_scope = in_scope  # (db, coll) -> bool
        self.chunk_docs, self.max_bytes = chunk_docs, max(1, max_bytes)
        self.window: Window | None = None
        self.scan: Scan | None = None
        self.rows_written = 0
        self.passed_high: tuple[int, int] | None = None  # the latest high the stream is known to have passed
        self.run_copies: dict[int, CollectionCopy] = {}  # copies this run worked on (for the report)

    @property
    def has_work(self) -> bool:
        return bool(self.progress.copies)

    @property
    def busy(self) -> bool:
        """Whether events concern the copier (a copy in progress or a chunk waiting)."""
        return self.window is not None or bool(self.progress.copies)

    def start_requests(self, since: tuple[int, int] | None = None) -> list[str]:
        """Turn stored requests into copies from ``since`` (those out of the scope are dropped);
        returns the ignored."""
        wanted, ignored = [], []
        for ns in self.progress.requests:
            db, _, coll = ns.partition(".")
            (wanted if db and coll and self.in_scope(db, coll) else ignored).append((db, coll))
        self.progress.requests = []
        self.progress.start(wanted, "requested", since)
        return [f"{db}.{coll}" for db, coll in ignored]

    def on_event(self, event: RawBSONDocument, cluster: tuple[int, int]) -> None:
        """Every event read (also one a replay skips): the open chunk notes the keys it touched; a drop
        or rename moves the progress."""
        kind, db, coll, to, element = event_facts(event)
        if self.window is not None:
            self.window.observe(kind, db, coll, element, cluster, kind == "update_without_document")
        elif self.scan is not None and db == self.scan.ns[0]:
            if kind == "dropDatabase" or (coll == self.scan.ns[1] and kind in ("drop", "rename",
                                                                               "update_without_document")):
                self.close_scan()
            elif coll == self.scan.ns[1] and element is not None and cluster > self.scan.low:
                self.scan.touched.add(element)
        if kind in ("drop", "rename", "dropDatabase"):
            self.progress.on_event(kind, db, coll, to, self.in_scope)

    def open_window(self) -> Window:
        """Read the active copy's next chunk between two cluster times (the watermarks)."""
        copy = self.progress.active
        started = self.clock()
        if copy.estimated is None:
            copy.estimated = self.reader.estimate(copy.db, copy.coll)
        if copy.started is None:
            copy.started = round(started, 3)
        scan = self.scan
        if scan is None or not scan.fits(copy, started):
            self.close_scan()
            scan = self.scan = self.reader.scan(copy, self.reader.server_time())
            scan.opened = started
        docs, after, exhausted = scan.next_chunk(self.chunk_docs, self.max_bytes)
        high = self.reader.server_time()
        # the scan's low watermark and the keys touched since (see Scan)
        self.window = Window(copy.copy, copy.chunks, copy.db, copy.coll, scan.low, high, docs, after, exhausted,
                             started, touched=scan.touched)
        self.run_copies[copy.copy] = copy
        return self.window

    def rows(self, window: Window):
        """(key, raw snapshot row) of every row of the chunk to write, in ``_id`` order."""
        builder = RowBuilder(window)
        prefix = f"{SNAP_PREFIX}{window.copy}:"
        for element, raw in window.rows():
            yield prefix + element_text(element), builder.build(element, raw)

    def chunk_done(self, window: Window, rows: int) -> None:
        """The chunk's rows are in the batch: the progress moves (with them, in the next checkpoint)."""
        self.window = None
        if window.discarded:
            self.close_scan()  # read again from a new scan
            return
        self.rows_written += rows
        self.progress.chunk_written(window.copy, window.after, rows, self.clock() - window.seconds, window.exhausted,
                                    window.low)

    def end_line(self, window: Window) -> tuple[str, bytes] | None:
        """(key, raw line) of the copy's end, when this chunk is its last; call before ``chunk_done``::

            {"operationType": "snapshotEnd", "clusterTime": Timestamp(high), "ns": {...},
             "snapshot": {"copy": c, "chunks": n, "since": Timestamp(where the copy started from)}}

        A reader deletes then every document of the collection that no line touched since ``since``:
        it was deleted before the copy began (a re-snapshot after lost history, or a repair)."""
        copy = self.progress.find(window.copy)
        if window.discarded or not window.exhausted or copy is None:
            return None
        since = copy.since or list(window.low)
        t, i = window.high
        doc = {"operationType": "snapshotEnd", "clusterTime": bson.Timestamp(t, i),
               "ns": {"db": window.db, "coll": window.coll},
               "snapshot": {"copy": window.copy, "chunks": window.chunk + 1,
                            "since": bson.Timestamp(since[0], since[1])}}
        return end_key(window.copy), bson.encode(doc)

    def stream_reached(self, window: Window, token_cluster: tuple[int, int] | None) -> bool:
        """Whether the stream is known to have read every event up to the chunk's ``high``: its
        position is there, or an earlier chunk's wait showed it passed a ``high`` as late (a quiet
        server's cluster time moves with its own periodic writes, which a post-batch token need not
        show: chunks that share a ``high`` wait once, not each)."""
        return window.reached(token_cluster) or (self.passed_high is not None and window.high <= self.passed_high)

    def stream_passed(self, window: Window, token_cluster: tuple[int, int] | None) -> bool:
        """``Window.passed`` (one more read of the stream was taken), remembering the ``high`` passed."""
        if not (self.stream_reached(window, token_cluster) or window.passed(token_cluster)):
            return False
        if self.passed_high is None or window.high > self.passed_high:
            self.passed_high = window.high
        return True

    def discard(self) -> None:
        """The chunk is not written (the run ends, or the stream restarts): it is read again later."""
        self.window = None
        self.passed_high = None  # a restarted stream shows nothing of what the old one passed
        self.close_scan()

    def close_scan(self) -> None:
        if self.scan is not None:
            self.scan.close()
            self.scan = None

    def report(self) -> list[dict]:
        copies = {c.copy: c for c in self.progress.finished + self.progress.copies if c.copy in self.run_copies}
        copies.update({c.copy: c for c in self.progress.copies})
        return [figures(c, self.progress.oplog_window, self.chunk_docs) for c in sorted(copies.values(),
                                                                                          key=lambda c: c.copy)]
