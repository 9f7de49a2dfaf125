"""Quick query (Query Blob, ``POST ?comp=query``) on CSV and JSON files, for a subset of its SQL.

Supported: ``SELECT *`` or a list of columns (by header name, JSON key, or ``_1``, ``_2``, ...)
``FROM BlobStorage`` (any table name) with an optional ``WHERE <column> <op> <literal>``
(``=``, ``!=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``; numbers compare as numbers), on delimited-text
or JSON-lines input, into delimited-text, JSON-lines or Apache Arrow (IPC stream, see ``arrow.py``)
output. Anything else in the expression, Arrow input and Parquet, answer 501 NotImplemented naming
it. The answer is what the service
sends: an Avro object container of ``resultData``, ``error``, ``progress`` and ``end`` records.
A row that lacks a selected column is skipped with a non-fatal error; a JSON record that does not
parse stops the query with a fatal error.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from . import arrow
from .arrow import ArrowField
from .errors import StorageError, error
from .features import not_implemented

_NS = "com.microsoft.azure.storage.queryBlobContents."
_SCHEMA = json.dumps([
    {"type": "record", "name": _NS + "resultData", "fields": [{"name": "data", "type": "bytes"}]},
    {"type": "record", "name": _NS + "error", "fields": [
        {"name": "fatal", "type": "boolean"}, {"name": "name", "type": "string"},
        {"name": "description", "type": "string"}, {"name": "position", "type": "long"}]},
    {"type": "record", "name": _NS + "progress", "fields": [
        {"name": "bytesScanned", "type": "long"}, {"name": "totalBytes", "type": "long"}]},
    {"type": "record", "name": _NS + "end", "fields": [{"name": "totalBytes", "type": "long"}]},
])


# ------------------------------------------------------------------------------------------ Avro
def _long(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(b: bytes) -> bytes:
    return _long(len(b)) + b


def _record(kind: str, **fields: Any) -> bytes:
    if kind == "resultData":
        return _long(0) + _bytes(fields["data"])
    if kind == "error":
        return (_long(1) + (b"\x01" if fields["fatal"] else b"\x00") + _bytes(fields["name"].encode())
                + _bytes(fields["description"].encode()) + _long(fields["position"]))
    if kind == "progress":
        return _long(2) + _long(fields["bytesScanned"]) + _long(fields["totalBytes"])
    return _long(3) + _long(fields["totalBytes"])


def avro_container(records: list[bytes]) -> bytes:
    sync = os.urandom(16)
    meta = _long(2) + _bytes(b"avro.schema") + _bytes(_SCHEMA.encode()) + _bytes(b"avro.codec") + _bytes(b"null") \
        + _long(0)
    out = bytearray(b"Obj\x01" + meta + sync)
    for rec in records:  # one record per block, as the service streams them
        out += _long(1) + _long(len(rec)) + rec + sync
    return bytes(out)


# ------------------------------------------------------------------------------------------ request
@dataclass
class Format:
    kind: str  # delimited | json
    column_separator: str = ","
    field_quote: str = '"'
    record_separator: str = "\n"
    escape_char: str = ""
    has_headers: bool = False
    arrow_fields: list[ArrowField] | None = None  # output only


def _format(elem: ET.Element | None, default: Format, output: bool = False) -> Format:
    if elem is None:
        return default
    fmt = elem.find("Format")
    kind = (fmt.findtext("Type") if fmt is not None else "") or ""
    kind = kind.strip().lower()
    if kind == "delimited":
        cfg = fmt.find("DelimitedTextConfiguration")
        get = (lambda name, d: d if cfg is None or cfg.find(name) is None else (cfg.findtext(name) or ""))
        return Format("delimited", get("ColumnSeparator", ","), get("FieldQuote", '"'), get("RecordSeparator", "\n"),
                      get("EscapeChar", ""), get("HasHeaders", "false").strip().lower() == "true")
    if kind == "json":
        cfg = fmt.find("JsonTextConfiguration")
        sep = "\n" if cfg is None or cfg.find("RecordSeparator") is None else (cfg.findtext("RecordSeparator") or "")
        return Format("json", record_separator=sep)
    if kind == "arrow" and output:
        fields = []
        for field in fmt.iter("Field"):
            ftype = (field.findtext("Type") or "").strip().lower()
            if ftype not in arrow.TYPES:
                raise not_implemented(f"quick query Arrow output of the type {ftype!r}")
            try:
                precision, scale = int(field.findtext("Precision") or 0), int(field.findtext("Scale") or 0)
            except ValueError as exc:
                raise error(400, "InvalidXmlNodeValue", "Precision and Scale must be numbers.") from exc
            fields.append(ArrowField(ftype, field.findtext("Name") or "", precision, scale))
        if not fields:
            raise error(400, "InvalidXmlNodeValue", "The Arrow output schema has no fields.")
        return Format("arrow", arrow_fields=fields)
    raise not_implemented(f"quick query with the {kind or 'unknown'} format")


_SQL = re.compile(r"^\s*select\s+(?P<cols>.+?)\s+from\s+(?P<table>\w+)"
                  r"(?:\s+where\s+(?P<col>\w+)\s*(?P<op><=|>=|<>|!=|=|<|>)\s*(?P<lit>'[^']*'|[-+]?\d+(?:\.\d+)?))?"
                  r"\s*;?\s*$", re.IGNORECASE | re.DOTALL)


@dataclass
class Query:
    columns: list[str] | None  # None = *
    where: tuple[str, str, Any] | None
    input: Format
    output: Format


def parse_request(body: bytes) -> Query:
    try:
        root = ET.fromstring(body.decode("utf-8-sig"))
    except (ET.ParseError, UnicodeDecodeError) as exc:
        raise error(400, "InvalidXmlDocument", "The query request is not well-formed XML.") from exc
    if (root.findtext("QueryType") or "").strip().upper() != "SQL":
        raise error(400, "InvalidXmlNodeValue", "QueryType must be SQL.")
    expression = root.findtext("Expression") or ""
    m = _SQL.match(expression)
    if not m:
        raise not_implemented(f"the quick query expression {expression!r} (the emulator supports SELECT <columns> "
                              "FROM <table> [WHERE <column> <op> <literal>])")
    cols = [c.strip() for c in m.group("cols").split(",")]
    if any(not re.fullmatch(r"\*|\w+", c) for c in cols) or ("*" in cols and len(cols) > 1):
        raise not_implemented(f"the quick query select list {m.group('cols')!r}")
    where = None
    if m.group("col"):
        lit = m.group("lit")
        value: Any = lit[1:-1] if lit.startswith("'") else float(lit)
        where = (m.group("col"), m.group("op"), value)
    inp = _format(root.find("InputSerialization"), Format("delimited"))
    out = _format(root.find("OutputSerialization"), inp, output=True)
    return Query(None if cols == ["*"] else cols, where, inp, out)


# ------------------------------------------------------------------------------------------ running
def _split_records(data: str, sep: str) -> list[tuple[int, str]]:
    """(offset, record) pairs; with the separator ``\\n`` a ``\\r`` before it belongs to the separator."""
    out, pos = [], 0
    for part in data.split(sep):
        start = pos
        pos += len(part) + len(sep)
        if sep == "\n" and part.endswith("\r"):
            part = part[:-1]
        out.append((start, part))
    if out and out[-1][1] == "":
        out.pop()
    return out


def _split_fields(record: str, fmt: Format) -> list[str]:
    fields, cur, quoted, i = [], [], False, 0
    q, esc, sep = fmt.field_quote, fmt.escape_char, fmt.column_separator
    while i < len(record):
        ch = record[i]
        if esc and ch == esc and i + 1 < len(record):
            cur.append(record[i + 1])
            i += 2
            continue
        if q and ch == q:
            if quoted and record[i + 1:i + 2] == q:
                cur.append(q)
                i += 2
                continue
            quoted = not quoted
        elif ch == sep and not quoted:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    fields.append("".join(cur))
    return fields


def _csv_out(fields: list[str], fmt: Format) -> str:
    out = []
    special = {fmt.column_separator, fmt.record_separator, fmt.field_quote, "\n", "\r"} - {""}
    for f in fields:
        if fmt.field_quote and any(s in f for s in special):
            inner = f.replace(fmt.field_quote, (fmt.escape_char or fmt.field_quote) + fmt.field_quote)
            f = fmt.field_quote + inner + fmt.field_quote
        out.append(f)
    return fmt.column_separator.join(out) + fmt.record_separator


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(right, float):
        try:
            left = float(left)
        except (TypeError, ValueError):
            return False
    elif left is not None:
        left = str(left)
    if left is None:
        return False
    return {"=": left == right, "!=": left != right, "<>": left != right, "<": left < right,
            "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def run(query: Query, data: bytes) -> bytes:
    """The Avro answer for ``query`` over ``data``."""
    text = data.decode("utf-8", errors="replace")
    total = len(data)
    out: list[str] = []
    errors: list[bytes] = []
    rows: list[tuple[int, dict[str, Any], list[Any]]] = []  # offset, by name, by position
    header: list[str] | None = None
    fatal = False
    if query.input.kind == "delimited":
        for offset, record in _split_records(text, query.input.record_separator):
            fields = _split_fields(record, query.input)
            if query.input.has_headers and header is None:
                header = fields
                continue
            rows.append((offset, dict(zip(header or [], fields)), fields))
    else:
        decoder, pos = json.JSONDecoder(), 0
        skip = set(" \t\r\n" + query.input.record_separator)
        while pos < len(text):
            while pos < len(text) and text[pos] in skip:
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                errors.append(_record("error", fatal=True, name="InvalidJsonRecord",
                                      description="The JSON record is not valid.", position=pos))
                fatal = True
                break
            if not isinstance(obj, dict):
                obj = {}
            rows.append((pos, obj, list(obj.values())))
            pos = end

    def value(row: tuple[int, dict, list], col: str) -> tuple[bool, Any]:
        _, named, positional = row
        if re.fullmatch(r"_\d+", col):
            index = int(col[1:]) - 1
            return (index < len(positional), positional[index] if index < len(positional) else None)
        return (col in named, named.get(col))

    arrow_rows: list[list[Any]] = []
    arrow_offsets: list[int] = []
    if query.output.kind == "delimited" and query.output.has_headers and header is not None:
        out.append(_csv_out(header if query.columns is None else query.columns, query.output))
    for row in rows:
        if query.where:
            present, left = value(row, query.where[0])
            if not present or not _compare(left, query.where[1], query.where[2]):
                continue
        if query.columns is None:
            picked_names = list(row[1].keys()) if query.input.kind == "json" else None
            picked = row[2]
        else:
            picked, picked_names, missing = [], [], False
            for col in query.columns:
                present, v = value(row, col)
                if not present and query.input.kind == "delimited":
                    missing = True
                    break
                if present:
                    picked.append(v)
                    picked_names.append(col)
            if missing:
                errors.append(_record("error", fatal=False, name="InvalidColumnOrdinal",
                                      description="The record does not have the selected column.", position=row[0]))
                continue
        if query.output.kind == "arrow":
            arrow_rows.append(list(picked))
            arrow_offsets.append(row[0])
            continue
        if query.output.kind == "json":
            names = picked_names if picked_names is not None else [f"_{i + 1}" for i in range(len(picked))]
            out.append(json.dumps(dict(zip(names, picked)), separators=(",", ":")) + query.output.record_separator)
        else:
            out.append(_csv_out(["" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
                                 for v in picked], query.output))
    if query.output.kind == "arrow":
        stream, bad = arrow.ipc_stream(query.output.arrow_fields, arrow_rows)
        for number, name in bad:
            errors.append(_record("error", fatal=False, name="InvalidTypeConversion",
                                  description=f"The value of {name!r} is not of the Arrow schema's type.",
                                  position=arrow_offsets[number]))
        records = [_record("resultData", data=stream)]
    else:
        records = [_record("resultData", data="".join(out).encode())]
    records += errors
    scanned = total if not fatal else total
    records.append(_record("progress", bytesScanned=scanned, totalBytes=total))
    records.append(_record("end", totalBytes=total))
    return avro_container(records)


__all__ = ["Query", "StorageError", "avro_container", "parse_request", "run"]
