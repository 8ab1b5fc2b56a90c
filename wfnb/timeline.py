"""A run's timeline (Gantt) as SVG: one row per step, one bar per attempt.

Pure drawing from store records (`StepRecord`), so the engine, scripts and the
notebook share it and nothing here imports the notebook, IPython or a plotting
library. Hand-written SVG, not matplotlib/plotly/altair: a live view redraws it a
few times a second on a render thread, and building this string for 1,000 attempts
takes a few milliseconds with no import cost, where a plotting library costs a
heavy import (matplotlib ≈ 0.5 s) and tens of milliseconds per figure, or needs a
JavaScript frontend that nbviewer and GitHub do not run.

Styles: an attempt is a bar coloured by its status; a retry (attempt 2, 3, …) has a
thick orange left edge; the backoff between two attempts is a dashed line; an
approval step's bar is hatched (the time a person took). Colours are light fills
with dark outlines on a light panel, readable on light and dark themes.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wfnb.model import StepStatus
from wfnb.store.base import StepRecord

_FILL = {
    StepStatus.PENDING: "#eeeeee",
    StepStatus.RUNNING: "#90caf9",
    StepStatus.WAITING_APPROVAL: "#ffcc80",
    StepStatus.COMPLETED: "#a5d6a7",
    StepStatus.FAILED: "#ef9a9a",
    StepStatus.SKIPPED: "#ffffff",
    StepStatus.CANCELLED: "#bdbdbd",
}
_LINE = "#37474f"
_RETRY = "#f57f17"
#: rows drawn at most; the others are counted in a last line (the text table has all)
MAX_ROWS = 150
_ROW, _LABEL, _WIDTH = 16, 150, 760


@dataclass(frozen=True)
class Bar:
    """One attempt: seconds from the run's start (``end`` None: still going)."""

    step_id: str
    attempt: int
    status: StepStatus
    start: float
    end: float | None
    approval: bool = False
    error: str | None = None


