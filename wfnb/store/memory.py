"""An in-process store: the default for headless use and the reference for tests.

Nothing survives the process; it exists so the engine can run with zero set-up and
so the conformance suite has a trivially correct implementation to agree with.
"""

from __future__ import annotations

import copy
import itertools
import operator
from collections.abc import Sequence
from typing import ClassVar

from wfnb.model import RunStatus
from wfnb.store.base import Batch, CallRecord, EventRecord, RunRecord, StepRecord, WorkflowRecord

_RUN_OF = operator.attrgetter("run_id")
_AT = operator.attrgetter("at")


class MemoryStore:
    """Keeps records in dicts. Outputs are kept by reference (not copied): this store
    is for speed and tests, and nothing else holds the values it is given."""

    #: Outputs are never serialized, so an unpicklable one (a lambda, a lock) is kept
    #: as is; `wfnb.testing.StoreConformance` reads this to know what to expect.
    serializes_outputs: ClassVar[bool] = False

    def __init__(self) -> None:
        self._workflows: dict[tuple[str, str], WorkflowRecord] = {}
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[tuple[str, int], StepRecord]] = {}
        self._calls: dict[str, dict[tuple[str, int, int], CallRecord]] = {}
        #: per run, its events as written, batch by batch. A `ChangeEvents` is kept
        #: as such: its records are made only if read, and meanwhile it keeps the
        #: run and step records it was made of (a step's "running" one, mostly;
        #: the store keeps the last of each anyway). A repeat is dropped when read
        #: (`get_events`), not here, where hashing every field of two events a step
        #: cost 5 % of a no-op step.
        self._events: dict[str, list[Sequence[EventRecord]]] = {}

    async def write(self, batch: Batch) -> None:
        for workflow in batch.workflows:
            self._workflows[(workflow.name, workflow.definition_hash)] = workflow
        for run in batch.runs:
            self._runs[run.run_id] = run
        # (a batch is nearly always of one run: look its tables up once)
        run_id: str | None = None
        steps: dict[tuple[str, int], StepRecord] = {}
        for step in batch.steps:
            if step.run_id != run_id:
                run_id = step.run_id
                steps = self._steps.setdefault(run_id, {})
            steps[(step.step_id, step.attempt)] = step
        for call in batch.calls:
            key = (call.step_id, call.attempt, call.seq)
            self._calls.setdefault(call.run_id, {})[key] = call
        events = batch.events
        derived = batch.derived_events
        runs = set(map(_RUN_OF, events)) if derived is None else derived.run_ids()
        if len(runs) == 1:  # (a copy of a caller's list: it may change it later)
            self._events.setdefault(runs.pop(), []).append(
                tuple(events) if derived is None else derived
            )
        else:
            for event in events:
                self._events.setdefault(event.run_id, []).append((event,))

    async def get_run(self, *, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        statuses: Sequence[RunStatus] | None = None,
        parent_run_id: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        wanted = set(statuses) if statuses is not None else None
        runs = [
            run
            for run in self._runs.values()
            if (workflow is None or run.workflow == workflow)
            and (wanted is None or run.status in wanted)
            and (parent_run_id is None or run.parent_run_id == parent_run_id)
        ]
        runs.sort(key=lambda run: run.created_at, reverse=True)
        return runs[:limit] if limit is not None else runs

    async def get_steps(self, *, run_id: str) -> list[StepRecord]:
        steps = list(self._steps.get(run_id, {}).values())
        steps.sort(key=lambda step: (step.started_at or 0.0, step.attempt))
        return [copy.copy(step) for step in steps]

    async def get_calls(self, *, run_id: str) -> list[CallRecord]:
        calls = list(self._calls.get(run_id, {}).values())
        calls.sort(key=lambda call: (call.started_at, call.seq))
        return calls

    async def get_workflow(self, *, name: str, definition_hash: str) -> WorkflowRecord | None:
        return self._workflows.get((name, definition_hash))

    async def get_events(self, *, run_id: str) -> list[EventRecord]:
        # (the first of equal events kept, in the order written: a stable sort)
        events = itertools.chain.from_iterable(self._events.get(run_id, ()))
        return sorted(dict.fromkeys(events), key=_AT)

    async def prune(self, *, older_than: float, keep_failed: bool = False) -> int:
        doomed = [
            run.run_id
            for run in self._runs.values()
            if run.status.finished
            and run.created_at < older_than
            and not (keep_failed and run.status is RunStatus.FAILED)
        ]
        for run_id in doomed:
            del self._runs[run_id]
            self._steps.pop(run_id, None)
            self._calls.pop(run_id, None)
            self._events.pop(run_id, None)
        return len(doomed)

    async def acquire(self) -> None:
        return None

    async def release(self) -> None:
        return None

    async def close(self) -> None:
        return None
