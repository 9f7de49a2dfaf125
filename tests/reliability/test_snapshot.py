"""Snapshots against the local stack: the documents that already exist, copied in chunks between the
stream's events (``shared.snapshot``), resumable and exactly once under kills.

What every case checks at the end (``assert_replay_matches``):

* the lake replayed in ``_seq`` order (snapshot rows, inserts and replaces as upserts of
  ``fullDocument``, updates by their ``fullDocument``, or by ``updateDescription`` when
  ``updateLookup`` found no document, deletes, drops, renames; at a copy's ``snapshotEnd``, the
  documents no line touched since the copy began are gone) equals every
  collection's contents;
* no snapshot row is older than an event before it in ``_seq`` order for its key (its
  ``clusterTime`` is at or after the event's);
* ``_seq`` numbers are unique, each (copy, ``_id``) snapshot row appears once, and the lake's change
  events are the independent change-stream read's, in order, once each.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time

import bson
import pytest
from bson import json_util
from bson import Decimal128, Int64, MaxKey, MinKey, ObjectId

from shared import manifests as mf
from shared.batch import MAX_FILES_PER_BATCH
from shared.failpoints import RUN_STEPS

from .harness import DEFAULTS, PINNED, REPO_ROOT, _base_env, _key

SNAP = {"SNAPSHOT": "initial", "MONGO_FULL_DOC": "updateLookup", "ROLL_MAX_BYTES": "16KiB",
        "MAX_BUFFER_BYTES": "256KiB", "SNAPSHOT_CHUNK_DOCS": "40", "DRAIN_BUDGET_SECONDS": "6"}
NAMES = ("a", "b", "c")


def _pipeline(make_pipeline, mode: str = PINNED, names=NAMES, **settings):
    """A pipeline with SNAPSHOT=initial. ``mode=DEFAULTS``: the product's defaults (``updateLookup``,
    pre-images ``whenAvailable`` on the collections, ``START_AT=now``, hourly windows unless
    ``ROLL_WINDOW`` is given): the first run's position is the server's time when it starts."""
    wanted = {**SNAP, **settings}
    if mode == DEFAULTS:
        wanted.pop("MONGO_FULL_DOC")
    pipeline = make_pipeline(mode=mode, **wanted)
    if mode == DEFAULTS:
        pipeline.enable_preimages(names)
    return pipeline


def _load(pipeline, names=NAMES, count=150, rng=None):
    rng = rng or random.Random(1)
    for name in names:
        pipeline.collection(name).insert_many(
            [{"_id": i, "n": rng.random(), "pad": "x" * rng.randint(20, 300)} for i in range(count)])


def _writes(pipeline, rng, names=NAMES, n=12):
    """Inserts, updates (spread over the _id range, so some land in chunks not yet copied) and deletes."""
    for name in names:
        coll = pipeline.collection(name)
        ids = [d["_id"] for d in coll.find({}, {"_id": 1})]
        if not ids:
            continue
        coll.insert_many([{"_id": 10_000 + rng.randint(0, 10**9), "n": rng.random()} for _ in range(rng.randint(1, 4))])
        for _id in rng.sample(ids, min(len(ids), n)):
            coll.update_one({"_id": _id}, {"$set": {"u": rng.random()}})
        for _id in rng.sample(ids, min(len(ids), rng.randint(0, 3))):
            coll.delete_one({"_id": _id})


def _copying(pipeline) -> bool:
    checkpoint = pipeline.checkpoint()
    progress = checkpoint.snapshot if checkpoint else None
    return bool(progress and (progress.copies or progress.requests))


def _finish(pipeline, max_runs=40):
    """Runs until the stream is caught up and no copy is left."""
    for _ in range(max_runs):
        pipeline.expire_lease()
        result = pipeline.drain()
        assert result.returncode == 0, result.describe()
        if result.outcome == "caught_up" and not _copying(pipeline):
            return result
    raise AssertionError(f"snapshot not finished after {max_runs} runs: {result.describe()}")


def _id_key(value) -> str:
    return _canonical(value)


def _canonical(value) -> str:
    """Values compared as canonical Extended JSON (a naive and an aware datetime of one instant agree)."""
    return json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS)


def replay(lines: list[dict]) -> tuple[dict, list[str]]:
    """The lake replayed in ``_seq`` order: ns -> {_id key: document}; and the stale snapshot rows."""
    state: dict[str, dict[bytes, dict]] = {}
    last_event: dict[tuple[str, bytes], object] = {}
    touched: dict[tuple[str, bytes], object] = {}  # last line (row or event) of each document
    stale = []
    for line in lines:
        kind = line.get("operationType")
        ns = line.get("ns") or {}
        name = f"{ns.get('db')}.{ns.get('coll')}"
        docs = state.setdefault(name, {})
        key = line.get("documentKey", {}).get("_id")
        k = _id_key(key) if "documentKey" in line else None
        if kind == "snapshot":
            seen = last_event.get((name, k))
            if seen is not None and line["clusterTime"] < seen:
                stale.append(f"{name} {key!r}: snapshot row at {line['clusterTime']} after an event at {seen}")
            docs[k] = line["fullDocument"]
            touched[(name, k)] = line["clusterTime"]
        elif kind == "snapshotEnd":  # a document no line touched since the copy began is gone
            since = line["snapshot"]["since"]
            for gone in [kk for kk in docs if touched.get((name, kk)) is None or touched[(name, kk)] < since]:
                docs.pop(gone)
        elif kind in ("insert", "replace", "update"):
            touched[(name, k)] = line["clusterTime"]
            last_event[(name, k)] = line["clusterTime"]
            if line.get("fullDocument") is not None:
                docs[k] = line["fullDocument"]
            elif kind == "update" and k in docs:  # no document (updateLookup found it gone): the delta
                delta = line["updateDescription"]
                docs[k] = {**{f: v for f, v in docs[k].items() if f not in delta["removedFields"]},
                           **delta["updatedFields"]}
        elif kind == "delete":
            last_event[(name, k)] = line["clusterTime"]
            touched[(name, k)] = line["clusterTime"]
            docs.pop(k, None)
        elif kind == "drop":
            state[name] = {}
            for key_ in [x for x in last_event if x[0] == name]:
                last_event[key_] = line["clusterTime"]
        elif kind == "rename":
            to = line["to"]
            target = f"{to['db']}.{to['coll']}"
            state[target] = state.pop(name, {})
            for (n, kk) in [x for x in last_event if x[0] == name]:
                last_event[(target, kk)] = last_event.pop((n, kk))
            for (n, kk) in [x for x in touched if x[0] == name]:
                touched[(target, kk)] = touched.pop((n, kk))
        elif kind == "dropDatabase":
            for other in [n for n in state if n.startswith(f"{ns.get('db')}.")]:
                state[other] = {}
    return state, stale


def assert_replay_matches(pipeline, names=None, check_events=True) -> list[dict]:
    lines = pipeline.lake_lines()
    for line in lines:
        line.pop("__path", None)
    seqs = [line["_seq"] for line in lines]
    assert len(seqs) == len(set(seqs)), "a _seq number appears twice"
    snaps = [(line["snapshot"]["copy"], _id_key(line["documentKey"]["_id"])) for line in lines
             if line["operationType"] == "snapshot"]
    assert len(snaps) == len(set(snaps)), "a snapshot row was written twice"
    state, stale = replay(lines)
    assert not stale, stale[:5]
    database = pipeline.mongo[pipeline.db]
    for name in names if names is not None else database.list_collection_names():
        want = {_id_key(d["_id"]): _canonical(d) for d in database[name].find()}
        got = state.get(f"{pipeline.db}.{name}", {})
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        differ = [k for k in want if k in got and _canonical(got[k]) != want[k]]
        assert not (missing or extra or differ), (
            f"{name}: lake replay differs: missing {missing[:5]}, extra {extra[:5]}, differing {differ[:5]}")
    for ns, docs in state.items():  # a dropped collection replays empty
        db, _, coll = ns.partition(".")
        if db == pipeline.db and coll not in database.list_collection_names():
            assert not docs, f"{ns} was dropped; the replay still holds {len(docs)} documents"
    ends = [line["snapshot"]["copy"] for line in lines if line["operationType"] == "snapshotEnd"]
    assert len(ends) == len(set(ends)), "a copy ended twice"
    events = [line for line in lines if line["operationType"] not in ("snapshot", "snapshotEnd", "gap")]
    pipeline.assert_lake_verifies()  # snapshot lines are data lines of the generation: manifests cover them
    if check_events:
        want_events = pipeline.independent_events()
        assert [_key(e) for e in events] == [_key(e) for e in want_events], "the change events differ from the stream"
    return lines


def test_initial_snapshot_of_several_collections_over_several_runs(make_pipeline):
    rng = random.Random(3)
    pipeline = _pipeline(make_pipeline)
    _load(pipeline, count=400)
    runs = 0
    while True:
        pipeline.expire_lease()
        result = pipeline.drain(DRAIN_BUDGET_SECONDS="5")
        assert result.returncode == 0, result.describe()
        runs += 1
        _writes(pipeline, rng)
        if not _copying(pipeline):
            break
        assert runs < 40
    _finish(pipeline)
    lines = assert_replay_matches(pipeline, NAMES)
    rows = [line for line in lines if line["operationType"] == "snapshot"]
    assert rows and rows[0]["snapshot"] == {"copy": 1, "chunk": 0}
    first = rows[0]
    assert set(first) == {"operationType", "clusterTime", "ns", "documentKey", "fullDocument", "snapshot", "_seq"}
    assert first["documentKey"] == {"_id": first["fullDocument"]["_id"]}
    report = result.report
    assert report["snapshot"] and all(c["finished"] == "done" for c in report["snapshot"])


STEPS = RUN_STEPS + ("snapshot_chunk_read", "snapshot_rows_added")


KILL_CASES = [(PINNED, "rolling", {}), (DEFAULTS, "rolling", {"ROLL_WINDOW": "1m"}),
              (DEFAULTS, "per_event", {"ROLL_WINDOW": "1m"})]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "layout", "extra"), KILL_CASES, ids=[f"{m}-{lay}" for m, lay, _ in KILL_CASES])
def test_random_kills_with_writes_a_drop_and_a_rename(make_pipeline, mode, layout, extra):
    """Runs killed at random steps (snapshot steps included) or after random delays, with inserts,
    updates and deletes between them; a collection is dropped and another renamed mid-copy. With the
    product's defaults the documents change between a kill and its replay (``updateLookup`` then reads
    other documents), and one-minute windows make the runs cross window boundaries; also in the
    per-event layout."""
    rng = random.Random(11)
    pipeline = _pipeline(make_pipeline, mode, names=NAMES + ("d",), SNAPSHOT_CHUNK_DOCS="25", FILE_LAYOUT=layout,
                         **extra)
    _load(pipeline, names=NAMES + ("d",), count=200)
    kills = 0
    for run in range(24):
        _writes(pipeline, rng, names=[n for n in NAMES + ("d", "e") if n in
                                      pipeline.mongo[pipeline.db].list_collection_names()])
        if run == 5:
            pipeline.collection("b").drop()
        if run == 7:
            pipeline.collection("d").rename("e")
        pipeline.expire_lease()
        choice = rng.random()
        if choice < 0.5:
            result = pipeline.drain(failpoint=f"{rng.choice(STEPS)}:{rng.randint(1, 4)}")
        elif choice < 0.85:
            result = pipeline.drain(kill_after=rng.uniform(0.5, 3.0))
        else:
            result = pipeline.drain()
        if result.killed:
            kills += 1
        else:
            assert result.returncode == 0, result.describe()
    _finish(pipeline)
    assert kills >= 8
    assert_replay_matches(pipeline)


@pytest.mark.slow
@pytest.mark.parametrize("mode", (PINNED, DEFAULTS))
@pytest.mark.parametrize("step", ["snapshot_chunk_read:2", "snapshot_rows_added:2", "after_flush:2",
                                  "before_commit:2", "after_commit:2"])
def test_killed_at_a_snapshot_step_then_resumed(make_pipeline, step, mode):
    """Killed at a step, documents changed, resumed; with the defaults the replay's looked-up
    documents differ from the killed run's."""
    rng = random.Random(5)
    pipeline = _pipeline(make_pipeline, mode)
    _load(pipeline, count=120)
    result = pipeline.drain(failpoint=step)
    assert result.killed, result.describe()
    _writes(pipeline, rng)
    _finish(pipeline)
    assert_replay_matches(pipeline, NAMES)


