"""Review: skip propagation through conditionals."""

import asyncio

import wfnb
from wfnb.model import RunStatus, StepStatus

from ..conftest import arun, wf


def test_the_branches_of_a_skipped_conditional_are_skipped_even_with_other_needs(rec):
    workflow = wf(
        """
inputs: {enabled: false}
steps:
  build: {code: work, with: {name: build}}
  gate: {conditional: {if: "true", then: [deploy], else: [report]}, if: "inputs.enabled"}
  deploy: {code: work, needs: [build], with: {name: deploy}}
  report: {code: work, needs: [build], with: {name: report}}
"""
    )
    engine = wfnb.Engine(namespace=rec.namespace())

    async def main():
        handle = await engine.start(workflow)
        return handle, await asyncio.wait_for(handle.wait(), 10)

    handle, result = arun(main())
    assert result.status is RunStatus.COMPLETED
    assert handle.step_statuses["gate"] is StepStatus.SKIPPED
    assert handle.step_statuses["deploy"] is StepStatus.SKIPPED  # no branch was taken
    assert handle.step_statuses["report"] is StepStatus.SKIPPED
    assert rec.calls == ["build"]


def test_skipping_a_blocked_branch_step_does_not_open_the_next_wave_early(rec):
    workflow = wf(
        """
fail_fast: false
steps:
  a: {code: work, with: {name: a, delay: 0.05}}
  d: {code: work, with: {name: d, fail: true}}
  c: {conditional: {if: "false", then: [t]}, needs: [a]}
  t: {code: work, needs: [d], with: {name: t}}
  x: {code: work, needs: [c], with: {name: x, delay: 0.3}}
  z: {code: work, needs: [c], with: {name: z}}
  y: {code: work, needs: [z], with: {name: y}}
"""
    )
    engine = wfnb.Engine(namespace=rec.namespace())

    async def main():
        handle = await engine.start(workflow)
        return handle, await asyncio.wait_for(handle.wait(), 10)

    handle, result = arun(main())
    assert result.status is RunStatus.FAILED and result.failed_step == "d"
    assert handle.step_statuses["y"] is StepStatus.COMPLETED
    assert rec.starts["y"] >= rec.ends["x"]  # y's wave starts when x's wave is done
