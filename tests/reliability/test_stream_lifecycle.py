"""Stream lifecycle: invalidates under each scope, events over 16 MB (whole, split, dead-lettered),
hostile namespaces and every BSON type. Each case ends with the exactly-once check against an
independent read (which continues after an invalidate with ``start_after``, as the pipeline does).

Each case runs twice: ``pinned`` (plain events from a fixed first position; the cases of large events
and BSON types with ``updateLookup``) and ``defaults`` (the product's defaults: ``updateLookup``,
pre-images ``whenAvailable``, ``START_AT=now``). The streams hold updates, so under the defaults
their lines carry the document as looked up when read (``null`` once it is dropped), and pre-images
where the collection keeps them. The one case with a fake source runs pinned only."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.dbref import DBRef
from bson.raw_bson import RawBSONDocument

from shared.layout import encode_name

from .harness import DEFAULTS, MODES, PINNED, pipeline_in_mode


# -- invalidate --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["drop", "rename"])
def test_collection_scope_writes_the_invalidate_and_continues_after_it(make_pipeline, mongo_client, how, mode):
    pipeline = pipeline_in_mode(make_pipeline, mode, collections=("items",), scope="collection", coll="items")
    coll = pipeline.collection()
    coll.insert_many([{"i": i} for i in range(3)])
    coll.update_one({"i": 1}, {"$set": {"u": 1}})  # read after the drop or rename: nothing to look up
    if how == "drop":
        coll.drop()
    else:
        coll.rename("renamed")
    first = pipeline.drain()
    assert first.outcome == "invalidated", first.describe()
    checkpoint = pipeline.checkpoint()
    assert checkpoint.position.kind == "start_after"
    coll.insert_many([{"again": i} for i in range(2)])  # the collection is created again
    second = pipeline.drain()
    assert second.outcome == "caught_up" and second.report["events"] == 2, second.describe()
    lines = pipeline.assert_exactly_once()
    assert [d["operationType"] for d in lines] == ["insert"] * 3 + ["update", how, "invalidate"] + ["insert"] * 2
    if mode == DEFAULTS:  # looked up after the collection was gone
        assert lines[3]["fullDocument"] is None
    invalidate = lines[5]
    assert invalidate["__path"].startswith(f"{pipeline.db}/items/year=")  # with the scope it belongs to


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_database_scope_keeps_running_across_drops_and_renames_then_a_database_drop(make_pipeline, mode):
    pipeline = pipeline_in_mode(make_pipeline, mode, collections=("a", "b"), scope="database")
    a, b = pipeline.collection("a"), pipeline.collection("b")
    a.insert_many([{"i": i} for i in range(3)])
    b.insert_one({"i": 0})
    a.update_many({}, {"$inc": {"i": 10}})
    b.update_one({"i": 0}, {"$set": {"u": 1}})
    a.drop()
    b.rename("c")
    pipeline.collection("c").insert_one({"after": "rename"})
    run = pipeline.drain()
    assert run.outcome == "caught_up", run.describe()
    pipeline.mongo.drop_database(pipeline.db)
    dropped = pipeline.drain()
    assert dropped.outcome == "invalidated", dropped.describe()
    pipeline.collection("d").insert_one({"new": "life"})
    pipeline.collection("d").update_one({"new": "life"}, {"$set": {"u": 2}})
    resumed = pipeline.drain()
    assert resumed.outcome == "caught_up" and resumed.report["events"] >= 1, resumed.describe()
    lines = pipeline.assert_exactly_once()
    types = [d["operationType"] for d in lines]
    assert types.count("invalidate") == 1 and "dropDatabase" in types and "rename" in types and "drop" in types
    assert types.count("update") == 5
    if mode == DEFAULTS:  # looked up when read: a's documents were dropped, b's renamed, d's is there
        updates = [d for d in lines if d["operationType"] == "update"]
        assert [u["fullDocument"] for u in updates[:4]] == [None] * 4
        assert updates[4]["fullDocument"]["u"] == 2
    by_type = {d["operationType"]: d["__path"] for d in lines}
    assert by_type["dropDatabase"].startswith(f"{pipeline.db}/_events/")
    assert by_type["invalidate"].startswith(f"{pipeline.db}/_events/")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_deployment_scope_keeps_running_across_drops_and_renames(make_pipeline, mode):
    pipeline = pipeline_in_mode(make_pipeline, mode, collections=("a",), scope="deployment",
                                PIPELINE_NAME=f"deployment-{uuid.uuid4().hex[:8]}")
    a = pipeline.collection("a")
    a.insert_many([{"i": i} for i in range(3)])
    a.update_one({"i": 2}, {"$set": {"u": 1}})
    a.rename("b")
    pipeline.collection("b").drop()
    pipeline.collection("c").insert_one({"i": 1})
    run = pipeline.drain()
    assert run.outcome == "caught_up", run.describe()
    pipeline.mongo.drop_database(pipeline.db)
    pipeline.collection("e").insert_one({"i": 2})
    again = pipeline.drain()
    assert again.outcome == "caught_up", again.describe()
    lines = pipeline.assert_exactly_once()
    types = [d["operationType"] for d in lines if d.get("ns", {}).get("db") == pipeline.db]
    assert "invalidate" not in types and {"rename", "drop", "dropDatabase"} <= set(types)
    assert types.count("update") == 1


# -- events over 16 MB -------------------------------------------------------------------------------
def _big_update(coll) -> None:
    """An update event of about 21 MB: a 6 MB $set on a 9 MB document, with the post-image."""
    coll.insert_one({"_id": "big", "a": "a" * (9 * 1024 * 1024)})
    coll.update_one({"_id": "big"}, {"$set": {"b": "b" * (6 * 1024 * 1024)}})
    coll.insert_one({"_id": "small"})


def _big_pipeline(make_pipeline, mode, **settings):
    """Pinned with ``updateLookup`` (the post-image makes the event large); the defaults have it."""
    pinned = {"MONGO_FULL_DOC": "updateLookup"} if mode == PINNED else {}
    return pipeline_in_mode(make_pipeline, mode, collections=("items",), scope="collection",
                            ROLL_MAX_BYTES="8MiB", **pinned, **settings)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_an_event_over_16_mb_delivered_whole_is_one_line(make_pipeline, mode):
    """SecantusDB delivers such events whole (mongod would fail the stream with code 10334). Under
    the defaults the event also carries the 9 MB pre-image."""
    pipeline = _big_pipeline(make_pipeline, mode)
    _big_update(pipeline.collection())
    result = pipeline.drain()
    assert result.outcome == "caught_up", result.describe()
    files = pipeline.lake_files()
    lines = pipeline.assert_exactly_once()
    update = lines[1]
    assert update["operationType"] == "update" and len(update["fullDocument"]["b"]) == 6 * 1024 * 1024
    if mode == DEFAULTS:
        before = update["fullDocumentBeforeChange"]
        assert len(before["a"]) == 9 * 1024 * 1024 and "b" not in before
    assert max(len(raw) for data in files.values() for raw in data.splitlines()) > 16 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_split_large_events_are_written_as_fragments_with_their_split_event_field(make_pipeline, mode):
    pipeline = _big_pipeline(make_pipeline, mode, MONGO_PIPELINE='[{"$changeStreamSplitLargeEvent": {}}]')
    _big_update(pipeline.collection())
    result = pipeline.drain()
    assert result.outcome == "caught_up", result.describe()
    lines = pipeline.lake_lines()
    assert [d["_seq"] for d in lines] == list(range(1, len(lines) + 1))
    assert all("splitEvent" in d for d in lines)
    fragments = [d for d in lines if d["splitEvent"]["of"] > 1]
    if fragments:  # the server split the 21 MB event: the fragments rebuild it
        assert [f["splitEvent"]["fragment"] for f in fragments] == list(range(1, fragments[0]["splitEvent"]["of"] + 1))
        whole: dict = {}
        for fragment in fragments:
            whole.update({k: v for k, v in fragment.items() if k not in ("splitEvent", "_seq", "_id", "__path")})
        assert len(whole["fullDocument"]["b"]) == 6 * 1024 * 1024
        if mode == DEFAULTS:
            assert len(whole["fullDocumentBeforeChange"]["a"]) == 9 * 1024 * 1024


def _fail_commands(client, commands: list[str], times: int) -> None:
    client.admin.command({"configureFailPoint": "failCommand", "mode": {"times": times},
                          "data": {"failCommands": commands, "errorCode": 10334}})


def _fail_off(client) -> None:
    client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


def _drain_while_getmores_fail(pipeline, server, times: int):
    """Three events drained, then 2,597 more (more than the stream's first batch of 2000, so a
    getMore follows with events left) and an update of each of the first three documents, drained
    while the server fails ``times`` getMores with code 10334 (BSONObjectTooLarge)."""
    coll = pipeline.collection()
    coll.insert_many([{"_id": i, "v": "x" * 100} for i in range(3)])
    first = pipeline.drain()
    assert first.outcome == "caught_up", first.describe()
    coll.insert_many([{"_id": i, "v": "y"} for i in range(3, 2600)])
    coll.update_many({"_id": {"$lt": 3}}, {"$set": {"v": "z"}})
    _fail_commands(server.client, ["getMore"], times=times)
    try:
        return pipeline.drain()
    finally:
        _fail_off(server.client)


def _updates_looked_up(lines, mode) -> None:
    """The three updates at the end; under the defaults with the document as looked up."""
    updates = [d for d in lines if d["operationType"] == "update"]
    assert [u["documentKey"]["_id"] for u in updates] == [0, 1, 2]
    if mode == DEFAULTS:
        assert [u["fullDocument"]["v"] for u in updates] == ["z"] * 3


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_getmore_that_fails_once_with_code_10334_is_read_again_event_by_event(
        make_failpoint_pipeline, test_commands_mongo, mode):
    """The server fails one getMore with code 10334 (BSONObjectTooLarge: the way mongod answers a
    batch holding an event over 16 MB). The run reads from its position again one event per batch
    to find the event that is too large; here every event then comes through, so no dead letter is
    written for an event that fits, and the lake holds every event exactly once."""
    pipeline = pipeline_in_mode(make_failpoint_pipeline, mode, collections=("items",), scope="collection",
                                coll="items")
    second = _drain_while_getmores_fail(pipeline, test_commands_mongo, times=1)
    assert second.outcome == "caught_up" and second.report["dead_letters"] == 0, second.describe()
    _updates_looked_up(pipeline.assert_exactly_once(), mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_an_event_the_server_cannot_deliver_becomes_a_dead_letter(make_failpoint_pipeline, test_commands_mongo,
                                                                  mode):
    """The batch fails (code 10334), and read one event per batch it fails again after the first
    event: the event after that one is the large one. It is read again without its document
    fields and written to the collection's dead-letter folder with its own ``_seq``; the stream
    goes on after it, and the lake still holds every event exactly once."""
    pipeline = pipeline_in_mode(make_failpoint_pipeline, mode, collections=("items",), scope="collection",
                                coll="items")
    # getMore 1: the whole batch fails; getMore 2: one event per batch, after the first event
    second = _drain_while_getmores_fail(pipeline, test_commands_mongo, times=2)
    assert second.outcome == "caught_up" and second.report["dead_letters"] == 1, second.describe()
    assert "over 16 MB" in second.stderr
    lines = pipeline.assert_exactly_once()
    dead = [d for d in lines if "deadLetter" in d]
    assert len(dead) == 1 and dead[0]["deadLetter"] == {"reason": "BSONObjectTooLarge", "code": 10334}
    assert "/items/_dead_letter/year=" in dead[0]["__path"]
    assert "fullDocument" not in dead[0] and "fullDocumentBeforeChange" not in dead[0]
    _updates_looked_up(lines, mode)
    # read one by one from where the failed batch began, the first event came through and the
    # second is the one the server could not send: never the first event after the position
    index = lines.index(dead[0])
    assert dead[0]["documentKey"]["_id"] > 3 and lines[index - 1]["documentKey"]["_id"] == dead[0]["documentKey"]["_id"] - 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_an_event_too_large_first_in_the_stream_does_not_stop_the_pipeline(
        make_failpoint_pipeline, test_commands_mongo, mode):
    """The large event is the first after the stored position, so the aggregate that opens the
    stream fails (its first batch holds it). Opening again one event per batch fails the same way:
    that event becomes a dead letter, and the run (and every later one) goes on."""
    pipeline = pipeline_in_mode(make_failpoint_pipeline, mode, collections=("items",), scope="collection",
                                coll="items")
    coll = pipeline.collection()
    assert pipeline.drain().outcome == "caught_up"
    coll.insert_many([{"_id": i} for i in range(5)])
    coll.update_many({}, {"$set": {"u": 1}})
    # the opening aggregate fails, and so does the one-event-per-batch reopening; the probe passes
    _fail_commands(test_commands_mongo.client, ["aggregate"], times=2)
    try:
        second = pipeline.drain()
    finally:
        _fail_off(test_commands_mongo.client)
    assert second.outcome == "caught_up" and second.report["dead_letters"] == 1, second.describe()
    lines = pipeline.assert_exactly_once()
    assert [("deadLetter" in d, d["documentKey"]["_id"]) for d in lines] == [
        (True, 0), (False, 1), (False, 2), (False, 3), (False, 4)] + [(False, i) for i in range(5)]
    if mode == DEFAULTS:
        assert all(d["fullDocument"] == {"_id": d["documentKey"]["_id"], "u": 1} for d in lines[5:])


class _FakeSource:
    """A change source whose third event is over 16 MB (code 10334), as mongod reports it: the
    batch fails, and read one event per batch the third read fails again."""

    invalidated = False

    def __init__(self, events: list[dict]) -> None:
        self.events = [RawBSONDocument(bson.encode(e)) for e in events]
        self.at = 0

    def open(self, position):
        pass

    def next_event(self):
        from shared.source import DeadLetter

        if self.at == 2:
            event = bson.decode(self.events[self.at].raw)
            for key in ("fullDocument", "updateDescription", "fullDocumentBeforeChange"):
                event.pop(key, None)
            self.at += 1
            raise DeadLetter(RawBSONDocument(bson.encode(event)), 10334)
        if self.at >= len(self.events):
            return None
        self.at += 1
        return self.events[self.at - 1]

    def server_time(self):
        return Timestamp(int(dt.datetime.now(dt.timezone.utc).timestamp()), 1)

    def position(self):
        from shared.source import Position, token_text

        return Position("resume_after", token_text(self.events[self.at - 1]["_id"])) if self.at else None

    def close(self):
        pass


# Pinned only: a fake source ignores the stream settings (fullDocument, pre-images, START_AT).
def test_a_too_large_event_from_a_fake_source_is_dead_lettered_in_order(make_pipeline):
    pipeline = make_pipeline(scope="collection")
    now = Timestamp(int(dt.datetime.now(dt.timezone.utc).timestamp()), 1)
    events = [{"_id": {"_data": f"{i:04d}"}, "operationType": "insert", "clusterTime": now,
               "ns": {"db": pipeline.db, "coll": "items"}, "documentKey": {"_id": i}, "fullDocument": {"_id": i}}
              for i in range(5)]
    source = _FakeSource(events)
    report = pipeline.drain_in_process(source=source)
    assert report.outcome == "caught_up" and report.dead_letters == 1 and report.events == 5, report
    lines = pipeline.lake_lines()
    assert [(d["_seq"], d["documentKey"]["_id"], "deadLetter" in d) for d in lines] == [
        (1, 0, False), (2, 1, False), (3, 2, True), (4, 3, False), (5, 4, False)]


# -- hostile names and data ------------------------------------------------------------------------
HOSTILE = ["..", ".", "a/../../b", "x\x01y\x1fz", "C" * 230, "%2e%2e", "_hidden", "key=value", "ünï cødé", "a\\b"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_hostile_collection_names_stay_inside_their_database_folder(make_pipeline, mode):
    """Each collection gets an insert and an update (under the defaults looked up in that namespace)."""
    pipeline = pipeline_in_mode(make_pipeline, mode, scope="database")
    created = []
    for name in HOSTILE:
        try:
            pipeline.collection(name).insert_one({"name": name})
            created.append(name)
        except Exception:  # noqa: BLE001 - a name the server refuses cannot reach the lake
            pass
    for name in created:
        pipeline.collection(name).update_one({"name": name}, {"$set": {"u": 1}})
    assert len(created) >= 6, created
    run = pipeline.drain()
    assert run.outcome == "caught_up", run.describe()
    files = pipeline.lake_files()
    for path in files:
        parts = path.split("/")
        if parts[0] == "_manifests":  # named by the pipeline, not by what the stream says
            assert parts[1] == encode_name(pipeline.name) and len(parts) == 4, path
            continue
        assert parts[0] == encode_name(pipeline.db), path
        assert all(p not in ("", ".", "..") and len(p) <= 255 for p in parts), path
        assert not re.search(r"[\x00-\x1f\x7f\\]", path), path
    lines = pipeline.assert_exactly_once()
    assert sorted(d["ns"]["coll"] for d in lines) == sorted(created * 2)
    for line in lines:  # each line lives in the folder of its own collection
        assert line["__path"].split("/")[1] == encode_name(line["ns"]["coll"])
        if mode == DEFAULTS and line["operationType"] == "update":
            assert line["fullDocument"]["name"] == line["ns"]["coll"] and line["fullDocument"]["u"] == 1


EVERY_TYPE = {
    "double": 1.5, "nan": float("nan"), "inf": float("-inf"), "string": "text \u0000 nul \U0001F600",
    "doc": {"nested": {"deep": [1, {"x": None}]}}, "array": [1, "two", 3.0, [4]],
    "binary": Binary(b"\x00\xff", 0), "uuid": Binary(uuid.UUID(int=7).bytes, 4), "func": Binary(b"f", 1),
    "user": Binary(b"u", 128), "oid": ObjectId("65f0a0a0a0a0a0a0a0a0a0a0"), "true": True, "false": False,
    "date": dt.datetime(2024, 2, 29, 12, 0, 0, 123000, tzinfo=dt.timezone.utc),
    "date_pre_epoch": dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc), "null": None,
    "regex": Regex("^a.*b$", "imsx"), "code": Code("function() { return 1; }"),
    "code_scope": Code("function() { return x; }", {"x": 1}), "int32": 2**31 - 1, "int64": Int64(2**62),
    "timestamp": Timestamp(1700000000, 5), "decimal": Decimal128("-1.0E-6176"), "minkey": MinKey(),
    "maxkey": MaxKey(), "dbref": DBRef("coll", 1, "db"), "empty_key": {"": 1}, "dotted": {"a.b": 1, "$c": 2},
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_documents_with_every_bson_type_round_trip(make_pipeline, mongo_client, mode):
    """Under the defaults the update's pre-image holds every type too."""
    from bson.codec_options import CodecOptions, DatetimeConversion

    pinned = {"MONGO_FULL_DOC": "updateLookup"} if mode == PINNED else {}
    pipeline = pipeline_in_mode(make_pipeline, mode, collections=("items",), scope="collection", **pinned)
    coll = pipeline.collection()
    coll.insert_one({"_id": 1, **EVERY_TYPE})
    # (dates outside years 1-9999 are not here: SecantusDB cannot store them; the encoder's own
    # tests cover them)
    coll.insert_one({"_id": 2, "edge_dates": [dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc),
                                              dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc)]})
    # (strings that are not valid UTF-8: SecantusDB refuses them; the encoder's own tests cover them)
    coll.update_one({"_id": 1}, {"$set": {"int32": -1}})
    run = pipeline.drain()
    assert run.outcome == "caught_up", run.describe()
    lines = pipeline.assert_exactly_once()
    options = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO,
                           unicode_decode_error_handler="surrogateescape")
    stored = {d["_id"]: d for d in coll.with_options(codec_options=options).find()}
    inserted = {d["documentKey"]["_id"]: d["fullDocument"] for d in lines if d["operationType"] == "insert"}
    assert inserted[2] == stored[2]
    documents = [inserted[1]]
    if mode == DEFAULTS:
        documents.append(lines[-1]["fullDocumentBeforeChange"])
    for first in documents:
        for name, value in EVERY_TYPE.items():
            if name == "nan":
                assert first[name] != first[name]
            else:  # the same BSON bytes (bytes and Binary subtype 0 are one BSON value)
                assert bson.encode({"v": first[name]}) == bson.encode({"v": value}), name
    assert lines[-1]["fullDocument"]["int32"] == -1
