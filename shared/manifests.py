"""Manifests, day markers and late-event records: their names and contents. Pure: no I/O.

A **manifest** describes one commit that moved the pipeline's ``_seq`` forward: every byte range it
made durable, per file, with the range's ``_seq`` numbers, event count, cluster times and SHA-256.
It lives outside the data partitions, one file per commit, named by its ``_seq`` range so names sort
in commit order::

    _manifests/<pipeline>/<generation>/<first_seq:020d>-<last_seq:020d>.json

Consecutive manifests cover consecutive ranges (``first_seq`` = the previous ``last_seq`` + 1), so
"the manifests after the last one I processed" is exactly the new data, in order. A range's numbers
are each held by one line of the listed byte ranges, except the ``retired`` ones (numbers a failed
run gave out that no line holds, see ``intent.Numbering``).

While a failed run's range is open (the commits that replay it), no manifest is written: its lines
are durable but their numbering is not final. The commit that closes the range gets one manifest
for every byte since the previous manifest, the failed run's lines included (see ``publisher``).

A **day marker** (``_SUCCESS`` in a partition folder) is written once the committed position is
``LATE_EVENT_GRACE`` past the end of the folder's UTC day; a **late-event record**
(``_LATE-<first_seq>-<last_seq>.json`` in the folder) lists lines that arrived for a day after its
marker. The formats are in docs/design.md ("Manifests", "Day markers").
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from . import layout

FORMAT = 1
MANIFESTS = "_manifests"
SUCCESS = "_SUCCESS"
LATE_PREFIX = "_LATE-"


def manifest_dir(pipeline: str, generation: str) -> str:
    return f"{MANIFESTS}/{layout.encode_name(pipeline)}/{generation}"


def manifest_name(first_seq: int, last_seq: int) -> str:
    return f"{first_seq:020d}-{last_seq:020d}.json"


def parse_manifest_name(name: str) -> tuple[int, int] | None:
    """``(first_seq, last_seq)`` of a manifest file name, None for any other name."""
    stem, dot, ext = name.rpartition("/")[2].partition(".")
    first, dash, last = stem.partition("-")
    if ext != "json" or not dash or len(first) != 20 or len(last) != 20 or not (first + last).isdigit():
        return None
    return int(first), int(last)


def late_name(first_seq: int, last_seq: int) -> str:
    return f"{LATE_PREFIX}{first_seq:020d}-{last_seq:020d}.json"


def iso(seconds: int | float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Span:
    """Lines of one file: the byte range ``[start, end)`` and what its lines hold."""

    path: str
    start: int
    end: int
    first_seq: int | None
    last_seq: int | None
    events: int
    first_cluster: int | None
    last_cluster: int | None
    sha256: str

    def entry(self, late: bool = False) -> dict:
        out = {"path": self.path, "start": self.start, "end": self.end, "first_seq": self.first_seq,
               "last_seq": self.last_seq, "events": self.events,
               "first_cluster_time": iso(self.first_cluster), "last_cluster_time": iso(self.last_cluster),
               "sha256": self.sha256}
        if late:
            out["late"] = True
        return out

    @classmethod
    def from_entry(cls, entry: dict) -> "Span":
        """A file entry of a manifest, as ``entry()`` wrote it; what an audit checks of it (the
        cluster times are not read back)."""
        return cls(entry["path"], int(entry["start"]), int(entry["end"]), entry.get("first_seq"),
                   entry.get("last_seq"), int(entry.get("events", 0)), None, None, entry.get("sha256", ""))

    @property
    def folder(self) -> str:
        return self.path.rpartition("/")[0]


class BadLine(ValueError):
    """A line that does not parse, has no ``_seq``, or is torn (no newline at the end)."""


def line_seq_cluster(raw: bytes) -> tuple[int, int | None]:
    """``(_seq, cluster seconds)`` of one line (without its newline); ``BadLine`` otherwise."""
    try:
        line = orjson.loads(raw)
        seq = line["_seq"]
        seq = int(seq["$numberLong"]) if isinstance(seq, dict) else int(seq)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BadLine(f"{exc.__class__.__name__}") from None
    cluster = line.get("clusterTime")
    seconds = cluster.get("$timestamp", {}).get("t") if isinstance(cluster, dict) else None
    return seq, seconds


def span_of(path: str, start: int, data: bytes) -> tuple[Span, list[int]]:
    """The span of ``data`` read from ``path`` at ``start``, and the ``_seq`` of each of its lines."""
    import hashlib

    if data and not data.endswith(b"\n"):
        raise BadLine(f"{path}: the bytes from {start} end in a torn line")
    seqs: list[int] = []
    clusters: list[int] = []
    for raw in data.splitlines():
        seq, cluster = line_seq_cluster(raw)
        seqs.append(seq)
        if cluster is not None:
            clusters.append(cluster)
    return Span(path, start, start + len(data), seqs[0] if seqs else None, seqs[-1] if seqs else None, len(seqs),
                clusters[0] if clusters else None, clusters[-1] if clusters else None,
                hashlib.sha256(data).hexdigest()), seqs


def retired_ranges(first_seq: int, last_seq: int, held: set[int]) -> list[list[int]]:
    """The numbers of ``first_seq..last_seq`` no line holds, as ``[from, to]`` runs."""
    out: list[list[int]] = []
    for n in range(first_seq, last_seq + 1):
        if n in held:
            continue
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def retired_count(retired: list[list[int]]) -> int:
    return sum(b - a + 1 for a, b in retired)


def manifest_body(pipeline: str, generation: str, first_seq: int, last_seq: int, spans: list[Span],
                  retired: list[list[int]], committed_at: str | None, late: set[str] = frozenset()) -> bytes:
    """The manifest's bytes (deterministic: the same commit always gives the same bytes)."""
    doc = {"format": FORMAT, "pipeline": pipeline, "generation": generation, "first_seq": first_seq,
           "last_seq": last_seq, "events": sum(s.events for s in spans), "retired": retired,
           "committed_at": committed_at,
           "files": [s.entry(s.path in late) for s in spans]}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def late_body(pipeline: str, generation: str, manifest: str, day: str, entries: list[dict]) -> bytes:
    doc = {"format": FORMAT, "pipeline": pipeline, "generation": generation, "day": day, "manifest": manifest,
           "events": sum(e["events"] for e in entries), "files": entries}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def marker_body(pipeline: str, generation: str, day: str, folder: str, tally: list, complete_at: str,
                grace_seconds: int, manifest_folder: str) -> bytes:
    events, first_seq, last_seq, size, first_manifest, last_manifest, count = tally
    doc = {"format": FORMAT, "pipeline": pipeline, "generation": generation, "day": day, "folder": folder,
           "events": events, "bytes": size, "first_seq": first_seq, "last_seq": last_seq,
           "manifests": {"folder": manifest_folder, "first": first_manifest, "last": last_manifest,
                         "count": count},
           "complete_at": complete_at, "late_event_grace_seconds": grace_seconds}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def parse_manifest(data: bytes) -> dict:
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), list):
        raise ValueError("not a manifest of format 1")
    return doc


