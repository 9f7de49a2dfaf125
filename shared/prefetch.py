"""Read-ahead for the change stream: a thread reads the next server batch while the drain numbers,
encodes and routes the last one.

Why: a serial ``try_next`` loop leaves the server idle while the app works and the app idle while the
server prepares the next ``getMore``; with the read-ahead both run at once.

``ReadAhead`` wraps a pymongo ``ChangeStream`` and offers the two things ``source.ChangeSource`` uses
of it, with the same meaning as the plain stream, seen from the consumer:

- ``try_next(await_ms)``: the next event, or None when the stream had none waiting (caught up);
  ``await_ms`` is how long a read of a quiet stream waits for an event (None: the wait the stream
  was opened with);
- ``resume_token``: the position after the last event the consumer took (or the post-batch token
  of the last empty read), never after an event only read ahead.

Events read ahead and never taken are dropped at ``close()``: the position the drain commits comes
from ``resume_token``, so nothing read ahead can be skipped. An error of the stream is raised by the
``try_next()`` that reaches it, after every event read before it, so the drain sees the events and
the error in the order the stream gave them.

The await time: the reads happen in the thread, so the consumer's ``await_ms`` goes with its request
and the thread sets it on the cursor before its next ``getMore``. After an empty read the thread is
paused until the consumer asks again, so the read that answers a request made after being caught up
waits what that request asked for; a read already in flight when the consumer asks for another
wait (the thread reading ahead of events still coming) keeps the wait it started with, and the
reads ahead after it use the last one asked for.

Bounded: events read ahead and not yet taken stay under ``limit`` bytes (plus one event, and the one
server reply pymongo holds, as without read-ahead): the chunk being taken and the chunks waiting
behind it have half of it each.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from . import invocation

CHUNK_EVENTS = 500  # events handed over at once (fewer lock round trips per event)
_EVENTS, _CAUGHT_UP, _END, _ERROR = range(4)  # what the thread hands over: (kind, ...)


class ReadAhead:
    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        # half for the chunk the consumer is taking, half for the chunks waiting behind it
        self._limit = max(1, limit // 2)
        self._ready: deque = deque()  # (kind, ...) in the stream's order
        self._waiting = 0  # bytes of the events in _ready
        self._cond = threading.Condition()
        self._stop = False
        self._paused = False  # after an empty read, until the consumer asks again
        self._thread: threading.Thread | None = None
        self._events: list = []  # the chunk being taken
        self._count = 0
        self._next = 0
        self._token = stream.resume_token  # after the chunk's last event (before anything: the start)
        self._ended = False
        self._own_await = _await_of(stream)  # the wait the stream was opened with
        self._await = self._own_await  # the wait the consumer asked for last: the thread's next reads

    @property
    def resume_token(self) -> Any:
        i = self._next
        # Why an event's own _id inside a chunk: a chunk never spans two server replies, and pymongo
        # takes the post-batch token only after a reply's last event, which ends its chunk.
        return self._events[i - 1]["_id"] if i < self._count else self._token

    def try_next(self, await_ms: int | None = None) -> Any:
        while True:
            i = self._next
            if i < self._count:
                self._next = i + 1
                return self._events[i]
            if self._ended:
                return None
            item = self._take(self._own_await if await_ms is None else await_ms)
            kind = item[0]
            if kind == _EVENTS:
                _, self._events, self._token, _ = item
                self._count, self._next = len(self._events), 0
            elif kind == _CAUGHT_UP:
                if item[1] is not None:
                    self._token = item[1]
                return None
            elif kind == _END:
                self._ended = True
            else:
                self._ended = True
                raise item[1]

    def _take(self, await_ms: int | None) -> tuple:
        if self._thread is None:
            self._await = await_ms  # before the thread's first read
            self._thread = invocation.start_thread(self._read, name="change-stream-read-ahead", daemon=True)
        with self._cond:
            self._await = await_ms
            if self._paused and not self._ready:
                self._paused = False
                self._cond.notify_all()
            while not self._ready:
                self._cond.wait()
            item = self._ready.popleft()
            if item[0] == _EVENTS:
                self._waiting -= item[3]
                self._cond.notify_all()
            return item

    def _read(self) -> None:
        stream, cond, limit = self._stream, self._cond, self._limit
        take = stream.try_next
        events: list = []
        size = 0
        try:
            while True:
                with cond:
                    while self._waiting >= limit and not self._stop:
                        cond.wait()
                    if self._stop:
                        return
                    wanted = self._await
                # the cursor's own value: a cursor pymongo opened again after an error has the stream's
                if wanted is not None and _await_of(stream) != wanted:
                    set_await(stream, wanted)  # only this thread touches the cursor once it runs
                event = take()  # at most one getMore
                if event is None:
                    with cond:
                        # Why the private attribute: the public property deep-copies the token
                        self._ready.append((_CAUGHT_UP, stream._resume_token))
                        self._paused = True
                        cond.notify_all()
                        while self._paused and not self._stop:
                            cond.wait()
                    continue
                events, size = [event], len(event.raw)
                rest = _reply_rest(stream)  # the rest of the reply pymongo holds: no request
                if rest:
                    pop = rest.popleft
                    while rest and size < limit and len(events) < CHUNK_EVENTS:
                        event = pop()
                        events.append(event)
                        size += len(event.raw)
                    _taken(stream, event)
                # an invalidate ends the stream: the server closes the cursor with the reply it ends
                end = event["operationType"] == "invalidate" or not stream.alive
                with cond:
                    self._hand_over(events, stream._resume_token, size)
                    if end:
                        self._ready.append((_END,))
                    cond.notify_all()
                events, size = [], 0
                if end:
                    return
        except BaseException as exc:  # handed to the consumer, in order, after the events before it
            with cond:
                self._hand_over(events, stream._resume_token, size)
                self._ready.append((_ERROR, exc))
                cond.notify_all()

    def _hand_over(self, events: list, token: Any, size: int) -> None:
        if events:
            self._ready.append((_EVENTS, events, token, size))
            self._waiting += size

    def close(self) -> None:
        """Stop reading ahead (waits for a ``getMore`` in flight, at most its await time), then close
        the stream."""
        thread = self._thread
        if thread is not None:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            thread.join(timeout=30)
        self._stream.close()


def _reply_rest(stream: Any) -> Any:
    """The events of the last server reply pymongo still holds (a deque; taking them needs no
    request), or None where the driver keeps them elsewhere (then every event goes through
    ``try_next``)."""
    return getattr(getattr(stream, "_cursor", None), "_data", None)


def _taken(stream: Any, last: Any) -> None:
    """Leave the stream as ``ChangeStream.try_next`` leaves it after handing out ``last``, events
    taken from its reply directly. Why not ``try_next`` for each: it inflates every event's top level
    to read its ``_id`` here, in the read-ahead thread, and the run then touches those objects again
    on its own thread, out of the cache; taken raw, an event is decoded once, where it is used.
    ``tests/integration/test_read_ahead.py`` holds this to the driver's own positions."""
    cursor = stream._cursor
    token = last["_id"]
    if not cursor._has_next() and cursor._post_batch_resume_token:
        token = cursor._post_batch_resume_token
    stream._uses_start_after = False
    stream._uses_resume_after = True
    stream._resume_token = token
    stream._start_at_operation_time = None


def _await_of(stream: Any) -> int | None:
    """The ``maxAwaitTimeMS`` of the stream's cursor (None where the driver keeps it elsewhere)."""
    return getattr(getattr(stream, "_cursor", None), "_max_await_time_ms", None)


def set_await(stream: Any, await_ms: int | None) -> None:
    """How long the stream's next ``getMore`` waits for an event on a quiet stream.

    Why the cursor's attribute: pymongo fixes maxAwaitTimeMS when the stream opens, and a snapshot
    chunk waiting for the stream to pass its high watermark would otherwise wait the full 500 ms on
    every read of a quiet stream (the copy then ran at a chunk per second). Where the attribute is
    missing (another pymongo) the stream keeps its own wait."""
    if await_ms is None:
        return
    cursor = getattr(stream, "_cursor", None)
    if cursor is not None and hasattr(cursor, "_max_await_time_ms"):
        cursor._max_await_time_ms = await_ms
