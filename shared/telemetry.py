"""OpenTelemetry metrics and traces of the drain runs, exported to Application Insights.

``configure(env)`` sets up the Azure Monitor exporters once per process when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, and returns the process's ``Telemetry``; without
the setting it does nothing and returns None. ``Telemetry.record_run`` turns one run report into
metrics and one span, after the run: the drain itself never talks to OpenTelemetry.

Metrics (meter ``mongo_adls_bronze``, attribute ``pipeline`` on each):

| name | kind | unit | from the run report |
| --- | --- | --- | --- |
| ``drain.runs`` | counter | {run} | one per run, attribute ``outcome`` (caught_up, budget, invalidated, skipped, failed) |
| ``drain.failures`` | counter | {run} | failed runs, attribute ``kind`` (transient, terminal) |
| ``drain.events`` | counter | {event} | ``events`` |
| ``drain.bytes`` | counter | By | ``bytes`` |
| ``drain.files`` | counter | {file} | ``files`` (file writes: one per touched file and commit) |
| ``drain.commits`` | counter | {commit} | ``commits`` |
| ``drain.run.duration`` | histogram | s | ``duration_seconds`` |
| ``drain.lag`` | gauge | s | ``lag_seconds`` (runs that wrote or caught up) |
| ``drain.position.age`` | observable gauge | s | seconds since this process last saw the position saved |

Logs are left to the Functions host, which already sends the worker's log lines (the run report
among them) to Application Insights ``traces``; exporting them here too would duplicate each line.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Callable, Mapping

from opentelemetry import metrics, trace

log = logging.getLogger(__name__)

METER_NAME = "mongo_adls_bronze"
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"

_lock = threading.Lock()
_configured = False
_telemetry: "Telemetry | None" = None


class Telemetry:
    """Instruments on the given (or the global) providers; thread-safe (pipelines run in threads)."""

    def __init__(self, meter_provider=None, tracer_provider=None, clock: Callable[[], float] = time.time) -> None:
        meter = metrics.get_meter(METER_NAME, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(METER_NAME, tracer_provider=tracer_provider)
        self._clock = clock
        self.runs = meter.create_counter("drain.runs", unit="{run}", description="Drain runs, by outcome")
        self.failures = meter.create_counter("drain.failures", unit="{run}", description="Failed runs, by error kind")
        self.events = meter.create_counter("drain.events", unit="{event}", description="Change events written")
        self.bytes = meter.create_counter("drain.bytes", unit="By", description="Bytes of JSON Lines written")
        self.files = meter.create_counter("drain.files", unit="{file}", description="File writes (append and flush)")
        self.commits = meter.create_counter("drain.commits", unit="{commit}", description="Positions saved")
        self.duration = meter.create_histogram("drain.run.duration", unit="s", description="Run duration")
        self.lag = meter.create_gauge("drain.lag", unit="s",
                                      description="Lag of the last event written behind the end of the run")
        self._saved_at: dict[str, float] = {}
        self._saved_lock = threading.Lock()
        meter.create_observable_gauge("drain.position.age", callbacks=[self._observe_position_age], unit="s",
                                      description="Seconds since the position was last saved")

    def record_run(self, settings, report) -> None:
        """Metrics and a span for one finished run (``settings`` unused: the report names its pipeline)."""
        attrs = {"pipeline": report.pipeline}
        self.runs.add(1, {**attrs, "outcome": report.outcome})
        if report.outcome == "failed":
            self.failures.add(1, {**attrs, "kind": (report.error or {}).get("kind", "transient")})
        self.events.add(report.events, attrs)
        self.bytes.add(report.bytes, attrs)
        self.files.add(report.files, attrs)
        self.commits.add(report.commits, attrs)
        self.duration.record(report.duration_seconds, attrs)
        if report.lag_seconds is not None:
            self.lag.set(report.lag_seconds, attrs)
        if report.outcome not in ("failed", "skipped") and report.commits:
            with self._saved_lock:
                self._saved_at[report.pipeline] = self._clock()  # the last commit ends the run
        self._span(report)

    def _span(self, report) -> None:
        start = _epoch_ns(report.started_at)
        end = start + int(report.duration_seconds * 1e9) if start is not None else None
        span = self._tracer.start_span(f"drain {report.pipeline}", start_time=start, attributes={
            "pipeline": report.pipeline, "run_id": report.run_id, "outcome": report.outcome,
            "events": report.events, "bytes": report.bytes, "files": report.files, "commits": report.commits,
            **({"lag_seconds": report.lag_seconds} if report.lag_seconds is not None else {}),
            **({"error.kind": report.error.get("kind", "")} if report.error else {}),
        })
        if report.outcome == "failed":
            span.set_status(trace.Status(trace.StatusCode.ERROR, (report.error or {}).get("message", "")[:500]))
        span.end(end_time=end)

    def _observe_position_age(self, options):
        now = self._clock()
        with self._saved_lock:
            saved = dict(self._saved_at)
        return [metrics.Observation(round(now - at, 3), {"pipeline": name}) for name, at in saved.items()]


def configure(env: Mapping[str, str]) -> Telemetry | None:
    """Once per process: export to Application Insights when the connection string is set.

    Returns the process's ``Telemetry`` (None without the setting, or when the exporter could not be
    set up: telemetry never stops a drain)."""
    global _configured, _telemetry
    connection_string = (env.get(CONNECTION_SETTING) or "").strip()
    if not connection_string:
        return None
    with _lock:
        if not _configured:
            _configured = True
            try:
                from azure.monitor.opentelemetry import configure_azure_monitor

                configure_azure_monitor(connection_string=connection_string, disable_logging=True,
                                        enable_live_metrics=False)
                _telemetry = Telemetry()
            except Exception as exc:  # a malformed connection string, a missing package
                log.warning("telemetry not configured (%s); runs go on without metrics", exc.__class__.__name__)
                _telemetry = None
        return _telemetry


def _epoch_ns(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return None
