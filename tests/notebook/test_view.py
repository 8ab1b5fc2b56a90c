"""The renderer and the throttle, without a kernel: colours, shapes, fallbacks and
the bound on redraws that keeps the view from slowing a run."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import wfnb
from wfnb.dag import build_plan
from wfnb.events import Event, EventKind
from wfnb.model import RunStatus, StepStatus
from wfnb.notebook import palette, view
from wfnb.notebook.state import RunState

from ..conftest import arun, wf


def state_of(text: str, **statuses: StepStatus) -> RunState:
    workflow = wf(text)
    state = RunState(run_id="r1", workflow=workflow.name, plan=build_plan(workflow))
    for sid, status in statuses.items():
        state.steps[sid].status = status
    return state


ALL = """
steps:
  a: {code: work}
  b: {code: work, needs: [a]}
  c: {code: work, needs: [a]}
  d: {code: work, needs: [b, c]}
  e: {code: work, needs: [d]}
  f: {code: work, needs: [e]}
  g: {code: work, needs: [f]}
"""


def node_line(source: str, sid: str) -> str:
    return next(line for line in source.splitlines() if line.strip().startswith(f"s_{sid} ["))


def test_each_status_has_its_own_colour_in_the_dot_source():
    statuses = dict(zip("abcdefg", StepStatus, strict=True))
    source = view.dot_source(state_of(ALL, **statuses))
    for sid, status in statuses.items():
        assert f'fillcolor="{palette.STATUS_COLORS[status]}"' in node_line(source, sid), status
    assert len(set(palette.STATUS_COLORS.values())) == len(StepStatus)


def test_waves_are_ranks_left_to_right():
    source = view.dot_source(state_of(ALL))
    assert "rankdir=LR" in source
    ranks = re.findall(r"subgraph (wave_\w+) \{\s*rank=same((?:\s*s_\w+ \[[^\]]*\])*)", source)
    members = [re.findall(r"s_(\w+) \[", body) for _name, body in ranks]
    assert members[:3] == [["a"], ["b", "c"], ["d"]]


def test_tooltips_carry_durations_attempts_and_errors():
    state = state_of(ALL, a=StepStatus.COMPLETED, b=StepStatus.FAILED)
    state.steps["a"].started, state.steps["a"].ended = 10.0, 11.5
    state.steps["b"].attempt, state.steps["b"].error = 3, "ValueError: boom"
    source = view.dot_source(state)
    assert "a: completed · 1.5 s" in node_line(source, "a")
    assert "attempt 3" in node_line(source, "b")
    assert "error: ValueError: boom" in node_line(source, "b")


def test_tooltips_say_which_worker_ran_the_step():
    state = state_of(ALL)
    state.apply(Event(EventKind.STEP_STARTED, "r1", "wf", "a", 1))
    worker = {"worker": "tcp://10.0.0.7:40123"}
    state.apply(Event(EventKind.STEP_COMPLETED, "r1", "wf", "a", 1, None, worker))
    assert "on tcp://10.0.0.7:40123" in node_line(view.dot_source(state), "a")
    assert " on " not in node_line(view.dot_source(state), "b")  # not run anywhere yet


def test_loop_bodies_are_clusters_with_iteration_counts():
    text = """
steps:
  a: {code: work}
  l: {loop: {for_each: "[1, 2, 3]", body: [x, y]}, needs: [a]}
  x: {code: work}
  y: {code: work, needs: [x]}
