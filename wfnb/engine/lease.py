"""The store lease and the registry of live runs, kept together because one
follows the other: the engine holds the store (its single-writer lock) exactly
while it drives at least one run, and lets go when the last one ends."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from wfnb.run.live import LiveRun
from wfnb.store.base import Store

#: finished runs kept for `Engine.handle` and `Engine.result`
KEEP_FINISHED = 256


class StoreLease:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._live: dict[str, LiveRun] = {}
        self._finished: OrderedDict[str, LiveRun] = OrderedDict()
        self._holding = False
        self._releasing: asyncio.Task[None] | None = None

    def live(self, run_id: str) -> LiveRun | None:
        """The run with this id if it is live here."""
        return self._live.get(run_id)

    def known(self, run_id: str) -> LiveRun | None:
        """The run with this id if it is live here or ended here recently."""
        return self._live.get(run_id) or self._finished.get(run_id)

    @property
    def runs(self) -> list[LiveRun]:
        """The live runs, oldest first."""
        return list(self._live.values())

    async def hold(self) -> None:
        """Take the store before the first live run writes (`StoreLocked` here means
        nothing was stored)."""
        if not self._live and not self._holding:
            await self.store.acquire()
            self._holding = True

    def add(self, run: LiveRun) -> None:
        self._live[run.id] = run

    def ended(self, run: LiveRun) -> None:
        """``run`` is no longer live; with the last one gone, release the store."""
        if self._live.get(run.id) is run:
            del self._live[run.id]
        if not self._live and self._holding:
            self._holding = False
            self._releasing = asyncio.get_running_loop().create_task(self.store.release())
        self._finished[run.id] = run
        while len(self._finished) > KEEP_FINISHED:
            self._finished.popitem(last=False)

    async def let_go(self) -> None:
        """Forget live runs (their state is in the store) and release the store."""
        self._live.clear()
        if self._holding:
            self._holding = False
            await self.store.release()
        if self._releasing is not None:
            await self._releasing
            self._releasing = None
