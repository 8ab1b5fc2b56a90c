"""Leaf steps' timeouts, sharing timers.

Every step has a timeout (300 s unless it says), so `asyncio.timeout` around each
one armed and cancelled a timer of its own: a handle pushed on the loop's heap and
an async context manager per step, an eighth of the engine's cost of a no-op step.
Here a deadline is rounded up to a tick of a thousandth of the timeout (at least a
millisecond), and the steps due in the same tick share one timer, left armed when
they end early (it then fires as a no-op): so a loop holds at most about a thousand
timers per timeout value, and a stream of short steps arms one timer per tick, not
one per step. A step may so run up to 0.1 % of its timeout (at least a
millisecond) past it; watching one is a sync context manager and a dict entry.

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
    """The timeouts of one run's leaf steps (each `LiveRun` has its own)."""

    __slots__ = ("_loop", "_due")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: a tick of the loop's clock -> the steps due then (its timer is armed)
        self._due: dict[float, dict[Watch, None]] = {}

    def watch(self, seconds: float) -> Watch:
        """Cancel the current task in ``seconds`` unless the returned watch has been
        left by then (use it as ``with deadlines.watch(limit) as clock:``)."""
        task = asyncio.current_task(self._loop)
        assert task is not None, "a step's timeout is watched from its own task"
        tick = seconds / 1000 if seconds > 1.0 else 0.001
        due = math.ceil((self._loop.time() + seconds) / tick) * tick
        watch = Watch(self, task, due)
        watches = self._due.get(due)
        if watches is None:
            self._loop.call_at(due, self._expire, due)
            self._due[due] = {watch: None}
        else:
            watches[watch] = None
        return watch

    def _expire(self, due: float) -> None:
        for watch in self._due.pop(due):
            watch.ran_out = True
            watch.task.cancel()


class Watch:
    """One step's timeout, from `Deadlines.watch` to leaving the ``with`` block."""

    __slots__ = ("deadlines", "task", "due", "prior_cancels", "ran_out")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[object], due: float) -> None:
        self.deadlines = deadlines
        self.task = task
        self.due = due
        self.prior_cancels = task.cancelling()
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
        if not self.ran_out:  # forget it (inline: this is once a step)
            watches = self.deadlines._due.get(self.due)
            if watches is not None:
                watches.pop(self, None)
        elif self.task.uncancel() <= self.prior_cancels and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
