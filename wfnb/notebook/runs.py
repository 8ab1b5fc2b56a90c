"""`NotebookRun`: what a cell binds to ``_wf_run``.

A magic cannot await (IPython issues 11314, 14157) and `Engine.start` is a
coroutine (the run's first record must be durable before it returns), so a magic
cannot hold a `RunHandle` when it returns. It schedules the start as a task and
binds this stand-in, which acts as the handle as soon as the task is done (a few
loop turns later, long before anyone types the next cell) and is awaitable at once.

Interrupts. Interrupting the kernel while a cell does ``await _wf_run`` cancels the
cell's coroutine (ipykernel 7, DESIGN §6); we take that as "stop this run": the run
is cancelled through the engine, so it is recorded ``cancelled`` and can be
resumed. A run nobody awaits is left alone by an interrupt: the interrupt is aimed
at whatever the kernel is executing, which may have nothing to do with a run
started cells ago. Stop those with the view's Cancel button or ``%workflow cancel``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from wfnb.model import RunResult, RunStatus, StepStatus

if TYPE_CHECKING:
    from wfnb.engine import Engine, RunHandle


class NotebookRun:
    """A run started from a magic. ``await run`` returns its `RunResult` once it is
    paused or finished (``until="done"``: only once finished). Everything else a
    `RunHandle` offers is available once the run has started."""

    def __init__(
        self,
        engine: Engine,
        started: asyncio.Future[RunHandle],
        *,
        workflow: str,
        until: str = "settled",
    ) -> None:
        self.engine = engine
        self.started = started
        self.workflow_name = workflow
        self.until = until
        #: decisions sent and not yet taken up by the run (see `decide`)
        self.decisions: set[asyncio.Task[None]] = set()
        #: awaited by a cell that saw the run end (the view shows its final picture there)
        self.finishers: list[Callable[[], Awaitable[None]]] = []
        # An exception nobody retrieves would be logged as "never retrieved".
        started.add_done_callback(_retrieve)

    @classmethod
    def of(cls, engine: Engine, handle: RunHandle, *, until: str = "settled") -> NotebookRun:
        future: asyncio.Future[RunHandle] = asyncio.get_running_loop().create_future()
        future.set_result(handle)
        return cls(engine, future, workflow=handle.workflow.name, until=until)

    @property
    def handle(self) -> RunHandle | None:
        """The engine's handle; None while starting or if the start failed."""
        started = self.started
        if started.done() and not started.cancelled() and started.exception() is None:
            return started.result()
        return None

    @property
    def start_error(self) -> BaseException | None:
        if self.started.done() and not self.started.cancelled():
            return self.started.exception()
        return None

    @property
    def id(self) -> str | None:
        handle = self.handle
        return handle.id if handle is not None else None

    @property
    def status(self) -> RunStatus:
        """The run's status; ``running`` as soon as a decision is sent to a paused
        run (DESIGN §4: after Approve, no later cell sees it ``paused``)."""
        handle = self.handle
        if handle is not None:
            if handle.status is RunStatus.PAUSED and self.decisions:
                return RunStatus.RUNNING
            return handle.status
        return RunStatus.FAILED if self.start_error is not None else RunStatus.PENDING

    @property
    def step_statuses(self) -> dict[str, StepStatus]:
        handle = self.handle
        return handle.step_statuses if handle is not None else {}

    def __await__(self) -> Generator[Any, None, RunResult]:
        return self._await(self.until).__await__()

    async def _await(self, until: str) -> RunResult:
        ticker = asyncio.ensure_future(_tick())
        try:
            handle = await asyncio.shield(self.started)
            # A decision sent just before (a click, `%workflow approve`) is taken
            # up first, so this never returns the pause it ended.
            if self.decisions:
                await asyncio.gather(*self.decisions, return_exceptions=True)
            if until == "done":
                result = await handle.wait()
            else:
                result = await handle
                # The engine flips a resumed run's status before it records it, and
                # its "settled" signal clears only then: go on waiting in that window.
                while not (result.status is RunStatus.PAUSED or result.status.finished):
                    await asyncio.sleep(0.005)
                    result = await handle
            if result.status.finished:
                for finish in list(self.finishers):
                    await finish()
            return result
        except asyncio.CancelledError:
            # A kernel interrupt while a cell awaits this run: stop the run too,
            # recorded as cancelled (resumable), even if it is still starting.
            self.started.add_done_callback(self._stop)
            raise
        finally:
            ticker.cancel()

    def _stop(self, _started: asyncio.Future[RunHandle]) -> None:
        handle = self.handle
        if handle is not None and not handle.status.finished:
            # Not awaited: the cell that asked is being cancelled.
            task = asyncio.ensure_future(self.engine.cancel(handle.id))
            task.add_done_callback(_retrieve)

    async def wait(self) -> RunResult:
        """Wait past any pause until the run is finished (interrupts as above)."""
        return await self._await("done")

    def result(self) -> RunResult | None:
        handle = self.handle
        return handle.result() if handle is not None else None

    async def approve(self, step_id: str, *, comment: str | None = None) -> None:
        await self.decide(step_id, approved=True, comment=comment)

    async def reject(self, step_id: str, *, comment: str | None = None) -> None:
        await self.decide(step_id, approved=False, comment=comment)

    def decide(
        self, step_id: str, *, approved: bool, comment: str | None = None
    ) -> asyncio.Task[None]:
        """Send a decision; until the run has taken it up, `status` says ``running``
        and ``await run`` waits for it. Call on the kernel loop."""
        task = asyncio.get_running_loop().create_task(self._decide(step_id, approved, comment))
        self.decisions.add(task)
        task.add_done_callback(self.decisions.discard)
        return task

    async def _decide(self, step_id: str, approved: bool, comment: str | None) -> None:
        handle = await asyncio.shield(self.started)
        await self.engine.approve(handle.id, step_id, approved=approved, comment=comment)
        # The engine resolved the step's future; the run leaves the pause a few
        # loop turns later (it writes the step's record first).
        for _ in range(2000):
            statuses = handle.step_statuses
            others = any(
                s is StepStatus.WAITING_APPROVAL for sid, s in statuses.items() if sid != step_id
            )
            if handle.status is not RunStatus.PAUSED:
                return
            if others and statuses.get(step_id) is not StepStatus.WAITING_APPROVAL:
                return  # still paused, rightly: another step waits for a person
            await asyncio.sleep(0.005)

    async def cancel(self) -> RunResult:
        handle = await asyncio.shield(self.started)
        return await self.engine.cancel(handle.id)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined here: forward to the RunHandle.
        handle = self.__dict__.get("started") and self.handle
        if handle is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(handle, name)

    def __repr__(self) -> str:
        handle = self.handle
        if handle is not None:
            return repr(handle).replace("<RunHandle", "<NotebookRun", 1)
        error = self.start_error
        state = f"failed to start: {error}" if error is not None else "starting"
        return f"<NotebookRun {self.workflow_name} {state}>"


async def _tick() -> None:
    """Wake the loop every 0.1 s while a cell awaits a run. ipykernel 7.4 turns an
    interrupt into the cancellation of the awaiting cell only when its loop next
    wakes up (measured: ``await asyncio.sleep(6)`` interrupted after 1 s ends after
    6 s), and a run waiting for a slow step or a person may not wake it for minutes."""
    while True:
        await asyncio.sleep(0.1)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
