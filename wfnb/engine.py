"""The engine: starts, resumes, approves and cancels runs; the public face of the core.

Headless by design: it imports neither IPython, ipywidgets, graphviz nor duckdb, so
scripts, tests and CI run exactly what a notebook runs. The notebook layer only
adds a view on top of `Engine.subscribe`.
"""

from __future__ import annotations

import asyncio
import difflib
import getpass
import importlib
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import networkx as nx

from wfnb.backends.base import Backend
from wfnb.backends.local import LocalBackend
from wfnb.dag import Plan, build_plan
from wfnb.errors import (
    DefinitionError,
    NotResumable,
    RunNotFound,
    UnknownCallableError,
    UnknownStepError,
    WfnbError,
)
from wfnb.events import EventBus, RunObserver, Subscription
from wfnb.model import (
    CodeSpec,
    RunResult,
    RunStatus,
    SkillSpec,
    StepStatus,
    Workflow,
    WorkflowSpec,
)
from wfnb.owner import current_owner, owner_alive
from wfnb.redact import Redactor
from wfnb.runner import CrashPoints, LiveRun, base_id, step_outputs
from wfnb.steps.base import executor_for
from wfnb.steps.code import fingerprint
from wfnb.steps.skill import find_skill
from wfnb.store.base import Batch, RunRecord, StepRecord, Store, WorkflowRecord, latest_attempts
from wfnb.store.memory import MemoryStore
from wfnb.timeline import Timeline

log = logging.getLogger("wfnb")
_KEEP_FINISHED = 256


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
        return self._engine._snapshot(self._live)

    async def wait(self) -> RunResult:
        await self._live.done()
        return self._engine._snapshot(self._live)

    def result(self) -> RunResult:
        """The run's state now, without waiting."""
        return self._engine._snapshot(self._live)

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


