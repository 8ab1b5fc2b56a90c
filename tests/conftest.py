"""Shared fixtures. Engine tests are plain functions that run a coroutine with
`arun`, so they need no asyncio plugin and each gets a fresh event loop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

import wfnb


def arun(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on a fresh loop; the backends of the test let go of what they
    hold on it (a Dask client) before it ends, as `Engine.run_sync` makes them."""

    async def main() -> Any:
        try:
            return await coro
        finally:
            for backend in _LOOP_BOUND:
                await backend.release()

    return asyncio.run(main())


#: the backends the running test uses (the `backend` fixture fills it)
_LOOP_BOUND: list[wfnb.Backend] = []


class Recorder:
    """Callables for workflows that note when each step started and ended. The
    notes go to a file, so they are seen from steps that ran on a Dask worker (in
    another process) too; `time.monotonic` is the same clock in every process."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "recorder.log"
        self.path.touch()

    async def work(
        self, name: str = "x", delay: float = 0.0, fail: bool = False, until: str | None = None
    ) -> str:
        """Sleep ``delay`` s; with ``until``, only until the step (or `mark`) of that
        name has started, at most ``delay`` s: an order tests can rely on under load."""
        self._note("start", name)
        if until is None:
            await asyncio.sleep(delay)
        else:
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.seen(until):
                await asyncio.sleep(0.01)
        self._note("end", name)
        if fail:
            raise ValueError(f"{name} broke")
        return name

    def _note(self, what: str, name: str) -> None:
        line = f"{what} {time.monotonic()!r} {name}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)  # one write to an O_APPEND file: lines never interleave
        finally:
            os.close(fd)

    def mark(self, name: str) -> None:
        """Let the steps waiting ``until`` this name go."""
        self._note("mark", name)

    def seen(self, name: str) -> bool:
        return any(n == name for _, n in self._notes("start") + self._notes("mark"))

    def _notes(self, what: str) -> list[tuple[float, str]]:
        notes = []
        for line in self.path.read_text().splitlines():
            kind, at, name = line.split(" ", 2)
            if kind == what:
                notes.append((float(at), name))
        return notes

    @property
    def calls(self) -> list[str]:
        return [name for _, name in self._notes("start")]

    @property
    def starts(self) -> dict[str, float]:
        return {name: at for at, name in self._notes("start")}

    @property
    def ends(self) -> dict[str, float]:
        return {name: at for at, name in self._notes("end")}

    def namespace(self, **extra: Any) -> dict[str, Any]:
        return {"work": self.work, **extra}


@pytest.fixture
def rec(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path)


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """One LocalCluster of processes for the whole session (starting one takes
    seconds). A dead worker fails its task at once, as in `DaskBackend`'s own."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=":0",
        scheduler_kwargs={"allowed_failures": 0},
    )
    yield cluster
    cluster.close()


@pytest.fixture(params=["local", "dask"])
def backend(request: pytest.FixtureRequest) -> Iterator[wfnb.Backend]:
    """Each engine semantics test runs on both backends; the Dask one on the
    session's cluster, through a client of its own on each test's loop."""
    made: wfnb.Backend
    if request.param == "local":
        made = wfnb.LocalBackend()
    else:
        cluster = request.getfixturevalue("dask_cluster")
        made = wfnb.DaskBackend(address=cluster.scheduler_address)
    _LOOP_BOUND.append(made)
    yield made
    _LOOP_BOUND.remove(made)


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
