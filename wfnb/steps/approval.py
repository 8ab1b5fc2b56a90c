"""`approval` steps: the run pauses here until a person approves or rejects.

Waiting is not failing: the engine checkpoints the step as ``waiting_approval``
with its deadline, marks the run ``paused`` once nothing else can run, and picks
up again on `Engine.approve` — in this process, or in another after a restart.
"""

from __future__ import annotations

from typing import Any

from wfnb.model import ApprovalSpec, Step
from wfnb.steps.base import StepContext


async def execute(step: Step, ctx: StepContext) -> dict[str, Any]:
    spec = step.spec
    assert isinstance(spec, ApprovalSpec)
    prompt = str(ctx.render(spec.prompt))
    return await ctx.runtime.request_approval(ctx, prompt=prompt, timeout=spec.timeout)
