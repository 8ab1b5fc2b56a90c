"""What ``%load_ext wfnb`` reports: the runs whose views went stale.

A new kernel cannot repaint an old kernel's outputs (DESIGN §6: an
``update_display_data`` for an output drawn earlier is ignored), so a view drawn
by a kernel that died while its run was live still shows "running" (with its age:
"as of 12:03:41"). The report names each such run, the state the store has for it,
and offers what can be done here: draw it afresh, Resume a run left running,
Approve/Reject a run left paused (the engine's offline path).

Like a live view, the report is widgets only while something in it can be acted
on: once every run in it is resumed, decided or drawn, its display becomes static.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from wfnb.errors import UnknownCallableError
from wfnb.model import RunStatus, StepStatus
from wfnb.notebook import picture
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.state import load_state
from wfnb.notebook.widgets import Bundle, DisplayHandle, LiveView, approval_row
from wfnb.owner import owner_alive
from wfnb.store.base import RunRecord, latest_attempts

if TYPE_CHECKING:
    from wfnb.engine import Engine


@dataclass
class Stale:
    """A run an earlier kernel left unfinished, and what it waits for."""

    record: RunRecord
    #: step instance -> prompt, for a paused run
    approvals: dict[str, str] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return self.record.status is not RunStatus.PAUSED


async def stale_runs(engine: Engine) -> list[Stale]:
    """Top-level runs not finished, not live here, and whose driver is gone:
    left running (interrupted) or paused by a kernel that died or was shut down."""
    statuses = [RunStatus.RUNNING, RunStatus.PENDING, RunStatus.PAUSED]
    live = {handle.id for handle in engine.live_runs}
    found = []
    for record in await engine.store.list_runs(statuses=statuses, limit=200):
        if record.parent_run_id is not None or record.run_id in live:
            continue
        if record.owner == engine.owner or owner_alive(record.owner):
            continue
        stale = Stale(record)
        if record.status is RunStatus.PAUSED:
            steps = latest_attempts(await engine.store.get_steps(run_id=record.run_id))
            for instance, step in steps.items():
                if step.status is StepStatus.WAITING_APPROVAL:
                    request = step.output if isinstance(step.output, dict) else {}
                    stale.approvals[instance] = str(request.get("prompt") or "approve?")
        found.append(stale)
    return found


def _when(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def report_text(runs: list[Stale]) -> str:
    interrupted = [s for s in runs if s.interrupted]
    paused = [s for s in runs if not s.interrupted]
    lines = []
    if interrupted:
        noun = "run" if len(interrupted) == 1 else "runs"
        lines.append(
            f"{len(interrupted)} interrupted {noun} (left running by a kernel that is gone):"
        )
        lines += [
            f"  {s.record.workflow} {s.record.run_id} {s.record.status.value}, started "
            f"{_when(s.record.started_at or s.record.created_at)}: "
            f"`%workflow resume {s.record.run_id}`"
            for s in interrupted
        ]
    if paused:
        noun = "run" if len(paused) == 1 else "runs"
        lines.append(
            f"{len(paused)} paused {noun} waiting for approval (left by a kernel that is gone):"
        )
        for s in paused:
            for step, prompt in s.approvals.items():
                lines.append(
                    f"  {s.record.workflow} {s.record.run_id} step {step}: {prompt} — "
                    f"`%workflow approve {s.record.run_id} {step}` or `reject`"
                )
    lines.append("Views drawn by that kernel are stale: `%workflow show RUN` draws a run afresh.")
    return "\n".join(lines)


def restart_hint(error: BaseException) -> str:
    """A failed resume, said so the user knows what to do next."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, UnknownCallableError):
        text += (
            "\nThis kernel does not define that function yet: run the cell that defines "
            "it, then click again."
        )
    return text


