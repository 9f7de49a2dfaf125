"""``python -m bench`` (``make bench``): throughput, storage requests and memory of the drain.

One run, on a private local stack (free ports, a temporary directory, stopped at the end):

for each document mix (``--mixes``: ``default`` and ``rich``, see ``bench/data.py``):

1. preload a backlog of change events (``--events``, default 100,000, times ``--scale``) into
   SecantusDB after a recorded resume token;
2. drain it with pymongo ``watch()`` over ``RawBSONDocument`` (decodes nothing: the stream's own
   limit), with a plain ``watch()`` that decodes every event, with this app's ``run_drain`` into
   the ADLS emulator (``FILE_LAYOUT=rolling``; and once with ``per_event``, one file per event,
   unless ``BENCH_PER_EVENT=0``), and (default mix) with the seed's one-append-per-event script on
   a sample;
   each in its own process, ``--repeat`` times alternately (the best run is shown: the machine may
   be shared), with its wall time, process CPU time and peak RSS;
3. compare the app's encoder with ``bson.json_util`` on the same events, both modes;

and the snapshot row (``bench/snapshot.py``, ``--snapshot-docs``, 0 to skip): a collection of ~1 KB
documents copied by ``SNAPSHOT=initial`` next to a plain ``find()`` over it, then with writes going on;
then print a table per mix and write ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=int(env.get("BENCH_EVENTS") or 100_000),
                        help="backlog size before scaling (env BENCH_EVENTS; default 100000)")
    parser.add_argument("--scale", type=float, default=float(env.get("BENCH_SCALE") or 1),
                        help="multiply the backlog (env BENCH_SCALE; e.g. 5 for the memory check)")
    parser.add_argument("--seed-events", type=int, default=int(env.get("BENCH_SEED_EVENTS") or 2000),
                        help="events the seed's per-event script drains (env BENCH_SEED_EVENTS; default 2000)")
    parser.add_argument("--encoder-events", type=int, default=20_000, help="events for the encoder micro-benchmark")
    parser.add_argument("--repeat", type=int, default=int(env.get("BENCH_REPEAT") or 2),
                        help="runs of the raw drain and the app, alternately; the best is shown (default 2)")
    parser.add_argument("--mixes", default=env.get("BENCH_MIXES") or "default,rich",
                        help="document mixes, comma-separated (env BENCH_MIXES; default 'default,rich')")
    parser.add_argument("--per-event", type=int, default=int(env.get("BENCH_PER_EVENT") or 1),
                        help="also drain once with FILE_LAYOUT=per_event (env BENCH_PER_EVENT; 0: skip; default 1)")
    parser.add_argument("--snapshot-docs", type=int, default=int(env.get("BENCH_SNAPSHOT_DOCS") or 1_000_000),
                        help="documents of the snapshot row's collection (env BENCH_SNAPSHOT_DOCS; 0 skips it)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON results go")
    return parser.parse_args(argv)


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import bson
    import orjson
    import pymongo

    return {"nproc": os.cpu_count(), "cpu": model or platform.processor(), "python": platform.python_version(),
            "platform": platform.platform(), "pymongo": pymongo.version, "bson_c": bson.has_c(),
            "orjson": orjson.__version__, "loadavg": os.getloadavg(),
            "placement": None if PLACEMENT is None else {"mongo": sorted(PLACEMENT[0]), "rest": sorted(PLACEMENT[1])}}


def placement() -> tuple[set[int], set[int]] | None:
    """Where the processes run: the MongoDB server on a CPU of its own, the contenders, Azurite and
    the emulator on the others. Why: on Azure the server runs on other machines, so what a contender
    does must not slow the server down (on a shared core the app's writing and the emulator would
    be charged to the stream). None with fewer than 2 CPUs, or with ``BENCH_PIN=0``."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2 or os.environ.get("BENCH_PIN", "1") == "0":
        return None
    return {cpus[0]}, set(cpus[1:])


