"""Drawing a run: graphviz SVG (or an HTML table without ``dot``) and the throttle
that keeps redraws from ever slowing the run.

The split is deliberate: `dot_source` is cheap pure Python and runs on the kernel
loop against a consistent `RunState`; `svg_from_dot` runs the ``dot`` program, which
takes tens of milliseconds on a big graph, so the `Throttle` runs it on a thread of
its own and hands the SVG back to the loop. graphviz is imported inside the
functions that draw, so importing this module costs nothing.
"""

from __future__ import annotations

import asyncio
import html
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from wfnb.dag import Plan
from wfnb.model import StepStatus
from wfnb.notebook.palette import HELD, RETRYING, STATUS_COLORS, STEP_LOOKS, Look
from wfnb.notebook.state import RunState, StepView, describe

#: past this many nodes a wave is drawn as one summary node (failed and waiting
#: steps stay visible), because dot lays out thousands of nodes slowly and unreadably
MAX_NODES = 120
INSTALL_HINT = (
    "Graphviz's `dot` program is not installed, so wfnb shows a table instead of the "
    "DAG. Install it with `apt-get install graphviz`, `conda install graphviz` or "
    "`brew install graphviz`, then re-run the cell."
)
_hint_shown = False
_executor: ThreadPoolExecutor | None = None
#: the last (dot source, its SVG)
_last_svg: tuple[str, str] = ("", "")


def has_dot() -> bool:
    return shutil.which("dot") is not None


def _id(sid: str) -> str:
    return "s_" + sid


def _tooltip(sid: str, view: StepView) -> str:
    facts = describe(view)
    parts = [f"{sid}: {facts['status']}"]
    if facts["attempt"] and facts["attempt"] > 1:
        parts.append(f"attempt {facts['attempt']}/{view.max_attempts}")
    if facts["duration"]:
        parts.append(facts["duration"])
    if facts["iterations"]:
        parts.append(f"{facts['iterations']} iterations")
    if view.worker:
        parts.append(f"on {view.worker}")
    if facts["error"]:
        parts.append(f"error: {facts['error']}")
    return " · ".join(parts)


def look_of(state: RunState, sid: str) -> Look:
    """The node's look: its status, or retrying / held, which statuses do not say."""
    view = state.steps[sid]
    if view.retry is not None and view.status is StepStatus.RUNNING:
        return RETRYING
    if state.held(sid):
        return HELD
    return STEP_LOOKS[view.status]


def node_label(state: RunState, sid: str, now: float | None = None) -> str:
    """The step id, then what a glance should tell: iterations, the attempt when
    there was more than one, the retry countdown."""
    view = state.steps[sid]
    label = sid if not view.iterations else f"{sid} ×{view.iterations}"
    if view.retry is not None and view.status is StepStatus.RUNNING:
        attempt, at = view.retry
        wait = max(0.0, at - (state.as_of if now is None else now))
        label += f"\\nattempt {attempt}/{view.max_attempts}, retrying in {wait:.1f} s"
    elif view.attempt and view.attempt > 1:
        label += f"\\nattempt {view.attempt}/{view.max_attempts}"
    elif state.held(sid):
        label += "\\nheld (wave)"
    return label


def _node_attrs(state: RunState, sid: str) -> dict[str, str]:
    view = state.steps[sid]
    look = look_of(state, sid)
    return {
        "label": node_label(state, sid),
        "fillcolor": look.fill,
        "color": look.line,
        "style": look.style,
        "penwidth": look.width,
        "tooltip": _tooltip(sid, view),
    }


def dot_source(state: RunState) -> str:
    """The DOT text of the run: left to right, one rank per wave, loop bodies as
    clusters, every node coloured by status with its facts in the tooltip."""
    import graphviz

    graph = graphviz.Digraph(
        name=f"wfnb_{state.run_id}",
        graph_attr={
            "rankdir": "LR",
            "tooltip": f"{state.workflow} {state.run_id}: {state.status.value}",
            "bgcolor": "transparent",
            "nodesep": "0.15",
            "ranksep": "0.35",
        },
        node_attr={
            "shape": "box",
            "style": "filled,rounded",
            "fontname": "Helvetica",
            "fontsize": "10",
            "height": "0.3",
        },
        # mid grey: visible on white and on JupyterLab's dark background
        edge_attr={"arrowsize": "0.6", "color": "#8a8a8a"},
    )
    big = len(state.steps) > MAX_NODES
    shown = _draw_plan(graph, state, state.plan, summarize=big)
    _draw_edges(graph, state.plan, shown)
    source: str = graph.source
    return source


