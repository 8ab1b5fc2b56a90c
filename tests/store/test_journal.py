"""The journal's format: torn tails are cut, damage in the middle is reported, the
header is checked, format-1 journals are replayed and rewritten, failed appends
leave nothing behind."""

from __future__ import annotations

import asyncio
import errno
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.store._powerloss import FailingFiles
from tests.store.conftest import frames_only
from wfnb.errors import JournalCorrupt, StoreError
from wfnb.store.base import Batch, RunRecord
from wfnb.store.duckdb import DuckDBStore
from wfnb.store.duckdb._files import OsFiles
from wfnb.store.duckdb._journal import CHUNK, HEADER, PAGE, Journal, encode_frame, file_header


def rows(i: int) -> tuple[list[object], ...]:
    return ([], [(f"run{i}", "x" * i)], [], [], [])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "j.journal"


def write_frames(path: Path, n: int) -> list[int]:
    """``n`` frames (seqs 1..n), the preallocated zeros after them left as they
    are; returns each frame's start offset."""
    journal = Journal(path)
    journal.open()
    starts, offset = [], len(HEADER)
    for i in range(1, n + 1):
        starts.append(offset)
        journal.append(i, rows(i))
        offset += len(encode_frame(i, pickle.dumps(rows(i), protocol=5)))
    journal.close()
    return starts


def reopen(path: Path) -> list[tuple[int, object]]:
    journal = Journal(path)
    try:
        return journal.open()
    finally:
        journal.close()


def flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_a_new_journal_starts_with_its_checksummed_header(path: Path) -> None:
    assert reopen(path) == []
    assert path.read_bytes() == HEADER
    assert HEADER[:8] == b"WFNBJRNL" and struct.unpack_from("<I", HEADER, 8) == (2,)


def test_the_preallocated_zeros_are_kept_on_open_and_the_next_frame_goes_over_them(
    path: Path,
) -> None:
    """A store closes its file after each idle second and opens it again for the
    next run: the reopen keeps the zeros ahead (their size made durable by one
    fsync, as a crashed writer may not have), so that run's first frame is written
    in place with an fdatasync instead of growing the file with an fsync."""
    starts = write_frames(path, 2)
    assert path.stat().st_size == PAGE  # the frames, then zeros
    files = Logged()
    journal = Journal(path, files)
    assert [seq for seq, _ in journal.open()] == [1, 2]
    assert files.done == ["fsync", "fsync_dir"]
    assert path.stat().st_size == PAGE
    files.done.clear()
    journal.append(3, rows(3))
    assert files.done == ["write", "fdatasync"]
    journal.close()
    assert [seq for seq, _ in reopen(path)] == [1, 2, 3]
    assert path.stat().st_size == PAGE
    assert len(frames_only(path)) > starts[1]


def test_the_file_grows_by_doubling_in_pages_up_to_a_chunk_a_time(path: Path) -> None:
    journal = Journal(path)
    journal.open()
    sizes = []
    for i in range(1, 2200):
        journal.append(i, rows(300))
        if not sizes or path.stat().st_size != sizes[-1]:
            sizes.append(path.stat().st_size)
    journal.close()
    assert sizes[:4] == [PAGE, 2 * PAGE, 4 * PAGE, 8 * PAGE]
    assert {b - a for a, b in zip(sizes[-3:-1], sizes[-2:], strict=True)} == {CHUNK}


