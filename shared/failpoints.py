"""Test-only failpoints: kill the process at a named step of a run.

Enabled only by the setting ``DRAIN_TEST_FAILPOINT`` (``name`` or ``name:N``, the N-th time that
step is reached), which the reliability tests set to SIGKILL a real drain process at every step
boundary. Without it every call is a no-op.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Mapping

STEPS = ("after_open", "after_drain", "after_append", "after_flush", "before_commit", "after_commit",
         "after_restart", "during_commit", "before_manifest", "after_manifest", "snapshot_chunk_read",
         "snapshot_rows_added")
# the steps every run with events reaches (``after_restart`` only follows lost history;
# ``during_commit``, an event read while a batch is being committed, depends on timing; the manifest
# steps are those of the after-commit hook, see ``shared.publisher``; the ``snapshot_*`` steps only
# runs that copy collections reach)
RUN_STEPS = STEPS[:6]


class Failpoints:
    def __init__(self, env: Mapping[str, str]) -> None:
        spec = env.get("DRAIN_TEST_FAILPOINT", "")
        name, _, nth = spec.partition(":")
        if name and name not in STEPS:
            raise ValueError(f"DRAIN_TEST_FAILPOINT: unknown step {name!r}; one of {', '.join(STEPS)}")
        self._name = name
        self._left = int(nth or 1)
        self._lock = threading.Lock()  # steps are reached from the lake's and the committer's threads

    def __call__(self, name: str) -> None:
        if name != self._name:
            return
        with self._lock:
            self._left -= 1
            if self._left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
