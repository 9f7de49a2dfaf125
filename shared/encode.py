"""Change event (raw BSON) -> one line of MongoDB Extended JSON with ``_seq``. Pure, no I/O.

The line is what ``bson.json_util`` writes for the event with the app's options (every BSON type,
both modes); the ways to it, fastest first, each event taking the first that is exact for it:

* ``_bronze_extjson`` (``native/extjson``, a small C extension pip builds from requirements.txt):
  one pass over the raw BSON, no Python object per value, both modes. It declines (returns None)
  what it does not write itself, and those events take the ``json_util`` path: strings or keys that
  are not valid UTF-8, the deprecated types (undefined, DBPointer, symbol), Decimal128 NaN,
  infinities and non-canonical values.
* Without the extension (no C compiler where pip ran), the pure-Python paths:

  - relaxed mode, with ``orjson``: pymongo's C decoder turns the BSON into Python values and
    ``orjson`` writes them; the values JSON has no form for go through ``bson.json_util``'s own
    converters. NaN, infinities and invalid UTF-8 take the ``json_util`` path.
  - canonical mode (or no ``orjson``): libbson (``python-bsonjs``). libbson gets two things wrong
    that the Extended JSON specification defines, and those events take the ``json_util`` path:
    strings that are not valid UTF-8 (libbson refuses the document), and relaxed-mode dates after
    the year 9999 (libbson writes a five-digit year; the specification and ``json_util`` require
    ``{"$date": {"$numberLong": ...}}``).
* ``bson.json_util``: decode and dump. Bad UTF-8 comes out as lone surrogates (``\\udcXX``
  escapes), from which a reader restores the exact bytes with
  ``str.encode("utf-8", "surrogateescape")``.

All of them write the same values; they differ only in white space, in escaping (the fast paths
write UTF-8, ``json_util`` writes ``\\uXXXX``) and in how a double is spelled (``1e+16`` or
``1e16``, libbson's canonical ``4.7999999999999998224`` for ``4.8``), which parse to the same
values.
"""

from __future__ import annotations

import math
import re
import struct
from datetime import datetime

import bson
import bson.errors
import bsonjs
from bson import json_util
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId

try:
    import orjson
except ImportError:  # pragma: no cover - the libbson path below writes the same lines
    orjson = None

try:
    import _bronze_extjson
except ImportError:  # pragma: no cover - built by pip where a C compiler is found; else the paths below
    _bronze_extjson = None

_SEQ_KEY = b"\x12_seq\x00"  # BSON element: type 0x12 (int64), name "_seq"
_BAD_DATE = re.compile(r'"\$date" : "[+-]?\d{5,}')
# The last two little-endian bytes of every NaN or infinite double: exponent bits all set. Valid
# UTF-8 never has them in a row; other values (negative integers, ObjectIds) sometimes do, and
# such an event is then checked value by value.
_NONFINITE_BYTES = re.compile(rb"[\xf0-\xff][\x7f\xff]")
_FALLBACK_DECODE = CodecOptions(
    tz_aware=True,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    unicode_decode_error_handler="surrogateescape",
)
# The fast path: naive datetimes (UTC; cheaper to build), strict UTF-8 (bad bytes raise).
_TWO_U64 = struct.Struct("<QQ")
_MAX_DECIMAL128_COEFFICIENT = 10**34 - 1
_FAST_DECODE = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
_EPOCH = datetime(1970, 1, 1)
_JSON_OPTIONS = {
    "relaxed": json_util.JSONOptions(
        json_mode=json_util.JSONMode.RELAXED, datetime_conversion=DatetimeConversion.DATETIME_AUTO, tz_aware=True
    ),
    "canonical": json_util.JSONOptions(
        json_mode=json_util.JSONMode.CANONICAL, datetime_conversion=DatetimeConversion.DATETIME_AUTO, tz_aware=True
    ),
}
# How a reader gets the same values back (tests use it; the README shows it).
READ_OPTIONS = json_util.JSONOptions(
    json_mode=json_util.JSONMode.RELAXED, datetime_conversion=DatetimeConversion.DATETIME_AUTO, tz_aware=True
)


def with_seq(raw: bytes, seq: int) -> bytes:
    """The BSON document ``raw`` with ``_seq: Int64(seq)`` appended as its last field."""
    length = len(raw) + len(_SEQ_KEY) + 8
    return struct.pack("<i", length) + raw[4:-1] + _SEQ_KEY + struct.pack("<q", seq) + b"\x00"


