"""A large run keeps the heap it started with out of the collector's walks, and gives
it back when it ends; a small run leaves the collector alone."""

from __future__ import annotations

import gc

import wfnb
from wfnb.run.heap import LARGE_RUN

from ..conftest import arun


def _frozen_during(steps: int) -> tuple[list[int], int]:
    seen: list[int] = []

    async def probe() -> None:
        if not seen:  # (counting the frozen objects walks them: once is enough)
            seen.append(gc.get_freeze_count())

    workflow = wfnb.Workflow(name="wide", steps={f"s{i}": {"code": "probe"} for i in range(steps)})

    async def main() -> int:
        engine = wfnb.Engine(namespace={"probe": probe})
        result = await (await engine.start(workflow))
        assert result.ok, result.error
        await engine.close()
        return gc.get_freeze_count()

    return seen, arun(main())


def test_a_large_run_freezes_the_heap_while_it_runs_and_unfreezes_it_after() -> None:
    seen, after = _frozen_during(LARGE_RUN)
    assert min(seen) > 0
    assert after == 0


def test_a_small_run_leaves_the_collector_alone() -> None:
    seen, after = _frozen_during(3)
    assert seen == [0]
    assert after == 0


def test_a_step_waiting_to_run_holds_few_objects_the_collector_walks() -> None:
    """Every step of a fan-out is in flight at once: what each one holds is what
    the collector walks, again and again, at 10,000 steps."""
    steps = 500  # (below LARGE_RUN: nothing is frozen, every object is counted)
    counts: list[int] = []

    async def probe() -> None:
        if not counts:  # the first step to run: every other one is waiting
            counts.append(len(gc.get_objects()))

    workflow = wfnb.Workflow(name="fan", steps={f"s{i}": {"code": "probe"} for i in range(steps)})

    async def main() -> int:
        engine = wfnb.Engine(namespace={"probe": probe})
        await (await engine.start(workflow))  # warm-up: plan, templates, imports
        counts.clear()
        gc.collect()
        before = len(gc.get_objects())
        result = await (await engine.start(workflow))
        assert result.ok, result.error
        await engine.close()
        return before

    before = arun(main())
    # a task, its coroutine and context, the slot it settles, the loop's handle
    # and weak reference, and the step's before-records: 9 (a closure, a partial
    # and two context copies more, 19, before the driver shared one callback)
    assert (counts[0] - before) / steps <= 12
