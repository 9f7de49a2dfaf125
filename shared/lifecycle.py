"""Lines the app writes that are not change events: gap records and dead letters. Pure, no I/O.

Gap record (``ON_HISTORY_LOST=restart``): the stored position left the oplog, so the stream restarts
at the server's current cluster time and the events in between are lost. One line, with its own
``_seq``, names the lost window, in the scope's folder (collection scope: the collection's folder;
database scope: ``{db}/_events/``; deployment: ``_cluster/_events/``) on the day of the restart::

    {"operationType": "gap", "clusterTime": <restart time>, "ns": {"db": ..., "coll": ...},
     "gap": {"from": <cluster time of the last event written before it, or null>,
             "to": <restart time: the first event after the gap is at or after it>,
             "afterSeq": <last _seq before the gap>, "code": 286, "reason": "..."},
     "_seq": ...}

Dead letter (an event the server cannot deliver because it is over 16 MB, code 10334): the event
read again without ``fullDocument``, ``fullDocumentBeforeChange`` and ``updateDescription`` (so it
has its ``_id`` token, ``operationType``, ``ns``, ``documentKey``, ``clusterTime``), plus
``deadLetter: {"reason": "BSONObjectTooLarge", "code": 10334}``, in the ``_dead_letter`` folder of
its collection: ``{db}/{coll}/_dead_letter/year=YYYY/month=MM/day=DD/`` (Spark and Hive skip
``_``-prefixed folders, so table readers of the collection do not see it).
"""

from __future__ import annotations

import bson
from bson import Int64, Timestamp

from . import layout

DEAD_LETTER = "_dead_letter"
# what a dead letter keeps of an event: everything but the document fields that made it too large
STRIP_LARGE_FIELDS = {"$project": {"fullDocument": 0, "fullDocumentBeforeChange": 0, "updateDescription": 0}}


def timestamp_text(ts: Timestamp) -> str:
    return f"{ts.time}.{ts.inc}"


def parse_timestamp(text: str) -> Timestamp:
    seconds, _, increment = text.partition(".")
    return Timestamp(int(seconds), int(increment or 0))


def gap_window(last_cluster_time: int | None, restart: Timestamp, after_seq: int, code: int | None,
               reason: str) -> dict:
    """The pending gap stored with the checkpoint (plain JSON values)."""
    return {"from": last_cluster_time, "to": timestamp_text(restart), "afterSeq": after_seq, "code": code,
            "reason": reason[:500]}


def gap_record(gap: dict, db: str | None, coll: str | None) -> bytes:
    """The gap line's BSON (``_seq`` is appended by the encoder)."""
    to = parse_timestamp(gap["to"])
    ns = {k: v for k, v in (("db", db), ("coll", coll)) if v}
    return bson.encode({
        "operationType": "gap",
        "clusterTime": to,
        "ns": ns,
        "gap": {
            "from": Timestamp(int(gap["from"]), 0) if gap.get("from") is not None else None,
            "to": to,
            "afterSeq": Int64(gap["afterSeq"]),
            "code": gap.get("code"),
            "reason": gap.get("reason", ""),
        },
    })


def gap_folder(gap: dict, db: str | None, coll: str | None) -> str:
    return layout.partition_dir(db, coll, parse_timestamp(gap["to"]).time)


def dead_letter_record(stripped_event: bytes, code: int | None, reason: str = "BSONObjectTooLarge") -> bytes:
    """The stripped event's BSON with a ``deadLetter`` field appended."""
    doc = bson.decode(stripped_event)
    doc["deadLetter"] = {"reason": reason, "code": code}
    return bson.encode(doc)


def dead_letter_folder(folder: str) -> str:
    """The dead-letter folder beside an event's folder: ``{db}/{coll}/_dead_letter/year=.../day=...``."""
    head, _, days = folder.partition("/year=")
    return f"{head}/{DEAD_LETTER}/year={days}"


def describe_event(event) -> str:
    """What a log line may say of an event: its type, namespace, key and time (no document fields)."""
    from bson import json_util

    keep = {k: event.get(k) for k in ("operationType", "ns", "documentKey", "clusterTime") if event.get(k) is not None}
    return json_util.dumps(keep)[:1000]
