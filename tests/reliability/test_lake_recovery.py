"""Lake recovery against the real emulator, in process: a batch flushed by a run that died before
its commit is written again by the next run from the same checkpoint."""

from __future__ import annotations

from shared.batch import Batch
from shared.encode import read_line
from shared.lake import Lake

DAY = 1_700_000_000 - 1_700_000_000 % 86400


def _batch(lines_per_folder: dict[str, list[int]], states=None) -> Batch:
    batch = Batch(dict(states or {}), 3600, 120, "gen1")
    for folder, seqs in lines_per_folder.items():
        for seq in seqs:
            batch.add(folder, DAY + seq, seq, b'{"_seq": %d, "pad": "%s"}\n' % (seq, b"x" * 40))
    return batch


def _seqs(pipeline, lake: Lake) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path, data in sorted(pipeline.lake_files().items()):
        out.setdefault(path.rsplit("/", 1)[0], []).extend(read_line(raw)["_seq"] for raw in data.splitlines())
    return out


def test_a_replayed_batch_of_several_parts_is_written_once(make_pipeline):
    """Three parts of one folder flushed, commit lost; the replay recovers the first part (nothing
    new in it) and must not write the later parts' lines again into new parts."""
    pipeline = make_pipeline()
    lake = Lake(pipeline.settings())
    plan = {"db/a": list(range(1, 11)), "db/b": list(range(11, 14))}
    first = _batch(plan)
    assert len([f for f in first.files() if f.base.dir == "db/a"]) >= 3
    lake.write(first.files())  # the run dies here, before its commit
    replay = _batch({k: v + [v[-1] + 100] for k, v in plan.items()})  # same lines, plus one new each
    results = Lake(pipeline.settings()).write(replay.files())
    seqs = _seqs(pipeline, lake)
    assert seqs == {"db/a": list(range(1, 11)) + [110], "db/b": [11, 12, 13, 113]}
    latest = {r.dir: r for r in results}
    assert latest["db/a"].hwm == 110 and latest["db/b"].hwm == 113
