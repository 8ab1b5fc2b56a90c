"""The pictures a run leaves behind, with a real engine and real ipywidgets: the
final display is static (no widget mimetype), retries and end states are told
apart, the timeline draws every attempt, and every rich output has readable text."""

from __future__ import annotations

import asyncio
from typing import Any

import wfnb
from wfnb.dag import build_plan
from wfnb.events import Event, EventKind
from wfnb.model import RunStatus, StepStatus
from wfnb.notebook import palette, picture, view
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.state import RunState
from wfnb.notebook.widgets import LiveView
from wfnb.timeline import Timeline

from ..conftest import arun, wf

WIDGET = "application/vnd.jupyter.widget-view+json"


class Handle:
    """A display handle that records what the view sends (what IPython would)."""

    def __init__(self, shown: list[dict[str, Any]]) -> None:
        self.shown = shown

    def update(self, obj: Any, **_kw: Any) -> None:
        self.shown.append(dict(obj))


async def run_with_view(engine: wfnb.Engine, workflow: wfnb.Workflow) -> tuple[Any, list, LiveView]:
    shown: list[dict[str, Any]] = []

    def display(bundle: dict[str, Any]) -> Handle:
        shown.append(dict(bundle))
        return Handle(shown)

    run = NotebookRun(engine, asyncio.ensure_future(engine.start(workflow)), workflow=workflow.name)
    live = LiveView(engine, run, display=display, interval=0.02)
    result = await run.wait()
    for _ in range(500):
        if live.final is not None:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return result, shown, live


def test_a_retried_then_failed_run_ends_as_a_static_picture_with_its_attempts():
    calls = {"n": 0}

    def flaky() -> int:
        calls["n"] += 1
        raise ValueError(f"boom {calls['n']}")

    text = """
steps:
  a: {code: flaky, retry: {max_attempts: 3, delay: 0.05}}
  b: {code: flaky, needs: [a]}
"""

    async def go() -> None:
        engine = wfnb.Engine(namespace={"flaky": flaky})
        result, shown, live = await run_with_view(engine, wf(text))
        assert result.status is RunStatus.FAILED
        first, final = shown[0], shown[-2] if WIDGET in shown[-1] else shown[-1]
        assert WIDGET in first, "while live the display is the widget"
        statics = [b for b in shown if WIDGET not in b]
        assert statics, "the run's end replaces the widget by a static picture"
        final = statics[0]
        assert set(final) == {"text/html", "text/plain"}
        assert "failed" in final["text/plain"] and "boom 3" in final["text/plain"]
        assert "3 attempts (2 retries)" in final["text/plain"]
        assert "attempt 3" in final["text/plain"]
        assert "%workflow resume" in final["text/plain"]
        assert f"%workflow rerun {result.run_id} --from a" in final["text/plain"]
        html = final["text/html"]
        assert "wfnb-legend" in html and "wfnb-timeline" in html and "wfnb-retry" in html
        assert "wfnb-backoff" in html, "the backoff between attempts is drawn"
        assert "<svg" in html and "attempt 3/3" in html  # Graphviz's dot is a test dependency
        # The picture names the commands that carry the run on; no button is left.
        assert f"<code>%workflow rerun {result.run_id} --from a</code>" in html
        assert WIDGET not in shown[-1], "an ended run leaves no widget in the notebook"
        assert live.cancel_button.layout.display == "none"
        await engine.close()

    arun(go())


