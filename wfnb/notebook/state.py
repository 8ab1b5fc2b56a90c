"""What the notebook knows about one run, and the two ways to build it.

Pure bookkeeping (no IPython, no widgets, no graphviz), so the renderers can be
tested with plain asserts and a picture can be rebuilt at any moment from one
object. A `RunState` is built either from a live `RunHandle` (`state_of_handle`,
then kept current by engine events through `RunState.apply`) or from the store's
records (`load_state`: runs of earlier kernels, and every final picture, since the
store holds what events may have missed: each attempt, its times, who approved).

Loop body steps arrive as ``body[i]`` instances; the DAG shows one node per step
id, so an instance updates its base step and counts iterations. The attempt log
(``records``) keeps every instance and attempt, for the timeline.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from wfnb.dag import Plan
from wfnb.errors import RunNotFound
from wfnb.events import Event, EventKind
from wfnb.instances import base_id, iteration_index
from wfnb.model import RunStatus, StepStatus, Workflow
from wfnb.store.base import EventRecord, RunRecord, StepRecord, latest_attempts

if TYPE_CHECKING:
    from wfnb.engine import Engine, RunHandle

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
_KINDS = {kind.value: kind for kind in EventKind}


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
    #: where its last attempt ran, when not in the kernel (a Dask worker's address)
    worker: str | None = None
    kind: str = "code"
    max_attempts: int = 1
    #: between two attempts: (the next attempt, the time it starts)
    retry: tuple[int, float] | None = None
    #: an approval step's decision ({approved, by, comment, at}) once decided
    decision: dict[str, Any] | None = None
    #: the failed attempt's traceback, when the store has one
    traceback: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


@dataclass
class RunState:
    """A run as the notebook draws it."""

    run_id: str
    workflow: str
    plan: Plan
    status: RunStatus = RunStatus.PENDING
    error: str | None = None
    steps: dict[str, StepView] = field(default_factory=dict)
    #: step instance (``b`` or ``b[2]``) -> approval prompt, for the steps now
    #: waiting for a person
    waiting: dict[str, str] = field(default_factory=dict)
    definition: Workflow | None = None
    started: float | None = None
    ended: float | None = None
    #: every attempt seen: (instance, attempt) -> its record, for the timeline
    records: dict[tuple[str, int], StepRecord] = field(default_factory=dict)
    #: when this state last changed (the age a live view shows)
    as_of: float = field(default_factory=time.time)
    #: the last `copy` and the steps changed since: a copy shares the unchanged ones
    _last_copy: RunState | None = field(default=None, repr=False, compare=False)
    _changed: set[str] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        for sid in all_steps(self.plan):
            self.steps.setdefault(sid, StepView())
        if self.definition is not None:
            for sid, view in self.steps.items():
                step = self.definition.steps.get(sid)
                if step is not None:
                    view.kind, view.max_attempts = step.kind, step.retry.max_attempts

    def copy(self) -> RunState:
        """A snapshot a render thread may read while the loop goes on changing this.
        Nobody changes a snapshot, so steps unchanged since the last one are shared
        with it: a redraw of a 1,000-step run copies the few steps that moved."""
        last = self._last_copy
        steps = {
            sid: last.steps[sid]
            if last is not None and sid not in self._changed and sid in last.steps
            else replace(v)
            for sid, v in self.steps.items()
        }
        # Not `dataclasses.replace`: that would run `__post_init__` over every step.
        snapshot = copy.copy(self)
        snapshot.steps, snapshot.waiting = steps, dict(self.waiting)
        snapshot.records, snapshot._last_copy, snapshot._changed = dict(self.records), None, set()
        self._last_copy = snapshot
        self._changed = set()
        return snapshot

    def seed(self, statuses: Mapping[str, StepStatus]) -> None:
        """Take a handle's statuses (a resumed run starts half done)."""
        for instance, step_status in statuses.items():
            view = self._view(instance)
            view.status = step_status
            if step_status is StepStatus.WAITING_APPROVAL:
                self.waiting.setdefault(instance, f"Approve {instance}?")

    def sync(self, status: RunStatus, statuses: Mapping[str, StepStatus]) -> None:
        """Take the run's and the steps' statuses as the engine has them now
        (instances in start order, so a loop body shows its last iteration)."""
        self.status = status
        for instance, step_status in statuses.items():
            self._view(instance).status = step_status
        self.waiting = {
            k: v for k, v in self.waiting.items() if statuses.get(k) is StepStatus.WAITING_APPROVAL
        }
        self.as_of = time.time()

    def _view(self, instance: str) -> StepView:
        """The view of ``instance``'s step, for changing it (so it counts as changed)."""
        base = base_id(instance)
        self._changed.add(base)
        view = self.steps.setdefault(base, StepView())
        if instance != base:
            view.iterations = max(view.iterations, iteration_of(instance) + 1)
        return view

    def apply(self, event: Event) -> bool:
        """Fold one event in; False when it is about another run."""
        if event.run_id != self.run_id:
            return False
        self.as_of = event.at
        run_status = _RUN_EVENTS.get(event.kind)
        if run_status is not None:
            self.status = run_status
            if event.kind is EventKind.RUN_STARTED:
                self.started = self.started or event.at
            elif run_status.finished:
                self.ended = event.at
            if event.error:
                self.error = event.error
            return True
        if event.step_id is None:
            return True
        view = self._view(event.step_id)
        status = _STEP_EVENTS.get(event.kind, view.status)
        attempt = event.attempt or view.attempt or 1
        if event.kind is EventKind.STEP_STARTED:
            view.started, view.ended, view.error, view.retry = event.at, None, None, None
        elif event.kind is EventKind.STEP_RETRYING:
            view.retry = (
                int(event.data.get("next_attempt", attempt + 1)),
                event.at + float(event.data.get("delay", 0.0)),
            )
        elif status not in (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL):
            view.ended, view.retry = event.at, None
        if event.kind is EventKind.STEP_RETRYING or event.error:
            view.error = event.error
        view.status = status
        view.attempt = attempt
        view.worker = event.data.get("worker") or view.worker
        self._log(event, attempt, status)
        # Keyed by instance: approving a step inside a loop names its iteration.
        if status is StepStatus.WAITING_APPROVAL:
            prompt = event.data.get("prompt") or f"Approve {event.step_id}?"
            self.waiting[event.step_id] = str(prompt)
        else:
            self.waiting.pop(event.step_id, None)
        return True

    def _log(self, event: Event, attempt: int, status: StepStatus) -> None:
        """The attempt's record as the store would have it (built directly: this
        runs for every event, on the loop)."""
        assert event.step_id is not None
        key = (event.step_id, attempt)
        old = self.records.get(key)
        if event.kind is EventKind.STEP_RETRYING:
            status = StepStatus.FAILED  # the attempt that just failed; the next one starts later
        open_ = status in (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL)
        started = old.started_at if old is not None else (event.at if open_ else None)
        error = event.error or (old.error if old is not None else None)
        self.records[key] = StepRecord(
            self.run_id, event.step_id, attempt, status, started, None if open_ else event.at, error
        )

    @property
    def total(self) -> int:
        """Top-level steps: body steps run inside their loop and count through it."""
        return len(self.plan.steps)

    @property
    def done(self) -> int:
        return sum(1 for sid in self.plan.steps if self.steps[sid].status in DONE)

    @property
    def attempts(self) -> int:
        """Attempts made, over every step and iteration."""
        return len(self.records)

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return max(0.0, (self.ended or self.as_of) - self.started)

    @property
    def failed_step(self) -> tuple[str, str] | None:
        """The first failed step and its error, for the view's error line."""
        for sid, view in self.steps.items():
            if view.status is StepStatus.FAILED:
                return sid, view.error or "failed"
        return None

    def held(self, sid: str) -> bool:
        """Pending, its needs done, but waiting for the rest of its wave
        (``schedule: waves``: a wave starts when the previous one is done)."""
        plan = self.plan
        if (
            sid not in plan.needs
            or plan.schedule != "waves"
            or self.steps[sid].status is not StepStatus.PENDING
            or self.status is not RunStatus.RUNNING
        ):
            return False
        return all(self.steps[n].status in DONE for n in plan.needs[sid])


