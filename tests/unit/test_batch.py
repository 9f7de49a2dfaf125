"""Batch: routing lines to files, rolling, and dropping replayed sequence numbers."""

from shared.batch import Batch, FileState, PendingFile

DAY = 1_700_000_000 - 1_700_000_000 % 86400


def test_lines_go_to_one_file_per_folder_and_window():
    batch = Batch({}, 3600, 1000, "gen1")
    batch.add("a", DAY + 10, 1, b"x\n")
    batch.add("b", DAY + 20, 2, b"y\n")
    batch.add("a", DAY + 30, 3, b"z\n")
    batch.add("a", DAY + 3600, 4, b"w\n")  # next window
    files = {(f.base.dir, f.base.window): f for f in batch.files()}
    assert bytes(files[("a", DAY)].data) == b"x\nz\n" and list(files[("a", DAY)].seqs) == [1, 3]
    assert list(files[("a", DAY + 3600)].seqs) == [4] and files[("a", DAY + 3600)].base.part == 0
    assert batch.lines == 4 and batch.bytes == 8


def test_appends_to_the_committed_file_and_rolls_by_size():
    state = FileState("a", DAY, 2, 90, '"etag"', 10, "gen1")
    batch = Batch({"a": state}, 3600, 100, "gen1")
    batch.add("a", DAY, 11, b"12345678\n")  # 99 bytes: fits
    batch.add("a", DAY, 12, b"12345678\n")  # would be 108: next part
    first, second = batch.files()
    assert first.base == state and list(first.seqs) == [11]
    assert (second.base.part, second.base.length, second.base.etag, second.base.hwm) == (3, 0, None, 10)


def test_replayed_lines_are_dropped():
    batch = Batch({"a": FileState("a", DAY, 0, 5, '"e"', 7, "gen1")}, 3600, 100, "gen1")
    for seq in (6, 7, 8):
        batch.add("a", DAY, seq, b"l\n")
    assert [list(f.seqs) for f in batch.files()] == [[8]] and batch.skipped == 2


def test_committed_states_replace_older_ones():
    batch = Batch({}, 3600, 100, "g")
    batch.add("a", DAY, 1, b"l\n")
    batch.committed([FileState("a", DAY, 0, 2, '"e1"', 1, "g")])
    assert batch.states["a"].etag == '"e1"' and not batch.files() and batch.bytes == 0


def test_pending_after_hwm():
    pending = PendingFile(FileState("a", DAY, 0, 0, None, 0, "g"))
    for seq, line in ((1, b"one\n"), (2, b"two\n"), (3, b"three\n")):
        pending.add(seq, line)
    assert pending.after(0) == b"one\ntwo\nthree\n" and pending.after(1) == b"two\nthree\n"
    assert pending.after(3) == b""
