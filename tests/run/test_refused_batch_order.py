"""A refused batch that is answered late still keeps the steps it held back from
starting: a later batch, written meanwhile, must not start a step on an output
that is not durable."""

import asyncio

import wfnb
from wfnb.errors import StoreError
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, latest_attempts

from ..conftest import arun, wf

TEXT = """
steps:
  lock: {code: lock}
  use: {code: use, needs: [lock]}
  side: {code: side}
"""


class LateRefusal(wfnb.MemoryStore):
    """Refuses the batch that completes `lock`, but only answers once the next
    batch (the one `side` completes with, starting `use`) is written."""

    def __init__(self) -> None:
        super().__init__()
        self.next_written = asyncio.Event()
        self.refusing = asyncio.Event()

    async def write(self, batch: Batch) -> None:
        if any(s.step_id == "lock" and s.has_output for s in batch.steps):
            self.refusing.set()
            await self.next_written.wait()
            raise StoreError("cannot keep this output")
        await super().write(batch)
        if self.refusing.is_set():
            self.next_written.set()


def test_a_late_refusal_still_keeps_the_dependent_from_starting():
    calls = []
    store = LateRefusal()

    async def side():
        await store.refusing.wait()  # finishes while `lock`'s output is being refused
        return "fine"

    async def lock():
        return "held"

    engine = wfnb.Engine(
        store=store, namespace={"lock": lock, "use": lambda: calls.append("use"), "side": side}
    )

    async def main():
        handle = await engine.start(wf(TEXT))
        result = await asyncio.wait_for(handle.wait(), 10)
        return result, latest_attempts(await store.get_steps(run_id=handle.id))

    result, steps = arun(main())
    assert calls == []
    assert result.status is RunStatus.FAILED and result.failed_step == "lock"
    assert all(step.status is not StepStatus.RUNNING for step in steps.values())
