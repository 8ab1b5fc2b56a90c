"""A chain step costs one checkpoint batch, so one journal fsync: step k's
after-record and step k+1's before-record go to the store together, and k+1
starts only once that batch is durable (issue 13)."""

import asyncio

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch
from wfnb.store.duckdb import DuckDBStore

from ..conftest import arun, wf


def chain(n: int, name: str = "chain") -> wfnb.Workflow:
    steps = {f"s{i}": {"code": "step", **({"needs": [f"s{i - 1}"]} if i else {})} for i in range(n)}
    return wfnb.Workflow(name=name, steps=steps)


class Recording(wfnb.MemoryStore):
    """Keeps, per batch written, the (step, status) pairs of its step records."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[set[tuple[str, StepStatus]]] = []

    async def write(self, batch: Batch) -> None:
        await super().write(batch)
        if batch.steps:
            self.batches.append({(s.step_id, s.status) for s in batch.steps})


def test_a_chain_step_is_one_batch_holding_the_last_end_and_the_next_start():
    store = Recording()
    durable_before_start: list[bool] = []

    async def step() -> None:
        # this step's before-record is in a batch the store has taken already
        running = {sid for b in store.batches for sid, st in b if st is StepStatus.RUNNING}
        durable_before_start.append(len(running) == len(durable_before_start) + 1)

    engine = wfnb.Engine(store=store, namespace={"step": step})

    async def main() -> bool:
        return (await (await engine.start(chain(6)))).ok

    assert arun(main())
    assert durable_before_start == [True] * 6
    # the first start alone, then each end with the next start, then the last end
    assert len(store.batches) == 7
    for k in range(1, 6):
        assert {(f"s{k - 1}", StepStatus.COMPLETED), (f"s{k}", StepStatus.RUNNING)} <= (
            store.batches[k]
        )


def test_each_more_chain_step_costs_one_journal_frame(tmp_path):
    async def step() -> None:
        await asyncio.sleep(0)

    async def main() -> list[int]:
        store = DuckDBStore(tmp_path / "chain.duckdb")
        engine = wfnb.Engine(store=store, namespace={"step": step})
        frames = []
        for n in (10, 20):
            before = store.stats["frames"]
            assert (await (await engine.start(chain(n, f"chain{n}")))).ok
            frames.append(store.stats["frames"] - before)
        await engine.close()
        return frames

    short, long = arun(main())
    assert long - short == 10


class RunBatches(wfnb.MemoryStore):
    """Keeps, per batch written with run records, their statuses in order."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[list[RunStatus]] = []

    async def write(self, batch: Batch) -> None:
        await super().write(batch)
        if batch.runs:
            self.runs.append([r.status for r in batch.runs])


def test_a_run_that_can_start_at_once_is_pending_and_running_in_one_batch():
    """One acknowledgement where there were two: nothing can keep such a run
    pending, so its start goes with its first record. A run that may wait for a
    concurrency slot is written pending alone, and running once it has one."""
    store = RunBatches()
    engine = wfnb.Engine(store=store, namespace={"step": lambda: None})
    free = wf("steps:\n  s: {code: step}\n", name="free")
    limited = wf("concurrency: 1\nsteps:\n  s: {code: step}\n", name="limited")

    async def main() -> None:
        assert (await (await engine.start(free))).ok
        assert (await (await engine.start(limited))).ok

    arun(main())
    pending, running, completed = RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPLETED
    assert store.runs == [[pending, running], [completed], [pending], [running], [completed]]


def test_a_run_stopped_before_its_task_runs_tells_the_store_and_the_stream_alike():
    """Its start went to the store with its first record, so a run cancelled
    before its task runs has started there: the live stream says so too, before
    it says cancelled, as the events table does (found by review)."""
    store = wfnb.MemoryStore()
    engine = wfnb.Engine(store=store, namespace={"step": lambda: None})
    heard: list[str] = []

    async def main() -> list[str]:
        engine.subscribe(lambda event: heard.append(event.kind.value))
        handle = await engine.start(wf("steps:\n  s: {code: step}\n", name="stopped"))
        result = await engine.cancel(handle.id)
        assert result.status is RunStatus.CANCELLED
        while "run_cancelled" not in heard:  # the stream is delivered by its own task
            await asyncio.sleep(0)
        return [e.event for e in await store.get_events(run_id=handle.id)]

    stored = arun(main())
    assert stored == ["run_pending", "run_started", "run_cancelled"]
    assert [kind for kind in heard if kind.startswith("run_")] == stored[1:]
