"""The planner, with plain asserts (it is pure), plus a property test over random
DAGs that runs them through the engine."""

import asyncio

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wfnb
from wfnb.dag import Progress, build_plan, ready_steps
from wfnb.model import StepStatus as S

from .conftest import arun, wf

DIAMOND = "steps:\n  a: {code: f}\n  b: {code: f, needs: [a]}\n  c: {code: f, needs: [a]}\n  d: {code: f, needs: [b, c]}\n  e: {code: f}\n"


def test_waves_are_topological_generations():
    plan = build_plan(wf(DIAMOND))
    assert plan.waves == (("a", "e"), ("b", "c"), ("d",))


def test_waves_schedule_holds_the_next_wave_until_the_wave_settles():
    progress = Progress(build_plan(wf(DIAMOND)))
    assert progress.ready().start == ["a", "e"]
    progress.mark("a", S.RUNNING)
    progress.mark("e", S.RUNNING)
    progress.mark("a", S.COMPLETED)
    assert progress.ready().start == []  # e still running: wave 0 not done
    progress.mark("e", S.COMPLETED)
    assert progress.ready().start == ["b", "c"]


def test_eager_schedule_starts_a_step_when_its_own_needs_are_done():
    progress = Progress(build_plan(wf("schedule: eager\n" + DIAMOND)))
    progress.mark("a", S.RUNNING)
    progress.mark("e", S.RUNNING)
    progress.mark("a", S.COMPLETED)
    assert progress.ready().start == ["b", "c"]


def test_failed_need_blocks_dependents_but_not_independent_waves():
    text = "steps:\n  a: {code: f}\n  x: {code: f}\n  b: {code: f, needs: [a]}\n  y: {code: f, needs: [x]}\n  z: {code: f, needs: [y]}\n"
    progress = Progress(build_plan(wf(text)))
    for sid, status in (("a", S.FAILED), ("x", S.COMPLETED)):
        progress.mark(sid, S.RUNNING)
        progress.mark(sid, status)
    assert progress.ready().start == ["y"]
    assert progress.blocked == {"b"}
    progress.mark("y", S.RUNNING)
    progress.mark("y", S.COMPLETED)
    assert progress.ready().start == ["z"]


def test_a_step_whose_needs_were_all_skipped_is_skipped():
    text = "steps:\n  c: {conditional: {if: 'true', then: [t], else: [e]}}\n  t: {code: f}\n  e: {code: f}\n  after_e: {code: f, needs: [e]}\n  join: {code: f, needs: [t, e]}\n"
    plan = build_plan(wf(text))
    ready = ready_steps(plan, {"c": S.COMPLETED, "t": S.COMPLETED, "e": S.SKIPPED})
    assert ready.skip == ["after_e"] and ready.start == ["join"]


def test_loop_bodies_leave_the_top_level_graph():
    text = "steps:\n  s: {code: f}\n  l: {loop: {for_each: '[1,2]', body: [b1, b2]}}\n  b1: {code: f, needs: [s]}\n  b2: {code: f, needs: [b1]}\n  after: {code: f, needs: [b2]}\n"
    plan = build_plan(wf(text))
    assert plan.steps == ("s", "l", "after")
    assert plan.needs["l"] == {"s"} and plan.needs["after"] == {"l"}
    assert plan.bodies["l"].waves == (("b1",), ("b2",))


@st.composite
def random_dags(draw):
    size = draw(st.integers(min_value=1, max_value=14))
    needs = {
        f"s{i}": sorted(
            draw(st.sets(st.sampled_from([f"s{j}" for j in range(i)]), max_size=3)) if i else []
        )
        for i in range(size)
    }
    order = draw(st.permutations(list(needs)))  # declaration order must not matter
    schedule = draw(st.sampled_from(["waves", "eager"]))
    return needs, order, schedule


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_dags())
def test_every_step_runs_exactly_once_after_its_needs(dag):
    needs, order, schedule = dag
    events: list[tuple[str, str]] = []

    async def step(name: str) -> str:
        events.append(("start", name))
        await asyncio.sleep(0)
        events.append(("end", name))
        return name

    steps = {sid: {"code": "step", "needs": needs[sid], "with": {"name": sid}} for sid in order}
    workflow = wfnb.Workflow(name="prop", steps=steps, schedule=schedule)
    graph = nx.DiGraph([(n, s) for s, ns in needs.items() for n in ns])
    graph.add_nodes_from(needs)
    generations = [set(g) for g in nx.topological_generations(graph)]
    assert [set(w) for w in build_plan(workflow).waves] == generations

    result = arun(_run(workflow, {"step": step}))
    assert result.status is wfnb.RunStatus.COMPLETED
    starts = [name for kind, name in events if kind == "start"]
    assert sorted(starts) == sorted(needs)  # exactly once each
    position = {(kind, name): i for i, (kind, name) in enumerate(events)}
    for sid, ns in needs.items():
        for need in ns:
            assert position[("end", need)] < position[("start", sid)]
    if schedule == "waves":
        for earlier, later in zip(generations, generations[1:], strict=False):
            last_end = max(position[("end", s)] for s in earlier)
            assert all(position[("start", s)] > last_end for s in later)


async def _run(workflow, namespace):
    engine = wfnb.Engine(namespace=namespace)
    return await (await engine.start(workflow))


def test_a_definition_is_planned_once_and_its_run_reuses_the_plan():
    """A cell's parse plans the workflow; the run it starts (any engine) must not
    plan it again: the plan is made once a definition."""
    text = "steps:\n  a: {code: noop}\n  b: {code: noop, needs: [a]}\n"
    parsed = wf(text, name="planned_once")
    again = wf(text, name="planned_once")  # another object, the same definition
    assert parsed is not again
    assert build_plan(again) is build_plan(parsed)
    engine = wfnb.Engine(namespace={"noop": lambda: None})
    assert engine.plan(again) is build_plan(parsed)
    other = wf(text.replace("[a]", "[]"), name="planned_once")
    assert build_plan(other) is not build_plan(parsed)
    assert build_plan(other).needs["b"] == frozenset()


def test_a_definition_that_fails_planning_fails_every_time():
    """Only plans are kept: checking a bad definition again reports it again."""
    bad = wfnb.Workflow(
        name="cyclic",
        steps={"a": {"code": "x", "needs": ["b"]}, "b": {"code": "x", "needs": ["a"]}},
    )
    for _ in range(2):
        with pytest.raises(wfnb.CycleError):
            build_plan(bad)
