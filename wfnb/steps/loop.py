"""`loop` steps: run the body steps once per item (`for_each`) or while a condition
holds (`while`, checked before each iteration, with ``loop.index`` iterations done
so far and the body's outputs of the previous iteration in ``steps``)."""

from __future__ import annotations

from typing import Any

from wfnb.errors import StepError
from wfnb.model import LoopSpec, Step
from wfnb.steps.base import StepContext


async def execute(step: Step, ctx: StepContext) -> dict[str, Any]:
    spec = step.spec
    assert isinstance(spec, LoopSpec)
    outputs: list[dict[str, Any]] = []
    if spec.for_each is not None:
        items = ctx.evaluate(spec.for_each)
        try:
            items = list(items)
        except TypeError:
            raise StepError(
                f"for_each must give a list, got {type(items).__name__}", step_id=ctx.step_id
            ) from None
        if len(items) > spec.max_iterations:
            raise StepError(
                f"for_each gives {len(items)} items, which exceeded max_iterations "
                f"({spec.max_iterations})",
                step_id=ctx.step_id,
            )
        for index, item in enumerate(items):
            outputs.append(await ctx.runtime.run_body(ctx, index, {"index": index, "item": item}))
        return {"iterations": len(outputs), "outputs": outputs}
    assert spec.while_ is not None
    index = 0
    while ctx.truthy(spec.while_, loop={"index": index, "outputs": outputs}):
        if index >= spec.max_iterations:
            raise StepError(
                f"the while condition still holds after {index} iterations: "
                f"exceeded max_iterations ({spec.max_iterations})",
                step_id=ctx.step_id,
            )
        outputs.append(await ctx.runtime.run_body(ctx, index, {"index": index}))
        index += 1
    return {"iterations": len(outputs), "outputs": outputs}
