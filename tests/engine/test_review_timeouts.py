"""Review: waiting for a person is not subject to step timeouts, not even those of
the loop or sub-workflow step around the approval."""

import asyncio

import wfnb
from wfnb.model import RunStatus

from ..conftest import arun, wf


async def work(delay: float = 0.0) -> str:
    await asyncio.sleep(delay)
    return "done"


def approve_late(engine, workflow, run_suffix, step):
    async def main():
        handle = await engine.start(workflow)
        assert (await asyncio.wait_for(handle, 10)).status is RunStatus.PAUSED
        # The pause lasts longer than the step timeout around the approval. The
        # timeout is 1 s, not less, so that the work after the approval (a Dask task
        # on a loaded machine) fits in what is left of it.
        await asyncio.sleep(1.3)
        await engine.approve(handle.id + run_suffix, step, by="ann")
        return await asyncio.wait_for(handle.wait(), 10)

    return arun(main())


def test_a_loop_steps_timeout_does_not_run_while_its_body_waits_for_a_person(backend):
    engine = wfnb.Engine(namespace={"work": work}, backend=backend)
    workflow = wf(
        """
steps:
  L: {loop: {for_each: "[1]", body: [ok, after]}, timeout: 1.0}
  ok: {approval: {prompt: "go?"}}
  after: {code: work, needs: [ok]}
"""
    )
    result = approve_late(engine, workflow, "", "ok[0]")
    assert result.status is RunStatus.COMPLETED, result.error


def test_a_workflow_steps_timeout_does_not_run_while_its_child_waits_for_a_person(backend):
    engine = wfnb.Engine(namespace={"work": work}, backend=backend)
    engine.register(wf("steps:\n  ok: {approval: {prompt: 'go?'}}\n", "child"))
    workflow = wf("steps:\n  s: {workflow: child, timeout: 1.0}\n", name="parent")
    result = approve_late(engine, workflow, ".s", "ok")
    assert result.status is RunStatus.COMPLETED, result.error


def test_a_loop_steps_timeout_still_runs_while_its_body_works(backend):
    engine = wfnb.Engine(namespace={"work": work}, backend=backend)
    workflow = wf(
        """
steps:
  L: {loop: {for_each: "[1]", body: [ok, slow]}, timeout: 0.2}
  ok: {approval: {prompt: "go?"}}
  slow: {code: work, needs: [ok], with: {delay: 5}}
"""
    )

    async def main():
        handle = await engine.start(workflow)
        await asyncio.wait_for(handle, 10)
        await engine.approve(handle.id, "ok[0]")
        return await asyncio.wait_for(handle.wait(), 10)

    result = arun(main())
    assert result.status is RunStatus.FAILED and "timed out after 0.2 s" in result.error
