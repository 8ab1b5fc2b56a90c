"""One step's attempts: what an error of the step's own is, against the step's clock."""

import wfnb
from wfnb.model import StepStatus

from ..conftest import arun, wf


def test_a_steps_own_timeout_error_is_a_step_error_not_its_timeout():
    calls = []

    def gateway():
        calls.append(1)
        raise TimeoutError("gateway said no")

    engine = wfnb.Engine(namespace={"gateway": gateway})
    text = "steps:\n  call: {code: gateway, timeout: 300, retry: {max_attempts: 2, delay: 0}}\n"

    async def main():
        handle = await engine.start(wf(text, name="own_timeout"))
        result = await handle.wait()
        return result, await engine.store.get_steps(run_id=handle.id)

    result, steps = arun(main())
    assert result.status is wfnb.RunStatus.FAILED
    assert "gateway said no" in result.error and "timed out" not in result.error
    assert [(s.attempt, s.status) for s in steps] == [
        (1, StepStatus.FAILED),
        (2, StepStatus.FAILED),
    ]
    assert all(s.error == "TimeoutError: gateway said no" for s in steps)
    assert len(calls) == 2  # an ordinary error: retried as the policy says


def test_the_steps_clock_running_out_is_still_its_timeout():
    import asyncio

    async def slow():
        await asyncio.sleep(30)

    engine = wfnb.Engine(namespace={"slow": slow})

    async def main():
        handle = await engine.start(wf("steps:\n  s: {code: slow, timeout: 0.05}\n", name="slow"))
        return await handle.wait()

    result = arun(main())
    assert result.status is wfnb.RunStatus.FAILED
    assert "timed out after 0.05 s" in result.error
