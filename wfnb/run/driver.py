"""The scope driver: runs the steps of one plan in one frame (the workflow, or one
loop iteration) until none can start.

Each turn it takes in the steps that finished, asks the planner what they unlock,
and hands the records of both to the store in one batch that is not awaited: the
steps it unlocks start once that batch is durable, and meanwhile the driver goes
on, so a store can group-commit a whole wave. Stopping is a flag it reads on each
turn (see `LiveRun.request_stop`), never a cancellation injected into it.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from wfnb.dag import SATISFIED, Progress
from wfnb.errors import StoreError, WfnbError
from wfnb.events import EventKind
from wfnb.instances import base_id
from wfnb.model import Step, StepStatus
from wfnb.run.attempts import cancel_text, run_attempts, step_context
from wfnb.run.frame import Failure, Frame, Outcome
from wfnb.store.base import Batch, StepRecord

if TYPE_CHECKING:
    from wfnb.run.live import LiveRun


class Scope:
    """The driver's working set for one plan in one frame, and the driver."""

    def __init__(self, run: LiveRun, frame: Frame) -> None:
        plan = frame.plan
        self.run = run
        self.plan = plan
        self.frame = frame
        self.progress = Progress(
            plan,
            {
                sid: status
                for sid in plan.steps
                if (status := run.statuses.get(frame.instance(sid))) in SATISFIED
            },
        )
        self.running: dict[str, asyncio.Future[Outcome]] = {}
        #: a running step's id by its slot, and the task that runs it: one shared
        #: done-callback serves every slot (no per-step closure, partial or context
        #: copy: at 10,000 steps in flight those objects are what the GC walks)
        self._sid_of: dict[asyncio.Future[Outcome], str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.finished: deque[str] = deque()
        self.records: list[StepRecord] = []
        self.announce: list[tuple[str, Outcome]] = []
        self.writes: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.failed = False
        self.store_error: BaseException | None = None
        #: records of batches the store refused, to be salvaged one by one
        self.refused: list[StepRecord] = []
        #: whether the last batch written, and every one before it, is durable
        self.durable: asyncio.Future[bool] | None = None

    def _slot_done(self, slot: asyncio.Future[Outcome]) -> None:
        """A step's slot settled: queue it for the driver; cancelling the slot (a
        stop, fail-fast) cancels the step's task."""
        sid = self._sid_of.pop(slot)
        task = self._tasks.pop(sid, None)
        if task is not None and slot.cancelled():
            task.cancel()
        self.finished.append(sid)
        self.wake.set()

    async def drive(self) -> bool:
        """Run the steps of the frame's plan until none can start; True when all of
        them completed or were skipped. A failure stops the scope (fail-fast); at
        the top level it stops the run."""
        run, plan, frame = self.run, self.plan, self.frame
        for sid in plan.branches:  # conditionals restored completed chose already
            if self.progress.status[sid] is StepStatus.COMPLETED:
                self._skip_branch_not_taken(sid, run.outputs.get(frame.instance(sid)))
        pauses = run.pauses
        if frame.owner is not None:
            pauses.in_body[frame.owner] = self
        stop_wait = asyncio.ensure_future(run.stop_signal.wait())
        stop_wait.add_done_callback(lambda _: self.wake.set())
        halted = False
        try:
            while True:
                while self.finished:
                    self._apply(self.finished.popleft())
                if self.store_error is not None:
                    error, self.store_error = self.store_error, None
                    if not await self._salvage(error):
                        raise error
                starts: list[str] = []
                halt = run.stop_reason is not None or (self.failed and run.workflow.fail_fast)
                if not halt:
                    self._collect_ready(starts)
                elif not halted:
                    halted = True
                    for future in self.running.values():
                        future.cancel()
                if self.records:
                    self._write_then_start(starts)
                # Only now, with what just finished taken in and what it unlocked
                # reserved, does `active` say whether anything is still at work.
                pauses.check()
                if not self.running and not self.writes:
                    break
                await self.wake.wait()
                self.wake.clear()
        except asyncio.CancelledError:
            await self._record_cancelled()
            raise
        finally:
            stop_wait.cancel()
            for future in self.running.values():
                future.cancel()
            if frame.owner is not None:
                pauses.in_body.pop(frame.owner, None)
        # From the run's statuses, not `progress`: a salvaged step failed after the fact.
        # (`map`, not a generator: this is a turn per step of the scope)
        statuses = map(run.statuses.get, map(frame.instance, plan.steps))
        return all(map(SATISFIED.__contains__, statuses))

    async def _record_cancelled(self) -> None:
        """Write down the steps a cancelled scope leaves behind (a loop step stopped
        in the middle of its body), so the store does not show them running."""
        for future in self.running.values():
            future.cancel()
        # The run's own task being cancelled (its loop is shutting down, as after
        # `run_sync` returns at a pause, or `Engine.close` lets go of a paused run) is
        # no stop: the store must keep the run as it stood, to be resumed, so only
        # steps that really finished are taken in.
        letting_go = self.run.shutting_down()
        while self.finished:
            sid = self.finished.popleft()
            if letting_go and self.running[sid].cancelled():
                del self.running[sid]
            else:
                self._apply(sid)
        # The slots just cancelled are done, but their done-callbacks (which queue
        # them in self.finished) only run on a later loop turn, after this scope
        # is gone: take them in now.
        if not letting_go:
            for sid in list(self.running):
                self._apply(sid)
        if self.records:
            batch, self.records = self.records, []
            await asyncio.shield(self.run.host.store.write(Batch.changes(steps=batch)))

    def _collect_ready(self, starts: list[str]) -> None:
        now = time.time()
        run, progress, frame = self.run, self.progress, self.frame
        steps, statuses, records = run.workflow.steps, run.statuses, self.records
        crash = run.host.crash if run.host.crash.points else None
        while True:
            ready = progress.ready()
            if not ready.start and not ready.skip:
                return
            for sid in ready.skip:
                self._skip(sid, now)
            for sid in ready.start:
                instance = frame.instance(sid)
                step = steps[sid]
                if step.if_ is not None:
                    try:
                        run_it = step_context(run, step, frame, instance, 0).truthy(step.if_)
                    except WfnbError as exc:
                        attempt = self._next_attempt(instance)
                        outcome = Outcome(StepStatus.FAILED, attempt, now, error=str(exc))
                        self._settle(sid, outcome)
                        self.announce.append((instance, outcome))
                        continue
                    if not run_it:
                        self._skip(sid, now)
                        continue
                attempt = self._next_attempt(instance)
                progress.mark(sid, StepStatus.RUNNING)
                statuses[instance] = StepStatus.RUNNING
                if crash is not None:
                    crash.hit("before", instance)
                started = self._started(instance, attempt, now)
                records.append(StepRecord(run.id, instance, attempt, StepStatus.RUNNING, started))
                starts.append(sid)

    def _next_attempt(self, instance: str) -> int:
        run = self.run
        previous = run.restored.get(instance)
        if previous is not None and previous.status is StepStatus.WAITING_APPROVAL:
            attempt = previous.attempt  # still the same request, not a new attempt
        else:
            attempt = run.attempts.get(instance, 0) + 1
        run.attempts[instance] = attempt
        return attempt

    def _started(self, instance: str, attempt: int, now: float) -> float:
        """When this attempt started: now, or, for an approval a restart asks again
        (the same attempt), when it first asked. A row's start never changes."""
        previous = self.run.restored.get(instance)
        started = now
        if previous is not None and previous.attempt == attempt and previous.started_at is not None:
            started = previous.started_at
        self.run.started[instance] = started
        return started

    def _skip(self, sid: str, now: float) -> None:
        run = self.run
        instance = self.frame.instance(sid)
        self.progress.mark(sid, StepStatus.SKIPPED)
        run.statuses[instance] = StepStatus.SKIPPED
        attempt = run.attempts.get(instance, 0) + 1
        self.records.append(StepRecord(run.id, instance, attempt, StepStatus.SKIPPED, now, now))
        run.events.publish(EventKind.STEP_SKIPPED, step_id=instance)
        # A skipped conditional takes neither branch: both are skipped, even steps
        # that have other, completed needs.
        then, otherwise = self.plan.branches.get(sid, (frozenset(), frozenset()))
        for other in sorted((then | otherwise) - self.progress.blocked):
            if self.progress.status[other] is StepStatus.PENDING:
                self._skip(other, now)

    def _apply(self, sid: str) -> None:
        """Take in a finished step: its outcome, the branch it chose, what it unlocks."""
        run = self.run
        future = self.running.pop(sid)
        instance = self.frame.instance(sid)
        run.pauses.active.discard(instance)
        started = run.started.get(instance)  # a row's start never moves
        if started is None:
            started = time.time()
        if future.cancelled():
            outcome = Outcome(
                StepStatus.CANCELLED, run.attempts[instance], started, error=cancel_text(run)
            )
        elif isinstance(error := future.exception(), StoreError):
            # The step's own bookkeeping (a retry's records) could not be written:
            # a failure of the step, recorded (or refused) like any other.
            outcome = Outcome(
                StepStatus.FAILED,
                run.attempts[instance],
                started,
                error=f"the checkpoint store failed: {error}",
            )
        else:
            outcome = future.result()
        crash = run.host.crash
        if crash.points:
            crash.hit("finished", instance)
        if outcome.status is StepStatus.COMPLETED and sid in self.plan.branches:
            self._skip_branch_not_taken(sid, outcome.output)
        self._settle(sid, outcome, instance)
        self.announce.append((instance, outcome))

    def _skip_branch_not_taken(self, sid: str, output: Any) -> None:
        taken = set(output.get("steps", ())) if isinstance(output, Mapping) else set()
        then, otherwise = self.plan.branches[sid]
        # (A blocked step, one with a failed need, is settled already: leave it.)
        for other in sorted((then | otherwise) - taken - self.progress.blocked):
            if self.progress.status[other] is StepStatus.PENDING:
                self._skip(other, time.time())

    def _settle(self, sid: str, outcome: Outcome, instance: str | None = None) -> None:
        run = self.run
        if instance is None:
            instance = self.frame.instance(sid)
        status, output, error = outcome.status, outcome.output, outcome.error
        self.progress.mark(sid, status)
        run.statuses[instance] = status
        completed = status is StepStatus.COMPLETED
        if completed:
            run.outputs[instance] = output
            if self.frame.index:  # later steps see a loop body step's last output
                run.outputs[base_id(instance)] = output
        elif error is not None:
            run.errors[instance] = error
            if outcome.traceback is not None:
                run.tracebacks[instance] = outcome.traceback
        redact = run.host.redact
        self.records.append(
            StepRecord(
                run.id,
                instance,
                outcome.attempt,
                status,
                outcome.started_at,
                time.time(),
                None if error is None else redact(error),
                None if output is None else redact(output),
                completed,
                outcome.worker,
                outcome.traceback,  # masked already
            )
        )
        if status is StepStatus.FAILED:
            self.failed = True
            if not self.frame.index:
                if run.failure is None:
                    run.failure = Failure(
                        instance, outcome.error or "failed", outcome.below, outcome.cause
                    )
                if run.workflow.fail_fast:
                    run.request_stop("failed")

    async def _salvage(self, error: BaseException) -> bool:
        """The store refused a batch, typically for an output it cannot keep (a
        lock, a socket). Write its records one by one, the refused output's step as
        failed without it and the steps it kept from starting as cancelled, then
        stop like fail-fast: the store never shows a run abandoned `running`.
        False when the store takes nothing at all: then it is gone, and the run
        ends as a crash would (resume picks it up)."""
        run = self.run
        records, self.refused = self.refused, []
        # What is written from now on no longer counts on the refused records; the
        # batches already in flight did, and stay held back.
        self.durable = None
        store = run.host.store
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
                await store.write(Batch.changes(steps=(record,)))
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
                await store.write(Batch.changes(steps=(failed,)))
            except StoreError:
                continue
            stored = True
            run.statuses[failed.step_id] = StepStatus.FAILED
            run.outputs.pop(failed.step_id, None)
            run.errors[failed.step_id] = reason
            self.failed = True
            if not self.frame.index and run.failure is None:
                run.failure = Failure(failed.step_id, reason)
        if stored and not self.frame.index:
            run.request_stop("failed")
        return stored

    def _write_then_start(self, starts: list[str]) -> None:
        """Write the scope's pending records; once durable, announce the outcomes
        and start ``starts``. Not awaited: the driver goes on collecting, so writes
        overlap and the store can group-commit them."""
        run, frame = self.run, self.frame
        batch, self.records = self.records, []
        announce, self.announce = self.announce, []
        loop = asyncio.get_running_loop()
        #: each step to start: its id, its instance, the slot it settles
        slots: list[tuple[str, str, asyncio.Future[Outcome]]] = []
        if starts:
            done, quiet = self._slot_done, _CALLBACKS
            sid_of, running, active = self._sid_of, self.running, run.pauses.active
            for sid in starts:
                # Reserve the step's place now, so the driver knows it is in flight.
                slot: asyncio.Future[Outcome] = loop.create_future()
                slot.add_done_callback(done, context=quiet)
                sid_of[slot] = sid
                running[sid] = slot
                instance = frame.instance(sid)
                slots.append((sid, instance, slot))
                active.add(instance)

        # A step may need what any earlier batch holds, and a refusal can come back
        # after a later batch went through: start nothing past a refused batch.
        earlier, durable = self.durable, loop.create_future()
        self.durable = durable

        tasks = self._tasks

        async def write_then_start() -> None:
            host = run.host
            try:
                await host.store.write(Batch.changes(steps=batch))
                ok = earlier is None or await earlier
            except BaseException:
                durable.set_result(False)
                raise
            durable.set_result(ok)
            # (Nobody can subscribe or arm a crash point while these loops run: what
            # they are is read once a batch, not once a step.)
            crash = host.crash if host.crash.points else None
            events = run.events
            listening = events.listening
            if crash is not None or listening:
                for instance, outcome in announce:
                    if crash is not None:
                        crash.hit("after", instance)
                    if listening:
                        events.outcome(instance, outcome)
            steps, attempts = run.workflow.steps, run.attempts
            for sid, instance, slot in slots:
                if not ok:
                    slot.cancel()
                if slot.done():  # cancelled while its before-record was being written
                    continue
                if crash is not None:
                    crash.hit("started", instance)
                attempt = attempts[instance]
                if listening:
                    events.publish(EventKind.STEP_STARTED, step_id=instance, attempt=attempt)
                tasks[sid] = loop.create_task(_into_slot(self, steps[sid], instance, attempt, slot))

        def written(task: asyncio.Task[None]) -> None:
            self.writes.discard(task)
            error = None if task.cancelled() else task.exception()
            if error is not None:
                self.store_error = error
                self.refused.extend(batch)
                for _, _, slot in slots:
                    if not slot.done():
                        slot.cancel()
            self.wake.set()

        task = loop.create_task(write_then_start())
        self.writes.add(task)
        task.add_done_callback(written)


#: the context the slots' done-callbacks run in: they touch no context variable,
#: so one shared context spares a copy of the caller's per step
_CALLBACKS = contextvars.Context()


async def _into_slot(
    scope: Scope, step: Step, instance: str, attempt: int, slot: asyncio.Future[Outcome]
) -> None:
    """Run a step's attempts and settle the slot the driver waits on from inside the
    step's own task. (A done-callback on the task would cost one more turn of the
    event loop between a step's end and the driver taking it in.) The attempts'
    coroutine is made here, once the task runs, not while it waits to start.

    A step that ends settles its slot and calls the slot's done-callback itself,
    at once, instead of leaving it to the loop: a callback scheduled is a handle
    made and a turn of the loop run, per step (≈ 2 µs of ≈ 16 of a no-op step's).
    A slot cancelled (a stop, fail-fast) still has the loop call it."""
    done = scope._slot_done
    try:
        outcome = await run_attempts(scope.run, step, scope.frame, instance, attempt)
    except asyncio.CancelledError:
        slot.cancel()
        raise
    except BaseException as exc:
        if not slot.done():
            slot.remove_done_callback(done)
            slot.set_exception(exc)
            done(slot)
        if not isinstance(exc, Exception):
            raise
        return
    if not slot.done():
        slot.remove_done_callback(done)
        slot.set_result(outcome)
        done(slot)
