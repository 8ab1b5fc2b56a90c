import asyncio

import pytest

import wfnb
from wfnb.model import StepStatus as S

from ..conftest import arun, wf


def run(rec_or_ns, text, backend, **kw):
    namespace = rec_or_ns if isinstance(rec_or_ns, dict) else rec_or_ns.namespace()
    engine = wfnb.Engine(namespace=namespace, backend=backend)

    async def main():
        handle = await engine.start(wf(text), **kw)
        result = await handle
        steps = await engine.store.get_steps(run_id=handle.id)
        return handle, result, steps

    return arun(main())


def test_fail_fast_cancels_running_steps_and_names_the_failure(rec, backend):
    handle, result, steps = run(
        rec,
        """
steps:
  bad: {code: work, with: {name: bad, delay: 0.05, fail: true}}
  long: {code: work, with: {name: long, delay: 5}}
  after: {code: work, needs: [long]}
""",
        backend,
    )
    assert result.status is wfnb.RunStatus.FAILED
    assert (
        result.failed_step == "bad"
        and "step 'bad' failed" in result.error
        and "bad broke" in result.error
    )
    assert handle.step_statuses == {"bad": S.FAILED, "long": S.CANCELLED}
    assert "long" not in rec.ends and "after" not in rec.calls
    assert {s.step_id: s.status for s in steps}["long"] is S.CANCELLED


def test_without_fail_fast_independent_branches_finish(rec, backend):
    handle, result, _ = run(
        rec,
        """
fail_fast: false
steps:
  bad: {code: work, with: {name: bad, fail: true}}
  after_bad: {code: work, needs: [bad], with: {name: after_bad}}
  other: {code: work, with: {name: other, delay: 0.1}}
  after_other: {code: work, needs: [other], with: {name: after_other}}
""",
        backend,
    )
    assert result.status is wfnb.RunStatus.FAILED
    assert result.outputs == {"other": "other", "after_other": "after_other"}
    assert "after_bad" not in rec.calls


def test_retries_back_off_and_every_attempt_is_recorded(backend):
    def flaky(ctx):
        if ctx.attempt < 3:
            raise RuntimeError(f"flaky #{ctx.attempt}")
        return "ok"

    _, result, steps = run(
        {"flaky": flaky},
        "steps:\n  f: {code: flaky, retry: {max_attempts: 3, delay: 0.05, backoff: 2}}\n",
        backend,
    )
    assert result.outputs == {"f": "ok"}
    assert [(s.attempt, s.status) for s in steps] == [
        (1, S.FAILED),
        (2, S.FAILED),
        (3, S.COMPLETED),
    ]
    assert "flaky #1" in steps[0].error
    waits = [
        later.started_at - earlier.ended_at
        for earlier, later in zip(steps, steps[1:], strict=False)
    ]
    assert waits[0] >= 0.05 and waits[1] >= 0.1  # 0.05, then 0.05 * 2


def test_retries_exhausted_fail_the_step(backend):
    _, result, steps = run(
        {"f": lambda: 1 / 0},
        "steps:\n  f: {code: f, retry: {max_attempts: 2, delay: 0}}\n",
        backend,
    )
    assert result.status is wfnb.RunStatus.FAILED and "ZeroDivisionError" in result.error
    assert [s.attempt for s in steps] == [1, 2]


def test_step_timeout_cancels_and_records_it(rec, backend):
    _, result, steps = run(
        rec, "steps:\n  s: {code: work, timeout: 0.1, with: {name: s, delay: 5}}\n", backend
    )
    assert result.status is wfnb.RunStatus.FAILED
    assert "timed out after 0.1 s" in result.error
    assert steps[-1].status is S.FAILED and "timed out" in steps[-1].error
    assert "s" not in rec.ends


def test_workflow_timeout_stops_the_run(rec, backend):
    handle, result, _ = run(
        rec,
        "timeout: 0.2\nsteps:\n  s: {code: work, with: {name: s, delay: 5}}\n  t: {code: work, needs: [s]}\n",
        backend,
    )
    assert result.status is wfnb.RunStatus.FAILED
    assert "timed out after 0.2 s" in result.error
    assert handle.step_statuses["s"] is S.CANCELLED


def test_undefined_template_names_fail_the_step_naming_them(rec, backend):
    _, result, _ = run(
        rec, "steps:\n  s: {code: work, with: {name: '{{ inputs.missing }}'}}\n", backend
    )
    assert result.failed_step == "s" and "missing" in result.error


def test_an_unknown_callable_is_refused_before_anything_is_stored():
    engine = wfnb.Engine(namespace={"load_items": print})

    async def main():
        await engine.start(wf("steps:\n  a:\n    code: load_itmes\n"))

    with pytest.raises(wfnb.UnknownCallableError) as info:
        arun(main())
    assert (info.value.step_id, info.value.line) == ("a", 2)
    assert "did you mean 'load_items'" in str(info.value)
    assert arun(engine.store.list_runs()) == []


def test_cancel_records_cancelled_and_resume_finishes_the_run(rec, backend):
    engine = wfnb.Engine(namespace=rec.namespace(), backend=backend)
    text = "steps:\n  a: {code: work, with: {name: a}}\n  b: {code: work, needs: [a], with: {name: b, delay: 60, until: go}}\n  c: {code: work, needs: [b], with: {name: c}}\n"

    async def main():
        handle = await engine.start(wf(text))
        while "b" not in rec.calls:  # b is running (until the mark "go")
            await asyncio.sleep(0.01)
        cancelled = await engine.cancel(handle.id)
        rec.mark("go")
        resumed = await (await engine.resume(handle.id)).wait()
        return cancelled, resumed, await engine.store.get_steps(run_id=handle.id)

    cancelled, resumed, steps = arun(main())
    assert cancelled.status is wfnb.RunStatus.CANCELLED
    assert resumed.status is wfnb.RunStatus.COMPLETED and resumed.outputs == {
        "a": "a",
        "b": "b",
        "c": "c",
    }
    assert rec.calls.count("a") == 1  # completed steps are not run again
    assert [(s.step_id, s.attempt, s.status) for s in steps if s.step_id == "b"] == [
        ("b", 1, S.CANCELLED),
        ("b", 2, S.COMPLETED),
    ]
    with pytest.raises(wfnb.NotResumable):
        arun(engine.resume(resumed.run_id))
