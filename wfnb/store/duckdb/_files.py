"""The file operations the journal makes, as one small seam.

Why a seam: the journal's promise is about what survives a power loss, and no test
that kills a process can check it (the page cache survives the process, so a
missing ``fsync`` goes unnoticed). Tests hand the journal a `JournalFiles` that
records which bytes were fsync'd and, on a simulated power loss, keeps only those
(``tests/store/_powerloss.py``), or one that fails a write like a full disk.
Production uses `OS_FILES`: plain ``os`` calls, nothing added.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class JournalFiles(Protocol):
    """What the journal does to files. Every method may raise `OSError`."""

    def open(self, path: Path, *, create_new: bool = False) -> int:
        """An fd opened read-write; ``create_new`` truncates (for a file about to be
        renamed into place), else the file is opened for appending, created if absent."""
        ...

    def read(self, fd: int) -> bytes:
        """The whole file."""
        ...

    def write(self, fd: int, data: bytes) -> int: ...

    def fsync(self, fd: int) -> None: ...

    def truncate(self, fd: int, size: int) -> None: ...

    def close(self, fd: int) -> None: ...

    def replace(self, src: Path, dst: Path) -> None:
        """Rename ``src`` over ``dst`` (durable only after `fsync_dir`)."""
        ...

    def fsync_dir(self, path: Path) -> None:
        """Make the directory entries of ``path`` (a directory) durable."""
        ...


class OsFiles:
    """`JournalFiles` as the ``os`` module does it."""

    def open(self, path: Path, *, create_new: bool = False) -> int:
        if create_new:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)

    def read(self, fd: int) -> bytes:
        size = os.fstat(fd).st_size
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


OS_FILES: JournalFiles = OsFiles()
