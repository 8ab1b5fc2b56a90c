"""The planner: from a `Workflow` to a `Plan`, and which steps may start next.

Pure: nothing here awaits or touches disk, so every rule is testable with plain
asserts. The engine asks `Progress` what to start after each status change; the
bookkeeping is incremental (O(1) amortised per change), because a planner that
rescans every step after every completion would cost more than the steps.

Implicit edges the user does not write:
- the steps listed in a conditional's ``then``/``else`` need the conditional;
- the steps of a loop's ``body`` leave the top-level graph and form the loop's own
  sub-plan; whatever they need from outside, the loop needs; a step that needs a
  body step needs the loop instead (and sees the last iteration's output).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wfnb import template
from wfnb.errors import CycleError, DefinitionError, UnknownStepError, did_you_mean
from wfnb.model import ConditionalSpec, LoopSpec, Step, StepStatus, Workflow

SATISFIED = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})
TERMINAL = frozenset(
    {StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.FAILED, StepStatus.CANCELLED}
)


@dataclass(frozen=True)
class Plan:
    """The steps of one scope (the workflow, or one loop's body), ready to schedule."""

    steps: tuple[str, ...]  # topological order
    needs: Mapping[str, frozenset[str]]
    dependents: Mapping[str, tuple[str, ...]]
    waves: tuple[tuple[str, ...], ...]
    wave_of: Mapping[str, int]
    schedule: str
    #: loop id -> the plan of its body
    bodies: Mapping[str, Plan] = field(default_factory=dict)
    #: conditional id -> (then ids, else ids)
    branches: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)

    def downstream(self, step_id: str) -> set[str]:
        """Every step that needs ``step_id``, directly or through others."""
        found: set[str] = set()
        stack = list(self.dependents[step_id])
        while stack:
            sid = stack.pop()
            if sid not in found:
                found.add(sid)
                stack.extend(self.dependents[sid])
        return found


#: plans of definitions checked already, by (name, definition hash), the newest
#: last; at most `_PLANS_KEPT` of them (a plan of 10,000 steps is megabytes)
_plans: dict[tuple[str, str], Plan] = {}
_plans_lock = threading.Lock()
_PLANS_KEPT = 16


def build_plan(workflow: Workflow) -> Plan:
    """Check the workflow's graph and plan it; raises `DefinitionError`s that name
    the step and its line.

    A plan is pure data of the definition (its name and text: the definition hash),
    so one made is kept for the next workflow with the same definition: a notebook
    cell's parse checks and plans it, and the run it starts, in any engine, plans
    nothing more (planning costs 5–7 µs a step, measured for fan-outs and chains of
    200 and 10,000 steps). Only plans are kept: a definition that fails is checked
    again, and says so again."""
    key = (workflow.name, workflow.definition_hash)
    plan = _plans.get(key)
    if plan is None:
        plan = _build_plan(workflow)
        with _plans_lock:
            _plans[key] = plan
            while len(_plans) > _PLANS_KEPT:
                del _plans[next(iter(_plans))]
    return plan


def _build_plan(workflow: Workflow) -> Plan:
    loop_of, branch_of = _containers(workflow)
    _check_loops_nest(workflow, loop_of)
    needs = _effective_needs(workflow, loop_of, branch_of)
    _check_references(workflow, needs, loop_of.get)
    return _plan_scope(workflow, None, needs, loop_of.get)


def _unknown(workflow: Workflow, step_id: str, ref: str, where: str) -> UnknownStepError:
    return UnknownStepError(
        f"{where} names step {ref!r}, which does not exist{did_you_mean(ref, workflow.steps)}",
        step_id=step_id,
        line=workflow.line_of(step_id),
    )


def _containers(workflow: Workflow) -> tuple[dict[str, str], dict[str, str]]:
    """Every step a loop body or a conditional branch holds -> that loop, that
    conditional; checks that every step named exists and has one container."""
    steps = workflow.steps
    loop_of: dict[str, str] = {}
    branch_of: dict[str, str] = {}
    for step_id, step in steps.items():
        for need in step.needs:
            if need not in steps:
                raise _unknown(workflow, step_id, need, "`needs`")
        if isinstance(step.spec, LoopSpec):
            for body_id in step.spec.body:
                if body_id not in steps:
                    raise _unknown(workflow, step_id, body_id, "the loop `body`")
                if body_id == step_id or body_id in loop_of:
                    owner = step_id if body_id == step_id else loop_of[body_id]
                    raise DefinitionError(
                        f"step {body_id!r} is already the body of loop {owner!r}",
                        step_id=step_id,
                        line=workflow.line_of(step_id),
                    )
                loop_of[body_id] = step_id
        if isinstance(step.spec, ConditionalSpec):
            for target in (*step.spec.then, *step.spec.else_):
                if target not in steps:
                    raise _unknown(workflow, step_id, target, "the conditional branch")
                if target == step_id or target in branch_of:
                    raise DefinitionError(
                        f"step {target!r} is in more than one conditional branch",
                        step_id=step_id,
                        line=workflow.line_of(step_id),
                    )
                branch_of[target] = step_id
    return loop_of, branch_of


