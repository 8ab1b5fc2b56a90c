"""Leaf steps' timeouts, sharing timers.

Every step has a timeout (an hour unless it says), so `asyncio.timeout` around each
one armed and cancelled a timer of its own: a handle pushed on the loop's heap and
an async context manager per step, an eighth of the engine's cost of a no-op step.
Here the steps whose deadlines fall in the same millisecond share one timer, and
watching a step is a sync context manager and a dict entry. A step may so run up
to a millisecond past its timeout; the event loop's own clock is no finer.

The semantics are `asyncio.timeout`'s: when the time is up the step's task is
cancelled, and the `CancelledError` that comes out is turned into `TimeoutError`
unless someone else asked for the cancellation too (`Task.cancelling`). Loop and
workflow steps keep `asyncio.timeout`: their clocks are held while a person is
awaited beneath them (`wfnb.run.pauses`), which needs a reschedulable timer.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType


class Deadlines:
    """The timeouts of the leaf steps running on one event loop."""

    __slots__ = ("_loop", "_due")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: deadline in whole milliseconds of the loop's clock -> its timer, and the
        #: steps it is for
        self._due: dict[int, tuple[asyncio.TimerHandle, dict[Watch, None]]] = {}

    def watch(self, seconds: float) -> Watch:
        """Cancel the current task in ``seconds`` unless the returned watch has been
        left by then (use it as ``with deadlines.watch(limit) as clock:``)."""
        task = asyncio.current_task(self._loop)
        assert task is not None, "a step's timeout is watched from its own task"
        due = math.ceil((self._loop.time() + seconds) * 1000)
        watch = Watch(self, task, due)
        entry = self._due.get(due)
        if entry is None:
            timer = self._loop.call_at(due / 1000, self._expire, due)
            self._due[due] = (timer, {watch: None})
        else:
            entry[1][watch] = None
        return watch

    def _forget(self, watch: Watch) -> None:
        entry = self._due.get(watch.due)
        if entry is None:
            return
        timer, watches = entry
        watches.pop(watch, None)
        if not watches:  # nobody left on this timer: take it off the loop's heap
            timer.cancel()
            del self._due[watch.due]

    def _expire(self, due: int) -> None:
        _, watches = self._due.pop(due)
        for watch in watches:
            watch.ran_out = True
            watch.task.cancel()


class Watch:
    """One step's timeout, from `Deadlines.watch` to leaving the ``with`` block."""

    __slots__ = ("deadlines", "task", "due", "cancelling", "ran_out")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[object], due: int) -> None:
        self.deadlines = deadlines
        self.task = task
        self.due = due
        self.cancelling = task.cancelling()
        self.ran_out = False

    def expired(self) -> bool:
        """Whether the step ran out of time (as `asyncio.Timeout.expired`)."""
        return self.ran_out

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.ran_out:
            self.deadlines._forget(self)
        elif self.task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
