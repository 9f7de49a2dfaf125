"""The snapshot row of ``make bench``: copying a collection of ~1 KB documents (``SNAPSHOT=initial``)
next to a plain ``find()`` over the same collection, and the same copy with writes going on.

``python -m bench.snapshot preload|find|copy|copy_writes CONFIG`` runs one step in its own process
(``bench/__main__.py`` calls them); each prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import threading
import time
import uuid

DB, COLL = "snapbench", "docs"


def preload(config: dict) -> dict:
    import pymongo

    client = pymongo.MongoClient(config["env"]["MONGO_URI"])
    coll = client[DB][COLL]
    coll.drop()
    rng = random.Random(5)
    started = time.perf_counter()
    total, batch = config["docs"], 5000
    for start in range(0, total, batch):
        coll.insert_many([{"n": i, "name": f"customer {i}", "score": rng.random(), "tags": ["a", "b", "c"],
                           "pad": "x" * rng.randint(800, 1000)} for i in range(start, min(total, start + batch))],
                         ordered=False)
    return {"docs": coll.estimated_document_count(), "seconds": time.perf_counter() - started}


def find(config: dict) -> dict:
    """A plain ``find()`` over the collection, decoding every document (pymongo's default)."""
    import pymongo

    client = pymongo.MongoClient(config["env"]["MONGO_URI"])
    started, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in client[DB][COLL].find(batch_size=5000))
    return {"docs": count, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}


def find_sorted(config: dict) -> dict:
    """The same ``find()`` in ``_id`` order walking the ``_id`` index (a hint), as raw BSON: how a copy
    reads (SecantusDB would sort in memory without the hint; mongod walks the index either way)."""
    import pymongo
    from bson.raw_bson import RawBSONDocument

    client = pymongo.MongoClient(config["env"]["MONGO_URI"], document_class=RawBSONDocument)
    started, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in client[DB][COLL].find(sort=[("_id", 1)], hint=[("_id", 1)], batch_size=5000))
    return {"docs": count, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}


def copy(config: dict, writes_per_second: float = 0.0) -> dict:
    """One drain (budget as large as needed) of a new pipeline with ``SNAPSHOT=initial`` on the collection."""
    from azure.storage.filedatalake import DataLakeServiceClient

    from bench.contenders import app_settings
    from shared.drain import run_drain

    name = uuid.uuid4().hex[:10]
    env = {**config["env"], "MONGO_DB": DB, "MONGO_COLL": COLL, "SNAPSHOT": "initial"}
    settings = app_settings({**config, "env": env}, name)
    service = DataLakeServiceClient(settings.adls_account_url, credential={
        "account_name": "devstoreaccount1", "account_key": str(settings.adls_shared_key)})
    service.create_file_system(settings.adls_filesystem)
    stop = threading.Event()
    written = [0]

    def writer():
        import pymongo

        coll = pymongo.MongoClient(settings.mongo_uri)[DB][COLL]
        ids = [d["_id"] for d in coll.find({}, {"_id": 1}).limit(20000)]
        rng = random.Random(3)
        while not stop.is_set():
            coll.update_one({"_id": rng.choice(ids)}, {"$set": {"score": rng.random()}})
            written[0] += 1
            time.sleep(1.0 / writes_per_second)

    done_at = [None]

    def watcher():
        """When the copy is committed as done (its progress in the checkpoint row), the writer stops,
        so the run can catch up and end (a stream written 500 times a second is never caught up)."""
        from shared.checkpoint import CheckpointStore

        store = CheckpointStore(settings)
        while not stop.is_set():
            checkpoint = store.load().checkpoint
            progress = checkpoint.snapshot if checkpoint is not None else None
            if progress is not None and not progress.copies and progress.finished:
                done_at[0] = time.perf_counter()
                stop.set()
                return
            time.sleep(0.5)

    threads = [threading.Thread(target=watcher, daemon=True)]
    if writes_per_second:
        threads.append(threading.Thread(target=writer, daemon=True))
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    report = run_drain(dataclasses.replace(settings, drain_budget_seconds=3600.0), env={})
    run_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    stop.set()
    for thread in threads:
        thread.join()
    if report.outcome != "caught_up" or not report.snapshot or report.snapshot[0]["finished"] != "done":
        raise RuntimeError(f"the copy did not finish: {report.outcome} {report.error} {report.snapshot}")
    # the copy's time: until its last rows were committed (seen within 0.5 s), or the whole run
    seconds = (done_at[0] - started) if done_at[0] is not None else run_seconds
    return {"docs": report.snapshot_rows, "events": report.events - report.snapshot_rows, "seconds": seconds,
            "run_seconds": run_seconds, "cpu_seconds": cpu_seconds, "bytes": report.bytes, "commits": report.commits,
            "writes": written[0], "copied": report.snapshot[0]["copied"],
            "chunk_docs_per_second": report.snapshot[0]["docs_per_second"]}


def main(argv: list[str]) -> int:
    step, path = argv
    with open(path) as f:
        config = json.load(f)
    runners = {"preload": preload, "find": find, "find_sorted": find_sorted, "copy": copy,
               "copy_writes": lambda c: copy(c, writes_per_second=c.get("writes_per_second", 500.0))}
    result = runners[step](config)
    from bench.contenders import peak_rss_mib

    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
