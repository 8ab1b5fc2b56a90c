"""Where step code runs. The kernel stays the orchestrator and owns the checkpoint
store; a backend only executes user callables, so the same workflow runs on a
laptop (`LocalBackend`) or a cluster (`DaskBackend`) by changing ``backend=``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from wfnb.steps.base import StepContext


@runtime_checkable
class Backend(Protocol):
    def check(self, fn: Callable[..., Any], *, step_id: str) -> None:
        """Raise a `DefinitionError` naming ``step_id`` if ``fn`` cannot run here
        (a remote backend cannot send an unpicklable callable). Called when a run
        starts or resumes, before anything is stored."""
        ...

    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: StepContext) -> Any:
        """Run ``fn(**kwargs)`` and return its result; raise what it raises. A
        backend that runs it elsewhere sets ``ctx.worker`` to where."""
        ...

    async def release(self) -> None:
        """The event loop the engine runs on is about to end (``run_sync``
        returns, the engine closes): let go of what is bound to it, such as an
        asynchronous client. The backend works again on the next call."""
        ...

    async def close(self) -> None:
        """Release workers; idempotent."""
        ...
