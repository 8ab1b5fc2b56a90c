import asyncio
import threading
import time

import pytest

import wfnb

from ..conftest import arun, wf

TWO_BRANCHES = """
schedule: {schedule}
steps:
  fast: {{code: work, with: {{name: fast, delay: 0.02}}}}
  slow: {{code: work, with: {{name: slow, delay: 0.3}}}}
  after_fast: {{code: work, needs: [fast], with: {{name: after_fast}}}}
"""


@pytest.mark.parametrize("schedule", ["waves", "eager"])
def test_waves_wait_for_the_whole_wave_and_eager_does_not(rec, schedule, backend):
    workflow = wf(TWO_BRANCHES.format(schedule=schedule))
    engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)

    async def main():
        return await (await engine.start(workflow))

    assert arun(main()).status is wfnb.RunStatus.COMPLETED
    waited_for_slow = rec.starts["after_fast"] >= rec.ends["slow"]
    assert waited_for_slow is (schedule == "waves")


def test_steps_of_a_wave_start_together(rec):
    # Local only: on Dask, how many steps run at once is the cluster's worker slots.
    text = "steps:\n" + "".join(
        f"  s{i}: {{code: work, with: {{name: s{i}, delay: 0.2}}}}\n" for i in range(20)
    )
    engine = wfnb.Engine(namespace=rec.namespace())

    async def main():
        return await (await engine.start(wf(text)))

    started = time.monotonic()
    assert arun(main()).ok
    assert time.monotonic() - started < 0.2 * 5  # not one after another (20 x 0.2 s)
    assert max(rec.starts.values()) < min(rec.ends.values())


def test_sync_callables_run_in_threads_and_do_not_block_the_loop():
    threads = []

    def blocking(seconds: float) -> str:
        threads.append(threading.current_thread().name)
        time.sleep(seconds)
        return "done"

    ticks = []

    async def main():
        engine = wfnb.Engine(namespace={"blocking": blocking})
        run = await engine.start(wf("steps:\n  b: {code: blocking, with: {seconds: 0.3}}\n"))
        while run.status is not wfnb.RunStatus.COMPLETED:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)
        return await run

    result = arun(main())
    assert result.outputs == {"b": "done"}
    assert threads and threads[0] != threading.main_thread().name
    assert len(ticks) > 5  # the loop kept turning while the step slept


def test_steps_get_a_context_with_a_stable_idempotency_key(backend):
    def step(ctx):
        seen = f"{ctx.run_id} {ctx.step_id} {ctx.attempt} {ctx.idempotency_key}"
        if ctx.attempt < 2:
            raise RuntimeError(seen)
        return seen

    async def main():
        engine = wfnb.Engine(namespace={"step": step}, backend=backend)
        handle = await engine.start(
            wf("steps:\n  s: {code: step, retry: {max_attempts: 2, delay: 0}}\n")
        )
        await handle
        return handle.id, await engine.store.get_steps(run_id=handle.id)

    run_id, (first, second) = arun(main())
    key = first.error.removeprefix("RuntimeError: ").split()
    assert key[:3] == [run_id, "s", "1"]
    assert second.output.split() == [run_id, "s", "2", key[3]]


def test_per_workflow_concurrency_keeps_extra_runs_pending(rec, backend):
    workflow = wf("concurrency: 1\nsteps:\n  s: {code: work, with: {delay: 0.2}}\n")

    async def main():
        engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)
        first = await engine.start(workflow)
        second = await engine.start(workflow)
        await asyncio.sleep(0.05)
        statuses = (first.status, second.status)
        await second.wait()
        return statuses, await first.wait()

    statuses, result = arun(main())
    assert statuses == (wfnb.RunStatus.RUNNING, wfnb.RunStatus.PENDING)
    assert result.ok


def test_outputs_pass_between_steps_with_their_types(backend):
    def make() -> dict:
        return {"items": [1, 2, 3], "n": 3}

    def total(items: list, n: int) -> int:
        assert isinstance(items, list) and isinstance(n, int)
        return sum(items) * n

    async def main():
        engine = wfnb.Engine(namespace={"make": make, "total": total}, backend=backend)
        text = "steps:\n  m: {code: make}\n  t: {code: total, needs: [m], with: {items: '{{ steps.m.output.items }}', n: '{{ steps.m.output.n }}'}}\n"
        return await (await engine.start(wf(text)))

    assert arun(main()).outputs["t"] == 18


def test_run_sync_refuses_a_running_loop_and_names_the_async_call():
    engine = wfnb.Engine(namespace={"f": lambda: 1})

    async def main():
        engine.run_sync(wf("steps:\n  a: {code: f}\n"))

    with pytest.raises(wfnb.WfnbError, match="await engine.start"):
        arun(main())
    assert engine.run_sync(wf("steps:\n  a: {code: f}\n")).outputs == {"a": 1}


def test_skills_are_found_by_name_and_version(backend):
    @wfnb.skill(name="greet", version="1")
    def greet_v1(who: str) -> str:
        return f"hello {who}"

    @wfnb.skill(name="greet", version="2")
    async def greet_v2(who: str) -> str:
        return f"hi {who}"

    engine = wfnb.Engine(backend=backend)  # run_sync: its loop ends after the run
    text = (
        "steps:\n  new: {skill: greet, with: {who: a}}\n  old: {skill: greet@1, with: {who: b}}\n"
    )
    assert engine.run_sync(wf(text)).outputs == {"new": "hi a", "old": "hello b"}
    assert {(s.name, s.version) for s in wfnb.skills()} >= {("greet", "1"), ("greet", "2")}