def pin(pid: int, cpus: set[int]) -> None:
    """``pid``, each of its threads and its child processes, on ``cpus``."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return  # ended meanwhile
    for task in tasks:
        try:
            os.sched_setaffinity(int(task.name), cpus)
            children = (task / "children").read_text().split()
        except (ProcessLookupError, FileNotFoundError):
            continue  # a thread (or process) that ended meanwhile
        for child in children:
            pin(int(child), cpus)


PLACEMENT = placement()


def start_stack(base: Path, oplog_entries: int, log):
    from devtools.stack import LocalStack, Ports, StackError

    # SecantusDB keeps 100,000 oplog entries by default: the backlog must stay in the oplog. The
    # stack passes --config base/secantusd.toml and only creates the file when it is missing.
    base.mkdir(parents=True, exist_ok=True)
    (base / "secantusd.toml").write_text(f"[oplog]\nmax_entries = {oplog_entries}\nretention_seconds = 86400\n")
    last = None
    for _ in range(3):  # a free port can be taken between choosing and binding it
        stack = LocalStack(base, Ports.free(), die_with_parent=True, log=log)
        try:
            stack.start()
            if PLACEMENT is not None:
                server, rest = PLACEMENT
                pin(stack.pids()["mongo"], server)
                for name, pid in stack.pids().items():
                    if name != "mongo":
                        pin(pid, rest)
                log(f"placement: the MongoDB server on CPU {sorted(server)}, everything else on CPUs {sorted(rest)}")
            return stack
        except StackError as exc:
            stack.stop()
            last = exc
            if "already in use" not in str(exc):
                raise
    raise last


def run_contender(name: str, config_path: Path) -> dict:
    started = time.monotonic()
    rest = PLACEMENT[1] if PLACEMENT is not None else None
    proc = subprocess.run([sys.executable, "-m", "bench.contenders", name, str(config_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True,
                          preexec_fn=(lambda: os.sched_setaffinity(0, rest)) if rest else None)
    if proc.returncode != 0:
        raise RuntimeError(f"contender {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.monotonic() - started, 2)
    return result


def by_thread(app: dict) -> dict[str, float]:
    """The app's CPU microseconds per event by thread; what no sampled thread holds (threads that
    ended between two samples, mostly the lake's writers, which a commit starts) is "ended"."""
    threads = app.get("cpu_seconds_by_thread", {})
    out = {name: round(sec / app["events"] * 1e6, 1) for name, sec in threads.items()}
    if threads:
        out["ended"] = round((app["cpu_seconds"] - sum(threads.values())) / app["events"] * 1e6, 1)
    return out