class Timeline:
    """Every attempt of a run against time. Shows itself as SVG in a notebook
    (``_repr_html_``/``_repr_svg_``) and as a text table elsewhere (``repr``)."""

    def __init__(self, bars: Sequence[Bar], *, title: str = "", now: float = 0.0) -> None:
        self.bars = list(bars)
        self.title = title
        #: seconds from the start to "now" (the right edge while a run is live)
        self.now = now

    @classmethod
    def from_records(
        cls,
        steps: Sequence[StepRecord],
        *,
        origin: float | None = None,
        kinds: Mapping[str, str] | None = None,
        title: str = "",
        now: float | None = None,
    ) -> Timeline:
        """``steps``: attempts as the store keeps them; ``origin``: the run's start
        (default: the first attempt's); ``kinds``: step id -> kind, so approval
        waits are drawn as such (instances ``b[2]`` look up ``b``)."""
        started = [s for s in steps if s.started_at is not None]
        if origin is None:
            origin = min((s.started_at for s in started if s.started_at), default=0.0)
        clock = time.time() if now is None else now
        kinds = kinds or {}
        bars = [
            Bar(
                s.step_id,
                s.attempt,
                s.status,
                (s.started_at or origin) - origin,
                None if s.ended_at is None else s.ended_at - origin,
                kinds.get(s.step_id.split("[", 1)[0]) == "approval",
                s.error,
            )
            for s in sorted(started, key=lambda s: (s.started_at or 0.0, s.attempt))
        ]
        last = max((b.end or 0.0 for b in bars), default=0.0)
        live = any(b.end is None for b in bars)
        return cls(bars, title=title, now=max(last, clock - origin) if live else last)

    # -- text ----------------------------------------------------------------------

    def rows(self) -> list[tuple[str, int, str, float, float | None]]:
        """(step, attempt, status, start s, end s) per attempt, in start order."""
        return [(b.step_id, b.attempt, b.status.value, b.start, b.end) for b in self.bars]

    def text(self) -> str:
        if not self.bars:
            return f"{self.title}: no attempts yet" if self.title else "no attempts yet"
        width = max(4, *(len(b.step_id) for b in self.bars))
        lines = [self.title] if self.title else []
        lines.append(f"{'step':<{width}}  attempt  status            start s     end s")
        for b in self.bars:
            end = "" if b.end is None else f"{b.end:9.3f}"
            kind = " (approval)" if b.approval else ""
            lines.append(
                f"{b.step_id:<{width}}  {b.attempt:>7}  {b.status.value:<16}  "
                f"{b.start:8.3f}  {end:>8}{kind}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    # -- SVG -------------------------------------------------------------------------

    def svg(self) -> str:
        order = list(dict.fromkeys(b.step_id for b in self.bars))  # first start first
        shown = order[:MAX_ROWS]
        row_of = {sid: i for i, sid in enumerate(shown)}
        span = max(self.now, 1e-3)
        plot = _WIDTH - _LABEL - 10
        scale = plot / span
        height = 28 + _ROW * (len(shown) + (1 if len(order) > len(shown) else 0)) + 8
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="wfnb-timeline" width="{_WIDTH}" '
            f'height="{height}" viewBox="0 0 {_WIDTH} {height}" font-family="Helvetica,Arial,'
            f'sans-serif" font-size="10">',
            '<defs><pattern id="wfnb-hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
            ' patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffcc80"/>'
            '<line x1="0" y1="0" x2="0" y2="6" stroke="#e65100" stroke-width="2"/>'
            "</pattern></defs>",
            f'<rect x="0" y="0" width="{_WIDTH}" height="{height}" rx="4" fill="#fcfcfc" '
            f'stroke="#cfd8dc"/>',
        ]
        for tick in _ticks(span):
            x = _LABEL + tick * scale
            out.append(
                f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 6}" stroke="#eceff1"/>'
                f'<text x="{x:.1f}" y="14" fill="#546e7a" text-anchor="middle">'
                f"{_fmt(tick)}</text>"
            )
        for sid, index in row_of.items():
            y = 24 + index * _ROW
            out.append(
                f'<text x="{_LABEL - 6}" y="{y + 11}" fill="#263238" text-anchor="end">'
                f"{html.escape(_clip(sid))}</text>"
            )
        previous: dict[str, Bar] = {}
        for b in (bar for bar in self.bars if bar.step_id in row_of):
            row = row_of[b.step_id]
            y = 24 + row * _ROW
            x0 = _LABEL + b.start * scale
            end = self.now if b.end is None else b.end
            w = max(2.0, (end - b.start) * scale)
            before = previous.get(b.step_id)
            if before is not None and before.end is not None and b.start > before.end:
                gap0 = _LABEL + before.end * scale
                out.append(
                    f'<line class="wfnb-backoff" x1="{gap0:.1f}" y1="{y + 7}" x2="{x0:.1f}" '
                    f'y2="{y + 7}" stroke="{_RETRY}" stroke-width="1.5" stroke-dasharray="3,2">'
                    f"<title>{html.escape(b.step_id)}: backoff {_fmt(b.start - before.end)} "
                    f"before attempt {b.attempt}</title></line>"
                )
            previous[b.step_id] = b
            fill = "url(#wfnb-hatch)" if b.approval else _FILL[b.status]
            cls = "wfnb-approval" if b.approval else "wfnb-retry" if b.attempt > 1 else "wfnb-bar"
            tip = (
                f"{b.step_id} attempt {b.attempt}: {b.status.value}, "
                f"{_fmt(b.start)} → {'now' if b.end is None else _fmt(b.end)}"
                + (f" — {b.error}" if b.error else "")
            )
            out.append(
                f'<rect class="{cls}" x="{x0:.1f}" y="{y + 2}" width="{w:.1f}" height="11" '
                f'rx="2" fill="{fill}" stroke="{_LINE}" stroke-width="0.8">'
                f"<title>{html.escape(tip)}</title></rect>"
            )
            if b.attempt > 1:
                out.append(
                    f'<rect x="{x0:.1f}" y="{y + 2}" width="2.5" height="11" fill="{_RETRY}"/>'
                )
        if len(order) > len(shown):
            y = 24 + len(shown) * _ROW
            out.append(
                f'<text x="{_LABEL - 6}" y="{y + 11}" fill="#546e7a" text-anchor="end">'
                f"+{len(order) - len(shown)} more steps</text>"
            )
        out.append("</svg>")
        return "".join(out)

    def _repr_svg_(self) -> str:
        return self.svg()

    def _repr_html_(self) -> str:
        title = f"<div><b>{html.escape(self.title)}</b></div>" if self.title else ""
        return f'<div class="wfnb-timeline" style="overflow:auto">{title}{self.svg()}</div>'


def _ticks(span: float) -> list[float]:
    step = 10 ** len(str(int(span))) / 10 if span >= 1 else 0.1
    while span / step > 8:
        step *= 2
    while span / step < 3 and step > 0.001:
        step /= 2
    return [i * step for i in range(int(span / step) + 1)]


def _fmt(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _clip(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
