"""What the ``%workflow`` subcommands compute, free of IPython so it is testable
with a plain event loop: tables of runs, a run's picture, a diff of two runs, the
steps whose code changed, ages. Every table comes as HTML and as readable text
(nbval and terminals see the text)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from wfnb.errors import DefinitionError, RunNotFound, WfnbError
from wfnb.model import RunResult
from wfnb.notebook import picture, view
from wfnb.notebook.state import RunState, format_duration, load_state, short, state_of_handle
from wfnb.store.base import RunRecord, StepRecord, latest_attempts

if TYPE_CHECKING:
    import pandas as pd

    from wfnb.engine import Engine

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: tables and views a user queries; DuckDB's "did you mean" may name its own catalog
USER_TABLES = ("workflows", "runs", "steps", "events", "run_timeline", "latest_steps")


def parse_age(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or a bare number of seconds) -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise ValueError(f"cannot read age {text!r}: write e.g. 30m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def older_than(age: str) -> float:
    return time.time() - parse_age(age)


# -- pictures ---------------------------------------------------------------------------


def html_of(engine: Engine, obj: Any) -> str | None:
    """The HTML repr of a `RunHandle`, `RunResult` or `NotebookRun`: summary + DAG,
    for runs this engine drives or drove recently (others: `%workflow show RUN`)."""
    from wfnb.notebook.runs import NotebookRun

    if isinstance(obj, NotebookRun):
        obj = obj.handle
        if obj is None:
            return None
    if isinstance(obj, RunResult):
        obj = engine.handle(obj.run_id)
        if obj is None:
            return None
    return picture.summary_html(state_of_handle(engine, obj))


async def final_picture(engine: Engine, run_id: str) -> RunState:
    """A run's state from the store, drawn afresh (runs of earlier kernels too)."""
    return await load_state(engine, run_id)


def bundle_pair(state: RunState) -> tuple[str, str]:
    """(HTML, text) of a run drawn from its state; ``dot`` runs here (a command the
    user asked for, not the live path)."""
    bundle = picture.final_bundle(state, view.render_svg(state))
    return bundle["text/html"], bundle["text/plain"]


# -- tables -------------------------------------------------------------------------------


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch).strftime("%m-%d %H:%M:%S")


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns, for text/plain."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<table class="wfnb-table" style="font-size:12px"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def runs_table(runs: Sequence[RunRecord]) -> tuple[str, str]:
    """HTML and text tables of runs, newest first: narrow enough to read (the
    error is cut short; `%workflow show RUN` has all of it)."""
    if not runs:
        return "<p>no runs</p>", "no runs"
    header = ("run", "workflow", "status", "created", "took", "error")
    rows = [
        (
            r.run_id,
            r.workflow,
            r.status.value,
            _when(r.created_at),
            format_duration(
                None if r.ended_at is None or r.started_at is None else r.ended_at - r.started_at
            ),
            short(r.error, 40),
        )
        for r in runs
    ]
    return html_table(header, rows), text_table(header, rows)


def runs_now(engine: Engine, workflow: str | None) -> tuple[str, str] | None:
    """The runs table at once, through the store's own SQL when it has one (the
    DuckDB store): a first display that already reads well (nbval compares the
    first one). None: the store has no SQL; list the runs in a task."""
    sql = getattr(engine.store, "sql", None)
    if sql is None:
        return None
    where = "WHERE parent_run_id IS NULL"
    if workflow:
        where += " AND workflow = '" + workflow.replace("'", "''") + "'"
    frame = sql(
        "SELECT run_id, workflow, status, epoch(created_at) AS created, "
        "epoch(ended_at) - epoch(started_at) AS took, error FROM runs "
        f"{where} ORDER BY created_at DESC LIMIT 50"
    )
    if frame.empty:
        return "<p>no runs</p>", "no runs"
    header = ("run", "workflow", "status", "created", "took", "error")
    rows = [
        (
            r.run_id,
            r.workflow,
            r.status,
            _when(r.created),
            format_duration(None if r.took != r.took or r.took is None else float(r.took)),
            short(r.error if isinstance(r.error, str) else "", 40),
        )
        for r in frame.itertuples()
    ]
    return html_table(header, rows), text_table(header, rows)


