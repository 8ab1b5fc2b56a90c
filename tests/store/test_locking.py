"""One DuckDB file, two real processes: wait and retry, or fail naming the holder."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.store._procs import read_line, spawn_child, tell
from wfnb.errors import StoreLocked
from wfnb.model import RunStatus
from wfnb.store.base import Batch, RunRecord
from wfnb.store.duckdb import DuckDBStore


def run_rec(run_id: str) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        workflow="w",
        definition_hash="h",
        status=RunStatus.RUNNING,
        inputs={"who": run_id},
        created_at=time.time(),
    )


@dataclass
class Holder:
    """Another process holding ``db`` until `release`."""

    db: Path
    child: subprocess.Popen[str]
    pid: str

    def release(self) -> int:
        tell(self.child)
        return self.child.wait(timeout=60)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    db = tmp_path / "shared.duckdb"
    child = spawn_child("hold-until-told", db)
    held = Holder(db, child, read_line(child, "held").split()[1])
    yield held
    held.release()


def test_locked_store_fails_after_bounded_wait_naming_the_holder(holder: Holder) -> None:
    store = DuckDBStore(holder.db, lock_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreLocked) as info:
        asyncio.run(store.write(Batch(runs=[run_rec("mine")])))
    assert time.monotonic() - started >= 0.5  # it waited its lock_timeout out
    assert f"pid {holder.pid}" in str(info.value) and info.value.holder is not None
    assert holder.pid in info.value.holder
    assert "one writing process" in str(info.value)
    assert holder.release() == 0
    # The refused write left nothing behind; the store works once the holder is gone.
    assert asyncio.run(store.get_run(run_id="mine")) is None
    assert asyncio.run(store.get_run(run_id="child")) is not None
    asyncio.run(store.write(Batch(runs=[run_rec("mine")])))
    assert asyncio.run(store.get_run(run_id="mine")) is not None
    asyncio.run(store.close())
    assert not holder.db.with_name(holder.db.name + ".lock-owner").exists()


async def _ticks_while(pending: asyncio.Future[Any], count: int) -> None:
    """The loop goes on while ``pending`` waits: ``count`` timer ticks get through
    (each a real wake-up of the loop), and ``pending`` is still waiting after them."""
    for _ in range(count):
        await asyncio.sleep(0.01)
        assert not pending.done(), pending


def test_second_process_waits_and_retries_until_the_holder_releases(holder: Holder) -> None:
    store = DuckDBStore(holder.db, lock_timeout=60)

    async def main() -> None:
        write = asyncio.ensure_future(store.write(Batch(runs=[run_rec("mine")])))
        await _ticks_while(write, 20)  # it waits for the holder, however long
        tell(holder.child)
        await write

    asyncio.run(main())
    assert holder.child.wait(timeout=60) == 0
    assert read_line(holder.child, "released")
    ids = {r.run_id for r in asyncio.run(store.list_runs())}
    assert ids == {"child", "mine"}
    asyncio.run(store.close())


def test_a_query_waits_for_the_file_off_the_event_loop(holder: Holder) -> None:
    """`DuckDBStore.query` (what ``%wfsql`` awaits in a kernel) waits for another
    process's lock on the store's thread: the caller's loop keeps running."""
    store = DuckDBStore(holder.db, lock_timeout=60)

    async def main() -> Any:
        query = asyncio.ensure_future(store.query("SELECT run_id FROM runs"))
        await _ticks_while(query, 20)
        tell(holder.child)
        return await query

    frame = asyncio.run(main())
    assert list(frame["run_id"]) == ["child"]
    asyncio.run(store.close())


def test_a_query_that_times_out_names_the_file_and_its_holder(holder: Holder) -> None:
    store = DuckDBStore(holder.db, lock_timeout=0.5)

    async def main() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        try:
            with pytest.raises(StoreLocked) as info:
                await store.query("SELECT count(*) FROM runs")
        finally:
            ticker.cancel()
        assert str(holder.db) in str(info.value) and f"pid {holder.pid}" in str(info.value)
        return ticks

    assert asyncio.run(main()) > 0  # the loop ran while the query waited
    assert holder.release() == 0
    asyncio.run(store.close())
