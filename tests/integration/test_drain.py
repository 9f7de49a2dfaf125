"""The drain against the local stack, through the real SDKs: what lands, where, once, in order."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest
from bson import Binary, Decimal128, Int64, ObjectId, Regex
from bson.raw_bson import RawBSONDocument

from shared.checkpoint import CheckpointStore
from shared.settings import Settings

from .conftest import drain_watch, watch_all

UTC = dt.timezone.utc


def make_mix(client, dbs):
    """Inserts, updates, replaces, deletes and a transaction in two databases and three collections."""
    a, b = client[dbs[0]], client[dbs[1]]
    when = dt.datetime(2024, 2, 29, 12, 30, 15, 123000, tzinfo=UTC)
    ids = []
    for i in range(5):
        ids.append(a.orders.insert_one({
            "n": i, "price": Decimal128("19.99"), "qty": Int64(2**53 + i), "at": when, "ref": ObjectId(),
            "blob": Binary(b"\x00\xffdata", 0), "uuid": Binary(b"0123456789abcdef", 4), "re": Regex("^a.c$", "i"),
            "nested": {"tags": ["x", {"deep": [1, 2.5, None, True]}], "$dollar": 1, "dot.key": 2},
        }).inserted_id)
    a.customers.insert_one({"_id": "c1", "name": "Ada", "since": dt.datetime(1969, 7, 20, tzinfo=UTC)})
    a.orders.update_one({"_id": ids[0]}, {"$set": {"status": "paid"}, "$inc": {"n": 10}})
    a.orders.replace_one({"_id": ids[1]}, {"replaced": True, "price": Decimal128("0.01")})
    a.orders.delete_one({"_id": ids[2]})
    b.events.insert_many([{"k": j, "v": float(j) / 3} for j in range(3)])
    with client.start_session() as session:
        def txn(s):
            a.customers.insert_one({"_id": "c2", "name": "Grace"}, session=s)
            b.events.update_many({}, {"$set": {"seen": True}}, session=s)
        session.with_transaction(txn)
    b.events.delete_one({"k": 0})
    return ids


def test_end_to_end_mix_lands_once_in_order_with_types(pipeline, mongo_client):
    first = pipeline.run()  # no checkpoint: starts now, saves the position
    assert first.events == 0 and first.outcome == "caught_up"
    reference = watch_all(mongo_client, pipeline.dbs)
    reference.try_next()
    make_mix(mongo_client, pipeline.dbs)
    expected = drain_watch(reference, 17)
    assert len(expected) == 17

    report = pipeline.run()
    assert report.outcome == "caught_up" and report.events == 17
    assert report.partitions == 3 and report.files == 3 and report.commits == 1
    lines = pipeline.lines()
    assert [line["_seq"] for line in lines] == list(range(1, 18))
    for line, event in zip(lines, expected):
        assert {k: v for k, v in line.items() if k not in ("_seq", "__path")} == event  # every field, same values
        assert line["_id"] == event["_id"]
        assert line["operationType"] == event["operationType"]
        assert line["clusterTime"] == event["clusterTime"]
        assert line.get("documentKey") == event.get("documentKey")
        assert line["ns"] == event["ns"]
        assert line.get("txnNumber") == event.get("txnNumber") and line.get("lsid") == event.get("lsid")
        folder = line["__path"].rsplit("/", 1)[0]
        day = dt.datetime.fromtimestamp(event["clusterTime"].time, UTC)
        assert folder == f"{event['ns']['db']}/{event['ns']['coll']}/year={day:%Y}/month={day:%m}/day={day:%d}"
    ops = [line["operationType"] for line in lines]
    assert ops.count("insert") == 10 and ops.count("update") == 4 and ops.count("replace") == 1
    assert ops.count("delete") == 2 and sum(1 for line in lines if "txnNumber" in line) == 4

    doc = lines[0]["fullDocument"]
    assert doc["price"] == Decimal128("19.99") and isinstance(doc["price"], Decimal128)
    assert doc["qty"] == 2**53  # relaxed mode: Int64 reads back as a plain integer, same value
    assert doc["at"] == dt.datetime(2024, 2, 29, 12, 30, 15, 123000, tzinfo=UTC)
    assert isinstance(doc["ref"], ObjectId) and doc["blob"] == b"\x00\xffdata"
    assert doc["uuid"] == Binary(b"0123456789abcdef", 4) and doc["re"] == Regex("^a.c$", "i")
    assert doc["nested"] == {"tags": ["x", {"deep": [1, 2.5, None, True]}], "$dollar": 1, "dot.key": 2}
    update = next(line for line in lines if line["operationType"] == "update")
    assert update["updateDescription"]["updatedFields"] == {"status": "paid", "n": 10}
    assert update["fullDocument"]["status"] == "paid"  # updateLookup
    customers = [line for line in lines if line["ns"]["coll"] == "customers"]
    assert customers[0]["fullDocument"]["since"] == dt.datetime(1969, 7, 20, tzinfo=UTC)


def test_canonical_mode_round_trips_exactly(pipeline, mongo_client):
    pipeline.run(JSON_MODE="canonical")
    mongo_client[pipeline.dbs[0]].t.insert_one({"i": Int64(5), "n": 7, "f": 1.0, "d": Decimal128("1E+3")})
    pipeline.run(JSON_MODE="canonical")
    (line,) = pipeline.lines()
    doc = line["fullDocument"]
    assert isinstance(doc["i"], Int64) and type(doc["n"]) is int and isinstance(doc["f"], float)
    raw = next(iter(pipeline.files().values()))
    assert re.search(rb'"\$numberLong" ?: ?"5"', raw) and re.search(rb'"\$numberInt" ?: ?"7"', raw)
    assert re.search(rb'"_seq" ?: ?\{ ?"\$numberLong" ?: ?"1" ?\}', raw)


def test_five_runs_with_writes_between_no_loss_no_duplicate(pipeline, mongo_client):
    pipeline.run()
    coll = mongo_client[pipeline.dbs[0]].items
    total = 0
    for run in range(5):
        coll.insert_many([{"run": run, "i": i} for i in range(7 + run)])
        coll.update_many({"run": run}, {"$set": {"done": True}})
        total += 2 * (7 + run)
        report = pipeline.run()
        assert report.events == 2 * (7 + run)
    lines = pipeline.lines()
    assert [line["_seq"] for line in lines] == list(range(1, total + 1))
    assert len({json.dumps(line["_id"], sort_keys=True) for line in lines}) == total
    assert len(pipeline.files()) == 1  # one rolling file, appended to by every run


@pytest.mark.parametrize("scope", ["collection", "database", "deployment"])
def test_scopes_produce_the_right_namespaces(scope, pipeline, mongo_client):
    a, b = pipeline.dbs
    overrides = {"collection": {"MONGO_DB": a, "MONGO_COLL": "orders", "MONGO_PIPELINE": "[]"},
                 "database": {"MONGO_DB": a, "MONGO_PIPELINE": "[]"},
                 "deployment": {}}[scope]
    pipeline.env.update(overrides)
    pipeline.run()
    mongo_client[a].orders.insert_one({"x": 1})
    mongo_client[a].customers.insert_one({"x": 2})
    mongo_client[b].events.insert_one({"x": 3})
    pipeline.run()
    seen = {(line["ns"]["db"], line["ns"]["coll"]) for line in pipeline.lines()}
    expected = {"collection": {(a, "orders")}, "database": {(a, "orders"), (a, "customers")},
                "deployment": {(a, "orders"), (a, "customers"), (b, "events")}}[scope]
    assert seen == expected
    folders = {path.split("/year=")[0] for path in pipeline.files()}
    assert folders == {f"{db}/{coll}" for db, coll in expected}


def test_rolls_by_size(pipeline, mongo_client):
    pipeline.run(ROLL_MAX_BYTES="4KiB")
    mongo_client[pipeline.dbs[0]].big.insert_many([{"i": i, "pad": "x" * 300} for i in range(40)])
    pipeline.run(ROLL_MAX_BYTES="4KiB")
    mongo_client[pipeline.dbs[0]].big.insert_many([{"i": i, "pad": "y" * 300} for i in range(10)])
    pipeline.run(ROLL_MAX_BYTES="4KiB")
    files = pipeline.files()
    assert len(files) >= 5
    assert all(len(data) <= 4096 for data in files.values())
    names = list(files)
    parts = [int(name.rsplit("-", 2)[1]) for name in names]
    assert parts == list(range(len(names)))  # consecutive parts of one window, in name order
    seqs = [s["_seq"] for s in pipeline.lines()]
    flat = []
    for name in names:  # reading the files in name order gives the events in order
        flat += [json.loads(line)["_seq"] for line in files[name].splitlines()]
    assert flat == seqs == list(range(1, 51))


@pytest.mark.slow
def test_rolls_by_window(pipeline, mongo_client):
    """Events whose cluster times fall in two windows (1-minute windows, across a minute boundary)."""
    pipeline.run(ROLL_WINDOW="1m")
    coll = mongo_client[pipeline.dbs[0]].ticks
    time.sleep(60 - time.time() % 60 + 0.5 if time.time() % 60 > 50 else 0)
    coll.insert_one({"before": True})
    time.sleep(60 - time.time() % 60 + 0.5)  # into the next minute
    coll.insert_one({"after": True})
    pipeline.run(ROLL_WINDOW="1m")
    files = pipeline.files()
    assert len(files) == 2
    windows = [re.search(r"part-(\d{8}T\d{4})Z", name).group(1) for name in files]
    assert windows[0] < windows[1]
    lines = pipeline.lines()
    for line in lines:
        minute = dt.datetime.fromtimestamp(line["clusterTime"].time, UTC).strftime("%Y%m%dT%H%M")
        assert minute in line["__path"]


def test_quiet_stream_still_advances_the_stored_position(pipeline, mongo_client):
    pipeline.run()
    store = CheckpointStore(pipeline.settings)
    before = store.load().checkpoint
    for i in range(3):
        mongo_client["other_" + pipeline.dbs[0]].noise.insert_one({"i": i})  # does not match the filter
    mongo_client.drop_database("other_" + pipeline.dbs[0])
    report = pipeline.run()
    after = store.load().checkpoint
    assert report.events == 0 and after.seq == before.seq == 0
    assert after.position.token != before.position.token
    assert after.committed_at > before.committed_at
    assert pipeline.files() == {}


def test_budget_stops_the_run_and_commits_what_it_read(pipeline, mongo_client):
    """A clock that runs 1 ms per reading stands for a slow machine: the run must stop at its
    budget (less the write reserve), commit what it read, and the next runs go on from there."""
    pipeline.run()
    coll = mongo_client[pipeline.dbs[0]].backlog
    for start in range(0, 20000, 5000):
        coll.insert_many([{"i": i, "pad": "z" * 200} for i in range(start, start + 5000)])
    budget = 5
    ticks = [0]

    def slow_clock():
        ticks[0] += 1
        return time.time() + ticks[0] * 0.001

    first = pipeline.run(clock=slow_clock, DRAIN_BUDGET_SECONDS=budget)
    assert first.outcome == "budget" and 0 < first.events < 20000
    assert first.duration_seconds <= budget  # on the run's own clock, writing and committing included
    total = first.events
    for _ in range(30):
        ticks[0] = 0
        report = pipeline.run(clock=slow_clock, DRAIN_BUDGET_SECONDS=budget)
        total += report.events
        if report.outcome == "caught_up":
            break
    assert total == 20000
    assert [line["_seq"] for line in pipeline.lines()] == list(range(1, 20001))


def test_memory_cap_commits_early(pipeline, mongo_client):
    pipeline.run()
    mongo_client[pipeline.dbs[0]].c.insert_many([{"i": i, "pad": "p" * 500} for i in range(200)])
    report = pipeline.run(MAX_BUFFER_BYTES="20KiB")
    assert report.events == 200 and report.commits > 3
    assert [line["_seq"] for line in pipeline.lines()] == list(range(1, 201))


def test_start_at_a_past_time(pipeline, mongo_client):
    start = dt.datetime.now(UTC) - dt.timedelta(seconds=1)  # the session's server is only minutes old
    mongo_client[pipeline.dbs[0]].c.insert_one({"early": True})
    report = pipeline.run(START_AT=start.isoformat())
    assert report.events == 1 and pipeline.lines()[0]["fullDocument"]["early"] is True


def test_cli_drain_and_status(pipeline, mongo_client):
    pipeline.run_cli("drain")
    mongo_client[pipeline.dbs[0]].c.insert_many([{"i": i} for i in range(3)])
    proc = pipeline.run_cli("drain")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["events"] == 3 and report["outcome"] == "caught_up" and report["partitions"] == 1
    for key in ("bytes", "files", "first_cluster_time", "last_cluster_time", "lag_seconds", "duration_seconds"):
        assert key in report
    body = json.loads(pipeline.run_cli("status").stdout)
    (status,) = body["pipelines"]
    assert body["healthy"] is True and status["healthy"] is True and status["checkpoint"]["seq"] == 3
    assert status["checkpoint"]["position_age_seconds"] < 600
    assert status["last_run"]["events"] == 3


def test_bad_settings_fail_with_the_setting_named_and_no_secret(pipeline):
    secret = "Sup3rS3cretPassw0rd"
    proc = pipeline.run_cli("drain", check=False, extra_env={
        "MONGO_URI": f"mongodb://admin:{secret}@127.0.0.1:1/?replicaSet=x", "ROLL_WINDOW": "7m"})
    assert proc.returncode == 2
    assert "ROLL_WINDOW" in proc.stderr and "Traceback" not in proc.stderr
    assert secret not in proc.stdout + proc.stderr


def test_unreachable_mongo_is_a_transient_failure_without_secret(pipeline):
    secret = "An0therS3cret"
    unreachable = f"mongodb://admin:{secret}@127.0.0.1:1/?replicaSet=x&serverSelectionTimeoutMS=500"
    proc = pipeline.run_cli("drain", check=False, extra_env={"MONGO_URI": unreachable})
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 1 and report["outcome"] == "failed" and report["error"]["kind"] == "transient"
    # a new pipeline first reads the server's time, its first position
    assert "reading the server's cluster time" in report["error"]["message"]
    assert secret not in proc.stdout + proc.stderr
    # the row of that pipeline (its identity names the unreachable cluster)
    store = CheckpointStore(Settings.from_env({**pipeline.env, "MONGO_URI": unreachable}))
    checkpoint = store.load().checkpoint
    assert checkpoint.last_error["kind"] == "transient" and checkpoint.lease_until == 0
    assert secret not in json.dumps(checkpoint.last_run) + json.dumps(checkpoint.last_error)


def test_events_are_raw_documents(pipeline):
    from shared.source import ChangeSource

    source = ChangeSource(pipeline.settings)
    try:
        assert source._client.codec_options.document_class is RawBSONDocument
    finally:
        source.close()


def test_rows_of_folders_no_event_can_reach_are_pruned(pipeline, mongo_client, table_service):
    from shared.batch import FileState
    from shared.checkpoint import _file_entity, folder_row_key

    pipeline.run()
    table = table_service.get_table_client(pipeline.env["CHECKPOINT_TABLE"])
    old = FileState(f"{pipeline.dbs[0]}/c/year=2020/month=01/day=01", 0, 0, 10, '"x"', "g")
    table.upsert_entity(_file_entity(pipeline.env["PIPELINE_NAME"], old))
    mongo_client[pipeline.dbs[0]].c.insert_one({"now": True})
    pipeline.run()
    keys = {row["RowKey"] for row in table.query_entities(f"PartitionKey eq '{pipeline.env['PIPELINE_NAME']}'")}
    assert folder_row_key(old.dir) not in keys
    assert len(keys) == 2  # the checkpoint and today's folder


def test_storage_calls_scale_with_files_not_events(pipeline, mongo_client, emulator_control):
    pipeline.run()
    db = mongo_client[pipeline.dbs[0]]
    for coll in ("a", "b", "c"):
        db[coll].insert_many([{"i": i} for i in range(300)])
    emulator_control.reset_stats()
    report = pipeline.run()
    stats = emulator_control.stats()
    assert report.events == 900 and report.files == 3
    # per data file: create, append, flush; the commit's manifest: create, append, flush of a temporary
    # file and its rename (the first manifest of a generation also creates its folder: one more rename);
    # per run: one listing of the pipeline's stale manifest temporaries
    assert stats.get("create_file") == 3 + 1 and stats.get("append") == 3 + 1 and stats.get("flush") == 3 + 1
    assert stats.get("rename") == 2 and stats.get("create_directory") == 1 and stats.get("list_paths") == 1
    assert stats["total"] == 9 + 6 + 1
    for coll in ("a", "b", "c"):
        db[coll].insert_many([{"i": i} for i in range(100)])
    emulator_control.reset_stats()
    second = pipeline.run()
    stats = emulator_control.stats()
    # append + flush per file; the manifest: 4 requests, 1 read of the last run's (it may be owed), and
    # the listing of stale temporaries
    assert second.events == 300 and stats["total"] == 6 + 4 + 1 + 1 and stats.get("create_file") == 1
    assert second.table_requests == 4  # load, lease, intent, commit
