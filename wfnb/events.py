"""Lifecycle events and the bus that fans them out to observers.

The engine publishes; the live view, loggers and tests subscribe. Publishing never
waits on a subscriber: each subscriber gets its own queue drained by its own task,
so a slow observer falls behind (and, past ``max_backlog``, drops the oldest events
and counts them) while the run goes on at full speed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

log = logging.getLogger("wfnb.events")


class EventKind(str, Enum):
    RUN_STARTED = "run_started"
    RUN_PAUSED = "run_paused"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    STEP_STARTED = "step_started"
    STEP_RETRYING = "step_retrying"
    STEP_WAITING = "step_waiting"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    STEP_CANCELLED = "step_cancelled"

    @property
    def is_run_event(self) -> bool:
        return self.value.startswith("run_")


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    run_id: str
    workflow: str
    step_id: str | None = None
    attempt: int | None = None
    error: str | None = None
    #: Kind-specific details: the approval prompt, the retry delay, ...
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


class RunObserver(Protocol):
    """Anything that wants to hear about runs: a plain or async callable of one Event."""

    def __call__(self, event: Event) -> None | Awaitable[None]: ...


class Subscription:
    """One observer's queue and the task draining it."""

    def __init__(self, bus: EventBus, observer: RunObserver, max_backlog: int) -> None:
        self._bus = bus
        self._observer = observer
        self._queue: deque[Event] = deque(maxlen=max_backlog)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _push(self, event: Event) -> None:
        self._queue.append(event)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        self._wake.set()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                event = self._queue.popleft()
                try:
                    result = self._observer(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("observer %r failed on %s", self._observer, event.kind.value)

    async def drain(self) -> None:
        """Wait until the observer has seen every event published so far."""
        while self._queue or (self._task is not None and self._wake.is_set()):
            await asyncio.sleep(0)
        await asyncio.sleep(0)

    def close(self) -> None:
        self._bus._subscriptions.discard(self)
        if self._task is not None:
            self._task.cancel()


class EventBus:
    def __init__(self, *, max_backlog: int = 10_000) -> None:
        self._subscriptions: set[Subscription] = set()
        self._max_backlog = max_backlog

    def subscribe(self, observer: RunObserver) -> Subscription:
        """Call ``observer`` with every event from now on. Must be called on the loop."""
        subscription = Subscription(self, observer, self._max_backlog)
        self._subscriptions.add(subscription)
        return subscription

    def publish(self, event: Event) -> None:
        for subscription in self._subscriptions:
            subscription._push(event)

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscriptions)