@pytest.mark.parametrize("mode", (PINNED, DEFAULTS))
def test_writes_going_on_while_the_chunks_are_read(make_pipeline, mode):
    """A thread updates, deletes and inserts while the drains copy: the watermarks drop the rows an
    event made stale and keep the rest in cluster-time order."""
    pipeline = _pipeline(make_pipeline, mode, SNAPSHOT_CHUNK_DOCS="30", DRAIN_BUDGET_SECONDS="8")
    _load(pipeline, count=300)
    stop = threading.Event()

    def writer():
        rng = random.Random(9)
        while not stop.is_set():
            coll = pipeline.collection(rng.choice(NAMES))
            _id = rng.randint(0, 299)
            op = rng.random()
            if op < 0.6:
                coll.update_one({"_id": _id}, {"$set": {"w": rng.random()}})
            elif op < 0.8:
                coll.delete_one({"_id": _id})
            else:
                coll.replace_one({"_id": _id}, {"r": rng.random()}, upsert=True)
            time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3):
            pipeline.expire_lease()
            result = pipeline.drain()
            assert result.returncode == 0, result.describe()
    finally:
        stop.set()
        thread.join()
    _finish(pipeline)
    assert_replay_matches(pipeline, NAMES)


MIXED_IDS = [MinKey(), None, -5, 2.5, Int64(3), Decimal128("3.5"), 7, "", "a", "b", {"a": 1}, {"a": 1, "b": 2},
             {"b": 0}, {"a": "x"}, bson.Binary(b"\x01"), ObjectId("0" * 24), ObjectId("f" * 24), False, True,
             bson.datetime_ms.DatetimeMS(5), bson.Timestamp(1, 1), MaxKey()]


