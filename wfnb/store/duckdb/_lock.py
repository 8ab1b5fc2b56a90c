"""Opening a DuckDB file that another process may hold, and naming that process.

DuckDB lets one process at a time open a file read-write (and a read-only open is
refused too while a writer holds it), raising an IO error such as ``Could not set
lock on file "…": Conflicting lock is held in /usr/bin/python3 (PID 4242)``. So
opening retries with exponential backoff (5 ms doubling to 250 ms) until a deadline
and then raises `StoreLocked`. The holder is named from the ``<db>.lock-owner``
sidecar (``host:pid:since``) that every wfnb process writes while it holds the file,
when the sidecar's pid matches DuckDB's (a sidecar left by a killed process is
stale), else from the PID in DuckDB's message.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from wfnb.errors import StoreError, StoreLocked
from wfnb.store.duckdb import _tuning


def translate(exc: duckdb.Error, path: Path) -> StoreError:
    return StoreError(f"DuckDB store {path}: {exc}")


#: DuckDB's main header: 8 bytes of checksum, then this magic
_DUCKDB_MAGIC = (8, b"DUCK")


def refuse_foreign(path: Path) -> None:
    """Raise `StoreError` if ``path`` holds something other than a DuckDB database.

    DuckDB itself refuses most such files, but not all: given a SQLite file it
    loads its SQLite extension (downloading it if it can) and attaches the file
    read-write, and the schema migration would then write wfnb's tables into the
    user's database. So the first bytes are checked before DuckDB sees the file.
    An empty file is refused too: DuckDB opens only files it wrote itself."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}: {exc}") from exc
    at, magic = _DUCKDB_MAGIC
    if head[at : at + len(magic)] == magic:
        return
    if not head:
        what = "an empty file"
    elif head.startswith(b"SQLite format 3\x00"):
        what = "a SQLite database"
    elif all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        what = "a text file"
    else:
        what = "of unknown contents"
    raise StoreError(
        f"{path} is not a DuckDB database ({what}); wfnb will not write to it: give the "
        "store another path"
    )


def connect_with_retry(path: Path, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    """A read-write connection, waiting up to ``lock_timeout`` s for another process;
    a new file is created and the connection set up as `_tuning` says."""
    refuse_foreign(path)
    _tuning.create_small(path)
    deadline = time.monotonic() + lock_timeout
    delay = 0.005
    while True:
        try:
            con = duckdb.connect(str(path))
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower():
                raise translate(exc, path) from exc
            if time.monotonic() >= deadline:
                holder = describe_holder(owner_path(path), str(exc))
                raise StoreLocked(
                    f"the store {path} is in use by another process ({holder}) and was not "
                    f"released within {lock_timeout:g} s; finish or close the runs there "
                    "(DuckDB allows one writing process per file)",
                    holder=holder,
                ) from exc
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)
            continue
        try:
            _tuning.apply(con)
        except duckdb.Error as exc:
            con.close()
            raise translate(exc, path) from exc
        return con


def owner_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock-owner")


def describe_holder(sidecar_path: Path, message: str) -> str:
    match = re.search(r"PID (\d+)", message)
    pid = match.group(1) if match else None
    try:
        sidecar = sidecar_path.read_text().strip()
    except OSError:
        sidecar = ""
    parts = sidecar.split(":", 2)
    if sidecar and (pid is None or (len(parts) > 1 and parts[1] == pid)):
        host, spid, since = (parts + ["", ""])[:3]
        return f"host {host}, pid {spid}, since {since}"
    return f"pid {pid}" if pid else "unknown holder"


def write_owner(sidecar_path: Path) -> str:
    """Record this process as the holder (atomically); returns what was written."""
    since = datetime.now(UTC).isoformat(timespec="seconds")
    owner = f"{socket.gethostname()}:{os.getpid()}:{since}"
    tmp = sidecar_path.with_name(sidecar_path.name + f".{os.getpid()}")
    tmp.write_text(owner + "\n")
    os.replace(tmp, sidecar_path)
    return owner


def remove_owner(sidecar_path: Path, owner: str) -> None:
    """Remove the sidecar if it is still ours."""
    with contextlib.suppress(OSError):
        if sidecar_path.read_text().strip() == owner:
            sidecar_path.unlink()
