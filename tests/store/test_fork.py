"""A DuckDBStore after ``os.fork()``: the child inherits the writer object but not
its thread (so any use used to wait forever), and DuckDB's in-process database
object (so a new connection in the child would write to the parent's file behind
its back). Each test forks for real; the child reports through a pipe and the
parent waits for it with a deadline, killing it if it hangs."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.store._procs import spawn
from wfnb.errors import StoreError
from wfnb.store.base import Batch, RunRecord
from wfnb.store.duckdb import DuckDBStore

DEADLINE = 30.0


def run_rec(run_id: str) -> RunRecord:
    return RunRecord(run_id, "w", "h", "running", {}, 1.0)  # type: ignore[arg-type]


def write(store: DuckDBStore, run_id: str) -> None:
    asyncio.run(store.write(Batch(runs=[run_rec(run_id)])))


def in_child(body: Callable[[], str]) -> str:
    """``body()``'s answer (or the error it raised), from a forked child."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the point
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(read_end)
        try:
            answer = body()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            answer = f"{type(exc).__name__}: {exc}"
        os.write(write_end, answer.encode())
        os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        pytest.fail(f"the forked child hung for {DEADLINE:g} s")
    with os.fdopen(read_end, "rb") as fh:
        return fh.read().decode()


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = DuckDBStore(tmp_path / "wfnb.duckdb", lock_timeout=2.0)
    write(opened, "before")  # the writer thread runs and the file is open
    yield opened
    asyncio.run(opened.close())


def test_a_store_from_before_fork_refuses_clearly_in_the_child(store: DuckDBStore) -> None:
    parent = os.getpid()

    def body() -> str:
        write(store, "child")
        return "written"

    answer = in_child(body)
    assert answer.startswith("StoreError: ")
    assert f"opened in process {parent} before a fork" in answer
    assert "open a new DuckDBStore in the child" in answer
    write(store, "after")  # the parent's store goes on
    assert {r.run_id for r in asyncio.run(store.list_runs())} == {"before", "after"}


def test_sql_and_close_in_the_child_do_not_hang(store: DuckDBStore) -> None:
    def body() -> str:
        answers = []
        for use in (lambda: store.sql("SELECT 1"), lambda: asyncio.run(store.close())):
            try:
                use()
            except StoreError as exc:
                answers.append("before a fork" in str(exc))
        return repr(answers)

    assert in_child(body) == "[True, True]"


def test_a_new_store_in_the_child_on_the_parents_open_file_is_refused(
    store: DuckDBStore,
) -> None:
    def body() -> str:
        write(DuckDBStore(store.path, lock_timeout=1.0), "child")
        return "written"

    answer = in_child(body)
    assert answer.startswith("StoreError: ")
    assert "was open in process" in answer and "before the fork" in answer
    assert {r.run_id for r in asyncio.run(store.list_runs())} == {"before"}


def test_a_new_store_in_the_child_on_another_file_works(store: DuckDBStore, tmp_path: Path) -> None:
    def body() -> str:
        fresh = DuckDBStore(tmp_path / "child.duckdb")
        write(fresh, "child")
        runs = asyncio.run(fresh.list_runs())
        asyncio.run(fresh.close())
        return ",".join(r.run_id for r in runs)

    assert in_child(body) == "child"


EXITING_CHILD = """
import asyncio, gc, hashlib, os, sys
from pathlib import Path
from wfnb.store.base import Batch, RunRecord
from wfnb.store.duckdb import DuckDBStore

db = Path(sys.argv[1])
files = [db, db.with_name(db.name + ".wal")]
store = DuckDBStore(db)
asyncio.run(store.write(Batch(runs=[RunRecord("r1", "w", "h", "running", {}, 1.0)])))
asyncio.run(store.flush())  # folded: in DuckDB's WAL, not yet checkpointed
before = [hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None for f in files]
pid = os.fork()
if pid == 0:  # drop everything and exit the normal way: finalizers and atexit run
    del store
    gc.collect()
    sys.exit(0)
os.waitpid(pid, 0)
after = [hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None for f in files]
print("untouched" if after == before else f"changed {before} -> {after}")
asyncio.run(store.close())
"""


def test_a_child_exiting_normally_never_writes_the_parents_file(tmp_path: Path) -> None:
    proc = spawn("-c", EXITING_CHILD, str(tmp_path / "wfnb.duckdb"))
    out, err = proc.communicate(timeout=DEADLINE)
    assert out.strip() == "untouched", err
