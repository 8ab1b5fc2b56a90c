"""Review: resume and rerun of runs with loops, approvals and sub-workflows mid-way."""

import asyncio
import socket
import time

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, RunRecord, StepRecord, WorkflowRecord, latest_attempts

from ..conftest import arun, wf

DEAD_OWNER = f"{socket.gethostname()}:999999999:1"

LOOP_THEN_READER = """
steps:
  L: {loop: {for_each: "[1, 2]", body: [b]}}
  b: {code: echo, with: {value: "{{ loop.item * 10 }}"}}
  after: {code: echo, needs: [L], with: {value: "{{ steps.b.output }}"}}
"""


def echo(value):
    return value


def store_with(workflow, run_status, steps):
    store = wfnb.MemoryStore()
    now = time.time()
    definition = WorkflowRecord(workflow.name, workflow.to_yaml(), workflow.definition_hash, now)
    run = RunRecord(
        "r1", workflow.name, workflow.definition_hash, run_status, {}, now, now, owner=DEAD_OWNER
    )
    arun(store.write(Batch(workflows=[definition], runs=[run], steps=steps)))
    return store


def test_resume_after_a_completed_loop_lets_later_steps_read_the_last_iteration():
    workflow = wf(LOOP_THEN_READER)
    now = time.time()
    store = store_with(
        workflow,
        RunStatus.RUNNING,
        [
            StepRecord("r1", "b[0]", 1, StepStatus.COMPLETED, now, now, output=10, has_output=True),
            StepRecord(
                "r1", "b[1]", 1, StepStatus.COMPLETED, now + 1, now + 1, output=20, has_output=True
            ),
            StepRecord(
                "r1",
                "L",
                1,
                StepStatus.COMPLETED,
                now - 1,
                now + 2,
                output={"iterations": 2, "outputs": [{"b": 10}, {"b": 20}]},
                has_output=True,
            ),
            StepRecord("r1", "after", 1, StepStatus.RUNNING, now + 3),
        ],
    )
    engine = wfnb.Engine(store=store, namespace={"echo": echo})

    async def main():
        return await asyncio.wait_for((await engine.resume("r1")).wait(), 10)

    result = arun(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["after"] == 20
    assert result.outputs["b"] == 20  # as in the uninterrupted run and in Engine.result


def test_rerun_downstream_of_a_loop_sees_the_loops_last_iteration():
    engine = wfnb.Engine(namespace={"echo": echo})

    async def main():
        first = await asyncio.wait_for((await engine.start(wf(LOOP_THEN_READER))).wait(), 10)
        again = await engine.rerun(first.run_id, "after")
        return first, await asyncio.wait_for(again.wait(), 10)

    first, again = arun(main())
    assert first.status is RunStatus.COMPLETED and first.outputs["after"] == 20
    assert again.status is RunStatus.COMPLETED, again.error
    assert again.outputs == first.outputs


def test_rejecting_in_a_new_engine_closes_the_other_open_steps_of_the_run():
    workflow = wf(
        """
steps:
  one: {approval: {prompt: "one?"}}
  two: {approval: {prompt: "two?"}}
"""
    )
    store = wfnb.MemoryStore()
    paused = wfnb.Engine(store=store).run_sync(workflow)
    assert paused.status is RunStatus.PAUSED
    second = wfnb.Engine(store=store)

    async def main():
        await second.reject(paused.run_id, "one", by="bob")
        steps = latest_attempts(await store.get_steps(run_id=paused.run_id))
        return await second.result(paused.run_id), {k: s.status for k, s in steps.items()}

    result, statuses = arun(main())
    assert result.status is RunStatus.FAILED and result.failed_step == "one"
    assert statuses["one"] is StepStatus.FAILED
    assert statuses["two"] is StepStatus.CANCELLED  # not left waiting in an ended run


def test_rerun_from_a_step_of_the_branch_not_taken_keeps_it_skipped():
    calls = []

    def work(name):
        calls.append(name)
        return name

    workflow = wf(
        """
inputs: {n: 5}
steps:
  check: {conditional: {if: "inputs.n > 3", then: [big], else: [small]}}
  big: {code: work, with: {name: big}}
  small: {code: work, with: {name: small}}
  after_small: {code: work, needs: [small], with: {name: after_small}}
"""
    )
    engine = wfnb.Engine(namespace={"work": work})

    async def main():
        first = await asyncio.wait_for((await engine.start(workflow)).wait(), 10)
        again = await engine.rerun(first.run_id, "small")
        return await asyncio.wait_for(again.wait(), 10), again.step_statuses

    result, statuses = arun(main())
    assert result.status is RunStatus.COMPLETED
    assert calls == ["big"]  # check still chose `big`: `small` is not run by the rerun
    assert statuses["small"] is StepStatus.SKIPPED
    assert statuses["after_small"] is StepStatus.SKIPPED
