"""A step whose output the store cannot keep fails cleanly: the store never shows a
run abandoned `running`, and the user is told which step and why."""

import threading

import pytest

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import latest_attempts

from ..conftest import arun, wf

TEXT = """
steps:
  make_lock: {code: make_lock}
  use: {code: use, needs: [make_lock], with: {value: "{{ steps.make_lock.output }}"}}
  side: {code: side}
"""


@pytest.mark.parametrize("schedule", ["waves", "eager"])
def test_an_output_the_store_refuses_fails_its_step_and_the_run(tmp_path, schedule):
    calls = []
    side_done = threading.Event()

    async def side():
        side_done.set()
        return "fine"

    def make_lock():
        # `side` ends first (on the loop, while this waits in its thread): fail-fast
        # would otherwise cancel it when it loses the race with this failure.
        side_done.wait(30)
        return threading.Lock()  # cannot be pickled, JSON'd or tabled

    store = wfnb.DuckDBStore(tmp_path / "runs.duckdb")
    namespace = {"make_lock": make_lock, "use": lambda value: calls.append("use"), "side": side}
    engine = wfnb.Engine(store=store, namespace=namespace)

    async def main():
        handle = await engine.start(wf(f"schedule: {schedule}\n" + TEXT))
        result = await handle.wait()
        run = await store.get_run(run_id=handle.id)
        steps = latest_attempts(await store.get_steps(run_id=handle.id))
        interrupted = await engine.interrupted_runs()
        await engine.close()
        return result, run, steps, interrupted

    result, run, steps, interrupted = arun(main())
    assert result.status is RunStatus.FAILED and result.failed_step == "make_lock"
    assert "could not be stored" in result.error
    assert "make_lock" not in result.outputs and result.outputs.get("side") == "fine"
    assert calls == []  # the dependent never ran on an output that is not durable
    assert run.status is RunStatus.FAILED and run.failed_step == "make_lock"
    assert steps["make_lock"].status is StepStatus.FAILED and not steps["make_lock"].has_output
    assert all(step.status is not StepStatus.RUNNING for step in steps.values())
    assert interrupted == []