def _check_loops_nest(workflow: Workflow, loop_of: Mapping[str, str]) -> None:
    """Loops may nest, never contain each other."""
    for body_id in loop_of:
        seen = {body_id}
        scope: str | None = loop_of[body_id]
        while scope is not None:
            if scope in seen:
                raise DefinitionError(
                    f"loops {sorted(seen)} contain each other",
                    step_id=scope,
                    line=workflow.line_of(scope),
                )
            seen.add(scope)
            scope = loop_of.get(scope)


def _effective_needs(
    workflow: Workflow, loop_of: Mapping[str, str], branch_of: Mapping[str, str]
) -> dict[str, set[str]]:
    """Each step's needs within its own scope: a need that lives outside a step's
    loop becomes a need of the enclosing loop at the level where both meet, and a
    branch step needs its conditional."""
    line = workflow.line_of
    scope_of = loop_of.get

    def lift(ref: str, scope: str | None) -> str | None:
        """The member of ``scope`` that is ``ref`` or encloses it; None if ref is outside."""
        current: str | None = ref
        while current is not None and scope_of(current) != scope:
            current = scope_of(current)
        return current

    needs: dict[str, set[str]] = {step_id: set() for step_id in workflow.steps}
    for step_id, step in workflow.steps.items():
        scope = scope_of(step_id)
        for need in step.needs:
            if _encloses(need, step_id, loop_of):
                raise DefinitionError(
                    f"step {step_id!r} runs inside loop {need!r} and cannot need it",
                    step_id=step_id,
                    line=line(step_id),
                )
            child: str = step_id
            level: str | None = scope
            member = lift(need, level)
            while member is None and level is not None:
                child, level = level, scope_of(level)
                member = lift(need, level)
            assert member is not None  # every chain of loops ends at the top level
            if member == child:
                raise DefinitionError(
                    f"loop {step_id!r} cannot need {need!r}, a step of its own body",
                    step_id=step_id,
                    line=line(step_id),
                )
            needs[child].add(member)
        if step_id in branch_of:
            conditional = branch_of[step_id]
            if scope_of(conditional) != scope:
                raise DefinitionError(
                    f"step {step_id!r} is a branch of {conditional!r} but runs in another loop",
                    step_id=step_id,
                    line=line(step_id),
                )
            needs[step_id].add(conditional)
    return needs


def _encloses(loop_id: str, step_id: str, loop_of: Mapping[str, str]) -> bool:
    scope = loop_of.get(step_id)
    while scope is not None:
        if scope == loop_id:
            return True
        scope = loop_of.get(scope)
    return False


def _plan_scope(
    workflow: Workflow,
    scope: str | None,
    needs: Mapping[str, set[str]],
    scope_of: Callable[[str], str | None],
) -> Plan:
    members = [sid for sid in workflow.steps if scope_of(sid) == scope]
    generations = _generations(members, needs)
    if generations is None:
        # (networkx only here, on the error path: importing it costs ~14 MB and 1 s)
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_edges_from((need, sid) for sid in members for need in needs[sid])
        cycle = [edge[0] for edge in nx.find_cycle(graph)]
        raise CycleError(cycle, line=workflow.line_of(cycle[0]))
    order = tuple(sid for gen in generations for sid in gen)
    dependents: dict[str, list[str]] = {sid: [] for sid in members}
    for sid in order:
        for need in needs[sid]:
            dependents[need].append(sid)
    bodies = {
        sid: _plan_scope(workflow, sid, needs, scope_of)
        for sid in members
        if isinstance(workflow.steps[sid].spec, LoopSpec)
    }
    branches = {
        sid: (frozenset(spec.then), frozenset(spec.else_))
        for sid in members
        if isinstance(spec := workflow.steps[sid].spec, ConditionalSpec)
    }
    return Plan(
        steps=order,
        needs={sid: frozenset(needs[sid]) for sid in members},
        dependents={sid: tuple(deps) for sid, deps in dependents.items()},
        waves=tuple(tuple(gen) for gen in generations),
        wave_of={sid: index for index, gen in enumerate(generations) for sid in gen},
        schedule=workflow.schedule,
        bodies=bodies,
        branches=branches,
    )