@pytest.mark.parametrize("chunk", ["1", "2", "3"])
def test_mixed_id_types_are_copied_in_bson_order(make_pipeline, chunk):
    """One collection with ``_id`` of every kind: ``$gt`` compares within one type only, so a chunk at
    the end of a type goes on with the later types; none is skipped, none twice. SecantusDB sorts
    them as mongod does (the order of ``MIXED_IDS``); its ``_id`` index walk, which the copy uses,
    does not for document ``_id``s, which the copy reads sorted. Chunks of 1, 2 and 3 documents end
    at every place: in a bracket, at its end, on either side of the documents' bracket."""
    pipeline = _pipeline(make_pipeline, SNAPSHOT_CHUNK_DOCS=chunk, JSON_MODE="canonical")
    coll = pipeline.collection("m")
    coll.insert_many([{"_id": value, "i": i} for i, value in enumerate(MIXED_IDS)])
    server_order = [d["i"] for d in coll.find().sort("_id", 1)]
    assert server_order == list(range(len(MIXED_IDS)))
    _finish(pipeline)
    lines = assert_replay_matches(pipeline, ["m"])
    rows = [line["fullDocument"]["i"] for line in lines if line["operationType"] == "snapshot"]
    assert rows == list(range(len(MIXED_IDS)))


