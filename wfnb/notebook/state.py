"""What the live view knows about one run, kept up to date from engine events.

Pure bookkeeping (no IPython, no widgets, no graphviz), so the renderer can be
tested with plain asserts and the view can rebuild a picture at any moment from
one object. Loop body steps arrive as ``body[i]`` instances; the view shows one
node per step id, so an instance updates its base step and counts iterations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wfnb.dag import Plan
from wfnb.events import Event, EventKind
from wfnb.instances import base_id, iteration_index
from wfnb.model import RunStatus, StepStatus

_STEP_EVENTS: dict[EventKind, StepStatus] = {
    EventKind.STEP_STARTED: StepStatus.RUNNING,
    EventKind.STEP_RETRYING: StepStatus.RUNNING,
    EventKind.STEP_WAITING: StepStatus.WAITING_APPROVAL,
    EventKind.STEP_COMPLETED: StepStatus.COMPLETED,
    EventKind.STEP_FAILED: StepStatus.FAILED,
    EventKind.STEP_SKIPPED: StepStatus.SKIPPED,
    EventKind.STEP_CANCELLED: StepStatus.CANCELLED,
}
_RUN_EVENTS: dict[EventKind, RunStatus] = {
    EventKind.RUN_STARTED: RunStatus.RUNNING,
    EventKind.RUN_PAUSED: RunStatus.PAUSED,
    EventKind.RUN_COMPLETED: RunStatus.COMPLETED,
    EventKind.RUN_FAILED: RunStatus.FAILED,
    EventKind.RUN_CANCELLED: RunStatus.CANCELLED,
}
DONE = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})


@dataclass
class StepView:
    """One node of the picture."""

    status: StepStatus = StepStatus.PENDING
    attempt: int | None = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    #: loop body steps: how many iterations have started
    iterations: int = 0

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


@dataclass
class RunState:
    """A run as the view draws it."""

    run_id: str
    workflow: str
    plan: Plan
    status: RunStatus = RunStatus.PENDING
    error: str | None = None
    steps: dict[str, StepView] = field(default_factory=dict)
    #: step instance (``b`` or ``b[2]``) -> approval prompt, for the steps now
    #: waiting for a person
    waiting: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for sid in all_steps(self.plan):
            self.steps.setdefault(sid, StepView())

    @classmethod
    def from_statuses(
        cls,
        *,
        run_id: str,
        workflow: str,
        plan: Plan,
        status: RunStatus,
        statuses: Mapping[str, StepStatus],
        error: str | None = None,
    ) -> RunState:
        """Seed from a handle's statuses (a resumed run starts half done)."""
        state = cls(run_id=run_id, workflow=workflow, plan=plan, status=status, error=error)
        for instance, step_status in statuses.items():
            view = state.steps.setdefault(base_id(instance), StepView())
            view.status = step_status
            if step_status is StepStatus.WAITING_APPROVAL:
                state.waiting[instance] = f"Approve {instance}?"
            if instance != base_id(instance):
                view.iterations = max(view.iterations, iteration_of(instance) + 1)
        return state

    def sync(self, status: RunStatus, statuses: Mapping[str, StepStatus]) -> None:
        """Take the run's and the steps' statuses as the engine has them now
        (instances in start order, so a loop body shows its last iteration)."""
        self.status = status
        for instance, step_status in statuses.items():
            self.steps.setdefault(base_id(instance), StepView()).status = step_status
        self.waiting = {
            k: v for k, v in self.waiting.items() if statuses.get(k) is StepStatus.WAITING_APPROVAL
        }

    def apply(self, event: Event) -> bool:
        """Fold one event in; False when it is about another run."""
        if event.run_id != self.run_id:
            return False
        run_status = _RUN_EVENTS.get(event.kind)
        if run_status is not None:
            self.status = run_status
            if event.error:
                self.error = event.error
            return True
        if event.step_id is None:
            return True
        sid = base_id(event.step_id)
        view = self.steps.setdefault(sid, StepView())
        status = _STEP_EVENTS.get(event.kind, view.status)
        if event.kind is EventKind.STEP_STARTED:
            view.started, view.ended, view.error = event.at, None, None
            if event.step_id != sid:
                view.iterations = max(view.iterations, iteration_of(event.step_id) + 1)
        elif status not in (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL):
            view.ended = event.at
        if event.kind is EventKind.STEP_RETRYING or event.error:
            view.error = event.error
        view.status = status
        view.attempt = event.attempt or view.attempt
        # Keyed by instance: approving a step inside a loop names its iteration.
        if status is StepStatus.WAITING_APPROVAL:
            prompt = event.data.get("prompt") or f"Approve {event.step_id}?"
            self.waiting[event.step_id] = str(prompt)
        else:
            self.waiting.pop(event.step_id, None)
        return True

    @property
    def total(self) -> int:
        """Top-level steps: body steps run inside their loop and count through it."""
        return len(self.plan.steps)

    @property
    def done(self) -> int:
        return sum(1 for sid in self.plan.steps if self.steps[sid].status in DONE)

    @property
    def failed_step(self) -> tuple[str, str] | None:
        """The first failed step and its error, for the view's error line."""
        for sid, view in self.steps.items():
            if view.status is StepStatus.FAILED:
                return sid, view.error or "failed"
        return None


def iteration_of(instance: str) -> int:
    """The innermost iteration index of a body instance (``b[1,3]`` -> 3)."""
    return iteration_index(instance)[-1]


def all_steps(plan: Plan) -> list[str]:
    """Every step id of the plan, loop bodies included, top level first."""
    found: list[str] = list(plan.steps)
    for body in plan.bodies.values():
        found.extend(sid for sid in all_steps(body) if sid not in found)
    return found


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def short(text: str | None, limit: int = 300) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(view: StepView) -> dict[str, Any]:
    """The facts a tooltip or a table row shows for one step."""
    return {
        "status": view.status.value,
        "attempt": view.attempt,
        "duration": format_duration(view.duration),
        "iterations": view.iterations,
        "error": short(view.error),
    }
