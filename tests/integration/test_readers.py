"""The lake for its readers: manifests match the data, day markers wait for the grace, late events are
recorded, and ``verify`` passes on a clean lake and names each kind of damage."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone

import pytest

from shared import manifests as mf
from shared.checkpoint import CheckpointStore
from shared.verify import verify

SMALL = {"ROLL_MAX_BYTES": "4KiB", "MAX_BUFFER_BYTES": "6KiB"}


def write(mongo_client, dbs, n=40, pad=200):
    a, b = mongo_client[dbs[0]], mongo_client[dbs[1]]
    a.orders.insert_many([{"i": i, "pad": "x" * pad} for i in range(n)])
    a.customers.insert_many([{"i": i} for i in range(n // 4)])
    b.events.insert_many([{"i": i, "pad": "y" * pad} for i in range(n // 2)])
    a.orders.update_many({"i": {"$lt": 5}}, {"$set": {"u": 1}})
    a.orders.delete_one({"i": 7})


def manifests_of(pipeline) -> dict[str, dict]:
    checkpoint = CheckpointStore(pipeline.settings).load().checkpoint
    folder = mf.manifest_dir(pipeline.settings.pipeline_name, checkpoint.generation)
    out = {}
    for path, data in pipeline.files(everything=True).items():
        if path.startswith(folder + "/"):
            out[path.rpartition("/")[2]] = json.loads(data)
    return dict(sorted(out.items()))


def assert_manifests_match(pipeline) -> dict[str, dict]:
    """The manifests' ranges follow each other from _seq 1 to the checkpoint's seq, and their byte
    ranges are exactly the data files' bytes, with matching checksums, counts and _seq."""
    files = pipeline.files()
    manifests = manifests_of(pipeline)
    seq = CheckpointStore(pipeline.settings).load().checkpoint.seq
    expected, covered = 1, {}
    for name, doc in manifests.items():
        assert mf.parse_manifest_name(name) == (doc["first_seq"], doc["last_seq"])
        assert doc["first_seq"] == expected, f"{name} does not follow _seq {expected - 1}"
        expected = doc["last_seq"] + 1
        numbers = []
        for entry in doc["files"]:
            data = files[entry["path"]][entry["start"]:entry["end"]]
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            seqs = [json.loads(line)["_seq"] for line in data.splitlines()]
            assert (len(seqs), seqs[0], seqs[-1]) == (entry["events"], entry["first_seq"], entry["last_seq"])
            numbers += seqs
            assert covered.get(entry["path"], 0) == entry["start"], "a gap or overlap in a file's coverage"
            covered[entry["path"]] = entry["end"]
        retired = {n for a, b in doc["retired"] for n in range(a, b + 1)}
        assert sorted(numbers + sorted(retired)) == list(range(doc["first_seq"], doc["last_seq"] + 1))
    assert expected - 1 == seq
    assert covered == {path: len(data) for path, data in files.items()}
    return manifests


def test_manifests_match_the_data_and_verify_passes(pipeline, mongo_client):
    pipeline.run(**SMALL)
    write(mongo_client, pipeline.dbs)
    report = pipeline.run(**SMALL)
    assert report.commits > 2 and report.files > 6
    write(mongo_client, pipeline.dbs, n=8)
    pipeline.run(**SMALL)
    manifests = assert_manifests_match(pipeline)
    assert len(manifests) >= 3
    result = verify(pipeline.settings)
    assert result.ok, result.summary()
    assert result.manifests == len(manifests) and result.events == sum(d["events"] for d in manifests.values())
    proc = pipeline.run_cli("verify", "--json")
    body = json.loads(proc.stdout)
    assert body["ok"] and body["pipelines"][0]["problems"] == []
    # what is new since a manifest: the following manifests, in name order
    names = list(manifests)
    since = verify(pipeline.settings, since=names[1])
    assert since.ok and since.manifests == len(names) - 2


@pytest.mark.parametrize("layout, overrides", [
    ("per_event", {"FILE_LAYOUT": "per_event"}),
    ("rolling", {"ROLL_MAX_BYTES": "1KiB"}),  # one event a file: over a thousand files in a run
])
def test_a_run_that_writes_thousands_of_files_commits_manifests_that_fit_the_row(pipeline, mongo_client, layout,
                                                                                   overrides):
    """A commit's manifest waits in the checkpoint row until it is written: a batch names at most
    ``MAX_FILES_PER_BATCH`` files, however many files a run writes."""
    pipeline.run(**overrides)
    mongo_client[pipeline.dbs[0]].orders.insert_many([{"i": i, "pad": "x" * 700} for i in range(1100)])
    report = pipeline.run(**overrides)
    assert report.outcome == "caught_up" and report.events == 1100
    assert report.files == 1100 and report.commits >= 2
    manifests = assert_manifests_match(pipeline)
    assert sum(d["events"] for d in manifests.values()) == 1100
    assert max(len(d["files"]) for d in manifests.values()) <= 1000
    result = verify(pipeline.settings)
    assert result.ok, result.summary()


