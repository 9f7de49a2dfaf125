"""Snapshot decisions without a server: chunk windows, progress, row keys, BSON order (pure)."""

import contextlib
import functools
import json
import time

import bson
import pytest
from bson import Decimal128, Int64, MaxKey, MinKey, ObjectId, Timestamp
from pymongo.errors import OperationFailure

from shared.encode import LineEncoder
from shared.intent import Intent, Numbering, line_key
from shared.snapshot import (
    CollectionCopy,
    Copier,
    Replies,
    Scan,
    id_rank,
    Progress,
    RowBuilder,
    Window,
    compare_ids,
    copy_of_key,
    element_text,
    id_element,
    id_text,
    row_key,
    split_documents,
    token_cluster,
    types_after,
)


def _raw(doc) -> bytes:
    return bson.encode(doc)


def _window(docs, low=(10, 1), high=(10, 5)):
    return Window(3, 7, "shop", "orders", low, high, [_raw(d) for d in docs], None, False)


def test_rows_touched_by_the_stream_after_the_low_watermark_are_dropped():
    window = _window([{"_id": 1}, {"_id": 2}, {"_id": 3}])
    element = functools.partial(lambda v: id_element(_raw({"_id": v})))
    window.observe("update", "shop", "orders", element(2), (10, 3))
    window.observe("update", "shop", "orders", element(3), (10, 1))  # at low: the chunk already has it
    window.observe("delete", "shop", "other", element(1), (10, 4))  # another collection
    assert [bson.decode(raw)["_id"] for _, raw in window.rows()] == [1, 3]
    assert window.closes_at((10, 6)) and not window.closes_at((10, 5))


@pytest.mark.parametrize("kind,coll", [("drop", "orders"), ("rename", "orders"), ("dropDatabase", None),
                                       ("update_without_document", "orders")])
def test_a_drop_or_rename_in_the_window_discards_the_chunk(kind, coll):
    window = _window([{"_id": 1}])
    window.observe(kind, "shop", coll, None, (10, 2), lookup_failed=kind == "update_without_document")
    assert window.discarded and window.rows() == []


def test_the_window_passes_on_a_token_at_high_or_after_two_empty_reads():
    assert _window([]).passed((10, 5))
    window = _window([])
    assert not window.passed((10, 4)) and window.passed(None)


def test_progress_follows_drops_and_renames_and_round_trips():
    progress = Progress()
    progress.start([("shop", "a"), ("shop", "b"), ("shop", "c")], "initial")
    progress.chunk_written(1, json.dumps({"_id": 5}), 5, 0.5, exhausted=False)
    progress.on_event("rename", "shop", "a", ("shop", "z"), lambda db, coll: True)
    progress.on_event("drop", "shop", "b", None, lambda db, coll: True)
    progress.on_event("rename", "shop", "c", ("other", "c"), lambda db, coll: db == "shop")
    assert [(c.copy, c.ns, c.chunks, c.copied) for c in progress.copies] == [(1, "shop.z", 1, 5)]
    assert [c.finished for c in progress.finished] == ["dropped", "renamed_out"]
    again = Progress.from_json(progress.to_json())
    assert again == progress and again.next_copy == 4
    progress.start([("shop", "z")], "requested")  # a request replaces the running copy
    assert [(c.copy, c.reason) for c in progress.copies] == [(4, "requested")]
    with pytest.raises(ValueError):
        Progress.from_json('{"copies": [{"copy": 9, "db": "d", "coll": "c", "reason": "x"}], "next_copy": 2}')


def test_the_end_line_names_where_the_copy_started_not_a_replay_s_first_chunk():
    """A replay keeps the rows a failed run made durable (their cluster time is that run's ``high``)
    and reads its own first chunk later: ``since`` must be the position the copy starts from, the same
    for both, or a reader would remove the kept rows' documents at the end line."""
    from shared.snapshot import Copier

    progress = Progress()
    progress.start([("shop", "orders")], "initial", (100, 2))
    copier = Copier(progress, None, lambda: 0.0, lambda db, coll: True, 10, 1 << 20)
    window = Window(1, 0, "shop", "orders", (300, 1), (300, 9), [_raw({"_id": 1})], None, True)
    key, raw = copier.end_line(window)
    assert key == "snapend:1" and bson.decode(raw)["snapshot"]["since"] == Timestamp(100, 2)
    copier.chunk_done(window, 1)
    assert progress.finished[0].since == [100, 2]


