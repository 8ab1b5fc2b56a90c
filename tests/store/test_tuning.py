"""The store's memory footprint: its DuckDB setup (`wfnb.store.duckdb._tuning`:
small blocks for new files, one thread, no extension downloads, and a user's own
connect still works) and no table library loaded until a table is asked for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pytest

from wfnb.model import RunStatus
from wfnb.store.base import Batch, RunRecord
from wfnb.store.duckdb import DuckDBStore, _tuning


def run_rec(run_id: str = "r1") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        workflow="etl",
        definition_hash="h",
        status=RunStatus.RUNNING,
        inputs={},
        created_at=1_763_990_000.5,
    )


def block_size(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("name", ["wfnb.duckdb", "it's here.duckdb"])
def test_a_new_store_file_has_small_blocks(tmp_path: Path, name: str) -> None:
    store = DuckDBStore(tmp_path / name)
    asyncio.run(store.write(Batch(runs=[run_rec()])))
    asyncio.run(store.close())
    assert block_size(tmp_path / name) == _tuning.BLOCK_SIZE == 64 * 1024
    again = DuckDBStore(tmp_path / name)
    assert asyncio.run(again.get_run(run_id="r1")) is not None
    asyncio.run(again.close())


def test_a_file_made_with_other_blocks_keeps_them_and_works(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()  # DuckDB's default block size
    default = block_size(path)
    assert default != _tuning.BLOCK_SIZE
    store = DuckDBStore(path)
    asyncio.run(store.write(Batch(runs=[run_rec()])))
    assert asyncio.run(store.get_run(run_id="r1")) is not None
    asyncio.run(store.close())
    assert block_size(path) == default


def test_the_store_runs_one_thread_and_never_downloads_extensions(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "wfnb.duckdb")
    try:
        got = store.sql(
            "SELECT current_setting('threads') AS threads, "
            "current_setting('async_threads') AS async_threads, "
            "current_setting('autoinstall_known_extensions') AS autoinstall"
        )
        assert got.to_dict("records") == [{"threads": 1, "async_threads": 1, "autoinstall": False}]
    finally:
        asyncio.run(store.close())


def test_an_open_store_adds_two_threads_to_the_process(tmp_path: Path) -> None:
    """The writer thread and one of DuckDB's asynchronous I/O pool (DuckDB 2.0
    starts 8 and a worker per core): a kernel's thread count stays small."""
    import threading

    def os_threads() -> int:
        return len(list(Path("/proc/self/task").iterdir()))

    if not Path("/proc/self/task").is_dir():
        pytest.skip("counts threads through /proc")
    before = os_threads() - threading.active_count()  # threads Python does not list

    async def held() -> int:
        await store.acquire()
        try:
            return os_threads() - threading.active_count()
        finally:
            await store.release()

    store = DuckDBStore(tmp_path / "wfnb.duckdb")
    try:
        # the writer is a Python thread; at most one more (fewer if another test's
        # DuckDB closes meanwhile): DuckDB's 8 asynchronous I/O threads made this 8
        assert asyncio.run(held()) - before <= 1
    finally:
        asyncio.run(store.close())


def test_a_plain_connect_in_this_process_works_while_the_store_holds_the_file(
    tmp_path: Path,
) -> None:
    """Why the settings are SET and not ``duckdb.connect(config=...)``: DuckDB
    refuses a second connect to the file with another configuration."""
    path = tmp_path / "wfnb.duckdb"
    store = DuckDBStore(path)

    async def held() -> list[tuple[str]]:
        await store.acquire()
        try:
            await store.write(Batch(runs=[run_rec()]))
            await store.flush()
            con = duckdb.connect(str(path))
            try:
                return con.execute("SELECT run_id FROM runs").fetchall()
            finally:
                con.close()
        finally:
            await store.release()

    try:
        assert asyncio.run(held()) == [("r1",)]
    finally:
        asyncio.run(store.close())


def test_a_durable_run_without_tables_loads_no_table_library(tmp_path: Path) -> None:
    """pandas, pyarrow and numpy cost memory (issue 13): they load only when a table
    is asked for (a table output, ``store.sql``), not for a durable run and reading
    its history back."""
    import subprocess
    import sys

    from tests.store._procs import ROOT

    code = f"""
import asyncio, sys
import wfnb
from wfnb.store.duckdb import DuckDBStore

async def main():
    store = DuckDBStore({str(tmp_path / "wfnb.duckdb")!r})
    engine = wfnb.Engine(store=store, namespace={{"f": lambda: [1, 2]}})
    wf = wfnb.Workflow.from_yaml("steps:\\n  a: {{code: f}}\\n  b: {{code: f, needs: [a]}}", name="w")
    result = await (await engine.start(wf))
    assert result.status == "completed", result
    assert len(await store.get_steps(run_id=result.run_id)) == 2
    assert await store.get_events(run_id=result.run_id)
    await engine.close()

asyncio.run(main())
print(",".join(m for m in ("pandas", "pyarrow", "numpy") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
