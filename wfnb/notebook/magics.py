"""The IPython magics: ``%%workflow``, ``%workflow ...``, ``%wfsql``. The only
module of wfnb that imports IPython.

Magics cannot be async and a cell must return for widget clicks to be processed
(DESIGN §4, §6), so every magic that needs the engine's coroutines schedules them
as tasks on the kernel's running loop and returns; results that arrive later are
written into a display created by the magic (display handles reach the right
output even after the cell has finished). Nothing here calls ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import html
import shlex
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

from IPython.core import magic_arguments as _magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    needs_local_scope,
    no_var_expand,
)
from IPython.display import display as _display

from wfnb.engine import Engine, RunHandle
from wfnb.errors import DefinitionError, WfnbError
from wfnb.model import RunResult
from wfnb.notebook import commands, view
from wfnb.notebook.config import Wfnb, make_backend, make_store
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.state import RunState
from wfnb.notebook.widgets import LiveView
from wfnb.parse import parse_workflow

HTML_TYPES: tuple[type, ...] = (RunHandle, RunResult, NotebookRun)

# IPython's magic helpers are untyped; these names give them the types they have.
_Spec = Callable[[], None]
_M = TypeVar("_M", bound=Callable[..., Any])
magic_arguments: Callable[[], Callable[[_Spec], _Spec]] = _magic_arguments.magic_arguments
argument: Callable[..., Callable[[_Spec], _Spec]] = _magic_arguments.argument
parse_argstring: Callable[[_Spec, str], Any] = _magic_arguments.parse_argstring
display: Callable[..., Any] = _display


def _magic(fn: _M) -> _M:
    """``@no_var_expand @needs_local_scope @line_cell_magic``, typed: ``{}`` and
    ``$`` in the line reach us as written, and ``--inputs`` sees the caller's scope."""
    register: Any = line_cell_magic
    return cast(_M, no_var_expand(needs_local_scope(register(fn))))


def _loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise UsageError(
            "wfnb runs workflows on the kernel's event loop: use it in a Jupyter kernel "
            "(ipykernel), where cells run on a running loop"
        ) from None


def _show(html_text: str, plain: str, *, update: Any = None) -> Any:
    bundle = {"text/html": html_text, "text/plain": plain}
    if update is not None:
        update.update(bundle, raw=True)
        return update
    return display(bundle, raw=True, display_id=True)


# Option specs (magic_arguments parsers), one per command.
@magic_arguments()
@argument("name", help="the workflow's name")
@argument("--timeout", type=float, help="workflow timeout in seconds")
@argument("--concurrency", type=int, help="max simultaneous runs of this workflow")
@argument("--schedule", choices=["waves", "eager"])
@argument("--no-run", action="store_true", help="define and register, do not run")
@argument("--inputs", help="a Python expression giving the inputs (a mapping)")
@argument("-o", "--output", dest="var", help="also bind the run to this variable")
def _cell_options() -> None:
    """%%workflow NAME [options]: define a workflow (YAML body) and start a run."""


@magic_arguments()
@argument("run")
@argument("step")
@argument("--comment", default=None)
def _decide_options() -> None:
    """%workflow approve|reject RUN STEP [--comment TEXT]"""


@magic_arguments()
@argument("run")
@argument("--from", dest="step", required=True, help="the first step to run again")
def _rerun_options() -> None:
    """%workflow rerun RUN --from STEP"""


@magic_arguments()
@argument("--older-than", dest="age", required=True, help="e.g. 30m, 12h, 7d")
@argument("--keep-failed", action="store_true")
def _prune_options() -> None:
    """%workflow prune --older-than AGE [--keep-failed]"""


@magic_arguments()
@argument("-o", "--output", dest="var", help="bind the DataFrame to this variable")
@argument("var_pos", nargs="?", help="same as -o")
def _sql_options() -> None:
    """%%wfsql [-o VAR]"""


def _parse(spec: Callable[[], None], line: str) -> Any:
    """magic_arguments keeps the quotes around a quoted value (IPython splits with
    posix=False); a user who quotes ``--comment "looks good"`` means the words."""
    args = parse_argstring(spec, line)
    for key, value in vars(args).items():
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] in "'\"":
            setattr(args, key, value[1:-1])
    return args