def _generations(members: list[str], needs: Mapping[str, set[str]]) -> list[list[str]] | None:
    """The members grouped by depth (Kahn's algorithm), each group in the order the
    steps were written; None when they form a cycle. Linear in steps plus edges:
    a 10,000-step workflow is planned in milliseconds."""
    position = {sid: index for index, sid in enumerate(members)}
    missing = {sid: len(needs[sid]) for sid in members}
    unlocks: dict[str, list[str]] = {sid: [] for sid in members}
    for sid in members:
        for need in needs[sid]:
            unlocks[need].append(sid)
    generation = [sid for sid in members if not missing[sid]]
    generations: list[list[str]] = []
    placed = 0
    while generation:
        generations.append(generation)
        placed += len(generation)
        following = []
        for sid in generation:
            for dependent in unlocks[sid]:
                missing[dependent] -= 1
                if not missing[dependent]:
                    following.append(dependent)
        generation = sorted(following, key=position.__getitem__)
    return generations if placed == len(members) else None


def _check_references(
    workflow: Workflow, needs: Mapping[str, set[str]], scope_of: Callable[[str], str | None]
) -> None:
    """A template may only read ``steps.X`` where X exists and, for top-level steps,
    X is upstream: reading a step that may not have run yet is a race, not a feature."""
    for step_id, step in workflow.steps.items():
        found = _references(step)
        refs = found.steps
        for ref in refs:
            if ref not in workflow.steps:
                raise UnknownStepError(
                    f"a template reads steps.{ref}, which does not exist"
                    + did_you_mean(ref, workflow.steps),
                    step_id=step_id,
                    line=workflow.line_of(step_id),
                )
        for ref, attribute in found.step_fields:
            if attribute not in template.STEP_FIELDS:
                raise DefinitionError(
                    f"a template reads steps.{ref}.{attribute}, but a step has only "
                    f"{' and '.join(template.STEP_FIELDS)}"
                    + did_you_mean(attribute, template.STEP_FIELDS),
                    step_id=step_id,
                    line=workflow.line_of(step_id),
                )
        if workflow.inputs:  # declared inputs are the only ones a run can have
            for name in sorted(found.inputs - set(workflow.inputs)):
                raise DefinitionError(
                    f"a template reads inputs.{name}, which the workflow does not declare"
                    f"{did_you_mean(name, workflow.inputs)} (its inputs: "
                    f"{', '.join(workflow.inputs)})",
                    step_id=step_id,
                    line=workflow.line_of(step_id),
                )
        if not refs:
            continue  # (most steps: no upstream walk, so planning stays linear)
        # Upstream of a step in a loop body: what it needs in its iteration, and
        # what its loop (and every loop around that) needs.
        chain: list[str] = []
        upstream: set[str] = set()
        current: str | None = step_id
        while current is not None:
            chain.append(current)
            upstream |= _ancestors(current, needs)
            current = scope_of(current)
        scopes = {scope_of(member) for member in chain}
        for ref in sorted(refs):
            # ref, or the loop around it that sits in one of this step's scopes
            enclosing = ref
            while scope_of(enclosing) not in scopes:
                enclosing = scope_of(enclosing)  # type: ignore[assignment]
            if enclosing in upstream or enclosing == step_id and ref != step_id:
                continue  # (a loop's `while` reads its own body's last iteration)
            raise DefinitionError(
                f"a template reads steps.{ref} but {step_id!r} does not need "
                f"{enclosing!r}: add it to `needs`",
                step_id=step_id,
                line=workflow.line_of(step_id),
            )


def _references(step: Step) -> template.References:
    """What every template of ``step`` reads (EXPR fields: bare expressions count)."""
    found = template.References()
    parts: list[tuple[Any, bool]] = []
    if step.with_:
        parts.append((step.with_, False))
    if len(type(step.spec).model_fields) > 1:  # more than a `target` (a name)
        parts.append((step.spec.model_dump(by_alias=True, exclude={"target"}), False))
    if step.if_ is not None:
        parts.append((step.if_, True))
    if isinstance(step.spec, ConditionalSpec):
        parts.append((step.spec.if_, True))
    if isinstance(step.spec, LoopSpec):
        loop_expression = step.spec.while_ if step.spec.while_ is not None else step.spec.for_each
        parts.append((loop_expression, True))
    for value, expression in parts:
        more = template.references(value, expression=expression)
        found.steps |= more.steps
        found.step_fields |= more.step_fields
        found.inputs |= more.inputs
    return found