"""
    state = state_of(text)
    for i in range(3):
        state.apply(Event(EventKind.STEP_STARTED, "r1", "wf", f"x[{i}]", 1))
    source = view.dot_source(state)
    cluster = source[source.index("subgraph cluster_l") :]
    assert "s_x [" in cluster and "s_y [" in cluster and "s_x -> s_y" in cluster
    assert 'label="x ×3"' in node_line(source, "x")


def test_svg_is_embeddable_and_coloured():
    assert view.has_dot(), "Graphviz's dot is a test dependency (apt-get install graphviz)"
    svg = view.svg_from_dot(view.dot_source(state_of(ALL, a=StepStatus.FAILED)))
    assert svg.startswith("<svg") and "<?xml" not in svg
    assert palette.STATUS_COLORS[StepStatus.FAILED] in svg


def test_a_large_dag_collapses_waves_but_keeps_failing_steps():
    steps = {"root": {"code": "work"}}
    steps.update({f"s{i}": {"code": "work", "needs": ["root"]} for i in range(400)})
    workflow = wfnb.Workflow(name="big", steps=steps)
    state = RunState(run_id="r", workflow="big", plan=build_plan(workflow))
    state.steps["s7"].status = StepStatus.FAILED
    source = view.dot_source(state)
    assert source.count("[label=") < 10
    assert "s_s7 [" in source and "399 steps" in source
    edges = [line for line in source.splitlines() if "->" in line]
    assert edges and not any(":" in line for line in edges), "a ':' in a node id is a DOT port"
    assert view.svg_from_dot(source).startswith("<svg")  # collapsed: a small graph to lay out


def test_without_dot_the_view_is_a_table_and_says_once_how_to_install(monkeypatch):
    monkeypatch.setattr(view, "has_dot", lambda: False)
    monkeypatch.setattr(view, "_hint_shown", False)
    state = state_of(ALL, a=StepStatus.FAILED)
    first, second = view.picture_html(state), view.picture_html(state)
    assert "install graphviz" in first.lower() and "<table" in first
    assert "install graphviz" not in second.lower() and "<table" in second
    assert palette.STATUS_COLORS[StepStatus.FAILED] in second


def test_state_follows_events_and_ignores_other_runs():
    state = state_of(ALL)
    assert not state.apply(Event(EventKind.STEP_STARTED, "other", "wf", "a", 1))
    state.apply(Event(EventKind.RUN_STARTED, "r1", "wf"))
    state.apply(Event(EventKind.STEP_STARTED, "r1", "wf", "a", 1, at=1.0))
    state.apply(Event(EventKind.STEP_COMPLETED, "r1", "wf", "a", 1, at=3.0))
    state.apply(Event(EventKind.STEP_WAITING, "r1", "wf", "b", 1, data={"prompt": "ok?"}))
    assert state.status is RunStatus.RUNNING
    assert state.steps["a"].duration == 2.0 and state.done == 1 and state.total == 7
    assert state.waiting == {"b": "ok?"}
    state.apply(Event(EventKind.STEP_COMPLETED, "r1", "wf", "b", 1))
    assert state.waiting == {}


async def _throttled(changes: int, interval: float, spread: float) -> tuple[int, float, list[int]]:
    loop = asyncio.get_running_loop()
    counter = {"n": 0}
    delivered: list[int] = []
    threads: set[str] = set()

    def render(n: int) -> int:
        threads.add(threading.current_thread().name)
        time.sleep(0.01)  # like a small `dot`
        return n

    throttle = view.Throttle(
        loop, lambda: counter["n"], render, delivered.append, interval=interval
    )
    start = time.monotonic()
    for _ in range(changes):
        counter["n"] += 1
        throttle.poke()
        await asyncio.sleep(spread / changes)
    elapsed = time.monotonic() - start
    await throttle.flush()
    assert threads == {"wfnb-render_0"}, "renders must run off the loop"
    return throttle.redraws, elapsed, delivered


def test_500_rapid_changes_cost_a_bounded_number_of_redraws():
    redraws, elapsed, delivered = arun(_throttled(500, interval=0.05, spread=0.5))
    # At most one redraw per interval of the time the changes took (a loaded
    # machine stretches that time, and the bound with it), never one per change.
    assert redraws <= elapsed / 0.05 + 3
    assert redraws < 500 / 5
    assert delivered[-1] == 500, "the last picture shows the last state"


def test_a_burst_within_one_interval_is_one_or_two_redraws():
    redraws, _elapsed, delivered = arun(_throttled(500, interval=10.0, spread=0.0))
    assert redraws <= 2 and delivered[-1] == 500


def test_a_snapshot_copies_only_the_steps_changed_since_the_last():
    state = state_of("steps:\n  a: {code: work}\n  b: {code: work, needs: [a]}\n")
    first = state.copy()
    state.apply(Event(EventKind.STEP_STARTED, "r1", "wf", "a", 1, at=1.0))
    second = state.copy()
    assert second.steps["b"] is first.steps["b"], "an unchanged step is shared"
    assert second.steps["a"] is not first.steps["a"]
    assert second.steps["a"].status is StepStatus.RUNNING
    assert first.steps["a"].status is StepStatus.PENDING, "an earlier snapshot never changes"
    assert second.steps["a"] is not state.steps["a"], "the live state is never shared"


def test_the_same_dot_source_runs_dot_once(monkeypatch):
    """A view's last redraw and its final picture draw the same state."""
    import graphviz

    calls: list[bytes] = []

    def pipe(_engine: str, _format: str, data: bytes, quiet: bool = False) -> bytes:
        calls.append(data)
        return b'<?xml version="1.0"?>\n<svg>drawn</svg>'

    monkeypatch.setattr(graphviz, "pipe", pipe)
    source = view.dot_source(state_of(ALL, a=StepStatus.FAILED)) + "// this test's own\n"
    assert view.svg_from_dot(source) == view.svg_from_dot(source) == "<svg>drawn</svg>"
    assert len(calls) == 1
    view.svg_from_dot(source + "// changed\n")
    assert len(calls) == 2


