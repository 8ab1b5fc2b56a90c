"""DuckDBStore beyond the conformance suite: files, journal replay, SQL, group commit."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.store._procs import read_line, spawn_child
from tests.store.conftest import frames_only
from wfnb.errors import StoreError
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, RunRecord, StepRecord
from wfnb.store.duckdb import DuckDBStore, _schema, default_db_path, sql
from wfnb.store.duckdb._journal import HEADER


def journal_is_empty(db: Path) -> bool:
    """Whether the journal beside ``db`` holds no frame: its header, then (after a
    fold) the zeros written ahead for the next frames."""
    return frames_only(db.with_name(db.name + ".journal")) == HEADER


NOW = 1_763_990_000.5


def run_rec(run_id: str = "r1", **kw: object) -> RunRecord:
    base: dict[str, object] = dict(
        run_id=run_id,
        workflow="etl",
        definition_hash="h",
        status=RunStatus.RUNNING,
        inputs={},
        created_at=NOW,
    )
    return RunRecord(**{**base, **kw})  # type: ignore[arg-type]


def step_rec(step_id: str = "s", output: object = None, **kw: object) -> StepRecord:
    base: dict[str, object] = dict(
        run_id="r1",
        step_id=step_id,
        attempt=1,
        status=StepStatus.COMPLETED,
        started_at=NOW,
        ended_at=NOW + 1,
        output=output,
        has_output=output is not None,
    )
    return StepRecord(**{**base, **kw})  # type: ignore[arg-type]


def write(store: DuckDBStore, **kw: object) -> None:
    asyncio.run(store.write(Batch(**kw)))  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.duckdb"


@pytest.fixture
def store(db: Path):  # type: ignore[no-untyped-def]
    s = DuckDBStore(db)
    yield s
    asyncio.run(s.close())


def test_default_path_is_under_cwd_and_wfnb_db_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFNB_DB", raising=False)
    assert default_db_path() == tmp_path / ".wfnb" / "wfnb.duckdb"
    assert DuckDBStore().path == tmp_path / ".wfnb" / "wfnb.duckdb"
    monkeypatch.setenv("WFNB_DB", str(tmp_path / "elsewhere.duckdb"))
    assert DuckDBStore().path == tmp_path / "elsewhere.duckdb"


def test_reopen_keeps_everything_and_setup_is_idempotent(db: Path) -> None:
    for attempt in range(3):
        store = DuckDBStore(db)
        if attempt == 0:
            write(store, runs=[run_rec()], steps=[step_rec(output=pd.DataFrame({"a": [1]}))])
        assert asyncio.run(store.get_run(run_id="r1")) is not None
        (step,) = asyncio.run(store.get_steps(run_id="r1"))
        pd.testing.assert_frame_equal(step.output, pd.DataFrame({"a": [1]}))
        versions = store.sql("SELECT version FROM schema_version ORDER BY version")
        assert versions["version"].tolist() == list(range(1, _schema.SCHEMA_VERSION + 1))
        asyncio.run(store.close())


def test_a_v1_file_is_migrated_keeping_its_rows(db: Path) -> None:
    from wfnb.store.duckdb import _schema

    con = duckdb.connect(str(db))
    _schema.migrate(con, target=1)  # a file as the first release wrote it
    con.execute(
        "INSERT INTO runs (run_id, workflow, definition_hash, status, inputs, depth, "
        "created_at) VALUES ('old', 'etl', 'h', 'completed', '{\"a\": 1}', 0, "
        "TIMESTAMP '2025-01-01 00:00:00')"
    )
    con.close()
    store = DuckDBStore(db)
    old = asyncio.run(store.get_run(run_id="old"))
    assert old is not None and old.inputs == {"a": 1} and old.code_hashes == {}
    assert old.created_at == 1735689600.0
    write(store, runs=[run_rec(code_hashes={"s": "abc"})])
    got = asyncio.run(store.get_run(run_id="r1"))
    assert got is not None and got.code_hashes == {"s": "abc"}
    versions = store.sql("SELECT version FROM schema_version ORDER BY version")
    assert versions["version"].tolist() == list(range(1, _schema.SCHEMA_VERSION + 1))
    # the events view became a table: the old run's history, as the view showed it
    events = store.sql("SELECT event, status FROM events WHERE run_id = 'old'")
    assert events.to_dict("records") == [{"event": "run_pending", "status": "pending"}]
    asyncio.run(store.close())


def test_a_v2_file_gets_calls_and_the_worker_column_and_views_show_it(db: Path) -> None:
    from wfnb.store.duckdb import _schema

    con = duckdb.connect(str(db))
    _schema.migrate(con, target=2)  # a file as a release before http and Dask wrote it
    con.execute(
        "INSERT INTO runs (run_id, workflow, status, depth, created_at, started_at) "
        "VALUES ('r1', 'etl', 'completed', 0, TIMESTAMP '2025-01-01', TIMESTAMP '2025-01-01')"
    )
    con.execute(
        "INSERT INTO steps (run_id, step_id, attempt, status, started_at, output_kind) "
        "VALUES ('r1', 'old', 1, 'completed', TIMESTAMP '2025-01-01', 'none')"
    )
    con.close()
    store = DuckDBStore(db)
    (old,) = asyncio.run(store.get_steps(run_id="r1"))
    assert old.step_id == "old" and old.worker is None
    write(store, steps=[step_rec("new", worker="tcp://127.0.0.1:4242")])
    steps = {s.step_id: s for s in asyncio.run(store.get_steps(run_id="r1"))}
    assert steps["new"].worker == "tcp://127.0.0.1:4242"
    for view in ("run_timeline", "latest_steps"):
        rows = store.sql(f"SELECT step_id, coalesce(worker, '-') FROM {view} ORDER BY step_id")
        assert rows.values.tolist() == [["new", "tcp://127.0.0.1:4242"], ["old", "-"]]
    versions = store.sql("SELECT version FROM schema_version ORDER BY version")
    assert versions.version.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]  # v3 (calls), v4 (worker), ...
    assert store.sql("SELECT count(*) AS n FROM http_requests").n.tolist() == [0]
    asyncio.run(store.close())


def test_a_journal_frame_from_before_calls_is_still_folded(db: Path) -> None:
    from wfnb.store.base import Batch
    from wfnb.store.duckdb._codec import encode_batch
    from wfnb.store.duckdb._journal import Journal

    encoded = encode_batch(Batch(runs=[run_rec()]))
    journal = Journal(db.with_name(db.name + ".journal"))
    journal.open()
    journal.append(1, (encoded.workflows, encoded.runs, encoded.steps))  # three lists
    journal.close()
    store = DuckDBStore(db)
    assert asyncio.run(store.get_run(run_id="r1")) is not None
    asyncio.run(store.close())


def test_a_store_with_a_format_2_journal_is_refused_by_a_wfnb_before_it(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wfnb from before journal format 2 (schema 6) would cut a format-2 journal
    as a torn frame; it migrates before opening the journal, so schema 7 stops it."""
    store = DuckDBStore(db)
    write(store, runs=[run_rec()])
    asyncio.run(store.close())
    con = duckdb.connect(str(db))
    version = _schema.SCHEMA_VERSION  # 7, or later
    assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (version,)
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", 6)  # the wfnb of journal format 1
    with pytest.raises(StoreError, match=f"schema version {version}, newer than this wfnb"):
        _schema.migrate(con, target=6)
    con.close()