def test_retrying_is_a_state_of_its_own_with_a_countdown():
    workflow = wf("steps:\n  a: {code: work, retry: {max_attempts: 3, delay: 2}}\n")
    state = RunState(run_id="r1", workflow="wf", plan=build_plan(workflow), definition=workflow)
    state.apply(Event(EventKind.RUN_STARTED, "r1", "wf", at=100.0))
    state.apply(Event(EventKind.STEP_STARTED, "r1", "wf", "a", 1, at=100.0))
    state.apply(
        Event(
            EventKind.STEP_RETRYING,
            "r1",
            "wf",
            "a",
            1,
            error="ValueError: x",
            data={"delay": 2.0, "next_attempt": 2},
            at=101.0,
        )
    )
    assert view.look_of(state, "a") is palette.RETRYING
    assert "attempt 2/3, retrying in 2.0 s" in view.node_label(state, "a")
    state.apply(Event(EventKind.STEP_STARTED, "r1", "wf", "a", 2, at=103.0))
    assert view.look_of(state, "a") is palette.STEP_LOOKS[StepStatus.RUNNING]
    assert "attempt 2/3" in view.node_label(state, "a")
    assert [(k, r.status) for k, r in state.records.items()] == [
        (("a", 1), StepStatus.FAILED),
        (("a", 2), StepStatus.RUNNING),
    ]


def test_end_states_and_the_wave_barrier_look_different():
    text = """
steps:
  a: {code: work}
  b: {code: work}
  c: {code: work, needs: [a]}
  d: {code: work, needs: [b]}
"""
    workflow = wf(text)
    state = RunState(run_id="r", workflow="w", plan=build_plan(workflow), status=RunStatus.RUNNING)
    state.steps["a"].status = StepStatus.COMPLETED
    state.steps["b"].status = StepStatus.RUNNING
    assert state.held("c") and not state.held("d")
    looks = {
        view.look_of(state, "c"),
        palette.STEP_LOOKS[StepStatus.PENDING],
        palette.STEP_LOOKS[StepStatus.SKIPPED],
        palette.STEP_LOOKS[StepStatus.CANCELLED],
    }
    assert len(looks) == 4
    assert len({(lk.fill, lk.style) for lk in looks}) == 4, "not by colour alone"
    assert "held" in view.node_label(state, "c")
    source = view.dot_source(state)
    assert 'color="#' in source, "every node has an outline of its own (dark theme)"
    legend = palette.legend_html()
    for look in (*palette.STEP_LOOKS.values(), palette.RETRYING, palette.HELD):
        assert look.name in legend


def test_the_timeline_draws_every_attempt_and_reads_as_text():
    from wfnb.store.base import StepRecord

    records = [
        StepRecord("r", "fetch", 1, StepStatus.FAILED, 10.0, 10.5, "boom"),
        StepRecord("r", "fetch", 2, StepStatus.COMPLETED, 11.5, 12.0),
        StepRecord("r", "review", 1, StepStatus.COMPLETED, 12.0, 20.0),
    ]
    timeline = Timeline.from_records(records, origin=10.0, kinds={"review": "approval"})
    svg = timeline.svg()
    assert svg.count('class="wfnb-bar"') == 1 and 'class="wfnb-retry"' in svg
    assert 'class="wfnb-approval"' in svg and 'class="wfnb-backoff"' in svg
    text = repr(timeline)
    assert "fetch" in text and "(approval)" in text and text.count("\n") == 3
    assert timeline._repr_html_().startswith('<div class="wfnb-timeline"')


def test_handle_and_engine_give_the_timeline():
    async def go() -> None:
        engine = wfnb.Engine(namespace={"work": work})
        handle = await engine.start(
            wf("steps:\n  a: {code: work}\n  b: {code: work, needs: [a]}\n")
        )
        await handle
        for timeline in (await handle.timeline(), await engine.timeline(handle.id)):
            assert [row[0] for row in timeline.rows()] == ["a", "b"]
        await engine.close()

    arun(go())


def test_summary_text_is_readable_for_every_run():
    workflow = wf("steps:\n  a: {code: work}\n")
    state = RunState(
        run_id="r", workflow="w", plan=build_plan(workflow), status=RunStatus.COMPLETED
    )
    text = picture.summary_text(state)
    assert text.startswith("w r: completed") and "a" in text and "…" not in text


async def work(x: int = 0) -> int:
    return x
