"""What the ``%workflow`` subcommands compute, free of IPython so it is testable
with a plain event loop: tables of runs, a run's picture from the store, ages."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from wfnb.errors import DefinitionError, RunNotFound
from wfnb.instances import base_id
from wfnb.notebook import view
from wfnb.notebook.state import RunState, StepView, iteration_of
from wfnb.store.base import RunRecord, latest_attempts

if TYPE_CHECKING:
    from wfnb.engine import Engine, RunHandle
    from wfnb.model import RunResult

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or a bare number of seconds) -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise ValueError(f"cannot read age {text!r}: write e.g. 30m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def state_of_handle(engine: Engine, handle: RunHandle) -> RunState:
    result = handle.result()
    state = RunState.from_statuses(
        run_id=handle.id,
        workflow=handle.workflow.name,
        plan=engine.plan(handle.workflow),
        status=handle.status,
        statuses=handle.step_statuses,
        error=result.error,
    )
    if result.failed_step and result.error:
        state.steps[base_id(result.failed_step)].error = result.error
    return state


def state_of_result(engine: Engine, result: RunResult) -> RunState | None:
    """A finished result's picture: exact if the engine still knows the run,
    else rebuilt from the outputs and the failed step."""
    handle = engine.handle(result.run_id)
    if handle is not None:
        return state_of_handle(engine, handle)
    workflow = engine.workflows.get(result.workflow)
    if workflow is None:
        return None
    state = RunState(
        run_id=result.run_id,
        workflow=result.workflow,
        plan=engine.plan(workflow),
        status=result.status,
        error=result.error,
    )
    from wfnb.model import StepStatus

    for sid in result.outputs:
        if sid in state.steps:
            state.steps[sid].status = StepStatus.COMPLETED
    if result.failed_step and base_id(result.failed_step) in state.steps:
        failed = state.steps[base_id(result.failed_step)]
        failed.status, failed.error = StepStatus.FAILED, result.error
    return state


def html_of(engine: Engine, obj: Any) -> str | None:
    """The HTML repr of a `RunHandle`, `RunResult` or `NotebookRun`: summary + DAG."""
    from wfnb.engine import RunHandle
    from wfnb.notebook.runs import NotebookRun

    if isinstance(obj, NotebookRun):
        obj = obj.handle
        if obj is None:
            return None
    if isinstance(obj, RunHandle):
        state: RunState | None = state_of_handle(engine, obj)
    else:
        state = state_of_result(engine, obj)
    return None if state is None else view.summary_html(state)


async def state_from_store(engine: Engine, run_id: str) -> RunState:
    """A run's picture from its checkpoints (runs of earlier kernels)."""
    record = await engine.store.get_run(run_id=run_id)
    if record is None:
        raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
    workflow = await engine.definition(record)
    state = RunState(
        run_id=run_id,
        workflow=record.workflow,
        plan=engine.plan(workflow),
        status=record.status,
        error=record.error,
    )
    for instance, step in latest_attempts(await engine.store.get_steps(run_id=run_id)).items():
        view = state.steps.setdefault(base_id(instance), StepView())
        view.status, view.attempt = step.status, step.attempt
        view.started, view.ended, view.error = step.started_at, step.ended_at, step.error
        if instance != base_id(instance):
            view.iterations = max(view.iterations, iteration_of(instance) + 1)
    return state


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def runs_table(runs: Sequence[RunRecord]) -> tuple[str, str]:
    """HTML and plain-text tables of runs, newest first."""
    if not runs:
        return "<p>no runs</p>", "no runs"
    header = ("run", "workflow", "status", "created", "ended", "error")
    rows = [
        (
            r.run_id,
            r.workflow,
            r.status.value,
            _when(r.created_at),
            _when(r.ended_at),
            (r.error or "")[:120],
        )
        for r in runs
    ]
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    head = "".join(f"<th>{h}</th>" for h in header)
    plain = "\n".join("  ".join(str(c) for c in row) for row in (header, *rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>", plain


def workflows_table(engine: Engine) -> tuple[str, str]:
    if not engine.workflows:
        return "<p>no workflows registered in this kernel</p>", "no workflows"
    rows = [(wf.name, len(wf.steps), wf.definition_hash[:12]) for wf in engine.workflows.values()]
    body = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{k}</td><td><code>{h}</code></td></tr>"
        for n, k, h in rows
    )
    plain = "\n".join(f"{n}  {k} steps  {h}" for n, k, h in rows)
    return (
        f"<table><thead><tr><th>workflow</th><th>steps</th><th>definition</th></tr></thead>"
        f"<tbody>{body}</tbody></table>",
        plain,
    )


def interrupted_text(runs: Sequence[RunRecord]) -> str:
    noun = "run" if len(runs) == 1 else "runs"
    lines = [f"{len(runs)} interrupted {noun} (left running by a kernel that died):"]
    lines += [
        f"  {r.workflow} {r.run_id} started {_when(r.started_at or r.created_at)}: "
        f"`%workflow resume {r.run_id}`"
        for r in runs
    ]
    return "\n".join(lines)


def older_than(age: str) -> float:
    return time.time() - parse_age(age)


def split_inputs(line: str) -> tuple[str, str | None]:
    """``--inputs`` takes a Python expression; unquoted, it is the rest of the line."""
    head, sep, rest = line.partition("--inputs")
    if not sep or rest.lstrip().startswith(("'", '"')):
        return line, None
    return head, rest.strip()


def definition_message(name: str, line: str, cell: str, exc: DefinitionError) -> str:
    """``%%workflow etl: step 'b', line 4: ...`` and the line itself: short, no traceback."""
    text = f"%%workflow {name}: {exc}"
    lines = [line, *cell.splitlines()]
    if exc.line is not None and 1 <= exc.line <= len(lines):
        text += f"\n  {exc.line:>3} | {lines[exc.line - 1]}"
    return text