@magics_class
class WorkflowMagics(Magics):
    """``%%workflow``, ``%workflow`` and ``%wfsql``."""

    def __init__(self, shell: Any, settings: Wfnb, engine: Engine | None = None) -> None:
        super().__init__(shell)
        self.settings = settings
        self._engine = engine
        settings.observe(self._db_changed, names=["db", "backend"])

    # -- the engine --------------------------------------------------------------

    @property
    def ns(self) -> dict[str, Any]:
        """The user namespace (a Magics made by the extension always has a shell)."""
        assert self.shell is not None
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    @property
    def engine(self) -> Engine:
        """Made at first use, so a ``%config Wfnb.db`` (or ``.backend``) before it
        takes effect."""
        if self._engine is None:
            self._engine = Engine(
                store=make_store(self.settings.db),
                namespace=self.ns,
                backend=make_backend(self.settings.backend),
            )
        self._engine.agent = self.settings.agent_defaults()  # %config may change it any time
        return self._engine

    def _db_changed(self, change: Mapping[str, Any]) -> None:
        old = self._engine
        if old is None:
            return
        if old.live_runs:
            print(
                f"wfnb: runs are live; the new Wfnb.{change['name']} is used once they end "
                "and you set it again",
                file=sys.stderr,
            )
            return
        self._engine = None
        self._spawn(old.close())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = _loop().create_task(coro)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    def _later(
        self, coro: Coroutine[Any, Any, Any], render: Callable[[Any], tuple[str, str]]
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a task; show ``render(result)`` (or the error) in a
        display made now, so it lands under this cell whenever it finishes."""
        handle = _show("<i>…</i>", "…")
        task = self._spawn(coro)

        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                _show("<i>cancelled</i>", "cancelled", update=handle)
            elif t.exception() is not None:
                exc = t.exception()
                text = f"{type(exc).__name__}: {exc}"
                _show(f'<pre style="color:#c62828">{html.escape(text)}</pre>', text, update=handle)
            else:
                _show(*render(t.result()), update=handle)

        task.add_done_callback(done)
        return task

    def _bind(self, run: NotebookRun, var: str | None = None) -> None:
        self.ns["_wf_run"] = run
        if var:
            self.ns[var] = run

    def _watch(self, run: NotebookRun) -> LiveView | None:
        if not self.settings.live_view:
            return None
        return LiveView(
            self.engine,
            run,
            display=lambda bundle: display(bundle, raw=True, display_id=True),
            interval=self.settings.redraw_interval,
        )

    def _start(
        self, coro: Coroutine[Any, Any, RunHandle], workflow: str, var: str | None = None
    ) -> NotebookRun:
        run = NotebookRun(self.engine, asyncio.ensure_future(coro, loop=_loop()), workflow=workflow)
        self._bind(run, var)
        self._watch(run)
        return run

    # -- %%workflow and %workflow --------------------------------------------------

    @_magic
    def workflow(self, line: str, cell: str | None = None, local_ns: Any = None) -> Any:
        """%%workflow NAME [--timeout S] [--concurrency N] [--schedule waves|eager]
        [--no-run] [--inputs EXPR] [-o VAR]: define a workflow (YAML body), start a
        run on the kernel loop, return at once; ``await _wf_run`` waits for it.

        %workflow list | runs [NAME] | show RUN | graph NAME | resume RUN |
        approve RUN STEP [--comment TEXT] | reject RUN STEP [--comment TEXT] |
        cancel RUN | wait RUN | rerun RUN --from STEP | prune --older-than AGE
        """
        if cell is not None:
            return self._cell(line, cell, local_ns)
        command, _, rest = line.strip().partition(" ")
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise UsageError(
                f"unknown %workflow command {command!r}; "
                + (self.workflow.__doc__ or "").split("%workflow", 2)[-1].strip()
            )
        try:
            return handler(rest.strip())
        except WfnbError as exc:
            print(f"%workflow {command}: {exc}", file=sys.stderr)
            return None

    def _cell(self, line: str, cell: str, local_ns: Any) -> None:
        options, expression = commands.split_inputs(line)
        args = _parse(_cell_options, options)
        expression = expression or args.inputs
        inputs = None
        if expression:
            namespace = {**self.ns, **(local_ns or {})}
            try:
                inputs = eval(expression, namespace)  # noqa: S307 - the user's own cell
            except Exception as exc:
                raise UsageError(f"--inputs {expression!r} failed: {exc}") from None
            if not isinstance(inputs, Mapping):
                raise UsageError(f"--inputs must give a mapping, not {type(inputs).__name__}")
        try:
            wf = parse_workflow(
                cell,
                name=args.name,
                line_offset=1,
                timeout=args.timeout,
                concurrency=args.concurrency,
                schedule=args.schedule,
            )
            if not args.no_run:  # callables may be defined after a --no-run cell
                self.engine.check_runnable(wf)
            self.engine.register(wf)
        except DefinitionError as exc:
            print(commands.definition_message(args.name, line, cell, exc), file=sys.stderr)
            return None
        if args.no_run:
            state = RunState(run_id="-", workflow=wf.name, plan=self.engine.plan(wf))
            _show(
                view.picture_html(state), f"registered workflow {wf.name} ({len(wf.steps)} steps)"
            )
            return None
        self._start(self.engine.start(wf, inputs), wf.name, args.var)
        return None

    def _cmd_list(self, rest: str) -> None:
        _show(*commands.workflows_table(self.engine))

    def _cmd_runs(self, rest: str) -> None:
        name = rest or None
        self._later(self.engine.store.list_runs(workflow=name, limit=50), commands.runs_table)

    def _cmd_show(self, rest: str) -> None:
        run_id = _one(rest, "show RUN")
        handle = self.engine.handle(run_id)
        if handle is not None:
            state = commands.state_of_handle(self.engine, handle)
            _show(view.summary_html(state), f"{state.workflow} {run_id}: {state.status.value}")
            return
        self._later(
            commands.state_from_store(self.engine, run_id),
            lambda s: (view.summary_html(s), f"{s.workflow} {run_id}: {s.status.value}"),
        )

    def _cmd_graph(self, rest: str) -> None:
        name = _one(rest, "graph NAME")
        wf = self.engine.workflows.get(name)
        if wf is None:
            known = ", ".join(sorted(self.engine.workflows)) or "none"
            raise UsageError(f"no workflow named {name!r} in this kernel (known: {known})")
        state = RunState(run_id="-", workflow=name, plan=self.engine.plan(wf))
        _show(view.picture_html(state), f"workflow {name}: {len(wf.steps)} steps")

    def _cmd_resume(self, rest: str) -> NotebookRun:
        run_id = _one(rest, "resume RUN")
        return self._resume(run_id)

    def _resume(self, run_id: str, *, watch: bool = True) -> NotebookRun:
        run = NotebookRun(
            self.engine, _loop().create_task(self.engine.resume(run_id)), workflow=f"run {run_id}"
        )
        self._bind(run)
        if watch:
            self._watch(run)
        return run

    def _decision(self, rest: str, approved: bool) -> None:
        args = _parse(_decide_options, rest)
        verb = "approved" if approved else "rejected"
        self._later(
            self.engine.approve(args.run, args.step, approved=approved, comment=args.comment),
            lambda _h: (f"{verb} <code>{args.step}</code>", f"{verb} {args.step} of {args.run}"),
        )

    def _cmd_approve(self, rest: str) -> None:
        self._decision(rest, True)

    def _cmd_reject(self, rest: str) -> None:
        self._decision(rest, False)

    def _cmd_cancel(self, rest: str) -> None:
        run_id = _one(rest, "cancel RUN")
        self._later(
            self.engine.cancel(run_id),
            lambda r: (
                f"run <code>{run_id}</code>: {r.status.value}",
                f"{run_id}: {r.status.value}",
            ),
        )

    def _cmd_wait(self, rest: str) -> NotebookRun:
        """A magic cannot block the loop it runs on: this returns the run, which the
        next line awaits (``r = %workflow wait RUN`` then ``await r``)."""
        run_id = _one(rest, "wait RUN")
        handle = self.engine.handle(run_id)
        if handle is None:
            raise UsageError(f"run {run_id} is not live in this kernel: `%workflow show {run_id}`")
        run = NotebookRun.of(self.engine, handle, until="done")
        self._bind(run)
        print(f"`await _wf_run` waits for run {run_id} to end")
        return run

    def _cmd_rerun(self, rest: str) -> NotebookRun | None:
        args = _parse(_rerun_options, rest)
        return self._start(self.engine.rerun(args.run, args.step), f"rerun of {args.run}")

    def _cmd_prune(self, rest: str) -> None:
        args = _parse(_prune_options, rest)
        try:
            before = commands.older_than(args.age)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self._later(
            self.engine.store.prune(older_than=before, keep_failed=args.keep_failed),
            lambda n: (f"pruned {n} runs", f"pruned {n} runs"),
        )

    # -- %wfsql ----------------------------------------------------------------------

    @_magic
    def wfsql(self, line: str, cell: str | None = None, local_ns: Any = None) -> Any:
        """%wfsql [-o VAR] SELECT ... | %%wfsql [-o VAR]: read-only SQL over the history
        (tables workflows, runs, steps, events); returns a pandas DataFrame."""
        var = None
        if cell is None:
            query = line
            if line.lstrip().startswith(("-o ", "--output ")):
                _flag, var, query = line.split(None, 2)
        else:
            args = _parse(_sql_options, line)
            var, query = args.var or args.var_pos, cell
        sql = getattr(self.engine.store, "sql", None)
        if sql is None:
            raise UsageError(
                "%wfsql needs the DuckDB store; this kernel uses "
                + type(self.engine.store).__name__
            )
        try:
            frame = sql(query.strip())
        except WfnbError as exc:
            print(f"%wfsql: {exc}", file=sys.stderr)
            return None
        if var:
            self.ns[var] = frame
        return frame

    # -- rich reprs and the load report --------------------------------------------

    def html_repr(self, obj: Any) -> str | None:
        """``_repr_html_`` of runs and results: a compact summary and the DAG."""
        return commands.html_of(self.engine, obj)

    def report_interrupted(self) -> asyncio.Task[Any] | None:
        """Show runs a dead kernel left running, each with a Resume button. Returns
        the task that looks them up (its result: the panel, or None)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # not in a kernel: nothing can be resumed from here anyway
        from wfnb.notebook.widgets import resume_panel

        handle = display({"text/plain": ""}, raw=True, display_id=True)
        engine = self.engine  # the engine of this moment, even if the task starts later

        async def report() -> Any:
            try:
                runs = await engine.interrupted_runs()
            except WfnbError as exc:  # e.g. another kernel holds the store
                text = f"wfnb: could not look for interrupted runs: {exc}"
                handle.update({"text/plain": text}, raw=True)
                return None
            if not runs:
                return None
            panel = resume_panel(runs, loop, on_resume=lambda rid: self._resume(rid, watch=False))
            bundle = dict(panel._repr_mimebundle_() or {})
            bundle["text/plain"] = commands.interrupted_text(runs)
            handle.update(bundle, raw=True)
            return panel

        task = loop.create_task(report())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task


def _one(rest: str, usage: str) -> str:
    parts = shlex.split(rest)
    if len(parts) != 1:
        raise UsageError(f"usage: %workflow {usage}")
    return parts[0]


_KEPT: dict[int, Engine] = {}


def load_ipython_extension(ip: Any) -> None:
    settings = Wfnb(parent=ip)
    ip.configurables.append(settings)
    # %reload_ext keeps the engine, so runs started before the reload stay live.
    magics = WorkflowMagics(ip, settings, engine=_KEPT.pop(id(ip), None))
    ip.register_magics(magics)
    formatter = ip.display_formatter.formatters["text/html"]
    for cls in HTML_TYPES:
        formatter.for_type(cls, magics.html_repr)
    ip._wfnb_magics = magics
    magics.report_interrupted()


def unload_ipython_extension(ip: Any) -> None:
    magics: WorkflowMagics | None = getattr(ip, "_wfnb_magics", None)
    if magics is None:
        return
    del ip._wfnb_magics
    if magics._engine is not None:
        _KEPT[id(ip)] = magics._engine
    for kind in ("line", "cell"):
        for name in ("workflow", "wfsql"):
            ip.magics_manager.magics[kind].pop(name, None)
    formatter = ip.display_formatter.formatters["text/html"]
    for cls in HTML_TYPES:
        formatter.pop(cls, None)
    if magics.settings in ip.configurables:
        ip.configurables.remove(magics.settings)
    magics.settings.unobserve(magics._db_changed, names="db")