def _draw_edges(graph: Any, plan: Plan, shown: dict[str, str]) -> None:
    """One edge per pair of drawn nodes (summary nodes would otherwise repeat them)."""
    seen: set[tuple[str, str]] = set()
    for sid in plan.steps:
        for need in sorted(plan.needs[sid]):
            pair = (shown[need], shown[sid])
            if pair[0] != pair[1] and pair not in seen:
                seen.add(pair)
                graph.edge(pair[0], pair[1])


def _draw_plan(graph: Any, state: RunState, plan: Plan, *, summarize: bool) -> dict[str, str]:
    """Draw ``plan``'s nodes into ``graph``; returns step id -> the id of the node
    drawn for it (its own, or its wave's summary node). Node ids are ``s_<step>``
    (step ids are ``[A-Za-z0-9_-]``, so never a DOT port like ``a:b``)."""
    shown: dict[str, str] = {}
    for index, wave in enumerate(plan.waves):
        with graph.subgraph(name=f"wave_{plan.steps[0]}_{index}") as rank:
            rank.attr(rank="same")
            plain = [sid for sid in wave if sid not in plan.bodies]
            if summarize and len(plain) > 3:
                keep = [
                    s
                    for s in plain
                    if state.steps[s].status
                    in (StepStatus.FAILED, StepStatus.WAITING_APPROVAL, StepStatus.RUNNING)
                ][:10]
                rest = [s for s in plain if s not in keep]
                for sid in keep:
                    rank.node(_id(sid), **_node_attrs(state, sid))
                    shown[sid] = _id(sid)
                if rest:
                    # Not an "s_" id, so it can never collide with a step's node.
                    node = f"w_{plan.steps[0]}_{index}"
                    name = f"wave {index + 1}: {len(rest)} steps"
                    rank.node(node, **_summary_attrs(name, [state.steps[s] for s in rest]))
                    shown.update(dict.fromkeys(rest, node))
            else:
                for sid in plain:
                    rank.node(_id(sid), **_node_attrs(state, sid))
                    shown[sid] = _id(sid)
        for sid in wave:
            body = plan.bodies.get(sid)
            if body is None:
                continue
            view = state.steps[sid]
            with graph.subgraph(name=f"cluster_{sid}") as cluster:
                cluster.attr(
                    label=f"loop {sid}" + (f" ×{view.iterations}" if view.iterations else ""),
                    style="rounded,filled",
                    fillcolor="#fbfbfb",
                    color=STEP_LOOKS[view.status].line,
                    penwidth="2",
                    tooltip=_tooltip(sid, view),
                    fontname="Helvetica",
                    fontsize="10",
                )
                cluster.node(_id(sid), shape="point", width="0.08", tooltip=_tooltip(sid, view))
                inner = _draw_plan(cluster, state, body, summarize=summarize)
                _draw_edges(cluster, body, inner)
                for first in body.waves[0]:
                    cluster.edge(_id(sid), inner[first], style="dotted")
            shown[sid] = _id(sid)
    return shown


def _summary_attrs(name: str, views: list[StepView]) -> dict[str, str]:
    counts: dict[StepStatus, int] = {}
    for view in views:
        counts[view.status] = counts.get(view.status, 0) + 1
    worst = next((status for status in _SEVERITY if counts.get(status)), StepStatus.PENDING)
    text = ", ".join(f"{n} {status.value}" for status, n in counts.items())
    return {
        "label": f"{name}\n{text}",
        "fillcolor": STATUS_COLORS[worst],
        "color": STEP_LOOKS[worst].line,
        "tooltip": f"{name}: {text}",
        "shape": "box3d",
    }


_SEVERITY = (
    StepStatus.FAILED,
    StepStatus.WAITING_APPROVAL,
    StepStatus.RUNNING,
    StepStatus.CANCELLED,
    StepStatus.PENDING,
    StepStatus.COMPLETED,
    StepStatus.SKIPPED,
)


