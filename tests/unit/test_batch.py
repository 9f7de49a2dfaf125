"""Batch: routing lines to files and rolling them."""

from shared.batch import PROJECTED, Batch, FileState, newest

DAY = 1_700_000_000 - 1_700_000_000 % 86400


def test_lines_go_to_one_file_per_folder_and_window():
    batch = Batch({}, 3600, 1000, "gen1")
    batch.add("a", DAY + 10, 1, b"x\n")
    batch.add("b", DAY + 20, 2, b"y\n")
    batch.add("a", DAY + 30, 3, b"z\n")
    batch.add("a", DAY + 3600, 4, b"w\n")  # next window
    files = {(f.base.dir, f.base.window): f for f in batch.files()}
    first = files[("a", DAY)]
    assert bytes(first.data) == b"x\nz\n" and (first.first_seq, first.last_seq, first.events) == (1, 3, 2)
    assert (first.first_cluster, first.last_cluster) == (DAY + 10, DAY + 30)
    nxt = files[("a", DAY + 3600)]
    assert (nxt.first_seq, nxt.last_seq, nxt.base.part) == (4, 4, 0)
    assert batch.events == 4 and batch.bytes == 8 and batch.folders == 2


def test_appends_to_the_committed_file_and_rolls_by_size():
    state = FileState("a", DAY, 2, 90, '"etag"', "gen1")
    batch = Batch({"a": state}, 3600, 100, "gen1")
    batch.add("a", DAY, 11, b"12345678\n")  # 99 bytes: fits
    batch.add("a", DAY, 12, b"12345678\n")  # would be 108: next part
    first, second = batch.files()
    assert first.base == state and first.last_seq == 11 and first.end == 99
    assert (second.base.part, second.base.length, second.base.etag) == (3, 0, None)


def test_a_late_event_stays_in_the_open_file():
    batch = Batch({"a": FileState("a", DAY + 3600, 0, 5, '"e"', "g")}, 3600, 100, "g")
    batch.add("a", DAY + 10, 1, b"l\n")  # an earlier window: appended, never a reopened window
    (only,) = batch.files()
    assert only.base.window == DAY + 3600


def test_a_sealed_batch_leaves_projected_states_for_the_next():
    batch = Batch({}, 3600, 100, "g")
    batch.add("a", DAY, 1, b"l\n")
    (sealed,) = batch.seal()
    assert sealed.base.etag is None and not batch.files() and batch.bytes == 0
    assert (batch.states["a"].length, batch.states["a"].etag) == (2, PROJECTED)
    batch.add("a", DAY, 2, b"m\n")  # appends where the sealed file will end
    (following,) = batch.files()
    assert (following.base.part, following.base.length, following.base.etag) == (0, 2, PROJECTED)


def test_adopted_states_replace_older_ones():
    batch = Batch({"a": FileState("a", DAY, 0, 2, '"e1"', "g")}, 3600, 100, "g")
    batch.adopt([FileState("a", DAY, 3, 9, '"e3"', "g"), FileState("a", DAY, 1, 9, '"e2"', "g")])
    assert batch.states["a"].part == 3
    batch.adopt([FileState("a", DAY, 2, 9, '"old"', "g")])  # older than what the folder has
    assert batch.states["a"].part == 3


def test_newest_state_per_folder():
    states = [FileState("a", DAY, 0, 1, "x", "g"), FileState("a", DAY + 3600, 0, 1, "y", "g"),
              FileState("b", DAY, 4, 1, "z", "g")]
    assert {k: v.etag for k, v in newest(states).items()} == {"a": "y", "b": "z"}


def test_a_replay_puts_each_line_in_the_recovered_file_of_its_window():
    """A failed run wrote files of two windows of one folder; its replay reads events of the earlier
    window first. They go to that window's file (not to the later one, where the folder's newest
    state is), the later window's lines to the later file as read back, and each commit keeps the
    folder's row at the newest file the lake holds."""
    early = FileState("a", DAY, 0, 40, '"e0"', "g")
    late = FileState("a", DAY + 3600, 0, 30, '"e1"', "g")
    batch = Batch({"a": FileState("a", DAY, 0, 10, '"c"', "g")}, 3600, 1000, "g")
    batch.adopt([early, late])
    assert batch.states["a"] == late
    batch.add("a", DAY + 5, 1, b"x\n")
    files = batch.seal()
    assert [f.base for f in files] == [early]
    assert batch.rows_ahead(files) == [late]  # the row stays at the later file
    batch.add("a", DAY + 6, 2, b"y\n")
    batch.add("a", DAY + 3601, 3, b"z\n")
    first, second = batch.files()
    assert (first.base.order, first.base.length, first.base.etag) == (early.order, 42, PROJECTED)
    assert second.base == late and bytes(second.data) == b"z\n"
    assert batch.rows_ahead(batch.files()) == []


def test_a_replay_goes_on_at_the_newest_part_of_a_window_and_rolls_from_it():
    parts = [FileState("a", DAY, 0, 95, '"p0"', "g"), FileState("a", DAY, 1, 60, '"p1"', "g"),
             FileState("a", DAY + 3600, 0, 95, '"q0"', "g")]
    batch = Batch({}, 3600, 100, "g")
    batch.adopt(parts)
    batch.add("a", DAY, 1, b"1234\n")  # fits in part 1 of the first window
    batch.add("a", DAY + 3600, 2, b"12345678\n")  # the later window's file is full: its next part
    first, second = batch.files()
    assert first.base == parts[1]
    assert (second.base.window, second.base.part, second.base.length, second.base.etag) == (DAY + 3600, 1, 0, None)
    assert batch.rows_ahead(batch.files()) == []


def test_once_a_folder_was_appended_to_a_replay_never_goes_back_a_window():
    early = FileState("a", DAY, 0, 4, '"e0"', "g")
    late = FileState("a", DAY + 3600, 0, 4, '"e1"', "g")
    batch = Batch({}, 3600, 100, "g")
    batch.adopt([early, late])
    batch.add("a", DAY + 3601, 1, b"l\n")
    batch.add("a", DAY + 1, 2, b"e\n")  # an earlier window after a later one: stays in the open file
    (only,) = batch.files()
    assert only.base == late and only.events == 2
    batch.seal()
    batch.add("a", DAY + 2, 3, b"e\n")  # nor in the next batch
    (only,) = batch.files()
    assert only.base.order == late.order and only.base.length == 8
