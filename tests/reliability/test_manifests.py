"""Manifests after killed runs: a real drain process SIGKILLed between a commit and its manifest (and
at the other steps), then resumed; the manifests then match the data exactly (``verify``), and the
owed manifest is written by the next run."""

from __future__ import annotations

import random

import pytest

from shared import manifests as mf

from .harness import kill_runs, write_round

SMALL = {"ROLL_MAX_BYTES": "8KiB", "MAX_BUFFER_BYTES": "16KiB"}


def _manifest_names(pipeline) -> list[str]:
    folder = mf.manifest_dir(pipeline.name, pipeline.checkpoint().generation) + "/"
    return sorted(p[len(folder):] for p in pipeline.lake_files() if p.startswith(folder))


def test_a_kill_between_commit_and_manifest_leaves_it_owed_until_the_next_run(make_pipeline):
    pipeline = make_pipeline(**SMALL)
    write_round(pipeline, random.Random(3), inserts=30)
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
    pipeline.expire_lease()
    pipeline.drain_until_caught_up()
    assert owed[0] in _manifest_names(pipeline)
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


CASES = [["before_manifest:1"], ["after_manifest:1"], ["before_manifest:3"], ["after_commit:2"],
         ["after_flush:4"], ["before_commit:3", "before_manifest:1"], ["after_flush:5", "after_append:1"],
         ["after_append:3", "after_manifest:1"]]


@pytest.mark.slow
@pytest.mark.parametrize("failpoints", CASES, ids=["+".join(c) for c in CASES])
def test_manifests_match_after_killed_runs(make_pipeline, failpoints):
    rng = random.Random(11)
    pipeline = make_pipeline(**SMALL)
    kill_runs(pipeline, rng, failpoints)
    write_round(pipeline, rng, inserts=20)
    pipeline.drain_until_caught_up()
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()


def test_verify_reports_a_dead_runs_bytes_as_an_uncommitted_tail(make_pipeline):
    from shared.verify import verify

    pipeline = make_pipeline(**SMALL)
    write_round(pipeline, random.Random(5), inserts=30)
    result = pipeline.drain(failpoint="after_flush:3")
    assert result.killed, result.describe()
    audit = verify(pipeline.settings())
    assert audit.ok and audit.uncommitted, audit.summary()
    assert {f.kind for f in audit.uncommitted} == {"uncommitted_tail"}
    pipeline.expire_lease()
    pipeline.drain_until_caught_up()
    pipeline.assert_exactly_once()
    pipeline.assert_lake_verifies()
