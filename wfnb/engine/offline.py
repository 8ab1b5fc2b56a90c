"""Operations on stored runs that no process drives: a run paused in a kernel
that has gone can still be approved, rejected or cancelled, from its records.

Each first makes sure no live process drives the run (`driven_elsewhere`): that
process owns its records, and writing beside it would fork the run's history.
Each writes its changes in one batch, so the store never shows half of one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from wfnb.engine import lifecycle
from wfnb.errors import ApprovalRejected, NotResumable, NotWaiting, RunNotFound
from wfnb.model import RunStatus, StepStatus
from wfnb.owner import driven_elsewhere
from wfnb.run.live import LiveRun
from wfnb.store.base import Batch, RunRecord, StepRecord, latest_attempts

if TYPE_CHECKING:
    from wfnb.engine.facade import Engine


async def stored_run(engine: Engine, run_id: str, *, to: str) -> RunRecord:
    """``run_id``'s record, if no other live process drives it or any run above it
    (a parent drives its children's records too): checked before anything is
    written. ``to`` names what was asked, for the error."""
    record = await engine.store.get_run(run_id=run_id)
    if record is None:
        raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
    current: RunRecord | None = record
    while current is not None:
        if driven_elsewhere(current, here=engine.owner):
            whose = "" if current is record else f" (through its parent run {current.run_id})"
            raise NotResumable(
                f"run {run_id} is driven by another live process{whose} ({current.owner}); "
                f"{to} it there",
                run_id=run_id,
            )
        parent = current.parent_run_id
        current = None if parent is None else await engine.store.get_run(run_id=parent)
    return record


async def decide(
    engine: Engine, run_id: str, step_id: str, decision: dict[str, Any]
) -> LiveRun | None:
    """Decide an approval of a run no process drives: approved, the step completes
    and the run (or the top run of its family) is resumed here; rejected, the run
    fails as a live run would."""
    verb = "approve" if decision["approved"] else "reject"
    record = await stored_run(engine, run_id, to=verb)
    attempts = latest_attempts(await engine.store.get_steps(run_id=run_id))
    latest = attempts.get(step_id)
    if latest is None or latest.status is not StepStatus.WAITING_APPROVAL:
        state = latest.status.value if latest else "not started"
        raise NotWaiting(
            f"step {step_id!r} of run {run_id} is not waiting for approval ({state})",
            run_id=run_id,
            step_id=step_id,
        )
    now = time.time()
    if not decision["approved"]:
        rejection = ApprovalRejected(by=decision["by"], comment=decision["comment"])
        await fail(engine, record, step_id, str(rejection), now)
        return None
    done = replace(
        latest,
        status=StepStatus.COMPLETED,
        ended_at=now,
        output=engine.redact(decision),
        has_output=True,
    )
    await engine.store.write(Batch.changes(steps=(done,)))
    root = record
    while root.parent_run_id is not None:  # a child goes on inside its parent
        parent = await engine.store.get_run(run_id=root.parent_run_id)
        if parent is None:
            break
        root = parent
    from_root = await lifecycle.resume(engine, root.run_id)
    if root is record:
        return from_root
    return engine.lease.known(run_id) or from_root


async def fail(engine: Engine, record: RunRecord, step_id: str, error: str, now: float) -> None:
    """End a run no process drives: ``step_id`` failed, the steps it left open
    cancelled (as `cancel` does), and the same up its parents, whose
    ``workflow:`` step failed with it. One batch: never a half-ended family."""
    runs: list[RunRecord] = []
    steps: list[StepRecord] = []
    current: RunRecord | None = record
    while current is not None:
        attempts = latest_attempts(await engine.store.get_steps(run_id=current.run_id))
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
            close_open((step for other, step in attempts.items() if other != step_id), now)
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
        current = await engine.store.get_run(run_id=current.parent_run_id)
    await engine.store.write(Batch.changes(runs=runs, steps=steps))


async def cancel(engine: Engine, run_id: str) -> None:
    """Cancel a run no process drives: its open steps and the run itself."""
    record = await stored_run(engine, run_id, to="cancel")
    if record.status.finished:
        return
    now = time.time()
    attempts = latest_attempts(await engine.store.get_steps(run_id=run_id))
    ended = replace(record, status=RunStatus.CANCELLED, ended_at=now, error="cancelled")
    await engine.store.write(Batch.changes(runs=(ended,), steps=close_open(attempts.values(), now)))


async def interrupted(engine: Engine) -> list[RunRecord]:
    """Top-level runs left ``running`` (or ``pending``) by a process that is gone."""
    runs = await engine.store.list_runs(statuses=[RunStatus.RUNNING, RunStatus.PENDING])
    return [
        run
        for run in runs
        if engine.lease.live(run.run_id) is None
        and run.parent_run_id is None
        and run.owner != engine.owner
        and not driven_elsewhere(run, here=engine.owner)
    ]


def close_open(steps: Iterable[StepRecord], now: float) -> list[StepRecord]:
    """The steps a run that no process drives any more left open (running, or
    waiting for a person), ended as `cancel` ends them; the others are left out."""
    return [
        replace(step, status=StepStatus.CANCELLED, ended_at=now, error="cancelled")
        for step in steps
        if step.status in (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL)
    ]
