"""`Engine`: the one object users hold. It starts, resumes, approves and cancels
runs, and hosts them (`wfnb.run.host.RunHost`); the work is in its neighbours:
definitions, the run lifecycle, operations on stored runs, the store lease."""

from __future__ import annotations

import asyncio
import getpass
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wfnb.backends.base import Backend
from wfnb.backends.local import LocalBackend
from wfnb.dag import Plan, build_plan
from wfnb.engine import lifecycle, offline
from wfnb.engine.definitions import Definitions
from wfnb.engine.handle import RunHandle
from wfnb.engine.lease import StoreLease
from wfnb.engine.report import format_attempts
from wfnb.errors import LoopRunning, NotWaiting, RunNotFound, UnknownStepError
from wfnb.events import EventBus, RunObserver, Subscription
from wfnb.model import AgentDefaults, RunResult, RunStatus, StepStatus, Workflow
from wfnb.owner import current_owner, driven_elsewhere
from wfnb.redact import Redactor
from wfnb.run.host import CrashPoints
from wfnb.run.live import LiveRun, run_result
from wfnb.store.base import RunRecord, Store, latest_attempts
from wfnb.store.memory import MemoryStore
from wfnb.timeline import Timeline

if TYPE_CHECKING:
    import httpx

    from wfnb.steps.http import ClientPool

log = logging.getLogger("wfnb")


