"""The IPython magics: ``%%workflow``, ``%workflow ...``, ``%wfsql``. The only
module of wfnb that imports IPython: it parses what the user typed and hands it
to the `Session` (state, tasks, views) and to `commands` (what each computes).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping
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

from wfnb.errors import DefinitionError, StoreLocked, WfnbError
from wfnb.notebook import commands, view
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.session import Session, UsageProblem
from wfnb.notebook.state import RunState
from wfnb.parse import parse_workflow

# IPython's magic helpers are untyped; these names give them the types they have.
_Spec = Callable[[], None]
_M = TypeVar("_M", bound=Callable[..., Any])
magic_arguments: Callable[[], Callable[[_Spec], _Spec]] = _magic_arguments.magic_arguments
argument: Callable[..., Callable[[_Spec], _Spec]] = _magic_arguments.argument
parse_argstring: Callable[[_Spec, str], Any] = _magic_arguments.parse_argstring
display: Callable[..., Any] = _display


def show_bundle(bundle: Mapping[str, Any]) -> Any:
    """A display of a raw mime bundle, with a handle to update it in place."""
    return display(dict(bundle), raw=True, display_id=True)


def _magic(fn: _M) -> _M:
    """``@no_var_expand @needs_local_scope @line_cell_magic``, typed: ``{}`` and
    ``$`` in the line reach us as written, and ``--inputs`` sees the caller's scope."""
    register: Any = line_cell_magic
    return cast(_M, no_var_expand(needs_local_scope(register(fn))))


