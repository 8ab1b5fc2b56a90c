"""`RunHandle`: what `Engine.start` gives back, a view of one run in progress."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from wfnb.model import RunResult, RunStatus, StepStatus, Workflow
from wfnb.run.live import LiveRun
from wfnb.timeline import Timeline

if TYPE_CHECKING:
    from wfnb.engine.facade import Engine


class RunHandle:
    """A run in progress. ``await handle`` returns a `RunResult` once the run is
    paused or finished; ``await handle.wait()`` only once it is finished."""

    __slots__ = ("_engine", "_live")

    def __init__(self, engine: Engine, live: LiveRun) -> None:
        self._engine = engine
        self._live = live

    @property
    def id(self) -> str:
        return self._live.id

    @property
    def workflow(self) -> Workflow:
        return self._live.workflow

    @property
    def status(self) -> RunStatus:
        return self._live.status

    @property
    def step_statuses(self) -> dict[str, StepStatus]:
        return dict(self._live.statuses)

    @property
    def notes(self) -> list[str]:
        """Things worth telling the user about this run (e.g. code changed on resume)."""
        return list(self._live.notes)

    @property
    def waiting_approvals(self) -> list[str]:
        """Steps now waiting for a person, in the order they asked."""
        return list(self._live.approvals)

    def __await__(self) -> Generator[Any, None, RunResult]:
        return self._settled().__await__()

    async def _settled(self) -> RunResult:
        await self._live.settled()
        return self._live.result()

    async def wait(self) -> RunResult:
        await self._live.done()
        return self._live.result()

    def result(self) -> RunResult:
        """The run's state now, without waiting."""
        return self._live.result()

    async def approve(
        self, step_id: str, *, by: str | None = None, comment: str | None = None
    ) -> None:
        await self._engine.approve(self.id, step_id, approved=True, by=by, comment=comment)

    async def reject(
        self, step_id: str, *, by: str | None = None, comment: str | None = None
    ) -> None:
        await self._engine.approve(self.id, step_id, approved=False, by=by, comment=comment)

    async def cancel(self) -> None:
        await self._engine.cancel(self.id)

    async def timeline(self) -> Timeline:
        """The run's Gantt picture so far (every attempt, from the store)."""
        return await self._engine.timeline(self.id)

    def __repr__(self) -> str:
        return f"<RunHandle {self.id} {self.workflow.name} {self.status.value}>"
