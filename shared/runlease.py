"""The pipeline's run lease while a run works: short, renewed from a thread, and a deadline for writes.

A run takes the lease on the checkpoint row (``CheckpointStore.acquire``) for ``RUN_LEASE_SECONDS``
and a thread renews it every ``RENEW_EVERY_SECONDS`` (``If-Match`` on the row). So a run that dies
blocks its pipeline for at most ``RUN_LEASE_SECONDS`` (less than one tick of the default schedule),
and a run that works for longer keeps it. A run that cannot renew stops writing: every lake request
must end ``SAFETY_SECONDS`` before the lease as last renewed (``deadline``), and a refused renewal
(another run took the lease) marks it lost at once.

Correctness does not rest on clocks: the lease only keeps two runs from doing the same work.
Appends and flushes carry a file lease that a later run breaks before it reads a file back, and
every write of the checkpoint row carries ``If-Match``, so a run that lost its lease can neither
land a write after a later run has looked, nor move the position.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from . import invocation
from .checkpoint import CheckpointStore
from .errors import DrainError, LeaseLostError

log = logging.getLogger(__name__)

RUN_LEASE_SECONDS = 30.0
RENEW_EVERY_SECONDS = 10.0
SAFETY_SECONDS = 5.0


class RunLease:
    def __init__(self, store: CheckpointStore, clock: Callable[[], float] = time.time,
                 seconds: float = RUN_LEASE_SECONDS, every: float = RENEW_EVERY_SECONDS) -> None:
        self._store, self._clock = store, clock
        self._seconds, self._every = seconds, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # why the lease is lost, once it is

    @property
    def until(self) -> float:
        return self._store.lease_until

    def deadline(self) -> float:
        """When this run's requests must have ended."""
        return self.until - SAFETY_SECONDS if self.lost is None else 0.0

    def check(self, doing: str) -> None:
        """Raise ``LeaseLostError`` unless the lease still holds long enough to start ``doing``."""
        if self.lost is None and self._clock() >= self.deadline():
            self.lost = "its lease ran out (it could not be renewed in time)"
        if self.lost is not None:
            raise LeaseLostError(f"pipeline {self._store._pipeline!r}: {self.lost}; this run stops before "
                                 f"{doing} (the next run continues from the checkpoint)")

    def start(self) -> None:
        # Why invocation.start_thread: its warnings must reach the host's log with the invocation id
        self._thread = invocation.start_thread(self._loop, name="run-lease", daemon=True)

    def stop(self) -> None:
        """Stop renewing (before the final commit, which releases the lease)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def renew_now(self) -> None:
        self._store.renew(self._clock() + self._seconds)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.renew_now()
            except LeaseLostError as exc:
                self.lost = str(exc)
                log.warning("%s", exc)
                return
            except DrainError as exc:  # transient: try again; the deadline stops the writes meanwhile
                log.warning("pipeline %s: renewing the run lease failed (%s); retrying", self._store._pipeline, exc)
