"""The live view of a run: one ipywidgets box, updated in place.

DAG (SVG) + progress bar + Cancel + Approve/Reject (with a comment box) per
waiting approval + the failing step's error. Engine events update a `RunState`
on the loop; a `Throttle` turns bursts of them into a bounded number of redraws.

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
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import ipywidgets as w

from wfnb.events import Event
from wfnb.model import RunStatus
from wfnb.notebook import view
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.state import RunState, StepView, short

if TYPE_CHECKING:
    from wfnb.engine import Engine, RunHandle
    from wfnb.events import Subscription

Bundle = dict[str, Any]


class DisplayHandle(Protocol):
    def update(self, obj: Any, **kwargs: Any) -> None: ...


#: shows a mime bundle and returns a handle to update it (IPython's display,
#: injected by the magics so this module needs no IPython)
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
    ) -> None:
        self.engine = engine
        self.run = run
        # Captured here, on the main thread; callbacks use only this.
        self.loop = asyncio.get_running_loop()
        self.state: RunState | None = None
        self.finished = False
        self._draw = picture or _picture
        self.header = w.HTML(f"<b>{html.escape(run.workflow_name)}</b>: starting…")
        self.picture = w.HTML("")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="0/0")
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning")
        self.cancel_button.on_click(self._on_cancel)
        self.approvals = w.VBox([])
        self.error = w.HTML("")
        self.box = w.VBox(
            [
                self.header,
                self.picture,
                w.HBox([self.progress, self.cancel_button]),
                self.approvals,
                self.error,
            ],
            layout=w.Layout(border="1px solid #ddd", padding="4px"),
        )
        self._approval_rows: dict[str, w.Widget] = {}
        self.throttle: view.Throttle[RunState | None, str] = view.Throttle(
            self.loop, self._snapshot, self._render, self._deliver, interval=interval
        )
        self._subscription: Subscription | None = engine.subscribe(self._on_event)
        self._display: DisplayHandle | None = None
        if display is not None:
            self._display = display(self.bundle())
        run.started.add_done_callback(self._attach)

    # -- wiring ------------------------------------------------------------------

    def bundle(self, *, final: bool = False) -> Bundle:
        """The widget, plus an HTML copy for frontends (and saved notebooks)
        without the widget state."""
        bundle: Bundle = dict(self.box._repr_mimebundle_() or {})
        if self.state is not None:
            bundle["text/html"] = view.summary_html(self.state, picture=final)
        return bundle

    def _attach(self, started: asyncio.Future[RunHandle]) -> None:
        handle = self.run.handle
        if handle is None:
            error = self.run.start_error
            self.header.value = f"<b>{html.escape(self.run.workflow_name)}</b>: did not start"
            self.error.value = _error_html(f"{type(error).__name__}: {error}" if error else "")
            self._close()
            return
        self.state = RunState.from_statuses(
            run_id=handle.id,
            workflow=handle.workflow.name,
            plan=self.engine.plan(handle.workflow),
            status=handle.status,
            statuses=handle.step_statuses,
        )
        self.progress.max = max(1, self.state.total)
        self._sync_approvals()
        self.throttle.poke()
        if handle.status.finished:
            self._finish()
        else:
            # The run's end, not its events, ends the view: a subscriber that falls
            # too far behind loses events, and the view must still come to rest.
            ended = self.loop.create_task(handle.wait())
            ended.add_done_callback(self._ended)

    def _on_event(self, event: Event) -> None:
        state = self.state
        if state is None or self.finished or not state.apply(event):
            return
        if set(state.waiting) != set(self._approval_rows):
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
        self._sync_approvals()
        task = self.loop.create_task(self._final())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _final(self) -> None:
        handle = self.run.handle
        if handle is not None and self.state is not None:
            # The engine's statuses are the truth; events only kept us current.
            self.state.sync(handle.status, handle.step_statuses)
        await self.throttle.flush()
        self._close()
        if self._display is not None:
            self._display.update(self.bundle(final=True), raw=True)

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
        state = self.state
        copy = RunState(
            run_id=state.run_id,
            workflow=state.workflow,
            plan=state.plan,
            status=state.status,
            error=state.error,
            steps={sid: _copy(v) for sid, v in state.steps.items()},
            waiting=dict(state.waiting),
        )
        self._update_text(copy)
        return copy

    def _render(self, state: RunState | None) -> str:
        """Runs on the render thread."""
        return "" if state is None else self._draw(state)

    def _deliver(self, picture: str) -> None:
        """Back on the loop: one comm message for the new picture."""
        if picture != self.picture.value:
            self.picture.value = picture

    def _update_text(self, state: RunState) -> None:
        colour = {"completed": "#2e7d32", "failed": "#c62828", "paused": "#ef6c00"}.get(
            state.status.value, "#1565c0"
        )
        header = (
            f"<b>{html.escape(state.workflow)}</b> run <code>{state.run_id}</code>: "
            f'<span style="color:{colour}">{state.status.value}</span>'
        )
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
                self._approval_rows[sid] = self._approval_row(sid, prompt)
        self.approvals.children = tuple(self._approval_rows.values())

    def _approval_row(self, step_id: str, prompt: str) -> w.Widget:
        label = w.HTML(f"<b>{html.escape(step_id)}</b>: {html.escape(short(prompt, 500))}")
        comment = w.Text(placeholder="comment (optional)", layout=w.Layout(width="240px"))
        approve = w.Button(description="Approve", button_style="success", icon="check")
        reject = w.Button(description="Reject", button_style="danger", icon="times")
        approve.on_click(lambda _b: self._on_decide(step_id, True, comment))
        reject.on_click(lambda _b: self._on_decide(step_id, False, comment))
        row = w.HBox([label, comment, approve, reject])
        row.add_class("wfnb-approval")
        return row

    def _on_decide(self, step_id: str, approved: bool, comment: w.Text) -> None:
        """Widget callback (maybe on a subshell thread): hand off, nothing more."""
        text = comment.value or None
        self.loop.call_soon_threadsafe(self._decide, step_id, approved, text)

    def _decide(self, step_id: str, approved: bool, comment: str | None) -> None:
        row = self._approval_rows.get(step_id)
        if row is not None:
            for child in row.children:
                if isinstance(child, w.Button | w.Text):
                    child.disabled = True
        handle = self.run.handle
        if handle is None:
            return
        self._spawn(self.engine.approve(handle.id, step_id, approved=approved, comment=comment))

    def _on_cancel(self, _button: w.Button) -> None:
        """Widget callback (maybe on a subshell thread): hand off, nothing more."""
        self.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        self.cancel_button.disabled = True
        handle = self.run.handle
        if handle is not None:
            self._spawn(self.engine.cancel(handle.id))

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)

        def report(done: asyncio.Task[Any]) -> None:
            if not done.cancelled() and done.exception() is not None:
                self.error.value = _error_html(str(done.exception()))

        task.add_done_callback(report)


def _picture(state: RunState) -> str:
    return view.picture_html(state)


def _copy(step: StepView) -> StepView:
    return replace(step)


def _error_html(text: str) -> str:
    if not text:
        return ""
    return (
        '<pre style="color:#c62828;white-space:pre-wrap;margin:2px 0">'
        f"{html.escape(short(text, 2000))}</pre>"
    )


def resume_panel(
    runs: Any, loop: asyncio.AbstractEventLoop, *, on_resume: Callable[[str], NotebookRun]
) -> w.VBox:
    """What ``%load_ext wfnb`` shows for runs a dead kernel left running: each with
    the command that resumes it and a Resume button. A click embeds the resumed
    run's live view in this panel (a callback has no cell output of its own)."""
    noun = "run" if len(runs) == 1 else "runs"
    panel = w.VBox(
        [w.HTML(f"<b>{len(runs)} interrupted {noun}</b> (left running by a kernel that died):")]
    )

    def resume(run_id: str, button: w.Button) -> None:
        button.disabled = True
        run = on_resume(run_id)
        live = LiveView(run.engine, run)
        panel.children = (*panel.children, live.box)

    for record in runs:
        button = w.Button(description="Resume", icon="play", button_style="primary")
        # The click may arrive on a subshell thread: hand off to the kernel loop.
        button.on_click(lambda b, rid=record.run_id: loop.call_soon_threadsafe(resume, rid, b))
        text = w.HTML(
            f"{html.escape(record.workflow)} <code>{record.run_id}</code>: "
            f"<code>%workflow resume {record.run_id}</code>"
        )
        panel.children = (*panel.children, w.HBox([button, text]))
    return panel
