"""Scripts keep paused runs (DESIGN §5): `engine.close()` and the end of a script
leave a paused run `paused`, approvable and resumable from any later process, and a
decision made in one `asyncio.run` is carried through in the next."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import latest_attempts

from ..conftest import arun
from ..store._procs import ROOT, read_line

CHILD = Path(__file__).with_name("_script_child.py")


def script(mode: str, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def finish(proc: subprocess.Popen[str]) -> str:
    """Let the script end; its stderr, which must be clean."""
    _, stderr = proc.communicate("\n", timeout=120)
    assert proc.returncode == 0, stderr
    assert "Task was destroyed" not in stderr and "Traceback" not in stderr, stderr
    return stderr


def approve_from_here(db: Path, run_id: str) -> tuple[RunStatus, dict, wfnb.RunResult]:
    """What a later process finds, and that it can approve the run to its end."""

    async def main():
        engine = wfnb.Engine(
            store=wfnb.DuckDBStore(db, lock_timeout=60), namespace={"one": lambda: 1}
        )
        try:
            record = await engine.store.get_run(run_id=run_id)
            steps = latest_attempts(await engine.store.get_steps(run_id=run_id))
            handle = await engine.approve(run_id, "gate", by="later")
            return record.status, {k: s.status for k, s in steps.items()}, await handle.wait()
        finally:
            await engine.close()

    return arun(main())


@pytest.mark.parametrize("mode", ["close", "return"])
def test_a_paused_run_stays_paused_when_the_engine_closes_or_the_script_ends(tmp_path, mode):
    db = tmp_path / "script.duckdb"
    proc = script(mode, db)
    try:
        run_id = read_line(proc, "paused " if mode == "close" else "left ").split()[1]
        if mode == "return":
            finish(proc)
        # With close(), the script is still alive: it let go of the run all the same.
        status, steps, final = approve_from_here(db, run_id)
    finally:
        if proc.poll() is None:
            finish(proc)
    assert status is RunStatus.PAUSED
    assert steps == {"a": StepStatus.COMPLETED, "gate": StepStatus.WAITING_APPROVAL}
    assert final.status is RunStatus.COMPLETED and final["b"] == 1


@pytest.mark.parametrize("mode", ["split", "resume"])
def test_a_decision_in_one_asyncio_run_is_carried_through_in_the_next(tmp_path, mode):
    proc = script(mode, tmp_path / "split.duckdb")
    try:
        assert read_line(proc, "status ") == "status completed"
    finally:
        finish(proc)
