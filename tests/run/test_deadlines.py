"""Leaf steps' shared timeout timers behave as `asyncio.timeout` does."""

from __future__ import annotations

import asyncio

import pytest

from wfnb.run.deadlines import Deadlines


def test_a_step_that_runs_out_of_time_gets_timeout_error() -> None:
    async def main() -> bool:
        deadlines = Deadlines(asyncio.get_running_loop())
        with pytest.raises(TimeoutError), deadlines.watch(0.01) as clock:
            await asyncio.sleep(5)
        return clock.expired()

    assert asyncio.run(main())


def test_steps_sharing_a_millisecond_all_run_out() -> None:
    async def one(deadlines: Deadlines) -> str:
        try:
            with deadlines.watch(0.02):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"
        return "finished"

    async def main() -> list[str]:
        deadlines = Deadlines(asyncio.get_running_loop())
        return await asyncio.gather(*(one(deadlines) for _ in range(50)))

    assert asyncio.run(main()) == ["timed out"] * 50


def test_a_step_done_in_time_is_not_cancelled_later() -> None:
    async def main() -> str:
        deadlines = Deadlines(asyncio.get_running_loop())
        with deadlines.watch(0.02) as clock:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # past the deadline: no cancellation arrives
        return "expired" if clock.expired() else "in time"

    assert asyncio.run(main()) == "in time"


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def step(deadlines: Deadlines) -> None:
        with deadlines.watch(0.01):
            await asyncio.sleep(5)

    async def main() -> None:
        deadlines = Deadlines(asyncio.get_running_loop())
        task = asyncio.ensure_future(step(deadlines))
        await asyncio.sleep(0)
        task.cancel()  # a stop, before the deadline
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_timeout_error_of_the_steps_own_is_not_a_timeout() -> None:
    async def main() -> bool:
        deadlines = Deadlines(asyncio.get_running_loop())
        with pytest.raises(TimeoutError, match="gateway"), deadlines.watch(5) as clock:
            raise TimeoutError("gateway said no")
        return clock.expired()

    assert asyncio.run(main()) is False
