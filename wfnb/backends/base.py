"""Where step code runs. The kernel stays the orchestrator and owns the checkpoint
store; a backend only executes user callables, so the same workflow runs on a
laptop (`LocalBackend`) or a cluster (a Dask backend) by changing ``backend=``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from wfnb.steps.base import StepContext


@runtime_checkable
class Backend(Protocol):
    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: StepContext) -> Any:
        """Run ``fn(**kwargs)`` and return its result; raise what it raises."""
        ...

    async def close(self) -> None:
        """Release workers; idempotent."""
        ...