class Engine:
    """Runs workflows on the running asyncio loop and checkpoints them to ``store``.

    ``namespace`` is where ``code:`` names are looked up (a notebook passes its
    user namespace; it is read when a run starts, not copied). ``secrets`` are
    visible to templates as ``secrets.NAME`` and masked in everything stored or
    shown. ``agent_base_url`` and ``agent_model`` are where agent steps go when
    neither the step nor its workflow says (before the environment variables).
    """

    def __init__(
        self,
        store: Store | None = None,
        namespace: Mapping[str, Any] | None = None,
        backend: Backend | None = None,
        *,
        secrets: Mapping[str, str] | None = None,
        agent_base_url: str | None = None,
        agent_model: str | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self.backend: Backend = backend if backend is not None else LocalBackend()
        self.secrets: dict[str, str] = dict(secrets or {})
        self.redact = Redactor(self.secrets)
        self.agent = AgentDefaults(base_url=agent_base_url, model=agent_model)
        self._http: ClientPool | None = None
        self.bus = EventBus()
        self.crash = CrashPoints.from_environment()
        self.definitions = Definitions(namespace if namespace is not None else {})
        self.lease = StoreLease(self.store)
        self._semaphores: dict[tuple[str, int], asyncio.Semaphore] = {}

    @property
    def owner(self) -> str:
        return current_owner()

    @property
    def namespace(self) -> Mapping[str, Any]:
        return self.definitions.namespace

    @property
    def workflows(self) -> dict[str, Workflow]:
        """The registered workflows by name (what ``workflow:`` steps can run)."""
        return self.definitions.workflows

    # -- definitions ------------------------------------------------------------

    def register(self, workflow: Workflow) -> Workflow:
        """Check ``workflow``'s graph and make it available to ``workflow:`` steps."""
        return self.definitions.register(workflow)

    def plan(self, workflow: Workflow) -> Plan:
        """The checked plan of ``workflow``, built once per definition (`build_plan`)."""
        return build_plan(workflow)

    def resolve_code(
        self, target: str | Callable[..., Any], *, step_id: str | None = None
    ) -> Callable[..., Any]:
        """``name``, ``obj.attr`` from the namespace, or ``package.module.attr``."""
        return self.definitions.resolve_code(target, step_id=step_id)

    def check_runnable(self, workflow: Workflow) -> None:
        """Everything a run of ``workflow`` will look up exists: callables, skills,
        sub-workflows, step executors, and that this backend can send the callables
        where they run. Raises before anything is stored."""
        self.definitions.check_runnable(workflow, self.backend, self.agent)

    def code_hashes(self, workflow: Workflow) -> dict[str, str]:
        """Fingerprints of the callables that ``code:`` and ``skill:`` steps resolve to."""
        return self.definitions.code_hashes(workflow)

    async def definition(self, record: RunRecord) -> Workflow:
        """The definition a stored run started with, even if the cell was edited
        since (`NotResumable` if it is not stored and not registered)."""
        return await self.definitions.of_run(self.store, record)

    # -- runs -------------------------------------------------------------------

    async def start(self, workflow: Workflow, inputs: Mapping[str, Any] | None = None) -> RunHandle:
        """Register ``workflow`` and start a run of it; returns at once with a handle."""
        return RunHandle(self, await lifecycle.start(self, workflow, inputs))

    async def resume(self, run_id: str) -> RunHandle:
        """Go on with a run that was cut short (crash, cancel, failure) or paused in
        another process: completed steps are kept, the rest run (again)."""
        return RunHandle(self, await lifecycle.resume(self, run_id))

    async def rerun(self, run_id: str, from_step: str) -> RunHandle:
        """A new run that reuses the old run's checkpoints except ``from_step`` and
        everything downstream of it, which run again: the edit-and-retry loop of
        notebook work. The workflow as registered now is used (that is the edit),
        or the old run's definition when none is registered."""
        return RunHandle(self, await lifecycle.rerun(self, run_id, from_step))

    async def approve(
        self,
        run_id: str,
        step_id: str,
        *,
        approved: bool = True,
        by: str | None = None,
        comment: str | None = None,
    ) -> RunHandle | None:
        """Decide an approval step. A live run goes on at once; a run paused in a
        process that has gone is resumed here (approved) or failed (rejected)."""
        decision = {
            "approved": approved,
            "by": by or _whoami(),
            "comment": comment,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        live = self.lease.live(run_id)
        if live is None:
            decided = await offline.decide(self, run_id, step_id, decision)
            return None if decided is None else RunHandle(self, decided)
        if self._waiting(live, step_id) is not None:
            await self.lease.wake(live)  # the store back first: StoreLocked decides nothing
        future = self._waiting(live, step_id)
        if future is None:
            raise NotWaiting(
                f"step {step_id!r} of run {run_id} is not waiting for approval",
                run_id=run_id,
                step_id=step_id,
            )
        future.set_result(decision)
        return RunHandle(self, live)

    @staticmethod
    def _waiting(live: LiveRun, step_id: str) -> asyncio.Future[dict[str, Any]] | None:
        future = live.approvals.get(step_id)
        return None if future is None or future.done() else future

    async def reject(
        self, run_id: str, step_id: str, *, by: str | None = None, comment: str | None = None
    ) -> RunHandle | None:
        return await self.approve(run_id, step_id, approved=False, by=by, comment=comment)

    async def cancel(self, run_id: str) -> RunResult:
        """Stop the run: running steps are cancelled and recorded so; it can be
        resumed later."""
        live = self.lease.live(run_id)
        if live is None:
            await offline.cancel(self, run_id)
            return await self.result(run_id)
        live.request_stop("cancelled")
        await live.done()
        return live.result()

    async def wait(self, run_id: str) -> RunResult:
        """Wait until the run is finished (past any pause) and return its result.

        A run nobody drives that is at work in the store (its process, or the event
        loop that drove it here, ended: as after approving in one ``asyncio.run``)
        is resumed here first, since nothing else would ever finish it. A paused
        run driven nowhere gives its stored state at once: it waits for a person."""
        live = self.lease.live(run_id)
        if live is None:
            record = await self.store.get_run(run_id=run_id)
            if (
                record is None
                or record.status.finished
                or record.status is RunStatus.PAUSED
                or driven_elsewhere(record, here=self.owner)
            ):
                return await self.result(run_id)
            live = await lifecycle.resume(self, run_id)
        await live.done()
        return live.result()

    async def result(self, run_id: str) -> RunResult:
        """The run's result as it stands now (live, or from the store)."""
        live = self.lease.known(run_id)
        if live is not None:
            return live.result()
        record = await self.store.get_run(run_id=run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        steps = await self.store.get_steps(run_id=run_id)
        return run_result(
            record,
            status=record.status,
            outputs={
                step.step_id: step.output
                for step in steps
                if step.status is StepStatus.COMPLETED and step.has_output
            },
            error=record.error,
            failed_step=record.failed_step,
            tracebacks={
                step.step_id: step.traceback
                for step in latest_attempts(steps).values()
                if step.status is StepStatus.FAILED and step.traceback
            },
        )

    async def step_report(self, run_id: str, step_id: str) -> str:
        """Every attempt of a step as text: status, time, error and the user's frames
        of its traceback (what ``%workflow show RUN STEP`` prints)."""
        records = [s for s in await self.store.get_steps(run_id=run_id) if s.step_id == step_id]
        if not records:
            if await self.store.get_run(run_id=run_id) is None:
                raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
            raise UnknownStepError(
                f"run {run_id} has no attempt of a step {step_id!r}", step_id=step_id
            )
        return format_attempts(records)

    async def timeline(self, run_id: str) -> Timeline:
        """Every attempt of the run against time, as the store has it (a live run's
        checkpoints are in the store too, so this works while it runs)."""
        record = await self.store.get_run(run_id=run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        kinds = {sid: step.kind for sid, step in (await self.definition(record)).steps.items()}
        return Timeline.from_records(
            await self.store.get_steps(run_id=run_id),
            origin=record.started_at,
            kinds=kinds,
            title=f"{record.workflow} {run_id}: {record.status.value}",
            now=record.ended_at,
        )

    def handle(self, run_id: str) -> RunHandle | None:
        """The handle of a run this engine is driving (or drove recently); None otherwise."""
        live = self.lease.known(run_id)
        return RunHandle(self, live) if live is not None else None

    @property
    def live_runs(self) -> list[RunHandle]:
        return [RunHandle(self, live) for live in self.lease.runs]

    async def interrupted_runs(self) -> list[RunRecord]:
        """Runs left ``running`` (or ``pending``) by a process that no longer exists."""
        return await offline.interrupted(self)

    def subscribe(self, observer: RunObserver) -> Subscription:
        """Hear every lifecycle event of every run (call on the loop)."""
        return self.bus.subscribe(observer)

    def run_sync(self, workflow: Workflow, inputs: Mapping[str, Any] | None = None) -> RunResult:
        """Run to completion (or to a pause) from plain synchronous code."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise LoopRunning(
                "run_sync() cannot be called while an event loop is running (in a notebook "
                "cell or async code): use `run = await engine.start(wf)` then `await run`"
            )

        async def go() -> RunResult:
            handle = await self.start(workflow, inputs)
            try:
                return await handle
            finally:
                # Loop-bound state dies with the loop; a paused run lives on in the store.
                await self._let_go()

        try:
            return asyncio.run(go())
        finally:
            self._semaphores.clear()

    async def close(self) -> None:
        """Cancel live runs at work (recorded as cancelled, resumable) and let go of
        paused ones (they stay paused, for any process to decide or resume); release
        the backend and store."""
        runs = self.lease.runs
        for live in runs:
            if live.status is RunStatus.PAUSED:
                live.let_go()
            else:
                live.request_stop("cancelled")
        for live in runs:
            await live.done()
        await self._let_go()
        await self.backend.close()
        await self.store.close()

    async def _let_go(self) -> None:
        """The loop these runs lived on ends: forget them (their state is in the
        store), release the store, the HTTP client and what the backend holds on
        this loop."""
        await self.lease.let_go()
        if self._http is not None:
            await self._http.aclose()
        await self.backend.release()

    # -- the host of live runs (`wfnb.run.host.RunHost`) --------------------------

    def http_client(self) -> httpx.AsyncClient:
        """The pooled HTTP client of http and agent steps, made on first use (httpx
        is imported only then) and closed with the engine."""
        if self._http is None:
            from wfnb.steps.http import ClientPool

            self._http = ClientPool()
        return self._http.client()

    def concurrency_slot(self, run: LiveRun) -> asyncio.Semaphore | None:
        """Per-workflow concurrency applies to runs users start; child runs are part
        of their parent's run and never wait for a slot (that could deadlock)."""
        limit = run.workflow.concurrency
        if limit is None or run.record.depth > 0:
            return None
        key = (run.workflow.name, limit)
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = asyncio.Semaphore(limit)
        return semaphore

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
        return await lifecycle.start_child(
            self, name, inputs, run_id=run_id, parent=parent, parent_step=parent_step, depth=depth
        )

    def run_paused(self, run: LiveRun, paused: bool) -> None:
        self.lease.paused(run, paused)

    def run_ended(self, run: LiveRun) -> None:
        self.lease.ended(run)

    def internal_error(self, run: LiveRun, exc: BaseException) -> None:
        log.error("run %s failed inside wfnb", run.id, exc_info=exc)


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "unknown"