def test_pending_compares_ids_in_bson_order():
    progress = Progress()
    progress.start([("d", "c")], "initial")
    progress.chunk_written(1, json.dumps({"_id": "m"}), 3, 0.1, exhausted=False)
    assert progress.pending(1, '"z"') and not progress.pending(1, '"a"')
    assert progress.pending(1, '{"$oid": "' + "0" * 24 + '"}')  # ObjectId sorts after strings
    assert not progress.pending(1, "5") and not progress.pending(2, '"z"')


ORDER = [MinKey(), None, -5, 2.5, Int64(3), Decimal128("3.5"), 7, "", "a", "b", {"a": 1}, {"a": 1, "b": 2},
         {"b": 0}, {"a": "x"}, bson.Binary(b"\x01"), bson.Binary(b"\x00\x00"), ObjectId("0" * 24),
         ObjectId("f" * 24), False, True, bson.datetime_ms.DatetimeMS(5), Timestamp(1, 1), MaxKey()]


def test_compare_ids_follows_the_bson_order():
    """mongod's order: type bracket, then value; documents element by element, each by type bracket,
    then field name, then value (so {"b": 0} sorts before {"a": "x"}: a number before a string)."""
    for i, a in enumerate(ORDER):
        for j, b in enumerate(ORDER):
            assert compare_ids(a, b) == (i > j) - (i < j), (a, b)


def test_types_after_a_bracket():
    assert types_after(10)[:2] == ["string", "symbol"] and "double" not in types_after(10)
    assert types_after(100) == []


@pytest.mark.parametrize("mode", ["relaxed", "canonical"])
@pytest.mark.parametrize("value", [1, -7, Int64(1 << 40), Int64(-3), 2.5, "x:y", "é\"\n", ObjectId("a" * 24), {"k": [1, "z"]},
                                   bson.datetime_ms.DatetimeMS(1_700_000_000_123)])
def test_a_row_read_back_has_the_key_the_drain_gave_it(mode, value):
    window = Window(3, 7, "shop", "orders", (10, 1), (12, 5), [_raw({"_id": value, "v": 1})], None, False)
    element, raw = window.rows()[0]
    row = RowBuilder(window).build(element, raw)
    line = LineEncoder(mode).encode(row, 42)
    parsed = json.loads(line)
    assert list(parsed) == ["operationType", "clusterTime", "ns", "documentKey", "fullDocument", "snapshot", "_seq"]
    assert parsed["operationType"] == "snapshot" and parsed["ns"] == {"db": "shop", "coll": "orders"}
    assert parsed["clusterTime"] == {"$timestamp": {"t": 12, "i": 5}}
    assert line_key(parsed) == row_key(3, value)
    assert element_text(element) == id_text(value)
    assert copy_of_key(row_key(3, value))[0] == 3


def test_token_cluster_reads_mongod_and_secantus_tokens():
    assert token_cluster({"_data": "82" + "0000000A" + "00000005" + "2B0229"}) == (10, 5)
    secantus = bson.encode({"s": 1, "t": Timestamp(9, 4)}).hex()
    assert token_cluster({"_data": secantus}) == (9, 4)
    assert token_cluster({"x": 1}) is None


def test_a_replay_numbers_above_durable_lines_of_earlier_cluster_times():
    """A failed run wrote a snapshot row (7, cluster (10, 5)) and not the event before it (6): the
    replay's event at (10, 6), after the row's watermark, must not take the free number 6."""
    intent = Intent(5, 8, "k", (10, 9), {})
    numbering = Numbering(4, intent, {"e5": 5, "snap:1:3": 7}, durable_clusters={5: (10, 1), 7: (10, 5)})
    assert numbering.assign("e5", (10, 1)) is None
    assert numbering.assign("late", (10, 6)) == 8  # not 6: above the row at (10, 5)
    assert numbering.assign("k", (10, 9)) == 9


