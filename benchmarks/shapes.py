"""The workload shapes and the floors every benchmark reports beside its figures.

One definition of each shape serves wfnb (`bench_engine.py`), the live view
(`bench_view.py`) and the peers (`peers.py`), so a row of one table means the same
workload as the row of another. The floors are what no engine can beat on this
machine, measured in the same process as the figures they qualify:

- bare asyncio: the same no-op coroutines, awaited in a chain or gathered;
- one fsync: ``write`` + ``os.fsync`` of a small record to a file in the same
  directory as the store, the cost of one durable acknowledgement. A durable chain
  step must pay at least one (its after-record must be on disk before the next
  step starts).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEPS = 200


@dataclass(frozen=True)
class Shape:
    """A DAG as plain data: step id -> the ids it needs, in a valid run order."""

    name: str  # a workflow name: chain, fanout, waves
    label: str
    needs: dict[str, list[str]]

    @property
    def size(self) -> int:
        return len(self.needs)

    def waves(self) -> list[list[str]]:
        """The steps grouped by depth: what a wave scheduler runs together."""
        depth: dict[str, int] = {}
        for sid, needs in self.needs.items():
            depth[sid] = 1 + max((depth[n] for n in needs), default=-1)
        grouped: dict[int, list[str]] = {}
        for sid, d in depth.items():
            grouped.setdefault(d, []).append(sid)
        return [grouped[d] for d in sorted(grouped)]


def chain(n: int = STEPS) -> Shape:
    return Shape("chain", f"chain {n}", {f"s{i}": ([f"s{i - 1}"] if i else []) for i in range(n)})


def fan_out(n: int = STEPS) -> Shape:
    needs: dict[str, list[str]] = {"root": []}
    needs.update({f"s{i}": ["root"] for i in range(n - 1)})
    return Shape("fanout", f"fan-out {n}", needs)


def waves(width: int = 20, depth: int = 10) -> Shape:
    """``depth`` waves of ``width`` steps; each step needs one of the wave before."""
    needs: dict[str, list[str]] = {}
    for w in range(depth):
        for i in range(width):
            needs[f"w{w}_{i}"] = [f"w{w - 1}_{i}"] if w else []
    return Shape("waves", f"{depth} waves x {width}", needs)


def standard_shapes() -> list[Shape]:
    return [chain(), fan_out(), waves()]


async def noop() -> None:
    return None


async def bare(shape: Shape) -> None:
    """The shape on plain asyncio: each wave gathered, no engine at all."""
    for wave in shape.waves():
        if len(wave) == 1:
            await noop()
        else:
            await asyncio.gather(*(noop() for _ in wave))


async def timed(make: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await make()
    return time.perf_counter() - started


def fsync_floor(directory: Path, *, samples: int = 200) -> float:
    """Median seconds of one small ``write`` + ``fsync`` in ``directory``."""
    path = directory / "fsync-floor.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        times = []
        record = b"x" * 256
        for _ in range(samples):
            started = time.perf_counter()
            os.write(fd, record)
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times)


def print_floors(fsync_s: float | None) -> None:
    """The header line every benchmark prints first."""
    line = "floors: bare asyncio per shape (column 'bare')"
    if fsync_s is not None:
        line += f"; one write+fsync = {fsync_s * 1e6:.0f} µs"
    print(line)
