"""Manifests after killed runs: a real drain process SIGKILLed between a commit and its manifest (and
at the other steps), then resumed; the manifests then match the data exactly (``verify``), and the
owed manifest is written by the next run.

Each case runs twice: ``pinned`` (plain events from a fixed first position) and ``defaults`` (the
product's defaults: ``updateLookup``, pre-images ``whenAvailable``, ``START_AT=now``). Every document
changes between a killed run and the next, so under the defaults a replay writes other lines (longer,
other roll and commit points) than the run it replays, and the manifests must still match; under the
defaults the killed run that owes a manifest reads writes of two one-minute windows."""

from __future__ import annotations

import random

import pytest

from shared import manifests as mf

from .harness import (DEFAULTS, MODES, ONE_MINUTE_WINDOWS, assert_in_their_windows, change_documents,
                      kill_runs, pipeline_in_mode, wait_for_the_next_window, windows_of, write_round)

SMALL = {"ROLL_MAX_BYTES": "8KiB", "MAX_BUFFER_BYTES": "16KiB"}


def _manifest_names(pipeline) -> list[str]:
    folder = mf.manifest_dir(pipeline.name, pipeline.checkpoint().generation) + "/"
    return sorted(p[len(folder):] for p in pipeline.lake_files() if p.startswith(folder))


@pytest.mark.parametrize("mode", MODES)
def test_a_kill_between_commit_and_manifest_leaves_it_owed_until_the_next_run(make_pipeline, mode):
    across = ONE_MINUTE_WINDOWS if mode == DEFAULTS else {}
    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL, **across)
    rng = random.Random(3)
    write_round(pipeline, rng, inserts=30)
    if across:
        wait_for_the_next_window()
        write_round(pipeline, rng, inserts=30)
    result = pipeline.drain(failpoint="before_manifest:2")
    assert result.killed, result.describe()
    checkpoint = pipeline.checkpoint()
    owed = [item["name"] for item in mf.unpack(checkpoint.readers)["owed"]]
    names = _manifest_names(pipeline)
    assert len(owed) == 1 and owed[0] not in names and len(names) == 1
    assert mf.parse_manifest_name(owed[0])[1] == checkpoint.seq  # owed: the last commit's, nothing beyond
    from shared.verify import verify

    audit = verify(pipeline.settings())
    assert audit.ok and audit.manifests_owed == 1, audit.summary()  # owed is not a problem: the next run pays
    seq = pipeline.assert_position_safe()
    change_documents(pipeline)
    pipeline.expire_lease()
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    assert owed[0] in _manifest_names(pipeline)
    lines = pipeline.assert_exactly_once()
    if across:
        assert len(windows_of(lines)) >= 2, "the writes did not span two windows"
        assert_in_their_windows(lines)
    pipeline.assert_lake_verifies()


CASES = [["before_manifest:1"], ["after_manifest:1"], ["before_manifest:3"], ["after_commit:2"],
         ["after_flush:4"], ["before_commit:3", "before_manifest:1"], ["after_flush:5", "after_append:1"],
         ["after_append:3", "after_manifest:1"]]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("failpoints", CASES, ids=["+".join(c) for c in CASES])
def test_manifests_match_after_killed_runs(make_pipeline, failpoints, mode):
    rng = random.Random(11)
    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    seq = kill_runs(pipeline, rng, failpoints, change=True)
    write_round(pipeline, rng, inserts=20)
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


@pytest.mark.parametrize("mode", MODES)
def test_verify_reports_a_dead_runs_bytes_as_an_uncommitted_tail(make_pipeline, mode):
    from shared.verify import verify

    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    write_round(pipeline, random.Random(5), inserts=30)
    result = pipeline.drain(failpoint="after_flush:3")
    assert result.killed, result.describe()
    audit = verify(pipeline.settings())
    assert audit.ok and audit.uncommitted, audit.summary()
    assert {f.kind for f in audit.uncommitted} == {"uncommitted_tail"}
    seq = pipeline.assert_position_safe()
    change_documents(pipeline)
    pipeline.expire_lease()
    for _ in pipeline.drain_until_caught_up():
        seq = pipeline.assert_position_safe(seq)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


@pytest.mark.parametrize("mode", MODES)
def test_a_killed_publishers_temporary_files_are_removed_once_older_than_the_run_lease(make_pipeline,
                                                                                      monkeypatch, mode):
    """A publisher killed between the upload of a temporary file and its rename leaves the file under
    ``_manifests/_tmp/<pipeline>/``. A later run of the pipeline removes it once it is older than the
    run lease (no live run can still rename it), and leaves younger ones and other pipelines' alone."""
    import time

    from shared import layout, publisher

    pipeline = pipeline_in_mode(make_pipeline, mode, **SMALL)
    rng = random.Random(9)
    write_round(pipeline, rng, inserts=5)
    assert pipeline.drain().outcome == "caught_up"
    fs = pipeline.datalake.get_file_system_client(pipeline.filesystem)
    own = fs.get_file_client(f"{publisher.TMP}/{layout.encode_name(pipeline.name)}/leftover")
    other = fs.get_file_client(f"{publisher.TMP}/{layout.encode_name('p-another')}/leftover")
    for temp in (own, other):
        temp.upload_data(b'{"format": 1}', overwrite=True)
    write_round(pipeline, rng, inserts=5)
    report = pipeline.drain_in_process()
    assert report.outcome == "caught_up", report
    assert own.exists() and other.exists()  # younger than the run lease: perhaps a live run's
    time.sleep(1.1)  # Last-Modified has whole seconds
    monkeypatch.setattr(publisher, "STALE_TMP_SECONDS", 1.0)
    write_round(pipeline, rng, inserts=5)
    report = pipeline.drain_in_process()
    assert report.outcome == "caught_up", report
    assert not own.exists() and other.exists()
    tmp = [p for p in pipeline.lake_files() if p.startswith(f"{publisher.TMP}/")]
    assert tmp == [other.path_name]  # the manifests this run wrote left no temporary file
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()
