"""Pauses and clocks: when a run is paused, and the step timeouts that stop while
a person is awaited.

A run is paused while every step at work waits for a person (an approval, or a
child run paused on one). Loop and workflow steps count through what runs inside
them. Their step timeouts cover work, not people: while a person is awaited
beneath one, its clock is held and restarted with the time it had left.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from wfnb.model import RunStatus

if TYPE_CHECKING:
    from wfnb.run.driver import Scope
    from wfnb.run.live import LiveRun


class _Clock:
    __slots__ = ("timeout", "holds", "left")

    def __init__(self, timeout: Any) -> None:
        self.timeout = timeout  # an asyncio.Timeout
        self.holds = 0
        self.left: float | None = None


class Pauses:
    __slots__ = ("run", "active", "in_body", "waiting", "clocks")

    def __init__(self, run: LiveRun) -> None:
        self.run = run
        #: steps now running, or reserved to start once their before-record is durable
        self.active: set[str] = set()
        #: loop steps now inside an iteration -> its scope: while that has steps at
        #: work, those count, not the loop step
        self.in_body: dict[str, Scope] = {}
        #: of those, the ones waiting for a person (or for a paused sub-run)
        self.waiting: set[str] = set()
        #: the step timeouts of running loop and workflow steps
        self.clocks: dict[str, _Clock] = {}

    def set_waiting(self, instance: str, waiting: bool) -> None:
        """A leaf step starts or stops waiting for a person; the run is paused while
        every leaf step still running is waiting."""
        if waiting:
            self.waiting.add(instance)
        else:
            self.waiting.discard(instance)
        self.check()

    def clock_started(self, instance: str, timeout: Any) -> None:
        """A loop or workflow step's timeout (an `asyncio.Timeout`) began."""
        self.clocks[instance] = _Clock(timeout)

    def clock_ended(self, instance: str) -> None:
        self.clocks.pop(instance, None)

    def hold_clocks(self, instances: list[str], hold: bool) -> None:
        """Stop (``hold``) or restart the step timeouts of these loop/workflow step
        instances: a person is awaited beneath them, which no step timeout covers."""
        now = asyncio.get_running_loop().time()
        for instance in instances:
            clock = self.clocks.get(instance)
            if clock is None or clock.timeout.expired():
                continue
            if hold:
                clock.holds += 1
                if clock.holds == 1 and (when := clock.timeout.when()) is not None:
                    clock.left = max(0.0, when - now)
                    clock.timeout.reschedule(None)
            elif clock.holds > 0:
                clock.holds -= 1
                if clock.holds == 0 and clock.left is not None:
                    clock.timeout.reschedule(now + clock.left)

    def check(self) -> None:
        """Pause or unpause the run if what its steps wait for says so."""
        run = self.run
        if run.status.finished or run.stop_reason is not None:
            return
        if not self.waiting and run.status is RunStatus.RUNNING:
            return  # the common case, on every turn of the driver
        if run.shutting_down():
            return  # a run being let go changes nothing it stored
        paused = bool(self.waiting) and all(
            instance in self.waiting
            or ((body := self.in_body.get(instance)) is not None and bool(body.running))
            for instance in self.active
        )
        if paused and run.status is RunStatus.RUNNING:
            run.write_status_soon(RunStatus.PAUSED)
        elif not paused and run.status is RunStatus.PAUSED:
            run.write_status_soon(RunStatus.RUNNING)
