"""The change stream's read-ahead (``shared.prefetch.ReadAhead``) over a scripted stream: what the
consumer sees is what the plain stream gives, in the same order, with the same position after each
event; the thread never holds more than its limit of events not yet taken."""

from __future__ import annotations

import threading
import time
from collections import deque

import pytest

from shared.prefetch import CHUNK_EVENTS, ReadAhead


class _Event(dict):
    """A change event as far as the read-ahead looks at one: ``raw`` bytes and ``operationType``."""

    @property
    def raw(self) -> bytes:
        return b"x" * self["size"]


class _Cursor:
    def __init__(self, stream):
        self._stream = stream
        self._max_await_time_ms = 500  # as pymongo's CommandCursor: what the next getMore waits

    @property
    def _data(self):
        return self._stream.batch

    def _has_next(self) -> bool:
        return bool(self._stream.batch)

    @property
    def _post_batch_resume_token(self):
        return f"pbrt-{self._stream.reply}"


class ScriptedStream:
    """Plays a script of server replies: a list of events (a batch), None (an empty reply), or an
    exception. Tracks the token the way pymongo's ChangeStream does: the event's ``_id``, the reply's
    post-batch token after its last event and after an empty reply."""

    def __init__(self, script, token="start"):
        self.script = list(script)
        self.batch = deque()
        self.reply = 0
        self._resume_token = token
        self._cursor = _Cursor(self)
        self.alive = True
        self.closed = False
        self.reads = 0
        self.awaits = []  # the cursor's await time at each server reply asked for
        self.lock = threading.Lock()

    @property
    def resume_token(self):
        return self._resume_token

    def try_next(self):
        with self.lock:
            self.reads += 1
            if not self.batch:
                if not self.script:
                    self._resume_token = f"pbrt-{self.reply}"
                    return None
                self.awaits.append(self._cursor._max_await_time_ms)
                reply = self.script.pop(0)
                self.reply += 1
                if isinstance(reply, BaseException):
                    raise reply
                if not reply:
                    self._resume_token = f"pbrt-{self.reply}"
                    return None
                self.batch = deque(reply)
            event = self.batch.popleft()
            self._resume_token = event["_id"] if self.batch else f"pbrt-{self.reply}"
            if event["operationType"] == "invalidate":
                self.alive = False
            return event

    def close(self):
        self.closed = True


def _events(prefix, n, size=10):
    return [_Event(_id=f"{prefix}{i}", operationType="insert", size=size) for i in range(n)]


def _consume(stream, n):
    out = []
    for _ in range(n):
        event = stream.try_next()
        out.append((event["_id"] if event is not None else None, stream.resume_token))
    return out


def test_events_and_positions_are_those_of_the_plain_stream():
    script = [_events("a", 3), _events("b", CHUNK_EVENTS + 7), None, _events("c", 2)]
    plain, ahead = ScriptedStream(script), ReadAhead(ScriptedStream(script), limit=10**9)
    assert ahead.resume_token == "start"
    want = _consume(plain, 3 + CHUNK_EVENTS + 7 + 1 + 2 + 1)
    got = _consume(ahead, len(want))
    ahead.close()
    assert got == want
    assert ("a2", "pbrt-1") in got and (None, "pbrt-3") in got and got[-1] == (None, "pbrt-4")


def test_an_error_comes_after_the_events_read_before_it_and_the_position_is_the_last_event_taken():
    failure = RuntimeError("getMore failed")
    ahead = ReadAhead(ScriptedStream([_events("a", 4), failure, _events("b", 3)]), limit=10**9)
    assert [ahead.try_next()["_id"] for _ in range(4)] == ["a0", "a1", "a2", "a3"]
    assert ahead.resume_token == "pbrt-1"
    with pytest.raises(RuntimeError, match="getMore failed"):
        ahead.try_next()
    assert ahead.resume_token == "pbrt-1"
    assert ahead.try_next() is None  # the stream is done after its error
    ahead.close()


def test_nothing_after_an_invalidate_is_read():
    script = [_events("a", 2) + [_Event(_id="inv", operationType="invalidate", size=5)], _events("b", 3)]
    stream = ScriptedStream(script)
    ahead = ReadAhead(stream, limit=10**9)
    assert [ahead.try_next()["_id"] for _ in range(3)] == ["a0", "a1", "inv"]
    assert ahead.try_next() is None
    ahead.close()
    assert stream.script == [_events("b", 3)]  # never read


