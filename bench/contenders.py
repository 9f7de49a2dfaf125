"""The contenders, each run in its own process so its peak RSS is its own:

    python -m bench.contenders raw_bson|raw|app|seed|encoder CONFIG.json   -> one JSON object on stdout

CONFIG holds the stack's settings (``env``), the recorded start position (``start_token``) and the
backlog size. Timings cover the drain only (clients connected, imports done beforehand); ``cpu_seconds``
is the process's CPU time (every thread) over the same span.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import time
import uuid

from azure.core.pipeline.transport import RequestsTransport

from devtools.adls_emulator.control import EmulatorControl

# The raw drain reads as shared.source does.
MAX_AWAIT_MS = 500
WATCH_BATCH_SIZE = 2000


class CountingTransport(RequestsTransport):
    """An HTTP transport that counts the requests it sends (retries included)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.requests = 0

    def send(self, request, **kwargs):
        self.requests += 1
        return super().send(request, **kwargs)


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM (``ru_maxrss`` would also carry the launching process's peak
    across fork and exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def table_client(conn: str, table: str) -> tuple:
    """A Table client on ``conn`` whose requests are counted (same retry options as the app's)."""
    from azure.data.tables import TableServiceClient

    transport = CountingTransport()
    service = TableServiceClient.from_connection_string(
        conn, transport=transport, retry_total=5, retry_backoff_factor=0.5, retry_backoff_max=8,
        connection_timeout=10, read_timeout=60)
    return service.get_table_client(table), transport


# -- raw drains ---------------------------------------------------------------------------------
def run_raw(config: dict, document_class=dict) -> dict:
    """pymongo ``watch()`` alone: every event decoded to a dict, nothing written."""
    import pymongo

    from shared.source import Position

    settings = app_settings(config, "raw")
    client = pymongo.MongoClient(config["env"]["MONGO_URI"], document_class=document_class)
    options = Position("resume_after", config["start_token"]).watch_options()
    # the same events as the app asks for: its defaults (post-images by lookup, pre-images when
    # available) and its batch size
    options.update(full_document=settings.full_document, batch_size=WATCH_BATCH_SIZE,
                   full_document_before_change=settings.full_document_before_change)
    client.admin.command("ping")
    baseline = current_rss_mib()
    events = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    with client.watch(max_await_time_ms=MAX_AWAIT_MS, **options) as stream:
        while stream.try_next() is not None:
            events += 1
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    client.close()
    return {"events": events, "seconds": seconds, "cpu_seconds": cpu_seconds, "baseline_rss_mib": baseline}


def run_raw_bson(config: dict) -> dict:
    """pymongo ``watch()`` over ``RawBSONDocument``: nothing decoded, nothing written; the most a
    change stream gives a Python client, the ceiling for any app that reads it."""
    from bson.raw_bson import RawBSONDocument

    return run_raw(config, document_class=RawBSONDocument)


# -- this app -----------------------------------------------------------------------------------
def app_settings(config: dict, name: str):
    from shared.settings import Settings

    env = dict(config["env"])
    env.update({
        "PIPELINE_NAME": f"bench-{name}",
        "CHECKPOINT_TABLE": f"bench{name}",
        "ADLS_FILESYSTEM": f"bench-{name}",
        "DRAIN_BUDGET_SECONDS": "540",
        "JSON_MODE": config.get("json_mode", "relaxed"),
        "FILE_LAYOUT": config.get("file_layout", "rolling"),
    })
    if config.get("max_buffer_bytes"):
        env["MAX_BUFFER_BYTES"] = str(config["max_buffer_bytes"])
    env.pop("AzureWebJobsStorage", None)
    # A benchmark drains its whole backlog in one run, past the budget a deployment may set.
    return dataclasses.replace(Settings.from_env(env), drain_budget_seconds=3600.0)


def seed_checkpoint(settings, token: str) -> None:
    """Store the recorded position as this pipeline's checkpoint, as a previous run would have left it.

    The run then resumes right after it, as in production (``resume_after``); this uses the
    checkpoint store's own API, with a client of its own (not counted).
    """
    from shared.checkpoint import CheckpointStore
    from shared.source import Position

    store = CheckpointStore(settings)
    state = store.load()
    checkpoint = store.acquire(state, "bench-seed", time.time(), 60)
    checkpoint.position = Position("resume_after", token)
    store.commit(checkpoint, [], release=True)


def run_app(config: dict) -> dict:
    """``shared.drain.run_drain`` over the whole deployment, from the recorded position."""
    from azure.storage.filedatalake import DataLakeServiceClient

    from shared.checkpoint import CheckpointStore
    from shared.drain import run_drain
    from shared.lake import Lake

    name = uuid.uuid4().hex[:10]
    settings = app_settings(config, name)
    seed_checkpoint(settings, config["start_token"])
    # the file system exists in production (the deployment creates it): create it beforehand
    service = DataLakeServiceClient(settings.adls_account_url, credential={
        "account_name": "devstoreaccount1", "account_key": str(settings.adls_shared_key)})
    service.create_file_system(settings.adls_filesystem)
    table, transport = table_client(str(settings.checkpoint_connection_string), settings.checkpoint_table)
    store = CheckpointStore(settings, table=table)
    lake = Lake(settings)
    control = EmulatorControl(settings.adls_account_url)
    control.reset_stats()
    baseline = current_rss_mib()
    profile = os.environ.get("BENCH_PROFILE")  # a file: cProfile of the reading thread, for pstats
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    threads = ThreadCpu()
    started, cpu_started = time.perf_counter(), time.process_time()
    report = run_drain(settings, env={}, lake=lake, store=store)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    threads.stop()
    if profile:
        profiler.disable()
        profiler.dump_stats(profile)
    stats = control.stats()
    if report.outcome != "caught_up":
        raise RuntimeError(f"the app's drain ended {report.outcome}: {report.error}")
    return {
        "events": report.events, "seconds": seconds, "cpu_seconds": cpu_seconds, "bytes": report.bytes,
        "files": report.files,
        "partitions": report.partitions, "commits": report.commits, "storage": stats,
        "table_requests": transport.requests, "table_requests_by_store": report.table_requests,
        "baseline_rss_mib": baseline, "max_buffer_bytes": settings.max_buffer_bytes,
        "drain_seconds_in_report": report.duration_seconds, "cpu_seconds_by_thread": threads.seconds(),
    }


class ThreadCpu:
    """CPU seconds per thread of this process over a span, read from ``/proc/self/task`` every 20 ms
    (threads end before the span does), by Python thread name (numbers of pooled threads dropped)."""

    def __init__(self) -> None:
        import threading

        self._ticks = os.sysconf("SC_CLK_TCK")
        self._start = self._sample()
        self._last = dict(self._start)
        self._names: dict[int, str] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-thread-cpu", daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, int]:
        out = {}
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                out[int(task)] = int(fields[11]) + int(fields[12])  # utime + stime
            except (OSError, IndexError, ValueError):
                pass
        return out

    def _run(self) -> None:
        import threading

        while not self._done.wait(0.02):
            for thread in threading.enumerate():
                if thread.native_id is not None:
                    self._names[thread.native_id] = thread.name.split("_")[0].rstrip("-0123456789") or "thread"
            self._last.update(self._sample())

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._last.update(self._sample())

    def seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for tid, ticks in self._last.items():
            name = self._names.get(tid, "other")
            if name == "bench-thread-cpu":
                continue
            out[name] = out.get(name, 0.0) + (ticks - self._start.get(tid, 0)) / self._ticks
        return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v}