class _SmallDisk(OsFiles):
    """A disk that holds ``room`` bytes of the journal: a write past that writes
    what fits and says so (a short write), as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write_at(self, fd: int, data: bytes, offset: int) -> int:
        return super().write_at(fd, data[: max(0, self.room - offset)], offset)


def test_a_disk_too_full_for_the_zeros_ahead_still_takes_each_frame_that_fits(
    path: Path,
) -> None:
    """Growing writes zeros ahead of the frame; with no room for them the frame is
    written alone, so the journal refuses only a frame that does not fit itself."""
    disk = _SmallDisk(room=3 * PAGE + 100)
    journal = Journal(path, disk)
    journal.open()
    acknowledged = []
    for seq in range(1, 200):
        try:
            journal.append(seq, rows(50))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            break
        acknowledged.append(seq)
    journal.close()
    assert path.stat().st_size > disk.room - 200  # filled to within a frame
    assert [seq for seq, _ in reopen(path)] == acknowledged


def test_a_torn_frame_over_the_preallocated_zeros_is_a_torn_tail(path: Path) -> None:
    starts = write_frames(path, 3)
    data = bytearray(path.read_bytes())
    end = len(frames_only(path))
    data[starts[2] + (end - starts[2]) // 2 : end] = bytes(end - starts[2] - (end - starts[2]) // 2)
    path.write_bytes(bytes(data))  # frame 3's second half never reached the disk
    assert [seq for seq, _ in reopen(path)] == [1, 2]
    assert path.stat().st_size == starts[2]


def test_every_torn_tail_is_cut_silently(path: Path) -> None:
    starts = write_frames(path, 3)
    whole = frames_only(path)
    for cut in range(starts[2] + 1, len(whole)):
        path.write_bytes(whole[:cut])
        assert [seq for seq, _ in reopen(path)] == [1, 2]
        assert path.stat().st_size == starts[2]  # cut back to the last whole frame


@pytest.mark.parametrize("where", ["seq", "length", "crc", "payload"])
def test_a_bit_flip_in_a_middle_frame_is_reported_not_dropped(path: Path, where: str) -> None:
    starts = write_frames(path, 4)
    offset = starts[1] + {"seq": 0, "length": 9, "crc": 12, "payload": 20}[where]
    flip(path, offset, bit=3)
    damaged = path.read_bytes()
    with pytest.raises(JournalCorrupt, match="offset") as caught:
        reopen(path)
    assert caught.value.offset == starts[1] and caught.value.path == str(path)
    assert path.read_bytes() == damaged  # nothing cut: the evidence is kept


def test_every_bit_flip_in_a_middle_frame_is_caught(path: Path) -> None:
    starts = write_frames(path, 3)
    clean = path.read_bytes()
    for offset in range(starts[1], starts[2]):
        for bit in (0, 7):
            path.write_bytes(clean)
            flip(path, offset, bit)
            with pytest.raises(JournalCorrupt):
                reopen(path)


def test_a_bit_flip_in_the_last_frame_counts_as_a_torn_tail(path: Path) -> None:
    starts = write_frames(path, 3)
    flip(path, starts[2] + 20)
    assert [seq for seq, _ in reopen(path)] == [1, 2]


@pytest.mark.parametrize("frames", [0, 2])
def test_every_bit_flip_in_the_file_header_is_reported(path: Path, frames: int) -> None:
    write_frames(path, frames)
    clean = path.read_bytes()
    for offset in range(len(HEADER)):
        for bit in (0, 5):
            path.write_bytes(clean)
            flip(path, offset, bit)
            with pytest.raises(JournalCorrupt, match="file header"):
                reopen(path)


def test_a_journal_from_a_newer_wfnb_is_refused(path: Path) -> None:
    path.write_bytes(file_header(3))
    with pytest.raises(JournalCorrupt, match="upgrade wfnb"):
        reopen(path)


def format_1(frames: list[tuple[int, bytes]]) -> bytes:
    header = struct.Struct("<QII")
    return b"".join(header.pack(s, len(p), zlib.crc32(p)) + p for s, p in frames)


def test_a_format_1_journal_is_replayed_and_rewritten_as_format_2(path: Path) -> None:
    payloads = [(seq, pickle.dumps(rows(seq), protocol=5)) for seq in (7, 8)]
    old = format_1(payloads)
    path.write_bytes(old + b"\x09\x00\x00\x00torn")  # with a torn tail, as format 1 had
    assert reopen(path) == [(7, rows(7)), (8, rows(8))]
    assert path.read_bytes().startswith(HEADER)
    assert reopen(path) == [(7, rows(7)), (8, rows(8))]  # now read as format 2
    assert not path.with_name(path.name + ".format2").exists()


@pytest.mark.parametrize("size", [16, 17, PAGE])
def test_a_journal_of_zeros_opens_empty(path: Path, size: int) -> None:
    """A crash while a journal was being created can leave its size durable but
    not its header: zeros. They are no format-1 frames (the CRC of an empty payload
    is 0, but no payload is empty), so the journal opens empty and works on,
    instead of failing to unpickle an empty frame on every open (found by review)."""
    path.write_bytes(bytes(size))
    assert reopen(path) == []
    journal = Journal(path)
    journal.open()
    journal.append(1, rows(1))
    journal.close()
    assert [seq for seq, _ in reopen(path)] == [1]


def test_a_store_replays_a_format_1_journal(tmp_path: Path) -> None:
    import pickle

    from wfnb.store.duckdb._codec import encode_batch

    db = tmp_path / "old.duckdb"
    asyncio.run(DuckDBStore(db).close())  # a file that has folded up to seq 0
    run = RunRecord("r1", "w", "h", "running", {}, 1.0)  # type: ignore[arg-type]
    encoded = encode_batch(Batch(runs=[run]))
    journal = db.with_name(db.name + ".journal")
    journal.write_bytes(format_1([(1, pickle.dumps(encoded.rows, protocol=5))]))

    async def main() -> None:
        store = DuckDBStore(db)
        try:
            got = await store.get_run(run_id="r1")
            assert got is not None and got.workflow == "w"
        finally:
            await store.close()

    asyncio.run(main())
    assert frames_only(journal) == HEADER  # folded: zeros ahead, no frame


def test_a_store_refuses_a_journal_damaged_in_the_middle(tmp_path: Path) -> None:
    db = tmp_path / "wfnb.duckdb"
    journal = db.with_name(db.name + ".journal")
    asyncio.run(DuckDBStore(db).close())
    starts = write_frames(journal, 3)
    flip(journal, starts[1] + 30)

    async def main() -> None:
        store = DuckDBStore(db)
        try:
            with pytest.raises(StoreError, match=f"{journal}.*offset {starts[1]}"):
                await store.list_runs()
        finally:
            await store.close()

    asyncio.run(main())


def test_a_failed_append_leaves_nothing_and_the_next_one_lands_whole(path: Path) -> None:
    files = FailingFiles()
    journal = Journal(path, files)
    journal.open()
    journal.append(1, rows(1))
    files.failing = True
    with pytest.raises(OSError, match="No space"):
        journal.append(2, rows(2))
    files.failing = False
    journal.append(3, rows(3))
    journal.close()
    assert [seq for seq, _ in reopen(path)] == [1, 3]


def test_a_frame_whose_fsync_failed_is_cut_so_it_cannot_come_back(path: Path) -> None:
    files = FailingFiles(errno.EIO, ops=("fsync",))
    journal = Journal(path, files)
    journal.open()
    journal.append(1, rows(1))
    before = frames_only(path)
    files.failing = True
    with pytest.raises(OSError):
        journal.append(2, rows(2))
    assert path.read_bytes() == before  # its bytes reached the page cache: cut
    files.failing = False
    journal.append(3, rows(3))  # the cut is fsync'd first, then frame 3 lands
    journal.close()
    assert [seq for seq, _ in reopen(path)] == [1, 3]


def test_a_torn_append_that_cannot_be_cut_at_once_is_cut_before_the_next(path: Path) -> None:
    files = FailingFiles(ops=("torn-write", "write", "truncate"))
    journal = Journal(path, files)
    journal.open()
    journal.append(1, rows(1))
    files.failing = True
    with pytest.raises(OSError):
        journal.append(2, rows(2))  # half a frame is on disk and stays there for now
    files.failing = False
    journal.append(3, rows(3))  # must not land behind the torn half of frame 2
    journal.close()
    assert [seq for seq, _ in reopen(path)] == [1, 3]


def test_damage_in_the_first_frame_is_reported_too(path: Path) -> None:
    starts = write_frames(path, 3)
    flip(path, starts[0] + 2)  # its seq: nothing before it tells what seq comes next
    with pytest.raises(JournalCorrupt) as caught:
        reopen(path)
    assert caught.value.offset == starts[0]


class Logged(FailingFiles):
    """`FailingFiles` (failing nothing until told to) that logs, in order, the
    calls the journal makes to make things durable."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.done: list[str] = []

    def write_at(self, fd: int, data: bytes, offset: int) -> int:
        self.done.append("write")
        return super().write_at(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self.done.append("fsync")
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self.done.append("fdatasync")
        super().fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        self.done.append("truncate")
        super().truncate(fd, size)

    def fsync_dir(self, path: Path) -> None:
        self.done.append("fsync_dir")
        super().fsync_dir(path)


def test_a_reset_makes_the_directory_durable_before_it_cuts(path: Path) -> None:
    """The frames a reset cuts live in DuckDB's files now, one of which (its WAL) a
    fold may just have created: the directory is fsync'd before the cut, so a power
    loss cannot take the rows from both places."""
    files = Logged()
    journal = Journal(path, files)
    journal.open()
    journal.append(1, rows(1))
    files.done.clear()
    journal.reset()
    journal.close()
    assert files.done == ["fsync_dir", "truncate", "fsync", "write", "fsync"]


def test_after_a_fold_every_frame_goes_in_place_as_far_as_the_frames_reached_before(
    path: Path,
) -> None:
    """A journal is cut after every fold, and the runs between folds write alike:
    the cut writes zeros again as far as the frames reached (made durable, off the
    runs' path), so every frame after it goes in place with an ``fdatasync``, not
    a growth (an ``fsync``) per doubling, the first frame included; a reopen keeps
    those zeros. Each cycle here writes the same frames."""
    files = Logged()
    journal = Journal(path, files)

    def cycle(start: int) -> list[str]:
        files.done.clear()
        for seq in range(start, start + 6):
            journal.append(seq, rows(900 * (seq - start + 1)))
        return [op for op in files.done if op != "write"]

    journal.open()
    assert cycle(1).count("fsync") >= 3  # grown from a page, doubling
    reached = path.stat().st_size
    journal.reset()
    assert cycle(7) == ["fdatasync"] * 6
    assert path.stat().st_size <= reached
    journal.reset()
    journal.close()
    journal.open()
    assert cycle(13) == ["fdatasync"] * 6
    journal.close()
    assert [seq for seq, _ in reopen(path)] == list(range(13, 19))  # 1-12 were cut


def test_a_reset_whose_fsync_failed_is_cut_and_fsynced_again_before_the_next_frame(
    path: Path,
) -> None:
    """The cut after a fold must be durable before a new frame is written over
    where the folded ones were (see `Journal.reset`); if its fsync fails, the next
    append makes it durable first, and fails rather than write if it cannot."""
    files = Logged(errno.EIO, ops=("fsync",))
    journal = Journal(path, files)
    journal.open()
    journal.append(1, rows(1))
    files.failing = True
    with pytest.raises(OSError):
        journal.reset()
    files.failing = False
    files.done.clear()
    journal.append(2, rows(2))
    journal.close()
    # the cut made durable; the frame, with zeros after it (a size change: fsync)
    assert files.done == ["truncate", "fsync", "write", "fsync"]
    assert [seq for seq, _ in reopen(path)] == [2]
