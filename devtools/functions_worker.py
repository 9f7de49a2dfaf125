"""The Python worker's invocation and logging rules, for tests (the host cannot run here).

The worker (azure-functions-python-worker) calls a sync function in a thread of its pool after
setting ``invocation_id`` on one process-wide ``threading.local`` (the object it hands the function
as ``context.thread_local_storage``), and clears it when the call returns. Its logging handler
reads that thread-local of the thread that emits a record: with an id the host files the record
under the invocation (and sends it to Application Insights); without one the record is not the
function's, and the host drops it from the function's logs.

``invoke(fn, ...)`` calls a function the way the worker does; ``WorkerLogHandler`` keeps only the
records the host would keep, and counts the others.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

# One per worker process, like the worker's own.
THREAD_LOCAL_STORAGE = threading.local()


@dataclass(frozen=True)
class Context:
    """The attributes of ``azure.functions.Context`` the app uses."""

    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "drain"
    function_directory: str = "/home/site/wwwroot"
    thread_local_storage: Any = THREAD_LOCAL_STORAGE


def current_invocation_id() -> str | None:
    """The id the worker's logging handler would attach to a record emitted on this thread."""
    return getattr(THREAD_LOCAL_STORAGE, "invocation_id", None)


_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-sync")


def invoke(fn: Callable[..., Any], *args: Any, context: Context | None = None, **kwargs: Any) -> Any:
    """Call ``fn(*args, context=..., **kwargs)`` as the worker calls a sync function: in its own
    thread, with the invocation id set there for the call and cleared afterwards."""
    context = context or Context()

    def run() -> Any:
        context.thread_local_storage.invocation_id = context.invocation_id
        try:
            return fn(*args, context=context, **kwargs)
        finally:
            context.thread_local_storage.invocation_id = None

    return _pool.submit(run).result()


class WorkerLogHandler(logging.Handler):
    """Keeps a record only when the emitting thread carries an invocation id, as the host does;
    ``kept`` holds (invocation id, record), ``dropped`` the others."""

    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.kept: list[tuple[str, logging.LogRecord]] = []
        self.dropped: list[logging.LogRecord] = []
        self._records_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        invocation_id = current_invocation_id()
        with self._records_lock:
            if invocation_id is None:
                self.dropped.append(record)
            else:
                self.kept.append((invocation_id, record))

    def messages(self) -> list[str]:
        return [record.getMessage() for _, record in self.kept]