# -- the seed's approach ------------------------------------------------------------------------
def run_seed(config: dict) -> dict:
    from bench.seed import SeedWriter

    name = uuid.uuid4().hex[:10]
    env = config["env"]
    table, transport = table_client(env["CHECKPOINT_CONNECTION_STRING"], f"benchseed{name}")
    writer = SeedWriter(env["ADLS_ACCOUNT_URL"], env["ADLS_SHARED_KEY"], f"seed-{name}", table)
    control = EmulatorControl(env["ADLS_ACCOUNT_URL"])
    control.reset_stats()
    baseline = current_rss_mib()
    started = time.perf_counter()
    result = writer.run(env["MONGO_URI"], config["start_token"], config["seed_events"])
    seconds = time.perf_counter() - started
    return {**result, "seconds": seconds, "storage": control.stats(), "table_requests": transport.requests,
            "baseline_rss_mib": baseline}


# -- encoder micro-benchmark --------------------------------------------------------------------
def run_encoder(config: dict) -> dict:
    from bench.encoder import compare

    return compare(config["env"]["MONGO_URI"], config["start_token"], config["encoder_events"])


def run_app_per_event(config: dict) -> dict:
    """The app with ``FILE_LAYOUT=per_event``: one file per event."""
    return run_app({**config, "file_layout": "per_event"})


def run_app_serial(config: dict) -> dict:
    """The app without the change stream's read-ahead (the serial reading it replaced): what the
    read-ahead gains, measured beside it. Not a setting of the app."""
    from shared import source

    source.ReadAhead = lambda stream, limit: stream
    return run_app(config)


RUNNERS = {"raw_bson": run_raw_bson, "raw": run_raw, "app": run_app, "app_serial": run_app_serial,
           "app_per_event": run_app_per_event,
           "seed": run_seed, "encoder": run_encoder}


def main(argv: list[str]) -> int:
    name, path = argv
    with open(path) as f:
        config = json.load(f)
    result = RUNNERS[name](config)
    result["peak_rss_mib"] = peak_rss_mib()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