def workflows_table(engine: Engine) -> tuple[str, str]:
    if not engine.workflows:
        return "<p>no workflows registered in this kernel</p>", "no workflows"
    header = ("workflow", "steps", "definition")
    rows = [(wf.name, len(wf.steps), wf.definition_hash[:12]) for wf in engine.workflows.values()]
    return html_table(header, rows), text_table(header, rows)


def frame_pair(frame: pd.DataFrame) -> tuple[str, str]:
    return frame.to_html(index=False), frame.to_string(index=False)


def text_pair(text: str) -> tuple[str, str]:
    """(HTML, text) of plain text such as a step report: preformatted, escaped."""
    return f"<pre>{html.escape(text)}</pre>", text


# -- comparing runs --------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """Equal stored values; tables compare by content."""
    equals = getattr(a, "equals", None)
    if callable(equals) and type(a) is type(b):
        try:
            return bool(equals(b))
        except Exception:  # noqa: BLE001 - incomparable is different
            return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return False


async def diff_runs(engine: Engine, run_a: str, run_b: str) -> pd.DataFrame:
    """One row per step of either run: status, duration (ms) and attempts in each,
    and whether the stored outputs are the same."""
    import pandas as pd

    steps: list[list[StepRecord]] = []
    for run_id in (run_a, run_b):
        if await engine.store.get_run(run_id=run_id) is None:
            raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
        steps.append(await engine.store.get_steps(run_id=run_id))
    latest = [latest_attempts(s) for s in steps]
    counts = [{r.step_id: r.attempt for r in s} for s in steps]
    order = list(dict.fromkeys([*latest[0], *latest[1]]))
    rows = []
    for sid in order:
        a, b = latest[0].get(sid), latest[1].get(sid)
        if a is None or b is None:
            output = "only in " + ("B" if a is None else "A")
        elif not (a.has_output and b.has_output):
            output = "same" if a.has_output == b.has_output else "differs"
        else:
            output = "same" if _same(a.output, b.output) else "differs"
        rows.append(
            {
                "step": sid,
                "status_a": a.status.value if a else "",
                "status_b": b.status.value if b else "",
                "ms_a": _ms(a),
                "ms_b": _ms(b),
                "attempts_a": counts[0].get(sid, 0),
                "attempts_b": counts[1].get(sid, 0),
                "output": output,
            }
        )
    return pd.DataFrame(rows)


def _ms(record: StepRecord | None) -> float | None:
    if record is None or record.started_at is None or record.ended_at is None:
        return None
    return round((record.ended_at - record.started_at) * 1000, 1)


async def changed_steps(engine: Engine, run_id: str) -> tuple[str, list[str]]:
    """Steps whose code differs now from when ``run_id`` started (or whose
    function this kernel does not define)."""
    record = await engine.store.get_run(run_id=run_id)
    if record is None:
        raise RunNotFound(f"no run {run_id!r} in the store", run_id=run_id)
    workflow = engine.workflows.get(record.workflow) or await engine.definition(record)
    changed = []
    for sid, digest in record.code_hashes.items():
        try:
            now = engine.code_hashes(
                workflow.model_copy(update={"steps": {sid: workflow.steps[sid]}})
            )
        except (DefinitionError, KeyError):
            changed.append(f"{sid} (not defined here)")
            continue
        if now.get(sid, digest) != digest:
            changed.append(sid)
    return run_id, changed


def changed_pair(found: tuple[str, list[str]]) -> tuple[str, str]:
    run_id, changed = found
    if not changed:
        text = f"no step's code changed since run {run_id}"
    else:
        text = f"code changed since run {run_id}: " + ", ".join(changed)
    return f"<div>{html.escape(text)}</div>", text


# -- other -----------------------------------------------------------------------------


def sql_error(exc: WfnbError) -> str:
    """DuckDB suggests names from its own catalog ("did you mean pg_enum"): keep
    a suggestion only when it names one of our tables."""
    text = str(exc)
    match = re.search(r'\nDid you mean "([^"]+)"\?', text)
    if match and match.group(1) not in USER_TABLES and not match.group(1).startswith("output_"):
        text = text.replace(match.group(0), "\n(tables: " + ", ".join(USER_TABLES) + ")")
    return text


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
