"""Change event (raw BSON) -> one line of MongoDB Extended JSON with ``_seq``. Pure, no I/O.

The fast path hands the event's raw BSON, with an Int64 ``_seq`` element appended, to libbson
(``python-bsonjs``), so no Python object is built per field. libbson gets two things wrong that the
Extended JSON specification defines, and those events take the slower ``bson.json_util`` path:

* strings that are not valid UTF-8 (libbson refuses the document): ``json_util`` writes the bad
  bytes as lone surrogates (``\\udcXX`` escapes), from which a reader restores the exact bytes with
  ``str.encode("utf-8", "surrogateescape")``;
* relaxed-mode dates after the year 9999, which libbson writes as a five-digit-year ISO string;
  the specification (and ``json_util``) require ``{"$date": {"$numberLong": ...}}`` there.
"""

from __future__ import annotations

import re
import struct

import bson
import bsonjs
from bson import json_util
from bson.codec_options import CodecOptions, DatetimeConversion

_SEQ_KEY = b"\x12_seq\x00"  # BSON element: type 0x12 (int64), name "_seq"
_BAD_DATE = re.compile(r'"\$date" : "[+-]?\d{5,}')
_FALLBACK_DECODE = CodecOptions(
    tz_aware=True,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    unicode_decode_error_handler="surrogateescape",
)
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


class LineEncoder:
    """Encodes events as newline-terminated UTF-8 lines in one Extended JSON mode."""

    def __init__(self, mode: str = "relaxed") -> None:
        if mode not in _JSON_OPTIONS:
            raise ValueError(f"unknown JSON mode {mode!r}")
        self.mode = mode
        self._bsonjs_mode = bsonjs.RELAXED if mode == "relaxed" else bsonjs.CANONICAL
        self._json_options = _JSON_OPTIONS[mode]
        self.slow_path_events = 0

    def encode(self, raw: bytes, seq: int) -> bytes:
        doc = with_seq(raw, seq)
        try:
            text = bsonjs.dumps(doc, mode=self._bsonjs_mode)
        except ValueError:
            return self._slow(doc)
        if self.mode == "relaxed" and '"$date" : "' in text and _BAD_DATE.search(text):
            return self._slow(doc)
        return text.encode("utf-8") + b"\n"

    def _slow(self, doc: bytes) -> bytes:
        self.slow_path_events += 1
        decoded = bson.decode(doc, codec_options=_FALLBACK_DECODE)
        return json_util.dumps(decoded, json_options=self._json_options).encode("utf-8") + b"\n"


def read_line(line: bytes | str) -> dict:
    """Parse one lake line back into BSON values (``bson.json_util.loads``)."""
    return json_util.loads(line, json_options=READ_OPTIONS)
