"""The README's "Reading the lake" recipes (DuckDB and Polars), run as written against files
downloaded from the local stack: one day, and what is new since a manifest."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from shared import layout
from shared import manifests as mf
from shared.checkpoint import CheckpointStore

from .test_drain import make_mix

README = Path(__file__).resolve().parents[2] / "README.md"


def recipe(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- recipe: {re.escape(name)} -->\n```python\n(.*?)```", text, re.S)
    assert match, f"README has no recipe {name!r}"
    return match.group(1)


@pytest.fixture
def local_lake(pipeline, mongo_client, tmp_path):
    """A lake of several manifests, downloaded; returns the recipes' variables and the lines."""
    pipeline.run()
    make_mix(mongo_client, pipeline.dbs)
    pipeline.run(ROLL_MAX_BYTES="2KiB", MAX_BUFFER_BYTES="3KiB")
    mongo_client[pipeline.dbs[0]].orders.insert_many([{"i": i} for i in range(5)])
    pipeline.run()
    root = tmp_path / "lake"
    for path, data in pipeline.files(everything=True).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    checkpoint = CheckpointStore(pipeline.settings).load().checkpoint
    folder = root / mf.manifest_dir(pipeline.settings.pipeline_name, checkpoint.generation)
    names = sorted(p.name for p in folder.iterdir())
    lines = pipeline.lines()
    day = datetime.fromtimestamp(lines[0]["clusterTime"].time, tz=timezone.utc)
    variables = {
        "LAKE": str(root), "DAY": f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}",
        "PIPELINE": layout.encode_name(pipeline.settings.pipeline_name), "GENERATION": checkpoint.generation,
        "SINCE": names[1],
    }
    return variables, lines, [json.loads((folder / n).read_bytes()) for n in names]


def test_duckdb_reads_one_day_and_what_is_new_since_a_manifest(local_lake):
    variables, lines, manifests = local_lake
    assert len(manifests) >= 4 and len({line["__path"].rpartition("/")[0] for line in lines}) == 3
    scope = dict(variables)
    exec(recipe("duckdb-day"), scope)
    rows = scope["day_rows"]
    assert [r[0] for r in rows] == [line["_seq"] for line in lines]
    assert {(r[2], r[3]) for r in rows} == {(line["ns"]["db"], line["ns"]["coll"]) for line in lines}
    assert {tuple(r[4:7]) for r in rows} == {tuple(int(x.split("=")[1]) for x in variables["DAY"].split("/"))}
    scope = dict(variables)
    exec(recipe("duckdb-new"), scope)
    first = manifests[2]["first_seq"]
    assert [r[0] for r in scope["new_rows"]] == [line["_seq"] for line in lines if line["_seq"] >= first]
    assert scope["last"] == mf.manifest_name(manifests[-1]["first_seq"], manifests[-1]["last_seq"])
    # nothing new after the last manifest
    scope = {**variables, "SINCE": scope["last"]}
    exec(recipe("duckdb-new"), scope)
    assert scope["new_rows"] == []


def test_polars_reads_one_day_and_what_is_new_since_a_manifest(local_lake):
    variables, lines, manifests = local_lake
    scope = dict(variables)
    exec(recipe("polars-day"), scope)
    df = scope["day_df"]
    assert df["_seq"].to_list() == [line["_seq"] for line in lines]
    day = [int(x.split("=")[1]) for x in variables["DAY"].split("/")]
    assert df.select("year", "month", "day").unique().rows() == [tuple(day)]
    scope = dict(variables)
    exec(recipe("polars-new"), scope)
    first = manifests[2]["first_seq"]
    assert scope["new_df"]["_seq"].to_list() == [line["_seq"] for line in lines if line["_seq"] >= first]
