"""The live view with a real engine and real ipywidgets (no kernel: comm messages
go nowhere, everything else is what a notebook runs)."""

from __future__ import annotations

import asyncio
import threading

import ipywidgets as w

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.notebook import palette, view
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.widgets import LiveView

from ..conftest import arun, wf


async def work(x: int = 0, delay: float = 0.0) -> int:
    await asyncio.sleep(delay)
    return x


def start(
    engine: wfnb.Engine, workflow: wfnb.Workflow, **kw: object
) -> tuple[NotebookRun, LiveView]:
    run = NotebookRun(engine, asyncio.ensure_future(engine.start(workflow)), workflow=workflow.name)
    return run, LiveView(engine, run, **kw)  # type: ignore[arg-type]


async def settled_view(live: LiveView) -> None:
    for _ in range(300):
        if live.finished and live.final is not None:
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the view never drew its final picture")


def buttons(box: w.Widget, description: str) -> list[w.Button]:
    found = []
    stack = [box]
    while stack:
        widget = stack.pop()
        if isinstance(widget, w.Button) and widget.description == description:
            found.append(widget)
        stack.extend(getattr(widget, "children", ()))
    return found


def test_a_500_step_run_is_drawn_a_bounded_number_of_times_and_ends_green():
    steps = {
        f"s{i}": {"code": "work", **({"needs": [f"s{i - 1}"]} if i % 50 else {})}
        for i in range(500)
    }

    async def go():
        engine = wfnb.Engine(namespace={"work": work})
        drawn: list[int] = []

        def picture(state):
            drawn.append(state.done)
            return view.picture_html(state)

        loop = asyncio.get_running_loop()
        started = loop.time()
        run, live = start(
            engine, wfnb.Workflow(name="many", steps=steps), interval=0.05, picture=picture
        )
        result = await run
        elapsed = loop.time() - started
        await settled_view(live)
        assert result.status is RunStatus.COMPLETED
        # ~1500 events (start + complete per step, run events) -> few redraws.
        assert live.throttle.redraws <= elapsed / 0.05 + 3
        assert drawn[-1] == 500
        assert live.progress.value == 500 and live.progress.description == "500/500"
        assert "completed" in live.header.value and live.cancel_button.disabled
        # Graphviz's dot is a test dependency: the picture is the coloured DAG.
        assert palette.STATUS_COLORS[StepStatus.COMPLETED] in live.picture.value
        assert palette.STATUS_COLORS[StepStatus.PENDING] not in live.picture.value
        await engine.close()

    arun(go())


def test_a_click_on_another_thread_with_its_own_loop_reaches_the_run():
    """ipykernel 7.0-7.3 runs on_click on a subshell thread that has its own event
    loop (DESIGN §6): the view must hand the decision to the kernel loop."""
    text = """
steps:
  check: {approval: {prompt: "Ship {{ inputs.n }}?"}}
  ship: {code: work, needs: [check], with: {x: 3}}
inputs: {n: 2}
"""

    async def go():
        engine = wfnb.Engine(namespace={"work": work})
        run, live = start(engine, wf(text))
        paused = await run
        assert paused.status is RunStatus.PAUSED
        await asyncio.sleep(0.01)
        [row] = live.approvals.children
        assert "Ship 2?" in row.children[0].value
        row.children[1].value = "from a subshell"
        [approve] = buttons(live.box, "Approve")

        def subshell() -> None:
            loop = asyncio.new_event_loop()  # what a subshell thread has
            asyncio.set_event_loop(loop)
            try:
                approve.click()
            finally:
                loop.close()

        thread = threading.Thread(target=subshell)
        thread.start()
        thread.join()
        result = await asyncio.wait_for(run.wait(), 5)
        assert result.status is RunStatus.COMPLETED
        assert result.outputs["check"]["comment"] == "from a subshell"
        await settled_view(live)
        assert live.approvals.children == ()
        await engine.close()

    arun(go())


