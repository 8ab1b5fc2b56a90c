"""A live run always settles in the store too: whatever ends it, the store shows it
ended (not `running`, owned by a live process nobody can take it from), with no
attempt left open, and the engine lets go of the store."""

from typing import Any

import numpy as np
import pytest

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, latest_attempts

from ..conftest import another_process_opens, arun, wf


class HoldCounting(wfnb.MemoryStore):
    """Counts the engine's holds; with ``fail_on``, one write of a record of that step
    raises a plain RuntimeError: a bug in the store, not a refusal (`StoreError`)."""

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__()
        self.holds = 0
        self.fail_on = fail_on

    async def acquire(self) -> None:
        self.holds += 1

    async def release(self) -> None:
        self.holds -= 1

    async def write(self, batch: Batch) -> None:
        if self.fail_on and any(s.step_id == self.fail_on for s in batch.steps):
            self.fail_on = None
            raise RuntimeError("a bug in the store")
        await super().write(batch)


def _settled(engine: wfnb.Engine, text: str, name: str) -> tuple[Any, Any, dict[str, Any]]:
    async def main():
        handle = await engine.start(wf(text, name=name))
        result = await handle.wait()
        await engine.lease.let_go()  # what a release task still had to do
        record = await engine.store.get_run(run_id=handle.id)
        steps = latest_attempts(await engine.store.get_steps(run_id=handle.id))
        return result, record, steps

    return arun(main())


def test_an_if_over_an_array_fails_its_step_cleanly_and_the_run_in_the_store():
    store = HoldCounting()
    engine = wfnb.Engine(store=store, namespace={"arr": lambda: np.array([1, 2])})
    text = "steps:\n  a: {code: arr}\n  b: {code: arr, needs: [a], if: 'steps.a.output'}\n"
    result, record, steps = _settled(engine, text, "array_if")
    assert result.status is RunStatus.FAILED and result.failed_step == "b"
    assert "truth value" in result.error
    assert record.status is RunStatus.FAILED and record.ended_at is not None
    assert steps["b"].status is StepStatus.FAILED
    assert store.holds == 0


def test_an_internal_error_fails_the_run_in_the_store_closes_its_steps_and_lets_go():
    store = HoldCounting(fail_on="slow")
    engine = wfnb.Engine(store=store, namespace={"ok": lambda: 1})
    text = "steps:\n  fast: {code: ok}\n  slow: {code: ok}\n"
    result, record, steps = _settled(engine, text, "buggy")
    assert result.status is RunStatus.FAILED and "internal error" in result.error
    assert record.status is RunStatus.FAILED and "internal error" in (record.error or "")
    assert all(s.status is not StepStatus.RUNNING and s.ended_at for s in steps.values())
    assert store.holds == 0


def test_a_refused_start_leaves_the_store_free(tmp_path):
    import threading

    db = tmp_path / "w.duckdb"
    engine = wfnb.Engine(store=wfnb.DuckDBStore(db), namespace={"ok": lambda: 1})

    async def main():
        with pytest.raises(wfnb.StoreError):
            await engine.start(
                wf("steps:\n  a: {code: ok}\n", name="refused"), {"lock": threading.Lock()}
            )
        assert engine.lease.runs == []
        another_process_opens(db, lock_timeout=20)
        await engine.close()

    arun(main())
