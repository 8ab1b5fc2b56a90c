"""The one exception tree of wfnb.

Every error wfnb raises on purpose derives from :class:`WfnbError`, so a notebook
user can catch them all with one ``except`` and tell them apart by class::

    WfnbError
    ├── DefinitionError          the workflow as written cannot run
    │   ├── YamlError            the cell is not valid YAML (or is an alias bomb)
    │   ├── SchemaError          valid YAML, wrong shape (unknown key, bad type)
    │   ├── UnknownStepError     `needs`/`then`/`body` names a step that does not exist
    │   ├── CycleError           the steps depend on each other in a circle
    │   ├── TemplateError        a Jinja2 template does not compile
    │   ├── UnknownCallableError a `code:` or `skill:` name resolves to nothing
    │   └── UnpicklableCallableError  its callable cannot travel to the workers
    ├── StepError                a step ran and did not succeed
    │   ├── StepTimeout          it ran longer than its `timeout`
    │   ├── TemplateRenderError  its template used an undefined name
    │   ├── ApprovalRejected     a person rejected it
    │   ├── WorkerLost           the worker running it died (retried like a failure)
    │   └── SubWorkflowError     its sub-workflow failed or nested too deep
    ├── RunError                 the run as a whole could not go on, or do what was asked
    │   ├── WorkflowTimeout      the workflow-level `timeout` expired
    │   ├── RunNotFound          no run has that id
    │   ├── NotResumable         the run is finished, or is still live elsewhere
    │   ├── NotWaiting           an approval names a step that is not waiting for one
    │   └── LoopRunning          `run_sync` called inside a running event loop
    └── StoreError               the checkpoint store failed
        ├── StoreLocked          another process holds the store's write lock
        └── JournalCorrupt       a journal frame is damaged with intact frames after it

Pausing for a person is not an error: the engine handles approvals with a control
flow of its own and never raises for them. Errors carry the ids they are about as
attributes (``err.step_id``, ``err.line``, ``err.run_id``) so tools can use them
without parsing messages.
"""

from __future__ import annotations

from collections.abc import Iterable


class WfnbError(Exception):
    """Root of every error wfnb raises on purpose."""


class DefinitionError(WfnbError):
    """The workflow definition is wrong; raised before anything runs or is stored."""

    def __init__(self, message: str, *, step_id: str | None = None, line: int | None = None):
        self.step_id = step_id
        self.line = line
        self.reason = message
        where = []
        if step_id is not None:
            where.append(f"step {step_id!r}")
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class YamlError(DefinitionError):
    """The workflow text is not YAML we accept."""


class SchemaError(DefinitionError):
    """The YAML parsed but does not describe a valid workflow."""


class UnknownStepError(DefinitionError):
    """A reference names a step that the workflow does not have."""


class CycleError(DefinitionError):
    """The steps' `needs` form a cycle; ``cycle`` lists it in order."""

    def __init__(self, cycle: list[str], *, line: int | None = None):
        self.cycle = cycle
        path = " -> ".join([*cycle, cycle[0]])
        super().__init__(f"the steps form a cycle: {path}", step_id=cycle[0], line=line)


class TemplateError(DefinitionError):
    """A template or expression does not compile."""


class UnknownCallableError(DefinitionError):
    """A `code:` or `skill:` step names something that is not a callable."""


class UnpicklableCallableError(DefinitionError):
    """A `code:` or `skill:` callable cannot be pickled, so it cannot be sent to the
    workers of a remote backend (Dask); found when the run starts."""


class StepError(WfnbError):
    """A step ran and did not succeed.

    A step's `retry` setting may run it again. The step can say that no retry can
    help (``retryable=False``: a 404, a body over ``max_bytes``) or how long to wait
    first (``retry_after`` seconds: a server's ``Retry-After``)."""

    def __init__(
        self,
        message: str,
        *,
        step_id: str | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ):
        self.step_id = step_id
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


class StepTimeout(StepError):
    """The step exceeded its `timeout`; its attempt is recorded as failed."""


class TemplateRenderError(StepError):
    """A template referred to a name that is undefined when the step ran."""


class ApprovalRejected(StepError):
    """A person rejected the approval step; ``by`` and ``comment`` say who and why."""

    def __init__(self, *, by: str, comment: str | None = None, step_id: str | None = None):
        self.by = by
        self.comment = comment
        super().__init__(f"rejected by {by}" + (f": {comment}" if comment else ""), step_id=step_id)


class WorkerLost(StepError):
    """The worker running the attempt died (a Dask worker killed, out of memory)."""


class SubWorkflowError(StepError):
    """A `workflow:` step's child run failed, or nesting exceeded the depth limit.

    ``path`` is where the failure began, the failed step of the child run and on
    down through nested sub-workflows (empty when the child failed as a whole or
    never ran), and ``cause`` the reason given there.
    """

    def __init__(
        self,
        message: str,
        *,
        step_id: str | None = None,
        path: tuple[str, ...] = (),
        cause: str | None = None,
    ):
        self.path = path
        self.cause = cause
        super().__init__(message, step_id=step_id)


class RunError(WfnbError):
    """The run as a whole could not go on, or cannot do what was asked of it."""

    def __init__(self, message: str, *, run_id: str | None = None):
        self.run_id = run_id
        super().__init__(message)


class WorkflowTimeout(RunError):
    """The workflow-level `timeout` expired."""


class RunNotFound(RunError):
    """No run with this id is in the store."""


class NotResumable(RunError):
    """The run cannot be resumed: it finished, or a live process is driving it."""


class NotWaiting(RunError):
    """The step named in an approval or rejection is not waiting for a decision."""

    def __init__(self, message: str, *, run_id: str | None = None, step_id: str | None = None):
        self.step_id = step_id
        super().__init__(message, run_id=run_id)


class LoopRunning(RunError):
    """`Engine.run_sync` was called where an event loop already runs: await instead."""


class StoreError(WfnbError):
    """The checkpoint store failed; the checkpoint in question was not acknowledged."""


class StoreLocked(StoreError):
    """Another process holds the store's single write lock."""

    def __init__(self, message: str, *, holder: str | None = None):
        self.holder = holder
        super().__init__(message)


class JournalCorrupt(StoreError):
    """A frame in the middle of the store's journal fails its checksum while intact
    frames follow it: acknowledged checkpoints would be lost by cutting it off, so
    the store refuses to open rather than guess. ``path`` and ``offset`` say where."""

    def __init__(self, message: str, *, path: str, offset: int):
        self.path = path
        self.offset = offset
        super().__init__(message)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``name``, else ``""``: the
    one hint every "no such name" message ends with. (`difflib` is imported here,
    on the first such error: ``import wfnb`` need not load it, ≈ 0.2 MB.)"""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
