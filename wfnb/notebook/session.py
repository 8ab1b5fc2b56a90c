"""One kernel's wfnb session: the settings, the engine, the runs started here,
and the tasks that carry out what a magic asked for. Free of IPython (the
display function is injected), so the magics stay a thin layer of parsing.

Magics cannot be async and a cell must return for widget clicks to be processed
(DESIGN §4, §6), so everything that needs the engine's coroutines runs as a task
on the kernel's loop; results that arrive later are written into a display made
when the magic ran (display handles reach the right output after the cell ended).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from wfnb.engine import Engine, RunHandle
from wfnb.errors import WfnbError
from wfnb.model import RunResult
from wfnb.notebook import picture
from wfnb.notebook.config import Wfnb, make_backend, make_store
from wfnb.notebook.recovery import Report, stale_runs
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.widgets import Bundle, Display, DisplayHandle, LiveView

log = logging.getLogger("wfnb")
#: the settings the engine is made from: a change makes a new one (when no run is live)
_ENGINE_SETTINGS = ["db", "backend", "dask_cluster"]


class UsageProblem(WfnbError):
    """What the user typed cannot work here (the magics turn it into a UsageError)."""


def running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise UsageProblem(
            "wfnb runs workflows on the kernel's event loop: use it in a Jupyter kernel "
            "(ipykernel), where cells run on a running loop"
        ) from None


class Session:
    """State that outlives a cell: made by ``%load_ext``, kept by ``%reload_ext``."""

    def __init__(
        self,
        ns: dict[str, Any],
        settings: Wfnb,
        display: Display,
        engine: Engine | None = None,
    ) -> None:
        self.ns = ns
        self.settings = settings
        self.display = display
        self._engine = engine
        #: a setting the engine is made from changed while runs were live: the
        #: engine is made again once none is (at the next use after they end)
        self._outdated = False
        #: run id -> the NotebookRun bound for it, so every decision goes through it
        self.runs: dict[str, NotebookRun] = {}
        #: runs whose start (the first durable record) has not finished yet
        self.starting: set[NotebookRun] = set()
        #: tasks carrying out what a magic asked for, until they are done
        self.tasks: set[asyncio.Task[Any]] = set()
        #: the cell being run is ``await <magics>.finish_cell(<magic>)`` (see extension)
        self.cell_awaits = False
        #: what that line waits for: the record (or with ``--wait`` the end) of the
        #: run a ``%%workflow`` cell started, or the task a ``%workflow`` line started
        self.pending: Callable[[], Awaitable[Any]] | None = None
        settings.observe(self._engine_setting_changed, names=_ENGINE_SETTINGS)

    @property
    def engine(self) -> Engine:
        """Made at first use, so a ``%config Wfnb.db`` (or ``.backend``,
        ``.dask_cluster``) before it takes effect."""
        old = self._engine
        if self._outdated and old is not None and not self._busy(old):
            self._replace(old)
        if self._engine is None:
            self._engine = Engine(
                store=make_store(self.settings.db),
                namespace=self.ns,
                backend=make_backend(self.settings.backend, self.settings.dask_cluster),
            )
        self._engine.agent = self.settings.agent_defaults()  # %config may change it any time
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self._engine = engine
        self._outdated = False

    @property
    def started_engine(self) -> Engine | None:
        return self._engine

    def detach(self) -> None:
        self.settings.unobserve(self._engine_setting_changed, names=_ENGINE_SETTINGS)

    def _engine_setting_changed(self, change: Mapping[str, Any]) -> None:
        old = self._engine
        if old is None or change["name"] == "dask_cluster" and self.settings.backend != "dask":
            return  # (no engine yet, or a setting its backend does not use)
        if self._busy(old):
            self._outdated = True
            print(
                f"wfnb: runs are live; the new Wfnb.{change['name']} is used by the first "
                "run after they end",
                file=sys.stderr,
            )
            return
        self._replace(old)

    def _busy(self, engine: Engine) -> bool:
        """Whether runs are live on ``engine``, or starting (not live yet)."""
        return bool(engine.live_runs or self.starting)

    def _replace(self, old: Engine) -> None:
        """Let go of ``old`` (closed in the background): the next use makes a new one."""
        self._engine = None
        self._outdated = False
        self.spawn(old.close())

    # -- tasks and displays ------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    def show(self, html_text: str, plain: str) -> DisplayHandle | None:
        return self.display({"text/html": html_text, "text/plain": plain})

    def later(
        self, coro: Coroutine[Any, Any, Any], render: Callable[[Any], tuple[str, str]]
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a task; show ``render(result)`` (or the error) in a
        display made now, so it lands under this cell whenever it finishes. A cell
        that awaits the task (a command alone in its cell) shows only the result."""
        awaited = self.cell_awaits
        handle = None if awaited else self.show("<i>working…</i>", "working…")
        task = self.spawn(coro)

        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                bundle: Bundle = {"text/html": "<i>cancelled</i>", "text/plain": "cancelled"}
            elif t.exception() is not None:
                exc = t.exception()
                text = f"{type(exc).__name__}: {exc}"
                bundle = {"text/html": picture.error_html("", text), "text/plain": text}
            else:
                html_text, plain = render(t.result())
                bundle = {"text/html": html_text, "text/plain": plain}
            if handle is not None:
                handle.update(bundle, raw=True)
            elif awaited:
                self.display(bundle)  # runs before the cell's await returns

        task.add_done_callback(done)
        if awaited:
            self.pending = lambda: asyncio.wait([task])
        return task

    # -- runs --------------------------------------------------------------------------

    def bind(self, run: NotebookRun, var: str | None = None) -> None:
        self.ns["_wf_run"] = run
        if var:
            self.ns[var] = run
        self.starting.add(run)
        run.started.add_done_callback(lambda _f: self._remember(run))

    def _remember(self, run: NotebookRun) -> None:
        self.starting.discard(run)
        if run.id is not None:
            self.runs[run.id] = run

    def adopt(self, run: NotebookRun) -> None:
        """A run started by a click (a resume from the report): bound like any other."""
        self.bind(run)

    def watch(self, run: NotebookRun) -> LiveView | None:
        if not self.settings.live_view:
            return None
        return LiveView(
            self.engine,
            run,
            display=self.display,
            interval=self.settings.redraw_interval,
        )

    def start(
        self, coro: Coroutine[Any, Any, RunHandle], workflow: str, var: str | None = None
    ) -> NotebookRun:
        run = NotebookRun(
            self.engine, asyncio.ensure_future(coro, loop=running_loop()), workflow=workflow
        )
        self.bind(run, var)
        self.watch(run)
        return run

    def check_wait(self) -> None:
        """``--wait`` needs the cell to end with the awaiting line (before any run starts)."""
        if not self.cell_awaits:
            raise UsageProblem(
                "--wait needs a cell that can await (IPython's autoawait, on in every "
                "Jupyter kernel: `%autoawait on`); or run `await _wf_run` next"
            )

    def hand_over(self, run: NotebookRun, *, wait: bool) -> None:
        """The end of a ``%%workflow`` cell. The cell then awaits `finish_cell`, so
        it returns only once the run's record is durable (a kernel killed the next
        instant leaves it resumable), and with ``--wait`` once the run has ended or
        paused. Awaiting, not blocking the loop: clicks still arrive (DESIGN §6).
        Called from code (``run_cell_magic``) the cell cannot await: it returns at
        once and the record is written a moment later."""
        if self.cell_awaits:
            self.pending = lambda: self._until_recorded(run, wait)

    async def _until_recorded(self, run: NotebookRun, wait: bool) -> RunResult | None:
        await asyncio.wait([run.started])  # its record is in the store (or it failed)
        return await run if wait else None

    async def finish_cell(self, value: Any = None) -> Any:
        """The cell's value: what the magic returned (``value``), or with
        ``--wait`` the run's `RunResult`."""
        pending, self.pending = self.pending, None
        self.cell_awaits = False
        result = await pending() if pending is not None else None
        if value is not None:
            return value
        return result if isinstance(result, RunResult) else None

    def restart(self, run_id: str, step: str | None) -> NotebookRun:
        """Resume ``run_id`` (``step`` None) or rerun it from ``step``; bound to
        ``_wf_run``, not watched (the caller shows it)."""
        engine = self.engine
        coro = engine.resume(run_id) if step is None else engine.rerun(run_id, step)
        label = f"run {run_id}" if step is None else f"rerun of {run_id} from {step}"
        run = NotebookRun(engine, running_loop().create_task(coro), workflow=label)
        self.bind(run)
        return run

    def run_id(self, word: str) -> str:
        """What a RUN argument names. ``@no_var_expand`` keeps ``{run.id}`` out of
        magic lines, so a name bound in the notebook to a run (``_wf_run``, a
        `RunHandle`, a `RunResult`) stands for its id; any other word is an id."""
        value = self.ns.get(word) if word.isidentifier() else None
        if isinstance(value, RunResult):
            return value.run_id
        if isinstance(value, NotebookRun | RunHandle):
            if value.id is None:
                raise UsageProblem(f"{word} has not started (yet): it has no run id")
            return value.id
        return word

    def decide(self, run_id: str, step: str, approved: bool, comment: str | None) -> Any:
        """A decision through the bound run when there is one (so ``await _wf_run``
        sees it taken up), else straight to the engine (runs of other kernels)."""
        run = self.runs.get(run_id)
        if run is not None and run.handle is not None and not run.handle.status.finished:
            return run.decide(step, approved=approved, comment=comment)
        return self.engine.approve(run_id, step, approved=approved, comment=comment)

    # -- the load report and the kernel's end ----------------------------------------------

    def report(self, *, always: bool = False) -> asyncio.Task[Report | None] | None:
        """Look for runs earlier kernels left unfinished; show a report only if
        there are some (no empty output row), or ``always`` a line that says so.
        The task's result: the report."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # not in a kernel: nothing can be resumed from here anyway
        engine = self.engine

        async def look() -> Report | None:
            try:
                runs = await stale_runs(engine)
            except WfnbError as exc:  # e.g. another kernel holds the store
                print(
                    f"wfnb: could not look for runs left by earlier kernels: {exc}", file=sys.stderr
                )
                return None
            if not runs:
                if always:
                    print("wfnb is loaded; no runs were left unfinished by earlier kernels")
                return None
            report = Report(
                engine,
                runs,
                loop,
                resume=lambda rid: self.restart(rid, None),
                adopt=self.adopt,
            )
            report.handle = self.display(report.bundle())
            return report

        task = loop.create_task(look())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def shutdown(self) -> str | None:
        """The kernel is shutting down: make sure every run a cell started has its
        record in the store, and say which runs are left interrupted (resumable
        from the next kernel: their driver, this process, is about to be gone)."""
        starting = {run.started for run in self.starting}
        if starting:
            await asyncio.wait(starting, timeout=10)
        engine = self._engine
        if engine is None or not engine.live_runs:
            return None
        ids = [h.id for h in engine.live_runs if not h.status.finished]
        message = (
            f"wfnb: the kernel is shutting down with {len(ids)} live run(s), left as "
            "interrupted in the store; the next kernel lists them on `%load_ext wfnb`: "
            + ", ".join(f"`%workflow resume {rid}`" for rid in ids)
        )
        log.warning("%s", message)
        return message
