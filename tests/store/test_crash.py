"""Crash tests: a workflow runs in a child process on a real DuckDB file, dies
(``os._exit`` at an exact checkpoint boundary via ``WFNB_CRASH_AT``, or SIGKILL at a
random moment), and a new process resumes it. Every step whose completion was
durable ran exactly once, every other step at most twice (at-least-once), the run
completes and every output (JSON, DataFrame table, pickled object) is restored."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.store._procs import spawn
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import StepRecord, latest_attempts
from wfnb.store.duckdb import DuckDBStore
from wfnb.testing import assert_same_value

pytestmark = pytest.mark.crash

CHILD = str(Path(__file__).with_name("_crash_child.py"))
STEPS = ["s1", "s2", "f1", "f2", "f3", "f4", "s3", "s4", "s5"]
TRIALS = int(os.environ.get("WFNB_CRASH_TRIALS", "20"))


def expected_output(name: str) -> object:
    from tests.store._crash_child import expected_output as expected

    return expected(name)


def store_state(db: Path) -> tuple[str, dict[str, StepRecord]]:
    """The one run in the file and the latest attempt of each of its steps."""

    async def read() -> tuple[str, dict[str, StepRecord]]:
        store = DuckDBStore(db)
        try:
            (run,) = await store.list_runs()
            return run.run_id, latest_attempts(await store.get_steps(run_id=run.run_id))
        finally:
            await store.close()

    return asyncio.run(read())


def executions(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [
        (name, int(attempt))
        for name, attempt, _ in (line.split() for line in log.read_text().splitlines())
    ]


def crash_and_resume(
    tmp: Path, *, crash_at: str | None = None, kill_after: float | None = None
) -> dict[str, object]:
    db, log = tmp / "crash.duckdb", tmp / "steps.log"
    child = spawn(
        CHILD, "start", str(db), str(log), env={"WFNB_CRASH_AT": crash_at} if crash_at else {}
    )
    if kill_after is not None:
        assert child.stdout is not None
        child.stdout.readline()  # "run ID": the run is recorded; now let it go for a while
        time.sleep(kill_after)
        child.kill()
    out, err = child.communicate(timeout=60)
    if crash_at is not None:
        assert child.returncode == 99, (out, err)

    run_id, at_crash = store_state(db)
    ran_before = Counter(name for name, _ in executions(log))
    resumed = spawn(CHILD, "resume", str(db), str(log), run_id)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0 and "status completed" in out, (out, err)

    async def final() -> tuple[RunStatus, dict[str, StepRecord]]:
        store = DuckDBStore(db)
        try:
            run = await store.get_run(run_id=run_id)
            assert run is not None
            return run.status, latest_attempts(await store.get_steps(run_id=run_id))
        finally:
            await store.close()

    status, latest = asyncio.run(final())
    assert status is RunStatus.COMPLETED
    assert sorted(latest) == sorted(STEPS)
    for name in STEPS:
        assert latest[name].status is StepStatus.COMPLETED
        assert_same_value(latest[name].output, expected_output(name))
    runs = Counter(name for name, _ in executions(log))
    for name in STEPS:
        done_at_crash = name in at_crash and at_crash[name].status is StepStatus.COMPLETED
        assert runs[name] == (1 if done_at_crash else runs[name]), (name, runs, at_crash)
        assert 1 <= runs[name] <= 2, (name, runs)
    return {
        "at_crash": at_crash,
        "ran_before": ran_before,
        "runs": runs,
        "attempts": executions(log),
    }


@pytest.mark.parametrize("step", ["s2", "f3", "s3"])
@pytest.mark.parametrize("point", ["before", "started", "finished", "after"])
def test_crash_at_each_checkpoint_boundary(tmp_path: Path, point: str, step: str) -> None:
    seen = crash_and_resume(tmp_path, crash_at=f"{point}:{step}")
    at_crash, ran_before, runs = seen["at_crash"], seen["ran_before"], seen["runs"]
    assert isinstance(at_crash, dict) and isinstance(runs, Counter)
    assert isinstance(ran_before, Counter)
    record = at_crash.get(step)
    if point == "before":  # died before the before-record: nothing of the step exists
        assert record is None and ran_before[step] == 0 and runs[step] == 1
    elif point == "started":  # the before-record is durable, the code never ran
        assert record is not None and record.status is StepStatus.RUNNING
        assert ran_before[step] == 0 and runs[step] == 1
        assert (step, record.attempt + 1) in seen["attempts"]  # type: ignore[operator]
    elif point == "finished":  # it ran, the after-record was lost: it runs again
        assert record is not None and record.status is StepStatus.RUNNING
        assert ran_before[step] == 1 and runs[step] == 2
        assert [a for n, a in seen["attempts"] if n == step] == [1, 2]  # type: ignore[attr-defined]
    else:  # after: the completion is durable, resume must not run it again
        assert record is not None and record.status is StepStatus.COMPLETED
        assert runs[step] == 1


@pytest.mark.timeout(900)  # 40 processes start and import pandas: minutes on a busy box
def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    """The run lasts ≈ 150 ms after it is recorded; kills land anywhere in it."""

    def trial(i: int) -> bool:
        rng = random.Random(i)
        directory = tmp_path / f"trial{i}"
        directory.mkdir()
        try:
            seen = crash_and_resume(directory, kill_after=rng.uniform(0.0, 0.18))
        except AssertionError as exc:
            raise AssertionError(f"trial {i} (seed {i}): {exc}") from exc
        at_crash = seen["at_crash"]
        assert isinstance(at_crash, dict)
        return len(at_crash) < len(STEPS) or any(
            r.status is not StepStatus.COMPLETED for r in at_crash.values()
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        interrupted = sum(pool.map(trial, range(TRIALS)))
    assert interrupted >= TRIALS // 2  # the kills really did land mid-run