def test_it_holds_at_most_its_limit_of_events_not_yet_taken():
    stream = ScriptedStream([_events("a", 100, size=100)])
    ahead = ReadAhead(stream, limit=1000)

    def read():  # events the thread took from the stream
        return 100 - len(stream.batch) if stream.reply else 0

    assert ahead.try_next()["_id"] == "a0"
    deadline = time.monotonic() + 30
    while read() < 1000 // 100 and time.monotonic() < deadline:  # the thread reads ahead...
        time.sleep(0.01)
    time.sleep(0.2)  # ...and would go on now if it were not bounded
    # read and not yet taken: at most the limit, plus the event that crossed each half of it
    assert 1000 // 100 <= read() <= 1000 // 100 + 2
    assert [ahead.try_next()["_id"] for _ in range(99)] == [f"a{i}" for i in range(1, 100)]
    assert ahead.resume_token == "pbrt-1"
    ahead.close()


def test_after_caught_up_it_reads_no_further_until_asked():
    stream = ScriptedStream([_events("a", 2), None, _events("b", 2)])
    ahead = ReadAhead(stream, limit=10**9)
    assert [ahead.try_next()["_id"] for _ in range(2)] == ["a0", "a1"]
    assert ahead.try_next() is None
    time.sleep(0.2)
    assert stream.script == [_events("b", 2)]  # the reply after the empty one is not asked for
    assert ahead.try_next()["_id"] == "b0"
    ahead.close()
    assert stream.closed


def test_close_before_any_read_closes_the_stream():
    stream = ScriptedStream([_events("a", 2)])
    ReadAhead(stream, limit=10).close()
    assert stream.closed and stream.reads == 0


def test_each_read_waits_what_the_consumer_asked_for_after_caught_up():
    stream = ScriptedStream([None, None, _events("a", 2), None, None, None])
    ahead = ReadAhead(stream, limit=10**9)
    assert ahead.try_next(20) is None  # the first read already waits what was asked
    assert ahead.try_next(20) is None
    assert [ahead.try_next(20)["_id"] for _ in range(2)] == ["a0", "a1"]
    assert ahead.try_next() is None  # read ahead after the reply of a0, a1: it waited 20 ms
    assert ahead.try_next(35) is None
    assert ahead.try_next() is None  # None: the wait the stream was opened with
    ahead.close()
    assert stream.awaits == [20, 20, 20, 20, 35, 500]


def test_a_cursor_opened_again_gets_the_wait_asked_for():
    stream = ScriptedStream([None, None])
    ahead = ReadAhead(stream, limit=10**9)
    assert ahead.try_next(20) is None
    stream._cursor = _Cursor(stream)  # what pymongo does when it resumes after an error
    assert ahead.try_next(20) is None
    ahead.close()
    assert stream.awaits == [20, 20]


def test_the_wait_asked_for_goes_to_the_reads_ahead_after_the_request():
    # a read in flight keeps its wait; the reads ahead after the request take the new one
    gate = threading.Event()
    stream = ScriptedStream([_events("a", 2), _events("b", 2), None])
    read = stream.try_next

    def held():  # the second reply is held until the consumer has asked for another wait
        if stream.reply == 1 and not stream.batch:
            gate.wait(10)
        return read()

    stream.try_next = held
    ahead = ReadAhead(stream, limit=10**9)
    assert [ahead.try_next()["_id"] for _ in range(2)] == ["a0", "a1"]
    got = []
    consumer = threading.Thread(target=lambda: got.append(ahead.try_next(20)))
    consumer.start()  # waits for the held reply, having asked for 20 ms
    time.sleep(0.2)
    gate.set()
    consumer.join(10)
    assert got[0]["_id"] == "b0"
    assert ahead.try_next(20)["_id"] == "b1"
    assert ahead.try_next(20) is None
    ahead.close()
    assert stream.awaits == [500, 500, 20]


def test_an_empty_read_handed_over_is_followed_by_one_that_began_after_the_request():
    # what a snapshot chunk relies on: of two empty reads the consumer takes in a row, the second
    # began after the consumer asked (the thread waits after an empty read)
    stream = ScriptedStream([_events("a", 3), None, None])
    ahead = ReadAhead(stream, limit=10**9)
    assert ahead.try_next()["_id"] == "a0"
    deadline = time.monotonic() + 30
    while stream.reads < 2 and time.monotonic() < deadline:  # the thread reaches the empty reply
        time.sleep(0.01)
    time.sleep(0.1)
    before = stream.reads
    assert [ahead.try_next()["_id"] for _ in range(2)] == ["a1", "a2"]
    assert ahead.try_next() is None  # the empty read made before these requests
    assert stream.reads == before
    assert ahead.try_next() is None
    assert stream.reads == before + 1  # this one was made for this request
    ahead.close()