def test_cancel_button_cancels_and_a_failed_step_shows_its_error():
    async def boom() -> None:
        raise ValueError("the source is gone")

    async def go():
        engine = wfnb.Engine(namespace={"work": work, "boom": boom})
        run, live = start(engine, wf("steps:\n  a: {code: work, with: {delay: 30}}\n"))
        await asyncio.sleep(0.05)
        [cancel] = buttons(live.box, "Cancel")
        cancel.click()
        assert (await asyncio.wait_for(run.wait(), 5)).status is RunStatus.CANCELLED

        run, live = start(engine, wf("steps:\n  a: {code: boom}\n"))
        assert (await run).status is RunStatus.FAILED
        await settled_view(live)
        assert "step &#x27;a&#x27; failed" in live.error.value
        assert "the source is gone" in live.error.value
        assert live.final is not None and "failed" in live.final["text/html"]
        await engine.close()

    arun(go())


def test_approvals_inside_a_loop_are_decided_per_iteration():
    text = """
steps:
  each: {loop: {for_each: "[1, 2]", body: [ok]}}
  ok: {approval: {prompt: "item {{ loop.item }}?"}}
"""

    async def go():
        engine = wfnb.Engine()
        run, live = start(engine, wf(text))
        for expected in ("ok[0]", "ok[1]"):
            assert (await run).status is RunStatus.PAUSED
            await asyncio.sleep(0.01)
            [row] = live.approvals.children
            assert expected in row.children[0].value
            [approve] = buttons(live.box, "Approve")
            approve.click()
            for _ in range(100):  # the run goes on: wait until it leaves the pause
                await asyncio.sleep(0.01)
                if run.status is not RunStatus.PAUSED:
                    break
        result = await asyncio.wait_for(run.wait(), 5)
        assert result.status is RunStatus.COMPLETED
        await engine.close()

    arun(go())


def test_the_view_comes_to_rest_with_the_true_statuses_even_if_it_missed_events():
    async def go():
        engine = wfnb.Engine(namespace={"work": work})
        run, live = start(
            engine,
            wf("steps:\n  a: {code: work, with: {delay: 0.2}}\n  b: {code: work, needs: [a]}\n"),
            interval=0.01,
        )
        for _ in range(100):  # it follows the run's events from its first redraw on
            await asyncio.sleep(0.01)
            if live.state is not None:
                break
        assert live.state is not None and live._subscription is not None
        live._subscription.close()  # as if every event were dropped
        assert (await run).status is RunStatus.COMPLETED
        await settled_view(live)
        assert live.progress.value == 2 and "completed" in live.header.value
        assert {v.status for v in live.state.steps.values()} == {StepStatus.COMPLETED}
        await engine.close()

    arun(go())


def test_the_live_timeline_is_redrawn_less_often_than_the_dag():
    async def go():
        engine = wfnb.Engine(namespace={"work": work})
        run, live = start(engine, wf("steps:\n  a: {code: work, with: {delay: 0.05}}\n"))
        await run
        await settled_view(live)
        live.timeline_interval = 3600.0
        state = live.state
        assert state is not None and state.records
        live.timeline.value = "drawn before"
        assert live.render(state.copy())[1] == "drawn before"
        live.timeline_interval = 0.0
        assert "wfnb-timeline" in live.render(state.copy())[1]
        await engine.close()

    arun(go())


def test_a_run_on_a_dask_cluster_links_its_dashboard(dask_cluster):
    """Where the steps run is one click away: the live header links the cluster's
    dashboard (a real LocalCluster; the local backend shows no link)."""

    async def go() -> tuple[str, str]:
        flow = wf("steps:\n  a: {code: work, with: {x: 3}}\n")
        headers = []
        for backend in (
            wfnb.LocalBackend(),
            wfnb.DaskBackend(address=dask_cluster.scheduler_address),
        ):
            engine = wfnb.Engine(namespace={"work": work}, backend=backend)
            run, live = start(engine, flow, interval=0.02)
            await settled_view(live)
            await live.run.handle.wait()
            headers.append(live.header.value)
            await engine.close()
        return headers[0], headers[1]

    local, dask = arun(go())
    assert "dashboard" not in local
    assert "Dask dashboard" in dask and 'href="http' in dask


