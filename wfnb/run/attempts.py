"""One step's attempts: run it, time it out, retry it with backoff, and say what
it came to. Which errors are worth a retry is decided here, in one place."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from wfnb.errors import (
    ApprovalRejected,
    DefinitionError,
    StepError,
    StepTimeout,
    SubWorkflowError,
    TemplateRenderError,
    WfnbError,
)
from wfnb.events import EventKind
from wfnb.model import ApprovalSpec, Step, StepStatus
from wfnb.run.deadlines import Watch
from wfnb.run.frame import Frame, Outcome
from wfnb.run.services import StepServices
from wfnb.run.tracebacks import user_traceback
from wfnb.steps.base import StepContext, executor_for
from wfnb.store.base import Batch, StepRecord

if TYPE_CHECKING:
    from wfnb.run.live import LiveRun


async def run_attempts(
    run: LiveRun, step: Step, frame: Frame, instance: str, attempt: int
) -> Outcome:
    """Run the step's attempts until one succeeds or retries are exhausted.
    ``instance`` is the step's id in ``frame`` (the driver has it at hand)."""
    executor = executor_for(step.kind)
    limit = None if isinstance(step.spec, ApprovalSpec) else step.timeout
    container = step.kind in ("loop", "workflow")
    host = run.host
    while True:
        # the attempt's start, as its before-record has it: every row of it keeps it
        started = run.started.get(instance)
        if started is None:
            started = run.started[instance] = time.time()
        ctx = step_context(run, step, frame, instance, attempt)
        below: tuple[str, ...] = ()
        cause: str | None = None
        retry_after: float | None = None
        trace: str | None = None
        clock: Watch | asyncio.Timeout | None = None
        try:
            if limit is None:
                output = await executor(step, ctx)
            elif not container:
                with run.deadlines.watch(limit) as clock:
                    output = await executor(step, ctx)
            else:  # a loop's or sub-workflow's clock is held while a person is awaited
                async with asyncio.timeout(limit) as clock:
                    run.pauses.clock_started(instance, clock)
                    try:
                        output = await executor(step, ctx)
                    finally:
                        run.pauses.clock_ended(instance)
            return Outcome(StepStatus.COMPLETED, attempt, started, output=output, worker=ctx.worker)
        except asyncio.CancelledError:
            if run.shutting_down():
                raise  # let go, not stopped: the step's records stay as they stand
            if _being_cancelled():
                return Outcome(StepStatus.CANCELLED, attempt, started, error=cancel_text(run))
            # Nobody cancelled this step: its own code raised CancelledError.
            error: str = "CancelledError: raised by the step's own code, not a stop"
            retryable = True
        except TimeoutError as exc:
            # The step's clock says whether it ran out; a TimeoutError the step's own
            # code raised ("gateway said no") is an ordinary error of the step.
            if clock is not None and clock.expired():
                error = str(StepTimeout(f"timed out after {limit:g} s", step_id=step.id))
            else:
                error = f"{type(exc).__name__}: {exc}"
                trace = user_traceback(exc)
            retryable = True
        except (DefinitionError, TemplateRenderError, ApprovalRejected) as exc:
            error, retryable = str(exc), False  # the same input fails the same way
        except SubWorkflowError as exc:
            error, retryable, below, cause = str(exc), True, exc.path, exc.cause
        except StepError as exc:  # the step knows whether (and when) to try again
            error, retryable, retry_after = str(exc), exc.retryable, exc.retry_after
        except WfnbError as exc:
            error, retryable = str(exc), True
        except Exception as exc:
            error, retryable = f"{type(exc).__name__}: {exc}", True
            trace = user_traceback(exc)
        trace = host.redact(trace)
        if not retryable or attempt >= step.retry.max_attempts or run.stop_reason:
            return Outcome(
                StepStatus.FAILED,
                attempt,
                started,
                error=error,
                below=below,
                cause=cause,
                worker=ctx.worker,
                traceback=trace,
            )
        delay = step.retry.wait_before(attempt + 1)
        if retry_after is not None:  # the server's word replaces the backoff
            delay = min(retry_after, step.retry.max_delay)
        now = time.time()
        failed = StepRecord(
            run.id,
            instance,
            attempt,
            StepStatus.FAILED,
            started,
            now,
            host.redact(error),
            worker=ctx.worker,
            traceback=trace,
        )
        await host.store.write(Batch.changes(steps=(failed,)))
        run.events.publish(
            EventKind.STEP_RETRYING,
            step_id=instance,
            attempt=attempt,
            error=error,
            data={"delay": delay, "next_attempt": attempt + 1},
        )
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            return Outcome(StepStatus.CANCELLED, attempt, started, error=cancel_text(run))
        if run.stop_reason:  # the run stopped while this slept, its cancel not yet here
            return Outcome(StepStatus.CANCELLED, attempt, started, error=cancel_text(run))
        attempt += 1
        run.attempts[instance] = attempt
        run.started[instance] = time.time()
        before = StepRecord(run.id, instance, attempt, StepStatus.RUNNING, run.started[instance])
        await host.store.write(Batch.changes(steps=(before,)))
        run.events.publish(EventKind.STEP_STARTED, step_id=instance, attempt=attempt)


def cancel_text(run: LiveRun) -> str:
    """The error a cancelled step is recorded with: why it was stopped."""
    # Without a run-wide reason, a step is only cancelled by fail-fast in its scope.
    return {
        "timeout": "cancelled: the workflow timed out",
        "cancelled": "cancelled",
    }.get(run.stop_reason or "", "cancelled: another step failed (fail_fast)")


def step_context(
    run: LiveRun, step: Step, frame: Frame, instance: str, attempt: int
) -> StepContext:
    """The context of an attempt of ``step``, ``instance`` in ``frame``."""
    return StepContext(  # positional: a dataclass's keywords cost a step ~0.3 µs
        run.id,
        run.workflow.name,
        instance,
        attempt,
        run.record.depth,
        run.template_scope(frame),
        StepServices(run, step, frame),
        step.resources,
    )


def _being_cancelled() -> bool:
    """Whether the current task has been asked to cancel (rather than the step's
    own code raising CancelledError)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
