"""Commit intents and the numbering of a replay (pure)."""

import pytest

from shared.intent import Intent, Numbering, line_key


def test_without_an_open_range_numbers_follow_the_checkpoint():
    numbering = Numbering(41)
    assert [numbering.assign(k, (1, i)) for i, k in enumerate("abc")] == [42, 43, 44]
    assert not numbering.replaying and numbering.highest() == 44


def _range(durable: dict[str, int], first=1, last=6, last_key="f", last_cluster=(10, 6)):
    intent = Intent(first, last, last_key, last_cluster, {"x/year=2026/month=01/day=01/p": 0})
    return Numbering(first - 1, intent, durable)


def test_an_identical_replay_numbers_every_event_as_the_failed_run_did():
    """The failed run flushed a, c, e (one file) and not b, d, f (another): the replay skips the
    durable ones and gives the others their old numbers, wherever it now routes them."""
    numbering = _range({"a": 1, "c": 3, "e": 5})
    got = [numbering.assign(k, (10, i + 1)) for i, k in enumerate("abcdef")]
    assert got == [None, 2, None, 4, None, 6]
    assert not numbering.replaying and numbering.skipped == 3 and numbering.retired == 0
    assert numbering.assign("g", (11, 1)) == 7


def test_an_event_the_replay_no_longer_delivers_retires_its_number():
    numbering = _range({"a": 1, "c": 3})  # b (2) was not durable and is filtered out now
    assert [numbering.assign(k, (10, i)) for i, k in ((1, "a"), (3, "c"), (4, "d"), (5, "e"), (6, "f"))] == \
        [None, None, 2, 4, 5]
    assert numbering.assign("g", (11, 1)) == 7 and numbering.retired == 1  # 6 is unused


def test_an_event_the_failed_run_did_not_see_gets_a_free_number():
    numbering = _range({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6})
    assert numbering.assign("a", (10, 1)) is None
    assert numbering.assign("new", (10, 2)) == 7  # every number of the range is taken
    assert [numbering.assign(k, (10, i)) for i, k in ((2, "b"), (3, "c"), (4, "d"), (5, "e"), (6, "f"))] == \
        [None] * 5
    assert not numbering.replaying and numbering.assign("g", (11, 1)) == 8


def test_the_range_ends_at_a_later_cluster_time_when_its_last_event_is_gone():
    numbering = _range({"a": 1}, last_key="gone", last_cluster=(10, 5))
    assert numbering.assign("a", (10, 1)) is None
    assert numbering.replaying
    assert numbering.assign("z", (12, 1)) == 7  # after the range: numbers continue after its end
    assert numbering.retired == 5


def test_close_when_caught_up():
    numbering = _range({"a": 1, "b": 2})
    numbering.assign("a", (10, 1))
    numbering.close()
    assert numbering.seq == 6 and numbering.retired == 4 and numbering.assign("x", (20, 1)) == 7


def test_intent_round_trip_and_validation():
    intent = Intent(5, 9, "k", (100, 2), {"db/c/year=2026/month=01/day=02/part-x.jsonl": 10})
    assert Intent.from_json(intent.to_json()) == intent
    with pytest.raises(ValueError):
        Intent.from_json('{"first_seq": 0, "last_seq": 3, "files": {}}')
    with pytest.raises(ValueError):
        Intent.from_json('{"first_seq": 1, "last_seq": 3, "files": {"p": -1}}')
    more = intent.extended({"other": 0, "db/c/year=2026/month=01/day=02/part-x.jsonl": 99}, 12)
    assert more.files["db/c/year=2026/month=01/day=02/part-x.jsonl"] == 10 and more.last_seq == 12
    assert more.last_key == "k" and intent.extended({}, 3, "z", (200, 1), ends_later=True).last_key == "z"


def test_line_keys_match_event_keys():
    assert line_key({"_id": {"_data": "8263AB"}, "_seq": 1}) == "8263AB"
    gap = {"operationType": "gap", "gap": {"to": {"$timestamp": {"t": 17, "i": 3}}}, "_seq": 2}
    assert line_key(gap) == "gap:17.3"
    assert line_key({"operationType": "insert", "_seq": 3}) is None


def test_per_event_intents_record_folders_and_round_trip():
    intent = Intent(5, 9, "k9", (100, 1), {}, ["db/c/year=2026/month=01/day=02"])
    assert Intent.from_json(intent.to_json()) == intent
    rolling = Intent(5, 9, "k9", (100, 1), {"db/c/year=2026/month=01/day=02/part-x.jsonl": 10})
    assert "folders" not in rolling.to_json()  # the rolling layout's intent is as before
    grown = rolling.extended({}, 12, folders=["db/d/year=2026/month=01/day=02"])
    assert grown.files == rolling.files and grown.folders == ["db/d/year=2026/month=01/day=02"]
    with pytest.raises(ValueError):
        Intent.from_json('{"first_seq":1,"last_seq":1,"files":{},"folders":"x"}')


def test_a_replay_skips_per_event_files_by_the_hash_of_their_token():
    from shared.intent import key_hash

    intent = Intent(11, 14, "k14", (100, 4), {}, ["f"])
    numbering = Numbering(10, intent, {}, {key_hash("k11"): 11, key_hash("k13"): 13})
    assert [numbering.assign(k, (100, i)) for i, k in enumerate(["k11", "k12", "k13", "k14", "k15"], 1)] == [
        None, 12, None, 14, 15]
    assert numbering.skipped == 2 and numbering.retired == 0
