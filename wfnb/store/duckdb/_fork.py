"""What a store does in a child of ``os.fork()``: refuse, clearly, never hang.

A forked child inherits every writer object but none of their threads (so an
operation would be queued to a thread that does not exist and wait forever), the
parent's journal file descriptor (appending to it would interleave with the
parent's frames), and DuckDB's in-process database object for every file the parent
had open: ``duckdb.connect`` in the child hands back that object, writes through it
to the parent's file, and dropping the last connection to it checkpoints the
child's stale copy over the parent's file. None of this can be made safe in the
child, so we do not reopen; instead (decided in docs/store.md, "Processes and
fork"):

- a store opened before the fork raises `StoreError` on every use in the child,
  naming the process that opened it;
- a new store in the child on a file the parent had open at the fork raises
  `StoreError` too; on any other file it works as usual;
- the inherited DuckDB connections are leaked on purpose (their reference count
  raised so no destructor ever runs in the child), so the child's exit never
  checkpoints over the parent's file.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from pathlib import Path
from typing import Any, Protocol


class Forkable(Protocol):
    path: Path
    forked_from: int | None

    @property
    def connection(self) -> Any: ...


_WRITERS: weakref.WeakSet[Any] = weakref.WeakSet()
#: DuckDB files the parent had open when it forked this process -> the parent's pid
_INHERITED_OPEN: dict[Path, int] = {}


def track(writer: Forkable) -> None:
    _WRITERS.add(writer)


def inherited_refusal(writer: Forkable) -> str | None:
    """Why ``writer`` (or a new writer on its file) cannot be used here, if so."""
    if writer.forked_from is not None:
        return (
            f"this store ({writer.path}) was opened in process {writer.forked_from} "
            f"before a fork; this is process {os.getpid()}: open a new DuckDBStore in "
            "the child"
        )
    parent = _INHERITED_OPEN.get(writer.path)
    if parent is not None:
        return (
            f"the store {writer.path} was open in process {parent} before the fork that "
            f"made this process ({os.getpid()}), and DuckDB shares its database object "
            "across fork, so this process cannot open that file safely: open it in a "
            "process started with 'spawn' or 'forkserver', or fork before the store is "
            "opened (it closes itself when idle)"
        )
    return None


def _after_fork_in_child() -> None:
    parent = os.getppid()
    for writer in list(_WRITERS):
        if writer.forked_from is None:
            writer.forked_from = parent
        con = writer.connection
        if con is not None:
            _INHERITED_OPEN.setdefault(writer.path, parent)
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(con))  # never closed here
    _WRITERS.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
