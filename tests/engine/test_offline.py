"""Approving, rejecting or cancelling a stored run that another live process
drives is refused before anything is written: that process owns its records."""

import os
import socket
import time

import pytest

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, RunRecord, StepRecord

from ..conftest import arun, wf

#: the process that started these tests: alive, and not this one
LIVE_OWNER = f"{socket.gethostname()}:{os.getppid()}:"


def _paused_elsewhere(store: wfnb.MemoryStore) -> None:
    workflow = wf("steps:\n  ok: {approval: {prompt: 'go?'}}\n", name="gate")
    now = time.time()
    run = RunRecord(
        "p1", "gate", workflow.definition_hash, RunStatus.PAUSED, {}, now, now, owner=LIVE_OWNER
    )
    waiting = StepRecord(
        "p1", "ok", 1, StepStatus.WAITING_APPROVAL, now, output={}, has_output=True
    )
    arun(store.write(Batch(runs=[run], steps=[waiting])))


@pytest.mark.parametrize("approved", [True, False])
def test_a_decision_on_a_run_driven_elsewhere_is_refused_and_writes_nothing(approved):
    store = wfnb.MemoryStore()
    _paused_elsewhere(store)
    engine = wfnb.Engine(store=store)

    async def main():
        with pytest.raises(wfnb.NotResumable, match="another live process"):
            await engine.approve("p1", "ok", approved=approved)
        return await store.get_run(run_id="p1"), await store.get_steps(run_id="p1")

    run, steps = arun(main())
    assert run.status is RunStatus.PAUSED
    assert [(s.step_id, s.status) for s in steps] == [("ok", StepStatus.WAITING_APPROVAL)]


def test_a_step_that_is_not_waiting_is_named_in_a_specific_error():
    engine = wfnb.Engine(namespace={"f": lambda: 1})

    async def main():
        handle = await engine.start(wf("steps:\n  a: {code: f}\n", name="plain"))
        await handle.wait()
        with pytest.raises(wfnb.NotWaiting) as caught:
            await engine.approve(handle.id, "a")
        return caught.value, handle.id

    error, run_id = arun(main())
    assert (error.run_id, error.step_id) == (run_id, "a")


def _child_paused_under_a_live_parent(store: wfnb.MemoryStore) -> None:
    """A child run no process drives (its record names no owner), whose parent a
    live process still drives: that process owns the family's records."""
    child_wf = wf("steps:\n  ok: {approval: {prompt: 'go?'}}\n", name="gate")
    parent_wf = wf("steps:\n  sub: {workflow: gate}\n", name="outer")
    now = time.time()
    parent = RunRecord(
        "p2", "outer", parent_wf.definition_hash, RunStatus.PAUSED, {}, now, now, owner=LIVE_OWNER
    )
    child = RunRecord(
        "p2.sub",
        "gate",
        child_wf.definition_hash,
        RunStatus.PAUSED,
        {},
        now,
        now,
        parent_run_id="p2",
        parent_step_id="sub",
        depth=1,
    )
    steps = [
        StepRecord("p2", "sub", 1, StepStatus.RUNNING, now),
        StepRecord("p2.sub", "ok", 1, StepStatus.WAITING_APPROVAL, now, output={}, has_output=True),
    ]
    arun(store.write(Batch(runs=[parent, child], steps=steps)))


@pytest.mark.parametrize("verb", ["approve", "reject", "cancel"])
def test_a_decision_on_a_child_whose_parent_is_driven_elsewhere_writes_nothing(verb):
    store = wfnb.MemoryStore()
    _child_paused_under_a_live_parent(store)
    engine = wfnb.Engine(store=store)

    async def main():
        before = {
            r: (await store.get_run(run_id=r), await store.get_steps(run_id=r))
            for r in ("p2", "p2.sub")
        }
        with pytest.raises(wfnb.NotResumable, match="another live process"):
            if verb == "cancel":
                await engine.cancel("p2.sub")
            else:
                await engine.approve("p2.sub", "ok", approved=verb == "approve")
        after = {
            r: (await store.get_run(run_id=r), await store.get_steps(run_id=r))
            for r in ("p2", "p2.sub")
        }
        return before, after

    before, after = arun(main())
    assert after == before
