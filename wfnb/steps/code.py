"""`code: NAME` steps: a callable from the notebook (or engine) namespace."""

from __future__ import annotations

from typing import Any

from wfnb.model import CodeSpec, Step
from wfnb.steps.base import StepContext


async def execute(step: Step, ctx: StepContext) -> Any:
    spec = step.spec
    assert isinstance(spec, CodeSpec)
    fn = ctx.runtime.resolve_code(spec.target)
    kwargs = ctx.render(step.with_) if step.with_ else {}
    return await ctx.runtime.call(fn, kwargs, ctx)
