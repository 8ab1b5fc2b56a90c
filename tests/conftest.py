"""Shared fixtures. Engine tests are plain functions that run a coroutine with
`arun`, so they need no asyncio plugin and each gets a fresh event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

import wfnb


def arun(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


class Recorder:
    """Callables for workflows that note when each step started and ended."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}
        self.ends: dict[str, float] = {}
        self.calls: list[str] = []

    async def work(self, name: str = "x", delay: float = 0.0, fail: bool = False) -> str:
        self.calls.append(name)
        self.starts[name] = time.monotonic()
        await asyncio.sleep(delay)
        self.ends[name] = time.monotonic()
        if fail:
            raise ValueError(f"{name} broke")
        return name

    def namespace(self, **extra: Any) -> dict[str, Any]:
        return {"work": self.work, **extra}


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def wf(text: str, name: str = "wf") -> wfnb.Workflow:
    return wfnb.Workflow.from_yaml(text, name=name)


def error_of(text: str, **kw: Any) -> wfnb.DefinitionError:
    """The DefinitionError that parsing ``text`` raises (fails if none)."""
    from wfnb.parse import parse_workflow

    with pytest.raises(wfnb.DefinitionError) as info:
        parse_workflow(text, name="w", **kw)
    return info.value


def another_process_opens(db: Any, *, lock_timeout: float = 30.0) -> None:
    """Open the DuckDB file ``db`` from a fresh process and read from it, failing
    (with that process's error) if the file stays held past ``lock_timeout`` s."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, wfnb\n"
        "store = wfnb.DuckDBStore(sys.argv[1], lock_timeout=float(sys.argv[2]))\n"
        "print(len(store.sql('SELECT * FROM runs')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(db), str(lock_timeout)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=lock_timeout + 120,
    )
    assert proc.returncode == 0, proc.stderr