def test_a_newer_schema_is_refused_clearly(db: Path) -> None:
    first = DuckDBStore(db)
    asyncio.run(first.flush())  # opens the file: creates schema v1
    asyncio.run(first.close())
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO schema_version (version) VALUES (99)")
    con.close()
    store = DuckDBStore(db)
    with pytest.raises(StoreError, match="newer"):
        asyncio.run(store.get_run(run_id="r1"))
    asyncio.run(store.close())


def test_user_tables_have_timestamps_and_queryable_outputs(store: DuckDBStore) -> None:
    frame = pd.DataFrame({"city": ["Oslo", "Lima"], "n": [3, 4]})
    write(
        store,
        runs=[run_rec(started_at=NOW)],
        steps=[
            step_rec("t", output=frame),
            step_rec("j", output={"k": [1]}, started_at=NOW + 2, ended_at=NOW + 2.25),
        ],
    )
    steps = store.sql(
        "SELECT step_id, output_kind, output_table, duration_ms, started_at "
        "FROM steps ORDER BY step_id"
    )
    assert steps["output_kind"].tolist() == ["json", "table"]
    assert steps["duration_ms"].tolist() == [250.0, 1000.0]
    assert str(steps["started_at"].dtype).startswith("datetime64")
    table = steps["output_table"][1]
    assert store.sql(f"SELECT sum(n) AS s FROM {table}")["s"][0] == 7
    asyncio.run(store.write(Batch.changes(runs=[run_rec(status=RunStatus.FAILED)], at=NOW + 5)))
    events = store.sql("SELECT ts, event, status FROM events WHERE run_id = 'r1'")
    assert events[["event", "status"]].to_dict("records") == [
        {"event": "run_failed", "status": "failed"}
    ]
    assert str(events["ts"].dtype).startswith("datetime64")
    assert len(store.sql("SELECT * FROM run_timeline")) == 2


