"""The store lease and the registry of live runs, kept together because one
follows the other: the engine holds the store (its single-writer lock) exactly
while something here needs it — a run being started, or a live run that is not
paused — and lets go otherwise. A run waiting for a person holds nothing, so
other processes can query and run on the same file meanwhile (DESIGN §5).

Taking and letting go are `Store.acquire`/`release` calls made one at a time, in
order (a chain of tasks), so the store's hold count always matches ``holding``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

from wfnb.errors import StoreError
from wfnb.run.live import LiveRun
from wfnb.store.base import Store

log = logging.getLogger("wfnb")

#: finished runs kept for `Engine.handle` and `Engine.result`
KEEP_FINISHED = 256


class StoreLease:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._live: dict[str, LiveRun] = {}
        self._finished: OrderedDict[str, LiveRun] = OrderedDict()
        #: live runs now paused: they need no store
        self._paused: set[str] = set()
        self._starting = 0
        self.holding = False
        self._balancing: asyncio.Future[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def live(self, run_id: str) -> LiveRun | None:
        """The run with this id if it is live here, on this event loop: a run whose
        loop has ended (a script's ``asyncio.run`` returned) is driven by no one."""
        run = self._live.get(run_id)
        if run is not None and run.loop.is_closed():
            self._forget(run)
            return None
        return run

    def known(self, run_id: str) -> LiveRun | None:
        """The run with this id if it is live here or ended here recently."""
        return self.live(run_id) or self._finished.get(run_id)

    @property
    def runs(self) -> list[LiveRun]:
        """The live runs, oldest first."""
        return [run for run in list(self._live.values()) if self.live(run.id) is run]

    @contextlib.asynccontextmanager
    async def starting(self) -> AsyncIterator[None]:
        """Hold the store while a run is being started: taken before its first
        write (`StoreLocked` here means nothing was stored), and let go again if the
        start is refused."""
        self._starting += 1
        try:
            await self._balance(raising=True)
            yield
        finally:
            self._starting -= 1
            await self._balance(raising=False)

    def add(self, run: LiveRun) -> None:
        self._live[run.id] = run

    def paused(self, run: LiveRun, paused: bool) -> None:
        """``run`` paused (it needs no store now) or goes on (it needs it again)."""
        if self._live.get(run.id) is not run:
            return
        if paused:
            self._paused.add(run.id)
        else:
            self._paused.discard(run.id)
        self._rebalance()

    async def wake(self, run: LiveRun) -> None:
        """A decision arrives for ``run``: take the store back before it goes on
        (`StoreLocked` here means the decision was not taken)."""
        if run.id in self._paused:
            self._paused.discard(run.id)
            try:
                await self._balance(raising=True)
            except BaseException:
                self._paused.add(run.id)
                raise

    def ended(self, run: LiveRun) -> None:
        """``run`` is no longer live; with nothing else needing it, release the store."""
        letting_go = run.shutting_down()
        if self._live.get(run.id) is run:
            # A run let go because its loop is ending changes nothing to balance on.
            self._forget(run, rebalance=not letting_go)
        if letting_go:
            return  # not finished: its state is in the store
        self._finished[run.id] = run
        while len(self._finished) > KEEP_FINISHED:
            self._finished.popitem(last=False)

    async def let_go(self) -> None:
        """Forget live runs (their state is in the store) and release the store."""
        self._live.clear()
        self._paused.clear()
        await self._balance(raising=False)
        self._balancing = None

    # -- holding the store exactly while it is needed ------------------------------

    def _forget(self, run: LiveRun, *, rebalance: bool = True) -> None:
        del self._live[run.id]
        self._paused.discard(run.id)
        if rebalance:
            self._rebalance()

    def _needed(self) -> bool:
        return self._starting > 0 or any(run_id not in self._paused for run_id in self._live)

    def _rebalance(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the next operation on one balances
            return
        task = loop.create_task(self._balance(raising=False))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _balance(self, *, raising: bool) -> None:
        """Take or let go of the store so that ``holding`` says what is needed;
        after the balancing already under way, never beside it."""
        previous = self._balancing
        if (previous is None or previous.done()) and self._needed() == self.holding:
            return
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._balancing = mine
        try:
            await self._settle(previous)
        except StoreError as exc:
            if raising:
                raise
            log.warning("wfnb: could not take the store back: %s", exc)
        finally:
            mine.set_result(None)

    async def _settle(self, previous: asyncio.Future[None] | None) -> None:
        if (
            previous is not None
            and not previous.done()
            and previous.get_loop() is asyncio.get_running_loop()
        ):
            await asyncio.wait([previous])
        needed = self._needed()
        if needed and not self.holding:
            await self.store.acquire()
            self.holding = True
        elif not needed and self.holding:
            self.holding = False
            await self.store.release()
