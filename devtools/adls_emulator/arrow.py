"""Quick query output in the Apache Arrow IPC streaming format (standard library only).

The stream is what the Arrow columnar format specification ("IPC Streaming Format") describes: an
encapsulated Schema message, one RecordBatch message with the rows, and the end-of-stream marker.
Messages are FlatBuffers (Message.fbs / Schema.fbs, metadata version V5); :class:`_Builder` writes
the few tables they need. Column types: the quick query's Arrow types ``int64``, ``bool``,
``timestamp[ms]``, ``string``, ``double`` and ``decimal`` (128-bit, with precision and scale).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

_V5 = 4
_HEADER_SCHEMA, _HEADER_RECORD_BATCH = 1, 3
_TYPE_INT, _TYPE_FLOAT, _TYPE_UTF8, _TYPE_BOOL, _TYPE_DECIMAL, _TYPE_TIMESTAMP = 2, 3, 5, 6, 7, 10
TYPES = ("int64", "bool", "timestamp[ms]", "string", "double", "decimal")


@dataclass
class ArrowField:
    type: str
    name: str = ""
    precision: int = 0
    scale: int = 0


# ------------------------------------------------------------------------------------------ FlatBuffers
class _Table:
    """A FlatBuffers table: ``fields`` maps a field index to (kind, value); kinds ``u8``, ``bool``,
    ``i16``, ``i32``, ``i64`` (scalars) or ``ref`` (an offset to a _Table, _String or _Vector)."""

    def __init__(self, fields: dict[int, tuple[str, Any]]):
        self.fields = fields


class _String:
    def __init__(self, text: str):
        self.data = text.encode("utf-8")


class _Vector:
    """A vector of offsets to tables (``items`` are _Table) or of 16-byte structs (``structs``)."""

    def __init__(self, items: list | None = None, structs: list[tuple[int, int]] | None = None):
        self.items, self.structs = items, structs


_SIZE = {"u8": 1, "bool": 1, "i16": 2, "i32": 4, "i64": 8, "ref": 4}
_FMT = {"u8": "<B", "bool": "<B", "i16": "<h", "i32": "<i", "i64": "<q"}


class _Builder:
    """Lays objects out front to back: every offset (uoffset) points forward, as FlatBuffers requires,
    and each table's vtable sits just before it."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def _align(self, n: int, extra: int = 0) -> None:
        while (len(self.buf) + extra) % n:
            self.buf.append(0)

    def finish(self, root: _Table) -> bytes:
        self.buf += b"\0" * 4
        pos = self._place(root)
        struct.pack_into("<I", self.buf, 0, pos)
        self._align(8)
        return bytes(self.buf)

    def _place(self, obj: Any) -> int:
        if isinstance(obj, _String):
            self._align(4)
            pos = len(self.buf)
            self.buf += struct.pack("<I", len(obj.data)) + obj.data + b"\0"
            return pos
        if isinstance(obj, _Vector):
            if obj.structs is not None:
                self._align(8, 4)  # the elements (16-byte structs of two longs) are 8-aligned
                pos = len(self.buf)
                self.buf += struct.pack("<I", len(obj.structs))
                for a, b in obj.structs:
                    self.buf += struct.pack("<qq", a, b)
                return pos
            self._align(4)
            pos = len(self.buf)
            self.buf += struct.pack("<I", len(obj.items)) + b"\0" * (4 * len(obj.items))
            for i, item in enumerate(obj.items):
                slot = pos + 4 + 4 * i
                child = self._place(item)
                struct.pack_into("<I", self.buf, slot, child - slot)
            return pos
        return self._place_table(obj)

    def _place_table(self, table: _Table) -> int:
        count = max(table.fields) + 1 if table.fields else 0
        # Inline layout after the 4-byte soffset: widest fields first, so each is aligned.
        order = sorted(table.fields, key=lambda i: -_SIZE[table.fields[i][0]])
        offsets, cursor = {}, 4
        for i in order:
            size = _SIZE[table.fields[i][0]]
            cursor += (-cursor) % size
            offsets[i] = cursor
            cursor += size
        inline = cursor + (-cursor) % 4
        vtable = struct.pack(f"<HH{count}H", 4 + 2 * count, inline, *[offsets.get(i, 0) for i in range(count)])
        self._align(2)
        vt_pos = len(self.buf)
        self.buf += vtable
        self._align(8)
        pos = len(self.buf)
        self.buf += b"\0" * inline
        struct.pack_into("<i", self.buf, pos, pos - vt_pos)
        refs = []
        for i, (kind, value) in table.fields.items():
            if kind == "ref":
                refs.append((pos + offsets[i], value))
            else:
                struct.pack_into(_FMT[kind], self.buf, pos + offsets[i], int(value))
        for slot, child in refs:
            child_pos = self._place(child)
            struct.pack_into("<I", self.buf, slot, child_pos - slot)
        return pos