class Engine:
    """Runs workflows on the running asyncio loop and checkpoints them to ``store``.

    ``namespace`` is where ``code:`` names are looked up (a notebook passes its
    user namespace; it is read when a run starts, not copied). ``secrets`` are
    visible to templates as ``secrets.NAME`` and masked in everything stored or
    shown.
    """

    def __init__(
        self,
        store: Store | None = None,
        namespace: Mapping[str, Any] | None = None,
        backend: Backend | None = None,
        *,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self.namespace: Mapping[str, Any] = namespace if namespace is not None else {}
        self.backend: Backend = backend if backend is not None else LocalBackend()
        self.secrets: dict[str, str] = dict(secrets or {})
        self.redact = Redactor(self.secrets)
        self.bus = EventBus()
        self.workflows: dict[str, Workflow] = {}
        self.crash = CrashPoints(os.environ.get("WFNB_CRASH_AT"))
        self._plans: dict[tuple[str, str], Plan] = {}
        self._saved_definitions: set[tuple[str, str]] = set()
        self._live: dict[str, LiveRun] = {}
        self._finished: OrderedDict[str, LiveRun] = OrderedDict()
        self._semaphores: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._holding = False
        self._releasing: asyncio.Task[None] | None = None

    @property
    def owner(self) -> str:
        return current_owner()

    # -- definitions ------------------------------------------------------------

    def register(self, workflow: Workflow) -> Workflow:
        """Check ``workflow``'s graph and make it available to ``workflow:`` steps."""
        self.plan(workflow)
        self.workflows[workflow.name] = workflow
        return workflow

    def plan(self, workflow: Workflow) -> Plan:
        """The checked plan of ``workflow``, built once per definition."""
        key = (workflow.name, workflow.definition_hash)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = build_plan(workflow)
        return plan

    def resolve_code(
        self, target: str | Callable[..., Any], *, step_id: str | None = None
    ) -> Callable[..., Any]:
        """``name``, ``obj.attr`` from the namespace, or ``package.module.attr``."""
        if callable(target):
            return target
        head, _, rest = target.partition(".")
        found: Any
        if head in self.namespace:
            found = self.namespace[head]
            for part in rest.split(".") if rest else ():
                found = getattr(found, part, None)
        elif rest:
            module, _, attr = target.rpartition(".")
            try:
                found = getattr(importlib.import_module(module), attr, None)
            except ImportError:
                found = None
        else:
            found = None
        if found is None:
            close = difflib.get_close_matches(
                target, [k for k, v in self.namespace.items() if callable(v)], n=1
            )
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownCallableError(
                f"no callable named {target!r} in the namespace{hint}", step_id=step_id
            )
        if not callable(found):
            raise UnknownCallableError(
                f"{target!r} is a {type(found).__name__}, not a callable", step_id=step_id
            )
        return found  # type: ignore[no-any-return]

    def check_runnable(self, workflow: Workflow) -> None:
        """Everything a run of ``workflow`` will look up exists: callables, skills,
        sub-workflows, step executors. Raises before anything is stored."""
        for step_id, step in workflow.steps.items():
            line = workflow.line_of(step_id)
            if executor_for(step.kind) is None:
                raise DefinitionError(
                    f"{step.kind} steps cannot run in this version of wfnb yet",
                    step_id=step_id,
                    line=line,
                )
            spec = step.spec
            try:
                if step.kind == "code":
                    self.resolve_code(spec.target, step_id=step_id)  # type: ignore[union-attr]
                elif isinstance(spec, SkillSpec) and find_skill(spec.target) is None:
                    raise UnknownCallableError(
                        f"no skill registered as {spec.target!r} (decorate it with @wfnb.skill)",
                        step_id=step_id,
                    )
                elif isinstance(spec, WorkflowSpec) and spec.target not in self.workflows:
                    raise DefinitionError(
                        f"no workflow named {spec.target!r} is registered "
                        f"(known: {', '.join(sorted(self.workflows)) or 'none'})",
                        step_id=step_id,
                    )
            except DefinitionError as exc:
                raise type(exc)(exc.reason, step_id=step_id, line=line) from None

    # -- runs -------------------------------------------------------------------

    async def start(self, workflow: Workflow, inputs: Mapping[str, Any] | None = None) -> RunHandle:
        """Register ``workflow`` and start a run of it; returns at once with a handle."""
        self.register(workflow)
        self.check_runnable(workflow)
        record = RunRecord(
            run_id=uuid.uuid4().hex[:12],
            workflow=workflow.name,
            definition_hash=workflow.definition_hash,
            status=RunStatus.PENDING,
            inputs={**workflow.inputs, **(inputs or {})},
            created_at=time.time(),
            owner=self.owner,
            code_hashes=self.code_hashes(workflow),
        )
        return await self._begin(workflow, record, {})

    def code_hashes(self, workflow: Workflow) -> dict[str, str]:
        """Fingerprints of the callables that ``code:`` and ``skill:`` steps resolve to."""
        hashes = {}
        for step_id, step in workflow.steps.items():
            if isinstance(step.spec, CodeSpec):
                hashes[step_id] = fingerprint(self.resolve_code(step.spec.target))
            elif isinstance(step.spec, SkillSpec) and (found := find_skill(step.spec.target)):
                hashes[step_id] = fingerprint(found.fn)
        return hashes

    async def _begin(
        self,
        workflow: Workflow,
        record: RunRecord,
        restored: Mapping[str, StepRecord],
        *,
        copied: tuple[StepRecord, ...] = (),
    ) -> RunHandle:
        key = (workflow.name, workflow.definition_hash)
        definitions: tuple[WorkflowRecord, ...] = ()
        if key not in self._saved_definitions:
            definitions = (
                WorkflowRecord(
                    workflow.name, workflow.to_yaml(), workflow.definition_hash, time.time()
                ),
            )
        stored = replace(record, inputs=self.redact(record.inputs)) if self.redact else record
        if not self._live and not self._holding:
            await self.store.acquire()  # StoreLocked here means nothing was stored
            self._holding = True
        await self.store.write(Batch(workflows=definitions, runs=(stored,), steps=copied))
        self._saved_definitions.add(key)
        live = LiveRun(self, workflow, self.plan(workflow), record, restored)
        self._live[record.run_id] = live
        live.task = asyncio.get_running_loop().create_task(
            live.main(), name=f"wfnb-run-{record.run_id}"
        )
        return RunHandle(self, live)

    async def _child_run(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        run_id: str,
        parent: LiveRun,
        parent_step: str,
        depth: int,
    ) -> RunHandle:
        """Start the child run of a ``workflow:`` step, or pick up the one an earlier
        attempt (or process) started: child ids derive from the parent's, so a
        resumed parent finds its children instead of starting them twice."""
        live = self._live.get(run_id)
        if live is not None:
            if live.stop_reason is None:
                return RunHandle(self, live)
            await live.done()  # stopped with an earlier attempt: resume it once ended
        existing = await self.store.get_run(run_id=run_id)
        if existing is not None:
            if existing.status is RunStatus.COMPLETED:
                return RunHandle(self, await self._replay(existing))
            return await self.resume(run_id)
        workflow = self.workflows.get(name)
        if workflow is None:
            raise DefinitionError(f"no workflow named {name!r} is registered", step_id=parent_step)
        self.check_runnable(workflow)
        record = RunRecord(
            run_id=run_id,
            workflow=name,
            definition_hash=workflow.definition_hash,
            status=RunStatus.PENDING,
            inputs={**workflow.inputs, **inputs},
            created_at=time.time(),
            parent_run_id=parent.id,
            parent_step_id=parent_step,
            depth=depth,
            owner=self.owner,
        )
        return await self._begin(workflow, record, {})

    async def _replay(self, record: RunRecord) -> LiveRun:
        """A finished run as a LiveRun that is already done (for uniform results)."""
        workflow = await self._definition(record)
        steps = latest_attempts(await self.store.get_steps(run_id=record.run_id))
        live = LiveRun(self, workflow, self.plan(workflow), record, steps)
        live.status = record.status
        live._done.set_result(None)
        live._settled.set()
        return live

    async def resume(self, run_id: str) -> RunHandle:
        """Go on with a run that was cut short (crash, cancel, failure) or paused in
        another process: completed steps are kept, the rest run (again)."""
        live = self._live.get(run_id)
        if live is not None:
            return RunHandle(self, live)
        record = await self.store.get_run(run_id=run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        if record.status is RunStatus.COMPLETED:
            raise NotResumable(f"run {run_id} already completed", run_id=run_id)
        if (
            not record.status.finished
            and record.owner not in (None, self.owner)
            and owner_alive(record.owner)
        ):
            raise NotResumable(
                f"run {run_id} is being driven by another live process ({record.owner})",
                run_id=run_id,
            )
        workflow = await self._definition(record)
        self.check_runnable(workflow)
        restored = latest_attempts(await self.store.get_steps(run_id=run_id))
        now_hashes = self.code_hashes(workflow)
        changed = sorted(  # steps that will run again, with other code than before
            step_id
            for step_id, digest in record.code_hashes.items()
            if now_hashes.get(step_id, digest) != digest
            and (step_id not in restored or restored[step_id].status is not StepStatus.COMPLETED)
        )
        record = replace(
            record,
            status=RunStatus.PENDING,
            ended_at=None,
            error=None,
            failed_step=None,
            owner=self.owner,
            code_hashes=now_hashes,
            inputs=self.redact.restore(record.inputs),  # stored masked
        )
        handle = await self._begin(workflow, record, restored)
        for step_id in changed:
            note = f"step {step_id!r} will run code that changed since the run started"
            handle._live.notes.append(note)
            log.warning("run %s: %s", run_id, note)
        return handle

    async def rerun(self, run_id: str, from_step: str) -> RunHandle:
        """A new run that reuses the old run's checkpoints except ``from_step`` and
        everything downstream of it, which run again: the edit-and-retry loop of
        notebook work. The workflow as registered now is used (that is the edit),
        or the old run's definition when none is registered."""
        old = await self.store.get_run(run_id=run_id)
        if old is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        workflow = self.workflows.get(old.workflow) or await self._definition(old)
        plan = self.plan(workflow)
        top = _top_level_owner(plan)
        if from_step not in top:
            raise UnknownStepError(
                f"workflow {workflow.name!r} has no step {from_step!r}", step_id=from_step
            )
        self.check_runnable(workflow)
        graph = plan.graph
        redo = {top[from_step], *nx.descendants(graph, top[from_step])}
        new_id = uuid.uuid4().hex[:12]
        copied = tuple(
            replace(step, run_id=new_id)
            for instance, step in latest_attempts(await self.store.get_steps(run_id=run_id)).items()
            if step.status in (StepStatus.COMPLETED, StepStatus.SKIPPED)
            and top.get(base_id(instance)) not in redo | {None}
        )
        record = RunRecord(
            run_id=new_id,
            workflow=workflow.name,
            definition_hash=workflow.definition_hash,
            status=RunStatus.PENDING,
            inputs=dict(old.inputs),
            created_at=time.time(),
            owner=self.owner,
        )
        self.register(workflow)
        restored = {step.step_id: step for step in copied}
        return await self._begin(workflow, record, restored, copied=copied)

    async def definition(self, record: RunRecord) -> Workflow:
        """The definition ``record``'s run started with (registered, else stored)."""
        return await self._definition(record)

    async def timeline(self, run_id: str) -> Timeline:
        """Every attempt of the run against time, as the store has it."""
        record = await self.store.get_run(run_id=run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        kinds = {sid: step.kind for sid, step in (await self._definition(record)).steps.items()}
        return Timeline.from_records(
            await self.store.get_steps(run_id=run_id),
            origin=record.started_at,
            kinds=kinds,
            title=f"{record.workflow} {run_id}: {record.status.value}",
            now=record.ended_at,
        )

    async def _definition(self, record: RunRecord) -> Workflow:
        """The definition the run started with, even if the cell was edited since."""
        registered = self.workflows.get(record.workflow)
        if registered is not None and registered.definition_hash == record.definition_hash:
            return registered
        stored = await self.store.get_workflow(
            name=record.workflow, definition_hash=record.definition_hash
        )
        if stored is None:
            if registered is not None:
                log.warning(
                    "run %s: its definition is not stored; using the current one", record.run_id
                )
                return registered
            raise NotResumable(
                f"the definition of workflow {record.workflow!r} used by run {record.run_id} "
                "is not in the store",
                run_id=record.run_id,
            )
        workflow = Workflow.from_yaml(stored.definition, name=record.workflow)
        if workflow.definition_hash != record.definition_hash:
            # Parsed text that hashes differently (e.g. magic overrides): keep the run's.
            object.__setattr__(workflow, "_source", stored.definition)
        return workflow

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
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        live = self._live.get(run_id)
        if live is not None:
            future = live.approvals.get(step_id)
            if future is None or future.done():
                raise WfnbError(f"step {step_id!r} of run {run_id} is not waiting for approval")
            future.set_result(decision)
            return RunHandle(self, live)
        record = await self.store.get_run(run_id=run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        attempts = latest_attempts(await self.store.get_steps(run_id=run_id))
        latest = attempts.get(step_id)
        if latest is None or latest.status is not StepStatus.WAITING_APPROVAL:
            state = latest.status.value if latest else "not started"
            raise WfnbError(
                f"step {step_id!r} of run {run_id} is not waiting for approval ({state})"
            )
        now = time.time()
        if approved:
            done = replace(
                latest, status=StepStatus.COMPLETED, ended_at=now, output=decision, has_output=True
            )
            await self.store.write(Batch(steps=(done,)))
            root = record
            while root.parent_run_id is not None:  # a child goes on inside its parent
                parent = await self.store.get_run(run_id=root.parent_run_id)
                if parent is None:
                    break
                root = parent
            if root is record:
                return await self.resume(run_id)
            resumed = await self.resume(root.run_id)
            return self.handle(run_id) or resumed
        error = f"rejected by {decision['by']}" + (f": {comment}" if comment else "")
        await self._fail_offline(record, step_id, error, now)
        return None

    async def _fail_offline(self, record: RunRecord, step_id: str, error: str, now: float) -> None:
        """End a run no process drives: ``step_id`` failed, the steps it left open
        cancelled (as `cancel` does), and the same up its parents, whose
        ``workflow:`` step failed with it. One batch: never a half-ended family."""
        runs: list[RunRecord] = []
        steps: list[StepRecord] = []
        current: RunRecord | None = record
        while current is not None:
            attempts = latest_attempts(await self.store.get_steps(run_id=current.run_id))
            failing = attempts.get(step_id)
            if failing is not None:
                steps.append(
                    replace(
                        failing,
                        status=StepStatus.FAILED,
                        ended_at=now,
                        error=error,
                        output=None,
                        has_output=False,
                    )
                )
            steps.extend(
                _close_open((step for other, step in attempts.items() if other != step_id), now)
            )
            runs.append(
                replace(
                    current,
                    status=RunStatus.FAILED,
                    ended_at=now,
                    error=f"step {step_id!r} failed: {error}",
                    failed_step=step_id,
                )
            )
            if current.parent_run_id is None or current.parent_step_id is None:
                break
            error = f"sub-workflow {current.workflow!r} (run {current.run_id}) failed: {error}"
            step_id = current.parent_step_id
            current = await self.store.get_run(run_id=current.parent_run_id)
        await self.store.write(Batch(runs=runs, steps=steps))

    async def reject(
        self, run_id: str, step_id: str, *, by: str | None = None, comment: str | None = None
    ) -> RunHandle | None:
        return await self.approve(run_id, step_id, approved=False, by=by, comment=comment)

    async def cancel(self, run_id: str) -> RunResult:
        """Stop the run: running steps are cancelled and recorded so; it can be
        resumed later."""
        live = self._live.get(run_id)
        if live is not None:
            live.request_stop("cancelled")
            await live.done()
            return self._snapshot(live)
        record = await self.store.get_run(run_id=run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        if not record.status.finished:
            if record.owner not in (None, self.owner) and owner_alive(record.owner):
                raise NotResumable(
                    f"run {run_id} is driven by another live process ({record.owner}); "
                    "cancel it there",
                    run_id=run_id,
                )
            now = time.time()
            attempts = latest_attempts(await self.store.get_steps(run_id=run_id))
            open_steps = _close_open(attempts.values(), now)
            ended = replace(record, status=RunStatus.CANCELLED, ended_at=now, error="cancelled")
            await self.store.write(Batch(runs=(ended,), steps=open_steps))
        return await self.result(run_id)

    async def wait(self, run_id: str) -> RunResult:
        """Wait until the run is finished (past any pause) and return its result."""
        live = self._live.get(run_id)
        if live is not None:
            await live.done()
            return self._snapshot(live)
        return await self.result(run_id)

    async def result(self, run_id: str) -> RunResult:
        """The run's result as it stands now (live, or from the store)."""
        live = self._live.get(run_id) or self._finished.get(run_id)
        if live is not None:
            return self._snapshot(live)
        record = await self.store.get_run(run_id=run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        steps = await self.store.get_steps(run_id=run_id)
        outputs = step_outputs(
            {
                step.step_id: step.output
                for step in steps
                if step.status is StepStatus.COMPLETED and step.has_output
            }
        )
        result = RunResult(
            run_id=record.run_id,
            workflow=record.workflow,
            status=record.status,
            outputs=outputs,
            error=record.error,
            failed_step=record.failed_step,
        )
        result._timelines = self.timeline
        return result

    def _snapshot(self, live: LiveRun, *, masked: bool = True) -> RunResult:
        # Shown to the user, so masked like the records; unmasked only for a parent
        # run's steps, which need the real values as their own outputs are.
        redact = self.redact if masked else _unmasked
        result = RunResult(
            run_id=live.id,
            workflow=live.workflow.name,
            status=live.status,
            outputs={key: redact(value) for key, value in step_outputs(live.outputs).items()},
            error=redact(live.error_text()) if live.status.finished or live.failure else None,
            failed_step=live.failure[0] if live.failure and live.failure[0] else None,
        )
        result._timelines = self.timeline
        return result

    def handle(self, run_id: str) -> RunHandle | None:
        """The handle of a run this engine is driving (or drove recently); None otherwise."""
        live = self._live.get(run_id) or self._finished.get(run_id)
        return RunHandle(self, live) if live is not None else None

    @property
    def live_runs(self) -> list[RunHandle]:
        return [RunHandle(self, live) for live in self._live.values()]

    async def interrupted_runs(self) -> list[RunRecord]:
        """Runs left ``running`` (or ``pending``) by a process that no longer exists."""
        runs = await self.store.list_runs(statuses=[RunStatus.RUNNING, RunStatus.PENDING])
        return [
            run
            for run in runs
            if run.run_id not in self._live
            and run.parent_run_id is None
            and (run.owner != self.owner and not owner_alive(run.owner))
        ]

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
            raise WfnbError(
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

    async def _let_go(self) -> None:
        """Forget live runs (their state is in the store) and release the store."""
        self._live.clear()
        if self._holding:
            self._holding = False
            await self.store.release()
        if self._releasing is not None:
            await self._releasing
            self._releasing = None

    async def close(self) -> None:
        """Cancel live runs (recorded as cancelled, resumable), release the backend and store."""
        for live in list(self._live.values()):
            live.request_stop("cancelled")
        for live in list(self._live.values()):
            await live.done()
        await self._let_go()
        await self.backend.close()
        await self.store.close()

    # -- used by LiveRun --------------------------------------------------------

    def _semaphore(self, live: LiveRun) -> asyncio.Semaphore | None:
        """Per-workflow concurrency applies to runs users start; child runs are part
        of their parent's run and never wait for a slot (that could deadlock)."""
        limit = live.workflow.concurrency
        if limit is None or live.record.depth > 0:
            return None
        key = (live.workflow.name, limit)
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = asyncio.Semaphore(limit)
        return semaphore

    def _forget(self, live: LiveRun) -> None:
        if self._live.get(live.id) is live:
            del self._live[live.id]
        if not self._live and self._holding:
            self._holding = False
            self._releasing = asyncio.get_running_loop().create_task(self.store.release())
        self._finished[live.id] = live
        while len(self._finished) > _KEEP_FINISHED:
            self._finished.popitem(last=False)

    def _log_internal_error(self, live: LiveRun, exc: BaseException) -> None:
        log.error("run %s failed inside wfnb", live.id, exc_info=exc)


def _unmasked(value: Any) -> Any:
    return value


def _close_open(steps: Iterable[StepRecord], now: float) -> list[StepRecord]:
    """The steps a run that no process drives any more left open (running, or
    waiting for a person), ended as `cancel` ends them; the others are left out."""
    return [
        replace(step, status=StepStatus.CANCELLED, ended_at=now, error="cancelled")
        for step in steps
        if step.status in (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL)
    ]


def _top_level_owner(plan: Plan) -> dict[str, str]:
    """Each step id -> the top-level step it runs under (itself, or its loop)."""
    owner: dict[str, str] = {}

    def visit(scope: Plan, top: str | None) -> None:
        for sid in scope.steps:
            owner[sid] = top or sid
            if sid in scope.bodies:
                visit(scope.bodies[sid], top or sid)

    visit(plan, None)
    return owner


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "unknown"
