"""The backlogs every contender drains, written after a recorded change-stream position: about
1 KB documents, 70% inserts, 20% updates, 10% deletes. Two mixes:

* ``default``: order-like documents with the common types, over 20 collections in 2 databases;
* ``rich``: documents that use every BSON type in realistic proportions (Binary of every common
  subtype and UUIDs, Regex, dates before 1970 and after 9999, Timestamp, Code with and without
  scope, MinKey/MaxKey, DBRef, Decimal128, Int64 beyond 2**53, nested arrays of documents, strings
  of 50 to 900 characters), over 10 collections of one database.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import bson
import pymongo
import pymongo.errors
from bson import Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.binary import Binary, UuidRepresentation
from bson.datetime_ms import DatetimeMS
from bson.raw_bson import RawBSONDocument
from pymongo import DeleteOne, UpdateOne

from shared.source import token_text

DATABASES = ("bench_orders", "bench_catalog")
COLLECTIONS_PER_DB = 10
NAMESPACES = tuple((db, f"c{i:02d}") for db in DATABASES for i in range(COLLECTIONS_PER_DB))
RICH_NAMESPACES = tuple(("bench_rich", f"c{i:02d}") for i in range(10))
CHUNK = 500  # documents per insert_many / bulk_write, rotating over the collections

_WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
          "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
_EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)


def make_document(rng: random.Random, n: int) -> dict:
    """One order-like document of about 1 KB with the common BSON types."""
    words = lambda k: " ".join(rng.choice(_WORDS) for _ in range(k))  # noqa: E731
    created = _EPOCH + timedelta(seconds=rng.randrange(0, 5 * 365 * 86400), milliseconds=rng.randrange(1000))
    return {
        "_id": ObjectId(),
        "n": n,
        "sku": f"SKU-{rng.randrange(10**8):08d}",
        "title": words(8),
        "description": words(30),
        "price": Decimal128(Decimal(rng.randrange(100, 10**6)) / 100),
        "quantity": rng.randrange(1, 50),
        "weight_kg": round(rng.uniform(0.1, 40.0), 3),
        "views": Int64(rng.randrange(2**40)),
        "active": rng.random() < 0.8,
        "created_at": created,
        "updated_at": created + timedelta(hours=rng.randrange(1, 1000)),
        "tags": [rng.choice(_WORDS) for _ in range(rng.randrange(2, 7))],
        "customer": {
            "name": words(2).title(),
            "email": f"{rng.choice(_WORDS)}.{rng.randrange(10**6)}@example.com",
            "address": {"street": f"{rng.randrange(1, 999)} {words(2).title()} St", "city": words(1).title(),
                        "zip": f"{rng.randrange(10**5):05d}", "country": rng.choice(["US", "DE", "FR", "JP"])},
        },
        "lines": [
            {"item": f"I{rng.randrange(10**6)}", "qty": rng.randrange(1, 9), "unit_price": round(rng.uniform(1, 300), 2),
             "discount": None if rng.random() < 0.5 else round(rng.random() / 4, 2)}
            for _ in range(rng.randrange(2, 5))
        ],
        "notes": None,
    }


def _text(rng: random.Random, low: int, high: int) -> str:
    """Words (with some non-ASCII ones) making a string of ``low`` to ``high`` characters."""
    size = rng.randrange(low, high + 1)
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS) if rng.random() < 0.9 else rng.choice(_OTHER_WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


_OTHER_WORDS = ("Zürich", "naïve", "東京", "€100", '"q"')
_MAX_DATETIME_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def make_rich_document(rng: random.Random, n: int, after_9999: bool = True) -> dict:
    """One document of about 1 KB that uses every BSON type, in proportions seen in real data: most
    fields are strings, numbers and dates; each rarer type turns up in some of the documents.
    ``after_9999=False`` keeps the far-future dates in the year 9999 (for a server that refuses later
    ones)."""
    created = _EPOCH + timedelta(seconds=rng.randrange(0, 5 * 365 * 86400), milliseconds=rng.randrange(1000))
    doc: dict = {
        "_id": ObjectId(),
        "n": n,
        "uuid": Binary.from_uuid(uuid.UUID(int=rng.getrandbits(128), version=4), UuidRepresentation.STANDARD),
        "name": _text(rng, 50, 120),
        "body": _text(rng, 100, 900) if rng.random() < 0.5 else _text(rng, 50, 300),
        "amount": Decimal128(Decimal(rng.randrange(-10**9, 10**9)) / 1000),
        "big_id": Int64(2**53 + rng.randrange(2**62 - 2**53)),
        "count": rng.randrange(10**6),
        "score": rng.uniform(-1e6, 1e6),
        "birth": datetime(1900, 1, 1, tzinfo=timezone.utc) + timedelta(days=rng.randrange(0, 70 * 365)),
        "created_at": created,
        "version": Timestamp(1_700_000_000 + rng.randrange(10**7), rng.randrange(1, 100)),
        "flags": [rng.random() < 0.5 for _ in range(3)],
        "events": [
            {"at": created + timedelta(minutes=i), "kind": rng.choice(_WORDS),
             "value": rng.randrange(-500, 500),
             "items": [{"sku": f"S{rng.randrange(10**6)}", "qty": Int64(rng.randrange(1, 9))}
                       for _ in range(rng.randrange(1, 3))]}
            for i in range(rng.randrange(1, 4))
        ],
        "checksum": Binary(rng.randbytes(16), 5),
        "attachment": Binary(rng.randbytes(rng.randrange(8, 96)), rng.choice((0, 0, 0, 6, 7, 8, 0x80))),
        "owner": DBRef("users", ObjectId(), "accounts") if rng.random() < 0.3 else None,
    }
    if rng.random() < 0.3:
        doc["filter"] = Regex(f"^{rng.choice(_WORDS)}[0-9]+$", rng.choice(("", "i", "im", "imsx")))
    if rng.random() < 0.2:  # far-future expiry, beyond what a datetime holds
        offset = rng.randrange(1, 10**12) if after_9999 else -rng.randrange(10**9)
        doc["expires"] = DatetimeMS(_MAX_DATETIME_MS + offset)
    if rng.random() < 0.1:
        if rng.random() < 0.5:
            doc["hook"] = Code("function (doc) { return doc.n > x; }", {"x": rng.randrange(10)})
        else:
            doc["hook"] = Code("function () { return 1; }")
    if rng.random() < 0.05:
        doc["range"] = {"low": MinKey(), "high": MaxKey()}
    if rng.random() < 0.1:
        doc["legacy_uuid"] = Binary(rng.randbytes(16), 3)
    return doc


MIXES = {"default": (make_document, NAMESPACES), "rich": (make_rich_document, RICH_NAMESPACES)}


def accepts_dates_after_9999(client: pymongo.MongoClient) -> bool:
    """Whether the server stores a date after the year 9999 (mongod does; SecantusDB 0.7 refuses it)."""
    coll = client["bench_probe"]["dates"]
    try:
        coll.insert_one({"d": DatetimeMS(_MAX_DATETIME_MS + 1)})
        return True
    except pymongo.errors.OperationFailure:
        return False
    finally:
        client.drop_database("bench_probe")


@dataclass
class Backlog:
    start_token: str  # canonical Extended JSON of a resume token taken before the preload
    events: int
    inserts: int
    updates: int
    deletes: int
    seconds: float
    bytes: int  # BSON bytes of the inserted documents
    dates_after_9999: bool | None = None  # rich mix: whether the server took them (else year 9999)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def start_token(client: pymongo.MongoClient) -> str:
    """The deployment stream's current (post-batch) resume token: the position before the preload."""
    with client.watch(max_await_time_ms=100) as stream:
        while stream.try_next() is not None:
            pass
        token = stream.resume_token
    if token is None:
        raise RuntimeError("the change stream gave no post-batch resume token")
    return token_text(token)