def test_sql_cannot_change_history(store: DuckDBStore) -> None:
    write(store, runs=[run_rec()])
    for query in [
        "DELETE FROM runs",
        "UPDATE runs SET status = 'x'",
        "DROP TABLE runs",
        "SELECT 1; DELETE FROM runs",
        "COPY runs TO 'x.csv'",
        "ATTACH 'other.duckdb'",
        "SELECT nextval('wfnb_row_seq')",
    ]:
        with pytest.raises(StoreError):
            store.sql(query)
    assert store.sql("SELECT run_id, status FROM runs").values.tolist() == [["r1", "running"]]


def test_sql_sees_the_latest_acknowledged_writes(store: DuckDBStore, db: Path) -> None:
    for i in range(5):
        write(store, runs=[run_rec(f"r{i}")])
        assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == i + 1
    assert sql("SELECT count(*) AS n FROM runs", store=store)["n"][0] == 5
    assert store.stats["frames"] >= 5  # these went through the journal, then were folded


def test_module_sql_opens_the_default_store(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DuckDBStore(db)
    write(store, runs=[run_rec()])
    asyncio.run(store.close())
    monkeypatch.setenv("WFNB_DB", str(db))
    assert sql("SELECT run_id FROM runs")["run_id"].tolist() == ["r1"]


def test_concurrent_writes_are_group_committed(store: DuckDBStore) -> None:
    async def go() -> None:
        await store.acquire()
        await asyncio.gather(*(store.write(Batch(runs=[run_rec(f"r{i}")])) for i in range(100)))

    asyncio.run(go())
    assert store.stats["groups"] < 50
    assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == 100


def test_writes_do_not_block_the_event_loop(store: DuckDBStore) -> None:
    big = os.urandom(30_000_000)  # pickled and fsync'd: tens of ms of disk work

    async def go() -> int:
        await store.acquire()
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        ticks = 0
        await store.write(Batch(runs=[run_rec()], steps=[step_rec(output=big)]))
        done.set()
        await task
        return ticks

    assert asyncio.run(go()) > 10


def test_prune_drops_output_tables(store: DuckDBStore) -> None:
    write(
        store,
        runs=[run_rec(status=RunStatus.COMPLETED)],
        steps=[step_rec(output=pd.DataFrame({"a": [1]}))],
    )
    count = "SELECT count(*) AS n FROM duckdb_tables() WHERE table_name LIKE 'output_%'"
    assert store.sql(count)["n"][0] == 1
    assert asyncio.run(store.prune(older_than=NOW + 1)) == 1
    assert store.sql(count)["n"][0] == 0
    assert store.sql("SELECT count(*) AS n FROM steps")["n"][0] == 0


def test_replacing_a_table_output_drops_its_table(store: DuckDBStore) -> None:
    write(store, runs=[run_rec()], steps=[step_rec(output=pd.DataFrame({"a": [1]}))])
    write(store, steps=[step_rec(output=[1, 2])])
    count = "SELECT count(*) AS n FROM duckdb_tables() WHERE table_name LIKE 'output_%'"
    assert store.sql(count)["n"][0] == 0


def test_acknowledged_writes_survive_sigkill(db: Path) -> None:
    # Each trial writes a run of its own: rows an earlier trial left cannot stand in
    # for the ones this child acknowledged before it was killed.
    for trial in range(3):
        run_id = f"child-{trial}"
        child = spawn_child("write-forever", db, run_id)
        acked = -1
        target = 5 + trial * 20
        while acked < target:
            acked = int(read_line(child, "acked").split()[1])
        child.send_signal(signal.SIGKILL)
        child.wait()
        store = DuckDBStore(db, lock_timeout=60)
        assert asyncio.run(store.get_run(run_id=run_id)) is not None
        steps = {s.step_id: s for s in asyncio.run(store.get_steps(run_id=run_id))}
        assert {f"s{i}" for i in range(acked + 1)} <= set(steps)
        assert steps["s0"].output == {"i": 0, "t": (0,)}
        assert steps[f"s{acked}"].output == {"i": acked, "t": (acked,)}
        asyncio.run(store.close())


def test_journal_replay_after_exit_without_close_and_torn_tail(db: Path) -> None:
    child = spawn_child("write-then-exit", db, "30")
    assert child.wait(timeout=60) == 0
    journal = db.with_name(db.name + ".journal")
    assert journal.stat().st_size > 0  # nothing was folded: the journal alone has them
    with open(journal, "ab") as fh:
        fh.write(b"\x07\x00\x00\x00torn frame")
    store = DuckDBStore(db)
    assert len(asyncio.run(store.get_steps(run_id="child"))) == 30
    assert journal_is_empty(db)  # replayed, folded and emptied
    asyncio.run(store.close())


def test_a_store_without_journal_still_replays_one(db: Path) -> None:
    child = spawn_child("write-then-exit", db, "10")
    assert child.wait(timeout=60) == 0
    store = DuckDBStore(db, journal=False)
    assert len(asyncio.run(store.get_steps(run_id="child"))) == 10
    asyncio.run(store.close())


def test_normal_exit_without_close_leaves_everything_in_the_duckdb_file(db: Path) -> None:
    child = spawn_child("write-no-close", db, "10")
    assert child.wait(timeout=60) == 0
    assert journal_is_empty(db)
    con = duckdb.connect(str(db), read_only=True)  # DuckDB alone, as another tool sees it
    assert con.execute("SELECT count(*) FROM steps").fetchone() == (10,)
    con.close()


def test_a_folded_journal_never_overwrites_newer_rows(db: Path, tmp_path: Path) -> None:
    store = DuckDBStore(db)
    write(store, runs=[run_rec()], steps=[step_rec(output="old, via the journal")])
    journal = db.with_name(db.name + ".journal")
    shutil.copy(journal, tmp_path / "stale")
    write(store, steps=[step_rec(output=pd.DataFrame({"new": [1]}))])  # direct, folds first
    asyncio.run(store.close())
    shutil.copy(tmp_path / "stale", journal)  # as if the truncation had been lost
    store = DuckDBStore(db)
    (step,) = asyncio.run(store.get_steps(run_id="r1"))
    assert isinstance(step.output, pd.DataFrame)
    asyncio.run(store.close())


def test_closed_store_refuses_writes(store: DuckDBStore) -> None:
    asyncio.run(store.close())
    with pytest.raises(StoreError, match="closed"):
        write(store, runs=[run_rec()])


def test_idle_store_lets_another_process_in(db: Path) -> None:
    store = DuckDBStore(db, idle_close=0.1)
    write(store, runs=[run_rec()])
    # No run holds the store: it lets the file go by itself, and the child (which
    # waits up to 20 s for it) gets in while this store is still open.
    child = spawn_child("hold", db, "0")
    assert read_line(child, "held")
    assert child.wait(timeout=30) == 0
    assert asyncio.run(store.get_run(run_id="child")) is not None  # reopened by the store
    asyncio.run(store.close())


def test_a_hold_let_go_on_the_callers_thread_still_lets_another_process_in(db: Path) -> None:
    """While the file is open and its writer thread idle, a run's start and end take
    and let go of the store on the event loop's thread (no thread hop). The thread,
    which waits with no timeout while the store is held, must still learn of the
    release and close the file when idle, or no other process ever gets in."""
    store = DuckDBStore(db, idle_close=0.1)

    async def go() -> None:
        await store.acquire()  # opens the file (the thread's work)
        await store.write(Batch(runs=[run_rec()]))
        await store.flush()  # nothing left to fold: the thread waits while held
        await store.acquire()
        await store.release()
        await store.release()

    asyncio.run(go())
    assert store.stats["inline_holds"] >= 2, store.stats
    child = spawn_child("hold", db, "0")
    assert read_line(child, "held")
    assert child.wait(timeout=30) == 0
    asyncio.run(store.close())


def test_importing_the_store_package_does_not_load_duckdb() -> None:
    import subprocess
    import sys

    from tests.store._procs import ROOT

    code = (
        "import sys, wfnb.store, wfnb.engine; assert 'duckdb' not in sys.modules; "
        "from wfnb.store import DuckDBStore; assert 'duckdb' in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_tables_duckdb_would_change_are_pickled_and_restored_exactly(store: DuckDBStore) -> None:
    import datetime

    import pyarrow as pa

    from wfnb.testing import assert_same_value

    odd = [
        pa.table({"half": pa.array([1.5], pa.float16())}),  # DuckDB refuses float16
        pa.table({"iv": pa.array([pa.MonthDayNano([1, 2, 3])], pa.month_day_nano_interval())}),
        pa.table({"dict": pa.array([1, 2, 1]).dictionary_encode()}),
        pa.table({"dur": pa.array([5], pa.duration("s"))}),
    ]
    fine = pa.table(
        {
            "t": pa.array([datetime.time(1, 2)], pa.time32("s")),
            "d": pa.array([1], pa.decimal128(5, 2)),
            "l": pa.array([[1, 2]]),
            "s": pa.array([{"a": 1}]),
            "u": pa.array([2**63], pa.uint64()),
        }
    )
    odd += [
        pd.DataFrame({"lists": [[1, 2], [3]]}),  # pandas would read back numpy arrays
        pd.DataFrame({"td": pd.to_timedelta([1, 2], unit="s")}),
    ]
    steps = [step_rec(f"odd{i}", output=t) for i, t in enumerate(odd)]
    write(store, runs=[run_rec()], steps=[*steps, step_rec("fine", output=fine)])
    kinds = dict(store.sql("SELECT step_id, output_kind FROM steps").values.tolist())
    assert kinds == {**{f"odd{i}": "pickle" for i in range(len(odd))}, "fine": "table"}
    got = {s.step_id: s.output for s in asyncio.run(store.get_steps(run_id="r1"))}
    for i, table in enumerate(odd):
        assert_same_value(got[f"odd{i}"], table)
    assert_same_value(got["fine"], fine)


def test_stores_on_one_file_in_one_process_share_a_writer(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = DuckDBStore(db), DuckDBStore(db)
    write(first, runs=[run_rec("a")])
    write(second, runs=[run_rec("b")])
    monkeypatch.setenv("WFNB_DB", str(db))
    assert sorted(sql("SELECT run_id FROM runs")["run_id"]) == ["a", "b"]  # a third user
    asyncio.run(first.close())
    write(second, runs=[run_rec("c")])  # still open: first's close only let go of it
    assert len(asyncio.run(second.list_runs())) == 3
    asyncio.run(second.close())
    assert journal_is_empty(db)
    third = DuckDBStore(db)  # a fresh writer after the last close
    assert len(asyncio.run(third.list_runs())) == 3
    asyncio.run(third.close())


def test_two_stores_on_one_file_never_lose_each_others_journal(db: Path) -> None:
    child = spawn_child("two-stores", db)
    assert child.wait(timeout=60) == 0
    store = DuckDBStore(db)
    assert [s.step_id for s in asyncio.run(store.get_steps(run_id="child"))] == ["s0"]
    asyncio.run(store.close())


@pytest.mark.parametrize(
    "bad",
    [
        run_rec(status="bogus"),
        run_rec(depth=2**40),
        run_rec(created_at=float("nan")),
        run_rec(started_at=1e300),
        run_rec(run_id=None),
        run_rec(run_id="\ud800"),
    ],
)
def test_records_duckdb_would_refuse_are_refused_at_write(
    store: DuckDBStore, bad: RunRecord
) -> None:
    # Refused before the journal acknowledges them: a refused row found only when
    # folding would be an acknowledged checkpoint that never reaches the tables.
    with pytest.raises(StoreError):
        write(store, runs=[bad])
    write(store, runs=[run_rec("ok")])  # the writer lives on
    assert [r.run_id for r in asyncio.run(store.list_runs())] == ["ok"]


def test_error_text_that_is_not_utf8_is_escaped_not_refused(store: DuckDBStore) -> None:
    write(store, runs=[run_rec(error="bad \udcff byte")])
    got = asyncio.run(store.get_run(run_id="r1"))
    assert got is not None and got.error == "bad \\udcff byte"


def test_a_poison_journal_frame_is_set_aside_not_blocking(db: Path) -> None:
    from wfnb.store.duckdb._codec import encode_batch
    from wfnb.store.duckdb._journal import Journal

    child = spawn_child("write-then-exit", db, "3")
    assert child.wait(timeout=60) == 0
    journal = Journal(db.with_name(db.name + ".journal"))
    journal.open()
    good = encode_batch(Batch(runs=[run_rec("after")]))
    poison = encode_batch(Batch(runs=[run_rec("poison")]))
    poison.runs[0] = (*poison.runs[0][:8], 2**40, *poison.runs[0][9:])  # depth: no INTEGER
    journal.append(10**6, poison.rows)  # any seq above what the child used
    journal.append(10**6 + 1, good.rows)
    journal.close()

    store = DuckDBStore(db)
    ids = {r.run_id for r in asyncio.run(store.list_runs())}
    assert ids == {"child", "after"}
    assert len(asyncio.run(store.get_steps(run_id="child"))) == 3
    assert db.with_name(db.name + ".rejected").stat().st_size > 0
    write(store, runs=[run_rec("later")])
    asyncio.run(store.close())
    store = DuckDBStore(db)  # and nothing is replayed twice or lost on reopen
    assert {r.run_id for r in asyncio.run(store.list_runs())} == {"child", "after", "later"}
    asyncio.run(store.close())


def test_journal_rows_of_an_older_release_are_replayed(db: Path) -> None:
    from wfnb.store.duckdb._codec import encode_batch
    from wfnb.store.duckdb._journal import Journal

    first = DuckDBStore(db)
    asyncio.run(first.flush())  # creates the file
    asyncio.run(first.close())
    old = encode_batch(Batch(runs=[run_rec("v1-row")]))
    journal = Journal(db.with_name(db.name + ".journal"))
    journal.open()
    journal.append(10**6, ([], [old.runs[0][:15]], []))  # v1 run rows had 15 fields
    journal.close()
    store = DuckDBStore(db)
    got = asyncio.run(store.get_run(run_id="v1-row"))
    assert got is not None and got.code_hashes == {}
    asyncio.run(store.close())


def test_journal_step_rows_without_a_worker_are_replayed(db: Path) -> None:
    from wfnb.store.duckdb._codec import encode_batch
    from wfnb.store.duckdb._journal import Journal

    first = DuckDBStore(db)
    asyncio.run(first.flush())  # creates the file
    asyncio.run(first.close())
    old = encode_batch(Batch(runs=[run_rec()], steps=[step_rec("v2-row")]))
    journal = Journal(db.with_name(db.name + ".journal"))
    journal.open()
    journal.append(10**6, ([], old.runs, [old.steps[0][:12]]))  # v2 step rows had 12 fields
    journal.close()
    store = DuckDBStore(db)
    (got,) = asyncio.run(store.get_steps(run_id="r1"))
    assert got.step_id == "v2-row" and got.worker is None
    asyncio.run(store.close())
