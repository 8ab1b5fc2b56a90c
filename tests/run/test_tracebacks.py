"""A failed attempt keeps the user's frames of its traceback (issue 9): stored with
the attempt (`steps.traceback`), kept in `RunResult.tracebacks`, printed by
`Engine.step_report`; wfnb's and asyncio's frames trimmed, secrets masked."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from pathlib import Path

import wfnb
from wfnb.model import RunStatus, StepStatus

from ..conftest import arun, wf

SECRET = "sk-in-a-traceback-99"


def ratio(n):
    return helper(n)


def helper(n):
    return n / 0


def leaky(token):
    raise ValueError(f"refused token {token}")


def test_a_failed_attempt_keeps_the_users_frames_everywhere(tmp_path):
    store = wfnb.DuckDBStore(tmp_path / "tb.duckdb")
    engine = wfnb.Engine(store=store, namespace={"ratio": ratio})
    text = "steps:\n  r: {code: ratio, with: {n: 1}, retry: {max_attempts: 2, delay: 0}}\n"

    async def main():
        handle = await engine.start(wf(text, name="tb"))
        live = await handle.wait()
        stored = await engine.store.get_steps(run_id=handle.id)
        report = await engine.step_report(handle.id, "r")
        await engine.close()
        later = wfnb.Engine(store=wfnb.DuckDBStore(tmp_path / "tb.duckdb"))
        from_store = await later.result(handle.id)
        await later.close()
        return live, stored, report, from_store

    live, stored, report, from_store = arun(main())
    assert live.status is RunStatus.FAILED
    trace = live.tracebacks["r"]
    assert trace.startswith("Traceback (most recent call last):")
    assert "in ratio" in trace and "in helper" in trace and "return n / 0" in trace
    assert trace.rstrip().endswith("ZeroDivisionError: division by zero")
    # no frame from wfnb's package, asyncio or concurrent.futures (by their folders: a
    # clone of the repository is itself a folder named wfnb, holding these tests)
    for package in (wfnb, asyncio, concurrent.futures):
        assert f'File "{Path(package.__file__).parent}{os.sep}' not in trace
    assert [(s.attempt, s.status) for s in stored] == [
        (1, StepStatus.FAILED),
        (2, StepStatus.FAILED),
    ]
    assert all(s.traceback == trace for s in stored)
    assert from_store.tracebacks == {"r": trace}
    assert report.splitlines()[0].startswith("attempt 1: failed after ")
    assert "attempt 2: failed" in report and "    Traceback (most recent call last):" in report


def test_a_traceback_is_masked_and_none_without_user_frames():
    engine = wfnb.Engine(namespace={"leaky": leaky}, secrets={"api": SECRET})
    # two runs: in one, whichever step failed first would cancel the other (fail_fast)
    leak = "steps:\n  l: {code: leaky, with: {token: '{{ secrets.api }}'}}\n"
    bad = "steps:\n  t: {code: leaky, with: {token: '{{ nothing.here }}'}}\n"

    async def main():
        results = []
        for text, name in ((leak, "masked"), (bad, "template")):
            handle = await engine.start(wf(text, name=name))
            results.append((await handle.wait(), await engine.store.get_steps(run_id=handle.id)))
        return results

    (result, steps), (plain, plain_steps) = arun(main())
    assert SECRET not in repr(result) and SECRET not in repr(steps)
    assert "ValueError: refused token ***api***" in result.tracebacks["l"]
    # a template that failed is wfnb's error, with no user frame to show
    assert plain.status is RunStatus.FAILED and plain.tracebacks == {}
    assert [s.traceback for s in plain_steps] == [None]
