"""The fsync'd append-only journal beside the DuckDB file.

Why it exists (measured on the 2-core dev box, duckdb 2.0.1, ``python
benchmarks/bench_store.py``): one DuckDB transaction upserting 2 rows costs
≈ 1.8 ms (≈ 4.3 ms per chain step through the store), while ``write`` + ``fsync``
of a small frame costs ≈ 0.13 ms. The chain goal is ≤ 600 µs per step, so a
checkpoint is acknowledged once its frame is synced here (``fdatasync`` over zeros
written ahead, ``fsync`` when the file grows) and the writer folds the
journal into DuckDB in batches.

Format 2 (this one): a 16-byte file header ``magic "WFNBJRNL" | format u32 |
crc32 u32`` (the CRC covers magic and format), then frames ``seq u64 | length u32
| crc32 u32 | payload``, where the CRC covers ``seq``, ``length`` and the payload
(the pickled rows of one group commit), so a flipped bit in a frame's header is
caught like one in its payload. Reading stops at the first frame that is short or
fails its CRC:

- if no intact frame follows it, it is a torn tail (the process or the machine
  died mid-append, so it was never acknowledged) and it is cut off;
- if an intact frame follows it, acknowledged checkpoints sit behind damaged bytes:
  that is never a crash, it is corruption, and opening raises `JournalCorrupt`
  naming the file and the offset instead of silently dropping everything after it.

Format 1 (wfnb before this one) had no file header and a CRC of the payload only.
Opening one replays it by the old rules (stop at the first bad frame) and rewrites
it as format 2 (a new file fsync'd, then renamed over the old one), so appends
always go to a format-2 file.

The file is preallocated: a frame that does not fit in the zeros already there is
written together with the zeros after it (the file growing by as much as it holds,
by at most `CHUNK`, in whole pages) and made durable with ``fsync`` (the size
changes); the frames after it are written in place over those zeros and made
durable with ``fdatasync``, which does not commit the file's metadata: an
acknowledgement then costs 0.78–0.86× the append + ``fsync`` floor (5 runs of 7;
two at 0.99–1.02× under a load burst) instead of 1.10–1.12×
(``benchmarks/bench_store.py --ack``; see docs/store.md, *Durability*).
The zeros outlast a fold and a reopen, so that the first frame after either goes
in place too: the runs between two folds tend to write alike, and a growth (an
``fsync``, ≈ 2× an in-place ``fdatasync``) on the first checkpoint of every run
after an idle fold was a growth the loop waited for. A fold cuts the file back to
its header (made durable first, see `Journal.reset`), then writes zeros again as
far as its frames reached, up to `CHUNK`, with one more ``fsync``: on the writer
thread, off every run's path. A reopen keeps a tail of zeros where it finds one
(and ``fsync``s it, as it would the cut of a torn tail: its size may be one a
crashed process never made durable). Zeros are not an intact frame (a zero frame
header fails its CRC) and hold no pickle, so after the last frame they read as
the end of the frames.

Every fold records the last folded ``seq`` in DuckDB in the same transaction, so a
journal that was folded but whose truncation was lost replays nothing twice.

The journal is only ever touched while this process holds DuckDB's file lock: the
lock is what makes the journal single-writer. All file I/O goes through a
`JournalFiles` (see ``_files``) so tests can simulate power loss and full disks.
"""

from __future__ import annotations

import contextlib
import errno
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

from wfnb.errors import JournalCorrupt
from wfnb.store.duckdb._files import OS_FILES, JournalFiles

MAGIC = b"WFNBJRNL"
FORMAT = 2
_FILE_HEADER = struct.Struct("<8sII")
_FRAME = struct.Struct("<QII")
_SEQ_LENGTH = struct.Struct("<QI")
#: how far past the last good seq a frame found after a damaged one may be and
#: still count as an intact frame (seqs of one file are consecutive)
_SEQ_WINDOW = 1 << 20
_PICKLE_START = b"\x80\x05"
#: the file grows in whole pages of zeros, doubling, by at most ``CHUNK`` at a time
#: (≈ 750 chain steps of frames a growth, each one ``fsync``)
PAGE = 4096
CHUNK = 256 * 1024