def _ancestors(step_id: str, needs: Mapping[str, set[str]]) -> set[str]:
    found: set[str] = set()
    stack = list(needs[step_id])
    while stack:
        sid = stack.pop()
        if sid not in found:
            found.add(sid)
            stack.extend(needs[sid])
    return found


@dataclass(frozen=True)
class Ready:
    start: list[str]
    skip: list[str]


class Progress:
    """Which steps of a plan may start, kept up to date one status change at a time.

    A step is *ready* when every need is completed or skipped and, under
    ``schedule: waves``, every earlier wave has settled. A ready step whose needs
    were all skipped is to be skipped too (it only depended on a branch not taken).
    A step with a failed or cancelled need is *blocked*: it stays pending and never
    becomes ready, and a wave counts it as settled so independent branches go on.
    """

    def __init__(self, plan: Plan, statuses: Mapping[str, StepStatus] | None = None) -> None:
        self.plan = plan
        self.status: dict[str, StepStatus] = dict.fromkeys(plan.steps, StepStatus.PENDING)
        self._missing = {sid: len(plan.needs[sid]) for sid in plan.steps}
        #: how many of a step's needs were skipped: all of them -> skip it too
        self._skipped = dict.fromkeys(plan.steps, 0)
        self._blocked: set[str] = set()
        self._ready: dict[str, None] = {}
        self._waves = plan.schedule == "waves"
        self._wave = 0
        self._wave_left = [len(wave) for wave in plan.waves]
        for sid in plan.steps:
            if self._missing[sid] == 0 and self._wave_open(sid):
                self._ready[sid] = None
        for sid in plan.steps:
            status = (statuses or {}).get(sid, StepStatus.PENDING)
            if status is not StepStatus.PENDING and sid not in self._blocked:
                self.mark(sid, status)

    def _wave_open(self, sid: str) -> bool:
        return not self._waves or self.plan.wave_of[sid] <= self._wave

    def ready(self) -> Ready:
        start: list[str] = []
        skip: list[str] = []
        needs, skipped = self.plan.needs, self._skipped
        for sid in self._ready:
            count = skipped[sid]
            if count and count == len(needs[sid]):
                skip.append(sid)
            else:
                start.append(sid)
        return Ready(start, skip)

    def mark(self, sid: str, status: StepStatus) -> None:
        previous = self.status[sid]
        if previous in TERMINAL:
            raise ValueError(f"step {sid!r} is already {previous.value}")
        self.status[sid] = status
        self._ready.pop(sid, None)
        if status in SATISFIED:
            self._settle(sid)
            skipped = status is StepStatus.SKIPPED
            # (locals, and `_wave_open` inline: this runs for every need of every step)
            missing, statuses, blocked = self._missing, self.status, self._blocked
            wave_of, wave = (self.plan.wave_of, self._wave) if self._waves else (None, 0)
            for dependent in self.plan.dependents[sid]:
                left = missing[dependent] = missing[dependent] - 1
                if skipped:
                    self._skipped[dependent] += 1
                if (
                    left == 0
                    and statuses[dependent] is StepStatus.PENDING
                    and dependent not in blocked
                    and (wave_of is None or wave_of[dependent] <= wave)
                ):
                    self._ready[dependent] = None
        elif status in TERMINAL:
            self._settle(sid)
            self._block_dependents(sid)

    def _block_dependents(self, sid: str) -> None:
        stack = list(self.plan.dependents[sid])
        while stack:
            dependent = stack.pop()
            if dependent in self._blocked or self.status[dependent] is not StepStatus.PENDING:
                continue
            self._blocked.add(dependent)
            self._ready.pop(dependent, None)
            self._settle(dependent)
            stack.extend(self.plan.dependents[dependent])

    def _settle(self, sid: str) -> None:
        wave = self.plan.wave_of[sid]
        self._wave_left[wave] -= 1
        if not self._waves:
            return
        while self._wave < len(self._wave_left) and self._wave_left[self._wave] == 0:
            self._wave += 1
            if self._wave < len(self.plan.waves):
                for candidate in self.plan.waves[self._wave]:
                    if (
                        self._missing[candidate] == 0
                        and self.status[candidate] is StepStatus.PENDING
                        and candidate not in self._blocked
                    ):
                        self._ready[candidate] = None

    @property
    def blocked(self) -> frozenset[str]:
        return frozenset(self._blocked)


def ready_steps(plan: Plan, statuses: Mapping[str, StepStatus]) -> Ready:
    """What may start given a snapshot of statuses (one-shot form of `Progress`)."""
    return Progress(plan, statuses).ready()