def _snapshot_command(pipeline, collection: str) -> subprocess.CompletedProcess:
    env = {**_base_env(), **pipeline.env}
    return subprocess.run([sys.executable, "-m", "shared", "snapshot", "--pipeline", pipeline.name,
                           "--collection", collection], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_resnapshot_on_demand_while_others_stream(make_pipeline):
    rng = random.Random(4)
    pipeline = _pipeline(make_pipeline)
    _load(pipeline, count=60)
    _finish(pipeline)
    done = _snapshot_command(pipeline, f"{pipeline.db}.b")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["requested"] == [f"{pipeline.db}.b"]
    assert _snapshot_command(pipeline, "otherdb.b").returncode == 2  # out of the scope
    _writes(pipeline, rng)
    result = pipeline.drain(SNAPSHOT="off")  # a request is served whatever SNAPSHOT says
    assert result.returncode == 0, result.describe()
    _writes(pipeline, rng)
    _finish(pipeline, max_runs=10)
    lines = assert_replay_matches(pipeline, NAMES)
    copies = {(line["ns"]["coll"], line["snapshot"]["copy"]) for line in lines if line["operationType"] == "snapshot"}
    assert ("b", 4) in copies and not any(copy == 4 and coll != "b" for coll, copy in copies)
    status = subprocess.run([sys.executable, "-m", "shared", "status"], cwd=REPO_ROOT,
                            env={**_base_env(), **pipeline.env}, capture_output=True, text=True, timeout=60)
    body = json.loads(status.stdout)["pipelines"][0]["snapshot"]
    assert any(c["ns"] == f"{pipeline.db}.b" and c["reason"] == "requested" for c in body["finished"])


def test_per_event_commits_name_at_most_a_thousand_files(make_pipeline):
    """In the per-event layout each snapshot row is a file, and a commit names at most
    ``MAX_FILES_PER_BATCH`` files (its manifest waits in the checkpoint row): a chunk's rows, with
    the events read while it waits, never make a commit name more, at the default chunk size."""
    pipeline = _pipeline(make_pipeline, names=("a",), FILE_LAYOUT="per_event", MAX_BUFFER_BYTES="64MiB",
                         SNAPSHOT_CHUNK_DOCS="5000", DRAIN_BUDGET_SECONDS="60")
    coll = pipeline.collection("a")
    coll.insert_many([{"_id": i, "n": i} for i in range(1100)])
    stop = threading.Event()

    def write():  # events while the chunks wait for the stream
        i = 0
        while not stop.is_set() and i < 300:
            coll.update_one({"_id": i * 7 % 1100}, {"$set": {"u": i}})
            i += 1
            time.sleep(0.005)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        _finish(pipeline)
    finally:
        stop.set()
        writer.join()
    _finish(pipeline)
    assert_replay_matches(pipeline, ("a",))
    folder = mf.manifest_dir(pipeline.name, pipeline.checkpoint().generation) + "/"
    manifests = [json.loads(data) for path, data in pipeline.lake_files().items() if path.startswith(folder)]
    assert sum(len(m["files"]) for m in manifests) >= 1100
    assert max(len(m["files"]) for m in manifests) <= MAX_FILES_PER_BATCH


def test_collection_scope_drop_during_the_copy(make_pipeline):
    """Under collection scope a drop ends the copy (the stream is invalidated); a new collection of
    that name later streams from its first insert."""
    pipeline = _pipeline(make_pipeline, scope="collection", coll="a", SNAPSHOT_CHUNK_DOCS="20")
    _load(pipeline, names=("a",), count=100)
    result = pipeline.drain(failpoint="snapshot_rows_added:2")
    assert result.killed
    pipeline.collection("a").drop()
    _finish(pipeline)
    pipeline.collection("a").insert_many([{"_id": i} for i in range(5)])
    _finish(pipeline)
    assert_replay_matches(pipeline, ["a"])


@pytest.mark.slow
@pytest.mark.parametrize("kill", [None, "after_restart:1", "snapshot_rows_added:1"])
def test_when_needed_copies_again_after_lost_history(make_private_pipeline, kill):
    """SNAPSHOT=when_needed (with ON_HISTORY_LOST=fail): after lost history the run restarts with a gap
    record and copies the collection again; documents deleted and updated in the gap come right (the
    copy's end line removes what no line touched since it began)."""
    pipeline = make_private_pipeline(scope="collection", coll="items", **{**SNAP, "SNAPSHOT": "when_needed"})
    coll = pipeline.collection()
    coll.insert_many([{"_id": i, "v": 0} for i in range(60)])
    _finish(pipeline)
    coll.delete_many({"_id": {"$lt": 10}})  # in the gap: lost events
    coll.update_many({"_id": {"$gte": 50}}, {"$set": {"v": 1}})
    pipeline.collection("filler").insert_many([{"i": i} for i in range(1100)])
    if kill:
        assert pipeline.drain(failpoint=kill).killed
        coll.insert_one({"_id": 1000, "v": 2})
    _finish(pipeline)
    lines = assert_replay_matches(pipeline, ["items"], check_events=False)
    assert [line["operationType"] for line in lines].count("gap") == 1
    ends = [line for line in lines if line["operationType"] == "snapshotEnd"]
    assert [e["snapshot"]["copy"] for e in ends] == [1, 2]
    assert pipeline.checkpoint().snapshot.finished[-1].reason == "history_lost"
