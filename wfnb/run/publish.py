"""A run's events: what it tells observers, masked (errors and data, such as an
approval's prompt), and only if someone listens."""

from __future__ import annotations

from typing import Any

from wfnb.events import Event, EventBus, EventKind
from wfnb.model import RunStatus, StepStatus
from wfnb.redact import Redactor
from wfnb.run.frame import Outcome

_RUN_KINDS = {
    RunStatus.RUNNING: EventKind.RUN_STARTED,
    RunStatus.PAUSED: EventKind.RUN_PAUSED,
    RunStatus.COMPLETED: EventKind.RUN_COMPLETED,
    RunStatus.FAILED: EventKind.RUN_FAILED,
    RunStatus.CANCELLED: EventKind.RUN_CANCELLED,
}
_STEP_KINDS = {
    StepStatus.COMPLETED: EventKind.STEP_COMPLETED,
    StepStatus.FAILED: EventKind.STEP_FAILED,
    StepStatus.CANCELLED: EventKind.STEP_CANCELLED,
}


class Publisher:
    __slots__ = ("bus", "redact", "run_id", "workflow")

    def __init__(self, bus: EventBus, redact: Redactor, run_id: str, workflow: str) -> None:
        self.bus = bus
        self.redact = redact
        self.run_id = run_id
        self.workflow = workflow

    @property
    def listening(self) -> bool:
        """Whether anyone listens: events are made only then."""
        return self.bus.has_subscribers

    def publish(
        self,
        kind: EventKind,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        error: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        bus = self.bus
        if bus.has_subscribers:
            bus.publish(
                Event(
                    kind,
                    self.run_id,
                    self.workflow,
                    step_id,
                    attempt,
                    self.redact(error),
                    self.redact(data) if data else {},
                )
            )

    def status(self, status: RunStatus, error: str | None) -> None:
        """The run's status changed (pending has no event)."""
        kind = _RUN_KINDS.get(status)
        if kind is not None:
            self.publish(kind, error=error)

    def outcome(self, instance: str, outcome: Outcome) -> None:
        self.publish(
            _STEP_KINDS[outcome.status],
            step_id=instance,
            attempt=outcome.attempt,
            error=outcome.error,
            data={"worker": outcome.worker} if outcome.worker else None,
        )

    def waiting(self, instance: str, attempt: int, request: dict[str, Any]) -> None:
        self.publish(EventKind.STEP_WAITING, step_id=instance, attempt=attempt, data=request)
