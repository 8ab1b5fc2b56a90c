"""Writes committed on the event loop's own thread, once a turn of the loop.

Handing a write to the writer thread and its answer back costs two thread
wake-ups, ≈ 60–80 µs on the 2-core dev box: as much as the fdatasync itself
(≈ 100–150 µs), paid on every step of a durable chain. So while the writer thread
is idle (`Writer.append_now` says when it is not), writes are journalled on the
loop's own thread: the first write of a turn of the loop at once (its caller does
not even suspend, as with the memory store: a chain step saves two more turns),
the others of that turn together when it ends, in one frame (one fdatasync for
any number of scopes finishing steps in the same turn).

The loop is blocked meanwhile, which is only fair for light writes on a fast
disk. So a batch heavier than `LIGHT` (a big output, a workflow's definition,
anything pickled) is encoded and written by the thread, as before; and two
appends in a row that held the loop longer than `BUDGET` send every write of the
next `BACKOFF` seconds to the thread (one is no slow disk: 2 syncs in 3,000 took
over 1 ms here, never two in a row), where the loop keeps running and writes arriving
meanwhile are group-committed. On a disk that slow the hop is a small part of a
write's cost anyway.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from wfnb.errors import StoreError
from wfnb.store.base import Batch
from wfnb.store.duckdb._codec import EncodedBatch
from wfnb.store.duckdb._waiters import NOBODY, AsyncWaiter
from wfnb.store.duckdb._writer import encoded

if TYPE_CHECKING:
    from wfnb.store.duckdb._writer import Writer

#: the longest an append may hold the loop before writes go to the thread (s)
BUDGET = 0.001
#: how long writes then go to the thread before the loop tries again (s)
BACKOFF = 1.0
#: the most a batch's values may weigh (≈ bytes) to be encoded on the loop
LIGHT = 16_384


def light(batch: Batch) -> bool:
    """Whether ``batch`` is cheap to encode: plain values (JSON's types) of at most
    `LIGHT` bytes or so in all. Walked, not encoded: the walk stops early."""
    if batch.workflows:
        return False
    budget = LIGHT
    for run in batch.runs:
        budget = _weigh(run.inputs, budget - 64 * len(run.code_hashes) - _text(run.error))
    for step in batch.steps:
        budget -= _text(step.error) + _text(step.traceback)
        if step.has_output:
            budget = _weigh(step.output, budget)
    for call in batch.calls:
        budget = _weigh(call.data, budget)
    return budget >= 0


def _text(text: str | None) -> int:
    return 0 if text is None else len(text)


def _weigh(value: object, budget: int) -> int:
    """``budget`` less what ``value`` weighs; negative once spent (or for a value
    that is not plain, which only the thread may encode)."""
    if budget < 0:
        return budget
    if value is None or isinstance(value, bool | int | float):
        return budget - 8
    if isinstance(value, str | bytes):
        return budget - 8 - len(value)
    if isinstance(value, dict):
        budget -= 8 * len(value)
        for key, item in value.items():
            budget = _weigh(item, _weigh(key, budget))
            if budget < 0:
                break
        return budget
    if isinstance(value, list | tuple):
        budget -= 8 * len(value)
        for item in value:
            budget = _weigh(item, budget)
            if budget < 0:
                break
        return budget
    return -1


class TurnCommits:
    """One store's writes of the current turn of its event loop."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batches: list[EncodedBatch] = []
        self._futures: list[asyncio.Future[None]] = []
        self._thread_until = 0.0  # time.monotonic() before which writes go to the thread
        self._over_budget = False  # the last append held the loop too long
        self._open = False  # a turn of the loop has written (its end is scheduled)

    async def write(self, batch: Batch) -> None:
        """Durably write ``batch``; `StoreError` if it cannot be (a bad batch is
        refused here, before anything of it is queued)."""
        loop = asyncio.get_running_loop()
        if not light(batch):
            self.drain()  # what this turn wrote before goes first
            await self._by_thread(loop, batch)
            return
        one = encoded(batch)
        if loop is not self._loop:
            if self._loop is not None and not self._loop.is_closed() and self._open:
                # Another loop's turn is open (a store shared across loops): no
                # turn of ours to join, so the thread takes it.
                await self._by_thread(loop, one)
                return
            self.drain()  # a closed loop's turn that never ended
            self._loop, self._open = loop, False
        if not self._open:
            # The turn's first write is journalled at once, and the caller goes on
            # in this same turn; what is written later in the turn waits for its
            # end, to go in one frame.
            self._open = True
            loop.call_soon(self._commit)
            errors = self._append([one])
            if errors is not None:
                if errors[0] is not None:
                    raise errors[0]
                return
        future: asyncio.Future[None] = loop.create_future()
        self._batches.append(one)
        self._futures.append(future)
        await future

    async def _by_thread(
        self, loop: asyncio.AbstractEventLoop, batch: Batch | EncodedBatch
    ) -> None:
        future: asyncio.Future[None] = loop.create_future()
        self._writer.write(batch, AsyncWaiter(loop, future))
        await future

    def drain(self) -> None:
        """Hand the open turn's writes to the writer thread now, ahead of whatever
        is submitted next (closing the store, say)."""
        batches, futures, loop = self._take()
        for batch, future in zip(batches, futures, strict=True):
            waiter = NOBODY if loop is None or loop.is_closed() else AsyncWaiter(loop, future)
            self._writer.write(batch, waiter)

    def _take(
        self,
    ) -> tuple[list[EncodedBatch], list[asyncio.Future[None]], asyncio.AbstractEventLoop | None]:
        taken = self._batches, self._futures, self._loop
        self._batches, self._futures = [], []
        return taken

    def _append(self, batches: list[EncodedBatch]) -> list[StoreError | None] | None:
        """`Writer.append_now`, unless the disk was found slow lately."""
        if time.monotonic() < self._thread_until:
            return None
        started = time.perf_counter()
        errors = self._writer.append_now(batches)
        if errors is not None:
            slow = time.perf_counter() - started > BUDGET
            if slow and self._over_budget:
                self._thread_until = time.monotonic() + BACKOFF
            self._over_budget = slow
        return errors

    def _commit(self) -> None:
        """The end of the turn: what was written after its first write, in one frame."""
        self._open = False
        if not self._futures:
            return
        errors = self._append(self._batches)
        if errors is None:
            self.drain()
            return
        _, futures, _ = self._take()
        for future, error in zip(futures, errors, strict=True):
            if future.done():  # its writer was cancelled: the rows are written all the same
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
