"""Light writes journalled on the event loop's thread, once a turn (``_turns``), and
what must still go to the writer thread: heavy batches, writes on a slow disk."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from tests.store.test_duckdb import run_rec, step_rec
from wfnb.model import StepStatus
from wfnb.store.base import Batch
from wfnb.store.duckdb import DuckDBStore, _turns
from wfnb.store.duckdb._files import OsFiles


@pytest.fixture
def roomy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No time budget: on a busy machine an append may be preempted past 1 ms, and
    these tests are about where writes go, not about the budget."""
    monkeypatch.setattr(_turns, "BUDGET", 60.0)


def test_a_chain_of_light_writes_is_journalled_on_the_loop(tmp_path: Path, roomy: None) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb")

    async def go() -> dict[str, int]:
        await store.acquire()
        before = store.stats
        for i in range(20):
            await store.write(Batch.changes(steps=[step_rec(f"s{i}", output={"i": i})]))
        after = store.stats
        await store.release()
        return {key: after[key] - before[key] for key in after}

    try:
        done = asyncio.run(go())
        assert done["inline"] == done["groups"] == done["frames"] == 20
        assert store.sql("SELECT count(*) AS n FROM steps")["n"][0] == 20
    finally:
        asyncio.run(store.close())


def test_the_writes_of_one_turn_share_one_frame_after_the_first(
    tmp_path: Path, roomy: None
) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb")

    async def go() -> dict[str, int]:
        await store.acquire()
        before = store.stats
        await asyncio.gather(*(store.write(Batch(runs=[run_rec(f"r{i}")])) for i in range(50)))
        after = store.stats
        return {key: after[key] - before[key] for key in after}

    try:
        done = asyncio.run(go())
        assert done["inline"] == done["frames"] == 2
        assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == 50
    finally:
        asyncio.run(store.close())


def test_a_heavy_write_keeps_its_place_after_the_light_ones_of_its_turn(
    tmp_path: Path, roomy: None
) -> None:
    """The heavy batch goes to the thread; the light one made before it in the same
    turn (after the turn's first, so still waiting for the turn's end) must not land
    after it: the attempt would be left `running`."""
    store = DuckDBStore(tmp_path / "s.duckdb")
    running = step_rec(status=StepStatus.RUNNING, ended_at=None)
    completed = step_rec(output="x" * (_turns.LIGHT + 1))
    assert _turns.light(Batch(steps=[running])) and not _turns.light(Batch(steps=[completed]))

    async def go() -> None:
        await store.acquire()
        await asyncio.gather(
            store.write(Batch(runs=[run_rec()])),
            store.write(Batch.changes(steps=[running])),
            store.write(Batch.changes(steps=[completed])),
        )

    try:
        asyncio.run(go())
        assert store.sql("SELECT status FROM steps")["status"].tolist() == ["completed"]
    finally:
        asyncio.run(store.close())


def test_what_makes_a_batch_heavy() -> None:
    assert _turns.light(Batch(steps=[step_rec(output={"rows": list(range(100))})]))
    assert not _turns.light(Batch(steps=[step_rec(output=list(range(_turns.LIGHT)))]))
    assert not _turns.light(Batch(steps=[step_rec(output=object())]))  # pickled
    assert not _turns.light(Batch(runs=[run_rec(inputs={"blob": b"x" * _turns.LIGHT})]))


def test_closing_the_store_writes_the_turn_still_open(tmp_path: Path, roomy: None) -> None:
    path = tmp_path / "s.duckdb"

    async def go() -> None:
        store = DuckDBStore(path)
        await store.acquire()
        writes = asyncio.gather(*(store.write(Batch(runs=[run_rec(n)])) for n in ("a", "b")))
        await asyncio.sleep(0)  # "a" is written; "b" waits for the turn's end
        await store.close()
        await writes

    asyncio.run(go())
    reopened = DuckDBStore(path)
    try:
        assert sorted(reopened.sql("SELECT run_id FROM runs")["run_id"]) == ["a", "b"]
    finally:
        asyncio.run(reopened.close())


def test_journalled_rows_are_folded_once_writes_stop(tmp_path: Path, roomy: None) -> None:
    """With a hold taken the thread waits with no timeout; a write made on the loop
    must still get the journal folded ``fold_idle`` seconds after it."""
    store = DuckDBStore(tmp_path / "s.duckdb", fold_idle=0.05)

    async def go() -> int:
        await store.acquire()
        folds = store.stats["folds"]
        await store.write(Batch(runs=[run_rec()]))
        assert store.stats["inline"] == 1
        deadline = time.monotonic() + 30
        while store.stats["folds"] == folds and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return store.stats["folds"] - folds

    try:
        assert asyncio.run(go()) == 1
    finally:
        asyncio.run(store.close())


class SlowDisk(OsFiles):
    """A disk whose first two syncs, once armed, take 5 ms (past the budget); the
    next ones say they started and wait for ``go``: set by a coroutine, which only
    runs while the loop is not blocked."""

    def __init__(self) -> None:
        self.armed = False
        self.syncs = 0
        self.started = threading.Event()
        self.go = threading.Event()
        self.waited_in_vain = False

    def _sync(self) -> None:
        if not self.armed:
            return
        self.syncs += 1
        if self.syncs <= 2:
            time.sleep(0.005)
            return
        self.started.set()
        if not self.go.wait(timeout=10):
            self.waited_in_vain = True

    def fsync(self, fd: int) -> None:
        self._sync()
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._sync()
        super().fdatasync(fd)


def test_a_slow_disk_sends_writes_to_the_thread_and_the_loop_keeps_running(
    tmp_path: Path,
) -> None:
    disk = SlowDisk()
    store = DuckDBStore(tmp_path / "s.duckdb", journal_files=disk)

    async def go() -> None:
        await store.acquire()
        disk.armed = True
        for name in ("slow", "slower"):  # on the loop: 5 ms each, over budget twice
            await store.write(Batch(runs=[run_rec(name)]))
        assert store.stats["inline"] == 2

        async def unblock() -> None:
            while not disk.started.is_set():
                await asyncio.sleep(0.001)
            disk.go.set()

        writing = asyncio.ensure_future(store.write(Batch(runs=[run_rec("next")])))
        await asyncio.ensure_future(unblock())
        await writing

    try:
        asyncio.run(go())
        assert not disk.waited_in_vain, "the loop was blocked in the disk's sync"
        assert store.stats["inline"] == 2
        assert sorted(store.sql("SELECT run_id FROM runs")["run_id"]) == ["next", "slow", "slower"]
    finally:
        asyncio.run(store.close())
