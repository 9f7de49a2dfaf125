"""Encoder micro-benchmark: this app's ``LineEncoder`` against ``bson.json_util.dumps`` on the same
raw events from the backlog, in both Extended JSON modes, and a check that both give the same
JSON values. Also the encoder's pure-Python paths (what runs where the C extension is not built)."""

from __future__ import annotations

import time

import bson
import pymongo
from bson import json_util
from bson.raw_bson import RawBSONDocument

from shared import encode
from shared.source import Position

REPEATS = 3


def read_events(uri: str, token: str, limit: int) -> list[bytes]:
    client = pymongo.MongoClient(uri, document_class=RawBSONDocument)
    out = []
    with client.watch(max_await_time_ms=500, batch_size=2000,
                      **Position("resume_after", token).watch_options()) as stream:
        while len(out) < limit:
            event = stream.try_next()
            if event is None:
                break
            out.append(event.raw)
    client.close()
    return out


def reference_line(raw: bytes, seq: int, options) -> bytes:
    """What ``bson.json_util`` writes for the same event: decode, dump, one line."""
    doc = bson.decode(encode.with_seq(raw, seq), codec_options=encode._FALLBACK_DECODE)
    return json_util.dumps(doc, json_options=options).encode("utf-8") + b"\n"


def _best_rate(fn, raws: list[bytes]) -> float:
    best = 0.0
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn(raws)
        best = max(best, len(raws) / (time.perf_counter() - started))
    return best


def compare(uri: str, token: str, limit: int) -> dict:
    raws = read_events(uri, token, limit)
    result: dict = {"events": len(raws), "mean_event_bytes": round(sum(map(len, raws)) / max(1, len(raws)))}
    for mode in ("relaxed", "canonical"):
        encoder = encode.LineEncoder(mode)
        options = encode._JSON_OPTIONS[mode]

        def app(raws, encoder=encoder):
            for seq, raw in enumerate(raws, 1):
                encoder.encode(raw, seq)

        def reference(raws, options=options):
            for seq, raw in enumerate(raws, 1):
                reference_line(raw, seq, options)

        # equal after reading back, types included (libbson spells some doubles differently)
        same = all(bson.encode(encode.read_line(encoder.encode(raw, seq)))
                   == bson.encode(encode.read_line(reference_line(raw, seq, options)))
                   for seq, raw in enumerate(raws, 1))
        python = encode.LineEncoder(mode)
        python._native = None

        def pure_python(raws, encoder=python):
            for seq, raw in enumerate(raws, 1):
                encoder.encode(raw, seq)

        app_rate, ref_rate = _best_rate(app, raws), _best_rate(reference, raws)
        py_rate = _best_rate(pure_python, raws)
        result[mode] = {"app_events_per_s": round(app_rate), "json_util_events_per_s": round(ref_rate),
                        "ratio": round(app_rate / ref_rate, 2), "same_values": same,
                        "c_extension": encoder._native is not None,
                        "slow_path_events": encoder.slow_path_events,
                        "pure_python_events_per_s": round(py_rate),
                        "pure_python_ratio": round(py_rate / ref_rate, 2)}
    return result
