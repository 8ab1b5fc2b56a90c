"""What a running step may ask of its run: templates' scope, a loop body, a child
run, a person's decision, the HTTP client and a record of each outside request.
`StepServices` is the `Runtime` that step executors see; one is made per step
attempt and knows which step and loop iteration it serves.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from wfnb.errors import ApprovalRejected, StepError, StepTimeout, SubWorkflowError
from wfnb.model import MAX_DEPTH, AgentDefaults, RunResult, RunStatus, Step, StepStatus
from wfnb.run.frame import Failure, Frame
from wfnb.store.base import Batch, CallRecord, StepRecord

if TYPE_CHECKING:
    import httpx

    from wfnb.run.live import LiveRun
    from wfnb.steps.base import StepContext


class StepsView(Mapping[str, Mapping[str, Any]]):
    """``steps.<id>`` in templates: ``output`` and ``status`` of a step, as seen from
    a frame (inside a loop body, a body step means this iteration's instance)."""

    def __init__(self, run: LiveRun, frame: Frame) -> None:
        self._run = run
        self._frame = frame

    def _instance(self, step_id: str) -> str:
        frame: Frame | None = self._frame
        while frame is not None:
            if step_id in frame.plan.needs:
                return frame.instance(step_id)
            frame = frame.parent
        return step_id

    def __getitem__(self, step_id: str) -> Mapping[str, Any]:
        if step_id not in self._run.workflow.steps:
            raise KeyError(step_id)
        instance = self._instance(step_id)
        outputs = self._run.outputs
        # (A body step read after its loop has no frame here: ``instance`` is then
        # its bare id, which holds the last iteration's output.)
        if instance in outputs:
            return {"output": outputs[instance], "status": "completed"}
        status = self._run.statuses.get(instance, StepStatus.PENDING)
        return {"status": status.value}

    def __iter__(self) -> Iterator[str]:
        return iter(self._run.workflow.steps)

    def __len__(self) -> int:
        return len(self._run.workflow.steps)


def base_scope(run: LiveRun) -> dict[str, Any]:
    """The part of the template scope that is the same for every step of a run."""
    workflow = run.workflow
    record = run.record
    return {
        "inputs": record.inputs,
        "run": {
            "id": record.run_id,
            "workflow": workflow.name,
            "depth": record.depth,
            "parent_id": record.parent_run_id,
        },
        "env": {name: os.environ[name] for name in workflow.env if name in os.environ},
        "secrets": run.host.secrets,
    }


class StepServices:
    __slots__ = ("run", "step", "frame")

    def __init__(self, run: LiveRun, step: Step, frame: Frame) -> None:
        self.run = run
        self.step = step
        self.frame = frame

    def call(
        self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: StepContext
    ) -> Coroutine[Any, Any, Any]:
        # The backend's coroutine itself, not one more around it: a frame less per step.
        return self.run.host.backend.call(fn, kwargs, ctx)

    def resolve_code(self, target: str | Callable[..., Any]) -> Callable[..., Any]:
        return self.run.host.resolve_code(target, step_id=self.step.id)

    def http_client(self) -> httpx.AsyncClient:
        return self.run.host.http_client()

    async def record_call(self, call: CallRecord) -> None:
        masked = replace(call, data=self.run.host.redact(call.data))
        await self.run.host.store.write(Batch(calls=(masked,)))

    def agent_defaults(self) -> list[AgentDefaults]:
        return [d for d in (self.run.workflow.agent, self.run.host.agent) if d is not None]

    async def run_body(self, ctx: StepContext, index: int, loop: dict[str, Any]) -> dict[str, Any]:
        body = self.frame.plan.bodies[self.step.id]
        frame = Frame(
            body, (*self.frame.index, index), loop, self.frame, self.frame.instance(self.step.id)
        )
        run = self.run
        ok = await run.drive(frame)
        if not ok:
            for sid in body.steps:
                instance = frame.instance(sid)
                if run.statuses.get(instance) in (StepStatus.FAILED, StepStatus.CANCELLED):
                    error = run.errors.get(instance, run.statuses[instance].value)
                    raise StepError(
                        f"iteration {index}: body step {instance!r} failed: {error}",
                        step_id=ctx.step_id,
                    )
            raise StepError(f"iteration {index} did not finish", step_id=ctx.step_id)
        return {
            sid: run.outputs[frame.instance(sid)]
            for sid in body.steps
            if frame.instance(sid) in run.outputs
        }

    def _loops_around(self) -> list[str]:
        """The instances of the loop steps this step runs inside, innermost first."""
        owners = []
        frame: Frame | None = self.frame
        while frame is not None:
            if frame.owner is not None:
                owners.append(frame.owner)
            frame = frame.parent
        return owners

    async def run_child(self, ctx: StepContext, workflow: str, inputs: dict[str, Any]) -> Any:
        run = self.run
        depth = run.record.depth + 1
        if depth > MAX_DEPTH:
            raise SubWorkflowError(
                f"sub-workflow {workflow!r} would run at depth {depth}, "
                f"past the depth limit of {MAX_DEPTH}",
                step_id=ctx.step_id,
            )
        child_id = f"{run.id}.{ctx.step_id}"
        # Starting the child writes its record: a stop meanwhile must not leave it
        # half started (recorded, never driven), so the start is seen through.
        starting = asyncio.ensure_future(
            run.host.start_child(
                workflow, inputs, run_id=child_id, parent=run, parent_step=ctx.step_id, depth=depth
            )
        )
        try:
            child = await asyncio.shield(starting)
            while True:
                await child.settled()
                if child.finished:
                    break
                # The child waits for a person: so does this step, and maybe the run.
                loops = [ctx.step_id, *self._loops_around()]
                run.pauses.set_waiting(ctx.step_id, True)
                run.pauses.hold_clocks(loops, True)
                try:
                    await child.status_changed()
                finally:
                    run.pauses.hold_clocks(loops, False)
                    run.pauses.set_waiting(ctx.step_id, False)
        except asyncio.CancelledError:
            # This step was stopped (cancel, timeout, fail-fast): so is its child run,
            # which is part of this run, and this run ends only after it.
            if not run.shutting_down():
                run.finish_after(_stop_child(starting))
            raise
        # its real outputs, not masked ones: they are this step's output
        result = child.result(masked=False)
        if result.status is not RunStatus.COMPLETED:
            raise _child_failed(workflow, child_id, result, child.failure, step_id=ctx.step_id)
        return result.outputs

    async def request_approval(
        self, ctx: StepContext, *, prompt: str, timeout: float | None
    ) -> dict[str, Any]:
        run = self.run
        instance = ctx.step_id
        previous = run.restored.get(instance)
        deadline: float | None = None
        if (
            previous is not None
            and previous.status is StepStatus.WAITING_APPROVAL
            and previous.attempt == ctx.attempt  # a retry asks afresh
            and isinstance(previous.output, Mapping)
        ):
            deadline = previous.output.get("deadline")  # a restart waits only what is left
        elif timeout is not None:
            deadline = time.time() + timeout
        request = {"prompt": prompt, "deadline": deadline, "timeout": timeout}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        run.approvals[instance] = future
        record = StepRecord(
            run.id,
            instance,
            ctx.attempt,
            StepStatus.WAITING_APPROVAL,
            run.started.get(instance, time.time()),  # the attempt's start: it never moves
            output=run.host.redact(request),  # a prompt may show a secret: never stored
            has_output=True,
        )
        try:
            await run.host.store.write(Batch.changes(steps=(record,)))
        except BaseException:  # stopped (or failed) before it was ever waiting
            run.approvals.pop(instance, None)
            raise
        run.statuses[instance] = StepStatus.WAITING_APPROVAL
        run.events.waiting(instance, ctx.attempt, request)
        run.pauses.set_waiting(instance, True)
        run.pauses.hold_clocks(self._loops_around(), True)
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.time())
            try:
                decision = await asyncio.wait_for(asyncio.shield(future), remaining)
            except TimeoutError:
                raise StepTimeout(
                    f"no decision on the approval within {timeout:g} s", step_id=instance
                ) from None
        finally:
            run.approvals.pop(instance, None)
            run.pauses.hold_clocks(self._loops_around(), False)
            run.pauses.set_waiting(instance, False)
            if not future.done():
                future.cancel()
        run.statuses[instance] = StepStatus.RUNNING
        if not decision.get("approved"):
            raise ApprovalRejected(
                by=decision.get("by") or "someone",
                comment=decision.get("comment"),
                step_id=instance,
            )
        return decision


def _child_failed(
    workflow: str, child_id: str, result: RunResult, failure: Failure | None, *, step_id: str
) -> SubWorkflowError:
    """The error of a step whose child run did not complete: where the failure began
    (``'inner' > 'load'`` through nested sub-workflows) and why, from the child's
    `Failure`, never from its message."""
    if failure is not None and failure.step:
        path = (failure.step, *failure.below)
        cause = failure.cause or failure.error
    else:
        path, cause = (), result.error or result.status.value
    where = f" at {' > '.join(map(repr, path))}" if path else ""
    return SubWorkflowError(
        f"sub-workflow {workflow!r} (run {child_id}) {result.status.value}{where}: {cause}",
        step_id=step_id,
        path=path,
        cause=cause,
    )


async def _stop_child(starting: asyncio.Future[LiveRun]) -> None:
    """Stop a child run once its start is through, and wait for its end."""
    try:
        child = await starting
    except Exception:  # noqa: BLE001 - it never started: nothing to stop
        return
    if not child.finished:
        child.request_stop("cancelled")
        await child.done()
