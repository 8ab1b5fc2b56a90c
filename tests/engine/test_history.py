"""`steps` is history (DESIGN §5): no attempt stays `running` once its run was
resumed or has ended, and a row's `started_at` never changes."""

from __future__ import annotations

import asyncio
import time

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, RunRecord, StepRecord, WorkflowRecord

from ..conftest import arun, wf

#: a process that is gone (no such pid)
DEAD_OWNER = "nohost-of-this-name:999999999:1"


def test_a_resume_closes_the_attempt_its_dead_process_left_running():
    workflow = wf("steps:\n  a: {code: one}\n  b: {code: one, needs: [a]}\n", name="killed")
    store = wfnb.MemoryStore()
    now = time.time()
    arun(
        store.write(
            Batch(
                workflows=[
                    WorkflowRecord("killed", workflow.to_yaml(), workflow.definition_hash, now)
                ],
                runs=[
                    RunRecord(
                        "k1",
                        "killed",
                        workflow.definition_hash,
                        RunStatus.RUNNING,
                        {},
                        now,
                        now,
                        owner=None,
                    )
                ],
                steps=[StepRecord("k1", "a", 1, StepStatus.RUNNING, now)],
            )
        )
    )
    engine = wfnb.Engine(store=store, namespace={"one": lambda: 1})

    async def main():
        result = await (await engine.resume("k1")).wait()
        return result, await store.get_steps(run_id="k1")

    result, steps = arun(main())
    assert result.status is RunStatus.COMPLETED
    rows = {(s.step_id, s.attempt): s for s in steps}
    killed = rows[("a", 1)]
    assert killed.status is StepStatus.FAILED and killed.ended_at is not None
    assert killed.started_at == now and "interrupted" in killed.error
    assert rows[("a", 2)].status is StepStatus.COMPLETED
    assert all(s.status is not StepStatus.RUNNING for s in steps)


def test_a_cancelled_step_keeps_its_start():
    started = asyncio.Event()

    async def slow():
        started.set()
        await asyncio.sleep(30)

    engine = wfnb.Engine(namespace={"slow": slow})

    async def main():
        handle = await engine.start(wf("steps:\n  s: {code: slow}\n", name="to_cancel"))
        await started.wait()
        (running,) = await engine.store.get_steps(run_id=handle.id)
        await handle.cancel()
        (cancelled,) = await engine.store.get_steps(run_id=handle.id)
        return running, cancelled

    running, cancelled = arun(main())
    assert running.status is StepStatus.RUNNING and cancelled.status is StepStatus.CANCELLED
    assert cancelled.started_at == running.started_at
    assert cancelled.ended_at > cancelled.started_at


def test_an_approvals_start_is_the_same_in_every_row_it_has():
    engine = wfnb.Engine()
    seen = []

    async def main():
        handle = await engine.start(wf("steps:\n  g: {approval: {prompt: 'ok?'}}\n", name="gate"))
        await handle
        seen.extend(await engine.store.get_steps(run_id=handle.id))
        await handle.approve("g")
        await handle.wait()
        seen.extend(await engine.store.get_steps(run_id=handle.id))

    arun(main())
    waiting, done = seen
    assert waiting.status is StepStatus.WAITING_APPROVAL and done.status is StepStatus.COMPLETED
    assert done.started_at == waiting.started_at


def test_events_are_one_row_per_change_with_the_state_then(tmp_path):
    store = wfnb.DuckDBStore(tmp_path / "events.duckdb")
    engine = wfnb.Engine(store=store, namespace={"one": lambda: 1})
    text = "steps:\n  a: {code: one}\n  g: {approval: {prompt: 'ok?'}, needs: [a]}\n"

    async def main():
        handle = await engine.start(wf(text, name="evented"))
        await handle
        await handle.approve("g")
        await handle.wait()
        rows = wfnb.sql(
            "SELECT coalesce(step_id, '-') AS who, event, status FROM events "
            f"WHERE run_id = '{handle.id}' ORDER BY ts, seq",
            store=store,
        )
        events = await store.get_events(run_id=handle.id)
        await engine.close()
        return rows, events

    rows, events = arun(main())
    run_rows = rows[rows.who == "-"]
    assert run_rows.status.tolist() == ["pending", "running", "paused", "running", "completed"]
    assert rows[rows.who == "g"].event.tolist() == [
        "step_started",
        "step_waiting",
        "step_completed",
    ]
    assert rows[rows.who == "a"].status.tolist() == ["running", "completed"]
    assert [(e.step_id or "-", e.status) for e in events] == list(
        zip(rows.who, rows.status, strict=True)
    )
