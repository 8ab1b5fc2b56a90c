"""One live run: schedules its steps, checkpoints them, and reports its state.

The ordering rules that make a run durable live here:

- a step's "before" record (``running``, attempt n) is durable before its code starts;
- its "after" record is durable before any step that needs it starts, and before
  anyone is told it completed (events, results);
- both go through `Store.write` batches: the after-records of the steps that just
  finished and the before-records of the steps they unlock share one batch, and
  batches are not awaited one by one, so a store can group-commit a whole wave.

A run is driven by one coroutine (`LiveRun.main`) plus one task per running step.
Stopping (cancel, workflow timeout, fail-fast) is a flag the driver acts on, never
a cancellation injected into the driver, so the driver always gets to write down
what happened.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from wfnb.dag import SATISFIED, Plan, Progress
from wfnb.errors import (
    ApprovalRejected,
    DefinitionError,
    StepError,
    StepTimeout,
    StoreError,
    TemplateRenderError,
    WfnbError,
)
from wfnb.events import Event, EventKind
from wfnb.model import ApprovalSpec, RunStatus, Step, StepStatus, Workflow
from wfnb.services import StepServices, StepsView, base_scope
from wfnb.steps.base import StepContext, executor_for
from wfnb.store.base import Batch, RunRecord, StepRecord

if TYPE_CHECKING:
    from wfnb.engine import Engine

_timeout = getattr(asyncio, "timeout", None)


@dataclass(slots=True)
class Outcome:
    status: StepStatus
    attempt: int
    started_at: float
    output: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """Where a plan runs: the top level (no index) or a loop iteration (indexes of
    the enclosing iterations, outermost first)."""

    plan: Plan
    index: tuple[int, ...] = ()
    loop: Mapping[str, Any] | None = None
    parent: Frame | None = None
    #: the loop step instance whose iteration this is
    owner: str | None = None

    def instance(self, step_id: str) -> str:
        """The id a step's records carry in this frame: ``b`` or ``b[0,2]``."""
        if not self.index:
            return step_id
        return f"{step_id}[{','.join(map(str, self.index))}]"


def base_id(instance: str) -> str:
    """``b[0,2]`` -> ``b``: the step an instance id (see `Frame.instance`) is of."""
    return instance.partition("[")[0]


def iteration_index(instance: str) -> tuple[int, ...]:
    """``b[0,2]`` -> ``(0, 2)``; ``()`` for a top-level step."""
    inner = instance.partition("[")[2].rstrip("]")
    return tuple(int(part) for part in inner.split(",")) if inner else ()


def step_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs by step id, as results and the steps after a loop see them: a loop
    body step by its bare id, with its last iteration's output."""
    by_step = {key: value for key, value in outputs.items() if base_id(key) == key}
    last: dict[str, tuple[int, ...]] = {}
    for instance, value in outputs.items():
        base, index = base_id(instance), iteration_index(instance)
        if index and index >= last.get(base, index):
            last[base] = index
            by_step[base] = value
    return by_step


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

    def hit(self, point: str, instance: str) -> None:
        if self.points and (point, instance) in self.points:
            os._exit(99)