def test_the_range_stays_open_until_the_copy_has_read_past_durable_rows():
    intent = Intent(1, 3, "e2", (10, 2), {})
    numbering = Numbering(0, intent, {"e1": 1, "snap:1:5": 3}, durable_clusters={1: (10, 1), 3: (10, 3)})
    assert numbering.hold == {(1, "5")}
    numbering.assign("e1", (10, 1))
    numbering.assign("e2", (10, 2))
    numbering.end_of_range()
    assert numbering.replaying  # the row of _id 5 is still to be read again
    assert numbering.assign("snap:1:4", (11, 1)) == 4
    assert numbering.assign("snap:1:5", (11, 1)) is None  # the failed run's row: skipped
    numbering.release(lambda copy, text: int(text) > 5)
    assert not numbering.replaying and numbering.assign("x", (12, 1)) == 5


class _Server:
    """A collection's ``find`` in ``_id`` order: sorted in BSON order, or by an index walk that orders
    document ``_id``s otherwise (as SecantusDB's does), or (``indexed=False``) refusing the hint."""

    def __init__(self, ids, indexed=True):
        self.ids = sorted(ids, key=functools.cmp_to_key(compare_ids))
        self.indexed = indexed
        self.queries = []

    @contextlib.contextmanager
    def _errors(self, doing):
        yield

    def _cursor(self, copy, query, batch, hinted):
        self.queries.append((query, hinted))
        if hinted and not self.indexed:
            def refused():
                raise OperationFailure("hint provided does not correspond to an existing index", code=2)
                yield
            return _Cursor(refused())
        ids = list(self.ids)
        if hinted:  # the documents' bracket in another order than BSON comparison's
            documents = [i for i, value in enumerate(ids) if isinstance(value, dict)]
            if documents:
                ids[documents[0]:documents[-1] + 1] = reversed(ids[documents[0]:documents[-1] + 1])
        docs = [bson.encode({"_id": value}) for value in ids if _matches(value, query)]
        # raw batches (documents one after another) of ``batch`` documents, as find_raw_batches gives
        return _Cursor(b"".join(docs[i:i + batch]) for i in range(0, len(docs), batch))


class _Cursor:
    def __init__(self, it):
        self._it = iter(it)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def close(self):
        pass


def _matches(value, query):
    if not query:
        return True
    cond = query["_id"]
    element = id_element(bson.encode({"_id": value}))
    if "$type" in cond:
        return element[0] in {_TYPE_CODES[alias] for alias in cond["$type"]}
    bound = id_element(bson.encode({"_id": cond["$gt"]}))
    return id_rank(element) == id_rank(bound) and compare_ids(value, cond["$gt"]) > 0


_TYPE_CODES = {"null": 0x0A, "undefined": 0x06, "double": 0x01, "int": 0x10, "long": 0x12, "decimal": 0x13,
               "string": 0x02, "symbol": 0x0E, "object": 0x03, "array": 0x04, "binData": 0x05, "objectId": 0x07,
               "bool": 0x08, "date": 0x09, "timestamp": 0x11, "regex": 0x0B, "dbPointer": 0x0C,
               "javascript": 0x0D, "javascriptWithScope": 0x0F, "maxKey": 0x7F, "minKey": 0xFF}


SCAN_IDS = [None, -1, 2.5, "a", "b", {"a": 1, "b": 2}, {"a": 2}, {"b": 0}, ObjectId("0" * 24), True, MaxKey()]


@pytest.mark.parametrize("indexed", [True, False], ids=["index_walk", "no_index"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 100])
def test_a_scan_reads_every_id_once_in_bson_order(chunk, indexed):
    """Chunks resumed from their stored ``after`` (a new scan each time) and chunks of one scan give
    every ``_id`` once, in BSON order: the index walk for every bracket but the documents', which are
    read sorted; a collection without an ``_id`` index to walk is read sorted."""
    expected = [bson.encode({"_id": value}) for value in sorted(SCAN_IDS, key=functools.cmp_to_key(compare_ids))]
    for resume in (False, True):
        server = _Server(SCAN_IDS, indexed)
        copy = CollectionCopy(1, "shop", "orders", "initial")
        got, done = [], False
        scan = Scan(server, copy, (1, 1))
        while not done:
            if resume:
                scan.close()
                scan = Scan(server, copy, (1, 1))
            docs, after, done = scan.next_chunk(chunk, 1 << 20)
            got += docs
            copy.after = after or copy.after
        scan.close()
        assert got == expected
        if indexed:
            assert any(hinted for _, hinted in server.queries)
            assert all(not hinted for query, hinted in server.queries if query.get("_id", {}).get("$type") == ["object"])


