import asyncio
import threading

import pytest

import wfnb

from ..conftest import arun, wf

# slow ends once after_fast has started, or after `wait` s if it never does (waves)
TWO_BRANCHES = """
schedule: {schedule}
steps:
  fast: {{code: work, with: {{name: fast}}}}
  slow: {{code: work, with: {{name: slow, delay: {wait}, until: after_fast}}}}
  after_fast: {{code: work, needs: [fast], with: {{name: after_fast}}}}
"""


@pytest.mark.parametrize("schedule", ["waves", "eager"])
def test_waves_wait_for_the_whole_wave_and_eager_does_not(rec, schedule, backend):
    wait = 0.3 if schedule == "waves" else 60
    workflow = wf(TWO_BRANCHES.format(schedule=schedule, wait=wait))
    engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)

    async def main():
        return await (await engine.start(workflow))

    assert arun(main()).status is wfnb.RunStatus.COMPLETED
    waited_for_slow = rec.starts["after_fast"] >= rec.ends["slow"]
    assert waited_for_slow is (schedule == "waves")


def test_steps_of_a_wave_start_together():
    # Local only: on Dask, how many steps run at once is the cluster's worker slots.
    # Each step waits until all 20 have started: run one after another, the first
    # would wait for ever (its 30 s clock fails the run instead).
    started: list[str] = []
    everyone = asyncio.Event()

    async def meet(name: str) -> str:
        started.append(name)
        if len(started) == 20:
            everyone.set()
        await everyone.wait()
        return name

    text = "steps:\n" + "".join(
        f"  s{i}: {{code: meet, with: {{name: s{i}}}, timeout: 30}}\n" for i in range(20)
    )
    engine = wfnb.Engine(namespace={"meet": meet})

    async def main():
        return await (await engine.start(wf(text)))

    result = arun(main())
    assert result.ok, result.error
    assert sorted(started) == sorted(f"s{i}" for i in range(20))


def test_sync_callables_run_in_threads_and_do_not_block_the_loop():
    threads = []
    ticked = threading.Event()

    def blocking() -> str:
        threads.append(threading.current_thread().name)
        # Returns once the loop has ticked on meanwhile (set from the loop below);
        # run on the loop's thread, it would block the ticks and time out.
        return "done" if ticked.wait(timeout=30) else "the loop never ticked"

    ticks = 0

    async def main():
        nonlocal ticks
        engine = wfnb.Engine(namespace={"blocking": blocking})
        run = await engine.start(wf("steps:\n  b: {code: blocking}\n"))
        while run.status is not wfnb.RunStatus.COMPLETED:
            ticks += 1
            if ticks == 5:
                ticked.set()
            await asyncio.sleep(0.01)
        return await run

    result = arun(main())
    assert result.outputs == {"b": "done"}
    assert threads and threads[0] != threading.main_thread().name
    assert ticks >= 5  # the loop kept turning while the step blocked its thread


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
    workflow = wf("concurrency: 1\nsteps:\n  s: {code: work, with: {delay: 60, until: go}}\n")

    async def main():
        engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)
        first = await engine.start(workflow)
        second = await engine.start(workflow)
        while not rec.seen("x"):  # the first run's step has started (and waits)
            await asyncio.sleep(0.01)
        statuses = (first.status, second.status)
        rec.mark("go")
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
