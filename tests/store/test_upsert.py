"""The fold's SQL (``_upsert.upsert``): what it sends DuckDB and what it keeps."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from wfnb.errors import StoreError
from wfnb.store.duckdb import _schema, _upsert

US = 1_763_990_000_000_000


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    _schema.migrate(con)
    return con


def step_row(step_id: str, status: str, **kw: object) -> tuple[object, ...]:
    row: dict[str, object] = dict(
        run_id="r1", step_id=step_id, attempt=1, status=status, started_at=US,
        ended_at=None, error=None, output=None, output_kind="none", output_table=None,
        output_pickle=None, output_schema=None, worker=None, traceback=None,
    )  # fmt: skip
    row.update(kw)
    return tuple(row.values())


def test_a_column_null_or_equal_in_every_row_is_not_sent_as_a_list() -> None:
    """Each value handed to DuckDB costs the same, None or not: an all-NULL column
    is a typed NULL in the statement, a column of one value is that one value, so
    only the other columns are lists."""
    L, S, N = _upsert._LIST, _upsert._SAME, _upsert._NULL
    shape = (S, L, S, S, L, L) + (N,) * 8 + (N,)  # error .. traceback, duration all NULL
    sql = _upsert._upsert_sql("steps", shape)
    assert "$6" in sql and "$7" not in sql
    assert "NULL::BLOB AS output_pickle" in sql and "NULL::DOUBLE AS duration_ms" in sql
    assert "$1 AS run_id" in sql and "c2.v AS step_id" in sql
    assert "FROM unnest($2) AS c2(v) POSITIONAL JOIN unnest($5) AS c5(v)" in sql


def test_a_fold_keeps_the_last_row_of_each_key_and_nulls_unsent_columns(
    con: duckdb.DuckDBPyConnection,
) -> None:
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], [step_row("a", "running", error="old"), step_row("b", "running")])
    con.execute("COMMIT")
    done = step_row("a", "completed", ended_at=US + 2000, output="1", output_kind="json")
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], [step_row("a", "running"), done])
    con.execute("COMMIT")
    rows = con.execute(
        "SELECT step_id, status, error, output::VARCHAR, duration_ms FROM steps ORDER BY step_id"
    ).fetchall()
    assert rows == [("a", "completed", None, "1", 2.0), ("b", "running", None, None, None)]


def test_a_fold_of_one_row_and_of_rows_sharing_values_keeps_every_value(
    con: duckdb.DuckDBPyConnection,
) -> None:
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], [step_row("a", "running", output_pickle=b"\x00")])
    _upsert.upsert(con, [], [], [step_row(s, "running", attempt=2, worker="w") for s in "bc"])
    con.execute("COMMIT")
    rows = con.execute(
        "SELECT run_id, step_id, attempt, output_pickle, worker, epoch_us(started_at) "
        "FROM steps ORDER BY step_id"
    ).fetchall()
    assert rows == [
        ("r1", "a", 1, b"\x00", None, US),
        ("r1", "b", 2, None, "w", US),
        ("r1", "c", 2, None, "w", US),
    ]


def test_a_workflow_written_twice_in_one_fold_is_keyed_by_its_hash(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The key of ``workflows`` is (name, definition_hash): two rows of one key in
    one fold (the definition text differing) must collapse, not make DuckDB refuse
    to update one row twice."""
    con.execute("BEGIN")
    _upsert.upsert(con, [("etl", "a: 1", "h", US), ("etl", "a:  1", "h", US + 1)], [], [])
    con.execute("COMMIT")
    assert con.execute("SELECT name, definition FROM workflows").fetchall() == [("etl", "a:  1")]


def event_row(ts: int, status: str, step_id: str | None = "s", **kw: object) -> tuple[object, ...]:
    row: dict[str, object] = dict(
        ts=ts, run_id="r1", step_id=step_id, attempt=None if step_id is None else 1,
        event=("run_" if step_id is None else "step_") + status, status=status, error=None,
    )  # fmt: skip
    row.update(kw)
    return tuple(row.values())


def stored_events(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute(
        "SELECT epoch_us(ts), step_id, attempt, event, error FROM events ORDER BY seq"
    ).fetchall()


def test_an_event_is_added_once_whether_repeated_in_a_fold_or_after_one(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """``events`` has no key (v8): the fold drops a repeat itself, within the fold
    and against the rows of its time window, and keeps events that differ in any
    field (a NULL step is not an empty one)."""
    first = [event_row(US, "pending", None), event_row(US + 1, "running")]
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], [], [], [*first, first[1]])
    con.execute("COMMIT")
    again = [
        *first,
        event_row(US, "pending", ""),
        event_row(US + 1, "running", error="x"),
        event_row(US + 2, "completed"),
        event_row(US + 2, "completed"),
    ]
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], [], [], again)
    con.execute("COMMIT")
    assert stored_events(con) == [
        (US, None, None, "run_pending", None),
        (US + 1, "s", 1, "step_running", None),
        (US, "", 1, "step_pending", None),
        (US + 1, "s", 1, "step_running", "x"),
        (US + 2, "s", 1, "step_completed", None),
    ]


def test_an_event_row_journalled_before_v8_loses_its_key(con: duckdb.DuckDBPyConnection) -> None:
    """A journal frame from before schema v8 holds event rows ending in their
    ``event_key``: the fold drops it, and the row is still written once."""
    old = event_row(US, "running") + ("r1\x1fs\x1f1\x1frunning\x1f" + str(US),)
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], [], [], [old, event_row(US, "running")])
    con.execute("COMMIT")
    assert stored_events(con) == [(US, "s", 1, "step_running", None)]


