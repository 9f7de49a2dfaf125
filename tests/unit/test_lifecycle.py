"""Gap records and dead letters: shapes and folders (pure)."""

import bson
from bson import Int64, Timestamp

from shared import lifecycle
from shared.encode import LineEncoder, read_line


def test_gap_record_names_the_lost_window():
    gap = lifecycle.gap_window(1_700_000_000, Timestamp(1_700_000_500, 7), 41, 286, "lost " * 200)
    assert gap["to"] == "1700000500.7" and gap["afterSeq"] == 41 and len(gap["reason"]) == 500
    line = read_line(LineEncoder().encode(lifecycle.gap_record(gap, "db", "coll"), 42))
    assert line["operationType"] == "gap" and line["_seq"] == 42
    assert line["clusterTime"] == Timestamp(1_700_000_500, 7) == line["gap"]["to"]
    assert line["gap"]["from"] == Timestamp(1_700_000_000, 0) and line["gap"]["afterSeq"] == 41
    assert line["ns"] == {"db": "db", "coll": "coll"} and line["gap"]["code"] == 286


def test_gap_without_a_start_and_its_folders_by_scope():
    gap = lifecycle.gap_window(None, Timestamp(1_700_000_500, 1), 0, None, "")
    assert bson.decode(lifecycle.gap_record(gap, None, None))["gap"]["from"] is None
    day = "year=2023/month=11/day=14"
    assert lifecycle.gap_folder(gap, "db", "coll") == f"db/coll/{day}"
    assert lifecycle.gap_folder(gap, "db", None) == f"db/_events/{day}"
    assert lifecycle.gap_folder(gap, None, None) == f"_cluster/_events/{day}"


def test_timestamps_round_trip_as_text():
    ts = Timestamp(1_700_000_000, 12)
    assert lifecycle.parse_timestamp(lifecycle.timestamp_text(ts)) == ts
    assert lifecycle.parse_timestamp("5") == Timestamp(5, 0)


def test_dead_letter_keeps_the_event_and_says_why():
    event = bson.encode({"_id": {"_data": "82"}, "operationType": "update", "documentKey": {"_id": 1},
                         "clusterTime": Timestamp(1, 1), "ns": {"db": "d", "coll": "c"}})
    doc = bson.decode(lifecycle.dead_letter_record(event, 10334))
    assert doc["deadLetter"] == {"reason": "BSONObjectTooLarge", "code": 10334}
    assert doc["documentKey"] == {"_id": 1} and doc["_id"] == {"_data": "82"}
    assert lifecycle.dead_letter_folder("d/c/year=2024/month=01/day=02") == "d/c/_dead_letter/year=2024/month=01/day=02"
    assert set(lifecycle.STRIP_LARGE_FIELDS["$project"]) == {"fullDocument", "fullDocumentBeforeChange",
                                                             "updateDescription"}


def test_describe_event_shows_no_document_fields():
    text = lifecycle.describe_event({"operationType": "insert", "documentKey": {"_id": Int64(3)},
                                     "fullDocument": {"secret": "x"}, "ns": {"db": "d", "coll": "c"}})
    assert "secret" not in text and "insert" in text
