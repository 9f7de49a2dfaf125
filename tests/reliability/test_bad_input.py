"""Corrupt or foreign checkpoint rows: the run refuses with a clear, terminal message, writes
nothing to the lake and leaves the rows as they were."""

from __future__ import annotations

import random

import pytest
from azure.data.tables import UpdateMode

from shared.checkpoint import folder_row_key

from .harness import write_round


def _rows(pipeline) -> dict:
    table = pipeline.store()._table
    return {r["RowKey"]: dict(r) for r in table.query_entities(f"PartitionKey eq '{pipeline.name}'")}


def _refused(pipeline, *expected: str) -> None:
    rows, files = _rows(pipeline), pipeline.lake_files()
    result = pipeline.drain()
    assert result.returncode == 2 and result.outcome == "failed", result.describe()
    assert result.report["error"]["kind"] == "terminal"
    message = result.report["error"]["message"]
    assert all(word in message for word in expected), message
    assert _rows(pipeline) == rows, "the refused run changed the table"
    assert pipeline.lake_files() == files, "the refused run wrote to the lake"


@pytest.fixture
def ran(make_pipeline):
    """A pipeline that has run once (a checkpoint row and folder rows), with new events waiting."""
    pipeline = make_pipeline(ROLL_MAX_BYTES="8KiB")
    rng = random.Random(1)
    write_round(pipeline, rng, inserts=5)
    assert pipeline.drain().outcome == "caught_up"
    write_round(pipeline, rng, inserts=5)
    return pipeline


CORRUPT_CHECKPOINT = {
    "seq_text": {"seq": "abc"},
    "seq_negative": {"seq": -5},
    "schema": {"schema": 99},
    "token_kind": {"token_kind": "evil"},
    "token_garbage": {"token": "{not json"},
    "generation_path": {"generation": "../../../outside"},
    "lease_text": {"lease_until": "soon"},
    "gap_garbage": {"gap": "{"},
}


@pytest.mark.slow
@pytest.mark.parametrize("change", list(CORRUPT_CHECKPOINT.values()), ids=list(CORRUPT_CHECKPOINT))
def test_a_corrupt_checkpoint_row_is_refused(ran, change):
    table = ran.store()._table
    table.update_entity({"PartitionKey": ran.name, "RowKey": "checkpoint", **change}, mode=UpdateMode.MERGE)
    _refused(ran, "corrupt", ran.name)


@pytest.mark.slow
def test_a_checkpoint_row_without_required_fields_is_refused(ran):
    table = ran.store()._table
    row = table.get_entity(ran.name, "checkpoint")
    for name in ("identity", "seq", "generation"):
        row.pop(name, None)
    table.update_entity(row, mode=UpdateMode.REPLACE)
    _refused(ran, "corrupt")


@pytest.mark.slow
@pytest.mark.parametrize("change", [{"gen": "../../../escape"}, {"gen": "a/b"}, {"part": -1}, {"length": "x"},
                                    {"dir": "elsewhere/folder"}], ids=["gen-dots", "gen-slash", "part", "length", "dir"])
def test_a_corrupt_folder_row_is_refused(ran, change):
    table = ran.store()._table
    row = next(r for key, r in _rows(ran).items() if key.startswith("f-"))
    table.update_entity({"PartitionKey": ran.name, "RowKey": row["RowKey"], **change}, mode=UpdateMode.MERGE)
    _refused(ran, "corrupt")


@pytest.mark.slow
def test_folder_rows_without_a_checkpoint_row_are_refused(ran):
    ran.store()._table.delete_entity(ran.name, "checkpoint")
    _refused(ran, "no checkpoint row")


@pytest.mark.slow
def test_a_checkpoint_of_another_stream_or_lake_is_refused(ran):
    """The same PIPELINE_NAME with another filter, scope, full-document option, lake or cluster: its
    token and numbering describe another stream (or its files are in another lake). The message
    names what changed."""
    ran.env["MONGO_PIPELINE"] = '[{"$match": {"operationType": "insert"}}]'
    _refused(ran, "another stream or lake", "MONGO_PIPELINE", "PIPELINE_NAME")
    ran.env["MONGO_PIPELINE"] = "[]"
    ran.env["MONGO_COLL"] = "a"
    _refused(ran, "another stream or lake", "MONGO_COLL")
    ran.env["MONGO_COLL"] = ""
    ran.env["MONGO_FULL_DOC"] = "updateLookup"
    _refused(ran, "MONGO_FULL_DOC")
    ran.env["MONGO_FULL_DOC"] = "default"
    ran.env["ADLS_FILESYSTEM"] = ran.env["ADLS_FILESYSTEM"] + "x"
    _refused(ran, "ADLS_FILESYSTEM")


@pytest.mark.slow
def test_a_resume_token_of_another_pipeline_is_refused_by_identity(make_pipeline):
    """A checkpoint row copied from another pipeline (token and all) into this pipeline's name."""
    first, second = make_pipeline(), make_pipeline()
    write_round(first, random.Random(2), inserts=3)
    assert first.drain().outcome == "caught_up"
    table = first.store()._table
    row = dict(table.get_entity(first.name, "checkpoint"))
    row["PartitionKey"] = second.name
    table.upsert_entity(row)
    _refused(second, "another stream or lake")
    assert folder_row_key("x") != folder_row_key("y")
