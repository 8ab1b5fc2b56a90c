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
over 1 ms here, never two in a row), where the loop keeps running and writes
arriving meanwhile are group-committed. On a disk that slow the hop is a small
part of a write's cost anyway. Each time the loop tries again and finds the disk
still slow, it waits twice as long before the next try, up to `MAX_BACKOFF`.

One `TurnCommits` serves every store on a file, as the writer does (writes keep
the order they were made in, whichever store object made them), and keeps each
loop's turn apart: engines may run on loops in several threads, and a turn is
only ever touched from its own loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from wfnb.errors import StoreError
from wfnb.store.base import Batch
from wfnb.store.duckdb._codec import EncodedBatch, encode_batch, json_weight
from wfnb.store.duckdb._waiters import NOBODY, AsyncWaiter

if TYPE_CHECKING:
    from wfnb.store.duckdb._writer import Writer

log = logging.getLogger("wfnb.store")
#: the longest an append may hold the loop before writes go to the thread (s)
BUDGET = 0.001
#: how long writes then go to the thread before the loop tries again (s), at first
BACKOFF = 1.0
MAX_BACKOFF = 64.0
#: the most a batch's values may weigh (≈ bytes) to be encoded on the loop
LIGHT = 16_384


def light(batch: Batch) -> bool:
    """Whether ``batch`` is cheap to encode: values JSON keeps exactly, of at most
    `LIGHT` bytes or so in all (anything else is pickled, or is a table). Walked,
    not encoded: the walk stops as soon as the budget is spent. A malformed record
    is heavy: the thread's encoding refuses it with `StoreError`."""
    if batch.workflows:
        return False
    try:
        return _weight_left(batch) >= 0
    except TypeError:
        return False


def _weight_left(batch: Batch) -> int:
    budget = LIGHT
    # Events made from the batch's records repeat their errors, and are not walked.
    derived = batch.derived_events is not None
    errors = 1 + derived
    hashes = None
    for run in batch.runs:
        # A run's records share one map of code fingerprints: the codec encodes it
        # once and pickle writes its text once (a run's start is two records).
        if run.code_hashes is not hashes:
            hashes = run.code_hashes
            budget -= 64 * len(hashes)
        budget -= errors * _text(run.error)
        budget = json_weight(run.inputs, budget)
    for step in batch.steps:
        budget -= errors * _text(step.error) + _text(step.traceback)
        if step.has_output:
            budget = json_weight(step.output, budget)
    for call in batch.calls:
        budget = json_weight(call.data, budget)
    if not derived:
        for event in batch.events:
            budget -= _text(event.error)
    return budget


def _text(text: str | None) -> int:
    return 0 if text is None else len(text)


class _Turn:
    """What one loop has written in its current turn after the turn's first write."""

    __slots__ = ("loop", "batches", "futures")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.batches: list[EncodedBatch] = []
        self.futures: list[asyncio.Future[None]] = []

    def take(self) -> tuple[list[EncodedBatch], list[asyncio.Future[None]]]:
        taken = self.batches, self.futures
        self.batches, self.futures = [], []
        return taken


class TurnCommits:
    """The writes to one file, turn by turn of the loops that make them."""

    def __init__(self, writer: Writer) -> None:
        #: the file's writer thread, whose journal these writes go to
        self.writer = writer
        #: each loop's open turn (one whose first write was made and whose end is
        #: scheduled), touched only from that loop's thread
        self._turns: dict[asyncio.AbstractEventLoop, _Turn] = {}
        # The disk's speed, as the appends found it (shared by every loop: one disk).
        self._thread_until = 0.0  # time.monotonic() before which writes go to the thread
        self._backoff = BACKOFF
        self._over_budget = False  # the last append held the loop too long

    async def write(self, batch: Batch) -> None:
        """Durably write ``batch``; `StoreError` if it cannot be (a bad batch is
        refused here, before anything of it is queued)."""
        loop = asyncio.get_running_loop()
        if not light(batch):
            self.drain(loop)  # what this turn wrote before goes first
            await self._by_thread(loop, batch)
            return
        one = encode_batch(batch)
        turn = self._turns.get(loop)
        if turn is None:
            self._forget_closed_loops()
            # The turn's first write is journalled at once, and the caller goes on
            # in this same turn; what is written later in the turn waits for its
            # end, to go in one frame.
            turn = self._turns[loop] = _Turn(loop)
            loop.call_soon(self._end_turn, turn)
            errors = self._append([one])
            if errors is not None:
                if errors[0] is not None:
                    raise errors[0]
                return
        future: asyncio.Future[None] = loop.create_future()
        turn.batches.append(one)
        turn.futures.append(future)
        await future

    def drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand ``loop``'s open turn (and those loops closed with a turn open left)
        to the writer thread now, ahead of whatever is submitted next (a heavy
        batch, closing the store)."""
        self._forget_closed_loops()
        turn = self._turns.get(loop)
        if turn is not None:
            self._to_thread(turn)

    async def _by_thread(
        self, loop: asyncio.AbstractEventLoop, batch: Batch | EncodedBatch
    ) -> None:
        future: asyncio.Future[None] = loop.create_future()
        self.writer.write(batch, AsyncWaiter(loop, future))
        await future

    def _to_thread(self, turn: _Turn) -> None:
        batches, futures = turn.take()
        gone = turn.loop.is_closed()
        for batch, future in zip(batches, futures, strict=True):
            self.writer.write(batch, NOBODY if gone else AsyncWaiter(turn.loop, future))

    def _forget_closed_loops(self) -> None:
        """Write what loops closed in the middle of a turn left (their turn's end
        never ran); nobody waits for it any more, but it was asked for."""
        for loop in list(self._turns):
            if loop.is_closed() and (turn := self._turns.pop(loop, None)) is not None:
                self._to_thread(turn)

    def _append(self, batches: list[EncodedBatch]) -> list[StoreError | None] | None:
        """`Writer.append_now`, unless the disk was found slow lately."""
        if time.monotonic() < self._thread_until:
            return None
        started = time.perf_counter()
        errors = self.writer.append_now(batches)
        if errors is not None:
            slow = time.perf_counter() - started > BUDGET
            if not slow:
                self._backoff = BACKOFF
            elif self._over_budget:
                self._thread_until = time.monotonic() + self._backoff
                self._backoff = min(2 * self._backoff, MAX_BACKOFF)
            self._over_budget = slow
        return errors

    def _end_turn(self, turn: _Turn) -> None:
        """What was written after the turn's first write, in one frame."""
        if self._turns.get(turn.loop) is turn:
            del self._turns[turn.loop]
        if not turn.futures:
            return
        try:
            errors = self._append(turn.batches)
        except BaseException as exc:  # a bug, or an interrupt: fail the callers, not hang them
            log.exception("wfnb store: unexpected error writing the journal")
            failure = StoreError(f"internal error writing the journal: {exc!r}")
            for future in turn.take()[1]:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        if errors is None:
            self._to_thread(turn)
            return
        for future, error in zip(turn.take()[1], errors, strict=True):
            if future.done():  # its writer was cancelled: the rows are written all the same
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
