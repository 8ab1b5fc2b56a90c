"""Review: what `steps.X` means inside a loop body."""

import asyncio

import wfnb
from wfnb.model import RunStatus

from ..conftest import arun, wf


def echo(value):
    return value


def test_a_body_step_skipped_in_this_iteration_is_not_seen_as_last_iterations_output():
    workflow = wf(
        """
steps:
  L: {loop: {for_each: "[0, 1]", body: [c, x, j]}}
  c: {conditional: {if: "loop.index == 0", then: [x]}}
  x: {code: echo, with: {value: "x{{ loop.index }}"}}
  j: {code: echo, needs: [c, x], with: {value: "{{ steps.x.status }}"}}
"""
    )
    engine = wfnb.Engine(namespace={"echo": echo})

    async def main():
        return await asyncio.wait_for((await engine.start(workflow)).wait(), 10)

    result = arun(main())
    assert result.status is RunStatus.COMPLETED, result.error
    first, second = result.outputs["L"]["outputs"]
    assert first["j"] == "completed"
    assert "x" not in second
    assert second["j"] == "skipped"  # not iteration 0's x


def test_a_failing_if_expression_is_announced_as_a_step_failure():
    seen = []
    engine = wfnb.Engine(namespace={"echo": echo})
    workflow = wf("steps:\n  a: {code: echo, with: {value: 1}, if: '{{ nope.x }}'}\n")

    async def main():
        subscription = engine.subscribe(
            lambda event: seen.append((event.kind.value, event.step_id))
        )
        result = await asyncio.wait_for((await engine.start(workflow)).wait(), 10)
        await subscription.drain()
        return result

    result = arun(main())
    assert result.status is RunStatus.FAILED and result.failed_step == "a"
    assert "nope" in result.error
    assert ("step_failed", "a") in seen  # a live view must not show it pending forever
