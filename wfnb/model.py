"""The workflow model: what a `%%workflow` cell (or Python code) declares.

Pydantic validates shape and types; the planner (`wfnb.dag`) checks the graph. A
`Step` has exactly one *kind*; its kind-specific settings live in ``step.spec``, a
model of its own per kind, so each step module gets a typed spec.

No YAML here: `wfnb.parse` reads and writes the text. It sits above the model and
installs itself as the model's `DefinitionCodec` when imported (``import wfnb``
does), so `Workflow.from_yaml` and `Workflow.to_yaml` work without the model
importing anything above it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from wfnb.errors import DefinitionError, did_you_mean

DEFAULT_STEP_TIMEOUT = 300.0
MAX_DEPTH = 5
#: the longest timeout or retry wait (30 days): past it a number is a mistake
#: (milliseconds written as seconds), and asyncio's timers misbehave near infinity
MAX_SECONDS = 30 * 24 * 3600.0
MAX_BACKOFF = 100.0
MAX_ITERATIONS = 1_000_000


class RunStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CodeSpec(_Spec):
    """A Python callable: a name in the engine's namespace, or the callable itself."""

    target: str | Callable[..., Any]


class SkillSpec(_Spec):
    """A callable registered with ``@wfnb.skill``; ``NAME@VERSION`` pins a version."""

    target: str


DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class HttpSpec(_Spec):
    """One request; a status >= 400 fails the step unless ``accept_status`` lists it,
    and a body longer than ``max_bytes`` fails it without being read whole."""

    url: str
    method: str = "GET"
    headers: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    body: Any = None
    accept_status: list[int] = Field(default_factory=list)
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1)


class AgentDefaults(_Spec):
    """Where agent steps send their requests; a workflow's ``agent:`` key, and what an
    engine falls back to (``Engine(agent_base_url=..., agent_model=...)``)."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None


class AgentSpec(AgentDefaults):
    """One chat-completions call. ``output_schema`` is a JSON schema, or the name of a
    pydantic model in the namespace."""

    prompt: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    output_schema: dict[str, Any] | str | None = None


class ConditionalSpec(_Spec):
    if_: str = Field(alias="if")
    then: list[str] = Field(default_factory=list)
    else_: list[str] = Field(default_factory=list, alias="else")


class LoopSpec(_Spec):
    while_: str | None = Field(default=None, alias="while")
    for_each: str | None = None
    body: list[str]
    max_iterations: int = Field(default=100, ge=1, le=MAX_ITERATIONS)

    @model_validator(mode="after")
    def _one_driver(self) -> LoopSpec:
        if (self.while_ is None) == (self.for_each is None):
            raise ValueError("a loop needs exactly one of `while` or `for_each`")
        if not self.body:
            raise ValueError("a loop needs a non-empty `body` list of step ids")
        return self


class ApprovalSpec(_Spec):
    prompt: str = "Approve?"
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS)


class WorkflowSpec(_Spec):
    """A sub-workflow, resolved by name among the engine's registered workflows."""

    target: str


StepSpec = (
    CodeSpec
    | SkillSpec
    | HttpSpec
    | AgentSpec
    | ConditionalSpec
    | LoopSpec
    | ApprovalSpec
    | WorkflowSpec
)

#: The step kinds, in the order the docs list them, with the spec model of each.
STEP_KINDS: dict[str, type[_Spec]] = {
    "code": CodeSpec,
    "skill": SkillSpec,
    "http": HttpSpec,
    "agent": AgentSpec,
    "conditional": ConditionalSpec,
    "loop": LoopSpec,
    "approval": ApprovalSpec,
    "workflow": WorkflowSpec,
}
_NAME_KINDS = ("code", "skill", "workflow")


class Retry(BaseModel):
    """Exponential backoff: attempt n+1 waits ``delay * backoff**(n-1)`` (capped)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=1, ge=1, le=100)
    backoff: float = Field(default=2.0, ge=1.0, le=MAX_BACKOFF)
    delay: float = Field(default=1.0, ge=0.0, le=MAX_SECONDS)
    max_delay: float = Field(default=60.0, ge=0.0, le=MAX_SECONDS)

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...)."""
        return min(self.delay * self.backoff ** (attempt - 2), self.max_delay)