def file_header(version: int = FORMAT) -> bytes:
    body = MAGIC + struct.pack("<I", version)
    return body + struct.pack("<I", zlib.crc32(body))


HEADER = file_header()


def encode_frame(seq: int, payload: bytes) -> bytes:
    head = _SEQ_LENGTH.pack(seq, len(payload))
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def _frame_at(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """``(seq, payload_start, end)`` of the intact format-2 frame at ``offset``."""
    if offset + _FRAME.size > len(data):
        return None
    seq, length, crc = _FRAME.unpack_from(data, offset)
    start, end = offset + _FRAME.size, offset + _FRAME.size + length
    if end > len(data):
        return None
    head = data[offset : offset + _SEQ_LENGTH.size]
    if zlib.crc32(data[start:end], zlib.crc32(head)) != crc:
        return None
    return seq, start, end


def _intact_frame_after(data: bytes, offset: int, last_seq: int | None) -> int | None:
    """The offset of an intact frame somewhere after ``offset``, if any. Only run
    on recovery, over the bytes after a damaged frame; a candidate's payload must
    start a pickle (every payload is one, protocol 5) before its CRC is computed."""
    search = offset + _FRAME.size + 1
    while (payload := data.find(_PICKLE_START, search)) != -1:
        search = payload + 1
        at = payload - _FRAME.size
        seq, _ = _SEQ_LENGTH.unpack_from(data, at)
        if last_seq is not None and not last_seq < seq <= last_seq + _SEQ_WINDOW:
            continue
        if _frame_at(data, at) is not None:
            return at
    return None


def is_format_2(data: bytes, path: Path) -> bool:
    """Whether ``data`` (at least a header long) is a format-2 journal; raises
    `JournalCorrupt` for one whose file header is damaged. A format-1 journal
    starts with a frame; a format-2 one with the magic, and a damaged magic is
    told from a format-1 frame by the near-match of its bytes or by the intact
    format-2 frame after it."""
    _, version, crc = _FILE_HEADER.unpack_from(data)
    if data.startswith(MAGIC) and zlib.crc32(data[:12]) == crc:
        return True
    near = sum(a == b for a, b in zip(data[:8], MAGIC, strict=True)) >= 6
    if near or _frame_at(data, len(HEADER)) is not None:
        raise JournalCorrupt(
            f"the journal {path} has a damaged file header (offset 0); keep a copy, then "
            "move it aside to open the store without the checkpoints it holds",
            path=str(path),
            offset=0,
        )
    return False


def scan(data: bytes, path: Path) -> tuple[list[tuple[int, bytes]], int]:
    """The intact frames ``(seq, payload)`` of a format-2 journal (header checked
    by `is_format_2`) and where they end. Raises `JournalCorrupt` for damage with
    intact frames behind it."""
    _, version, _ = _FILE_HEADER.unpack_from(data)
    if version != FORMAT:
        raise JournalCorrupt(
            f"the journal {path} is in format {version}, written by a newer wfnb; "
            "upgrade wfnb to open this store",
            path=str(path),
            offset=0,
        )
    frames: list[tuple[int, bytes]] = []
    offset = len(HEADER)
    while offset < len(data):
        found = _frame_at(data, offset)
        if found is None:
            last = frames[-1][0] if frames else None
            later = _intact_frame_after(data, offset, last)
            if later is not None:
                raise JournalCorrupt(
                    f"the journal {path} is damaged at offset {offset}: the frame there "
                    f"fails its checksum but intact frames follow (from offset {later}); "
                    "its acknowledged checkpoints cannot be replayed in order. Keep a copy "
                    "of the file, then move it aside to open the store without them",
                    path=str(path),
                    offset=offset,
                )
            break
        seq, start, end = found
        frames.append((seq, data[start:end]))
        offset = end
    return frames, offset


def scan_format_1(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Format 1's rules: frames until the first short or bad one (CRC of payload).
    A frame with no payload is no frame (every payload is a pickle): zeros would
    pass the CRC of nothing, which is 0, and a journal that a crash left as zeros
    would replay as empty frames that fail to unpickle on every open."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset + _FRAME.size <= len(data):
        seq, length, crc = _FRAME.unpack_from(data, offset)
        start, end = offset + _FRAME.size, offset + _FRAME.size + length
        if not length or end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        frames.append((seq, data[start:end]))
        offset = end
    return frames, offset


def _pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


#: the errors of a disk (or a file size limit) with no room for the zeros ahead
_NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class Journal:
    """Append and sync, replay, reset. Not thread-safe: callers hold the writer's
    lock (the writer thread, or the event loop's thread for a light write)."""

    def __init__(self, path: Path, files: JournalFiles = OS_FILES) -> None:
        self.path = path
        self._files = files
        self._fd: int | None = None
        #: where the frames end: the next frame goes here
        self._size = 0
        #: the file's size as last fsync'd: zeros from ``_size`` up to here
        self._allocated = 0
        #: a failed append could not be cut back: cut before the next one
        self._dirty = False

    def open(self) -> list[tuple[int, Any]]:
        """Open (creating it durably) and return the intact frames as ``(seq, rows)``;
        a torn tail is truncated away (a tail of zeros is kept), a format-1 journal
        rewritten as format 2."""
        files = self._files
        self._fd = files.open(self.path)
        try:
            data = files.read(self._fd)
            if len(data) < len(HEADER):  # empty, or torn before a frame was whole
                self._start_fresh()
                frames: list[tuple[int, bytes]] = []
            elif is_format_2(data, self.path):
                frames, end = scan(data, self.path)
                self._size = self._allocated = end
                if end != len(data):
                    if data.count(0, end) == len(data) - end:  # zeros ahead: kept
                        self._allocated = len(data)
                    else:  # a torn tail
                        files.truncate(self._fd, end)
                    files.fsync(self._fd)
            else:
                frames, _ = scan_format_1(data)
                self._rewrite(frames)
            # The file's directory entry must survive a power loss too, and whether
            # it does is not known from here: the file may be one an earlier open
            # (of this process or another) created and failed before making it
            # durable. One directory fsync (≈ 80 µs) an open: a store reopens the
            # file after each idle second (`idle_close`), so about once a notebook cell.
            files.fsync_dir(self.path.parent)
            return [(seq, pickle.loads(payload)) for seq, payload in frames]
        except BaseException:
            self.close()
            raise

    def _start_fresh(self) -> None:
        assert self._fd is not None
        files = self._files
        files.truncate(self._fd, 0)
        self._write(HEADER, 0)
        files.fsync(self._fd)
        self._size = self._allocated = len(HEADER)

    def _write(self, data: bytes, offset: int, fd: int | None = None) -> None:
        fd = self._fd if fd is None else fd
        assert fd is not None
        written = self._files.write_at(fd, data, offset)
        if written != len(data):  # what a full disk (or a file size limit) does
            raise OSError(
                errno.ENOSPC, f"short write to {self.path}: {written} of {len(data)} bytes"
            )

    def _rewrite(self, frames: list[tuple[int, bytes]]) -> None:
        """Replace the open format-1 file by a format-2 one with the same frames,
        atomically: a crash leaves either the old file or the complete new one."""
        files = self._files
        tmp = self.path.with_name(self.path.name + ".format2")
        data = HEADER + b"".join(encode_frame(seq, payload) for seq, payload in frames)
        fd = files.open(tmp, create_new=True)
        try:
            self._write(data, 0, fd)
            files.fsync(fd)
        finally:
            files.close(fd)
        self.close()
        files.replace(tmp, self.path)
        files.fsync_dir(self.path.parent)
        self._fd = files.open(self.path)
        self._size = self._allocated = len(data)

    def append(self, seq: int, rows: Any) -> None:
        """Write one frame over the preallocated zeros and fdatasync it, or, when it
        does not fit, write it with the zeros of a bigger file and fsync it. On
        failure the file is cut back to where the frames end (and that cut fsync'd),
        so a later frame never sits behind a torn one and a frame reported as failed
        does not come back after a crash."""
        assert self._fd is not None
        if self._dirty:
            self._cut_back()
        frame = encode_frame(seq, pickle.dumps(rows, protocol=5))
        end = self._size + len(frame)
        try:
            if end <= self._allocated:
                self._write(frame, self._size)
                self._files.fdatasync(self._fd)
            else:  # the new size must be durable too, which fdatasync would not make it
                allocated = self._grown(end)
                try:
                    self._write(frame + bytes(allocated - end), self._size)
                except OSError as exc:
                    if allocated == end or exc.errno not in _NO_ROOM:
                        raise
                    # The zeros ahead do not fit on the disk, the frame alone may:
                    # a journal near a full disk takes frames until the last byte.
                    self._cut_back()
                    allocated = end
                    self._write(frame, self._size)
                self._files.fsync(self._fd)
                self._allocated = allocated
        except BaseException:  # an I/O error, or an interrupt on the event loop's thread
            self._dirty = True
            with contextlib.suppress(OSError):  # still dirty: the next append cuts first
                self._cut_back()
            raise
        self._size = end

    def _grown(self, end: int) -> int:
        """The file's next size: doubled, by at most `CHUNK`, past ``end``, in pages."""
        return _pages(max(end, min(2 * self._allocated, self._allocated + CHUNK)))

    def _zeros_ahead(self, reach: int) -> None:
        """After a cut, write zeros as far as the frames reached before it (at most
        `CHUNK`) and make them durable, so the frames after it go in place (see the
        module's docstring). Should that fail (a disk with no room for them), the
        next frame grows the file as usual: zeros past the size known are harmless."""
        assert self._fd is not None
        size = _pages(min(reach, CHUNK))
        if size <= self._allocated:
            return
        try:
            self._write(bytes(size - self._allocated), self._allocated)
            self._files.fsync(self._fd)
        except OSError:
            return
        self._allocated = size

    def _cut_back(self) -> None:
        assert self._fd is not None
        self._files.truncate(self._fd, self._size)
        self._files.fsync(self._fd)
        self._allocated = self._size
        self._dirty = False

    def reset(self) -> None:
        """Empty the journal after a fold: cut it back to its header and fsync that,
        then write zeros ahead again (`_zeros_ahead`, a second fsync). The cut is
        made durable before any zero is written: unsynced, a power loss could keep
        it undone yet some of the new bytes written over the old frames (zeros, or
        the next frame's), that is damage followed by old, folded, intact frames,
        which `scan` must call corruption. A failed fsync of the cut leaves the
        journal dirty, so the next append cuts (and fsyncs) again first.

        The directory is fsync'd first: the rows cut now live in DuckDB's files, and
        a fold may have just created one of them (its ``.wal``), whose directory
        entry DuckDB does not make durable; without it a power loss could take the
        rows from both places (found by review). A failed directory fsync leaves the
        journal as it is: its frames are folded already, and skipped by seq."""
        if self._fd is not None and self._size > len(HEADER) and not self._dirty:
            reach = self._size
            self._files.fsync_dir(self.path.parent)
            self._files.truncate(self._fd, len(HEADER))
            self._size = self._allocated = len(HEADER)
            try:
                self._files.fsync(self._fd)
            except OSError:
                self._dirty = True
                raise
            self._zeros_ahead(reach)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):  # the fd is gone either way
                self._files.close(fd)
