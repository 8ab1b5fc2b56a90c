"""``%load_ext wfnb``: register the magics, the reprs and the session; report runs
earlier kernels left unfinished; and at the kernel's shutdown, make the records of
runs started here durable and say which are left interrupted.

A ``%%workflow`` cell, and a cell that is one ``%workflow`` command, becomes
``await <the magics>.finish_cell(<the magic's call>)`` (an input transformer wraps
the call IPython turned the cell into): magics cannot be async, but the
cell can, so it returns only once the run's record is durable (with ``--wait``,
once the run ended or paused), or once the command's result is shown, while the
loop stays free for widget clicks. Likewise every ``%wfsql`` at a cell's top level
(``df = %wfsql ...`` too) becomes ``(await <the magics>.wfsql_async(...))``: the
query waits for the DuckDB file on the store's thread, not on the kernel's loop.

``%reload_ext wfnb`` keeps the session (its engine and live runs). IPython answers
a second ``%load_ext`` of a loaded extension with "already loaded" and calls
nothing, so the ``load_ext`` magic is wrapped to show the report again for wfnb
(every other extension goes to IPython's own magic, which unload puts back).
"""

from __future__ import annotations

import ast
import asyncio
import sys
from typing import Any

from wfnb.engine import RunHandle
from wfnb.model import RunResult
from wfnb.notebook import commands
from wfnb.notebook.config import Wfnb
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.session import Session

HTML_TYPES: tuple[type, ...] = (RunHandle, RunResult, NotebookRun)


class _Loaded:
    """What load put in place, so unload can take exactly that away."""

    def __init__(
        self, session: Session, magics: Any, load_ext: Any, shutdown: Any, cells: Any
    ) -> None:
        self.session = session
        self.magics = magics
        self.load_ext = load_ext
        self.shutdown = shutdown
        self.cells = cells


_LOADED: dict[int, _Loaded] = {}
#: sessions kept across ``%reload_ext`` (shell id -> session), so live runs stay live
_KEPT: dict[int, Session] = {}


def load_ipython_extension(ip: Any) -> None:
    from wfnb.notebook.magics import WorkflowMagics, show_bundle

    settings = Wfnb(parent=ip)
    ip.configurables.append(settings)
    kept = _KEPT.pop(id(ip), None)
    session = Session(
        ip.user_ns, settings, show_bundle, engine=kept.started_engine if kept else None
    )
    if kept is not None:
        session.runs = kept.runs
    magics = WorkflowMagics(ip, session)
    ip.register_magics(magics)
    formatter = ip.display_formatter.formatters["text/html"]
    for cls in HTML_TYPES:
        formatter.for_type(cls, lambda obj: commands.html_of(session.engine, obj))
    load_ext = ip.magics_manager.magics["line"].get("load_ext")
    if load_ext is not None:
        ip.register_magic_function(_load_ext(ip, session, load_ext), "line", "load_ext")
    cells = _AwaitTheRun(ip, session)
    ip.input_transformers_post.append(cells.transform)
    ip.events.register("pre_run_cell", cells.pre_run_cell)
    _LOADED[id(ip)] = _Loaded(session, magics, load_ext, _hook_shutdown(ip, session), cells)
    session.report()


def unload_ipython_extension(ip: Any) -> None:
    loaded = _LOADED.pop(id(ip), None)
    if loaded is None:
        return
    session = loaded.session
    if session.started_engine is not None:
        _KEPT[id(ip)] = session
    for kind in ("line", "cell"):
        for name in ("workflow", "wfsql"):
            ip.magics_manager.magics[kind].pop(name, None)
    if loaded.load_ext is not None:
        ip.magics_manager.magics["line"]["load_ext"] = loaded.load_ext
    if loaded.cells.transform in ip.input_transformers_post:
        ip.input_transformers_post.remove(loaded.cells.transform)
    ip.events.unregister("pre_run_cell", loaded.cells.pre_run_cell)
    kernel = getattr(ip, "kernel", None)
    if loaded.shutdown is not None and kernel is not None:
        kernel.do_shutdown = loaded.shutdown
    formatter = ip.display_formatter.formatters["text/html"]
    for cls in HTML_TYPES:
        formatter.pop(cls, None)
    if session.settings in ip.configurables:
        ip.configurables.remove(session.settings)
    session.detach()


