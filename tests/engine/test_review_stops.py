"""Review: stops (cancel, fail-fast, timeout) must leave nothing `running` behind."""

import asyncio

import wfnb
from wfnb.model import RunStatus
from wfnb.store.base import latest_attempts

from ..conftest import arun, wf


async def slow(delay: float = 0.0, fail: bool = False, name: str = "x") -> str:
    await asyncio.sleep(delay)
    if fail:
        raise ValueError(f"{name} broke")
    return name


async def open_steps(engine, run_id):
    steps = latest_attempts(await engine.store.get_steps(run_id=run_id))
    return {
        sid: s.status.value
        for sid, s in steps.items()
        if s.status.value in ("running", "waiting_approval", "pending")
    }


def test_fail_fast_stopping_a_loop_records_its_running_body_step_cancelled(backend):
    engine = wfnb.Engine(namespace={"slow": slow}, backend=backend)
    workflow = wf(
        """
steps:
  L: {loop: {for_each: "[1, 2]", body: [b]}}
  b: {code: slow, with: {delay: 30}}
  f: {code: slow, with: {delay: 0.05, fail: true, name: f}}
"""
    )

    async def main():
        handle = await engine.start(workflow)
        result = await asyncio.wait_for(handle.wait(), 10)
        return result, await open_steps(engine, handle.id)

    result, still_open = arun(main())
    assert result.status is RunStatus.FAILED and result.failed_step == "f"
    assert still_open == {}


def test_an_approval_inside_a_loop_paused_by_run_sync_can_be_approved_later():
    """run_sync returns at the pause and its loop shuts down: that is no stop, so
    the body's approval stays waiting in the store and a new engine can approve it."""
    workflow = wf(
        """
steps:
  L: {loop: {for_each: "[1]", body: [ok]}}
  ok: {approval: {prompt: "go?"}}
  after: {code: echo, needs: [L], with: {value: "{{ steps.L.output.iterations }}"}}
"""
    )
    store = wfnb.MemoryStore()
    paused = wfnb.Engine(store=store, namespace={"echo": echo}).run_sync(workflow)
    assert paused.status is RunStatus.PAUSED
    second = wfnb.Engine(store=store, namespace={"echo": echo})

    async def main():
        handle = await second.approve(paused.run_id, "ok[0]", by="ann")
        return await asyncio.wait_for(handle.wait(), 10)

    result = arun(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["after"] == 1


def echo(value):
    return value


def test_a_step_whose_own_code_raises_cancelled_error_fails_the_run_cleanly():
    async def boom():
        raise asyncio.CancelledError()  # e.g. a library cancelling its own inner task

    engine = wfnb.Engine(namespace={"boom": boom, "slow": slow})
    workflow = wf("steps:\n  a: {code: boom}\n  b: {code: slow, needs: [a]}\n")

    async def main():
        handle = await engine.start(workflow)
        result = await asyncio.wait_for(handle.wait(), 10)
        return result, await engine.store.get_run(run_id=handle.id)

    result, record = arun(main())
    assert result.status is RunStatus.FAILED and result.failed_step == "a"
    assert "CancelledError" in result.error and "internal error" not in result.error
    assert record.status is RunStatus.FAILED


class _SlowStore(wfnb.MemoryStore):
    """Writes in order, each taking a little while: widens every race between a
    stop and the checkpoint writes in flight."""

    def __init__(self, rnd):
        super().__init__()
        self.rnd = rnd
        self.lock = asyncio.Lock()

    async def write(self, batch):
        async with self.lock:
            await asyncio.sleep(self.rnd.random() * 0.004)
            await super().write(batch)


STRESS = [
    """
schedule: eager
steps:
  a: {code: slow, with: {delay: 0.003}}
  b: {code: slow, needs: [a], with: {delay: 0.002}}
  L: {loop: {for_each: "[1, 2, 3]", body: [x, y]}, needs: [a]}
  x: {code: slow, with: {delay: 0.002}}
  y: {code: slow, needs: [x], with: {delay: 0.001}}
  c: {conditional: {if: "true", then: [d]}, needs: [b]}
  d: {code: slow, with: {delay: 0.002}, retry: {max_attempts: 3, delay: 0.001}}
  e: {code: slow, needs: [L, d]}
""",
    """
steps:
  a: {code: slow, with: {delay: 0.003}}
  f: {code: slow, with: {delay: 0.006, fail: true}}
  L: {loop: {for_each: "[1, 2, 3]", body: [x, s]}}
  x: {code: slow, with: {delay: 0.002}}
  s: {workflow: child}
""",
]


def test_no_run_or_step_is_left_open_whenever_a_stop_lands():
    import random

    async def one(seed):
        rnd = random.Random(seed)
        store = _SlowStore(rnd)
        engine = wfnb.Engine(store=store, namespace={"slow": slow})
        engine.register(
            wf(
                "steps:\n  q: {code: slow, with: {delay: 0.002}}\n  r: {code: slow, needs: [q]}\n",
                "child",
            )
        )
        handle = await engine.start(wf(STRESS[seed % 2], name=f"w{seed % 2}"))
        await asyncio.sleep(rnd.random() * 0.03)
        if rnd.random() < 0.5:
            await asyncio.wait_for(engine.cancel(handle.id), 10)
        else:
            await asyncio.wait_for(handle.wait(), 10)
        left = {}
        for run in await store.list_runs():
            if not run.status.finished:
                left[run.run_id] = run.status.value
            left.update(
                {
                    f"{run.run_id}/{sid}": status
                    for sid, status in (await open_steps(engine, run.run_id)).items()
                }
            )
        return left

    for seed in range(40):
        assert arun(one(seed)) == {}, f"seed {seed}"


def test_cancel_while_an_approval_is_being_checkpointed_leaves_no_approval_open():
    class HoldingStore(wfnb.MemoryStore):
        """Holds the write of a waiting_approval record until released."""

        def __init__(self):
            super().__init__()
            self.holding = asyncio.Event()
            self.go = asyncio.Event()

        async def write(self, batch):
            if any(s.status.value == "waiting_approval" for s in batch.steps):
                self.holding.set()
                await self.go.wait()
            await super().write(batch)

    store = HoldingStore()
    engine = wfnb.Engine(store=store)
    workflow = wf("steps:\n  ok: {approval: {prompt: 'go?'}}\n")

    async def main():
        handle = await engine.start(workflow)
        await asyncio.wait_for(store.holding.wait(), 10)
        result = await asyncio.wait_for(engine.cancel(handle.id), 10)
        return result, handle.waiting_approvals

    result, waiting = arun(main())
    assert result.status is RunStatus.CANCELLED
    assert waiting == []  # no approval left to "approve" on an ended run