def summarize(raw_bson: dict, raw: dict, app: dict, seed: dict | None, enc: dict, per_event: dict | None = None) -> dict:
    def rate(r):
        return r["events"] / r["seconds"]

    def cpu_us(r):
        return r["cpu_seconds"] / r["events"] * 1e6

    app_storage = app["storage"].get("total", 0)
    rows = {
        "raw_bson_drain": {"events": raw_bson["events"], "events_per_s": rate(raw_bson), "mb_per_s": None,
                           "cpu_us_per_event": cpu_us(raw_bson), "storage_requests_per_1000": None,
                           "table_requests": None, "peak_rss_mib": raw_bson["peak_rss_mib"]},
        "raw_drain": {"events": raw["events"], "events_per_s": rate(raw), "mb_per_s": None,
                      "cpu_us_per_event": cpu_us(raw), "storage_requests_per_1000": None, "table_requests": None,
                      "peak_rss_mib": raw["peak_rss_mib"]},
        "app_drain": {"events": app["events"], "events_per_s": rate(app), "mb_per_s": app["bytes"] / app["seconds"] / 1e6,
                      "cpu_us_per_event": cpu_us(app), "storage_requests_per_1000": app_storage / app["events"] * 1000,
                      "table_requests": app["table_requests"], "peak_rss_mib": app["peak_rss_mib"],
                      "cpu_us_per_event_by_thread": by_thread(app)},
    }
    ratios = {
        "app_over_raw": rate(app) / rate(raw),
        "app_over_raw_bson": rate(app) / rate(raw_bson),
        "encoder_relaxed_over_json_util": enc["relaxed"]["ratio"],
        "encoder_canonical_over_json_util": enc["canonical"]["ratio"],
        "encoder_relaxed_over_raw_drain": enc["relaxed"]["app_events_per_s"] / rate(raw),
    }
    if seed is not None:
        seed_storage = seed["storage"].get("total", 0)
        rows["seed_per_event"] = {"events": seed["events"], "events_per_s": rate(seed),
                                  "mb_per_s": seed["bytes"] / seed["seconds"] / 1e6, "cpu_us_per_event": None,
                                  "storage_requests_per_1000": seed_storage / seed["events"] * 1000,
                                  "table_requests": seed["table_requests"], "peak_rss_mib": seed["peak_rss_mib"]}
        ratios["app_over_seed"] = rate(app) / rate(seed)
        ratios["seed_requests_over_app_requests"] = (rows["seed_per_event"]["storage_requests_per_1000"]
                                                     / rows["app_drain"]["storage_requests_per_1000"])
    layouts = {"rolling": {"events_per_s": rate(app), "storage_requests_per_1000": app_storage / app["events"] * 1000,
                           "files_created": app["storage"].get("create_file", 0), "file_writes": app["files"],
                           "table_requests": app["table_requests"]}}
    if per_event is not None:
        per_event_storage = per_event["storage"].get("total", 0)
        rows["app_per_event"] = {"events": per_event["events"], "events_per_s": rate(per_event),
                                 "mb_per_s": per_event["bytes"] / per_event["seconds"] / 1e6,
                                 "cpu_us_per_event": cpu_us(per_event),
                                 "storage_requests_per_1000": per_event_storage / per_event["events"] * 1000,
                                 "table_requests": per_event["table_requests"], "peak_rss_mib": per_event["peak_rss_mib"]}
        layouts["per_event"] = {"events_per_s": rate(per_event),
                                "storage_requests_per_1000": per_event_storage / per_event["events"] * 1000,
                                "files_created": per_event["storage"].get("put_blob", 0),
                                "file_writes": per_event["files"], "table_requests": per_event["table_requests"]}
        ratios["per_event_over_rolling"] = rate(per_event) / rate(app)
    flushes = app["storage"].get("append", 0) + app["storage"].get("flush", 0)
    return {
        "layouts": layouts,
        "rows": rows,
        "ratios": ratios,
        "storage": {
            "app_requests": app["storage"], "app_files_written": app["files"], "app_partitions": app["partitions"],
            "app_commits": app["commits"],
            # each commit with data also writes one manifest (create, append, flush, rename: see
            # shared/publisher.py); the data files' own requests are the rest
            "manifests": app["storage"].get("rename", 0),
            "append_flush_per_file_commit": (flushes - 2 * app["storage"].get("rename", 0)) / max(1, app["files"]),
            "seed_requests": seed["storage"] if seed is not None else None,
        },
        "memory": {"max_buffer_mib": app["max_buffer_bytes"] / 2**20, "app_peak_rss_mib": app["peak_rss_mib"],
                   "app_baseline_rss_mib": app["baseline_rss_mib"],
                   "app_overhead_over_buffer_mib": app["peak_rss_mib"] - app["max_buffer_bytes"] / 2**20},
    }


