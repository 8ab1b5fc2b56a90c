"""Where a plan runs, and what one step's run came to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wfnb.dag import Plan
from wfnb.instances import instance_id
from wfnb.model import StepStatus


@dataclass(frozen=True, slots=True)
class Frame:
    """Where a plan runs: the top level (no index) or a loop iteration (indexes of
    the enclosing iterations, outermost first)."""

    plan: Plan
    index: tuple[int, ...] = ()
    loop: Mapping[str, Any] | None = None
    parent: Frame | None = None
    #: the loop step instance whose iteration this is
    owner: str | None = None

    def instance(self, step_id: str) -> str:
        """The id a step's records carry in this frame: ``b`` or ``b[0,2]``."""
        return instance_id(step_id, self.index) if self.index else step_id


@dataclass(slots=True)
class Outcome:
    status: StepStatus
    attempt: int
    started_at: float
    output: Any = None
    error: str | None = None
    #: for a failed ``workflow:`` step: the steps down the child runs where the
    #: failure began, and the reason there (`SubWorkflowError.path`/`.cause`)
    below: tuple[str, ...] = ()
    cause: str | None = None
    #: where the attempt ran, when the backend says (a Dask worker's address)
    worker: str | None = None
    #: a failed attempt's user frames (`wfnb.run.tracebacks.user_traceback`), masked
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a run failed, as data: the step ("" when the run as a whole failed) and
    its error; for a sub-workflow, the path below it and the reason at its end."""

    step: str
    error: str
    below: tuple[str, ...] = ()
    cause: str | None = None

    @property
    def text(self) -> str:
        return f"step {self.step!r} failed: {self.error}" if self.step else self.error
