"""Every colour and shape the notebook draws with, in one place: the DAG's nodes,
the run's status in headers and the legend (the timeline, below the notebook
layer, keeps its own few colours in `wfnb.timeline`).

Fills are light and every node has a dark outline of its own hue, so a node
stays readable on JupyterLab's light and dark themes alike (the SVG background is
transparent; a default black outline vanished on the dark theme). States differ
by fill *and* by line style, never by colour alone.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from wfnb.model import RunStatus, StepStatus


@dataclass(frozen=True)
class Look:
    """How one node state is drawn: fill, outline, DOT style, and its legend name."""

    fill: str
    line: str
    style: str = "filled,rounded"
    width: str = "1.2"
    name: str = ""


#: one look per step status
STEP_LOOKS: dict[StepStatus, Look] = {
    StepStatus.PENDING: Look("#f5f5f5", "#757575", name="pending"),
    StepStatus.RUNNING: Look("#90caf9", "#0d47a1", width="2", name="running"),
    StepStatus.WAITING_APPROVAL: Look("#ffcc80", "#e65100", width="2", name="waiting for approval"),
    StepStatus.COMPLETED: Look("#a5d6a7", "#1b5e20", name="completed"),
    StepStatus.FAILED: Look("#ef9a9a", "#b71c1c", width="2", name="failed"),
    StepStatus.SKIPPED: Look("#ffffff", "#9e9e9e", "filled,rounded,dashed", name="skipped"),
    StepStatus.CANCELLED: Look("#bdbdbd", "#212121", "filled,diagonals", name="cancelled"),
}
#: a step between two attempts (backoff), and a pending step whose needs are done
#: but which waits for the rest of its wave (``schedule: waves``)
RETRYING = Look("#fff59d", "#f57f17", "filled,rounded,dashed", "2.2", "retrying (backoff)")
HELD = Look("#e8eaf6", "#3949ab", "filled,rounded,dotted", "1.6", "held by the wave barrier")

STATUS_COLORS: dict[StepStatus, str] = {status: look.fill for status, look in STEP_LOOKS.items()}

#: the run's status as text colour (headers, summaries)
RUN_COLORS: dict[RunStatus, str] = {
    RunStatus.PENDING: "#1565c0",
    RunStatus.RUNNING: "#1565c0",
    RunStatus.PAUSED: "#ef6c00",
    RunStatus.COMPLETED: "#2e7d32",
    RunStatus.FAILED: "#c62828",
    RunStatus.CANCELLED: "#616161",
}
ERROR_COLOR = "#c62828"


def status_html(status: RunStatus) -> str:
    """The run's status as a coloured word."""
    return f'<span style="color:{RUN_COLORS[status]};font-weight:bold">{status.value}</span>'


def legend_html() -> str:
    """One swatch per node state. Plain HTML, so its text takes the theme's colour."""
    looks = [*STEP_LOOKS.values(), RETRYING, HELD]
    items = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:10px">'
        f'<span style="display:inline-block;width:14px;height:10px;background:{look.fill};'
        f"border:{1 if look.width < '2' else 2}px {_line(look)} "
        f'{look.line};border-radius:3px;margin-right:4px"></span>{html.escape(look.name)}</span>'
        for look in looks
    )
    return f'<div class="wfnb-legend" style="font-size:11px;margin:2px 0">{items}</div>'


def _line(look: Look) -> str:
    return next((kind for kind in ("dashed", "dotted") if kind in look.style), "solid")
