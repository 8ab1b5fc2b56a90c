"""`workflow: NAME` steps: a child run of a registered workflow, ``with`` as inputs."""

from __future__ import annotations

from typing import Any

from wfnb.model import Step, WorkflowSpec
from wfnb.steps.base import StepContext


async def execute(step: Step, ctx: StepContext) -> Any:
    spec = step.spec
    assert isinstance(spec, WorkflowSpec)
    inputs = ctx.render(step.with_) if step.with_ else {}
    return await ctx.runtime.run_child(ctx, spec.target, inputs)
