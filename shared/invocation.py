"""The Functions invocation id, carried into every thread the app starts.

The Python worker sends a log record to the host with the invocation id it finds in the *logging
thread's* ``context.thread_local_storage.invocation_id`` (the worker sets it only on the thread
that calls the function). A record logged from any other thread has none, and the host does not
route it to the function's logs: run reports, dead-letter and lost-history errors and recovery
warnings logged from a pool thread would never reach Application Insights. So:

- ``bind(context)``: in the function, for the length of the invocation (a context manager);
- ``wrap(fn)``: a callable that runs ``fn`` in another thread with the invocation id set there
  (and the caller's context variables), and restores that thread's previous id afterwards;
- ``Executor(...)``: a ``ThreadPoolExecutor`` whose ``submit`` and ``map`` wrap every call;
- ``submit(pool, fn, ...)``: the same for an executor the caller already has;
- ``start_thread(target, ...)``: a started ``threading.Thread`` running a wrapped ``target``.

Outside the host (the ``python -m shared`` command, tests) nothing is bound and all of these
behave exactly like their plain counterparts.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Invocation:
    """What a thread needs to log as part of one invocation: its id and the worker's storage."""

    invocation_id: str
    storage: Any  # the worker's threading.local (context.thread_local_storage)


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("invocation", default=None)


def current() -> Invocation | None:
    """The invocation bound in this thread (or inherited through ``wrap``), if any."""
    return _current.get()


@contextlib.contextmanager
def bind(context: Any) -> Iterator[Invocation | None]:
    """Bind the invocation of a ``func.Context`` (or anything with ``invocation_id`` and
    ``thread_local_storage``) for the ``with`` block; ``None`` binds nothing."""
    if context is None or getattr(context, "thread_local_storage", None) is None:
        yield None
        return
    bound = Invocation(str(context.invocation_id), context.thread_local_storage)
    token = _current.set(bound)
    try:
        yield bound
    finally:
        _current.reset(token)


def wrap(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` for another thread: each call runs in a copy of the context variables seen here, with
    ``thread_local_storage.invocation_id`` set for the thread while it runs."""
    captured = contextvars.copy_context()
    bound = captured.get(_current)

    @functools.wraps(fn)
    def in_invocation(*args: Any, **kwargs: Any) -> T:
        # A copy per call: one Context object cannot be entered by two threads at once.
        return captured.copy().run(_call, bound, fn, args, kwargs)

    return in_invocation


def _call(bound: Invocation | None, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    if bound is None:
        return fn(*args, **kwargs)
    storage = bound.storage
    previous = getattr(storage, "invocation_id", None)
    storage.invocation_id = bound.invocation_id
    try:
        return fn(*args, **kwargs)
    finally:
        # A pooled thread may serve the next invocation: leave it as it was found.
        storage.invocation_id = previous


def submit(pool: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future:
    """``pool.submit(fn, ...)`` with the current invocation carried into the pool's thread."""
    return pool.submit(wrap(fn), *args, **kwargs)


class Executor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that runs every submitted call inside the invocation bound where
    ``submit`` (or ``map``, which submits) was called."""

    def submit(self, fn, /, *args, **kwargs):  # noqa: D401 (same signature as the base class)
        return super().submit(wrap(fn), *args, **kwargs)


def start_thread(target: Callable[..., Any], *, name: str | None = None, daemon: bool | None = None,
                 args: tuple = (), kwargs: dict | None = None) -> threading.Thread:
    """Start a thread running ``target`` inside the current invocation; returns the thread."""
    thread = threading.Thread(target=wrap(target), name=name, daemon=daemon, args=args, kwargs=kwargs or {})
    thread.start()
    return thread
