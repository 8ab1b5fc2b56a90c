"""Who drives a run: ``host:pid:start`` of the process, so another process can tell
a run whose driver died (interrupted, resumable) from one still being driven."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wfnb.store.base import RunRecord


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux); "" elsewhere.
    It tells a reused pid from the process that wrote the record."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


_OWNERS: dict[int, str] = {}


def current_owner() -> str:
    pid = os.getpid()  # looked up each time: a forked child is another owner
    owner = _OWNERS.get(pid)
    if owner is None:
        owner = _OWNERS[pid] = f"{socket.gethostname()}:{pid}:{_start_time(pid)}"
    return owner


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by ``owner`` still runs. Unknown hosts count as
    alive: we cannot see them, and resuming a run twice is worse than not at all."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return not started or _start_time(pid) == started


def driven_elsewhere(record: RunRecord, *, here: str) -> bool:
    """Whether another live process drives ``record``'s run: it is not finished and
    its owner is neither ``here`` (this process) nor gone. The one check before
    anything here resumes, cancels, approves or rejects a run it does not drive."""
    return (
        not record.status.finished
        and record.owner not in (None, here)
        and owner_alive(record.owner)
    )
