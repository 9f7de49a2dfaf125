"""Pipeline status: position age, last event time and lag, last run, last error. Read-only.

``status_report(env)`` is what both the ``status`` HTTP function and ``python -m shared status``
show: every configured pipeline (see ``shared.pipelines``), and an HTTP status code:

* 200: every pipeline is healthy;
* 503: at least one is not: no position saved yet (it never ran), the position was saved longer
  ago than its ``STATUS_MAX_POSITION_AGE_SECONDS``, its last run failed, or its checkpoint cannot
  be read;
* 500: the settings are invalid (the message names each setting, never a value of a secret).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Mapping

from .checkpoint import CheckpointStore
from .errors import DrainError, SettingsError, kind_of, redact
from .pipelines import load_pipelines
from .settings import Settings


def pipeline_status(settings: Settings, store: CheckpointStore | None = None, now: float | None = None) -> dict:
    """What ``python -m shared status`` prints and the ``status`` function returns.

    ``healthy`` is false when there is no position yet, or it was saved longer ago than
    ``STATUS_MAX_POSITION_AGE_SECONDS``, or the last run failed.
    """
    now = time.time() if now is None else now
    store = store or CheckpointStore(settings)
    state = store.load()
    checkpoint = state.checkpoint
    status: dict = {"pipeline": settings.pipeline_name, "scope": settings.scope.describe(), "checkpoint": None}
    if checkpoint is None:
        status.update(healthy=False, reason="no checkpoint yet: the pipeline has not run")
        return status
    age = None if checkpoint.committed_at is None else round(now - checkpoint.committed_at.timestamp(), 3)
    last_event = checkpoint.last_cluster_time
    status["checkpoint"] = {
        "position_saved_at": checkpoint.committed_at.isoformat() if checkpoint.committed_at else None,
        "position_age_seconds": age,
        "position_kind": checkpoint.position.kind if checkpoint.position else None,
        "seq": checkpoint.seq,
        "generation": checkpoint.generation,
        "last_event_cluster_time": _iso(last_event),
        "lease_held_by": checkpoint.lease_owner if checkpoint.lease_until > now else None,
        "partitions": len(state.files),
        # a batch being written now, or left by a run that failed writing it (the next run reads it back)
        "open_intent": None if checkpoint.intent is None else {
            "first_seq": checkpoint.intent.first_seq, "last_seq": checkpoint.intent.last_seq,
            "files": len(checkpoint.intent.files)},
        "origin": checkpoint.origin,
    }
    last_run = checkpoint.last_run or {}
    status["lag_seconds"] = last_run.get("lag_seconds")
    status["last_run"] = last_run or None
    status["last_error"] = checkpoint.last_error
    progress = checkpoint.snapshot
    if progress is not None and (progress.copies or progress.requests or progress.finished):
        from .snapshot import figures

        copies = [figures(c, progress.oplog_window, settings.snapshot_chunk_docs)
                  for c in progress.copies + progress.finished[-5:]]
        status["snapshot"] = {"copying": [c for c in copies if not c["finished"]],
                              "finished": [c for c in copies if c["finished"]], "requests": progress.requests,
                              "oplog_window_seconds": progress.oplog_window,
                              "warnings": [c["warning"] for c in copies if c.get("warning")]}
    reasons = []
    if age is None:
        reasons.append("no position saved yet")
    elif age > settings.status_max_position_age_seconds:
        reasons.append(f"position saved {age:.0f} s ago (limit {settings.status_max_position_age_seconds} s)")
    if last_run.get("outcome") == "failed":
        reasons.append(f"last run failed ({(last_run.get('error') or {}).get('kind')})")
    status["healthy"] = not reasons
    status["reason"] = "; ".join(reasons) or "ok"
    return status


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def status_report(env: Mapping[str, str], now: float | None = None) -> tuple[int, dict]:
    """(HTTP status, body) for every configured pipeline; the body never holds a secret."""
    now = time.time() if now is None else now
    checked_at = _iso(now)
    try:
        pipelines = load_pipelines(env)
    except SettingsError as exc:
        return 500, {"healthy": False, "checked_at": checked_at, "reason": "invalid settings",
                     "error": {"kind": "terminal", "message": str(exc)}, "pipelines": []}
    statuses = [_one_status(settings, now) for settings in pipelines]
    unhealthy = [s["pipeline"] for s in statuses if not s["healthy"]]
    body = {
        "healthy": not unhealthy,
        "checked_at": checked_at,
        "reason": "ok" if not unhealthy else f"unhealthy: {', '.join(unhealthy)}",
        "pipelines": statuses,
    }
    return (503 if unhealthy else 200), body


def _one_status(settings: Settings, now: float) -> dict:
    try:
        return pipeline_status(settings, now=now)
    except DrainError as exc:  # a corrupt or foreign checkpoint row, the table unreachable ...
        message = redact(str(exc), settings.secrets)[:2000]
        return {"pipeline": settings.pipeline_name, "scope": settings.scope.describe(), "checkpoint": None,
                "healthy": False, "reason": f"cannot read the checkpoint ({kind_of(exc)})",
                "error": {"kind": kind_of(exc), "message": message}}