# ------------------------------------------------------------------------------------------ messages
def _type_table(f: ArrowField) -> tuple[int, _Table]:
    if f.type == "int64":
        return _TYPE_INT, _Table({0: ("i32", 64), 1: ("bool", 1)})
    if f.type == "double":
        return _TYPE_FLOAT, _Table({0: ("i16", 2)})
    if f.type == "string":
        return _TYPE_UTF8, _Table({})
    if f.type == "bool":
        return _TYPE_BOOL, _Table({})
    if f.type == "decimal":
        return _TYPE_DECIMAL, _Table({0: ("i32", f.precision), 1: ("i32", f.scale), 2: ("i32", 128)})
    return _TYPE_TIMESTAMP, _Table({0: ("i16", 1)})  # timestamp[ms], no time zone


def _message(header_type: int, header: _Table, body_length: int) -> bytes:
    meta = _Builder().finish(_Table({0: ("i16", _V5), 1: ("u8", header_type), 2: ("ref", header),
                                     3: ("i64", body_length)}))
    return struct.pack("<Ii", 0xFFFFFFFF, len(meta)) + meta


def _schema(fields: list[ArrowField]) -> bytes:
    tables = []
    for f in fields:
        type_type, type_table = _type_table(f)
        tables.append(_Table({0: ("ref", _String(f.name)), 1: ("bool", 1), 2: ("u8", type_type),
                              3: ("ref", type_table), 5: ("ref", _Vector(items=[]))}))
    return _message(_HEADER_SCHEMA, _Table({0: ("i16", 0), 1: ("ref", _Vector(items=tables))}), 0)


def _bitmap(bits: list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _convert(f: ArrowField, raw: Any) -> Any:
    """A query value as the column's type (None stays null)."""
    if raw is None or (raw == "" and f.type != "string"):
        return None
    try:
        if f.type == "int64":
            return int(Decimal(str(raw)))
        if f.type == "double":
            return float(raw)
        if f.type == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("true", "false"):
                raise ValueError(text)
            return text == "true"
        if f.type == "decimal":
            return int((Decimal(str(raw)) * (Decimal(10) ** f.scale)).to_integral_value())
        if f.type == "timestamp[ms]":
            when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return int(when.timestamp() * 1000)
        return raw if isinstance(raw, str) else str(raw)
    except (ValueError, InvalidOperation, ArithmeticError):
        raise _NotConvertible() from None


class _NotConvertible(Exception):
    pass


def _record_batch(fields: list[ArrowField], rows: list[list[Any]], bad: list[tuple[int, str]]) -> bytes:
    body = bytearray()
    buffers: list[tuple[int, int]] = []
    nodes: list[tuple[int, int]] = []

    def add(data: bytes) -> None:
        buffers.append((len(body), len(data)))
        body.extend(data)
        body.extend(b"\0" * ((-len(body)) % 8))

    for index, f in enumerate(fields):
        values = []
        for number, row in enumerate(rows):
            try:
                values.append(_convert(f, row[index] if index < len(row) else None))
            except _NotConvertible:
                values.append(None)
                bad.append((number, f.name))
        valid = [v is not None for v in values]
        nodes.append((len(values), valid.count(False)))
        add(_bitmap(valid))
        if f.type == "int64" or f.type == "timestamp[ms]":
            add(b"".join(struct.pack("<q", v or 0) for v in values))
        elif f.type == "double":
            add(b"".join(struct.pack("<d", v or 0.0) for v in values))
        elif f.type == "bool":
            add(_bitmap([bool(v) for v in values]))
        elif f.type == "decimal":
            add(b"".join((v or 0).to_bytes(16, "little", signed=True) for v in values))
        else:
            offsets, data = [0], bytearray()
            for v in values:
                data += (v or "").encode("utf-8")
                offsets.append(len(data))
            add(struct.pack(f"<{len(offsets)}i", *offsets))
            add(bytes(data))
    header = _Table({0: ("i64", len(rows)), 1: ("ref", _Vector(structs=nodes)),
                     2: ("ref", _Vector(structs=buffers))})
    return _message(_HEADER_RECORD_BATCH, header, len(body)) + bytes(body)


def ipc_stream(fields: list[ArrowField], rows: list[list[Any]]) -> tuple[bytes, list[tuple[int, str]]]:
    """The Arrow IPC stream of ``rows`` (lists of values, one per field) with the schema ``fields``,
    and the (row number, field name) of each value that is not of its field's type (written as null)."""
    bad: list[tuple[int, str]] = []
    batch = _record_batch(fields, rows, bad)
    return _schema(fields) + batch + struct.pack("<Ii", 0xFFFFFFFF, 0), bad
