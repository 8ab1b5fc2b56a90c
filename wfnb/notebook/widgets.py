"""The live view of a run: one ipywidgets box, updated in place while the run is
live, and replaced in place by a static picture when it ends.

Header (status, progress facts, its age) + DAG (SVG) and legend + timeline +
progress bar + Cancel + Approve/Reject (with a comment box) per waiting approval +
the failing step's error. From the first redraw on (see `LiveView._follow`),
engine events update a `RunState` on the loop; a `Throttle` turns bursts of them
into a bounded number of redraws. When the run
ends the display becomes `picture.final_bundle` (no widget model: DESIGN §4); a
failed or cancelled run's picture names the commands that carry it on, and no
button survives into the saved notebook.

Threads (DESIGN §6): on ipykernel 7.0-7.3 a click reaches ``on_click`` on a
subshell thread with its own event loop, and resolving the engine's future there
leaves the run stuck. So every callback only reads the widgets and hands off to
the kernel loop with ``loop.call_soon_threadsafe``, using the loop captured when
the view was made (on the main thread); nothing here calls
``asyncio.get_event_loop()`` from a callback.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import ipywidgets as w

from wfnb.events import Event
from wfnb.model import RunStatus
from wfnb.notebook import palette, picture, view
from wfnb.notebook.config import dashboard_link
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.state import RunState, load_state, replay, short, state_of_handle

if TYPE_CHECKING:
    from wfnb.engine import Engine, RunHandle
    from wfnb.events import Subscription

Bundle = dict[str, Any]


class DisplayHandle(Protocol):
    def update(self, obj: Any, **kwargs: Any) -> None: ...


#: shows a mime bundle and returns a handle to update it (IPython's display,
#: injected by the session so this module needs no IPython)
Display = Callable[[Bundle], DisplayHandle | None]


class LiveView:
    """The view of one run. Make it on the kernel loop's thread (in a magic)."""

    def __init__(
        self,
        engine: Engine,
        run: NotebookRun,
        *,
        display: Display | None = None,
        interval: float = 0.25,
        picture: Callable[[RunState], str] | None = None,
        on_final: Callable[[Bundle], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_final = on_final
        self.run = run
        # Captured here, on the main thread; callbacks use only this.
        self.loop = asyncio.get_running_loop()
        self.state: RunState | None = None
        self.finished = False
        self.final: Bundle | None = None
        #: resolved once the view has come to rest (final picture drawn, or none)
        self.at_rest: asyncio.Future[None] = self.loop.create_future()
        self._draw = picture or _picture
        parts = _parts()
        self.header = parts.html(f"<b>{html.escape(run.workflow_name)}</b>: starting…")
        self.picture = parts.html("")
        self.timeline = parts.html("")
        self.progress = w.IntProgress(
            value=0, min=0, max=1, description="0/0", layout=parts.layout, style=parts.progress
        )
        self.cancel_button = w.Button(
            description="Cancel", icon="stop", button_style="warning", style=parts.button
        )
        self.cancel_button.on_click(self._on_cancel)
        self.approvals = w.VBox([], layout=parts.layout)
        self.error = parts.html("")
        self.box = w.VBox(
            [
                self.header,
                self.picture,
                parts.legend,
                self.timeline,
                w.HBox([self.progress, self.cancel_button], layout=parts.layout),
                self.approvals,
                self.error,
            ],
            layout=parts.frame,
        )
        self._approval_rows: dict[str, w.Widget] = {}
        #: the timeline is redrawn less often than the DAG (see `render`)
        self.timeline_interval = max(1.0, 4 * interval)
        self._timeline_at = -self.timeline_interval  # the first redraw draws it
        #: timelines drawn into the widget (the final picture's own is not counted)
        self.timelines = 0
        self.throttle: view.Throttle[RunState | None, tuple[str, str]] = view.Throttle(
            self.loop, self._snapshot, self.render, self._deliver, interval=interval
        )
        #: the engine's events, from the first redraw on (see `_follow`)
        self._subscription: Subscription | None = None
        #: events that arrive while `_follow` reads the store
        self._backlog: list[Event] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._show = display
        self._display: DisplayHandle | None = None
        if display is not None:
            self._display = display(self.bundle())
            run.finishers.append(self.show_final)
        run.started.add_done_callback(self._attach)

    # -- wiring ------------------------------------------------------------------

    def bundle(self) -> Bundle:
        """The widget, plus an HTML copy of the header for frontends without it."""
        bundle: Bundle = dict(self.box._repr_mimebundle_() or {})
        if self.state is not None:
            bundle["text/html"] = picture.summary_html(self.state, picture=False, live=True)
            bundle["text/plain"] = picture.summary_text(self.state)
        return bundle

    def _attach(self, started: asyncio.Future[RunHandle]) -> None:
        handle = self.run.handle
        if handle is None:
            error = self.run.start_error
            self.header.value = f"<b>{html.escape(self.run.workflow_name)}</b>: did not start"
            self.error.value = _error_html(f"{type(error).__name__}: {error}" if error else "")
            self.cancel_button.layout.display = "none"
            self._close()
            self._rest()
            return
        if handle.status.finished:
            self._finish()
            return
        # The run's end, not its events, ends the view: a subscriber that falls too
        # far behind loses events, and the view must still come to rest.
        ended = self.loop.create_task(handle.wait())
        ended.add_done_callback(self._ended)
        self._follower = self.loop.create_task(self._follow(handle))
        self._follower.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _follow(self, handle: RunHandle) -> None:
        """Follow the run's events from its first redraw on: one interval after the
        start, or at once if it pauses first (its approval buttons). Until then
        nothing is drawn, and a subscriber would cost the run: the engine builds
        and sends events (two per step) only while someone listens, ~8 ms of the
        loop's time for 1,000 steps. So a run shorter than one interval is drawn
        once, when it ends, from the store; a longer one reads the store here for
        what happened before (every attempt so far, the prompts of waiting steps)
        and events keep it current from then on."""
        settled = asyncio.ensure_future(_settled(handle))
        try:
            await asyncio.wait({settled}, timeout=self.throttle.interval)
        finally:
            settled.cancel()
        if self.finished or handle.status.finished:
            return  # `_final` draws it
        self._backlog = []
        self._subscription = self.engine.subscribe(self._on_event)
        try:
            state = await self._past(handle)
        except Exception:  # noqa: BLE001 - the statuses alone still make a picture
            state = state_of_handle(self.engine, handle)
        backlog, self._backlog = self._backlog or [], None
        if self.finished:
            return
        for event in backlog:  # after the store's past, in the order they came
            state.apply(event)
        state.sync(handle.status, handle.step_statuses)
        self.state = state
        self.progress.max = max(1, state.total)
        self._sync_approvals()
        self.throttle.poke()

    async def _past(self, handle: RunHandle) -> RunState:
        """What happened before the view listened. While a step waits for a person
        the steps are read whole (their prompts); otherwise the run's history, which
        holds no outputs: a step's output may be a large table, and a running run
        shares the store's one thread with this read."""
        if handle.status is RunStatus.PAUSED or handle.waiting_approvals:
            return await load_state(self.engine, handle.id)
        state = state_of_handle(self.engine, handle)
        replay(state, await self.engine.store.get_events(run_id=handle.id))
        return state

    def _on_event(self, event: Event) -> None:
        if self._backlog is not None:
            self._backlog.append(event)
            return
        state = self.state
        if state is None or self.finished or not state.apply(event):
            return
        if state.waiting.keys() != self._approval_rows.keys():
            self._sync_approvals()
        if event.kind.is_run_event and state.status.finished:
            self._finish()
        else:
            self.throttle.poke()

    def _ended(self, _task: asyncio.Task[Any]) -> None:
        if not self.finished:
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        self.cancel_button.disabled = True
        self.cancel_button.layout.display = "none"  # no stale buttons
        self._sync_approvals()
        task = self.loop.create_task(self._final())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _final(self) -> None:
        """The static picture, from the store (every attempt, who approved), else
        from what the events told us."""
        try:
            handle = self.run.handle
            if handle is not None:
                # Whoever awaits the run goes first: the picture is not part of it.
                await handle.wait()
                await asyncio.sleep(0)
            state = self.state
            if handle is not None:
                try:
                    state = await load_state(self.engine, handle.id)
                except Exception:  # noqa: BLE001 - the picture must come to rest anyway
                    state = state or state_of_handle(self.engine, handle)
                    state.sync(handle.status, handle.step_statuses)
                self.state = state
            # The widgets too show the end: a page reloaded with this kernel ignores
            # the display's update below (DESIGN §6) and shows them again.
            await self.throttle.flush()
            self._close()
            if state is None:
                return
            svg = await self.loop.run_in_executor(view.render_executor(), view.render_svg, state)
            self.final = picture.final_bundle(state, svg)
            if self.on_final is not None:
                self.on_final(self.final)
            if self._display is not None:
                self._display.update(self.final, raw=True)
        finally:
            self._rest()

    def _rest(self) -> None:
        if not self.at_rest.done():
            self.at_rest.set_result(None)

    async def show_final(self) -> None:
        """Called by a cell that awaited the run to its end: show the final picture
        again, from that cell. The view's own update went out under the cell that
        drew the view; JupyterLab applies it anyway, but a headless executor
        (nbclient: papermill, nbconvert, nbval) only reads the messages of the
        cell it runs, and would save the widget. An update is idempotent."""
        await asyncio.shield(self.at_rest)
        if self.final is not None and self._display is not None:
            self._display.update(self.final, raw=True)

    def _close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        self.throttle.close()

    # -- drawing -------------------------------------------------------------------

    def _snapshot(self) -> RunState | None:
        """Runs on the loop: the renderer gets a state nobody mutates meanwhile."""
        if self.state is None:
            return None
        copy = self.state.copy()
        self._update_text(copy)
        return copy

    def render(self, state: RunState | None) -> tuple[str, str]:
        """Runs on the render thread: the DAG, and the timeline at the first redraw,
        then at most once per ``timeline_interval`` (a 1,000-attempt timeline is a
        few ms of Python holding the GIL the run needs; the final picture always
        has it)."""
        if state is None:
            return "", ""
        timeline = self.timeline.value
        now = time.monotonic()
        if state.records and now - self._timeline_at >= self.timeline_interval:
            timeline = picture.timeline_of(state)._repr_html_()
            self._timeline_at = now
            self.timelines += 1
        return self._draw(state), timeline

    def _deliver(self, drawn: tuple[str, str]) -> None:
        """Back on the loop: one comm message per part that changed."""
        dag, timeline = drawn
        if dag != self.picture.value:
            self.picture.value = dag
        if timeline != self.timeline.value:
            self.timeline.value = timeline

    def _update_text(self, state: RunState) -> None:
        header = picture.header_html(state, live=True)
        link = dashboard_link(self.engine.backend)
        if link is not None:  # where the steps run, when that is a Dask cluster
            header += f' · <a href="{html.escape(link)}" target="_blank">Dask dashboard</a>'
        if header != self.header.value:
            self.header.value = header
        self.progress.max = max(1, state.total)
        self.progress.value = state.done
        self.progress.description = f"{state.done}/{state.total}"
        self.progress.bar_style = {
            RunStatus.COMPLETED: "success",
            RunStatus.FAILED: "danger",
            RunStatus.PAUSED: "warning",
        }.get(state.status, "info")
        failed = state.failed_step
        text = f"step {failed[0]!r} failed: {failed[1]}" if failed else ""
        if not text and state.status is RunStatus.FAILED:
            text = state.error or ""
        if self.error.value != _error_html(text):
            self.error.value = _error_html(text)

    # -- approvals and cancel --------------------------------------------------------

    def _sync_approvals(self) -> None:
        """One row per step waiting for a person; rows go when the step stops waiting."""
        waiting = {} if self.state is None or self.finished else self.state.waiting
        for sid in [s for s in self._approval_rows if s not in waiting]:
            self._approval_rows.pop(sid).close()
        for sid, prompt in waiting.items():
            if sid not in self._approval_rows:
                self._approval_rows[sid] = approval_row(
                    sid, prompt, self.loop, lambda s, ok, c: self._decide(s, ok, c)
                )
        self.approvals.children = tuple(self._approval_rows.values())

    def _decide(self, step_id: str, approved: bool, comment: str | None) -> None:
        self._spawn(self.run.decide(step_id, approved=approved, comment=comment))

    def _on_cancel(self, _button: w.Button) -> None:
        """Widget callback (maybe on a subshell thread): hand off, nothing more."""
        self.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        self.cancel_button.disabled = True
        handle = self.run.handle
        if handle is not None:
            self._spawn(self.engine.cancel(handle.id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)

        def report(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is not None:
                self.error.value = _error_html(str(done.exception()))

        task.add_done_callback(report)


#: called on the kernel loop with (step, approved, comment)
Decide = Callable[[str, bool, "str | None"], None]


def approval_row(
    step_id: str, prompt: str, loop: asyncio.AbstractEventLoop, decide: Decide
) -> w.HBox:
    """Prompt, comment box, Approve and Reject. A click disables the row and hands
    the decision to the kernel loop (it may arrive on a subshell thread)."""
    label = w.HTML(f"<b>{html.escape(step_id)}</b>: {html.escape(short(prompt, 500))}")
    comment = w.Text(placeholder="comment (optional)", layout=w.Layout(width="240px"))
    approve = w.Button(description="Approve", button_style="success", icon="check")
    reject = w.Button(description="Reject", button_style="danger", icon="times")
    row = w.HBox([label, comment, approve, reject])
    row.add_class("wfnb-approval")

    def on_decide(approved: bool) -> None:
        text = comment.value or None
        loop.call_soon_threadsafe(done, approved, text)

    def done(approved: bool, text: str | None) -> None:
        for child in row.children:
            if isinstance(child, w.Button | w.Text):
                child.disabled = True
        decide(step_id, approved, text)

    approve.on_click(lambda _b: on_decide(True))
    reject.on_click(lambda _b: on_decide(False))
    return row


async def _settled(handle: RunHandle) -> None:
    """Until ``handle``'s run pauses or ends."""
    await handle


class _Parts:
    """What every view's widgets share: layouts and styles nobody changes, and
    the legend. Each widget otherwise makes its own layout and style models, and
    making a model costs ~0.1 ms of the loop's time (a comm is opened for it)."""

    def __init__(self) -> None:
        from ipywidgets.widgets.widget_int import ProgressStyle
        from ipywidgets.widgets.widget_string import HTMLStyle

        self.layout = w.Layout()
        self.frame = w.Layout(border="1px solid #9e9e9e", padding="4px")
        self.text = HTMLStyle()
        self.progress = ProgressStyle()
        self.button = w.ButtonStyle()
        self.legend = self.html(palette.legend_html())

    def html(self, value: str) -> w.HTML:
        return w.HTML(value, layout=self.layout, style=self.text)

    @property
    def alive(self) -> bool:
        """False once any of them was closed (``Widget.close_all()``)."""
        models = (self.layout, self.frame, self.text, self.progress, self.button, self.legend)
        return all(model.comm is not None for model in models)


_shared: _Parts | None = None


def _parts() -> _Parts:
    global _shared
    if _shared is None or not _shared.alive:
        _shared = _Parts()
    return _shared


def _picture(state: RunState) -> str:
    return view.picture_html(state)


def _error_html(text: str) -> str:
    if not text:
        return ""
    return picture.error_html("", text)
