"""How the writer thread hands results back to the caller's thread.

An asyncio future may only be completed on its own loop's thread, so the writer
resolves it with ``loop.call_soon_threadsafe`` (the one safe way, and what DESIGN.md
§6 found robust for widget callbacks too); synchronous callers (``sql()``, magics)
wait on a `concurrent.futures.Future`. Resolving twice is a no-op, so a guard can
fail every waiter of a batch without caring which were already answered.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wfnb.store.duckdb._writer import Writer


class AsyncWaiter:
    __slots__ = ("loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop, self.future = loop, future

    def resolve(self, result: Any, exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self.loop.call_soon_threadsafe(_settle, self.future, result, exc)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # cancelled by the caller, or already failed by the writer's guard
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class SyncWaiter:
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def resolve(self, result: Any, exc: BaseException | None) -> None:
        if self.future.done():
            return
        if exc is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class Nobody:
    """The waiter of an operation nobody waits on (a nudge to the writer thread)."""

    __slots__ = ()

    def resolve(self, result: Any, exc: BaseException | None) -> None:
        pass


NOBODY = Nobody()
Answer = tuple["Waiter", Any, BaseException | None]


class Later:
    """A waiter whose answer is kept in ``answers`` for the writer thread to hand
    over once it has let go of the store: a caller that writes again at once then
    finds it free to write on its own thread (see `Writer.append_now`)."""

    __slots__ = ("waiter", "answers")

    def __init__(self, waiter: Waiter, answers: list[Answer]) -> None:
        self.waiter, self.answers = waiter, answers

    def resolve(self, result: Any, exc: BaseException | None) -> None:
        self.answers.append((self.waiter, result, exc))


Waiter = AsyncWaiter | SyncWaiter | Nobody | Later


#: Writers with a live thread, folded and closed at interpreter exit so that the
#: DuckDB file alone (read by another tool) has every acknowledged row. Not needed
#: for durability: a process that dies without this leaves the journal to replay.
LIVE: weakref.WeakSet[Writer] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for writer in list(LIVE):
        waiter = SyncWaiter()
        writer.close(waiter)
        with contextlib.suppress(Exception):
            waiter.future.result(timeout=5.0)
