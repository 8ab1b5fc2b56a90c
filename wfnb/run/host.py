"""What a live run needs from whatever hosts it (the `Engine` is the one host).

The run reaches its host only through this protocol: the store it checkpoints to,
the backend its code runs on, the bus its events go out on, the redactor for what
it stores and shows, child runs, a concurrency slot, and the HTTP client and agent
defaults of http and agent steps. The host's own
bookkeeping (which runs are live, the store's lease) stays behind it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx

    from wfnb.backends.base import Backend
    from wfnb.events import EventBus
    from wfnb.model import AgentDefaults
    from wfnb.redact import Redactor
    from wfnb.run.live import LiveRun
    from wfnb.store.base import Store


class CrashPoints:
    """``WFNB_CRASH_AT=POINT:STEP`` makes the process die at that point, for the
    crash tests: ``before`` (the before-record is not yet written), ``started``
    (it is durable, the code has not run), ``finished`` (the code ran, the after-
    record is not written) or ``after`` (it is durable)."""

    def __init__(self, spec: str | None) -> None:
        self.points: set[tuple[str, str]] = set()
        for item in (spec or "").split(","):
            point, _, step = item.strip().partition(":")
            if point and step:
                self.points.add((point, step))

    @classmethod
    def from_environment(cls) -> CrashPoints:
        return cls(os.environ.get("WFNB_CRASH_AT"))

    def hit(self, point: str, instance: str) -> None:
        if self.points and (point, instance) in self.points:
            os._exit(99)


class RunHost(Protocol):
    """The narrow face of the engine that a `LiveRun` sees."""

    @property
    def store(self) -> Store: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def bus(self) -> EventBus: ...

    @property
    def redact(self) -> Redactor: ...

    @property
    def secrets(self) -> Mapping[str, str]: ...

    @property
    def owner(self) -> str:
        """Who drives runs here (`wfnb.owner.current_owner`), written on each run."""

    @property
    def crash(self) -> CrashPoints: ...

    @property
    def agent(self) -> AgentDefaults:
        """Where agent steps go when neither the step nor its workflow says."""

    def http_client(self) -> httpx.AsyncClient:
        """The pooled HTTP client of http and agent steps, bound to the running loop."""

    def resolve_code(
        self, target: str | Callable[..., Any], *, step_id: str | None = None
    ) -> Callable[..., Any]:
        """The callable a ``code:`` step names."""

    def concurrency_slot(self, run: LiveRun) -> asyncio.Semaphore | None:
        """The semaphore ``run`` must hold while it runs; None when it need not wait."""

    async def start_child(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        run_id: str,
        parent: LiveRun,
        parent_step: str,
        depth: int,
    ) -> LiveRun:
        """Start the child run of a ``workflow:`` step, or pick up the one an
        earlier attempt (or process) started under ``run_id``."""

    def run_paused(self, run: LiveRun, paused: bool) -> None:
        """``run`` now waits for a person (``paused``), or goes on: a paused run needs
        no store, and must hold none (other processes use the file meanwhile)."""

    def run_ended(self, run: LiveRun) -> None:
        """``run`` has settled for good: it is no longer live."""

    def internal_error(self, run: LiveRun, exc: BaseException) -> None:
        """A bug inside wfnb ended ``run``: report it."""
