"""`conditional` steps: pick a branch; the engine skips the steps of the other one."""

from __future__ import annotations

from typing import Any

from wfnb.model import ConditionalSpec, Step
from wfnb.steps.base import StepContext


async def execute(step: Step, ctx: StepContext) -> dict[str, Any]:
    spec = step.spec
    assert isinstance(spec, ConditionalSpec)
    if ctx.truthy(spec.if_):
        return {"branch": "then", "steps": list(spec.then)}
    return {"branch": "else", "steps": list(spec.else_)}
