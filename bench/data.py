"""The backlog every contender drains: about 1 KB documents, inserts, updates and deletes over
20 collections in 2 databases, written after a recorded change-stream position."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import bson
import pymongo
from bson import Decimal128, Int64, ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import DeleteOne, UpdateOne

from shared.source import token_text

DATABASES = ("bench_orders", "bench_catalog")
COLLECTIONS_PER_DB = 10
NAMESPACES = tuple((db, f"c{i:02d}") for db in DATABASES for i in range(COLLECTIONS_PER_DB))
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


@dataclass
class Backlog:
    start_token: str  # canonical Extended JSON of a resume token taken before the preload
    events: int
    inserts: int
    updates: int
    deletes: int
    seconds: float
    bytes: int  # BSON bytes of the inserted documents

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


def preload(uri: str, events: int, seed: int = 7, log=print) -> Backlog:
    """Write ``events`` changes (70% inserts, 20% updates, 10% deletes) after a recorded position."""
    rng = random.Random(seed)
    client = pymongo.MongoClient(uri, document_class=RawBSONDocument)
    try:
        token = start_token(client)
        n_updates = events // 5
        n_deletes = events // 10
        n_inserts = events - n_updates - n_deletes
        colls = [client[db][coll] for db, coll in NAMESPACES]
        ids: list[list] = [[] for _ in colls]
        started = time.monotonic()
        size = 0
        done = 0
        turn = 0
        while done < n_inserts:
            k = turn % len(colls)
            docs = [make_document(rng, done + i) for i in range(min(CHUNK, n_inserts - done))]
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
                       round(seconds, 2), size)
    finally:
        client.close()