# Option specs (magic_arguments parsers), one per command.
@magic_arguments()
@argument("name", help="the workflow's name")
@argument("--timeout", type=float, help="workflow timeout in seconds")
@argument("--concurrency", type=int, help="max simultaneous runs of this workflow")
@argument("--schedule", choices=["waves", "eager"])
@argument("--no-run", action="store_true", help="define and register, do not run")
@argument("--inputs", help="a Python expression giving the inputs (a mapping)")
@argument("--wait", action="store_true", help="block until the run ends or pauses (headless)")
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

    def __init__(self, shell: Any, session: Session) -> None:
        super().__init__(shell)
        self.session = session

    @property
    def engine(self) -> Any:
        return self.session.engine

    # -- %%workflow and %workflow --------------------------------------------------

    @_magic
    def workflow(self, line: str, cell: str | None = None, local_ns: Any = None) -> Any:
        """%%workflow NAME [--timeout S] [--concurrency N] [--schedule waves|eager]
        [--no-run] [--inputs EXPR] [--wait] [-o VAR]: define a workflow (YAML body),
        start a run on the kernel loop, return at once; ``await _wf_run`` waits for it.

        %workflow list | runs [NAME] | show RUN [STEP] | graph NAME | timeline RUN |
        diff RUN_A RUN_B | resume RUN | approve RUN STEP [--comment TEXT] |
        reject RUN STEP [--comment TEXT] | cancel RUN | wait RUN |
        rerun RUN --from STEP | prune --older-than AGE
        """
        try:
            if cell is not None:
                return self._cell(line, cell, local_ns)
            command, _, rest = line.strip().partition(" ")
            handler = getattr(self, f"_cmd_{command}", None)
            if handler is None:
                raise UsageError(
                    f"unknown %workflow command {command!r}; "
                    + (self.workflow.__doc__ or "").split("%workflow", 2)[-1].strip()
                )
            return handler(rest.strip())
        except UsageProblem as exc:
            raise UsageError(str(exc)) from None
        except WfnbError as exc:
            print(f"%workflow {line.split(' ', 1)[0]}: {exc}", file=sys.stderr)
            return None

    def _cell(self, line: str, cell: str, local_ns: Any) -> Any:
        options, expression = commands.split_inputs(line)
        args = _parse(_cell_options, options)
        expression = expression or args.inputs
        inputs = None
        if expression:
            namespace = {**self.session.ns, **(local_ns or {})}
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
            state = RunState(run_id="-", workflow=wf.name, plan=self.engine.plan(wf), definition=wf)
            self.session.show(
                view.picture_html(state), f"registered workflow {wf.name} ({len(wf.steps)} steps)"
            )
            return None
        if args.wait:
            self.session.check_wait()
        run = self.session.start(self.engine.start(wf, inputs), wf.name, args.var)
        self.session.hand_over(run, wait=args.wait)
        return None

    async def finish_cell(self, value: Any = None) -> Any:
        """What a ``%%workflow`` cell (or a ``%workflow`` line alone in a cell)
        awaits, as the extension rewrites it; ``value`` is what the magic returned."""
        return await self.session.finish_cell(value)

    def _run(self, word: str) -> str:
        """A RUN argument: a run id, or a name the user bound to a run (``_wf_run``)."""
        return self.session.run_id(word)

    def _cmd_list(self, rest: str) -> None:
        self.session.show(*commands.workflows_table(self.engine))

    def _cmd_runs(self, rest: str) -> None:
        name = rest or None
        now = commands.runs_now(self.engine, name)
        if now is not None:
            self.session.show(*now)
            return
        self.session.later(
            self.engine.store.list_runs(workflow=name, limit=50), commands.runs_table
        )

    def _cmd_show(self, rest: str) -> None:
        parts = shlex.split(rest)
        if len(parts) == 2:  # one step: every attempt, with its traceback
            run_id, step_id = self._run(parts[0]), parts[1]
            self.session.later(self.engine.step_report(run_id, step_id), commands.text_pair)
            return
        run_id = self._run(_one(rest, "show RUN [STEP]"))
        self.session.later(commands.final_picture(self.engine, run_id), commands.bundle_pair)

    def _cmd_timeline(self, rest: str) -> None:
        run_id = self._run(_one(rest, "timeline RUN"))
        self.session.later(self.engine.timeline(run_id), lambda t: (t._repr_html_(), t.text()))

    def _cmd_diff(self, rest: str) -> None:
        parts = [self._run(part) for part in shlex.split(rest)]
        if len(parts) != 2:
            raise UsageError("usage: %workflow diff RUN_A RUN_B")
        self.session.later(commands.diff_runs(self.engine, *parts), commands.frame_pair)

    def _cmd_graph(self, rest: str) -> None:
        name = _one(rest, "graph NAME")
        wf = self.engine.workflows.get(name)
        if wf is None:
            known = ", ".join(sorted(self.engine.workflows)) or "none"
            raise UsageError(f"no workflow named {name!r} in this kernel (known: {known})")
        state = RunState(run_id="-", workflow=name, plan=self.engine.plan(wf), definition=wf)
        self.session.show(view.picture_html(state), f"workflow {name}: {len(wf.steps)} steps")

    def _cmd_resume(self, rest: str) -> None:
        run_id = self._run(_one(rest, "resume RUN"))
        self.session.watch(self.session.restart(run_id, None))

    def _decision(self, rest: str, approved: bool) -> None:
        args = _parse(_decide_options, rest)
        args.run = self._run(args.run)
        verb = "approved" if approved else "rejected"
        self.session.later(
            _awaitable(self.session.decide(args.run, args.step, approved, args.comment)),
            lambda _h: (f"{verb} <code>{args.step}</code>", f"{verb} {args.step} of {args.run}"),
        )

    def _cmd_approve(self, rest: str) -> None:
        self._decision(rest, True)

    def _cmd_reject(self, rest: str) -> None:
        self._decision(rest, False)

    def _cmd_cancel(self, rest: str) -> None:
        run_id = self._run(_one(rest, "cancel RUN"))
        self.session.later(
            self.engine.cancel(run_id),
            lambda r: (
                f"run <code>{run_id}</code>: {r.status.value}",
                f"{run_id}: {r.status.value}",
            ),
        )

    def _cmd_wait(self, rest: str) -> NotebookRun:
        """A magic cannot block the loop it runs on: this returns the run, which the
        next line awaits (``r = %workflow wait RUN`` then ``await r``)."""
        run_id = self._run(_one(rest, "wait RUN"))
        handle = self.engine.handle(run_id)
        if handle is None:
            raise UsageError(f"run {run_id} is not live in this kernel: `%workflow show {run_id}`")
        run = NotebookRun.of(self.engine, handle, until="done")
        self.session.bind(run)
        print(f"`await _wf_run` waits for run {run_id} to end")
        return run

    def _cmd_rerun(self, rest: str) -> None:
        args = _parse(_rerun_options, rest)
        args.run = self._run(args.run)
        self.session.later(commands.changed_steps(self.engine, args.run), commands.changed_pair)
        self.session.watch(self.session.restart(args.run, args.step))

    def _cmd_prune(self, rest: str) -> None:
        args = _parse(_prune_options, rest)
        try:
            before = commands.older_than(args.age)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self.session.later(
            self.engine.store.prune(older_than=before, keep_failed=args.keep_failed),
            lambda n: (f"pruned {n} runs", f"pruned {n} runs"),
        )

    # -- %wfsql ----------------------------------------------------------------------

    @_magic
    def wfsql(self, line: str, cell: str | None = None, local_ns: Any = None) -> Any:
        """%wfsql [-o VAR] SELECT ... | %%wfsql [-o VAR]: read-only SQL over the history
        (tables workflows, runs, steps, events); returns a pandas DataFrame.

        In a cell (``%wfsql`` on a line of its own, ``df = %wfsql ...``, ``%%wfsql``)
        the extension makes the cell await `wfsql_async` instead, so waiting for a
        file another process holds never blocks the kernel's loop. Called from code
        (``run_line_magic``), it cannot await: it blocks until the answer."""
        var, query, store = self._sql_request(line, cell)
        try:
            frame = store.sql(query)
        except WfnbError as exc:
            return self._sql_failed(exc)
        return self._sql_result(var, frame)

    async def wfsql_async(self, line: str, cell: str | None = None) -> Any:
        """What a ``%wfsql`` in a cell becomes: the query runs on the store's own
        thread while the loop goes on (`DuckDBStore.query`)."""
        var, query, store = self._sql_request(line, cell)
        try:
            frame = await store.query(query)
        except WfnbError as exc:
            return self._sql_failed(exc)
        return self._sql_result(var, frame)

    def _sql_request(self, line: str, cell: str | None) -> tuple[str | None, str, Any]:
        """The variable to bind, the query, and the store to ask."""
        var = None
        if cell is None:
            query = line
            if line.lstrip().startswith(("-o ", "--output ")):
                _flag, var, query = line.split(None, 2)
        else:
            args = _parse(_sql_options, line)
            var, query = args.var or args.var_pos, cell
        store = self.engine.store
        if not hasattr(store, "query"):
            raise UsageError(
                "%wfsql needs the DuckDB store; this kernel uses " + type(store).__name__
            )
        return var, query.strip(), store

    def _sql_failed(self, exc: WfnbError) -> None:
        # "StoreLocked: the store PATH is in use by another process (host, pid, since)"
        kind = f"{type(exc).__name__}: " if isinstance(exc, StoreLocked) else ""
        print(f"%wfsql: {kind}{commands.sql_error(exc)}", file=sys.stderr)
        return None

    def _sql_result(self, var: str | None, frame: Any) -> Any:
        if var:
            self.session.ns[var] = frame
        return frame


async def _awaitable(value: Any) -> Any:
    return await value


def _one(rest: str, usage: str) -> str:
    parts = shlex.split(rest)
    if len(parts) != 1:
        raise UsageError(f"usage: %workflow {usage}")
    return parts[0]
