"""The checkpoint store protocol: the one boundary between the engine and disk.

The engine hands the store typed records and never SQL; a store never imports the
engine. Records are *whole* rows that are upserted by key, so writing one twice is
harmless: that is what lets a journal be replayed after a crash without doubling
anything, and what lets a store group-commit writes that arrive together.

Keys: a `WorkflowRecord` by ``(name, definition_hash)``, a `RunRecord` by
``run_id``, a `StepRecord` by ``(run_id, step_id, attempt)``, a `CallRecord` by
``(run_id, step_id, attempt, seq)``, an `EventRecord` by all its fields (events are
appended history: `Batch.changes` makes one for each run and step record it carries).

Times are Unix epoch seconds (floats): cheap to take on the hot path; stores convert
them for humans and need only keep them to the microsecond.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

from wfnb.model import RunStatus, StepStatus

#: a status member -> its value. ``.value`` is a descriptor call, a third of
#: `Batch.changes`'s loop at two records a step; a dict lookup costs what reading
#: the member's private ``_value_`` did (≈ 19 ns against ≈ 146 ns; the events of
#: 2 step records: 1.51 µs against 1.54 µs with ``_value_``, best of 30, measured)
_RUN_STATUS: dict[RunStatus, str] = {m: m.value for m in RunStatus}
_STEP_STATUS: dict[StepStatus, str] = {m: m.value for m in StepStatus}
_RUN_OF = operator.attrgetter("run_id")
_STATUS_OF = operator.attrgetter("status")

_R = TypeVar("_R")
#: the default of a field whose default is made by a factory (a fresh dict each)
_FACTORY = object()


def quick_init(cls: type[_R]) -> type[_R]:
    """Give a frozen, slotted dataclass an ``__init__`` that sets its slots through
    their descriptors, not `object.__setattr__`: the same signature and the same
    frozen record (the same fields, so every codec reads it as before), made for a
    fraction of the cost. Records are made on the hot path, two step records and
    their two events a step: the generated ``__init__`` made a 6-field `EventRecord`
    in ≈ 1.06 µs, this one in ≈ 0.66 µs; an 11-field `StepRecord` ≈ 2.0 against
    ≈ 1.1 µs (best of 3 × 200,000, measured)."""
    env: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, body = [], []
    for f in fields(cls):  # type: ignore[arg-type]
        name = f.name
        env[f"_set_{name}"] = getattr(cls, name).__set__
        value = name
        if f.default is not MISSING:
            env[f"_default_{name}"] = f.default
            params.append(f"{name}=_default_{name}")
        elif f.default_factory is not MISSING:
            env[f"_factory_{name}"] = f.default_factory
            params.append(f"{name}=_FACTORY")
            value = f"_factory_{name}() if {name} is _FACTORY else {name}"
        else:
            params.append(name)
        body.append(f"    _set_{name}(self, {value})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body)
    exec(source, env)  # noqa: S102 - as `dataclasses` makes its methods
    init: Callable[..., None] = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


@quick_init
@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    name: str
    definition: str
    definition_hash: str
    created_at: float


@quick_init
@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    workflow: str
    definition_hash: str
    status: RunStatus
    inputs: dict[str, Any]
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    failed_step: str | None = None
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    depth: int = 0
    #: "host:pid:start" of the process driving the run, so a dead driver is detected.
    owner: str | None = None
    #: step id -> fingerprint of its callable's source when the run started, so a
    #: resume can say which steps will now run different code.
    code_hashes: dict[str, str] = field(default_factory=dict)


@quick_init
@dataclass(frozen=True, slots=True)
class StepRecord:
    """One attempt of one step.

    ``step_id`` is the step's id, or ``BODY[i]`` for iteration ``i`` of a loop body
    step. ``output`` is meaningful when ``has_output``: the step's return value for a
    completed attempt, the approval request (``{prompt, deadline}``) for a
    ``waiting_approval`` one. Any Python value may appear; the store decides how to
    keep it (JSON, a table, a pickle) and must give back an equal value.
    ``worker`` is where the attempt ran, when a backend says (the Dask worker's
    address); None for the local backend.
    """

    run_id: str
    step_id: str
    attempt: int
    status: StepStatus
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    output: Any = None
    has_output: bool = False
    worker: str | None = None
    #: for a failed attempt: the user's frames of its traceback (wfnb's and asyncio's
    #: trimmed), secrets masked; None when no code of the user's was on the stack
    traceback: str | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class CallRecord:
    """One request a step attempt made to the outside world: an HTTP request of an
    ``http`` step, a chat-completions call of an ``agent`` step.

    Written by the step as soon as the request ends (answered, failed or cut off),
    not with the attempt's end, so every request of every attempt is kept, also
    those of an attempt that was cancelled, timed out or killed. ``seq`` numbers
    the requests of one attempt from 1. ``data`` is JSON-able (str keys; str, int,
    float, bool, None, lists and dicts of them), already masked: ``method``,
    ``url``, ``status``, ``duration_ms``, ``bytes``, ``error`` for every kind, and
    ``model``, ``prompt_tokens``, ``completion_tokens``, ``total_tokens`` for
    ``agent`` calls.
    """

    run_id: str
    step_id: str
    attempt: int
    seq: int
    kind: str
    started_at: float
    data: dict[str, Any] = field(default_factory=dict)


#: the name of each change of state in `events`: the live stream's `EventKind` values
RUN_EVENTS = {
    "pending": "run_pending",
    "running": "run_started",
    "paused": "run_paused",
    "completed": "run_completed",
    "failed": "run_failed",
    "cancelled": "run_cancelled",
}
STEP_EVENTS = {
    "pending": "step_pending",
    "running": "step_started",
    "waiting_approval": "step_waiting",
    "completed": "step_completed",
    "failed": "step_failed",
    "skipped": "step_skipped",
    "cancelled": "step_cancelled",
}


@quick_init
@dataclass(frozen=True, slots=True)
class EventRecord:
    """One change of state of a run (``step_id`` None) or of one step attempt, with
    the state it changed to: `events` is history, appended, never updated. Every
    field is the key, so writing one twice (a replayed journal) adds nothing."""

    run_id: str
    status: str
    at: float
    step_id: str | None = None
    attempt: int | None = None
    error: str | None = None

    @property
    def event(self) -> str:
        """``run_started``, ``step_waiting``, …: as the live event stream names it."""
        names = RUN_EVENTS if self.step_id is None else STEP_EVENTS
        return names.get(self.status, self.status)


@dataclass(frozen=True, slots=True)
class Batch:
    """Records that become durable together, atomically, in the order given."""

    workflows: Sequence[WorkflowRecord] = field(default_factory=tuple)
    runs: Sequence[RunRecord] = field(default_factory=tuple)
    steps: Sequence[StepRecord] = field(default_factory=tuple)
    calls: Sequence[CallRecord] = field(default_factory=tuple)
    events: Sequence[EventRecord] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.workflows or self.runs or self.steps or self.calls or self.events)

    @classmethod
    def changes(
        cls,
        *,
        workflows: Sequence[WorkflowRecord] = (),
        runs: Sequence[RunRecord] = (),
        steps: Sequence[StepRecord] = (),
        at: float | None = None,
    ) -> Batch:
        """Records that are changes of state: each run and step record also goes
        into `events`, as it is now (at ``at``, default now), in the same batch."""
        events = ChangeEvents(runs, steps, time.time() if at is None else at)
        return cls(workflows=workflows, runs=events.runs, steps=events.steps, events=events)

    @property
    def derived_events(self) -> ChangeEvents | None:
        """`events` when they are this batch's own runs and steps as changes (as
        `changes` makes them): a store may then write them from those records."""
        events = self.events
        if type(events) is ChangeEvents and events.runs is self.runs and events.steps is self.steps:
            return events
        return None


class ChangeEvents(Sequence[EventRecord]):
    """The events of `Batch.changes`: its run and step records as they are, at
    ``at``. Kept as those records and the time, not as `EventRecord`s made up
    front: two a step, on the engine's path, were 10 % of the instructions of a
    durable no-op step. The stores here write the events from the records (see
    `Batch.derived_events`); any other reader gets `EventRecord`s, made when read."""

    __slots__ = ("runs", "steps", "at", "_made")

    def __init__(self, runs: Sequence[RunRecord], steps: Sequence[StepRecord], at: float) -> None:
        # (set operations in C: what an EventRecord made at once refused, refused now)
        wrong = set(map(_STATUS_OF, runs)) - _RUN_STATUS.keys()
        wrong |= set(map(_STATUS_OF, steps)) - _STEP_STATUS.keys()
        if wrong:
            raise ValueError(f"not a status of a run or step record: {sorted(map(repr, wrong))}")
        # (copies, which a caller's changes to its lists later do not reach; a
        # tuple's copy is itself, so `Batch.changes` hands the batch the same)
        self.runs = tuple(runs)
        self.steps = tuple(steps)
        self.at = at
        self._made: list[EventRecord] | None = None

    def records(self) -> list[EventRecord]:
        made = self._made
        if made is None:  # (two threads may both make them: the same list)
            at = self.at
            made = [
                EventRecord(r.run_id, _RUN_STATUS[r.status], at, error=r.error) for r in self.runs
            ]
            made += [
                EventRecord(s.run_id, _STEP_STATUS[s.status], at, s.step_id, s.attempt, s.error)
                for s in self.steps
            ]
            self._made = made
        return made

    def run_ids(self) -> set[str]:
        """The runs these events are of, without making them."""
        ids = set(map(_RUN_OF, self.runs))
        ids.update(map(_RUN_OF, self.steps))
        return ids

    def __len__(self) -> int:
        return len(self.runs) + len(self.steps)

    @overload
    def __getitem__(self, index: int) -> EventRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[EventRecord]: ...

    def __getitem__(self, index: int | slice) -> EventRecord | list[EventRecord]:
        return self.records()[index]

    def __iter__(self) -> Iterator[EventRecord]:
        return iter(self.records())

    def __eq__(self, other: object) -> bool:  # as the list it stands for
        if isinstance(other, ChangeEvents | list):
            return self.records() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (a list's is None too)

    def __reduce__(self) -> tuple[Any, ...]:
        return ChangeEvents, (self.runs, self.steps, self.at)

    def __repr__(self) -> str:
        return repr(self.records())


@runtime_checkable
class Store(Protocol):
    """Where runs are checkpointed. All methods are coroutines safe to call on the
    kernel's event loop: a store that touches disk does so off the loop.

    `wfnb.testing.StoreConformance` is the executable form of this contract; a new
    store passes it before anything else.
    """

    async def write(self, batch: Batch) -> None:
        """Apply ``batch`` atomically; return only once it is durable.

        Durable means it survives ``kill -9`` of this process the next instant.
        Concurrent calls may be committed together (group commit); each returns
        when its own records are durable. Calls take effect in the order they were
        made, even when they overlap: the engine writes a step's ``cancelled``
        record while its earlier ``running`` one may still be in flight, and the
        later must win. Raises `StoreError` (and leaves nothing of
        the batch behind) when the records cannot be made durable.
        """
        ...

    async def get_run(self, *, run_id: str) -> RunRecord | None:
        """The run's latest record; None on a miss."""
        ...

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        statuses: Sequence[RunStatus] | None = None,
        parent_run_id: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs matching every filter given, newest first."""
        ...

    async def get_steps(self, *, run_id: str) -> list[StepRecord]:
        """Every attempt of every step of the run, ordered by start then attempt;
        an empty list for an unknown run. Outputs come back restored."""
        ...

    async def get_workflow(self, *, name: str, definition_hash: str) -> WorkflowRecord | None:
        """The definition a run started with; None on a miss."""
        ...

    async def get_calls(self, *, run_id: str) -> list[CallRecord]:
        """Every request of every step attempt of the run, ordered by start then
        ``seq``; an empty list for an unknown run."""
        ...

    async def get_events(self, *, run_id: str) -> list[EventRecord]:
        """The run's changes of state, oldest first (then as written); an empty
        list for an unknown run. Each is kept as written: never updated."""
        ...

    async def prune(self, *, older_than: float, keep_failed: bool = False) -> int:
        """Delete finished runs created before ``older_than`` (epoch seconds) with
        their steps, calls, outputs and events; keep failed ones if asked. Returns how
        many runs were deleted. Runs that are pending, running or paused are never pruned."""
        ...

    async def acquire(self) -> None:
        """Keep the store open (files, locks) until the matching `release`. The
        engine holds it while any run is live, so a store that lets other processes
        in when idle (DuckDB allows one writing process per file) does not reopen
        between checkpoints. Raises `StoreLocked` when another process holds it."""
        ...

    async def release(self) -> None:
        """Undo one `acquire`."""
        ...

    async def close(self) -> None:
        """Make everything durable and release files and locks. Idempotent."""
        ...


def latest_attempts(steps: Sequence[StepRecord]) -> dict[str, StepRecord]:
    """The last attempt of each step id."""
    latest: dict[str, StepRecord] = {}
    for record in steps:
        current = latest.get(record.step_id)
        if current is None or record.attempt >= current.attempt:
            latest[record.step_id] = record
    return latest
