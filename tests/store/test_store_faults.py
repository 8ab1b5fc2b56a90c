"""Faults through the Store protocol, with the real engine on a DuckDBStore: a disk
that fails (full, or EIO) fails the run cleanly and leaves it resumable once the
disk works again; a file that is not DuckDB is refused and never overwritten."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import wfnb
from tests.store._powerloss import FailingFiles
from wfnb.errors import StoreError
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import latest_attempts
from wfnb.store.duckdb import DuckDBStore
from wfnb.store.duckdb._journal import Journal

WORKFLOW = """
steps:
  a: {code: work, with: {name: a}}
  b: {code: work, needs: [a], with: {name: b}}
  c: {code: work, needs: [b], with: {name: c}}
"""


@pytest.mark.parametrize(
    ("error", "ops"),
    [(errno.ENOSPC, ("write", "fsync")), (errno.EIO, ("write", "fsync")), (errno.EIO, ("fsync",))],
    ids=["disk-full", "eio", "fsync-eio"],
)
def test_a_failing_disk_fails_the_run_cleanly_and_it_resumes_after(
    tmp_path: Path, error: int, ops: tuple[str, ...]
) -> None:
    db = tmp_path / "wfnb.duckdb"
    files = FailingFiles(error, ops)
    ran: Counter[str] = Counter()

    def work(name: str) -> dict[str, Any]:
        ran[name] += 1
        if name == "b" and ran[name] == 1:
            files.failing = True  # the disk fills up while b runs
        return {"name": name}

    async def main() -> None:
        store = DuckDBStore(db, journal_files=files, lock_timeout=5.0)
        engine = wfnb.Engine(store=store, namespace={"work": work})
        try:
            handle = await engine.start(wfnb.Workflow.from_yaml(WORKFLOW, name="faulty"))
            result = await asyncio.wait_for(handle.wait(), timeout=60)
            assert result.status is RunStatus.FAILED
            assert os.strerror(error) in (result.error or "")
            assert ran == {"a": 1, "b": 1}  # c never started on an unrecorded b
            assert files.failures > 0

            files.failing = False  # the disk works again
            stored = await store.get_run(run_id=handle.id)
            assert stored is not None and stored.status is not RunStatus.COMPLETED
            steps = latest_attempts(await store.get_steps(run_id=handle.id))
            assert steps["a"].status is StepStatus.COMPLETED  # acknowledged before
            assert "c" not in steps

            again = await engine.resume(handle.id)
            done = await asyncio.wait_for(again.wait(), timeout=60)
            assert done.status is RunStatus.COMPLETED, done.error
            assert done.outputs == {n: {"name": n} for n in "abc"}
            assert ran == {"a": 1, "b": 2, "c": 1}
        finally:
            await asyncio.wait_for(engine.close(), timeout=60)

    asyncio.run(main())
    journal = Journal(db.with_name(db.name + ".journal"))
    journal.open()  # whole frames only: nothing half-written, nothing corrupt
    journal.close()


WHAT = {
    "text": "a text file",
    "random": "of unknown contents",
    "sqlite": "a SQLite database",
    "empty-ish": "of unknown contents",
    "empty": "an empty file",
}


def not_duckdb(kind: str, path: Path) -> None:
    if kind == "text":
        path.write_text("name,value\nkeep,me\n")
    elif kind == "random":
        path.write_bytes(os.urandom(3 * 4096 + 17))
    elif kind == "sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE t (x)")
        con.execute("INSERT INTO t VALUES (1)")
        con.commit()
        con.close()
    elif kind == "empty-ish":
        path.write_bytes(b"\x00" * 10)
    elif kind == "empty":
        path.touch()


@pytest.mark.parametrize("kind", ["text", "random", "sqlite", "empty-ish", "empty"])
def test_a_file_that_is_not_duckdb_is_refused_and_left_as_it_was(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "data.duckdb"
    not_duckdb(kind, path)
    before = path.read_bytes()
    siblings = set(tmp_path.iterdir())

    async def main() -> None:
        store = DuckDBStore(path, lock_timeout=1.0)
        try:
            with pytest.raises(StoreError, match=rf"not a DuckDB database \({WHAT[kind]}\)"):
                await store.list_runs()
            with pytest.raises(StoreError, match="not a DuckDB database"):
                await store.acquire()
        finally:
            await store.close()

    asyncio.run(main())
    assert path.read_bytes() == before
    assert set(tmp_path.iterdir()) == siblings  # no journal, no WAL, no sidecar left
