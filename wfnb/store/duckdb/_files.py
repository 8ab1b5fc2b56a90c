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
        """An fd opened read-write, the file created if absent; ``create_new``
        truncates it (for a file about to be renamed into place)."""
        ...

    def read(self, fd: int) -> bytes:
        """The whole file."""
        ...

    def write_at(self, fd: int, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset`` (``pwrite``); returns how many bytes were written."""
        ...

    def fsync(self, fd: int) -> None:
        """Make the file's content and size durable."""
        ...

    def fdatasync(self, fd: int) -> None:
        """Make the content durable within the size last made durable by `fsync`;
        a change of size may be lost (the conservative reading of ``fdatasync``,
        which skips the metadata commit that makes ``fsync`` dearer)."""
        ...

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
        truncate = os.O_TRUNC if create_new else 0
        return os.open(path, os.O_RDWR | os.O_CREAT | truncate, 0o644)

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

    def write_at(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

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