def table(mix: str, summary: dict, enc: dict, backlog: dict) -> str:
    def num(value, digits=0):
        return "-" if value is None else f"{value:,.{digits}f}"

    rows = summary["rows"]
    names = {"raw_bson_drain": "raw-BSON ceiling: watch() over RawBSONDocument, nothing decoded",
             "raw_drain": "plain watch(): pymongo, decoded to dicts, nothing written",
             "app_drain": "this app: run_drain -> ADLS emulator, committed",
             "app_per_event": "this app, FILE_LAYOUT=per_event: one file per event"}
    if "seed_per_event" in rows:
        names["seed_per_event"] = f"seed script: append+flush+token per event ({rows['seed_per_event']['events']:,} sample)"
    spread = ("20 collections in 2 databases" if mix == "default" else "10 collections of 1 database")
    out = [f"mix {mix!r}: {backlog['events']:,} change events ({backlog['inserts']:,} inserts, {backlog['updates']:,} "
           f"updates, {backlog['deletes']:,} deletes) over {spread}, {backlog['bytes'] / max(1, backlog['inserts']):,.0f} "
           "B of BSON per inserted document",
           "",
           f"| {'contender':<66} | {'events':>8} | {'events/s':>9} | {'CPU us/event':>12} | {'MB/s JSONL':>10} | "
           f"{'storage req/1k ev':>17} | {'Table req/run':>13} | {'peak RSS MiB':>12} |",
           f"|{'-' * 68}|{'-' * 10}|{'-' * 11}|{'-' * 14}|{'-' * 12}|{'-' * 19}|{'-' * 15}|{'-' * 14}|"]
    for key, row in rows.items():
        out.append(f"| {names[key]:<66} | {row['events']:>8,} | {num(row['events_per_s']):>9} | "
                   f"{num(row['cpu_us_per_event'], 1):>12} | {num(row['mb_per_s'], 1):>10} | "
                   f"{num(row['storage_requests_per_1000'], 1):>17} | {num(row['table_requests']):>13} | "
                   f"{num(row['peak_rss_mib'], 1):>12} |")
    r = summary["ratios"]
    s = summary["storage"]
    m = summary["memory"]
    out += [
        "",
        f"app / plain watch():        {r['app_over_raw']:.2f}   (target >= 1.0, floor 0.9)",
        f"app / raw-BSON ceiling:     {r['app_over_raw_bson']:.2f}",
        f"app CPU per event:          {rows['app_drain']['cpu_us_per_event']:.1f} us (process CPU time of the drain / events;"
        " target <= 25 on the default mix)",
        "  by thread:                " + ", ".join(
            f"{name} {us:.1f}" for name, us in rows["app_drain"].get("cpu_us_per_event_by_thread", {}).items()),
    ]
    if "read_ahead" in summary:
        ra = summary["read_ahead"]
        out.append(f"without the read-ahead:     {ra['serial_events_per_s']:,.0f} events/s, "
                   f"{ra['serial_cpu_us_per_event']:.1f} us CPU per event; app / that: {ra['app_over_serial']:.2f}")
    if "app_over_seed" in r:
        out += [f"app / seed script:          {r['app_over_seed']:,.0f}x events/s",
                f"storage requests, seed/app: {r['seed_requests_over_app_requests']:,.0f}x fewer per 1,000 events "
                "(target >= 100)"]
    for name, layout in summary["layouts"].items():
        out.append(f"FILE_LAYOUT={name:<10} {layout['events_per_s']:>9,.0f} events/s, "
                   f"{layout['storage_requests_per_1000']:>8,.1f} storage requests per 1,000 events, "
                   f"{layout['files_created']:,} files created, {layout['table_requests']:,} Table requests")
    out += [
        f"app storage requests:       {s['app_requests']}; {s['app_files_written']} file writes in "
        f"{s['app_commits']} commits over {s['app_partitions']} partitions = "
        f"{s['append_flush_per_file_commit']:.2f} append+flush per data file per commit (target <= 2), "
        f"plus {s['manifests']} manifests (create, append, flush, rename each)",
        f"app memory:                 peak RSS {m['app_peak_rss_mib']:.0f} MiB with MAX_BUFFER_BYTES "
        f"{m['max_buffer_mib']:.0f} MiB (baseline before the drain {m['app_baseline_rss_mib']:.0f} MiB)",
        "",
        f"encoder on {enc['events']:,} backlog events (mean {enc['mean_event_bytes']} B of BSON), "
        "vs bson.decode + json_util.dumps for the same lines:",
    ]
    for mode in ("relaxed", "canonical"):
        e = enc[mode]
        out.append(f"  {mode:<9} app {e['app_events_per_s']:>9,} events/s   json_util {e['json_util_events_per_s']:>7,} "
                   f"events/s   ratio {e['ratio']:.2f} (targets >= 60,000/s and >= 3)   same values: {e['same_values']}")
    for mode in ("relaxed", "canonical"):
        e = enc[mode]
        out.append(f"  {mode:<9} pure-Python paths (no C extension) {e['pure_python_events_per_s']:>7,} events/s, "
                   f"ratio {e['pure_python_ratio']:.2f}")
    out.append(f"  relaxed encoder / plain watch(): {r['encoder_relaxed_over_raw_drain']:.2f}")
    return "\n".join(out)


