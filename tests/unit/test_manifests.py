"""Manifests, day markers and the readers' state: names, contents and day arithmetic (pure)."""

import hashlib
import json

import pytest

from shared import manifests as mf


def test_names_sort_in_commit_order_and_parse_back():
    names = [mf.manifest_name(a, b) for a, b in [(1, 9), (10, 10), (11, 12000)]]
    assert names == sorted(names)
    assert [mf.parse_manifest_name(n) for n in names] == [(1, 9), (10, 10), (11, 12000)]
    assert mf.parse_manifest_name("_tmp") is None and mf.parse_manifest_name("1-2.json") is None
    assert mf.manifest_dir("coll-shop.orders", "ab12cd34") == "_manifests/coll-shop.orders/ab12cd34"
    assert mf.manifest_dir("a/b", "g") == "_manifests/a%2Fb/g"  # a name never escapes its folder


def test_a_span_read_back_describes_its_lines():
    data = b'{"clusterTime":{"$timestamp":{"t":100,"i":1}},"_seq":7}\n{"_seq":{"$numberLong":"8"}}\n'
    span, seqs = mf.span_of("d/c/year=2026/month=01/day=02/part.jsonl", 10, data)
    assert seqs == [7, 8]
    assert (span.start, span.end, span.first_seq, span.last_seq, span.events) == (10, 10 + len(data), 7, 8, 2)
    assert span.first_cluster == span.last_cluster == 100 and span.sha256 == hashlib.sha256(data).hexdigest()
    assert mf.span_day(span) == "2026-01-02"
    with pytest.raises(mf.BadLine, match="torn"):
        mf.span_of("p", 0, data[:-3])
    with pytest.raises(mf.BadLine):
        mf.span_of("p", 0, b'{"no_seq": 1}\n')


def test_retired_numbers_are_runs_of_the_numbers_no_line_holds():
    assert mf.retired_ranges(5, 12, {5, 6, 9, 12}) == [[7, 8], [10, 11]]
    assert mf.retired_ranges(1, 3, {1, 2, 3}) == []
    assert mf.retired_count([[7, 8], [10, 11]]) == 4


def test_a_manifest_is_deterministic_and_lists_each_span():
    span = mf.Span("a/b/year=2026/month=01/day=02/p.jsonl", 0, 10, 1, 3, 3, 86400, 86401, "00" * 32)
    body = mf.manifest_body("p", "g", 1, 4, [span], [[4, 4]], "2026-01-02T00:00:00Z", {span.path})
    assert body == mf.manifest_body("p", "g", 1, 4, [span], [[4, 4]], "2026-01-02T00:00:00Z", {span.path})
    doc = mf.parse_manifest(body)
    assert doc["events"] == 3 and doc["retired"] == [[4, 4]]
    assert doc["files"][0]["late"] is True and doc["files"][0]["first_cluster_time"] == "1970-01-02T00:00:00Z"
    with pytest.raises(ValueError):
        mf.parse_manifest(b'{"format": 2, "files": []}')


@pytest.mark.parametrize("position,grace,expected", [
    (None, 3600, None),
    (86400 * 20 + 3599, 3600, "1970-01-19"),  # 1970-01-20 ended, but not its grace
    (86400 * 20 + 3600, 3600, "1970-01-20"),
    (86400 * 21 + 3599, 3600, "1970-01-20"),
    (86400 * 21 + 3600, 3600, "1970-01-21"),
    (86400 * 21, 0, "1970-01-21"),
])
def test_a_day_is_complete_once_the_position_is_past_its_end_plus_the_grace(position, grace, expected):
    assert mf.complete_through(position, grace) == expected


def test_tallies_add_up_per_folder_and_day():
    s1 = mf.Span("f/p1", 0, 10, 1, 2, 2, 5, 6, "")
    s2 = mf.Span("f/p1", 10, 25, 5, 9, 3, 7, 8, "")
    tally = mf.tally_add(None, s1, "m1")
    tally = mf.tally_add(tally, s2, "m2")
    assert tally == [5, 1, 9, 25, "m1", "m2", 2]
    body = json.loads(mf.marker_body("p", "g", "1970-01-01", "f", tally, "1970-01-02T01:00:00Z", 3600, "_manifests/p/g"))
    assert body["events"] == 5 and body["manifests"] == {"folder": "_manifests/p/g", "first": "m1", "last": "m2",
                                                         "count": 2}


def test_the_state_kept_in_the_row_is_compressed_and_round_trips():
    state = {"owed": [{"name": "x", "body": "{}" * 1000, "late": []}], "through": None, "days": {}}
    packed = mf.pack(state)
    assert mf.unpack(packed) == state and len(json.dumps(packed)) < 500
    assert mf.unpack(None) == {}


def test_verify_counts_retired_numbers_as_present_and_finds_gaps_and_duplicates():
    from shared.verify import VerifyReport, _check_numbers

    report = VerifyReport("p")
    _check_numbers(report, "m", 5, 10, [[7, 8]], [5, 6, 9, 10])
    assert report.ok
    _check_numbers(report, "m", 5, 10, [], [5, 6, 9, 10])
    assert [p.kind for p in report.problems] == ["seq_gap"]
    report = VerifyReport("p")
    _check_numbers(report, "m", 5, 7, [], [5, 6, 6, 7])
    assert [p.kind for p in report.problems] == ["seq_duplicate"]