class LiveRun:
    def __init__(
        self,
        engine: Engine,
        workflow: Workflow,
        plan: Plan,
        record: RunRecord,
        restored: Mapping[str, StepRecord],
    ) -> None:
        self.engine = engine
        self.workflow = workflow
        self.plan = plan
        self.record = record
        self.id = record.run_id
        self.status = record.status
        self.outputs: dict[str, Any] = {}
        self.statuses: dict[str, StepStatus] = {}
        self.attempts: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        self.restored = dict(restored)
        for instance, step in restored.items():
            self.attempts[instance] = step.attempt
            if step.status in (StepStatus.COMPLETED, StepStatus.SKIPPED):
                self.statuses[instance] = step.status
                if step.status is StepStatus.COMPLETED:
                    # stored masked; the secrets themselves come back for the steps
                    self.outputs[instance] = engine.redact.restore(step.output)
        # A step after a loop reads a body step's last iteration through its bare id
        # (as `_settle` keeps it live); restored iterations must provide it too.
        self.outputs.update(step_outputs(self.outputs))
        self.failure: tuple[str, str] | None = None
        self.notes: list[str] = []
        self.stop_reason: str | None = None
        #: steps now running, or reserved to start once their before-record is durable
        self.active: set[str] = set()
        #: loop steps now inside an iteration -> its scope: while that has steps at
        #: work, those count, not the loop step
        self.in_body: dict[str, _Scope] = {}
        #: of those, the ones waiting for a person (or for a paused sub-run)
        self.waiting: set[str] = set()
        self.approvals: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: the step timeouts of running loop and workflow steps, held while a
        #: person is awaited beneath them
        self._clocks: dict[str, _Clock] = {}
        self._stop_signal = asyncio.Event()
        self._settled = asyncio.Event()
        self._done = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._base_scope: dict[str, Any] | None = None
        self.task: asyncio.Task[None] | None = None

    # -- what callers see -------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._done.done()

    async def settled(self) -> None:
        """Return once the run is paused or finished."""
        await self._settled.wait()

    async def done(self) -> None:
        await asyncio.shield(self._done)

    def request_stop(self, reason: str) -> None:
        """Stop the run: ``cancelled`` (a user), ``timeout`` or ``failed`` (fail-fast)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop_signal.set()

    # -- the run's life ---------------------------------------------------------

    async def main(self) -> None:
        engine = self.engine
        semaphore = engine._semaphore(self)
        try:
            if semaphore is None or await self._acquire(semaphore):
                try:
                    await self._run()
                finally:
                    if semaphore is not None:
                        semaphore.release()
            await self._finish()
        except StoreError as exc:
            self.failure = self.failure or ("", f"the checkpoint store failed: {exc}")
            try:  # the store may take the run's end even if it refused a step
                await self._set_status(RunStatus.FAILED, ended=True, error=self.error_text())
            except StoreError:
                self.status = RunStatus.FAILED
                self._publish(EventKind.RUN_FAILED, error=str(exc))
        except Exception as exc:  # the run must always settle, whatever went wrong
            self.failure = self.failure or ("", f"internal error: {type(exc).__name__}: {exc}")
            self.status = RunStatus.FAILED
            engine._log_internal_error(self, exc)
        finally:
            if not self._done.done():
                self._done.set_result(None)
            self._settled.set()
            self._changed.set()
            engine._forget(self)

    async def _acquire(self, semaphore: asyncio.Semaphore) -> bool:
        """Wait (as ``pending``) for a concurrency slot; False if stopped meanwhile."""
        if not semaphore.locked():
            await semaphore.acquire()
            return True
        acquire = asyncio.ensure_future(semaphore.acquire())
        stop = asyncio.ensure_future(self._stop_signal.wait())
        await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if acquire.done() and not acquire.cancelled():
            if self.stop_reason is None:
                return True
            semaphore.release()
            return False
        acquire.cancel()
        return False

    async def _run(self) -> None:
        if self.stop_reason is not None:
            return
        await self._set_status(RunStatus.RUNNING, started=True)
        timer = None
        if self.workflow.timeout is not None:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self.workflow.timeout, self.request_stop, "timeout")
        try:
            await self.drive(Frame(self.plan))
        finally:
            if timer is not None:
                timer.cancel()

    async def _finish(self) -> None:
        error: str | None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.stop_reason == "cancelled":
            status, error = RunStatus.CANCELLED, "cancelled"
        elif self.stop_reason == "timeout":
            status = RunStatus.FAILED
            error = f"workflow {self.workflow.name!r} timed out after {self.workflow.timeout:g} s"
            self.failure = ("", error)
        elif self.failure is not None or any(
            s in (StepStatus.FAILED, StepStatus.CANCELLED) for s in self.statuses.values()
        ):
            status = RunStatus.FAILED
            if self.failure is None:
                failed_step = next(
                    sid for sid, s in self.statuses.items() if s is StepStatus.FAILED
                )
                self.failure = (failed_step, self.errors.get(failed_step, "failed"))
            error = self.error_text()
        else:
            status, error = RunStatus.COMPLETED, None
        await self._set_status(status, ended=True, error=error)

    def error_text(self) -> str | None:
        if self.failure is None:
            return None
        step_id, error = self.failure
        return f"step {step_id!r} failed: {error}" if step_id else error

    async def _set_status(
        self,
        status: RunStatus,
        *,
        started: bool = False,
        ended: bool = False,
        error: str | None = None,
    ) -> None:
        now = time.time()
        changes: dict[str, Any] = {"status": status}
        if started:
            changes["started_at"] = self.record.started_at or now
            changes["owner"] = self.engine.owner
        if ended:
            changes.update(ended_at=now, error=self.engine.redact(error))
            changes["failed_step"] = self.failure[0] if self.failure and self.failure[0] else None
        self.record = replace(self.record, **changes)
        redact = self.engine.redact
        stored = replace(self.record, inputs=redact(self.record.inputs)) if redact else self.record
        await self.engine.store.write(Batch(runs=(stored,)))
        self.status = status
        self._changed.set()
        self._changed = asyncio.Event()
        kind = {
            RunStatus.RUNNING: EventKind.RUN_STARTED,
            RunStatus.PAUSED: EventKind.RUN_PAUSED,
            RunStatus.COMPLETED: EventKind.RUN_COMPLETED,
            RunStatus.FAILED: EventKind.RUN_FAILED,
            RunStatus.CANCELLED: EventKind.RUN_CANCELLED,
        }.get(status)
        if kind is not None:
            self._publish(kind, error=self.record.error)
        if status is RunStatus.PAUSED or status.finished:
            self._settled.set()
        else:
            self._settled.clear()

    # -- scheduling -------------------------------------------------------------

    async def drive(self, frame: Frame) -> bool:
        """Run the steps of the frame's plan until none can start; True when all of
        them completed or were skipped. A failure stops the scope (fail-fast); at
        the top level it stops the run."""
        plan = frame.plan
        progress = Progress(
            plan,
            {
                sid: status
                for sid in plan.steps
                if (status := self.statuses.get(frame.instance(sid))) in SATISFIED
            },
        )
        scope = _Scope(plan, frame, progress)
        for sid in plan.branches:  # conditionals restored completed chose already
            if progress.status[sid] is StepStatus.COMPLETED:
                self._skip_branch_not_taken(scope, sid, self.outputs.get(frame.instance(sid)))
        if frame.owner is not None:
            self.in_body[frame.owner] = scope
        stop_wait = asyncio.ensure_future(self._stop_signal.wait())
        stop_wait.add_done_callback(lambda _: scope.wake.set())
        halted = False
        try:
            while True:
                while scope.finished:
                    self._apply(scope, scope.finished.popleft())
                if scope.store_error is not None:
                    error, scope.store_error = scope.store_error, None
                    if not await self._salvage(scope, error):
                        raise error
                starts: list[str] = []
                halt = self.stop_reason is not None or (scope.failed and self.workflow.fail_fast)
                if not halt:
                    self._collect_ready(scope, starts)
                elif not halted:
                    halted = True
                    for future in scope.running.values():
                        future.cancel()
                if scope.records:
                    self._write_then_start(scope, starts)
                # Only now, with what just finished taken in and what it unlocked
                # reserved, does `active` say whether anything is still at work.
                self._check_pause()
                if not scope.running and not scope.writes:
                    break
                await scope.wake.wait()
                scope.wake.clear()
        except asyncio.CancelledError:
            await self._record_cancelled(scope)
            raise
        finally:
            stop_wait.cancel()
            for future in scope.running.values():
                future.cancel()
            if frame.owner is not None:
                self.in_body.pop(frame.owner, None)
        # From the run's statuses, not `progress`: a salvaged step failed after the fact.
        return all(self.statuses.get(frame.instance(sid)) in SATISFIED for sid in plan.steps)

    def shutting_down(self) -> bool:
        """True when the run's own task is being cancelled: its event loop is going
        away (as after `run_sync` returns at a pause). That is not a stop: records
        stay as they stand, for another process to resume."""
        main = self.task
        cancelling = getattr(main, "cancelling", None)
        return main is not None and cancelling is not None and bool(cancelling())

    def finish_after(self, work: Coroutine[Any, Any, None]) -> None:
        """Do not write this run's end before ``work`` (stopping a child run) is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record_cancelled(self, scope: _Scope) -> None:
        """Write down the steps a cancelled scope leaves behind (a loop step stopped
        in the middle of its body), so the store does not show them running."""
        for future in scope.running.values():
            future.cancel()
        while scope.finished:
            self._apply(scope, scope.finished.popleft())
        # The slots just cancelled are done, but their done-callbacks (which queue
        # them in scope.finished) only run on a later loop turn, after this scope
        # is gone: take them in now. Unless the run's own task is being cancelled
        # (its loop is shutting down, as after `run_sync` returns at a pause): that
        # is no stop, and the store must keep the run as it stood, to be resumed.
        if not self.shutting_down():
            for sid in list(scope.running):
                self._apply(scope, sid)
        if scope.records:
            batch, scope.records = scope.records, []
            await asyncio.shield(self.engine.store.write(Batch(steps=batch)))

    def _collect_ready(self, scope: _Scope, starts: list[str]) -> None:
        now = time.time()
        progress, frame = scope.progress, scope.frame
        while True:
            ready = progress.ready()
            if not ready.start and not ready.skip:
                return
            for sid in ready.skip:
                self._skip(scope, sid, now)
            for sid in ready.start:
                instance = frame.instance(sid)
                step = self.workflow.steps[sid]
                if step.if_ is not None:
                    try:
                        run_it = self._context(step, frame, 0).truthy(step.if_)
                    except WfnbError as exc:
                        attempt = self._next_attempt(instance)
                        outcome = Outcome(StepStatus.FAILED, attempt, now, error=str(exc))
                        self._settle(scope, sid, outcome)
                        scope.announce.append((instance, outcome))
                        continue
                    if not run_it:
                        self._skip(scope, sid, now)
                        continue
                attempt = self._next_attempt(instance)
                progress.mark(sid, StepStatus.RUNNING)
                self.statuses[instance] = StepStatus.RUNNING
                self.engine.crash.hit("before", instance)
                scope.records.append(
                    StepRecord(self.id, instance, attempt, StepStatus.RUNNING, now)
                )
                starts.append(sid)

    def _next_attempt(self, instance: str) -> int:
        previous = self.restored.get(instance)
        if previous is not None and previous.status is StepStatus.WAITING_APPROVAL:
            attempt = previous.attempt  # still the same request, not a new attempt
        else:
            attempt = self.attempts.get(instance, 0) + 1
        self.attempts[instance] = attempt
        return attempt

    def _skip(self, scope: _Scope, sid: str, now: float) -> None:
        instance = scope.frame.instance(sid)
        scope.progress.mark(sid, StepStatus.SKIPPED)
        self.statuses[instance] = StepStatus.SKIPPED
        attempt = self.attempts.get(instance, 0) + 1
        scope.records.append(StepRecord(self.id, instance, attempt, StepStatus.SKIPPED, now, now))
        self._publish(EventKind.STEP_SKIPPED, step_id=instance)
        # A skipped conditional takes neither branch: both are skipped, even steps
        # that have other, completed needs.
        then, otherwise = scope.plan.branches.get(sid, (frozenset(), frozenset()))
        for other in sorted((then | otherwise) - scope.progress.blocked):
            if scope.progress.status[other] is StepStatus.PENDING:
                self._skip(scope, other, now)

    def _apply(self, scope: _Scope, sid: str) -> None:
        """Take in a finished step: its outcome, the branch it chose, what it unlocks."""
        future = scope.running.pop(sid)
        instance = scope.frame.instance(sid)
        self.active.discard(instance)
        if future.cancelled():
            outcome = Outcome(
                StepStatus.CANCELLED,
                self.attempts[instance],
                time.time(),
                error=self._cancel_text(),
            )
        elif isinstance(error := future.exception(), StoreError):
            # The step's own bookkeeping (a retry's records) could not be written:
            # a failure of the step, recorded (or refused) like any other.
            outcome = Outcome(
                StepStatus.FAILED,
                self.attempts[instance],
                time.time(),
                error=f"the checkpoint store failed: {error}",
            )
        else:
            outcome = future.result()
        self.engine.crash.hit("finished", instance)
        plan = scope.plan
        if outcome.status is StepStatus.COMPLETED and sid in plan.branches:
            self._skip_branch_not_taken(scope, sid, outcome.output)
        self._settle(scope, sid, outcome)
        scope.announce.append((instance, outcome))

    def _skip_branch_not_taken(self, scope: _Scope, sid: str, output: Any) -> None:
        taken = set(output.get("steps", ())) if isinstance(output, Mapping) else set()
        then, otherwise = scope.plan.branches[sid]
        # (A blocked step, one with a failed need, is settled already: leave it.)
        for other in sorted((then | otherwise) - taken - scope.progress.blocked):
            if scope.progress.status[other] is StepStatus.PENDING:
                self._skip(scope, other, time.time())

    def _settle(self, scope: _Scope, sid: str, outcome: Outcome) -> None:
        instance = scope.frame.instance(sid)
        scope.progress.mark(sid, outcome.status)
        self.statuses[instance] = outcome.status
        if outcome.status is StepStatus.COMPLETED:
            self.outputs[instance] = outcome.output
            base = base_id(instance)
            if base != instance:  # later steps see a loop body step's last output
                self.outputs[base] = outcome.output
        elif outcome.error is not None:
            self.errors[instance] = outcome.error
        redact = self.engine.redact
        scope.records.append(
            StepRecord(
                self.id,
                instance,
                outcome.attempt,
                outcome.status,
                outcome.started_at,
                time.time(),
                redact(outcome.error),
                redact(outcome.output),
                outcome.status is StepStatus.COMPLETED,
            )
        )
        if outcome.status is StepStatus.FAILED:
            scope.failed = True
            if not scope.frame.index:
                if self.failure is None:
                    self.failure = (instance, outcome.error or "failed")
                if self.workflow.fail_fast:
                    self.request_stop("failed")

    async def _salvage(self, scope: _Scope, error: BaseException) -> bool:
        """The store refused a batch, typically for an output it cannot keep (a
        lock, a socket). Write its records one by one, the refused output's step as
        failed without it and the steps it kept from starting as cancelled, then
        stop like fail-fast: the store never shows a run abandoned `running`.
        False when the store takes nothing at all: then it is gone, and the run
        ends as a crash would (resume picks it up)."""
        records, scope.refused = scope.refused, []
        store = self.engine.store
        stored = False
        for record in records:
            if record.status is StepStatus.RUNNING:  # a before-record: never started
                record = replace(
                    record,
                    status=StepStatus.CANCELLED,
                    ended_at=time.time(),
                    error=f"not started: the store refused a checkpoint ({error})",
                )
            try:
                await store.write(Batch(steps=(record,)))
                stored = True
                continue
            except StoreError as exc:
                if not record.has_output:
                    continue
                reason = f"its output could not be stored: {exc}"
            failed = replace(
                record, status=StepStatus.FAILED, output=None, has_output=False, error=reason
            )
            try:
                await store.write(Batch(steps=(failed,)))
            except StoreError:
                continue
            stored = True
            self.statuses[failed.step_id] = StepStatus.FAILED
            self.outputs.pop(failed.step_id, None)
            self.errors[failed.step_id] = reason
            scope.failed = True
            if not scope.frame.index and self.failure is None:
                self.failure = (failed.step_id, reason)
        if stored and not scope.frame.index:
            self.request_stop("failed")
        return stored

    def _write_then_start(self, scope: _Scope, starts: list[str]) -> None:
        """Write the scope's pending records; once durable, announce the outcomes
        and start ``starts``. Not awaited: the driver goes on collecting, so writes
        overlap and the store can group-commit them."""
        batch, scope.records = scope.records, []
        announce, scope.announce = scope.announce, []
        loop = asyncio.get_running_loop()
        slots: dict[str, asyncio.Future[Outcome]] = {}
        for sid in starts:
            # Reserve the step's place now, so the driver knows it is in flight.
            slot: asyncio.Future[Outcome] = loop.create_future()
            slot.add_done_callback(functools.partial(scope.step_done_callback, sid))
            scope.running[sid] = slot
            slots[sid] = slot
            self.active.add(scope.frame.instance(sid))

        async def write_then_start() -> None:
            await self.engine.store.write(Batch(steps=batch))
            for instance, outcome in announce:
                self.engine.crash.hit("after", instance)
                self._publish_outcome(instance, outcome)
            for sid, slot in slots.items():
                if slot.done():  # cancelled while its before-record was being written
                    continue
                instance = scope.frame.instance(sid)
                self.engine.crash.hit("started", instance)
                attempt = self.attempts[instance]
                self._publish(EventKind.STEP_STARTED, step_id=instance, attempt=attempt)
                step_task = loop.create_task(
                    self._attempts(self.workflow.steps[sid], scope.frame, attempt)
                )
                _forward(step_task, slot)

        def written(task: asyncio.Task[None]) -> None:
            scope.writes.discard(task)
            error = None if task.cancelled() else task.exception()
            if error is not None:
                scope.store_error = error
                scope.refused.extend(batch)
                for slot in slots.values():
                    if not slot.done():
                        slot.cancel()
            scope.wake.set()

        task = loop.create_task(write_then_start())
        scope.writes.add(task)
        task.add_done_callback(written)

    def _publish_outcome(self, instance: str, outcome: Outcome) -> None:
        kind = {
            StepStatus.COMPLETED: EventKind.STEP_COMPLETED,
            StepStatus.FAILED: EventKind.STEP_FAILED,
            StepStatus.CANCELLED: EventKind.STEP_CANCELLED,
        }[outcome.status]
        self._publish(kind, step_id=instance, attempt=outcome.attempt, error=outcome.error)

    # -- one step ---------------------------------------------------------------

    async def _attempts(self, step: Step, frame: Frame, attempt: int) -> Outcome:
        """Run the step's attempts until one succeeds or retries are exhausted."""
        instance = frame.instance(step.id)
        executor = executor_for(step.kind)
        assert executor is not None, f"no executor for {step.kind}"
        limit = None if isinstance(step.spec, ApprovalSpec) else step.timeout
        container = step.kind in ("loop", "workflow")
        while True:
            started = time.time()
            ctx = self._context(step, frame, attempt)
            retry_after: float | None = None
            try:
                if limit is None:
                    output = await executor(step, ctx)
                elif _timeout is not None:
                    async with _timeout(limit) as clock:
                        if container:
                            self._clocks[instance] = _Clock(clock)
                        try:
                            output = await executor(step, ctx)
                        finally:
                            if container:
                                self._clocks.pop(instance, None)
                else:  # Python 3.10
                    output = await asyncio.wait_for(executor(step, ctx), limit)
                return Outcome(StepStatus.COMPLETED, attempt, started, output=output)
            except asyncio.CancelledError:
                if _being_cancelled():
                    return Outcome(
                        StepStatus.CANCELLED, attempt, started, error=self._cancel_text()
                    )
                # Nobody cancelled this step: its own code raised CancelledError.
                error: str = "CancelledError: raised by the step's own code, not a stop"
                retryable = True
            except (asyncio.TimeoutError, TimeoutError):
                error = str(StepTimeout(f"timed out after {limit:g} s", step_id=step.id))
                retryable = True
            except (DefinitionError, TemplateRenderError, ApprovalRejected) as exc:
                error, retryable = str(exc), False  # the same input fails the same way
            except StepError as exc:  # the step knows whether (and when) to try again
                error, retryable, retry_after = str(exc), exc.retryable, exc.retry_after
            except WfnbError as exc:
                error, retryable = str(exc), True
            except Exception as exc:
                error, retryable = f"{type(exc).__name__}: {exc}", True
            if not retryable or attempt >= step.retry.max_attempts or self.stop_reason:
                return Outcome(StepStatus.FAILED, attempt, started, error=error)
            delay = step.retry.wait_before(attempt + 1)
            if retry_after is not None:  # the server's word replaces the backoff
                delay = min(retry_after, step.retry.max_delay)
            now = time.time()
            redact = self.engine.redact
            failed = StepRecord(
                self.id, instance, attempt, StepStatus.FAILED, started, now, redact(error)
            )
            await self.engine.store.write(Batch(steps=(failed,)))
            self._publish(
                EventKind.STEP_RETRYING,
                step_id=instance,
                attempt=attempt,
                error=error,
                data={"delay": delay, "next_attempt": attempt + 1},
            )
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                return Outcome(StepStatus.CANCELLED, attempt, started, error=self._cancel_text())
            attempt += 1
            self.attempts[instance] = attempt
            before = StepRecord(self.id, instance, attempt, StepStatus.RUNNING, time.time())
            await self.engine.store.write(Batch(steps=(before,)))
            self._publish(EventKind.STEP_STARTED, step_id=instance, attempt=attempt)

    def _cancel_text(self) -> str:
        # Without a run-wide reason, a step is only cancelled by fail-fast in its scope.
        return {
            "timeout": "cancelled: the workflow timed out",
            "cancelled": "cancelled",
        }.get(self.stop_reason or "", "cancelled: another step failed (fail_fast)")

    def _context(self, step: Step, frame: Frame, attempt: int) -> StepContext:
        return StepContext(
            run_id=self.id,
            workflow=self.workflow.name,
            step_id=frame.instance(step.id),
            attempt=attempt,
            depth=self.record.depth,
            scope=self.template_scope(frame),
            runtime=StepServices(self, step, frame),
        )

    def template_scope(self, frame: Frame) -> dict[str, Any]:
        if self._base_scope is None:
            self._base_scope = base_scope(self)
        scope = dict(self._base_scope)
        scope["steps"] = StepsView(self, frame)
        if frame.loop is not None:
            scope["loop"] = frame.loop
        return scope

    # -- pauses -----------------------------------------------------------------

    def set_waiting(self, instance: str, waiting: bool) -> None:
        """A leaf step starts or stops waiting for a person; the run is paused while
        every leaf step still running is waiting."""
        if waiting:
            self.waiting.add(instance)
        else:
            self.waiting.discard(instance)
        self._check_pause()

    def hold_clocks(self, instances: list[str], hold: bool) -> None:
        """Stop (``hold``) or restart the step timeouts of these loop/workflow step
        instances: a person is awaited beneath them, which no step timeout covers."""
        now = asyncio.get_running_loop().time()
        for instance in instances:
            clock = self._clocks.get(instance)
            if clock is None or clock.timeout.expired():
                continue
            if hold:
                clock.holds += 1
                if clock.holds == 1 and (when := clock.timeout.when()) is not None:
                    clock.left = max(0.0, when - now)
                    clock.timeout.reschedule(None)
            elif clock.holds > 0:
                clock.holds -= 1
                if clock.holds == 0 and clock.left is not None:
                    clock.timeout.reschedule(now + clock.left)

    def _check_pause(self) -> None:
        if self.status.finished or self.stop_reason is not None:
            return
        if not self.waiting and self.status is RunStatus.RUNNING:
            return  # the common case, on every turn of the driver
        paused = bool(self.waiting) and all(
            instance in self.waiting
            or ((body := self.in_body.get(instance)) is not None and bool(body.running))
            for instance in self.active
        )
        if paused and self.status is RunStatus.RUNNING:
            self._status_task(RunStatus.PAUSED)
        elif not paused and self.status is RunStatus.PAUSED:
            self._status_task(RunStatus.RUNNING)

    def _status_task(self, status: RunStatus) -> None:
        # The in-memory status flips now; the record follows (writes keep their order).
        self.status = status
        task = asyncio.get_running_loop().create_task(self._set_status(status))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def status_changed(self) -> None:
        """Return at the next change of the run's status."""
        await self._changed.wait()

    def publish_waiting(self, instance: str, attempt: int, request: dict[str, Any]) -> None:
        self._publish(EventKind.STEP_WAITING, step_id=instance, attempt=attempt, data=request)

    # -- events -----------------------------------------------------------------

    def _publish(
        self,
        kind: EventKind,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        error: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        bus = self.engine.bus
        if bus.has_subscribers:
            bus.publish(
                Event(
                    kind,
                    self.id,
                    self.workflow.name,
                    step_id,
                    attempt,
                    self.engine.redact(error),
                    data or {},
                )
            )


class _Clock:
    __slots__ = ("timeout", "holds", "left")

    def __init__(self, timeout: Any) -> None:
        self.timeout = timeout  # an asyncio.Timeout
        self.holds = 0
        self.left: float | None = None


class _Scope:
    """The driver's working set for one plan in one frame."""

    def __init__(self, plan: Plan, frame: Frame, progress: Progress) -> None:
        self.plan = plan
        self.frame = frame
        self.progress = progress
        self.running: dict[str, asyncio.Future[Outcome]] = {}
        self.finished: deque[str] = deque()
        self.records: list[StepRecord] = []
        self.announce: list[tuple[str, Outcome]] = []
        self.writes: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.failed = False
        self.store_error: BaseException | None = None
        #: records of batches the store refused, to be salvaged one by one
        self.refused: list[StepRecord] = []

    def step_done_callback(self, sid: str, _slot: asyncio.Future[Outcome]) -> None:
        self.finished.append(sid)
        self.wake.set()


def _being_cancelled() -> bool:
    """Whether the current task has been asked to cancel (Python 3.10 cannot tell:
    assume it has)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or bool(cancelling())


def _forward(task: asyncio.Task[Outcome], slot: asyncio.Future[Outcome]) -> None:
    """Tie a step's task to the slot the driver waits on, both ways."""

    def forward(done: asyncio.Task[Outcome]) -> None:
        if slot.done():
            return
        if done.cancelled():
            slot.cancel()
        elif done.exception() is not None:
            slot.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            slot.set_result(done.result())

    def cancel(done: asyncio.Future[Outcome]) -> None:
        if done.cancelled():
            task.cancel()

    task.add_done_callback(forward)
    slot.add_done_callback(cancel)
