"""One live run: its state, its life from pending to an end, and the status
records that mark it.

The ordering rules that make a run durable:

- a step's "before" record (``running``, attempt n) is durable before its code starts;
- its "after" record is durable before any step that needs it starts, and before
  anyone is told it completed (events, results);
- both go through `Store.write` batches: the after-records of the steps that just
  finished and the before-records of the steps they unlock share one batch, and
  batches are not awaited one by one, so a store can group-commit a whole wave
  (`wfnb.run.driver`).

A run is driven by one coroutine (`LiveRun.main`) plus one task per running step.
Stopping (cancel, workflow timeout, fail-fast) is a flag the driver acts on, never
a cancellation injected into the driver, so the driver always gets to write down
what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from typing import Any

from wfnb.dag import Plan
from wfnb.errors import StoreError
from wfnb.instances import step_outputs
from wfnb.model import RunResult, RunStatus, StepStatus, Workflow
from wfnb.run.deadlines import Deadlines
from wfnb.run.driver import Scope
from wfnb.run.frame import Failure, Frame
from wfnb.run.heap import frozen_for
from wfnb.run.host import RunHost
from wfnb.run.pauses import Pauses
from wfnb.run.publish import Publisher
from wfnb.run.services import StepsView, base_scope
from wfnb.store.base import Batch, RunRecord, StepRecord


class LiveRun:
    def __init__(
        self,
        host: RunHost,
        workflow: Workflow,
        plan: Plan,
        record: RunRecord,
        restored: Mapping[str, StepRecord],
    ) -> None:
        self.host = host
        self.workflow = workflow
        self.plan = plan
        self.record = record
        self.id = record.run_id
        self.status = record.status
        self.outputs: dict[str, Any] = {}
        self.statuses: dict[str, StepStatus] = {}
        self.attempts: dict[str, int] = {}
        #: step instance -> when its current attempt started (its records keep it)
        self.started: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        #: step instance -> the user's frames of its last failed attempt (masked)
        self.tracebacks: dict[str, str] = {}
        self.restored = dict(restored)
        for instance, step in restored.items():
            self.attempts[instance] = step.attempt
            if step.started_at is not None:
                self.started[instance] = step.started_at
            if step.status in (StepStatus.COMPLETED, StepStatus.SKIPPED):
                self.statuses[instance] = step.status
                if step.status is StepStatus.COMPLETED:
                    # stored masked; the secrets themselves come back for the steps
                    self.outputs[instance] = host.redact.restore(step.output)
        # A step after a loop reads a body step's last iteration through its bare id
        # (as the driver keeps it live); restored iterations must provide it too.
        self.outputs.update(step_outputs(self.outputs))
        self.failure: Failure | None = None
        self.notes: list[str] = []
        self.stop_reason: str | None = None
        self.approvals: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.pauses = Pauses(self)
        self.events = Publisher(host.bus, host.redact, self.id, workflow.name)
        #: set once a stop is requested; the drivers wake on it
        self.stop_signal = asyncio.Event()
        self._settled = asyncio.Event()
        #: the loop the run lives on; once it is closed, nobody drives the run here
        self.loop = asyncio.get_running_loop()
        #: the timeouts of its leaf steps
        self.deadlines = Deadlines(self.loop)
        self._done = self.loop.create_future()
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._base_scope: dict[str, Any] | None = None
        self._scope: tuple[Frame, dict[str, Any]] | None = None
        self.task: asyncio.Task[None] | None = None
        #: its ``running`` record went with its first one (`start_at_once`)
        self._start_written = False

    @classmethod
    def ended(
        cls,
        host: RunHost,
        workflow: Workflow,
        plan: Plan,
        record: RunRecord,
        steps: Mapping[str, StepRecord],
    ) -> LiveRun:
        """A finished run from the store, as a run that is already done (so its
        result is built like any other's)."""
        run = cls(host, workflow, plan, record, steps)
        run._done.set_result(None)
        run._settled.set()
        return run

    # -- what callers see -------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._done.done()

    async def settled(self) -> None:
        """Return once the run is paused or finished."""
        await self._settled.wait()

    async def done(self) -> None:
        await asyncio.shield(self._done)

    async def status_changed(self) -> None:
        """Return at the next change of the run's status."""
        await self._changed.wait()

    def request_stop(self, reason: str) -> None:
        """Stop the run: ``cancelled`` (a user), ``timeout`` or ``failed`` (fail-fast)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_signal.set()

    def error_text(self) -> str | None:
        return None if self.failure is None else self.failure.text

    def result(self, *, masked: bool = True) -> RunResult:
        """The run as it stands. Shown to the user, so masked like the records;
        unmasked only for a parent run's step, which needs the real values as its
        own outputs are."""
        redact = self.host.redact if masked else _unmasked
        failure = self.failure
        return run_result(
            self.record,
            status=self.status,
            outputs=self.outputs,
            error=redact(self.error_text()) if self.status.finished or failure else None,
            failed_step=failure.step if failure and failure.step else None,
            redact=redact,
            tracebacks=self.tracebacks,
        )

    def template_scope(self, frame: Frame) -> dict[str, Any]:
        """The templates' scope in ``frame``. Its ``steps`` is a live view, so one
        scope serves every step of a frame: it is made again only when the frame
        changes (the steps of one scope come one after another)."""
        cached = self._scope
        if cached is not None and cached[0] is frame:
            return cached[1]
        if self._base_scope is None:
            self._base_scope = base_scope(self)
        scope = dict(self._base_scope)
        scope["steps"] = StepsView(self, frame)
        if frame.loop is not None:
            scope["loop"] = frame.loop
        self._scope = (frame, scope)
        return scope

    async def drive(self, frame: Frame) -> bool:
        """Run the frame's plan (see `Scope.drive`); True when every step of it
        completed or was skipped."""
        return await Scope(self, frame).drive()

    # -- the run's life ---------------------------------------------------------

    async def main(self) -> None:
        host = self.host
        semaphore = host.concurrency_slot(self)
        try:
            if semaphore is None or await self._acquire(semaphore):
                try:
                    with frozen_for(len(self.workflow.steps)):
                        await self._run()
                finally:
                    if semaphore is not None:
                        semaphore.release()
            await self._finish()
        except asyncio.CancelledError:
            if self.shutting_down():
                await asyncio.shield(self._let_go())
            raise
        except StoreError as exc:
            self.failure = self.failure or Failure("", f"the checkpoint store failed: {exc}")
            await self._end_failed()
        except Exception as exc:  # the run must always settle, whatever went wrong
            self.failure = self.failure or Failure(
                "", f"internal error: {type(exc).__name__}: {exc}"
            )
            host.internal_error(self, exc)
            await self._end_failed()
        finally:
            if not self._done.done():
                self._done.set_result(None)
            self._settled.set()
            self._changed.set()
            host.run_ended(self)

    def let_go(self) -> None:
        """Stop driving the run here without stopping it: its records stay as they
        stand (a paused run stays paused), for any process to decide or resume."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def _let_go(self) -> None:
        """The run is let go (`let_go`, or the end of its loop): its record says
        nobody drives it any more, so another process may take it at once."""
        if self.status.finished:
            return
        self.record = replace(self.record, owner=None)
        with contextlib.suppress(Exception):  # a store gone too: the owner check copes
            # (no change of state, so no event: a plain batch)
            await self.host.store.write(Batch(runs=(self.stored_record(),)))

    async def _end_failed(self) -> None:
        """End the run failed after an error no step's handling caught: close the
        attempts it left open, then the run, in the store too if the store takes
        them (it may be what failed), so nobody finds it `running` and owned."""
        now = time.time()
        left_open = [
            StepRecord(
                self.id,
                instance,
                self.attempts.get(instance, 1),
                StepStatus.CANCELLED,
                self.started.get(instance),
                now,
                "cancelled: the run failed",
            )
            for instance, status in self.statuses.items()
            if status in (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL)
        ]
        for record in left_open:
            self.statuses[record.step_id] = StepStatus.CANCELLED
        try:
            if left_open:
                await self.host.store.write(Batch.changes(steps=left_open))
            await self.write_status(RunStatus.FAILED, ended=True, error=self.error_text())
        except Exception:  # noqa: BLE001 - the store is what failed: memory says it
            self.status = RunStatus.FAILED
            self.events.status(RunStatus.FAILED, self.host.redact(self.error_text()))

    async def _acquire(self, semaphore: asyncio.Semaphore) -> bool:
        """Wait (as ``pending``) for a concurrency slot; False if stopped meanwhile."""
        if not semaphore.locked():
            await semaphore.acquire()
            return True
        acquire = asyncio.ensure_future(semaphore.acquire())
        stop = asyncio.ensure_future(self.stop_signal.wait())
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
        if self._start_written:  # the store says so already: so do memory and stream,
            self._status_is(RunStatus.RUNNING)  # even for a run stopped before this
        if self.stop_reason is not None:
            return
        if not self._start_written:
            await self.write_status(RunStatus.RUNNING, started=True)
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
            self.failure = Failure("", error)
        elif (
            self.failure is not None
            or StepStatus.FAILED in (statuses := self.statuses.values())
            or StepStatus.CANCELLED in statuses  # (`in`: a C loop, no generator a step)
        ):
            status = RunStatus.FAILED
            if self.failure is None:
                failed_step = next(
                    sid for sid, s in self.statuses.items() if s is StepStatus.FAILED
                )
                self.failure = Failure(failed_step, self.errors.get(failed_step, "failed"))
            error = self.error_text()
        else:
            status, error = RunStatus.COMPLETED, None
        await self.write_status(status, ended=True, error=error)

    def start_at_once(self) -> RunRecord | None:
        """The run's ``running`` record (as stored), to be written with its first
        one, when nothing can keep it pending: it waits for no concurrency slot.
        The run then starts without writing it again: one acknowledgement a run
        instead of two (≈ 0.2-0.3 ms, a sync and the turns around it). None when
        it may wait."""
        if self.host.concurrency_slot(self) is not None:
            return None
        self._start_written = True
        return self._next_record(RunStatus.RUNNING, started=True)

    async def write_status(
        self,
        status: RunStatus,
        *,
        started: bool = False,
        ended: bool = False,
        error: str | None = None,
    ) -> None:
        """Record the run's new status, then tell whoever waits on it."""
        stored = self._next_record(status, started=started, ended=ended, error=error)
        await self.host.store.write(Batch.changes(runs=(stored,)))
        self._status_is(status)

    def _next_record(
        self,
        status: RunStatus,
        *,
        started: bool = False,
        ended: bool = False,
        error: str | None = None,
    ) -> RunRecord:
        """The run's record with its new status, kept as ``self.record``; returned
        as stored (`stored_record`)."""
        host = self.host
        now = time.time()
        changes: dict[str, Any] = {"status": status}
        if started:
            changes["started_at"] = self.record.started_at or now
            changes["owner"] = host.owner
        if ended:
            changes.update(ended_at=now, error=host.redact(error))
            failure = self.failure
            changes["failed_step"] = failure.step if failure and failure.step else None
        self.record = replace(self.record, **changes)
        return self.stored_record()

    def stored_record(self) -> RunRecord:
        """The run's record as the store keeps it: its inputs masked (copied only
        when there are secrets to mask)."""
        redact = self.host.redact
        return replace(self.record, inputs=redact(self.record.inputs)) if redact else self.record

    def _status_is(self, status: RunStatus) -> None:
        """The new status is durable: tell whoever waits on it."""
        host = self.host
        self.status = status
        self._changed.set()
        self._changed = asyncio.Event()
        self.events.status(status, self.record.error)
        if status is RunStatus.PAUSED or status.finished:
            self._settled.set()
        else:
            self._settled.clear()
        if not status.finished:
            host.run_paused(self, status is RunStatus.PAUSED)

    def write_status_soon(self, status: RunStatus) -> None:
        """The in-memory status flips now; the record follows (writes keep their order)."""
        self.status = status
        self.finish_after(self.write_status(status))

    def shutting_down(self) -> bool:
        """True when the run's own task is being cancelled: its event loop is going
        away (as after `run_sync` returns at a pause). That is not a stop: records
        stay as they stand, for another process to resume."""
        main = self.task
        return main is not None and main.cancelling() > 0

    def finish_after(self, work: Coroutine[Any, Any, None]) -> None:
        """Do not write this run's end before ``work`` is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def run_result(
    record: RunRecord,
    *,
    status: RunStatus,
    outputs: Mapping[str, Any],
    error: str | None,
    failed_step: str | None,
    redact: Callable[[Any], Any] | None = None,
    tracebacks: Mapping[str, str] | None = None,
) -> RunResult:
    """The one way a `RunResult` is made, live or from the store: outputs by step
    id (a loop body step with its last iteration's), passed through ``redact``;
    ``tracebacks`` by step instance (stored masked)."""
    by_step = step_outputs(outputs)
    return RunResult(
        tracebacks=dict(tracebacks or {}),
        run_id=record.run_id,
        workflow=record.workflow,
        status=status,
        outputs={key: redact(value) for key, value in by_step.items()} if redact else by_step,
        error=error,
        failed_step=failed_step,
    )


def _unmasked(value: Any) -> Any:
    return value
