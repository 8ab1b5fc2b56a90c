import asyncio

import wfnb
from wfnb.events import EventKind as K

from .conftest import arun, wf


def test_lifecycle_events_arrive_in_order(rec):
    seen = []

    async def main():
        engine = wfnb.Engine(namespace=rec.namespace())
        subscription = engine.subscribe(lambda event: seen.append((event.kind, event.step_id)))
        text = "steps:\n  a: {code: work}\n  b: {code: work, needs: [a], with: {fail: true}}\n  c: {code: work, needs: [b]}\n"
        await (await engine.start(wf(text)))
        await subscription.drain()

    arun(main())
    assert seen == [
        (K.RUN_STARTED, None),
        (K.STEP_STARTED, "a"),
        (K.STEP_COMPLETED, "a"),
        (K.STEP_STARTED, "b"),
        (K.STEP_FAILED, "b"),
        (K.RUN_FAILED, None),
    ]


def test_a_slow_subscriber_never_holds_the_run_back():
    seen = []
    release = asyncio.Event()

    async def stuck(event):
        await release.wait()  # an observer that takes for ever, until the run is over
        seen.append(event.kind)

    async def main():
        engine = wfnb.Engine(namespace={"f": lambda: 1})
        engine.subscribe(stuck)
        text = "schedule: eager\nsteps:\n" + "".join(f"  s{i}: {{code: f}}\n" for i in range(50))
        result = await (await engine.start(wf(text)))
        seen_when_done = len(seen)
        release.set()
        while len(seen) < 102:
            await asyncio.sleep(0.01)
        return result, seen_when_done

    result, seen_when_done = arun(main())
    assert result.ok
    assert seen_when_done == 0  # the run finished while the observer had seen nothing
    assert seen[-1] is K.RUN_COMPLETED


def test_a_failing_subscriber_does_not_break_the_run():
    def broken(event):
        raise RuntimeError("observer bug")

    async def main():
        engine = wfnb.Engine(namespace={"f": lambda: 1})
        engine.subscribe(broken)
        return await (await engine.start(wf("steps:\n  a: {code: f}\n")))

    assert arun(main()).ok