# -- days ------------------------------------------------------------------------------------------

def complete_through(position_seconds: float | None, grace_seconds: int) -> str | None:
    """The last UTC day whose end plus the grace the position has passed (``YYYY-MM-DD``)."""
    if position_seconds is None:
        return None
    last_day = int((position_seconds - grace_seconds) // 86400) - 1
    if last_day < 0:
        return None
    return datetime.fromtimestamp(last_day * 86400, tz=timezone.utc).strftime("%Y-%m-%d")


def tally_add(tally: list | None, span: Span, manifest: str) -> list:
    """A folder's running totals for its day: events, first/last _seq, bytes, first/last manifest, count."""
    if tally is None:
        return [span.events, span.first_seq, span.last_seq, span.end - span.start, manifest, manifest, 1]
    events, first, last, size, first_m, last_m, count = tally
    firsts = [x for x in (first, span.first_seq) if x is not None]
    lasts = [x for x in (last, span.last_seq) if x is not None]
    return [events + span.events, min(firsts) if firsts else None, max(lasts) if lasts else None,
            size + span.end - span.start, first_m, manifest, count + (0 if last_m == manifest else 1)]


def span_day(span: Span) -> str | None:
    return layout.folder_day(span.folder)


# -- the state kept in the checkpoint row -----------------------------------------------------------

def pack(state: dict) -> dict:
    """The readers' state as the checkpoint row keeps it: compressed JSON (paths repeat a lot)."""
    raw = zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 9)
    return {"v": 1, "z": base64.b64encode(raw).decode()}


def unpack(packed: dict | None) -> dict:
    if not packed:
        return {}
    if packed.get("v") != 1:
        raise ValueError("unknown readers state")
    return json.loads(zlib.decompress(base64.b64decode(packed["z"])))
