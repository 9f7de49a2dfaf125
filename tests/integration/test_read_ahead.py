"""The read-ahead against a real change stream: the same events and, after each, the same position
as pymongo's own ``ChangeStream`` gives (event tokens inside a server reply, the post-batch token
after its last event and after an empty reply); the private attributes it relies on are there;
a quiet read waits what the consumer asks for."""

from __future__ import annotations

import time

import pymongo
from bson.raw_bson import RawBSONDocument

from shared.prefetch import ReadAhead


def _read_all(stream, limit=100_000):
    seen = []
    empty = 0
    while empty < 2 and len(seen) < limit:
        event = stream.try_next()
        if event is None:
            empty += 1
        seen.append((None if event is None else event.raw, stream.resume_token))
    return seen


def test_read_ahead_gives_what_the_plain_stream_gives(stack_env, fresh_db_name):
    client = pymongo.MongoClient(stack_env["MONGO_URI"], document_class=RawBSONDocument)
    try:
        db = client[fresh_db_name]
        start = client.admin.command("ping")["operationTime"]
        db.b.insert_many([{"_id": i} for i in range(4)])
        for round_ in range(3):
            db.a.insert_many([{"_id": f"{round_}-{i}", "pad": "x" * (i * 37 % 900)} for i in range(45)])
            db.b.update_many({}, {"$inc": {"n": 1}})
            db.a.delete_many({"_id": {"$regex": f"^{round_}-1"}})
        options = {"start_at_operation_time": start, "batch_size": 7, "max_await_time_ms": 200,
                   "full_document": "updateLookup"}
        with db.watch(**options) as plain:
            want = _read_all(plain)
        ahead = ReadAhead(db.watch(**options), limit=4096)
        try:
            got = _read_all(ahead)
        finally:
            ahead.close()
        # events: 4 inserts, then 3 x (45 inserts, 4 updates, 11 deletes: "r-1" and "r-10".."r-19")
        assert sum(1 for raw, _ in want if raw is not None) == 4 + 3 * (45 + 4 + 11)
        assert [raw for raw, _ in got] == [raw for raw, _ in want]
        assert [token.raw for _, token in got] == [token.raw for _, token in want]
    finally:
        client.close()


def test_a_quiet_read_waits_the_time_the_consumer_asks_for(stack_env, fresh_db_name):
    # the snapshot's short waits between chunks: the read-ahead thread applies them to its getMore
    client = pymongo.MongoClient(stack_env["MONGO_URI"], document_class=RawBSONDocument)
    try:
        db = client[fresh_db_name]
        db.a.insert_one({"_id": 0})
        start = client.admin.command("ping")["operationTime"]
        db.a.insert_one({"_id": 1})
        ahead = ReadAhead(db.watch(start_at_operation_time=start, max_await_time_ms=1000), limit=4096)
        try:
            seen = []
            while (event := ahead.try_next(20)) is not None or not seen:
                if event is not None:
                    seen.append(event["documentKey"]["_id"])
            assert seen[-1] == 1
            began = time.monotonic()
            for _ in range(5):
                assert ahead.try_next(20) is None
            short = time.monotonic() - began
            began = time.monotonic()
            assert ahead.try_next() is None  # the stream's own wait again
            assert ahead.try_next() is None  # (the first may have been read ahead with 20 ms)
            own = time.monotonic() - began
            assert short < 2.5, short  # five reads of 1 s each would take 5 s
            assert own >= 0.9, own
            db.a.insert_one({"_id": 2})
            deadline = time.monotonic() + 30
            event = None
            while event is None and time.monotonic() < deadline:
                event = ahead.try_next(20)
            assert event["documentKey"]["_id"] == 2
        finally:
            ahead.close()
    finally:
        client.close()


def test_a_run_failing_while_it_copies_ends_the_copy_s_read_ahead(pipeline, mongo_client):
    """A run that fails between two snapshot chunks, while its scan has server replies read ahead,
    leaves no read-ahead thread behind (a Functions worker runs one run after another)."""
    import threading

    from shared.drain import run_drain
    from shared.settings import Settings
    from shared.source import ChangeSource

    db = pipeline.dbs[0]
    mongo_client[db]["items"].insert_many([{"i": i, "pad": "x" * 200} for i in range(3000)])
    env = {**pipeline.env, "MONGO_DB": db, "MONGO_PIPELINE": "[]", "SNAPSHOT": "initial",
           "MONGO_FULL_DOC": "updateLookup", "SNAPSHOT_CHUNK_DOCS": "100"}
    settings = Settings.from_env(env)

    class FailingBetweenChunks(ChangeSource):
        asked = 0

        def token_cluster(self):
            FailingBetweenChunks.asked += 1
            if FailingBetweenChunks.asked > 3:
                raise RuntimeError("the stream's position could not be read")
            return super().token_cluster()

    before = set(threading.enumerate())
    report = run_drain(settings, env=env, source=FailingBetweenChunks(settings))
    assert report.outcome == "failed" and "could not be read" in report.error["message"], report.error
    assert report.snapshot is None or all(c["finished"] is None for c in report.snapshot)
    left = [t for t in set(threading.enumerate()) - before if t.name == "snapshot-read-ahead" and t.is_alive()]
    assert not left
