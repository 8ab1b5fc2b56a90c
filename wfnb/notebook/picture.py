"""A run's summary, in HTML and in text: the header every view and repr shares,
and the final picture a finished run's display becomes.

The final picture is static (DESIGN §4): ``text/html`` with the summary, the SVG
DAG, a legend and the timeline, plus a ``text/plain`` summary, and no widget
model, so a reopened notebook, nbviewer, GitHub and nbconvert all show it.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from wfnb.model import StepStatus
from wfnb.notebook import palette, view
from wfnb.notebook.state import RunState, format_duration, short
from wfnb.timeline import Timeline


def as_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def facts(state: RunState) -> list[str]:
    """Status line facts: progress, duration, attempts (when more than one per step)."""
    parts = [f"{state.done}/{state.total} steps done"]
    if state.duration is not None:
        parts.append(format_duration(state.duration))
    retried = sum(1 for (_sid, attempt) in state.records if attempt > 1)
    if retried:
        noun = "retry" if retried == 1 else "retries"
        parts.append(f"{state.attempts} attempts ({retried} {noun})")
    return parts


def header_html(state: RunState, *, live: bool = False) -> str:
    """``etl run ab12: running · 2/5 steps done · 1.2 s · as of 12:03:41``. A live
    view says how old it is: a view whose kernel has gone keeps its last picture."""
    line = (
        f"<b>{html.escape(state.workflow)}</b> run <code>{state.run_id}</code>: "
        f"{palette.status_html(state.status)} · " + " · ".join(facts(state))
    )
    if live:
        line += f' · <span class="wfnb-age">as of {as_of(state.as_of)}</span>'
    return line


def header_text(state: RunState) -> str:
    return f"{state.workflow} {state.run_id}: {state.status.value} · " + " · ".join(facts(state))


def approvals(state: RunState) -> list[tuple[str, str]]:
    """(step, "approved by ann: ok") for each decided approval step."""
    found = []
    for sid, step in state.steps.items():
        if step.kind != "approval":
            continue
        if step.decision is not None:
            verb = "approved" if step.decision.get("approved", True) else "rejected"
            text = f"{verb} by {step.decision.get('by') or 'someone'}"
            if step.decision.get("comment"):
                text += f": {step.decision['comment']}"
            found.append((sid, text))
        elif step.status is StepStatus.FAILED and step.error and "rejected" in step.error:
            found.append((sid, step.error))
    return found


def errors(state: RunState) -> list[tuple[str, str, str | None]]:
    """(step, error, traceback) for each failed step; the run's error if none."""
    found = [
        (sid, step.error or "failed", step.traceback)
        for sid, step in state.steps.items()
        if step.status is StepStatus.FAILED
    ]
    if not found and state.error and state.status.finished and state.status.value == "failed":
        found.append(("", state.error, None))
    return found


def error_html(step: str, error: str, traceback: str | None = None) -> str:
    where = f"step {step!r}: " if step else ""
    text = html.escape(short(where + error, 2000))
    out = (
        f'<pre class="wfnb-error" style="color:{palette.ERROR_COLOR};white-space:pre-wrap;'
        f'margin:2px 0">{text}</pre>'
    )
    if traceback:
        out += (
            "<details><summary>traceback</summary>"
            f'<pre style="white-space:pre-wrap">{html.escape(traceback)}</pre></details>'
        )
    return out


def next_steps(state: RunState) -> list[str]:
    """The commands that carry on a failed or cancelled run."""
    if state.status.value not in ("failed", "cancelled"):
        return []
    commands = [f"%workflow resume {state.run_id}"]
    failed = state.failed_step
    if failed is not None:
        commands.append(f"%workflow rerun {state.run_id} --from {failed[0]}")
    return commands


def timeline_of(state: RunState) -> Timeline:
    kinds = {sid: step.kind for sid, step in state.steps.items()}
    return Timeline.from_records(
        list(state.records.values()),
        origin=state.started,
        kinds=kinds,
        now=state.ended or state.as_of,
    )


def summary_html(
    state: RunState, *, picture: bool = True, svg: str | None = None, live: bool = False
) -> str:
    """Header, approvals, errors, the DAG with its legend, and the timeline."""
    parts = [f'<div class="wfnb-run"><div>{header_html(state, live=live)}</div>']
    for sid, text in approvals(state):
        parts.append(f"<div>✔ <code>{html.escape(sid)}</code> {html.escape(text)}</div>")
    for sid, error, traceback in errors(state):
        parts.append(error_html(sid, error, traceback))
    if state.waiting:
        waits = ", ".join(html.escape(s) for s in state.waiting)
        parts.append(f"<div>waiting for approval: {waits}</div>")
    commands = next_steps(state)
    if commands:
        parts.append(
            "<div>carry on with " + " or ".join(f"<code>{c}</code>" for c in commands) + "</div>"
        )
    if picture:
        parts.append(view.picture_html(state, svg))
        parts.append(palette.legend_html())
        if state.records:
            parts.append(timeline_of(state)._repr_html_())
    parts.append("</div>")
    return "".join(parts)


def summary_text(state: RunState) -> str:
    """The same, as text: for terminals, nbval, and the ``text/plain`` of a notebook."""
    lines = [header_text(state)]
    lines += [f"  {sid}: {text}" for sid, text in approvals(state)]
    lines += [
        f"  error in {sid or 'run'}: {short(error, 500)}" for sid, error, _tb in errors(state)
    ]
    if state.waiting:
        lines.append("  waiting for approval: " + ", ".join(state.waiting))
    lines += [f"  carry on with: {c}" for c in next_steps(state)]
    width = max((len(s) for s in state.steps), default=4)
    for sid, step in state.steps.items():
        attempt = f" (attempt {step.attempt})" if step.attempt and step.attempt > 1 else ""
        lines.append(
            f"  {sid:<{width}}  {step.status.value:<16} "
            f"{format_duration(step.duration):>8}{attempt}"
        )
    return "\n".join(lines)


def final_bundle(state: RunState, svg: str | None = None) -> dict[str, Any]:
    """What a finished run's display becomes: static, no widget mimetype."""
    return {"text/html": summary_html(state, svg=svg), "text/plain": summary_text(state)}