class _RawCursor:
    """A raw-batch cursor: the replies given, then (optionally) an error; records closing and the
    batch size asked for before each reply after the first."""

    def __init__(self, replies, error=None):
        self._replies, self._error = list(replies), error
        self._batch_size = 1000
        self.asked, self.closed = [], False

    def __iter__(self):
        return self

    def __next__(self):
        if self._replies:
            self.asked.append(self._batch_size)
            return self._replies.pop(0)
        if self._error is not None:
            raise self._error
        raise StopIteration

    def close(self):
        self.closed = True


def test_replies_come_in_order_then_the_error_then_nothing_more():
    docs = [bson.encode({"_id": i, "pad": "x" * 100}) for i in range(6)]
    cursor = _RawCursor([b"".join(docs[:4]), b"".join(docs[4:])],
                        error=OperationFailure("cursor killed", code=237))
    replies = Replies(cursor, limit=1000, max_bytes=250)
    assert replies.take() == docs[:4]
    assert replies.take() == docs[4:]
    with pytest.raises(OperationFailure):
        replies.take()
    replies.close()
    assert cursor.closed
    # after the first reply (~120-byte documents) the next asks for what fits 250 bytes
    assert cursor.asked[1] == 250 // len(docs[0])


def test_replies_closed_while_one_waits_end_at_once():
    docs = [bson.encode({"_id": i}) for i in range(3)]
    cursor = _RawCursor([d for d in docs])  # three replies: one taken, one waiting, one held back
    replies = Replies(cursor, limit=10, max_bytes=1 << 20)
    assert replies.take() == docs[:1]
    started = time.monotonic()
    replies.close()
    assert time.monotonic() - started < 5 and cursor.closed


def test_a_raw_batch_cut_inside_a_document_is_refused():
    doc = bson.encode({"_id": 1})
    assert split_documents(doc + doc) == [doc, doc]
    with pytest.raises(ValueError, match="cut inside a document"):
        split_documents(doc + doc[:-2])


def test_chunks_sharing_a_high_the_stream_passed_wait_once():
    """A quiet server's cluster time moves with its own writes, which a post-batch token need not
    show: the first chunk at that ``high`` takes two empty reads, a later chunk at the same or an
    earlier ``high`` none; a later ``high`` waits again, and so does every chunk after the stream
    restarts (``discard``)."""
    copier = Copier(Progress(), None, time.monotonic, lambda db, coll: True, 10, 1 << 20)
    token = (10, 1)
    first = _window([{"_id": 1}], low=(10, 1), high=(12, 1))
    assert not copier.stream_reached(first, token)
    assert not copier.stream_passed(first, token)
    assert copier.stream_passed(first, token)
    for high in ((12, 1), (11, 5)):
        assert copier.stream_reached(_window([{"_id": 2}], low=(10, 1), high=high), token)
    later = _window([{"_id": 3}], low=(10, 1), high=(14, 1))
    assert not copier.stream_reached(later, token)
    assert copier.stream_reached(later, (14, 1))  # the stream's own position
    copier.discard()
    assert not copier.stream_reached(_window([{"_id": 4}], low=(10, 1), high=(12, 1)), token)


def test_replies_nobody_takes_end_their_thread():
    """A consumer gone without ``close`` (it never takes again): the thread gives up instead of
    holding its reply for ever."""

    class Soon(Replies):
        ABANDONED_SECONDS = 0.3

    replies = Soon(_RawCursor([bson.encode({"_id": i}) for i in range(3)]), limit=10, max_bytes=1 << 20)
    replies._thread.join(10)
    assert not replies._thread.is_alive()
