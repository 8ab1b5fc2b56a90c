"""Definitions and the registry: the workflows an engine knows, their plans, the
callables their steps name, and the definition a stored run started with."""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from wfnb.backends.base import Backend
from wfnb.dag import build_plan
from wfnb.errors import DefinitionError, NotResumable, UnknownCallableError, did_you_mean
from wfnb.model import (
    AgentDefaults,
    AgentSpec,
    CodeSpec,
    SkillSpec,
    Workflow,
    WorkflowSpec,
    callable_name,
)
from wfnb.parse import parse_workflow
from wfnb.steps.code import fingerprint
from wfnb.steps.skill import find_skill
from wfnb.store.base import RunRecord, Store, WorkflowRecord

log = logging.getLogger("wfnb")


class Definitions:
    """``namespace`` is where ``code:`` names are looked up (read when a run
    starts, not copied)."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.workflows: dict[str, Workflow] = {}
        #: a definition -> the steps `check_runnable` looks at (`steps_to_check`)
        self._to_check: dict[tuple[str, str], list[str]] = {}
        self._saved: set[tuple[str, str]] = set()

    def register(self, workflow: Workflow) -> Workflow:
        build_plan(workflow)  # checks the graph; the plan is kept for its runs
        self.workflows[workflow.name] = workflow
        return workflow

    def unsaved(self, workflow: Workflow) -> tuple[WorkflowRecord, ...]:
        """The record of ``workflow``'s definition unless this engine stored it
        already; `saved` marks it stored once the write went through."""
        if (workflow.name, workflow.definition_hash) in self._saved:
            return ()
        return (
            WorkflowRecord(
                workflow.name, workflow.to_yaml(), workflow.definition_hash, time.time()
            ),
        )

    def saved(self, workflow: Workflow) -> None:
        self._saved.add((workflow.name, workflow.definition_hash))

    def resolve_code(
        self, target: str | Callable[..., Any], *, step_id: str | None = None
    ) -> Callable[..., Any]:
        if callable(target):
            return target
        head, _, rest = target.partition(".")
        found: Any
        if head in self.namespace:
            found = self.namespace[head]
            for part in rest.split(".") if rest else ():
                found = getattr(found, part, None)
        elif rest:
            module, _, attr = target.rpartition(".")
            try:
                found = getattr(importlib.import_module(module), attr, None)
            except ImportError:
                found = None
        else:
            found = None
        if found is None:
            hint = did_you_mean(target, [k for k, v in self.namespace.items() if callable(v)])
            raise UnknownCallableError(
                f"no callable named {target!r} in the namespace{hint}", step_id=step_id
            )
        if not callable(found):
            raise UnknownCallableError(
                f"{target!r} is a {type(found).__name__}, not a callable", step_id=step_id
            )
        return found  # type: ignore[no-any-return]

    def check_runnable(
        self, workflow: Workflow, backend: Backend, agent: AgentDefaults | None = None
    ) -> None:
        """``backend`` must be able to run the code and skill callables; ``agent`` is
        where agent steps go when neither they nor the workflow say."""
        checked: dict[str, Callable[..., Any]] = {}  # 10,000 steps often share a few
        bound: set[tuple[Any, tuple[str, ...]]] = set()
        steps = workflow.steps
        for step_id in self.steps_to_check(workflow):
            step = steps[step_id]
            spec = step.spec
            try:
                fn: Callable[..., Any] | None = None
                if isinstance(spec, CodeSpec):
                    target = spec.target
                    if not isinstance(target, str) or target not in checked:
                        fn = self.resolve_code(target, step_id=step_id)
                        backend.check(fn, step_id=step_id)
                        if isinstance(target, str):
                            checked[target] = fn
                    else:
                        fn = checked[target]
                elif isinstance(spec, SkillSpec):
                    found = find_skill(spec.target)
                    if found is None:
                        raise UnknownCallableError(
                            f"no skill registered as {spec.target!r} "
                            "(decorate it with @wfnb.skill)",
                            step_id=step_id,
                        )
                    backend.check(found.fn, step_id=step_id)
                    fn = found.fn
                elif isinstance(spec, AgentSpec):
                    from wfnb.steps.agent import check_endpoint  # httpx only when used

                    check_endpoint(spec, [d for d in (workflow.agent, agent) if d])
                elif isinstance(spec, WorkflowSpec) and spec.target not in self.workflows:
                    raise DefinitionError(
                        f"no workflow named {spec.target!r} is registered "
                        f"(known: {', '.join(sorted(self.workflows)) or 'none'})",
                        step_id=step_id,
                    )
                if fn is not None:  # a code or skill step: can it take its `with` keys?
                    keys = tuple(sorted(step.with_))
                    if (id(fn), keys) not in bound:
                        check_signature(fn, keys)
                        bound.add((id(fn), keys))
            except DefinitionError as exc:
                # (the line only now: a pydantic private attribute costs a
                # microsecond a read, too much for every step of every start)
                line = workflow.line_of(step_id)
                raise type(exc)(exc.reason, step_id=step_id, line=line) from None

    def steps_to_check(self, workflow: Workflow) -> list[str]:
        """The steps `check_runnable` looks at, in order: all but the code and skill
        steps that name a callable, and pass `with` keys, that an earlier step named
        and passed already (they pass or fail with it). Worked out once a definition,
        so a start costs the callables a workflow names, not its steps (at 200 steps
        of one callable, ≈ 3 % of a no-op step's engine CPU). Only names count: two
        definitions with one hash may give different callable objects."""
        key = (workflow.name, workflow.definition_hash)
        ids = self._to_check.get(key)
        if ids is None:
            ids, seen = [], set()
            for step_id, step in workflow.steps.items():
                spec = step.spec
                if isinstance(spec, (CodeSpec, SkillSpec)) and isinstance(spec.target, str):
                    mark = (type(spec), spec.target, tuple(sorted(step.with_)))
                    if mark in seen:
                        continue
                    seen.add(mark)
                ids.append(step_id)
            self._to_check[key] = ids
        return ids

    def code_hashes(self, workflow: Workflow) -> dict[str, str]:
        hashes = {}
        by_name: dict[str, str] = {}
        for step_id, step in workflow.steps.items():
            if isinstance(step.spec, CodeSpec):
                target = step.spec.target
                if not isinstance(target, str):
                    hashes[step_id] = fingerprint(target)
                    continue
                if target not in by_name:
                    by_name[target] = fingerprint(self.resolve_code(target))
                hashes[step_id] = by_name[target]
            elif isinstance(step.spec, SkillSpec) and (found := find_skill(step.spec.target)):
                hashes[step_id] = fingerprint(found.fn)
        return hashes

    async def of_run(self, store: Store, record: RunRecord) -> Workflow:
        """The definition ``record``'s run started with, even if the cell was edited
        since: the registered one if it is the same, else the stored text."""
        registered = self.workflows.get(record.workflow)
        if registered is not None and registered.definition_hash == record.definition_hash:
            return registered
        stored = await store.get_workflow(
            name=record.workflow, definition_hash=record.definition_hash
        )
        if stored is None:
            if registered is not None:
                log.warning(
                    "run %s: its definition is not stored; using the current one", record.run_id
                )
                return registered
            raise NotResumable(
                f"the definition of workflow {record.workflow!r} used by run {record.run_id} "
                "is not in the store",
                run_id=record.run_id,
            )
        # The stored text is what the run hashed (the cell as written, or the
        # model's rendering), so the parsed definition keeps the run's hash.
        return parse_workflow(stored.definition, name=record.workflow)


def check_signature(fn: Callable[..., Any], keys: tuple[str, ...]) -> None:
    """``fn`` must take the step's ``with`` keys as keyword arguments (and ``ctx``,
    which the engine passes), so a wrong signature fails before the run starts
    instead of as a TypeError in every attempt."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: let it run
        return
    given = dict.fromkeys(keys)
    if "ctx" in signature.parameters:
        given["ctx"] = None
    try:
        signature.bind(**given)
    except TypeError as exc:
        raise DefinitionError(
            f"{callable_name(fn)}{signature} cannot be called with `with` keys "
            f"[{', '.join(keys)}]: {exc}"
        ) from None