def preload(uri: str, events: int, seed: int = 7, log=print, mix: str = "default") -> Backlog:
    """Write ``events`` changes (70% inserts, 20% updates, 10% deletes) of ``mix`` after a recorded
    position."""
    rng = random.Random(seed)
    make, namespaces = MIXES[mix]
    client = pymongo.MongoClient(uri, document_class=RawBSONDocument)
    try:
        after_9999 = None
        if mix == "rich":
            after_9999 = accepts_dates_after_9999(client)
            if not after_9999:
                log("  this server refuses dates after the year 9999: the rich mix keeps them at 9999")
                make = functools.partial(make_rich_document, after_9999=False)
        token = start_token(client)
        n_updates = events // 5
        n_deletes = events // 10
        n_inserts = events - n_updates - n_deletes
        colls = [client[db][coll] for db, coll in namespaces]
        ids: list[list] = [[] for _ in colls]
        started = time.monotonic()
        size = 0
        done = 0
        turn = 0
        while done < n_inserts:
            k = turn % len(colls)
            docs = [make(rng, done + i) for i in range(min(CHUNK, n_inserts - done))]
            colls[k].insert_many(docs, ordered=True)
            ids[k].extend(d["_id"] for d in docs)
            size += sum(len(bson.encode(d)) for d in docs)
            done += len(docs)
            turn += 1
            if turn % 40 == 0:
                log(f"  preload: {done:,}/{n_inserts:,} inserts")
        # updates on the first 2/3 of each collection's documents, deletes on the last third
        per = [len(x) for x in ids]
        todo_updates, todo_deletes = n_updates, n_deletes
        turn = 0
        upd_pos = [0] * len(colls)
        del_pos = [len(x) - 1 for x in ids]
        while todo_updates or todo_deletes:
            k = turn % len(colls)
            ops = []
            for _ in range(min(CHUNK, todo_updates)):
                _id = ids[k][upd_pos[k] % (per[k] * 2 // 3 or 1)]
                upd_pos[k] += 1
                ops.append(UpdateOne({"_id": _id}, {"$set": {"status": rng.choice(_WORDS),
                                                             "updated_at": datetime.now(timezone.utc)},
                                                    "$inc": {"quantity": 1, "views": Int64(1)}}))
            todo_updates -= len(ops)
            deletes = []
            for _ in range(min(CHUNK // 4, todo_deletes)):
                deletes.append(DeleteOne({"_id": ids[k][del_pos[k]]}))
                del_pos[k] -= 1
            todo_deletes -= len(deletes)
            if ops or deletes:
                colls[k].bulk_write(ops + deletes, ordered=True)
            turn += 1
        seconds = time.monotonic() - started
        return Backlog(token, n_inserts + n_updates + n_deletes, n_inserts, n_updates, n_deletes,
                       round(seconds, 2), size, after_9999)
    finally:
        client.close()