def test_a_run_shorter_than_one_interval_costs_it_no_events_and_is_drawn_from_the_store():
    """The engine builds events only while someone listens (two per step): a view
    listens from its first redraw on, so a short run is drawn once, at its end,
    with every attempt read from the store."""

    async def go():
        engine = wfnb.Engine(namespace={"work": work})
        flow = wf("steps:\n  a: {code: work}\n  b: {code: work, needs: [a]}\n")
        run, live = start(engine, flow, interval=30.0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not engine.bus.has_subscribers
        assert (await run).status is RunStatus.COMPLETED
        await settled_view(live)
        assert not engine.bus.has_subscribers
        assert live.state is not None and live.state.attempts == 2
        assert live.final is not None and "wfnb-timeline" in live.final["text/html"]
        assert "2/2 steps done" in live.final["text/plain"]
        await engine.close()

    arun(go())


def test_a_long_run_is_followed_from_its_first_redraw_with_what_came_before():
    async def go():
        engine = wfnb.Engine(namespace={"work": work})
        flow = wf("steps:\n  a: {code: work}\n  b: {code: work, needs: [a], with: {delay: 0.3}}\n")
        whole: list[str] = []  # reads of every step, outputs included
        get_steps = engine.store.get_steps

        async def counted(*, run_id: str):  # type: ignore[no-untyped-def]
            whole.append(run_id)
            return await get_steps(run_id=run_id)

        engine.store.get_steps = counted  # type: ignore[method-assign]
        run, live = start(engine, flow, interval=0.05)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if live.throttle.redraws:
                break
        assert engine.bus.has_subscribers
        assert whole == [], "a running run's past comes from its history, not its outputs"
        state = live.state
        assert state is not None
        # `a` ended before the view listened: its attempt comes from the store.
        assert state.steps["a"].status is StepStatus.COMPLETED and ("a", 1) in state.records
        assert state.steps["b"].status is StepStatus.RUNNING
        for _ in range(100):  # the first redraw draws the timeline too
            await asyncio.sleep(0.01)
            if live.timeline.value:
                break
        assert "wfnb-timeline" in live.timeline.value and not live.finished
        assert (await run).status is RunStatus.COMPLETED
        await settled_view(live)
        assert not engine.bus.has_subscribers
        assert len(whole) == 1  # the final picture's
        await engine.close()

    arun(go())


def test_views_share_the_layouts_and_styles_nobody_changes():
    """A model per widget part costs the loop ~0.1 ms each; the cancel button's
    layout is its own (it is hidden when the run ends)."""

    async def go():
        engine = wfnb.Engine(namespace={"work": work})
        flow = wf("steps:\n  a: {code: work}\n")
        (run1, one), (run2, two) = start(engine, flow), start(engine, flow)
        assert one.header.layout is two.timeline.layout
        assert one.cancel_button.layout is not two.cancel_button.layout
        await run1
        await run2
        await settled_view(one)
        await settled_view(two)
        assert one.cancel_button.layout.display == "none"
        assert two.header.layout.display is None
        w.Widget.close_all()
        three = start(engine, flow)[1]
        assert three.header.layout is not one.header.layout  # made again once closed
        await settled_view(three)
        await engine.close()

    arun(go())


def test_a_run_that_ends_within_its_first_interval_reads_the_store_once(monkeypatch):
    from wfnb.notebook import widgets

    reads: list[str] = []
    load_state = widgets.load_state

    async def counted(engine: wfnb.Engine, run_id: str):  # type: ignore[no-untyped-def]
        reads.append(run_id)
        return await load_state(engine, run_id)

    monkeypatch.setattr(widgets, "load_state", counted)

    async def go():
        engine = wfnb.Engine(namespace={"work": work})
        run, live = start(engine, wf("steps:\n  a: {code: work}\n"), interval=30.0)
        result = await run
        await settled_view(live)
        assert reads == [result.run_id]
        await engine.close()

    arun(go())
