import pytest

import wfnb
from wfnb.model import StepStatus as S

from ..conftest import arun, wf

FLOW = """
steps:
  prep: {code: work, with: {name: prep}}
  review: {needs: [prep], approval: {prompt: "Ship {{ steps.prep.output }}?"}}
  side: {code: work, with: {name: side, delay: 0.05}}
  ship: {code: work, needs: [review], with: {name: "shipped by {{ steps.review.output.by }}"}}
"""


def test_approval_pauses_the_run_and_approve_continues_it(rec, backend):
    engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)

    async def main():
        handle = await engine.start(wf(FLOW))
        paused = await handle  # returns at the pause
        stored = await engine.store.get_run(run_id=handle.id)
        waiting = {s.step_id: s for s in await engine.store.get_steps(run_id=handle.id)}["review"]
        await engine.approve(handle.id, "review", by="ann", comment="fine")
        return paused, stored, waiting, await handle.wait(), handle

    paused, stored, waiting, result, handle = arun(main())
    assert paused.status is wfnb.RunStatus.PAUSED and stored.status is wfnb.RunStatus.PAUSED
    assert paused.outputs == {"prep": "prep", "side": "side"}  # independent work went on
    assert waiting.status is S.WAITING_APPROVAL and waiting.output["prompt"] == "Ship prep?"
    assert result.status is wfnb.RunStatus.COMPLETED
    assert (
        result.outputs["review"]["approved"] is True
        and result.outputs["review"]["comment"] == "fine"
    )
    assert result.outputs["ship"] == "shipped by ann"


def test_reject_fails_the_step_with_who_and_why(rec, backend):
    engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)

    async def main():
        handle = await engine.start(wf(FLOW))
        await handle
        await engine.reject(handle.id, "review", by="bob", comment="not today")
        return await handle.wait()

    result = arun(main())
    assert result.status is wfnb.RunStatus.FAILED and result.failed_step == "review"
    assert "rejected by bob: not today" in result.error
    assert "ship" not in result.outputs


def test_approve_from_a_new_engine_resumes_the_paused_run(rec, backend):
    store = wfnb.MemoryStore()
    first = wfnb.Engine(store=store, namespace=rec.namespace(), backend=backend)
    run_id = arun(_paused(first))
    # The first engine's loop is gone (as when the kernel restarts); a new one takes over.
    second = wfnb.Engine(store=store, namespace=rec.namespace(), backend=backend)

    async def main():
        handle = await second.approve(run_id, "review", by="carl")
        return await handle.wait()

    result = arun(main())
    assert result.status is wfnb.RunStatus.COMPLETED and result.outputs["ship"] == "shipped by carl"
    assert rec.calls.count("prep") == 1


async def _paused(engine):
    handle = await engine.start(wf(FLOW))
    await handle
    return handle.id


def test_approval_timeout_fails_the_step():
    engine = wfnb.Engine()

    async def main():
        handle = await engine.start(wf("steps:\n  r: {approval: {prompt: 'ok?', timeout: 0.1}}\n"))
        return await handle.wait()

    result = arun(main())
    assert result.status is wfnb.RunStatus.FAILED and "no decision" in result.error


def test_approving_a_step_that_is_not_waiting_is_an_error(rec, backend):
    engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)

    async def main():
        handle = await engine.start(wf(FLOW))
        await handle
        with pytest.raises(wfnb.WfnbError, match="not waiting"):
            await engine.approve(handle.id, "prep")
        await engine.cancel(handle.id)
        return await engine.result(handle.id)

    assert arun(main()).status is wfnb.RunStatus.CANCELLED


def test_a_paused_sub_workflow_pauses_its_parent():
    child = wf("steps:\n  ok: {approval: {prompt: 'go?'}}\n", name="child")
    parent = wf("steps:\n  sub: {workflow: child}\n", name="parent")
    engine = wfnb.Engine()
    engine.register(child)

    async def main():
        handle = await engine.start(parent)
        paused = await handle
        child_id = f"{handle.id}.sub"
        await engine.approve(child_id, "ok")
        return paused, await handle.wait()

    paused, result = arun(main())
    assert paused.status is wfnb.RunStatus.PAUSED
    assert (
        result.status is wfnb.RunStatus.COMPLETED
        and result.outputs["sub"]["ok"]["approved"] is True
    )


CHILD = "steps:\n  ok: {approval: {prompt: 'go?'}}\n"
PARENT = (
    "steps:\n  sub: {workflow: child}\n  after: {code: work, needs: [sub], with: {name: after}}\n"
)


async def _paused_parent(engine):
    engine.register(wf(CHILD, name="child"))
    handle = await engine.start(wf(PARENT, name="parent"))
    await handle
    return handle.id


def test_approving_a_child_from_a_new_engine_finishes_its_parent(rec, backend):
    store = wfnb.MemoryStore()
    parent_id = arun(
        _paused_parent(wfnb.Engine(store=store, namespace=rec.namespace(), backend=backend))
    )
    second = wfnb.Engine(store=store, namespace=rec.namespace(), backend=backend)
    second.register(wf(CHILD, name="child"))

    async def main():
        await second.approve(f"{parent_id}.sub", "ok", by="dana")
        return await second.wait(parent_id)

    result = arun(main())
    assert result.status is wfnb.RunStatus.COMPLETED
    assert result.outputs["sub"]["ok"]["by"] == "dana" and result.outputs["after"] == "after"


def test_rejecting_a_child_from_a_new_engine_fails_its_parent_too(rec, backend):
    store = wfnb.MemoryStore()
    parent_id = arun(
        _paused_parent(wfnb.Engine(store=store, namespace=rec.namespace(), backend=backend))
    )
    second = wfnb.Engine(store=store, namespace=rec.namespace(), backend=backend)

    async def main():
        await second.reject(f"{parent_id}.sub", "ok", by="eve", comment="no")
        runs = {r.run_id: r for r in await store.list_runs()}
        steps = {s.step_id: s for s in await store.get_steps(run_id=parent_id)}
        return runs, steps

    runs, steps = arun(main())
    assert runs[f"{parent_id}.sub"].status is wfnb.RunStatus.FAILED
    parent = runs[parent_id]
    assert parent.status is wfnb.RunStatus.FAILED and parent.failed_step == "sub"
    assert "rejected by eve: no" in parent.error
    assert steps["sub"].status is S.FAILED
    assert arun(second.interrupted_runs()) == []
