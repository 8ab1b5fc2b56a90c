"""Resume after the driving process died, on the store's records alone. (Real
SIGKILL tests against a DuckDB file live in tests/store.)"""

import asyncio
import socket
import time

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, RunRecord, StepRecord

from ..conftest import arun, wf

TEXT = "steps:\n  a: {code: step, with: {name: a}}\n  b: {code: step, needs: [a], with: {name: b}}\n  c: {code: step, needs: [b], with: {name: c}}\n"
DEAD_OWNER = f"{socket.gethostname()}:999999999:1"


def crashed_store(workflow):
    """A store as a kernel killed while step b ran would leave it."""
    store = wfnb.MemoryStore()
    now = time.time()
    from wfnb.store.base import WorkflowRecord

    record = RunRecord(
        "r1",
        workflow.name,
        workflow.definition_hash,
        RunStatus.RUNNING,
        {},
        now,
        now,
        owner=DEAD_OWNER,
    )
    arun(
        store.write(
            Batch(
                workflows=[
                    WorkflowRecord(workflow.name, workflow.to_yaml(), workflow.definition_hash, now)
                ],
                runs=[record],
                steps=[
                    StepRecord(
                        "r1", "a", 1, StepStatus.COMPLETED, now, now, output="A!", has_output=True
                    ),
                    StepRecord("r1", "b", 1, StepStatus.RUNNING, now),
                ],
            )
        )
    )
    return store


def test_resume_keeps_completed_steps_and_reruns_the_interrupted_one():
    workflow = wf(TEXT, name="chain")
    store = crashed_store(workflow)
    calls = []

    def step(name, ctx):
        calls.append((name, ctx.attempt, ctx.idempotency_key))
        return name.upper()

    engine = wfnb.Engine(store=store, namespace={"step": step})

    async def main():
        interrupted = await engine.interrupted_runs()
        result = await (await engine.resume("r1")).wait()
        return interrupted, result, await store.get_steps(run_id="r1")

    interrupted, result, steps = arun(main())
    assert [r.run_id for r in interrupted] == ["r1"]
    assert result.status is RunStatus.COMPLETED
    assert result.outputs == {"a": "A!", "b": "B", "c": "C"}  # a's output restored, not recomputed
    assert [(name, attempt) for name, attempt, _ in calls] == [("b", 2), ("c", 1)]
    assert calls[0][2] == wfnb.StepContext("r1", "chain", "b", 1, 0, {}, None).idempotency_key
    assert [(s.step_id, s.attempt, s.status) for s in steps if s.step_id == "b"] == [
        ("b", 1, StepStatus.FAILED),  # the killed attempt is closed, not left running
        ("b", 2, StepStatus.COMPLETED),
    ]


def test_resume_uses_the_stored_definition_even_after_the_cell_changed():
    original = wf(TEXT, name="chain")
    store = crashed_store(original)
    edited = wf("steps:\n  only: {code: step, with: {name: x}}\n", name="chain")
    engine = wfnb.Engine(store=store, namespace={"step": lambda name: name})
    engine.register(edited)
    result = arun(_resume(engine))
    assert set(result.outputs) == {"a", "b", "c"}


async def _resume(engine):
    return await (await engine.resume("r1")).wait()


def test_a_run_driven_by_a_live_process_is_not_resumed_twice():
    workflow = wf(TEXT, name="chain")
    store = crashed_store(workflow)
    live_owner = f"{socket.gethostname()}:1:"  # pid 1 is alive
    record = arun(store.get_run(run_id="r1"))
    from dataclasses import replace

    arun(store.write(Batch(runs=[replace(record, owner=live_owner)])))
    engine = wfnb.Engine(store=store, namespace={"step": lambda name: name})
    try:
        arun(engine.resume("r1"))
    except wfnb.NotResumable as exc:
        assert "another live process" in str(exc)
    else:
        raise AssertionError("expected NotResumable")
    assert arun(engine.interrupted_runs()) == []


def test_rerun_from_a_step_reuses_upstream_and_reruns_downstream():
    calls = []

    def step(name):
        calls.append(name)
        return f"{name}{len(calls)}"

    text = "steps:\n  a: {code: step, with: {name: a}}\n  side: {code: step, with: {name: side}}\n  b: {code: step, needs: [a], with: {name: b}}\n  c: {code: step, needs: [b], with: {name: c}}\n"
    engine = wfnb.Engine(namespace={"step": step})

    async def main():
        first = await (await engine.start(wf(text, name="edit"))).wait()
        calls.clear()
        second = await (await engine.rerun(first.run_id, "b")).wait()
        return first, second, await engine.store.get_steps(run_id=second.run_id)

    first, second, steps = arun(main())
    assert sorted(calls) == ["b", "c"]
    assert second.run_id != first.run_id and second.status is RunStatus.COMPLETED
    assert (
        second.outputs["a"] == first.outputs["a"]
        and second.outputs["side"] == first.outputs["side"]
    )
    assert second.outputs["b"] != first.outputs["b"]
    assert {s.step_id for s in steps} == {"a", "side", "b", "c"}  # the new run's history is whole
    try:
        arun(engine.rerun(first.run_id, "nope"))
    except wfnb.UnknownStepError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected UnknownStepError")