def _end_of_today() -> int:
    return (int(time.time()) // 86400 + 1) * 86400


def test_day_markers_only_after_the_grace_and_late_events_recorded(pipeline, mongo_client):
    grace = pipeline.settings.late_event_grace_seconds
    assert grace == 3600
    pipeline.run()
    write(mongo_client, pipeline.dbs, n=10)
    pipeline.run()
    end = _end_of_today()
    if end - time.time() < 120:
        pytest.skip("too close to midnight UTC")
    # caught up just before the end of the day plus the grace: no marker yet
    pipeline.run(clock=lambda: end + grace - 5 + (time.time() % 1))
    markers = {p: d for p, d in pipeline.files(everything=True).items() if p.endswith("/_SUCCESS")}
    assert markers == {}
    # and just after it: one marker per folder that received data that day
    report = pipeline.run(clock=lambda: end + grace + 5 + (time.time() % 1))
    assert report.late_events == 0
    everything = pipeline.files(everything=True)
    markers = {p.rpartition("/")[0]: json.loads(d) for p, d in everything.items() if p.endswith("/_SUCCESS")}
    data = pipeline.files()
    folders = {p.rpartition("/")[0] for p in data}
    assert set(markers) == folders and len(folders) == 3
    day = datetime.fromtimestamp(end - 1, tz=timezone.utc).strftime("%Y-%m-%d")
    for folder, marker in markers.items():
        lines = [json.loads(line) for p, d in data.items() if p.startswith(folder + "/") for line in d.splitlines()]
        assert marker["day"] == day and marker["folder"] == folder
        assert marker["events"] == len(lines)
        assert (marker["first_seq"], marker["last_seq"]) == (min(x["_seq"] for x in lines), max(x["_seq"] for x in lines))
        assert marker["manifests"]["first"] <= marker["manifests"]["last"]
    # an event for a day already marked complete (the clock says tomorrow; the server says today)
    mongo_client[pipeline.dbs[0]].orders.insert_one({"late": True})
    late = pipeline.run(clock=lambda: end + grace + 60 + (time.time() % 1))
    assert late.late_events == 1
    everything = pipeline.files(everything=True)
    records = {p: json.loads(d) for p, d in everything.items() if "/_LATE-" in p}
    assert len(records) == 1
    (path, record), = records.items()
    assert path.startswith(next(f for f in folders if "/orders/" in f) + "/_LATE-")
    assert record["day"] == day and record["events"] == 1
    entry = next(e for e in manifests_of(pipeline)[record["manifest"]]["files"] if e["path"] == record["files"][0]["path"])
    assert entry["late"] is True and entry["events"] == 1
    marker_after = json.loads(everything[path.rpartition("/")[0] + "/_SUCCESS"])
    assert marker_after == markers[path.rpartition("/")[0]]  # a marker is never rewritten
    assert_manifests_match(pipeline)
    assert verify(pipeline.settings).ok


@pytest.fixture
def damaged(pipeline, mongo_client):
    """A clean lake of several manifests, and a way to damage and restore it."""
    pipeline.run(**SMALL)
    write(mongo_client, pipeline.dbs)
    pipeline.run(**SMALL)
    write(mongo_client, pipeline.dbs, n=8)
    pipeline.run(**SMALL)
    assert verify(pipeline.settings).ok
    return pipeline


def _put(fs, path, data):
    fs.get_file_client(path).upload_data(data, overwrite=True)


def _kinds(pipeline) -> set[str]:
    return {p.kind for p in verify(pipeline.settings).problems}


def test_verify_catches_each_kind_of_damage(damaged):
    pipeline = damaged
    fs = pipeline.filesystem
    data = pipeline.files()
    manifests = manifests_of(pipeline)
    folder = mf.manifest_dir(pipeline.settings.pipeline_name, CheckpointStore(pipeline.settings).load().checkpoint.generation)
    path, original = max(data.items(), key=lambda item: len(item[1]))

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    _put(fs, path, bytes(flipped))
    assert "checksum" in _kinds(pipeline)
    _put(fs, path, original)
    assert verify(pipeline.settings).ok

    fs.get_file_client(path).delete_file()
    assert "missing_file" in _kinds(pipeline)
    _put(fs, path, original)

    _put(fs, path, original[:-5])
    assert {"truncated_file"} <= _kinds(pipeline)
    _put(fs, path, original[:-5] + b"\n")  # a torn line at the end
    assert _kinds(pipeline) & {"truncated_file", "bad_line", "torn_line"}
    _put(fs, path, original)

    extra = original.splitlines(keepends=True)[-1]
    _put(fs, path, original + extra)
    kinds = _kinds(pipeline)
    assert "outside_manifest" in kinds
    _put(fs, path, original)
    assert verify(pipeline.settings).ok

    names = list(manifests)
    middle = names[len(names) // 2]
    doc = manifests[middle]
    shifted = {**doc, "first_seq": doc["first_seq"] + 1}
    fs.get_file_client(f"{folder}/{middle}").delete_file()
    _put(fs, f"{folder}/{mf.manifest_name(doc['first_seq'] + 1, doc['last_seq'])}", json.dumps(shifted).encode())
    assert "seq_gap" in _kinds(pipeline)
    fs.get_file_client(f"{folder}/{mf.manifest_name(doc['first_seq'] + 1, doc['last_seq'])}").delete_file()
    kinds = _kinds(pipeline)  # now simply deleted
    assert {"seq_gap", "outside_manifest"} <= kinds
    _put(fs, f"{folder}/{middle}", json.dumps(doc, separators=(",", ":")).encode() + b"\n")
    result = verify(pipeline.settings)
    assert result.ok, result.summary()
    proc = pipeline.run_cli("verify", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fs.get_file_client(f"{folder}/{middle}").delete_file()
    proc = pipeline.run_cli("verify", check=False)
    assert proc.returncode == 1 and "PROBLEM seq_gap" in proc.stdout