CONTENDERS = ("raw_bson", "raw", "app", "app_serial")


def bench_mix(mix: str, stack, args, tmp_path: Path, events: int, log) -> dict:
    """Preload one mix after the current position, then drain it with every contender."""
    from bench.data import preload

    log(f"[{mix}] preloading {events:,} change events ...")
    backlog = preload(stack.settings()["MONGO_URI"], events, log=log, mix=mix)
    log(f"[{mix}] preloaded in {backlog.seconds:.1f} s")
    config = {"env": stack.settings(), "start_token": backlog.start_token, "events": backlog.events,
              "seed_events": min(args.seed_events, backlog.events),
              "encoder_events": min(args.encoder_events, backlog.events)}
    config_path = tmp_path / f"config-{mix}.json"
    config_path.write_text(json.dumps(config))
    runs: dict[str, list] = {name: [] for name in CONTENDERS}
    for i in range(max(1, args.repeat)):
        for name in CONTENDERS:
            log(f"[{mix}] run {i + 1}: {name} drain ...")
            result = run_contender(name, config_path)
            log(f"  {result['events']:,} events in {result['seconds']:.2f} s "
                f"({result['events'] / result['seconds']:,.0f}/s), CPU {result['cpu_seconds']:.2f} s, "
                f"peak RSS {result['peak_rss_mib']} MiB")
            if result["events"] != backlog.events:
                raise RuntimeError(f"{name} drained {result['events']} events, expected {backlog.events}")
            runs[name].append(result)
    per_event = None
    if args.per_event:
        log(f"[{mix}] app drain with FILE_LAYOUT=per_event ...")
        per_event = run_contender("app_per_event", config_path)
        log(f"  {per_event['events']:,} events in {per_event['seconds']:.2f} s "
            f"({per_event['events'] / per_event['seconds']:,.0f}/s)")
        if per_event["events"] != backlog.events:
            raise RuntimeError(f"app_per_event drained {per_event['events']} events, expected {backlog.events}")
    seed = None
    if mix == "default" and args.seed_events > 0:
        log(f"[{mix}] seed script on {config['seed_events']:,} events ...")
        seed = run_contender("seed", config_path)
    log(f"[{mix}] encoder micro-benchmark ...")
    enc = run_contender("encoder", config_path)
    best = {name: max(results, key=lambda r: r["events"] / r["seconds"]) for name, results in runs.items()}
    summary = summarize(best["raw_bson"], best["raw"], best["app"], seed, enc, per_event)
    summary["memory"]["app_peak_rss_mib_all_runs"] = max(r["peak_rss_mib"] for r in runs["app"])
    serial = best["app_serial"]
    summary["read_ahead"] = {
        "serial_events_per_s": serial["events"] / serial["seconds"],
        "serial_cpu_us_per_event": serial["cpu_seconds"] / serial["events"] * 1e6,
        "app_over_serial": (best["app"]["events"] / best["app"]["seconds"]) / (serial["events"] / serial["seconds"])}
    backlog_dict = {k: v for k, v in backlog.as_dict().items() if k != "start_token"}
    return {"backlog": backlog_dict, "summary": summary, "encoder": enc, "runs": runs, "seed": seed,
            "per_event": per_event,
            "table": table(mix, summary, enc, backlog_dict)}