def test_resume_says_which_steps_will_run_changed_code():
    workflow = wf(TEXT, name="chain")

    def old_step(name):
        return name

    def new_step(name):
        return name.upper()

    store = crashed_store(workflow)
    record = arun(store.get_run(run_id="r1"))
    from dataclasses import replace

    engine = wfnb.Engine(store=store, namespace={"step": old_step})
    hashes = engine.code_hashes(workflow)
    arun(store.write(Batch(runs=[replace(record, code_hashes=hashes)])))
    edited = wfnb.Engine(store=store, namespace={"step": new_step})

    async def main():
        handle = await edited.resume("r1")
        await handle.wait()
        return handle.notes

    notes = arun(main())
    # a completed before the crash and is not re-run: only b and c run the new code
    assert notes == [
        "step 'b' will run code that changed since the run started",
        "step 'c' will run code that changed since the run started",
    ]


def test_a_retried_approval_after_a_restart_gets_a_fresh_deadline():
    text = "steps:\n  ok: {approval: {prompt: 'go?', timeout: 0.3}, retry: {max_attempts: 2, delay: 0}}\n"
    workflow = wf(text, name="gate")
    store = wfnb.MemoryStore()
    now = time.time()
    from wfnb.store.base import WorkflowRecord

    expired = {"prompt": "go?", "deadline": now - 1, "timeout": 0.3}
    arun(
        store.write(
            Batch(
                workflows=[
                    WorkflowRecord("gate", workflow.to_yaml(), workflow.definition_hash, now)
                ],
                runs=[
                    RunRecord(
                        "g1",
                        "gate",
                        workflow.definition_hash,
                        RunStatus.PAUSED,
                        {},
                        now,
                        now,
                        owner=DEAD_OWNER,
                    )
                ],
                steps=[
                    StepRecord(
                        "g1",
                        "ok",
                        1,
                        StepStatus.WAITING_APPROVAL,
                        now,
                        output=expired,
                        has_output=True,
                    )
                ],
            )
        )
    )
    engine = wfnb.Engine(store=store)

    async def main():
        await engine.resume("g1")
        # attempt 1 expired before the restart; attempt 2 must wait afresh
        while True:  # however long a loaded machine takes
            steps = await store.get_steps(run_id="g1")
            if any(s.attempt == 2 for s in steps):
                break
            await asyncio.sleep(0.01)
        await engine.cancel("g1")
        return steps

    steps = arun(main())
    second = [s for s in steps if s.attempt == 2]
    assert second and second[0].status is StepStatus.WAITING_APPROVAL
    assert second[0].output["deadline"] > time.time()


def test_secrets_are_never_stored_yet_a_resumed_run_gets_them_back():
    token = "sk-live-9876543210"
    seen = []

    def login(token):
        return {"header": f"Bearer {token}"}

    def call(header, key):
        seen.append((header, key))
        if len(seen) == 1:
            raise ConnectionError("flaky")  # the run fails here the first time
        return "ok"

    text = """
inputs: {key: "{{ secrets.api }}"}
steps:
  login: {code: login, with: {token: "{{ secrets.api }}"}}
  call: {code: call, needs: [login], with: {header: "{{ steps.login.output.header }}", key: "{{ inputs.key }}"}}
"""
    store = wfnb.MemoryStore()
    namespace = {"login": login, "call": call}

    async def first():
        engine = wfnb.Engine(store=store, namespace=namespace, secrets={"api": token})
        handle = await engine.start(wf(text, name="auth"), inputs={"key": token})
        return await handle.wait()

    failed = arun(first())
    assert failed.status is RunStatus.FAILED
    stored = arun(store.get_steps(run_id=failed.run_id))
    assert token not in repr(stored) and token not in repr(
        arun(store.get_run(run_id=failed.run_id))
    )
    assert "***api***" in repr(stored)

    async def second():
        engine = wfnb.Engine(store=store, namespace=namespace, secrets={"api": token})
        return await (await engine.resume(failed.run_id)).wait()

    assert arun(second()).status is RunStatus.COMPLETED
    assert seen[-1] == (f"Bearer {token}", token)  # restored output and input, unmasked
