"""The fsync'd append-only journal beside the DuckDB file.

Why it exists (measured on the 2-core dev box, duckdb 2.0.1, ``python
benchmarks/bench_store.py``): one DuckDB transaction upserting 2 rows costs
≈ 1.8 ms (≈ 4.3 ms per chain step through the store), while ``write`` + ``fsync``
of a small frame costs ≈ 0.13 ms. The chain goal is ≤ 600 µs per step, so a
checkpoint is acknowledged once its frame is fsync'd here (≈ 180–270 µs per chain
step end to end) and the writer folds the journal into DuckDB in batches.

Frame: ``seq u64 | length u32 | crc32 u32 | payload`` where the payload is the
pickled rows of one group commit. A torn tail (the process died mid-write) fails
its length or CRC and is cut off: it was never acknowledged. Every fold records the
last folded ``seq`` in DuckDB in the same transaction, so replaying a journal that
was folded but not yet truncated skips what DuckDB already has; records are whole
rows upserted by key, so even a replay would be harmless for journal-only data,
but a direct write that came later (a table output) must never be overwritten by
an older journal row.

The journal is only ever touched while this process holds DuckDB's file lock: the
lock is what makes the journal single-writer.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<QII")


class Journal:
    """Append, fsync, replay, reset. Not thread-safe: the store's writer thread owns it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 0

    def open(self) -> list[tuple[int, Any]]:
        """Open (creating it durably) and return the intact frames as ``(seq, rows)``;
        a torn tail is truncated away."""
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if not existed:  # the new directory entry must survive a crash too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        with open(self.path, "rb") as fh:
            data = fh.read()
        frames: list[tuple[int, Any]] = []
        offset = 0
        while offset + _HEADER.size <= len(data):
            seq, length, crc = _HEADER.unpack_from(data, offset)
            start, end = offset + _HEADER.size, offset + _HEADER.size + length
            payload = data[start:end]
            if end > len(data) or zlib.crc32(payload) != crc:
                break
            frames.append((seq, pickle.loads(payload)))
            offset = end
        if offset != len(data):
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        self._size = offset
        return frames

    def append(self, seq: int, rows: Any) -> None:
        """Write one frame and fsync it. On failure the file is cut back to where it
        was, so a later frame can never sit behind a torn one."""
        assert self._fd is not None
        payload = pickle.dumps(rows, protocol=5)
        frame = _HEADER.pack(seq, len(payload), zlib.crc32(payload)) + payload
        try:
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(f"short write to {self.path}: {written} of {len(frame)} bytes")
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, self._size)
            raise
        self._size += len(frame)

    def reset(self) -> None:
        """Empty the journal after a fold. No fsync: if the truncation is lost, the
        folded frames are skipped on replay by their seq."""
        if self._fd is not None and self._size:
            os.ftruncate(self._fd, 0)
            self._size = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
