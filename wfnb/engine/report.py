"""A step's attempts as text: what ``%workflow show RUN STEP`` prints and what
`Engine.step_report` returns, each attempt with its status, time, error and the
user's frames of its traceback."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from wfnb.store.base import StepRecord


def format_attempts(records: Iterable[StepRecord]) -> str:
    """One block per attempt, oldest first::

    attempt 1: failed after 12 ms: ZeroDivisionError: division by zero
        Traceback (most recent call last):
          File "<cell>", line 2, in ratio
        ZeroDivisionError: division by zero
    attempt 2: completed after 3 ms
    """
    lines: list[str] = []
    for record in sorted(records, key=lambda r: r.attempt):
        line = f"attempt {record.attempt}: {record.status.value}"
        if record.started_at is not None and record.ended_at is not None:
            line += f" after {(record.ended_at - record.started_at) * 1000:.0f} ms"
        if record.error:
            line += f": {record.error}"
        lines.append(line)
        if record.traceback:
            lines.append(textwrap.indent(record.traceback.rstrip("\n"), "    "))
    return "\n".join(lines)