class Step(BaseModel):
    """One node of the workflow graph.

    Written in YAML as ``{KIND: SPEC, needs: [...], with: {...}, ...}``; in Python as
    ``Step(id="a", code="fn", needs=["b"])`` (``code=`` also takes the callable
    itself). Exactly one kind key is allowed; ``step.kind`` and ``step.spec`` give it.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    code: CodeSpec | None = None
    skill: SkillSpec | None = None
    http: HttpSpec | None = None
    agent: AgentSpec | None = None
    conditional: ConditionalSpec | None = None
    loop: LoopSpec | None = None
    approval: ApprovalSpec | None = None
    workflow: WorkflowSpec | None = None
    needs: list[str] = Field(default_factory=list)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: float = Field(default=DEFAULT_STEP_TIMEOUT, gt=0, le=MAX_SECONDS)
    retry: Retry = Field(default_factory=Retry)
    if_: str | None = Field(default=None, alias="if")
    #: abstract resources an attempt holds while it runs (``{GPU: 1}``): the Dask
    #: backend passes them to ``client.submit``, so the step only runs on a worker
    #: that declares them; the local backend has no such limits and ignores them.
    resources: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, data: Any) -> Any:
        """Insist on exactly one kind key, and let name kinds be written as a name."""
        if not isinstance(data, Mapping):
            return data
        kinds = [
            key
            for key in STEP_KINDS
            if data.get(key) is not None or key == "approval" and key in data
        ]
        if len(kinds) != 1:
            if kinds:
                raise ValueError(
                    f"a step has exactly one kind, but this one has {', '.join(kinds)}"
                )
            known = {*STEP_KINDS, *cls.model_fields, "with", "if"}
            strangers = [key for key in data if key not in known]
            hint = ""
            if strangers:
                close = did_you_mean(str(strangers[0]), STEP_KINDS)
                hint = f"unknown step kind {strangers[0]!r}{close}; "
            raise ValueError(f"{hint}a step needs exactly one of: {', '.join(STEP_KINDS)}")
        kind = kinds[0]
        raw = data[kind]
        if kind in _NAME_KINDS and not isinstance(raw, (Mapping, BaseModel)):
            return {**data, kind: {"target": raw}}
        if kind == "approval" and raw is None:
            return {**data, kind: {}}
        return data

    @model_validator(mode="after")
    def _not_own_need(self) -> Step:
        if self.id in self.needs:
            raise ValueError(f"step {self.id!r} cannot need itself")
        return self

    @field_validator("resources")
    @classmethod
    def _positive_resources(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if amount <= 0:
                raise ValueError(f"resource {name!r} must be a positive amount, not {amount:g}")
        return value

    @field_validator("needs", mode="before")
    @classmethod
    def _single_need(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    # Cached: read on the engine's hot path, and a step does not change kind.
    @functools.cached_property
    def kind(self) -> str:
        return next(kind for kind in STEP_KINDS if getattr(self, kind) is not None)

    @functools.cached_property
    def spec(self) -> StepSpec:
        return getattr(self, self.kind)  # type: ignore[no-any-return]

    def to_yaml_dict(self) -> dict[str, Any]:
        """The step as it would be written in a cell (callables by qualified name)."""
        out: dict[str, Any] = {}
        spec: Any = self.spec.model_dump(by_alias=True, exclude_defaults=True)
        if self.kind in _NAME_KINDS:
            target = spec["target"]
            spec = target if isinstance(target, str) else callable_name(target)
        out[self.kind] = spec
        rest = self.model_dump(by_alias=True, exclude_defaults=True, exclude={"id", *STEP_KINDS})
        out.update(rest)
        return out


class Workflow(BaseModel):
    """A named DAG of steps plus run settings.

    ``steps`` may be given as a list of `Step` or, as in YAML, a mapping from id to
    step body. The order of steps is kept (it breaks ties in the drawing only).
    """

    # Frozen: a definition is hashed, stored and planned once; it must not drift.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
    description: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, Step]
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    concurrency: int | None = Field(default=None, ge=1)
    schedule: Literal["waves", "eager"] = "waves"
    fail_fast: bool = True
    env: list[str] = Field(default_factory=list)
    #: defaults for the workflow's agent steps (a step's own keys win)
    agent: AgentDefaults | None = None

    _source: str | None = PrivateAttr(default=None)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
    _rendered: str | None = PrivateAttr(default=None)
    _hash: str | None = PrivateAttr(default=None)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_by_id(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for step_id, body in value.items():
                if isinstance(body, Step):
                    out[str(step_id)] = body
                elif isinstance(body, Mapping):
                    out[str(step_id)] = {"id": str(step_id), **body}
                else:
                    raise ValueError(f"step {step_id!r} must be a mapping of step keys")
            return out
        if isinstance(value, (list, tuple)):
            by_id: dict[str, Step] = {}
            for body in value:
                step = body if isinstance(body, Step) else Step.model_validate(body)
                if step.id in by_id:
                    raise ValueError(f"step id {step.id!r} is used twice")
                by_id[step.id] = step
            return by_id
        return value

    @field_validator("steps")
    @classmethod
    def _not_empty(cls, value: dict[str, Step]) -> dict[str, Step]:
        if not value:
            raise ValueError("a workflow needs at least one step")
        return value

    @classmethod
    def from_yaml(cls, text: str, *, name: str, **overrides: Any) -> Workflow:
        """Parse a `%%workflow` body; errors are `DefinitionError`s naming step and line."""
        return _codec().load(text, name=name, **overrides)

    @classmethod
    def from_text(
        cls, data: Mapping[str, Any], *, source: str | None, lines: Mapping[str, int]
    ) -> Workflow:
        """Validate ``data`` read from a text: ``source`` is kept as the definition
        (None when options overrode it, so the model is rendered instead) and
        ``lines`` point errors at the step's line."""
        workflow = cls.model_validate(data)
        workflow._source = source
        workflow._lines = dict(lines)
        return workflow

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """A workflow that declares ``inputs`` takes only those names, so a misspelt
        one is an error instead of a default silently used; a workflow that declares
        none takes any."""
        if not self.inputs:
            return
        for key in inputs:
            if key not in self.inputs:
                raise DefinitionError(
                    f"workflow {self.name!r} has no input {str(key)!r}"
                    f"{did_you_mean(str(key), self.inputs)}; "
                    f"its inputs are: {', '.join(self.inputs)}"
                )

    def line_of(self, step_id: str) -> int | None:
        """The line of the cell that declares ``step_id``, when parsed from YAML."""
        return self._lines.get(step_id)

    def to_yaml(self) -> str:
        """The definition as YAML: the cell text as written, or a rendering of it."""
        if self._source is not None:
            return self._source
        if self._rendered is None:
            self._rendered = _codec().dump(self.to_dict())
        return self._rendered

    def to_dict(self) -> dict[str, Any]:
        """The definition as it would be written in a cell, minus the name."""
        body: dict[str, Any] = self.model_dump(
            by_alias=True, exclude_defaults=True, exclude={"name", "steps"}
        )
        body["steps"] = {sid: step.to_yaml_dict() for sid, step in self.steps.items()}
        return body

    @property
    def definition_hash(self) -> str:
        if self._hash is None:
            text = f"{self.name}\n{self.to_yaml()}"
            self._hash = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._hash


