"""``python -m bench.options``: the ways to write an event's Extended JSON line, side by side, on
change events made in memory from both document mixes (no server; dates after 9999 included).

Each contender writes every event of a mix; the best of ``--repeat`` passes is shown, in one run,
with its ratio to ``bson.json_util``. "exact" says whether the lines read back to what json_util
writes (types included) for every event; the upper bounds are not exact by design: they show the
most a path built on them could reach.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timezone

import bson
import bsonjs
import orjson
from bson import Timestamp, json_util
from bson.codec_options import CodecOptions, DatetimeConversion

from bench.data import MIXES
from shared import encode


def change_event(rng: random.Random, n: int, doc: dict) -> bytes:
    """An insert event as a change stream delivers it."""
    return bson.encode({
        "_id": {"_data": "82" + f"{rng.getrandbits(240):060X}"}, "operationType": "insert",
        "clusterTime": Timestamp(1_700_000_000 + n, 1), "wallTime": datetime.now(timezone.utc),
        "fullDocument": doc, "ns": {"db": "bench", "coll": f"c{n % 10:02d}"},
        "documentKey": {"_id": doc["_id"]},
    })


def events(mix: str, count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    make = MIXES[mix][0]
    return [change_event(rng, n, make(rng, n)) for n in range(count)]


def json_util_line(raw: bytes, seq: int, mode: str) -> bytes:
    doc = bson.decode(encode.with_seq(raw, seq), codec_options=encode._FALLBACK_DECODE)
    return json_util.dumps(doc, json_options=encode._JSON_OPTIONS[mode]).encode() + b"\n"


def encoder(mode: str, path: str):
    enc = encode.LineEncoder(mode)
    if path != "c":
        enc._native = None
    if path == "libbson":
        enc._use_orjson = False
    return enc.encode


_AUTO = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def decode_only(raw: bytes, seq: int) -> object:
    """Upper bound of any path that starts with pymongo's decoder (orjson with cheaper conversions,
    a TypeRegistry, ...): the decoding alone, nothing written."""
    return bson.decode(raw, codec_options=_AUTO)


def decode_orjson_str(raw: bytes, seq: int) -> bytes:
    """Upper bound of orjson with the cheapest conversion there is (``str``; not Extended JSON)."""
    return orjson.dumps(bson.decode(raw, codec_options=_AUTO), default=str,
                        option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS)


def libbson_only(mode: str):
    """libbson alone, without the checks and fallbacks that make its lines exact."""
    bmode = bsonjs.RELAXED if mode == "relaxed" else bsonjs.CANONICAL
    return lambda raw, seq: bsonjs.dumps(encode.with_seq(raw, seq), mode=bmode)


def contenders(mode: str) -> list[tuple[str, object, bool]]:
    """(name, function(raw, seq), whether its lines must be exact)"""
    out = [("json_util (decode + dumps)", lambda raw, seq: json_util_line(raw, seq, mode), True),
           ("C extension (the app's path)", encoder(mode, "c"), True),
           ("libbson (python-bsonjs) with the fixes", encoder(mode, "libbson"), True)]
    if mode == "relaxed":
        out.append(("pymongo decode + orjson + json_util converters", encoder(mode, "orjson"), True))
    out += [("  bound: libbson alone, no fixes", libbson_only(mode), False),
            ("  bound: pymongo decode alone", decode_only, False),
            ("  bound: pymongo decode + orjson default=str", decode_orjson_str, False)]
    return out


def exact(fn, raws: list[bytes], mode: str) -> bool:
    for seq, raw in enumerate(raws, 1):
        line = fn(raw, seq)
        reference = json_util_line(raw, seq, mode)
        if bson.encode(encode.read_line(line)) != bson.encode(encode.read_line(reference)):
            return False
    return True


def rate(fn, raws: list[bytes], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        for seq, raw in enumerate(raws, 1):
            fn(raw, seq)
        best = max(best, len(raws) / (time.perf_counter() - started))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.options", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per mix (default 10000)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="passes per contender; the best is shown (default 3)")
    args = parser.parse_args(argv)
    print("| mix | mode | way | events/s | / json_util | exact |")
    print("|---|---|---|---|---|---|")
    for mix in MIXES:
        raws = events(mix, args.events)
        for mode in ("relaxed", "canonical"):
            rows = [(name, rate(fn, raws, args.repeat), exact(fn, raws[:2000], mode) if must else None)
                    for name, fn, must in contenders(mode)]
            reference = rows[0][1]
            for name, value, same in rows:
                mark = "-" if same is None else ("yes" if same else "NO")
                print(f"| {mix} | {mode} | {name} | {value:,.0f} | {value / reference:.2f} | {mark} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
