"""The routing fields read from raw BSON (``shared.fields``) are those the decoded event gives, for
every shape of change event, with and without the C extension."""

from __future__ import annotations

import uuid

import bson
import pytest
from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.code import Code
from bson.raw_bson import RawBSONDocument

from shared import fields
from shared.fields import decoded_fields, event_fields

ALL_TYPES = {
    "d": 1.5, "s": "ü€𝄞", "doc": {"a": [1, {"b": None}]}, "bin": Binary(b"\x00\x01", 0x80),
    "uuid": Binary(uuid.uuid4().bytes, 4), "oid": ObjectId(), "t": True, "date": bson.datetime_ms.DatetimeMS(-5),
    "null": None, "re": Regex("^a.*", "im"), "code": Code("x", {"y": 1}), "code2": Code("z"), "i32": 7,
    "ts": Timestamp(1, 2), "i64": Int64(2**60), "dec": Decimal128("1.10"), "min": MinKey(), "max": MaxKey(),
}


def event(**fields_):
    base = {"_id": {"_data": "82655F"}, "operationType": "insert", "clusterTime": Timestamp(1700000123, 9),
            "wallTime": bson.datetime_ms.DatetimeMS(1), "ns": {"db": "shop", "coll": "orders"},
            "documentKey": {"_id": 1}, "fullDocument": ALL_TYPES}
    base.update(fields_)
    return RawBSONDocument(bson.encode({k: v for k, v in base.items() if v is not ...}))


CASES = {
    "insert with every type": event(),
    "update": event(operationType="update", updateDescription={"updatedFields": {"a": 1}, "removedFields": []}),
    "dropDatabase: no coll": event(operationType="dropDatabase", ns={"db": "shop"}, fullDocument=...),
    "invalidate: no ns": event(operationType="invalidate", ns=..., fullDocument=..., documentKey=...),
    "fields in another order": RawBSONDocument(bson.encode({
        "ns": {"coll": "c", "db": "d"}, "clusterTime": Timestamp(2**32 - 1, 2**32 - 1), "operationType": "delete",
        "_id": {"x": 1, "_data": "AB"}})),
    "a token without _data": event(_id={"token": "opaque"}),
    "ns.db of another type": event(ns={"db": 5, "coll": "c"}),
    "operationType of another type": event(operationType=3),
    "non-ASCII names": event(ns={"db": "bäs", "coll": "ü.€ 𝄞"}),
}


@pytest.mark.parametrize("name", CASES)
def test_the_fields_are_those_of_the_decoded_event(name):
    doc = CASES[name]
    assert event_fields(doc) == decoded_fields(doc)


def test_the_usual_shapes_take_the_one_pass_reader():
    if fields._native_fields is None:
        pytest.skip("the C extension is not built here")
    for name in ("insert with every type", "update", "dropDatabase: no coll", "invalidate: no ns",
                 "fields in another order", "non-ASCII names"):
        assert fields._native_fields(CASES[name].raw) == decoded_fields(CASES[name]), name
    for name in ("a token without _data", "ns.db of another type", "operationType of another type"):
        assert fields._native_fields(CASES[name].raw) is None, name


@pytest.mark.parametrize("cut", [0, 4, 10, 30, -2, -1])
def test_damaged_bson_is_left_to_the_decoded_path(cut):
    if fields._native_fields is None:
        pytest.skip("the C extension is not built here")
    raw = CASES["update"].raw
    damaged = raw[:cut] if cut > 0 else raw[:cut] + b"\x01" * -cut
    assert fields._native_fields(damaged) is None