class Report:
    """The panel: one row per stale run, with Show, Resume or Approve/Reject."""

    def __init__(
        self,
        engine: Engine,
        runs: list[Stale],
        loop: asyncio.AbstractEventLoop,
        *,
        resume: Callable[[str], NotebookRun],
        adopt: Callable[[NotebookRun], None],
    ) -> None:
        self.engine = engine
        self.runs = runs
        self.loop = loop
        self.resume = resume
        self.adopt = adopt
        self.handle: DisplayHandle | None = None
        #: run id -> the static HTML it came to rest with
        self.rested: dict[str, str] = {}
        self.open = {s.record.run_id for s in runs}
        self.rows: dict[str, w.VBox] = {}
        intro = report_text(runs).splitlines()[-1]
        self.box = w.VBox([w.HTML(f"<b>wfnb</b>: {html.escape(intro)}")])
        for stale in runs:
            self.rows[stale.record.run_id] = self._row(stale)
        self.box.children = (*self.box.children, *self.rows.values())

    def bundle(self) -> Bundle:
        bundle: Bundle = dict(self.box._repr_mimebundle_() or {})
        bundle["text/plain"] = report_text(self.runs)
        bundle["text/html"] = f"<pre>{html.escape(report_text(self.runs))}</pre>"
        return bundle

    def _row(self, stale: Stale) -> w.VBox:
        record = stale.record
        state = "interrupted" if stale.interrupted else "paused"
        text = w.HTML(
            f"{html.escape(record.workflow)} <code>{record.run_id}</code>: {state} "
            f"(stored status <b>{record.status.value}</b>, started "
            f"{_when(record.started_at or record.created_at)})"
        )
        show = w.Button(description="Show", icon="eye")
        row = w.VBox([w.HBox([show, text])])
        message = w.HTML("")
        show.on_click(lambda _b: self.loop.call_soon_threadsafe(self._show, record.run_id, row))
        if stale.interrupted:
            resume = w.Button(description="Resume", icon="play", button_style="primary")
            resume.on_click(
                lambda _b: self.loop.call_soon_threadsafe(
                    self._resume, record.run_id, row, resume, message
                )
            )
            row.children = (w.HBox([resume, show, text]), message)
        else:
            run_id = record.run_id

            def decide(step: str, approved: bool, comment: str | None) -> None:
                self._decide(run_id, step, approved, comment, row, message)

            rows = [
                approval_row(step, prompt, self.loop, decide)
                for step, prompt in stale.approvals.items()
            ]
            row.children = (*row.children, *rows, message)
        return row

    # -- actions (on the kernel loop) ------------------------------------------------

    def _show(self, run_id: str, row: w.VBox) -> None:
        async def draw() -> None:
            state = await load_state(self.engine, run_id)
            svg = await self.loop.run_in_executor(None, _svg, state)
            row.children = (*row.children, w.HTML(picture.summary_html(state, svg=svg)))

        self._spawn(draw(), row)

    def _resume(self, run_id: str, row: w.VBox, button: w.Button, message: w.HTML) -> None:
        button.disabled = True
        message.value = ""
        try:
            run = self.resume(run_id)
        except Exception as exc:  # noqa: BLE001 - shown; the button stays usable
            message.value = picture.error_html("", restart_hint(exc))
            button.disabled = False
            return

        def started(_f: Any) -> None:
            if run.start_error is not None:
                message.value = picture.error_html("", restart_hint(run.start_error))
                button.disabled = False
                return
            self._watch(run_id, run, row)

        run.started.add_done_callback(started)

    def _decide(
        self,
        run_id: str,
        step: str,
        approved: bool,
        comment: str | None,
        row: w.VBox,
        message: w.HTML,
    ) -> None:
        async def decide() -> None:
            if approved:  # approving resumes the run here: its functions must exist
                record = await self.engine.store.get_run(run_id=run_id)
                if record is not None:
                    self.engine.check_runnable(await self.engine.definition(record))
            handle = await self.engine.approve(run_id, step, approved=approved, comment=comment)
            if handle is None:  # rejected: the run failed offline
                self._rest(run_id, row, await load_state(self.engine, run_id))
                return
            run = NotebookRun.of(self.engine, handle)
            self.adopt(run)
            self._watch(run_id, run, row)

        self._spawn(decide(), row, message)

    def _watch(self, run_id: str, run: NotebookRun, row: w.VBox) -> None:
        """The resumed run's live view in the row; its final picture replaces it."""

        def final(bundle: Bundle) -> None:
            self.rested[run_id] = bundle["text/html"]
            row.children = (w.HTML(bundle["text/html"]),)
            self._settle(run_id)

        live = LiveView(self.engine, run, on_final=final)
        row.children = (*row.children, live.box)

    def _rest(self, run_id: str, row: w.VBox, state: Any) -> None:
        html_text = picture.summary_html(state, picture=False)
        self.rested[run_id] = html_text
        row.children = (w.HTML(html_text),)
        self._settle(run_id)

    def _settle(self, run_id: str) -> None:
        """Once nothing is left to act on, the report becomes static HTML."""
        self.open.discard(run_id)
        if not self.open and self.handle is not None:
            body = "".join(self.rested.values())
            self.handle.update({"text/html": body, "text/plain": report_text(self.runs)}, raw=True)

    def _spawn(self, coro: Any, row: w.VBox, message: w.HTML | None = None) -> None:
        task = self.loop.create_task(coro)

        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled() or t.exception() is None:
                return
            error = picture.error_html("", restart_hint(t.exception()))  # type: ignore[arg-type]
            if message is not None:
                message.value = error
            else:
                row.children = (*row.children, w.HTML(error))

        task.add_done_callback(done)


def _svg(state: Any) -> str | None:
    from wfnb.notebook.view import render_svg

    return render_svg(state)