#: how IPython spells a ``%%workflow`` cell, or a ``%workflow`` line, once transformed
_MAGIC_CALLS = (
    "get_ipython().run_cell_magic('workflow', ",
    "get_ipython().run_line_magic('workflow', ",
)
_AWAIT = "await get_ipython().magics_manager.registry['WorkflowMagics'].finish_cell("


class _AwaitTheRun:
    """Makes ``%%workflow`` cells and ``%workflow`` lines that are a cell of their
    own await what they started, and tells the session
    whether the cell now running has it (a ``run_cell_magic`` called from code
    does not)."""

    def __init__(self, ip: Any, session: Session) -> None:
        self.ip = ip
        self.session = session

    def transform(self, lines: list[str]) -> list[str]:
        # Top-level await needs autoawait (on in every Jupyter kernel); without it
        # the cell would be a syntax error, so it returns at once instead.
        if not self.ip.autoawait:
            return lines
        if len(lines) == 1 and lines[0].startswith(_MAGIC_CALLS):
            return [_AWAIT + lines[0].rstrip("\n") + ")\n"]
        source = "".join(lines)
        awaiting = await_sql(source)
        return lines if awaiting == source else awaiting.splitlines(keepends=True)

    def pre_run_cell(self, info: Any) -> None:
        self.session.cell_awaits = _AWAIT in (getattr(info, "transformed_cell", None) or "")


_SQL_AWAIT = "(await get_ipython().magics_manager.registry['WorkflowMagics'].wfsql_async("
#: where ``await`` cannot stand even in a top-level-await cell
_OWN_SCOPE = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def await_sql(source: str) -> str:
    """``source`` with each ``%wfsql`` / ``%%wfsql`` call IPython made of it, outside
    any function, class or comprehension, rewritten to await ``wfsql_async`` with
    the same arguments. Anything else (or a cell that does not parse) is left as is."""
    if "'wfsql'" not in source:
        return source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    data = source.encode()  # ast's columns count UTF-8 bytes
    starts = [0]
    for line in data.split(b"\n"):
        starts.append(starts[-1] + len(line) + 1)

    def at(line: int | None, column: int | None) -> int:
        return starts[(line or 1) - 1] + (column or 0)

    edits = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, _OWN_SCOPE):
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Call) and _is_sql_magic(node):
            first, last = node.args[1], node.args[-1]
            args = data[
                at(first.lineno, first.col_offset) : at(last.end_lineno, last.end_col_offset)
            ]
            span = (at(node.lineno, node.col_offset), at(node.end_lineno, node.end_col_offset))
            edits.append((span, args))
    for (begin, end), args in sorted(edits, reverse=True):
        data = data[:begin] + _SQL_AWAIT.encode() + args + b"))" + data[end:]
    return data.decode()


def _is_sql_magic(node: ast.Call) -> bool:
    """``get_ipython().run_line_magic('wfsql', ...)`` or ``run_cell_magic`` alike."""
    if not isinstance(node.func, ast.Attribute):
        return False
    owner = node.func.value
    return (
        node.func.attr in ("run_line_magic", "run_cell_magic")
        and isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
        and len(node.args) in (2, 3)
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "wfsql"
    )


def _load_ext(ip: Any, session: Session, original: Any) -> Any:
    def load_ext(line: str) -> Any:
        if line.strip() == "wfnb" and "wfnb" in ip.extension_manager.loaded:
            session.report(always=True)
            return None
        return original(line)

    load_ext.__doc__ = original.__doc__
    return load_ext


def _hook_shutdown(ip: Any, session: Session) -> Any:
    """Wrap the kernel's ``do_shutdown`` (papermill, nbconvert and a closing
    JupyterLab all send a shutdown request): wait for runs still starting, so a
    run started by the last cell is in the store, and say which runs are left
    interrupted. It runs on the control thread; the session lives on the main loop."""
    kernel = getattr(ip, "kernel", None)
    original = getattr(kernel, "do_shutdown", None)
    if kernel is None or original is None:
        return None
    try:
        main = asyncio.get_running_loop()
    except RuntimeError:
        return None

    async def do_shutdown(restart: bool) -> Any:
        try:
            future = asyncio.run_coroutine_threadsafe(session.shutdown(), main)
            message = await asyncio.wait_for(asyncio.wrap_future(future), 15)
            if message:
                print(message, file=sys.stderr)
        except Exception:  # noqa: BLE001, S110 - a shutdown must go on whatever happens
            pass
        result = original(restart)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    kernel.do_shutdown = do_shutdown
    return original