@pytest.mark.parametrize(
    ("table", "row"),
    [("steps", step_row("s", "running") + ("extra",)), ("events", event_row(US, "x") + (1, 2))],
)
def test_a_row_longer_than_its_table_is_refused_not_cut(
    con: duckdb.DuckDBPyConnection, table: str, row: tuple[object, ...]
) -> None:
    """Only an event row from before v8 may be one longer (its key): any other
    longer row is a bug, and cutting it would store a row missing a value."""
    rows: dict[str, list[tuple[object, ...]]] = {"steps": [], "events": []}
    rows[table].append(row)
    with pytest.raises(StoreError, match=f"a {table} row of"):
        _upsert.upsert(con, [], [], rows["steps"], [], rows["events"])


def test_v8_keeps_every_event_and_its_seq_and_drops_the_key(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    _schema.migrate(con, 7)
    con.execute(
        "INSERT INTO events (ts, run_id, step_id, attempt, event, status, error, event_key) "
        "VALUES (make_timestamp(2), 'r', NULL, NULL, 'run_failed', 'failed', 'x', 'k2'), "
        "(make_timestamp(1), 'r', 's', 1, 'step_started', 'running', NULL, 'k1')"
    )
    before = con.execute("SELECT * EXCLUDE (event_key) FROM events ORDER BY seq").fetchall()
    _schema.migrate(con)
    assert con.execute("SELECT * FROM events ORDER BY seq").fetchall() == before
    con.execute("BEGIN")  # the sequence goes on after the copied rows
    _upsert.upsert(con, [], [], [], [], [event_row(3, "completed")])
    con.execute("COMMIT")
    seqs = con.execute("SELECT seq FROM events ORDER BY seq").fetchall()
    assert [seq for (seq,) in seqs] == [1, 2, 3]


class _Recording:
    """A connection that keeps the text of every statement it runs."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.statements = con, []

    def execute(self, sql: str, params: object = None) -> duckdb.DuckDBPyConnection:
        self.statements.append(sql)
        return self.con.execute(sql, params)

    def upserts(self) -> list[str]:
        done = [sql.split()[2] for sql in self.statements if "ON CONFLICT" in sql]
        self.statements.clear()
        return done


def test_rows_are_upserted_only_when_one_of_their_keys_may_be_stored(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The first ``ON CONFLICT`` of a process costs DuckDB ≈ 2.3 MB (issue 13): a
    fold whose runs have no stored rows inserts them plainly, and one that meets
    stored rows still updates them."""
    recording = _Recording(con)
    workflow = ("w", "steps: {}", "h1", US)
    _upsert.upsert(recording, [workflow], [], [step_row("a", "running")])  # type: ignore[arg-type]
    assert recording.upserts() == []
    done = step_row("a", "completed", ended_at=US + 1000)
    _upsert.upsert(recording, [workflow], [], [done, step_row("b", "running")])  # type: ignore[arg-type]
    assert recording.upserts() == ["workflows", "steps"]
    _upsert.upsert(recording, [], [], [step_row("a", "running", run_id="r2")])  # type: ignore[arg-type]
    assert recording.upserts() == []
    rows = con.execute("SELECT run_id, step_id, status FROM steps ORDER BY ALL").fetchall()
    assert rows == [("r1", "a", "completed"), ("r1", "b", "running"), ("r2", "a", "running")]
    assert con.execute("SELECT count(*) FROM workflows").fetchone() == (1,)


def test_duration_ms_is_what_duckdb_computes_from_the_two_times(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The fold computes ``duration_ms`` in Python; it must be the very double
    DuckDB gives for the same times (the column held DuckDB's own result before)."""
    spans = [0, 1, 7, 999, 1001, 123_456_789, 2**52 + 1, 86_400_000_000 * 30 + 3]
    rows = [step_row(f"s{i}", "completed", ended_at=US + span) for i, span in enumerate(spans)] + [
        step_row("open", "running")
    ]
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], rows)
    con.execute("COMMIT")
    got = con.execute(
        "SELECT duration_ms, (epoch_us(ended_at) - epoch_us(started_at)) / 1000.0 "
        "FROM steps ORDER BY step_id"
    ).fetchall()
    assert [stored for stored, _ in got] == [duckdb_own for _, duckdb_own in got]
    assert sum(stored is None for stored, _ in got) == 1  # the running step


@pytest.mark.parametrize("runs", [3, _upsert._IN_LIST_MAX + 2])  # an IN list, a list
def test_a_fold_meeting_some_stored_runs_among_several_upserts_them(
    con: duckdb.DuckDBPyConnection, runs: int
) -> None:
    """The count that chooses a plain INSERT takes every run id of the fold: one
    stored run among several makes the fold an upsert (a plain INSERT would fail on
    its key), however many ids the count is given."""
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], [step_row("a", "running")])  # run r1
    con.execute("COMMIT")
    ids = [f"r{i}" for i in range(runs)]
    rows = [step_row("a", "completed", run_id=run, ended_at=US + 5) for run in ids]
    con.execute("BEGIN")
    _upsert.upsert(con, [], [], rows)
    con.execute("COMMIT")
    got = con.execute("SELECT run_id, status FROM steps ORDER BY run_id").fetchall()
    assert got == sorted((run, "completed") for run in ids)
