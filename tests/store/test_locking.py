"""One DuckDB file, two real processes: wait and retry, or fail naming the holder."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.store._procs import read_line, spawn_child
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


def test_locked_store_fails_after_bounded_wait_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "shared.duckdb"
    child = spawn_child("hold", db, "30")
    try:
        pid = read_line(child, "held").split()[1]
        store = DuckDBStore(db, lock_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(StoreLocked) as info:
            asyncio.run(store.write(Batch(runs=[run_rec("mine")])))
        waited = time.monotonic() - started
        assert 0.5 <= waited < 5
        assert f"pid {pid}" in str(info.value) and info.value.holder is not None
        assert pid in info.value.holder
        assert "one writing process" in str(info.value)
    finally:
        child.kill()
        child.wait()
    # The refused write left nothing behind; the store works once the holder is gone.
    assert asyncio.run(store.get_run(run_id="mine")) is None
    assert asyncio.run(store.get_run(run_id="child")) is not None
    asyncio.run(store.write(Batch(runs=[run_rec("mine")])))
    assert asyncio.run(store.get_run(run_id="mine")) is not None
    asyncio.run(store.close())
    assert not db.with_name(db.name + ".lock-owner").exists()


def test_second_process_waits_and_retries_until_the_holder_releases(tmp_path: Path) -> None:
    db = tmp_path / "shared.duckdb"
    child = spawn_child("hold", db, "1.0")
    read_line(child, "held")
    store = DuckDBStore(db, lock_timeout=30)
    started = time.monotonic()
    asyncio.run(store.write(Batch(runs=[run_rec("mine")])))
    assert time.monotonic() - started > 0.3  # it did wait for the holder
    assert child.wait(timeout=30) == 0
    assert read_line(child, "released")
    ids = {r.run_id for r in asyncio.run(store.list_runs())}
    assert ids == {"child", "mine"}
    asyncio.run(store.close())