def svg_from_dot(source: str) -> str:
    """Run ``dot`` (blocking: call it off the loop). Raises graphviz.ExecutableNotFound.
    The same source twice runs ``dot`` once: a view's last redraw and its final
    picture draw the same state, and a redraw often changes only the header."""
    global _last_svg
    source_before, svg_before = _last_svg
    if source == source_before:
        return svg_before
    import graphviz

    svg: str = graphviz.pipe("dot", "svg", source.encode(), quiet=True).decode()
    # Drop the XML prolog and doctype so the SVG embeds in HTML.
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    _last_svg = (source, svg)  # one tuple, so a reader on another thread sees a pair
    return svg


def table_html(state: RunState) -> str:
    """The fallback view: one row per step, coloured by status."""
    rows = []
    for sid, view in state.steps.items():
        facts = describe(view)
        colour = STATUS_COLORS[view.status]
        rows.append(
            f"<tr><td>{html.escape(sid)}</td>"
            f'<td style="background:{colour}">{facts["status"]}</td>'
            f"<td>{facts['duration']}</td><td>{html.escape(facts['error'])}</td></tr>"
        )
    return (
        '<table class="wfnb-steps"><thead><tr><th>step</th><th>status</th>'
        "<th>duration</th><th>error</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def render_svg(state: RunState) -> str | None:
    """The DAG as SVG, or None without a working ``dot`` (blocking: off the loop)."""
    if not has_dot():
        return None
    try:
        return svg_from_dot(dot_source(state))
    except Exception:  # noqa: BLE001 - a broken dot must not break the view
        return None


def picture_html(state: RunState, svg: str | None = None) -> str:
    """The DAG as SVG (rendered here unless given), or the table plus, once per
    process, how to install Graphviz."""
    global _hint_shown
    if svg is None:
        svg = render_svg(state)
    if svg is not None:
        return f'<div class="wfnb-dag" style="overflow:auto;max-height:600px">{svg}</div>'
    hint = ""
    if not _hint_shown:
        _hint_shown = True
        hint = f'<p class="wfnb-hint"><em>{html.escape(INSTALL_HINT)}</em></p>'
    return hint + table_html(state)


P = TypeVar("P")
R = TypeVar("R")


def render_executor() -> ThreadPoolExecutor:
    """One thread for every view's ``dot`` calls: renders never compete with the
    engine's thread pool for sync steps, and never pile up."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wfnb-render")
    return _executor


class Throttle(Generic[P, R]):
    """Coalesces change notifications into at most one redraw per ``interval``.

    ``poke()`` is called on the loop at every change and costs a flag check. A
    redraw takes a snapshot with ``produce`` (on the loop), renders it with
    ``render`` on the render thread, and hands the result to ``deliver`` back on
    the loop. At most one render is in flight; changes during it are folded into
    the next one. So N changes within T seconds cost at most T/interval + 2
    renders, whatever N is, and the loop never waits for a render.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        produce: Callable[[], P],
        render: Callable[[P], R],
        deliver: Callable[[R], None],
        *,
        interval: float = 0.25,
    ) -> None:
        self.loop = loop
        self.produce = produce
        self.render = render
        self.deliver = deliver
        self.interval = interval
        self.redraws = 0
        # The first redraw waits one interval too: a short run finishes before it,
        # and its only picture is the final one, drawn after the run has ended.
        self._last = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: asyncio.Future[R] | None = None
        self._dirty = False
        self._closed = False

    def poke(self) -> None:
        if self._closed:
            return
        if self._timer is not None or self._inflight is not None:
            self._dirty = True
            return
        delay = max(0.0, self._last + self.interval - time.monotonic())
        self._timer = self.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._dirty = False
        self.redraws += 1
        self._last = time.monotonic()
        payload = self.produce()
        self._inflight = self.loop.run_in_executor(render_executor(), self.render, payload)
        self._inflight.add_done_callback(self._rendered)

    def _rendered(self, future: asyncio.Future[R]) -> None:
        self._inflight = None
        if not future.cancelled() and future.exception() is None and not self._closed:
            self.deliver(future.result())
        if self._dirty:
            self._dirty = False
            self.poke()

    async def stop(self) -> None:
        """Stop scheduling; a render in flight still lands."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inflight is not None:
            await asyncio.wait({self._inflight})
        self.close()  # and the timer a landing render may have set meanwhile

    async def flush(self) -> None:
        """Draw the current state now (the final picture) and stop scheduling."""
        await self.stop()
        self.redraws += 1
        result = await self.loop.run_in_executor(render_executor(), self.render, self.produce())
        self.deliver(result)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
