"""The user's part of a failed step's traceback: the frames of their code, with
wfnb's own and the event loop's trimmed, so that a failing attempt shows where it
went wrong in the user's cells and modules, not in the engine's plumbing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import traceback
from pathlib import Path

#: where frames that are not the user's live: wfnb itself and the stdlib machinery
#: a step's call passes through (the loop, executor threads)
_NOT_USERS = (
    (str(Path(__file__).resolve().parents[1]) + "/",)
    + tuple(
        str(Path(module.__file__).resolve().parent) + "/"
        for module in (asyncio, concurrent.futures)
        if module.__file__
    )
    + tuple(
        str(Path(module.__file__).resolve())
        for module in (threading, contextlib)
        if module.__file__
    )
)


def _users(filename: str) -> bool:
    with contextlib.suppress(OSError, ValueError):
        filename = str(Path(filename).resolve())
    return not filename.startswith(_NOT_USERS)


def _trim(exc: traceback.TracebackException) -> bool:
    """Keep the user's frames of ``exc`` and of the exceptions chained to it; True
    when any frame is left anywhere in the chain."""
    kept = [frame for frame in exc.stack if _users(frame.filename)]
    exc.stack = traceback.StackSummary.from_list(kept)
    found = bool(kept)
    for chained in (exc.__cause__, exc.__context__):
        if chained is not None:
            found = _trim(chained) or found
    return found


def user_traceback(error: BaseException) -> str | None:
    """``error``'s traceback with only the user's frames, or None when none of them
    was on the stack (the error came from wfnb, e.g. a template that failed)."""
    summary = traceback.TracebackException.from_exception(error, capture_locals=False)
    if not _trim(summary):
        return None
    return "".join(summary.format())
