"""The DuckDB checkpoint store: durable runs, step outputs, and SQL over history.

This package is the only part of wfnb that imports ``duckdb``; every ``duckdb.Error``
becomes a `StoreError` (or `StoreLocked`) here. Layout:

- ``_codec``   records -> rows; how each output is kept (JSON / table / pickle)
- ``_decode``  rows -> records, for the reads
- ``_journal`` the fsync'd append-only journal that acknowledges checkpoints
- ``_files``   the file I/O seam the journal writes through (tests inject faults)
- ``_fork``    what a store does in a forked child: refuse clearly, never hang
- ``_schema``  the SQL: the schema a new file gets, `migrate`, the reads
- ``_migrations`` how a file of an earlier wfnb reaches the current schema (append-only)
- ``_fold``    one DuckDB transaction: journal frames folded in, then table batches
- ``_upsert``  the fold's write side: journalled rows upserted, one statement a table
- ``_lock``    opening a file another process holds: retry, `StoreLocked` naming it
- ``_tuning``  the DuckDB settings (memory, no downloads) and new files' block size
- ``_tables``  which table outputs become DuckDB tables, and writing them
- ``_waiters`` handing results back to the caller's thread (and loop)
- ``_writer``  the writer thread: group commit, when to fold, connection lifetime
- ``_database`` the DuckDB file and its journal: frames appended, folded, replayed
- ``_turns``   light writes journalled on the event loop's thread, once a turn

Durability decision, by measurement (2-core dev box, duckdb 2.0.1, ``python
benchmarks/bench_store.py``): a raw DuckDB upsert transaction of 2 rows costs
≈ 1.8 ms and the store writing each checkpoint as its own transaction ≈ 4.3 ms
per chain step (3.4 ms per 1-record write) — far above the 600 µs/step goal —
while an fsync'd append costs ≈ 0.13 ms. With the journal, a chain step's
checkpoint (2 records) is acknowledged in ≈ 180–270 µs, a 200-way fan-out costs
≈ 16–22 µs per record (3 group commits for 200 writes) and batches of 200 ≈ 7–11 µs
per record. So a write is acknowledged when its journal frame is synced (see
``_journal``), and the
journal is folded into DuckDB in one transaction per ``fold_rows`` rows, after
``fold_idle`` s without writes, before any read, and on close (≈ 25 ms for 800
rows); opening the store replays (idempotently) what a killed process left in it.
Batches with a table output skip the journal and commit straight to DuckDB
(folding the journal first, in the same transaction).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import duckdb

from wfnb.errors import StoreError
from wfnb.model import RunStatus
from wfnb.store.base import Batch, CallRecord, EventRecord, RunRecord, StepRecord, WorkflowRecord
from wfnb.store.duckdb import _codec, _decode, _schema
from wfnb.store.duckdb._files import OS_FILES, JournalFiles
from wfnb.store.duckdb._turns import TurnCommits
from wfnb.store.duckdb._waiters import AsyncWaiter, SyncWaiter
from wfnb.store.duckdb._writer import Writer

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DuckDBStore", "default_db_path", "sql"]

T = TypeVar("T")
DEFAULT_RELATIVE_PATH = Path(".wfnb") / "wfnb.duckdb"


_SHARED_LOCK = threading.Lock()
#: One writer per file per process. DuckDB hands a second ``connect`` to the same
#: path in one process the same database, so no file lock would keep two writers
#: apart, and two journals on one file would truncate each other's frames. Every
#: DuckDBStore on a path therefore shares its writer (the first one's settings win),
#: and with it the writes its callers journal themselves (`TurnCommits`, which holds
#: the writer), which must keep their order whichever store made them; the writer
#: closes with the last of them.
_SHARED: dict[Path, tuple[TurnCommits, int]] = {}


def _attach(path: Path, **options: Any) -> TurnCommits:
    with _SHARED_LOCK:
        turns, users = _SHARED.get(path, (None, 0))
        if turns is None or turns.writer.closed:
            turns, users = TurnCommits(Writer(path, **options)), 0
        _SHARED[path] = (turns, users + 1)
        return turns


def _detach(path: Path, writer: Writer) -> bool:
    """Forget one user of ``writer``; True when it was the last one."""
    with _SHARED_LOCK:
        turns, users = _SHARED.get(path, (None, 0))
        if turns is None or turns.writer is not writer:
            return True
        if users <= 1:
            del _SHARED[path]
            return True
        _SHARED[path] = (turns, users - 1)
        return False


def default_db_path() -> Path:
    """Where the store lives unless told otherwise: ``$WFNB_DB``, else
    ``.wfnb/wfnb.duckdb`` under the current working directory (shared with the
    notebook's ``%config Wfnb.db``, which overrides both)."""
    env = os.environ.get("WFNB_DB")
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_RELATIVE_PATH


class DuckDBStore:
    """A `wfnb.store.base.Store` on one DuckDB file.

    Construction is cheap and takes no lock: the file is opened by the first
    operation and closed after ``idle_close`` seconds without operations, so that
    another kernel can use the same file in between. While runs are active the engine
    brackets them with ``await store.acquire()`` / ``await store.release()`` so the
    connection (and the file lock) stays open. If another process holds the file,
    operations wait up to ``lock_timeout`` seconds and then raise `StoreLocked`.

    ``journal_files`` is the file I/O the journal goes through (default: the ``os``
    calls); tests pass one that simulates power loss or a full disk.

    ``fold_rows`` is how many journal rows a run may pile up before the writer
    folds them into DuckDB. A fold's cost is mostly fixed (a transaction, the
    primary-key indexes), and a step's `running` and `completed` rows folded
    together are written once instead of twice: 16,000 rather than 4,000 took a
    10,000-step run of 500 waves × 20 from 1.63-1.64× to 1.30-1.48× the per-step
    CPU of a 200-step one in 8 runs of 9 (one 1.68×; `benchmarks/bench_engine.py
    --scale 10000 --store duckdb`, load average 1-1.2), with the same peak memory
    (`bench_memory.py --steps 10000`: 162 MB either way).
    """

    serializes_outputs: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        lock_timeout: float = 10.0,
        idle_close: float = 1.0,
        journal: bool = True,
        fold_rows: int = 16000,
        fold_idle: float = 0.25,
        journal_files: JournalFiles | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._key = self.path.resolve()
        self._turns = _attach(
            self._key,
            lock_timeout=lock_timeout,
            idle_close=idle_close,
            journal=journal,
            fold_rows=fold_rows,
            fold_idle=fold_idle,
            files=journal_files or OS_FILES,
        )
        self._writer = self._turns.writer
        self._closed = False

    def __repr__(self) -> str:
        return f"DuckDBStore({str(self.path)!r})"

    @property
    def stats(self) -> dict[str, int]:
        """Counters: group commits (``inline``: those the event loop journalled
        itself), journal frames, folds, connection opens."""
        return dict(self._writer.stats)

    # -- plumbing -----------------------------------------------------------------
    async def _submit(self, send: Callable[[AsyncWaiter], None]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        send(AsyncWaiter(loop, future))
        return await future

    async def _call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        result: T = await self._submit(lambda w: self._writer.call(fn, w))
        return result

    def _call_sync(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        waiter = SyncWaiter()
        self._writer.call(fn, waiter)
        result: T = waiter.future.result()
        return result

    # -- the Store protocol -------------------------------------------------------
    async def write(self, batch: Batch) -> None:
        if batch:
            await self._turns.write(batch)

    async def get_run(self, *, run_id: str) -> RunRecord | None:
        def read(con: duckdb.DuckDBPyConnection) -> RunRecord | None:
            row = con.execute(_schema.RUN_SELECT + " WHERE run_id = ?", [run_id]).fetchone()
            return _decode.decode_run(row) if row else None

        return await self._call(read)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        statuses: Sequence[RunStatus] | None = None,
        parent_run_id: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        query, params = _schema.list_runs_query(
            workflow=workflow,
            parent_run_id=parent_run_id,
            limit=limit,
            statuses=None if statuses is None else [RunStatus(s).value for s in statuses],
        )

        def read(con: duckdb.DuckDBPyConnection) -> list[RunRecord]:
            return [_decode.decode_run(row) for row in con.execute(query, params).fetchall()]

        return await self._call(read)

    async def get_steps(self, *, run_id: str) -> list[StepRecord]:
        def read(con: duckdb.DuckDBPyConnection) -> list[StepRecord]:
            rows = con.execute(_schema.STEP_SELECT, [run_id]).fetchall()
            return [_decode.decode_step(row, _read_table(con, row[9])) for row in rows]

        return await self._call(read)

    async def get_calls(self, *, run_id: str) -> list[CallRecord]:
        def read(con: duckdb.DuckDBPyConnection) -> list[CallRecord]:
            rows = con.execute(_schema.CALL_SELECT, [run_id]).fetchall()
            return [_decode.decode_call(row) for row in rows]

        return await self._call(read)

    async def get_workflow(self, *, name: str, definition_hash: str) -> WorkflowRecord | None:
        def read(con: duckdb.DuckDBPyConnection) -> WorkflowRecord | None:
            row = con.execute(
                _schema.WORKFLOW_SELECT + " WHERE name = ? AND definition_hash = ?",
                [name, definition_hash],
            ).fetchone()
            return _decode.decode_workflow(row) if row else None

        return await self._call(read)

    async def get_events(self, *, run_id: str) -> list[EventRecord]:
        def read(con: duckdb.DuckDBPyConnection) -> list[EventRecord]:
            rows = con.execute(_schema.EVENT_SELECT, [run_id]).fetchall()
            return [_decode.decode_event(row) for row in rows]

        return await self._call(read)

    async def prune(self, *, older_than: float, keep_failed: bool = False) -> int:
        def delete(con: duckdb.DuckDBPyConnection) -> int:
            con.execute("BEGIN")
            try:
                doomed = [
                    r[0]
                    for r in con.execute(
                        _schema.PRUNE_DOOMED, [_codec.to_us(older_than), keep_failed]
                    ).fetchall()
                ]
                if doomed:
                    tables = con.execute(
                        "SELECT DISTINCT output_table FROM steps WHERE output_table IS NOT NULL "
                        "AND list_contains(?::VARCHAR[], run_id)",
                        [doomed],
                    ).fetchall()
                    for (name,) in tables:
                        con.execute(f'DROP TABLE IF EXISTS "{name}"')
                    for table in ("steps", "calls", "events", "runs"):
                        con.execute(
                            f"DELETE FROM {table} WHERE list_contains(?::VARCHAR[], run_id)",
                            [doomed],
                        )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return len(doomed)

        return await self._call(delete)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._turns.drain(asyncio.get_running_loop())
        if _detach(self._key, self._writer):
            await self._submit(self._writer.close)

    # -- beyond the protocol ------------------------------------------------------
    async def acquire(self) -> None:
        """Open the file (waiting for another process's lock, up to ``lock_timeout``)
        and keep it open until the matching `release`. Raises `StoreLocked`."""
        await self._hold(+1)

    async def release(self) -> None:
        """Undo one `acquire`; the file is closed ``idle_close`` s after the last use."""
        await self._hold(-1)

    async def _hold(self, delta: int) -> None:
        if not self._writer.hold_now(delta):
            await self._submit(lambda w: self._writer.hold(delta, w))

    async def flush(self) -> None:
        """Fold the journal into DuckDB now (reads do this on their own)."""
        await self._call(lambda con: None)

    async def query(self, query: str) -> pd.DataFrame:
        """`sql`, awaited: the statement runs on the store's writer thread, so while it
        waits (up to ``lock_timeout`` s for a file another process holds, then
        `StoreLocked` naming the file and its holder) the caller's event loop keeps
        running its workflows and widget clicks. What ``%wfsql`` awaits in a kernel."""
        frame: pd.DataFrame = await self._call(lambda con: _read_only_query(con, query))
        return frame

    def sql(self, query: str) -> pd.DataFrame:
        """Run one read-only ``SELECT`` over the history and return a DataFrame.

        Blocking: it holds the calling thread until the result is there, up to
        ``lock_timeout`` s while another process holds the file; on an event loop (a
        kernel's) ``await store.query(...)`` instead. It sees every
        write this store has acknowledged (the journal is folded first) and it can
        never change history: the statement must parse as a single SELECT (so no
        DELETE, COPY, ATTACH, SET, PRAGMA, CALL or EXPLAIN ANALYZE), and it runs in a
        ``BEGIN TRANSACTION READ ONLY`` that is rolled back, which DuckDB enforces
        even for whatever a SELECT could reach. It reads through the store's own
        connection because DuckDB will not open a second, read-only connection to a
        file this process has open for writing.
        """
        return self._call_sync(lambda con: _read_only_query(con, query))


def _read_table(con: duckdb.DuckDBPyConnection, name: str | None) -> Any:
    return None if name is None else con.sql(f'SELECT * FROM "{name}"').to_arrow_table()


def _read_only_query(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise StoreError(f"wfnb sql: cannot parse the query: {exc}") from exc
    if len(statements) != 1:
        raise StoreError(f"wfnb sql: give exactly one SELECT statement, not {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise StoreError(
            f"wfnb sql is read-only: {kind.name} statements are refused; "
            "only SELECT (and DESCRIBE/SHOW/SUMMARIZE/FROM …) may run"
        )
    con.execute("BEGIN TRANSACTION READ ONLY")
    try:
        return con.execute(query).df()
    except duckdb.Error as exc:
        raise StoreError(f"wfnb sql: {exc}") from exc
    finally:
        con.execute("ROLLBACK")


def sql(query: str, *, store: DuckDBStore | None = None) -> pd.DataFrame:
    """``SELECT`` over the run history as a pandas DataFrame (read-only; see
    `DuckDBStore.sql`). Without ``store``, opens the default store briefly."""
    if store is not None:
        return store.sql(query)
    own = DuckDBStore()
    try:
        return own.sql(query)
    finally:
        waiter = SyncWaiter()
        own._closed = True
        if _detach(own._key, own._writer):
            own._writer.close(waiter)
            waiter.future.result()