def bench_snapshot(stack, args, tmp_path: Path, log) -> dict:
    """The snapshot row: a plain find() and the copy of the same collection, best of ``--repeat``."""
    config_path = tmp_path / "config-snapshot.json"
    config_path.write_text(json.dumps({"env": stack.settings(), "docs": args.snapshot_docs}))

    def step(name: str) -> dict:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "bench.snapshot", name, str(config_path)], cwd=REPO_ROOT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"snapshot step {name} failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["process_seconds"] = round(time.monotonic() - started, 2)
        log(f"  {name}: {result['docs']:,} documents in {result['seconds']:.2f} s "
            f"({result['docs'] / result['seconds']:,.0f}/s), peak RSS {result['peak_rss_mib']} MiB")
        return result

    log(f"[snapshot] preloading {args.snapshot_docs:,} documents of ~1 KB ...")
    step("preload")
    runs: dict[str, list] = {"find": [], "find_sorted": [], "copy": [], "copy_writes": []}
    for _ in range(max(1, args.repeat)):
        for name in runs:
            runs[name].append(step(name))
    best = {n: max(r, key=lambda x: x["docs"] / x["seconds"]) for n, r in runs.items()}
    rates = {n: r["docs"] / r["seconds"] for n, r in best.items()}
    lines = [f"snapshot: {args.snapshot_docs:,} documents of ~1 KB in one collection",
             f"  plain find() (decoded)            {rates['find']:>10,.0f} docs/s",
             f"  find() by the _id index, raw BSON {rates['find_sorted']:>10,.0f} docs/s   "
             f"{rates['find_sorted'] / rates['find']:.2f}x find()",
             f"  SNAPSHOT=initial copy             {rates['copy']:>10,.0f} docs/s   "
             f"{rates['copy'] / rates['find']:.2f}x find()   {rates['copy'] / rates['find_sorted']:.2f}x sorted   "
             f"CPU {best['copy']['cpu_seconds'] / best['copy']['docs'] * 1e6:.1f} us/doc   "
             f"peak RSS {best['copy']['peak_rss_mib']} MiB",
             f"  copy with writes going on         {rates['copy_writes']:>10,.0f} docs/s   "
             f"{rates['copy_writes'] / rates['find']:.2f}x find()   "
             f"({best['copy_writes']['writes']:,} updates, {best['copy_writes']['events']:,} events written)",
             f"  the copy's chunks alone (report)  {best['copy']['chunk_docs_per_second']:>10,.0f} docs/s   "
             f"{best['copy']['chunk_docs_per_second'] / rates['find']:.2f}x find()   (without opening the stream "
             f"and the last commit; whole run {best['copy']['run_seconds']:.1f} s)"]
    return {"runs": runs, "docs_per_s": rates, "copy_over_find": rates["copy"] / rates["find"],
            "copy_over_find_sorted": rates["copy"] / rates["find_sorted"],
            "copy_writes_over_find": rates["copy_writes"] / rates["find"], "table": "\n".join(lines)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from bench.data import MIXES

    mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]
    unknown = set(mixes) - set(MIXES)
    if unknown:
        raise SystemExit(f"unknown mix(es) {sorted(unknown)}; known: {sorted(MIXES)}")
    events = int(args.events * args.scale)
    log = lambda message: print(message, flush=True)  # noqa: E731
    info = machine()
    log(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, load average {info['loadavg']}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp_path = Path(tmp)
        log("starting a private local stack ...")
        if mixes:
            stack = start_stack(tmp_path / "stack", max(1_000_000, 3 * events * len(mixes)), log)
            try:
                for mix in mixes:
                    results[mix] = bench_mix(mix, stack, args, tmp_path, events, log)
            finally:
                log("stopping the stack ...")
                stack.stop()
        if args.snapshot_docs > 0:
            # A stack of its own, whose oplog keeps the last 100,000 entries: the copy needs none of the
            # preload's, and SecantusDB opens a stream at a cluster time by reading its whole oplog under
            # its storage lock (a million entries held it past the driver's heartbeat, which then
            # cancelled the open); mongod seeks instead.
            log("starting a private local stack for the snapshot row ...")
            stack = start_stack(tmp_path / "snapshot-stack", 100_000, log)
            try:
                results["snapshot"] = bench_snapshot(stack, args, tmp_path, log)
            finally:
                log("stopping the stack ...")
                stack.stop()
    text = "\n\n".join(r["table"] for r in results.values())
    print()
    print(text)
    info["loadavg_after"] = os.getloadavg()
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": info,
              "args": {"events": args.events, "scale": args.scale, "seed_events": args.seed_events,
                       "per_event": args.per_event, "snapshot_docs": args.snapshot_docs,
                       "repeat": args.repeat, "mixes": mixes},
              "mixes": results, "table": text}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwritten: {os.path.relpath(args.output, Path.cwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
