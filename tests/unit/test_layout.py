"""Layout: partition folders, reversible safe names, file names, roll decisions."""

import calendar

import pytest

from shared import layout
from shared.layout import OpenFile, decode_name, encode_name, next_file, partition_dir


def ts(text):
    return calendar.timegm(__import__("time").strptime(text, "%Y-%m-%dT%H:%M:%S"))


@pytest.mark.parametrize("name", ["orders", "a.b", "snake_case", "..", ".", "../etc", "a/b", "%41", "year=2024",
                                  "_hidden", ".dot", "sp ace", "tab\tx", "ctl\x01", "é中文", "emoji😀", "a~b", "x" * 120])
def test_encoding_is_safe_and_reversible(name):
    encoded = encode_name(name)
    assert "/" not in encoded and encoded not in (".", "..") and not encoded.startswith(("_", "."))
    assert "=" not in encoded and all(32 < ord(c) < 127 for c in encoded)
    assert decode_name(encoded) == name


def test_distinct_names_never_collide():
    names = ["a%2Fb", "a/b", "A/b", "_x", "%5Fx", ".x", "%2Ex", "é", "%C3%A9", "x" * 300, "x" * 301]
    assert len({encode_name(n) for n in names}) == len(names)


def test_long_names_are_shortened_with_a_hash():
    a, b = encode_name("é" * 150), encode_name("é" * 149 + "e")
    assert len(a) <= 200 and len(b) <= 200 and a != b and "~" in a
    with pytest.raises(ValueError, match="shortened"):
        decode_name(a)


def test_partition_dir_by_utc_cluster_time():
    assert partition_dir("shop", "orders", ts("2026-03-01T23:59:59")) == "shop/orders/year=2026/month=03/day=01"
    assert partition_dir("shop", "orders", ts("2026-03-02T00:00:00")) == "shop/orders/year=2026/month=03/day=02"
    assert partition_dir("shop", None, ts("2026-03-02T00:00:00")).startswith("shop/_events/")
    assert partition_dir(None, None, ts("2026-03-02T00:00:00")).startswith("_cluster/_events/")
    assert partition_dir("..", "../x", 0) == "%2E./%2E.%2Fx/year=1970/month=01/day=01"


def test_file_names_sort_in_event_order():
    names = [layout.file_name(w, p, "abcd1234") for w, p in [(3600, 0), (3600, 1), (3600, 10), (7200, 0), (36000, 0)]]
    assert names == sorted(names)
    assert names[0] == "part-19700101T0100Z-00000-abcd1234.jsonl"


def test_roll_by_window_and_size():
    assert next_file(None, 3600, 10, 100) == OpenFile(3600, 0, 0)
    assert next_file(OpenFile(3600, 0, 50), 3600, 10, 100) == OpenFile(3600, 0, 50)
    assert next_file(OpenFile(3600, 0, 95), 3600, 10, 100) == OpenFile(3600, 1, 0)
    assert next_file(OpenFile(3600, 0, 0), 3600, 500, 100) == OpenFile(3600, 0, 0)  # an oversize line: own file
    assert next_file(OpenFile(3600, 3, 95), 7200, 10, 100) == OpenFile(7200, 0, 0)
    assert layout.window_start(7199, 3600) == 3600


def test_stale_folders_are_those_a_day_behind_the_last_event():
    folders = ["a/b/year=2026/month=03/day=01", "a/b/year=2026/month=03/day=02", "a/b/year=2026/month=03/day=03",
               "_cluster/_events/year=2025/month=12/day=31", "not-a-folder"]
    assert layout.folder_day(folders[0]) == "2026-03-01" and layout.folder_day("x") is None
    stale = layout.stale_folders(folders, ts("2026-03-03T10:00:00"))
    assert stale == ["a/b/year=2026/month=03/day=01", "_cluster/_events/year=2025/month=12/day=31"]
    assert layout.stale_folders(folders, None) == []


def test_per_event_names_sort_in_seq_order_and_say_what_they_are():
    names = [layout.event_file_name(seq, "insert", "0123456789abcdef", "a1b2c3d4") for seq in (9, 10, 2**62)]
    assert names[0] == "00000000000000000009-insert-0123456789abcdef-a1b2c3d4.json"
    assert sorted(names) == names
    assert [layout.parse_event_file_name(n)[0] for n in names] == [9, 10, 2**62]
    odd = layout.event_file_name(3, "drop/../x y", "0123456789abcdef", "a1b2c3d4")
    assert "/" not in odd and layout.parse_event_file_name(odd) == (3, "drop%2F..%2Fx%20y", "0123456789abcdef",
                                                                    "a1b2c3d4")
    assert layout.parse_event_file_name("part-20260101T0000Z-00000-a1b2c3d4.jsonl") is None
