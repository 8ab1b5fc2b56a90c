"""What every step executor gets, and how executors are found by kind.

An executor is ``async def execute(step, ctx) -> output``. Executors stay thin:
anything that needs the run (starting a loop body, a child run, waiting for a
person) goes through ``ctx.runtime``, which the engine provides, so the step
modules never import the engine.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from wfnb import template
from wfnb.model import AgentDefaults, Step
from wfnb.store.base import CallRecord

if TYPE_CHECKING:
    import httpx


class Runtime(Protocol):
    """The engine's side of a step: the services executors may call."""

    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: StepContext) -> Any:
        """Run a user callable on the run's backend."""
        ...

    def resolve_code(self, target: str | Callable[..., Any]) -> Callable[..., Any]: ...

    async def run_body(self, ctx: StepContext, index: int, loop: dict[str, Any]) -> dict[str, Any]:
        """Run one iteration of the loop step's body; the outputs of its steps."""
        ...

    async def run_child(self, ctx: StepContext, workflow: str, inputs: dict[str, Any]) -> Any:
        """Run a sub-workflow to its end; its outputs."""
        ...

    async def request_approval(
        self, ctx: StepContext, *, prompt: str, timeout: float | None
    ) -> dict[str, Any]:
        """Pause this step until a person decides; the decision."""
        ...

    def http_client(self) -> httpx.AsyncClient:
        """The engine's pooled HTTP client (http and agent steps)."""
        ...

    async def record_call(self, call: CallRecord) -> None:
        """Store one request of this step attempt, masked; durable on return."""
        ...

    def agent_defaults(self) -> list[AgentDefaults]:
        """Where an agent step's settings come from after the step itself: the
        workflow's ``agent:``, then the engine's."""
        ...


@dataclass
class StepContext:
    """Passed to executors, and to user callables that take a ``ctx`` parameter.

    ``idempotency_key`` is the same for every attempt of the step in this run (and
    for the same iteration of a loop body), so a callable can make its side effect
    happen once even though a step that was running at a crash runs again.

    ``resources`` are the step's (``resources: {GPU: 1}``), for the backend;
    ``worker`` is set by a backend that runs the attempt elsewhere (a Dask
    worker's address), so the engine can record where it ran.
    """

    run_id: str
    workflow: str
    step_id: str
    attempt: int
    depth: int
    scope: Mapping[str, Any] = field(repr=False)
    runtime: Runtime = field(repr=False)
    resources: Mapping[str, float] = field(default_factory=dict)
    worker: str | None = None

    @property
    def idempotency_key(self) -> str:
        return hashlib.sha256(f"{self.run_id}/{self.step_id}".encode()).hexdigest()[:32]

    @property
    def inputs(self) -> Mapping[str, Any]:
        return self.scope["inputs"]  # type: ignore[no-any-return]

    def render(self, value: Any) -> Any:
        """Render templates in ``value`` against this step's scope."""
        return template.render(value, self.scope, step_id=self.step_id)

    def evaluate(self, expression: str, **extra: Any) -> Any:
        scope = {**self.scope, **extra} if extra else self.scope
        return template.render(expression, scope, step_id=self.step_id, expression=True)

    def truthy(self, expression: str, **extra: Any) -> bool:
        scope = {**self.scope, **extra} if extra else self.scope
        return template.truthy(expression, scope, step_id=self.step_id)


Executor = Callable[[Step, StepContext], Awaitable[Any]]

_MODULES = {
    "code": "wfnb.steps.code",
    "skill": "wfnb.steps.skill",
    "conditional": "wfnb.steps.conditional",
    "loop": "wfnb.steps.loop",
    "approval": "wfnb.steps.approval",
    "workflow": "wfnb.steps.subworkflow",
    "http": "wfnb.steps.http",
    "agent": "wfnb.steps.agent",
}


@functools.cache
def executor_for(kind: str) -> Executor:
    """The executor of a step kind (one of `wfnb.model.STEP_KINDS`). Modules load on
    first use, so `http`/`agent` pull in httpx only when used."""
    return importlib.import_module(_MODULES[kind]).execute  # type: ignore[no-any-return]
