"""A `JournalFiles` that models what a power loss keeps, and one that fails like a
bad disk.

Killing a process tests nothing about ``fsync``: the page cache outlives the
process. `PowerLossFiles` does the real ``os`` calls (so the store works as usual)
and keeps, beside them, the model a crash-consistency argument uses:

- a file's *content* is durable as of its last ``fsync``, or its last
  ``fdatasync`` within the size the last ``fsync`` made durable: ``fdatasync`` is
  taken not to persist a change of size (the file grown or cut since);
- a *directory entry* (a new file, a rename) is durable as of the last ``fsync``
  of its directory;
- with ``torn`` set, a random prefix of the bytes appended since the last fsync
  survives too (a torn append, as when the size reached the disk before the data);
  and where the file was cut and written again since (a truncation not fsync'd), a
  random prefix of the new bytes lands in place over the fsync'd ones, which keep
  the rest of the file (a filesystem that overwrites in place: the cut is lost).

At operation number ``crash_at`` the power goes: before doing it, the layer builds
the disk image (path -> bytes) of what survives, hands it to ``on_power_loss``
(which adds the DuckDB files as they are at that instant: the writer thread, the
only one touching them, is inside this call), and from then on every operation
fails with ``EIO``, as on a machine that is gone.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wfnb.store.duckdb._files import OS_FILES, OsFiles


@dataclass
class _Inode:
    path: Path
    synced: bytes


class PowerLossFiles:
    def __init__(
        self,
        *,
        crash_at: int | None = None,
        on_power_loss: Callable[[dict[Path, bytes]], None] | None = None,
        torn: random.Random | None = None,
    ) -> None:
        self.crash_at = crash_at
        self.on_power_loss = on_power_loss
        self.torn = torn
        self.ops = 0
        self.dead = False
        self._fds: dict[int, _Inode] = {}
        self._names: dict[Path, _Inode] = {}  # the directory entries as they are
        self._durable: dict[Path, _Inode] = {}  # ... as of the last directory fsync

    # -- the model ----------------------------------------------------------------
    def _step(self, what: str) -> None:
        if self.dead:
            raise OSError(errno.EIO, f"the power is off ({what})")
        self.ops += 1
        if self.ops == self.crash_at:
            image = self.image()
            self.dead = True
            if self.on_power_loss is not None:
                self.on_power_loss(image)
            raise OSError(errno.EIO, f"the power went off before {what}")

    def image(self) -> dict[Path, bytes]:
        """What the disk holds after a power loss now."""
        out = {}
        for path, inode in self._durable.items():
            content = inode.synced
            if self.torn is not None and inode.path.exists():
                current = inode.path.read_bytes()
                if current.startswith(content) and len(current) > len(content):
                    extra = current[len(content) :]
                    content += extra[: self.torn.randint(0, len(extra))]
                elif not current.startswith(content):  # cut and written again
                    same = len(os.path.commonprefix([current, content]))
                    end = same + self.torn.randint(0, len(current) - same)
                    content = current[:end] + content[end:]
            out[path] = content
        return out

    def _fsynced(self, fd: int) -> bytes:
        return OS_FILES.read(fd)

    def _fdatasynced(self, fd: int) -> bytes:
        """The current bytes within the durable size; past a cut, the durable ones."""
        current, durable = OS_FILES.read(fd), self._fds[fd].synced
        return current[: len(durable)] + durable[len(current) :]

    # -- JournalFiles -------------------------------------------------------------
    def open(self, path: Path, *, create_new: bool = False) -> int:
        self._step(f"open {path.name}")
        if path not in self._names and path.exists():  # from before: on disk already
            inode = _Inode(path, path.read_bytes())
            self._names[path] = self._durable[path] = inode
        fd = OS_FILES.open(path, create_new=create_new)
        if path not in self._names:
            self._names[path] = _Inode(path, b"")  # not in the directory until fsync_dir
        self._fds[fd] = self._names[path]
        return fd

    def read(self, fd: int) -> bytes:
        if self.dead:
            raise OSError(errno.EIO, "the power is off (read)")
        return OS_FILES.read(fd)

    def write_at(self, fd: int, data: bytes, offset: int) -> int:
        self._step("write")
        return OS_FILES.write_at(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._step("fsync")
        OS_FILES.fsync(fd)
        self._fds[fd].synced = self._fsynced(fd)

    def fdatasync(self, fd: int) -> None:
        self._step("fdatasync")
        OS_FILES.fdatasync(fd)
        self._fds[fd].synced = self._fdatasynced(fd)

    def truncate(self, fd: int, size: int) -> None:
        self._step("truncate")
        OS_FILES.truncate(fd, size)

    def close(self, fd: int) -> None:
        self._fds.pop(fd, None)
        OS_FILES.close(fd)

    def replace(self, src: Path, dst: Path) -> None:
        self._step(f"rename {src.name}")
        OS_FILES.replace(src, dst)
        inode = self._names.pop(src)
        inode.path = dst
        self._names[dst] = inode

    def fsync_dir(self, path: Path) -> None:
        self._step("fsync of the directory")
        OS_FILES.fsync_dir(path)
        for name in [n for n in self._durable if n.parent == path]:
            del self._durable[name]
        self._durable.update({n: i for n, i in self._names.items() if n.parent == path})


class LyingFsync(PowerLossFiles):
    """A disk (or a journal) whose fsync promises and keeps nothing: what the
    power-loss check must catch."""

    def _fsynced(self, fd: int) -> bytes:
        return self._fds[fd].synced

    _fdatasynced = _fsynced


class FailingFiles(OsFiles):
    """``os`` calls, but while ``failing`` is set every operation named in ``ops``
    (``write``, ``fsync`` (``fdatasync`` too), ``truncate``; ``torn-write`` writes
    half first) raises ``error`` (ENOSPC by default): a full or broken disk that may
    recover. With ``ops=("fsync",)`` the bytes reach the page cache and only their
    fsync fails, as with EIO from a dying disk."""

    def __init__(
        self, error: int = errno.ENOSPC, ops: tuple[str, ...] = ("write", "fsync")
    ) -> None:
        self.error = error
        self.ops = ops
        self.failing = False
        self.failures = 0

    def _check(self, what: str) -> None:
        if self.failing and what in self.ops:
            self.failures += 1
            raise OSError(self.error, f"{os.strerror(self.error)} ({what}, injected)")

    def write_at(self, fd: int, data: bytes, offset: int) -> int:
        if self.failing and "torn-write" in self.ops:  # half the bytes, then the error
            OS_FILES.write_at(fd, data[: len(data) // 2], offset)
        self._check("write")
        return super().write_at(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._check("fsync")
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._check("fsync")
        super().fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        self._check("truncate")
        super().truncate(fd, size)
