"""Review: a run is paused only once every running step waits for a person."""

import asyncio

import wfnb
from wfnb.model import RunStatus, StepStatus

from ..conftest import arun, wf


async def work(name: str, delay: float = 0.0) -> str:
    await asyncio.sleep(delay)
    return name


def paused_result(text):
    engine = wfnb.Engine(namespace={"work": work})

    async def main():
        handle = await engine.start(wf(text))
        result = await asyncio.wait_for(handle, 10)
        record = await engine.store.get_run(run_id=handle.id)
        statuses = handle.step_statuses
        await asyncio.wait_for(engine.cancel(handle.id), 10)
        return result, statuses, record

    return arun(main())


def test_a_run_is_not_paused_while_a_step_unlocked_by_a_finished_one_runs():
    result, statuses, record = paused_result(
        """
schedule: eager
steps:
  ok: {approval: {prompt: "go?"}}
  a: {code: work, with: {name: a, delay: 0.05}}
  b: {code: work, needs: [a], with: {name: b, delay: 0.2}}
"""
    )
    assert result.status is RunStatus.PAUSED and record.status is RunStatus.PAUSED
    assert statuses["b"] is StepStatus.COMPLETED
    assert result.outputs == {"a": "a", "b": "b"}


def test_a_run_is_not_paused_between_the_iterations_of_a_loop():
    result, statuses, record = paused_result(
        """
steps:
  ok: {approval: {prompt: "go?"}}
  L: {loop: {for_each: "[1, 2, 3, 4]", body: [b]}}
  b: {code: work, with: {name: "b{{ loop.item }}", delay: 0.05}}
"""
    )
    assert result.status is RunStatus.PAUSED and record.status is RunStatus.PAUSED
    assert statuses["L"] is StepStatus.COMPLETED
    assert result.outputs["L"]["iterations"] == 4