def state_of_handle(engine: Engine, handle: RunHandle) -> RunState:
    """A live run's state from its handle (events keep it current from here)."""
    result = handle.result()
    state = RunState(
        run_id=handle.id,
        workflow=handle.workflow.name,
        plan=engine.plan(handle.workflow),
        status=handle.status,
        error=result.error,
        definition=handle.workflow,
    )
    state.seed(handle.step_statuses)
    if result.failed_step and result.error:
        state._view(result.failed_step).error = result.error
    return state


def state_of_records(
    workflow: Workflow, plan: Plan, run: RunRecord, steps: Sequence[StepRecord]
) -> RunState:
    """A run's state from its checkpoints: every attempt, with its times and errors."""
    state = RunState(
        run_id=run.run_id,
        workflow=run.workflow,
        plan=plan,
        status=run.status,
        error=run.error,
        definition=workflow,
        started=run.started_at,
        ended=run.ended_at,
        as_of=run.ended_at or time.time(),
    )
    for record in steps:
        state.records[(record.step_id, record.attempt)] = record
    for instance, record in latest_attempts(steps).items():
        view = state._view(instance)
        view.status, view.attempt = record.status, record.attempt
        view.started, view.ended, view.error = record.started_at, record.ended_at, record.error
        view.traceback = getattr(record, "traceback", None)
        if view.kind == "approval":
            if record.status is StepStatus.COMPLETED and isinstance(record.output, dict):
                view.decision = record.output
            elif record.status is StepStatus.WAITING_APPROVAL:
                request = record.output if isinstance(record.output, dict) else {}
                state.waiting[instance] = str(request.get("prompt") or f"Approve {instance}?")
    return state


def replay(state: RunState, history: Sequence[EventRecord]) -> None:
    """Fold a run's stored history (the ``events`` table) into ``state``, as if its
    events had been heard live: the times and errors of every attempt, without
    reading any step's output. Prompts and worker names are not in it."""
    for record in history:
        kind = _KINDS.get(record.event)
        if kind is None:
            continue  # "pending": no live event says it
        state.apply(
            Event(
                kind,
                record.run_id,
                state.workflow,
                record.step_id,
                record.attempt,
                record.error,
                at=record.at,
            )
        )


async def load_state(engine: Engine, run_id: str) -> RunState:
    """A run's state from the store (runs of earlier kernels, and final pictures)."""
    run = await engine.store.get_run(run_id=run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
    workflow = await engine.definition(run)
    steps = await engine.store.get_steps(run_id=run_id)
    return state_of_records(workflow, engine.plan(workflow), run, steps)


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