def _relaxed_value(value):
    """orjson's ``default``: the relaxed Extended JSON form of a value JSON has no form for."""
    kind = value.__class__
    if kind is datetime:
        if value >= _EPOCH:  # naive: UTC. Earlier dates are {"$numberLong": ...}, as json_util writes
            text = value.isoformat(timespec="milliseconds") if value.microsecond else value.isoformat()
            return {"$date": text + "Z"}
    elif kind is Int64:
        return int(value)
    elif kind is ObjectId:
        return {"$oid": str(value)}
    elif kind is Decimal128:
        text = _decimal128_text(value.bid)
        if text is not None:
            return {"$numberDecimal": text}
    elif isinstance(value, dict):  # SON from json_util's DBRef conversion
        return dict(value)
    return json_util.default(value, _JSON_OPTIONS["relaxed"])


if orjson is not None:
    _ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_APPEND_NEWLINE
    _OrjsonError = orjson.JSONEncodeError
else:  # pragma: no cover
    _ORJSON_OPTIONS = 0
    _OrjsonError = TypeError


def _decimal128_text(bid: bytes) -> str | None:
    """``str(Decimal128)`` without building a ``decimal.Decimal`` (the IEEE 754-2008 BID layout and
    the General Decimal Arithmetic to-scientific-string rules); None for NaN, infinities and the
    large-coefficient form, which ``Decimal128.__str__`` handles."""
    low, high = _TWO_U64.unpack(bid)
    if (high >> 61) & 3 == 3:
        return None
    coefficient = ((high & 0x1FFFFFFFFFFFF) << 64) | low
    if coefficient > _MAX_DECIMAL128_COEFFICIENT:
        return None
    exponent = ((high >> 49) & 0x3FFF) - 6176
    digits = str(coefficient)
    adjusted = exponent + len(digits) - 1
    if exponent <= 0 and adjusted >= -6:
        point = len(digits) + exponent
        if exponent == 0:
            text = digits
        elif point > 0:
            text = f"{digits[:point]}.{digits[point:]}"
        else:
            text = f"0.{'0' * -point}{digits}"
    else:
        text = f"{digits[0]}.{digits[1:]}E{adjusted:+d}" if len(digits) > 1 else f"{digits}E{adjusted:+d}"
    return "-" + text if high >> 63 else text


def _has_nonfinite(value) -> bool:
    if value.__class__ is float:
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nonfinite(v) for v in value)
    return False


class LineEncoder:
    """Encodes events as newline-terminated UTF-8 lines in one Extended JSON mode."""

    def __init__(self, mode: str = "relaxed") -> None:
        if mode not in _JSON_OPTIONS:
            raise ValueError(f"unknown JSON mode {mode!r}")
        self.mode = mode
        self._bsonjs_mode = bsonjs.RELAXED if mode == "relaxed" else bsonjs.CANONICAL
        self._json_options = _JSON_OPTIONS[mode]
        self._use_orjson = mode == "relaxed" and orjson is not None
        self._native = _bronze_extjson.encode if _bronze_extjson is not None else None
        self._canonical = mode == "canonical"
        self.slow_path_events = 0

    def encode(self, raw: bytes, seq: int) -> bytes:
        if self._native is not None:
            line = self._native(raw, seq, self._canonical)
            return line if line is not None else self._slow(with_seq(raw, seq))
        if self._use_orjson:
            return self._orjson(raw, seq)
        doc = with_seq(raw, seq)
        try:
            text = bsonjs.dumps(doc, mode=self._bsonjs_mode)
        except ValueError:
            return self._slow(doc)
        if self.mode == "relaxed" and '"$date" : "' in text and _BAD_DATE.search(text):
            return self._slow(doc)
        return text.encode("utf-8") + b"\n"

    def _orjson(self, raw: bytes, seq: int) -> bytes:
        try:
            value = bson.decode(raw, codec_options=_FAST_DECODE)
            value["_seq"] = seq  # the last field, as with_seq puts it; a relaxed Int64 is a plain number
            line = orjson.dumps(value, default=_relaxed_value, option=_ORJSON_OPTIONS)
        except (UnicodeDecodeError, bson.errors.InvalidBSON, _OrjsonError):
            return self._slow(with_seq(raw, seq))
        if (b"\x7f" in raw or b"\xff" in raw) and _NONFINITE_BYTES.search(raw) and _has_nonfinite(value):
            return self._slow(with_seq(raw, seq))
        return line

    def _slow(self, doc: bytes) -> bytes:
        self.slow_path_events += 1
        decoded = bson.decode(doc, codec_options=_FALLBACK_DECODE)
        return json_util.dumps(decoded, json_options=self._json_options).encode("utf-8") + b"\n"


def read_line(line: bytes | str) -> dict:
    """Parse one lake line back into BSON values (``bson.json_util.loads``)."""
    return json_util.loads(line, json_options=READ_OPTIONS)
