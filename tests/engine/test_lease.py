"""The store lease: a run waiting for a person holds no lock on the store file, so
another process queries and runs on it meanwhile; the decision takes it back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import wfnb
from wfnb.model import RunStatus

from ..conftest import arun, wf
from ..store._procs import ROOT, read_line

CHILD = Path(__file__).with_name("_paused_child.py")


def test_another_process_queries_and_runs_while_a_run_waits_for_approval(tmp_path):
    db = tmp_path / "shared.duckdb"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        run_id = read_line(child, "paused ").split()[1]

        async def meanwhile():
            # DuckDB lets one process at a time open the file: this would end in
            # StoreLocked if the waiting run still held it.
            engine = wfnb.Engine(
                store=wfnb.DuckDBStore(db, lock_timeout=30), namespace={"two": lambda: 2}
            )
            try:
                seen = wfnb.sql(
                    f"SELECT status FROM runs WHERE run_id = '{run_id}'", store=engine.store
                )
                handle = await engine.start(wf("steps:\n  t: {code: two}\n", name="other"))
                result = await handle.wait()
            finally:
                await engine.close()
            return seen["status"].tolist(), result

        seen, other = arun(meanwhile())
        assert seen == ["paused"]
        assert other.status is RunStatus.COMPLETED and other["t"] == 2

        assert child.stdin is not None
        child.stdin.write("approve\n")
        child.stdin.flush()
        assert read_line(child, "status ") == "status completed"
        assert child.wait(timeout=120) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    async def stored():
        store = wfnb.DuckDBStore(db)
        try:
            return await store.get_run(run_id=run_id)
        finally:
            await store.close()

    assert arun(stored()).status is RunStatus.COMPLETED
