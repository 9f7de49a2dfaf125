"""Telemetry: metrics and spans from the run reports, read in memory (no exporter, no network)."""

from __future__ import annotations

import json
import logging

import pytest
from azure.functions.timer import TimerRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import function_app
from devtools.functions_worker import invoke
from shared import telemetry
from shared.drain import RunReport
from shared.telemetry import Telemetry

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://127.0.0.1:9/"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def memory():
    """A Telemetry on in-memory providers: (telemetry, metric reader, span exporter, clock)."""
    reader, spans, clock = InMemoryMetricReader(), InMemorySpanExporter(), Clock(1_000_000.0)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(meter_provider, tracer_provider, clock=clock), reader, spans, clock
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture
def fresh_process(monkeypatch):
    """telemetry.configure as in a new process; Azure Monitor replaced by a recorder (no exporter)."""
    import azure.monitor.opentelemetry as azure_monitor

    calls = []
    monkeypatch.setattr(telemetry, "_configured", False)
    monkeypatch.setattr(telemetry, "_telemetry", None)
    monkeypatch.setattr(azure_monitor, "configure_azure_monitor", lambda **kwargs: calls.append(kwargs))
    return calls


def points(reader) -> dict:
    """{(metric name, attributes as sorted tuple): data point}."""
    found = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    found[(metric.name, tuple(sorted(point.attributes.items())))] = point
    return found


def test_without_the_connection_string_telemetry_is_off(fresh_process):
    assert telemetry.configure({}) is None
    assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is None
    assert fresh_process == []


def test_azure_monitor_is_configured_once_per_process_without_log_export(fresh_process):
    first = telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
    second = telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
    assert isinstance(first, Telemetry) and second is first
    assert len(fresh_process) == 1
    assert fresh_process[0]["connection_string"] == CONNECTION and fresh_process[0]["disable_logging"] is True


def test_a_broken_exporter_setup_leaves_runs_alone(fresh_process, monkeypatch, caplog):
    import azure.monitor.opentelemetry as azure_monitor

    def broken(**kwargs):
        raise ValueError("bad connection string")

    monkeypatch.setattr(azure_monitor, "configure_azure_monitor", broken)
    with caplog.at_level(logging.WARNING, logger="shared.telemetry"):
        assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": "nonsense"}) is None
    assert "telemetry not configured" in caplog.text


def test_one_report_becomes_metrics_and_a_span(memory):
    recorder, reader, spans, clock = memory
    report = RunReport("p1", "run1", "2026-01-31T00:00:00Z", outcome="caught_up", events=7, bytes=900, files=2,
                       commits=1, lag_seconds=0.0, duration_seconds=1.5)
    recorder.record_run(None, report)
    clock.now += 90
    found = points(reader)
    p1 = (("pipeline", "p1"),)
    assert found[("drain.runs", (("outcome", "caught_up"), ("pipeline", "p1")))].value == 1
    assert [found[(name, p1)].value for name in ("drain.events", "drain.bytes", "drain.files", "drain.commits")] \
        == [7, 900, 2, 1]
    assert found[("drain.run.duration", p1)].count == 1 and found[("drain.run.duration", p1)].sum == 1.5
    assert found[("drain.lag", p1)].value == 0.0
    assert found[("drain.position.age", p1)].value == 90
    assert not any(name == "drain.failures" for name, _ in found)
    (span,) = spans.get_finished_spans()
    assert span.name == "drain p1" and span.attributes["events"] == 7 and span.attributes["outcome"] == "caught_up"
    assert (span.end_time - span.start_time) == 1_500_000_000


def test_failures_are_counted_by_kind_and_do_not_move_the_position_age(memory):
    recorder, reader, spans, clock = memory
    recorder.record_run(None, RunReport("p1", "r1", "2026-01-31T00:00:00Z", outcome="budget", commits=2, lag_seconds=30.0))
    clock.now += 60
    for kind in ("transient", "terminal", "terminal"):
        recorder.record_run(None, RunReport("p1", "r", "2026-01-31T00:01:00Z", error={"kind": kind, "message": "x"}))
    recorder.record_run(None, RunReport("p1", "r", "2026-01-31T00:01:00Z", outcome="skipped",
                                        error={"kind": "lease_held", "message": "held"}))
    clock.now += 60
    found = points(reader)
    assert found[("drain.failures", (("kind", "terminal"), ("pipeline", "p1")))].value == 2
    assert found[("drain.failures", (("kind", "transient"), ("pipeline", "p1")))].value == 1
    assert found[("drain.runs", (("outcome", "failed"), ("pipeline", "p1")))].value == 3
    assert found[("drain.runs", (("outcome", "skipped"), ("pipeline", "p1")))].value == 1
    assert found[("drain.lag", (("pipeline", "p1"),))].value == 30.0  # failed runs report no lag
    assert found[("drain.position.age", (("pipeline", "p1"),))].value == 120  # saved by the first run only
    statuses = [s.status.status_code for s in spans.get_finished_spans()]
    assert statuses.count(StatusCode.ERROR) == 3


def test_the_timer_records_every_pipeline(memory, monkeypatch, stack_env, fresh_filesystem, fresh_table_name,
                                          fresh_db_name, table_service, mongo_client, app_env):
    recorder, reader, spans, clock = memory
    monkeypatch.setattr(telemetry, "_configured", True)  # this process's telemetry: the in-memory one
    monkeypatch.setattr(telemetry, "_telemetry", recorder)
    table_service.create_table(fresh_table_name).create_entity(
        {"PartitionKey": "broken", "RowKey": "checkpoint", "schema": 1, "seq": "corrupt"})
    entries = [{"PIPELINE_NAME": "good", "MONGO_DB": fresh_db_name, "MONGO_COLL": "orders"},
               {"PIPELINE_NAME": "broken", "MONGO_DB": fresh_db_name, "MONGO_COLL": "audit"}]
    app_env({**stack_env, "ADLS_FILESYSTEM": fresh_filesystem, "CHECKPOINT_TABLE": fresh_table_name,
             "DRAIN_BUDGET_SECONDS": "20", "PIPELINES": json.dumps(entries),
             "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
    with pytest.raises(RuntimeError):
        invoke(function_app.drain, TimerRequest(past_due=False))
    mongo_client[fresh_db_name].orders.insert_many([{"i": i, "pad": "x" * 100} for i in range(3)])
    with pytest.raises(RuntimeError):
        invoke(function_app.drain, TimerRequest(past_due=False))

    found = points(reader)
    good, broken = (("pipeline", "good"),), (("pipeline", "broken"),)
    assert found[("drain.runs", (("outcome", "caught_up"),) + good)].value == 2
    assert found[("drain.events", good)].value == 3 and found[("drain.bytes", good)].value > 300
    assert found[("drain.files", good)].value == 1 and found[("drain.commits", good)].value == 2
    assert found[("drain.run.duration", good)].count == 2 and found[("drain.lag", good)].value == 0.0
    assert found[("drain.position.age", good)].value == 0
    assert found[("drain.failures", (("kind", "terminal"),) + broken)].value == 2
    assert found[("drain.events", broken)].value == 0 and ("drain.position.age", broken) not in found
    assert sorted(s.name for s in spans.get_finished_spans()) == ["drain broken"] * 2 + ["drain good"] * 2