class RunResult(BaseModel):
    """What awaiting a run gives: its status, the outputs of completed steps, the error."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    run_id: str
    workflow: str
    status: RunStatus
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None
    #: step id (``b[2]`` inside a loop) -> the user's frames of the traceback of its
    #: last failed attempt, wfnb's own frames trimmed and secrets masked
    tracebacks: dict[str, str] = Field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.COMPLETED

    def __getitem__(self, step_id: str) -> Any:
        return self.outputs[step_id]


def callable_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return qualname if module in ("", "__main__", "builtins") else f"{module}.{qualname}"


class DefinitionCodec(Protocol):
    """Reads and writes definitions as text (`wfnb.parse` is the one there is)."""

    def load(self, text: str, *, name: str, **overrides: Any) -> Workflow: ...

    def dump(self, body: Mapping[str, Any]) -> str: ...


_CODEC: list[DefinitionCodec] = []


def install_codec(codec: DefinitionCodec) -> None:
    """Make ``codec`` the one `Workflow.from_yaml`/`to_yaml` use."""
    _CODEC[:] = [codec]


def _codec() -> DefinitionCodec:
    if not _CODEC:  # only if wfnb.model were loaded without the package
        raise RuntimeError("import wfnb (or wfnb.parse) to read or write workflow YAML")
    return _CODEC[0]