def test_a_flush_cancels_the_redraw_a_landing_render_schedules():
    """A change that came while the last render was in flight schedules a redraw
    when that render lands; a flush meanwhile ends the view, so that redraw must
    not run (it ran ``dot`` once more, for nothing)."""

    async def go() -> int:
        produced: list[str] = []
        gate = threading.Event()

        def render(payload: str) -> str:
            gate.wait(5)
            return payload

        throttle: view.Throttle[str, str] = view.Throttle(
            asyncio.get_running_loop(),
            lambda: produced.append("snapshot") or "state",
            render,
            lambda _svg: None,
            interval=0.0,
        )
        throttle.poke()
        await asyncio.sleep(0.01)  # fired: a render is in flight
        throttle.poke()  # a change meanwhile: a redraw once it lands
        asyncio.get_running_loop().call_later(0.05, gate.set)
        await throttle.flush()
        await asyncio.sleep(0.1)
        return len(produced)

    assert arun(go()) == 2, "the first redraw and the flush's, nothing more"


def test_a_stored_history_replays_into_the_attempts_and_statuses():
    from wfnb.notebook.state import replay
    from wfnb.store.base import EventRecord

    state = state_of("steps:\n  a: {code: work}\n  b: {code: work, needs: [a]}\n")
    replay(
        state,
        [
            EventRecord("r1", "pending", 0.5),
            EventRecord("r1", "running", 1.0),
            EventRecord("r1", "pending", 1.0, "a", 1),
            EventRecord("r1", "running", 1.1, "a", 1),
            EventRecord("r1", "failed", 1.2, "a", 1, "boom"),
            EventRecord("r1", "running", 1.5, "a", 2),
            EventRecord("r1", "completed", 1.7, "a", 2),
            EventRecord("r1", "running", 1.8, "b", 1),
        ],
    )
    assert state.status is RunStatus.RUNNING and state.started == 1.0
    assert state.steps["a"].status is StepStatus.COMPLETED and state.steps["a"].attempt == 2
    assert state.steps["b"].status is StepStatus.RUNNING and state.steps["b"].started == 1.8
    first = state.records[("a", 1)]
    assert (first.status, first.started_at, first.ended_at, first.error) == (
        StepStatus.FAILED,
        1.1,
        1.2,
        "boom",
    )
    assert state.records[("a", 2)].ended_at == 1.7 and state.attempts == 3
