"""Transactional content validation: MD5, CRC64 and CRC64 structured messages (``x-ms-structured-body``).

CRC64 is the Azure Storage CRC64 (CRC-64/NVME: reflected polynomial 0x9A6C9329AC4BC9B5, initial
value and final XOR all ones; ``crc64(b"123456789") == 0xAE8B14860A799888``), sent little-endian in
base64. The structured message (version 1, the only one the service defines) is::

    header   version (1 byte) | message length (8, LE) | flags (2, LE; 1 = CRC64) | segments (2, LE)
    segment  number (2, LE, from 1) | content length (8, LE) | content | CRC64 of the segment (8, if flagged)
    trailer  CRC64 of the whole content (8, if flagged)
"""

from __future__ import annotations

import base64
import hashlib

from .errors import StorageError, error

SM_V1_CRC64 = "XSM/1.0; properties=crc64"
_HEADER_LEN, _SEGMENT_HEADER_LEN, _CRC_LEN = 13, 10, 8
_FLAG_CRC64 = 1
SEGMENT_SIZE = 4 * 1024 * 1024
_MASK = (1 << 64) - 1
_POLY = 0x9A6C9329AC4BC9B5


def _table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()

try:  # the C implementation the SDK uses, when installed; same results, much faster
    from azure.storage.extensions.checksums import crc64 as _ext  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _ext = None


def crc64(data: bytes, initial: int = 0) -> int:
    """CRC64 of ``data``, continuing from ``initial`` (the CRC of the bytes before it)."""
    if _ext is not None:
        return _ext.compute(bytes(data), initial)
    crc = ~initial & _MASK
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & _MASK


def crc64_b64(data: bytes) -> str:
    return base64.b64encode(crc64(data).to_bytes(8, "little")).decode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def check_md5(data: bytes, header: str | None) -> None:
    if header is not None and header != md5_b64(data):
        raise error(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 "
                    "value calculated by the server.")


def check_crc64(data: bytes, header: str | None) -> None:
    if header is not None and header != crc64_b64(data):
        raise error(400, "Crc64Mismatch", "The CRC64 value specified in the request did not match with the "
                    "CRC64 value calculated by the server.")


def _invalid(detail: str) -> StorageError:
    return error(400, "InvalidStructuredMessage", f"The structured message in the request body is invalid: {detail}.")


def decode_structured(body: bytes, structured_header: str, content_length_header: str | None) -> bytes:
    """Check a structured-message request body and return its content (never the envelope)."""
    if structured_header.strip().lower().replace(" ", "") != SM_V1_CRC64.lower().replace(" ", ""):
        raise error(400, "InvalidHeaderValue", f"x-ms-structured-body {structured_header!r} is not supported.")
    if content_length_header is None:
        raise error(400, "MissingRequiredHeader", "x-ms-structured-content-length is required with "
                    "x-ms-structured-body.")
    try:
        expected_length = int(content_length_header)
    except ValueError as exc:
        raise error(400, "InvalidHeaderValue", "x-ms-structured-content-length must be an integer.") from exc
    if len(body) < _HEADER_LEN:
        raise _invalid("shorter than its header")
    version = body[0]
    message_length = int.from_bytes(body[1:9], "little")
    flags = int.from_bytes(body[9:11], "little")
    segments = int.from_bytes(body[11:13], "little")
    if version != 1:
        raise _invalid(f"version {version}")
    if message_length != len(body):
        raise _invalid(f"message length {message_length} but {len(body)} bytes were sent")
    with_crc = bool(flags & _FLAG_CRC64)
    if flags & ~_FLAG_CRC64:
        raise _invalid(f"unknown flags {flags:#x}")
    pos, content, message_crc = _HEADER_LEN, bytearray(), 0
    for number in range(1, segments + 1):
        if pos + _SEGMENT_HEADER_LEN > len(body):
            raise _invalid("truncated segment header")
        if int.from_bytes(body[pos:pos + 2], "little") != number:
            raise _invalid(f"segment {number} out of order")
        size = int.from_bytes(body[pos + 2:pos + 10], "little")
        pos += _SEGMENT_HEADER_LEN
        segment = body[pos:pos + size]
        if len(segment) != size:
            raise _invalid("truncated segment")
        pos += size
        if with_crc:
            segment_crc = crc64(segment)
            if body[pos:pos + _CRC_LEN] != segment_crc.to_bytes(8, "little"):
                raise error(400, "Crc64Mismatch", f"The CRC64 of segment {number} of the structured message "
                            "did not match the content.")
            pos += _CRC_LEN
            message_crc = crc64(segment, message_crc)
        content += segment
    if with_crc:
        if body[pos:pos + _CRC_LEN] != message_crc.to_bytes(8, "little"):
            raise error(400, "Crc64Mismatch", "The CRC64 of the structured message did not match the content.")
        pos += _CRC_LEN
    if pos != len(body):
        raise _invalid("bytes after the message trailer")
    if len(content) != expected_length:
        raise _invalid(f"{len(content)} content bytes but x-ms-structured-content-length {expected_length}")
    return bytes(content)


def encode_structured(content: bytes, segment_size: int = SEGMENT_SIZE) -> bytes:
    """Wrap ``content`` in a version 1 structured message with CRC64 (as the service does on reads)."""
    segments = [content[i:i + segment_size] for i in range(0, len(content), segment_size)] or [b""]
    length = _HEADER_LEN + sum(_SEGMENT_HEADER_LEN + len(s) + _CRC_LEN for s in segments) + _CRC_LEN
    out = bytearray()
    out += (1).to_bytes(1, "little") + length.to_bytes(8, "little") + _FLAG_CRC64.to_bytes(2, "little")
    out += len(segments).to_bytes(2, "little")
    message_crc = 0
    for number, segment in enumerate(segments, start=1):
        out += number.to_bytes(2, "little") + len(segment).to_bytes(8, "little") + segment
        out += crc64(segment).to_bytes(8, "little")
        message_crc = crc64(segment, message_crc)
    out += message_crc.to_bytes(8, "little")
    return bytes(out)
