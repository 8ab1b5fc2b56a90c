"""Review: a parent's stop reaches its child runs."""

import asyncio

import wfnb
from wfnb.model import RunStatus

from ..conftest import arun, wf


def test_cancelling_the_parent_cancels_a_running_child_run(rec, backend):
    engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)
    engine.register(
        wf(
            "steps:\n  x: {code: work, with: {name: x, delay: 30}}\n"
            "  y: {code: work, needs: [x], with: {name: y}}\n",
            name="child",
        )
    )

    async def main():
        handle = await engine.start(wf("steps:\n  s: {workflow: child}\n", name="parent"))
        while "x" not in rec.calls:
            await asyncio.sleep(0.01)
        result = await asyncio.wait_for(engine.cancel(handle.id), 10)
        child = await engine.store.get_run(run_id=f"{handle.id}.s")
        return result, child

    result, child = arun(main())
    assert result.status is RunStatus.CANCELLED
    assert child.status is RunStatus.CANCELLED
    assert rec.calls == ["x"]


def test_cancelling_the_parent_cancels_a_child_paused_on_an_approval():
    engine = wfnb.Engine()
    engine.register(wf("steps:\n  ok: {approval: {prompt: 'go?'}}\n", name="child"))

    async def main():
        handle = await engine.start(wf("steps:\n  s: {workflow: child}\n", name="parent"))
        assert (await asyncio.wait_for(handle, 10)).status is RunStatus.PAUSED
        result = await asyncio.wait_for(engine.cancel(handle.id), 10)
        child = await engine.store.get_run(run_id=f"{handle.id}.s")
        return result, child, engine.handle(f"{handle.id}.s")

    result, child, live_child = arun(main())
    assert result.status is RunStatus.CANCELLED
    assert child.status is RunStatus.CANCELLED
    assert live_child.waiting_approvals == []


def test_a_child_paused_under_run_sync_stays_approvable_from_a_new_engine():
    store = wfnb.MemoryStore()
    child = wf("steps:\n  ok: {approval: {prompt: 'go?'}}\n", name="child")
    parent = wf("steps:\n  s: {workflow: child}\n", name="parent")
    first = wfnb.Engine(store=store)
    first.register(child)
    paused = first.run_sync(parent)
    assert paused.status is RunStatus.PAUSED
    second = wfnb.Engine(store=store)
    second.register(child)

    async def main():
        await second.approve(f"{paused.run_id}.s", "ok", by="ann")
        handle = await second.resume(paused.run_id)
        return await asyncio.wait_for(handle.wait(), 10)

    result = arun(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["s"]["ok"]["by"] == "ann"


def test_a_sub_workflow_step_retried_after_its_timeout_resumes_its_stopped_child():
    durations = iter([30.0, 0.0])

    async def work():
        await asyncio.sleep(next(durations))
        return "done"

    engine = wfnb.Engine(namespace={"work": work})
    engine.register(wf("steps:\n  x: {code: work}\n", name="child"))
    parent = wf(
        "steps:\n  s: {workflow: child, timeout: 0.2, retry: {max_attempts: 2, delay: 0}}\n",
        name="parent",
    )

    async def main():
        return await asyncio.wait_for((await engine.start(parent)).wait(), 10)

    result = arun(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["s"] == {"x": "done"}


def test_a_failed_sub_workflow_names_the_step_that_failed_in_it():
    def boom():
        raise ValueError("disk full")

    engine = wfnb.Engine(namespace={"boom": boom, "ok": lambda: 1})
    engine.register(
        wf("steps:\n  fine: {code: ok}\n  load: {code: boom, needs: [fine]}\n", "child")
    )
    engine.register(wf("steps:\n  inner: {workflow: child}\n", "middle"))

    async def main():
        handle = await engine.start(wf("steps:\n  outer: {workflow: middle}\n", name="top"))
        return await asyncio.wait_for(handle.wait(), 10)

    result = arun(main())
    assert result.status is RunStatus.FAILED and result.failed_step == "outer"
    assert "disk full" in result.error
    assert "'load'" in result.error  # where it failed, not only why


def test_a_stop_while_the_child_run_is_being_created_leaves_no_child_pending():
    class HoldingStore(wfnb.MemoryStore):
        """Holds the write that creates the child run until released; like a real
        store, a write once submitted completes even if its caller is cancelled."""

        def __init__(self):
            super().__init__()
            self.holding = asyncio.Event()
            self.go = asyncio.Event()

        async def write(self, batch):
            async def commit():
                if any(run.parent_run_id for run in batch.runs) and not self.go.is_set():
                    self.holding.set()
                    await self.go.wait()
                await wfnb.MemoryStore.write(self, batch)

            await asyncio.shield(asyncio.ensure_future(commit()))

    store = HoldingStore()
    engine = wfnb.Engine(store=store, namespace={"work": lambda: 1})
    engine.register(wf("steps:\n  x: {code: work}\n", name="child"))

    async def main():
        handle = await engine.start(wf("steps:\n  s: {workflow: child}\n", name="parent"))
        await asyncio.wait_for(store.holding.wait(), 10)
        cancelling = asyncio.ensure_future(engine.cancel(handle.id))
        await asyncio.sleep(0.05)
        store.go.set()
        result = await asyncio.wait_for(cancelling, 10)
        return result, await store.get_run(run_id=f"{handle.id}.s")

    result, child = arun(main())
    assert result.status is RunStatus.CANCELLED
    assert child is not None and child.status.finished, child.status
