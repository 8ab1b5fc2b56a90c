"""A run's lifecycle as the engine sees it: start one, resume one that was cut
short, rerun one from a step, and start (or find again) a step's child run.

Each ends in `begin`: the run's record (and its definition, the first time) is
written before the run is driven, so a run that exists in memory exists in the
store.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from wfnb.dag import Plan
from wfnb.errors import DefinitionError, NotResumable, RunNotFound, UnknownStepError
from wfnb.instances import base_id
from wfnb.model import RunStatus, StepStatus, Workflow
from wfnb.owner import driven_elsewhere
from wfnb.run.live import LiveRun
from wfnb.store.base import Batch, RunRecord, StepRecord, latest_attempts

if TYPE_CHECKING:
    from wfnb.engine.facade import Engine

log = logging.getLogger("wfnb")


def _new_record(engine: Engine, workflow: Workflow, inputs: Mapping[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=uuid.uuid4().hex[:12],
        workflow=workflow.name,
        definition_hash=workflow.definition_hash,
        status=RunStatus.PENDING,
        inputs=dict(inputs),
        created_at=time.time(),
        owner=engine.owner,
    )


async def start(engine: Engine, workflow: Workflow, inputs: Mapping[str, Any] | None) -> LiveRun:
    engine.register(workflow)
    engine.check_runnable(workflow)
    workflow.check_inputs(inputs or {})
    record = replace(
        _new_record(engine, workflow, {**workflow.inputs, **(inputs or {})}),
        code_hashes=engine.code_hashes(workflow),
    )
    return await begin(engine, workflow, record, {})


async def begin(
    engine: Engine,
    workflow: Workflow,
    record: RunRecord,
    restored: Mapping[str, StepRecord],
    *,
    copied: tuple[StepRecord, ...] = (),
) -> LiveRun:
    """Store the run's record (with its definition and ``copied`` steps), then
    drive it. A run that can start at once has its ``running`` record written in
    the same batch (`LiveRun.start_at_once`), unless steps are copied: their
    events (an interrupted attempt's end, a step kept from an earlier run) come
    before the run's start."""
    definitions = engine.definitions
    async with engine.lease.starting():
        live = LiveRun(engine, workflow, engine.plan(workflow), record, restored)
        runs: tuple[RunRecord, ...] = (live.stored_record(),)
        if not copied and (running := live.start_at_once()) is not None:
            runs += (running,)
        await engine.store.write(
            Batch.changes(workflows=definitions.unsaved(workflow), runs=runs, steps=copied)
        )
        definitions.saved(workflow)
        engine.lease.add(live)
    live.task = asyncio.get_running_loop().create_task(
        live.main(), name=f"wfnb-run-{record.run_id}"
    )
    return live


async def start_child(
    engine: Engine,
    name: str,
    inputs: Mapping[str, Any],
    *,
    run_id: str,
    parent: LiveRun,
    parent_step: str,
    depth: int,
) -> LiveRun:
    """Child ids derive from the parent's, so a resumed parent finds its children
    instead of starting them twice."""
    live = engine.lease.live(run_id)
    if live is not None:
        if live.stop_reason is None:
            return live
        await live.done()  # stopped with an earlier attempt: resume it once ended
    existing = await engine.store.get_run(run_id=run_id)
    if existing is not None:
        if existing.status is RunStatus.COMPLETED:
            return await replay(engine, existing)
        return await resume(engine, run_id)
    workflow = engine.workflows.get(name)
    if workflow is None:
        raise DefinitionError(f"no workflow named {name!r} is registered", step_id=parent_step)
    engine.check_runnable(workflow)
    try:
        workflow.check_inputs(inputs)
    except DefinitionError as exc:
        raise DefinitionError(f"`with`: {exc}", step_id=parent_step) from None
    record = replace(
        _new_record(engine, workflow, {**workflow.inputs, **inputs}),
        run_id=run_id,
        parent_run_id=parent.id,
        parent_step_id=parent_step,
        depth=depth,
    )
    return await begin(engine, workflow, record, {})


async def replay(engine: Engine, record: RunRecord) -> LiveRun:
    """A finished run from the store, as a run already done (for uniform results)."""
    workflow = await engine.definition(record)
    steps = latest_attempts(await engine.store.get_steps(run_id=record.run_id))
    return LiveRun.ended(engine, workflow, engine.plan(workflow), record, steps)


async def resume(engine: Engine, run_id: str) -> LiveRun:
    live = engine.lease.live(run_id)
    if live is not None:
        return live
    record = await engine.store.get_run(run_id=run_id)
    if record is None:
        raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
    if record.status is RunStatus.COMPLETED:
        raise NotResumable(f"run {run_id} already completed", run_id=run_id)
    if driven_elsewhere(record, here=engine.owner):
        raise NotResumable(
            f"run {run_id} is being driven by another live process ({record.owner})",
            run_id=run_id,
        )
    workflow = await engine.definition(record)
    engine.check_runnable(workflow)
    restored = latest_attempts(await engine.store.get_steps(run_id=run_id))
    # The attempts its dead driver left running ended with it: history says so.
    now = time.time()
    killed = tuple(
        replace(
            step,
            status=StepStatus.FAILED,
            ended_at=now,
            error="interrupted: the process driving it ended before it finished",
        )
        for step in restored.values()
        if step.status is StepStatus.RUNNING
    )
    restored.update((step.step_id, step) for step in killed)
    now_hashes = engine.code_hashes(workflow)
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
        owner=engine.owner,
        code_hashes=now_hashes,
        inputs=engine.redact.restore(record.inputs),  # stored masked
    )
    live = await begin(engine, workflow, record, restored, copied=killed)
    for step_id in changed:
        note = f"step {step_id!r} will run code that changed since the run started"
        live.notes.append(note)
        log.warning("run %s: %s", run_id, note)
    return live


async def rerun(engine: Engine, run_id: str, from_step: str) -> LiveRun:
    old = await engine.store.get_run(run_id=run_id)
    if old is None:
        raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
    workflow = engine.workflows.get(old.workflow) or await engine.definition(old)
    plan = engine.plan(workflow)
    top = _top_level_owner(plan)
    if from_step not in top:
        raise UnknownStepError(
            f"workflow {workflow.name!r} has no step {from_step!r}", step_id=from_step
        )
    engine.check_runnable(workflow)
    redo = {top[from_step], *plan.downstream(top[from_step])}
    record = replace(
        # stored masked: the steps that run again get the secrets themselves
        _new_record(engine, workflow, engine.redact.restore(old.inputs)),
        code_hashes=engine.code_hashes(workflow),
    )
    copied = tuple(
        replace(step, run_id=record.run_id)
        for instance, step in latest_attempts(await engine.store.get_steps(run_id=run_id)).items()
        if step.status in (StepStatus.COMPLETED, StepStatus.SKIPPED)
        and top.get(base_id(instance)) not in redo | {None}
    )
    engine.register(workflow)
    restored = {step.step_id: step for step in copied}
    return await begin(engine, workflow, record, restored, copied=copied)


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
