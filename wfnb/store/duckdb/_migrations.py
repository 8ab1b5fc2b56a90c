"""How a file written by an earlier wfnb reaches the current schema (see ``_schema``).

``MIGRATIONS[i]`` brings a file from version ``i`` to ``i + 1``: they are the
schema's history, kept exactly as each release ran them, since every file on disk
was made by some prefix of them. A new file does not replay them: it gets the
schema of the last one in one step (``_schema.CURRENT``), and
tests/store/test_schema.py keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

_V1 = [
    "CREATE SEQUENCE IF NOT EXISTS wfnb_row_seq",
    """CREATE TABLE IF NOT EXISTS workflows (
        name VARCHAR NOT NULL, definition VARCHAR NOT NULL, definition_hash VARCHAR NOT NULL,
        created_at TIMESTAMP, PRIMARY KEY (name, definition_hash))""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, workflow VARCHAR NOT NULL, definition_hash VARCHAR,
        status VARCHAR NOT NULL, inputs JSON, inputs_pickle BLOB, parent_run_id VARCHAR,
        parent_step_id VARCHAR, depth INTEGER, owner VARCHAR, created_at TIMESTAMP,
        started_at TIMESTAMP, ended_at TIMESTAMP, duration_ms DOUBLE, error VARCHAR,
        failed_step VARCHAR, seq BIGINT DEFAULT nextval('wfnb_row_seq'))""",
    """CREATE TABLE IF NOT EXISTS steps (
        run_id VARCHAR NOT NULL, step_id VARCHAR NOT NULL, attempt INTEGER NOT NULL,
        status VARCHAR NOT NULL, started_at TIMESTAMP, ended_at TIMESTAMP,
        duration_ms DOUBLE, error VARCHAR, output JSON, output_kind VARCHAR NOT NULL,
        output_table VARCHAR, output_pickle BLOB, output_schema BLOB,
        seq BIGINT DEFAULT nextval('wfnb_row_seq'), PRIMARY KEY (run_id, step_id, attempt))""",
    """CREATE TABLE IF NOT EXISTS journal_state (
        id INTEGER PRIMARY KEY, folded_seq BIGINT NOT NULL)""",
    """CREATE OR REPLACE VIEW events AS
        SELECT created_at AS ts, run_id, NULL::VARCHAR AS step_id, NULL::INTEGER AS attempt,
               'run_created' AS event, status, NULL::VARCHAR AS error FROM runs
        UNION ALL SELECT started_at, run_id, NULL, NULL, 'run_started', status, NULL
            FROM runs WHERE started_at IS NOT NULL
        UNION ALL SELECT ended_at, run_id, NULL, NULL, 'run_ended', status, error
            FROM runs WHERE ended_at IS NOT NULL
        UNION ALL SELECT started_at, run_id, step_id, attempt, 'step_started', status, NULL
            FROM steps WHERE started_at IS NOT NULL
        UNION ALL SELECT ended_at, run_id, step_id, attempt, 'step_ended', status, error
            FROM steps WHERE ended_at IS NOT NULL""",
    """CREATE OR REPLACE VIEW run_timeline AS
        SELECT s.run_id, r.workflow, s.step_id, s.attempt, s.status,
               epoch_ms(s.started_at) - epoch_ms(r.started_at) AS start_offset_ms,
               epoch_ms(s.ended_at) - epoch_ms(r.started_at) AS end_offset_ms,
               s.duration_ms, s.error
        FROM steps s JOIN runs r USING (run_id)""",
    """CREATE OR REPLACE VIEW latest_steps AS
        SELECT * EXCLUDE (seq) FROM steps
        QUALIFY row_number() OVER (PARTITION BY run_id, step_id ORDER BY attempt DESC) = 1""",
]


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in _V1:
        con.execute(ddl)


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    """``runs.code_hashes``: step id -> fingerprint of its callable at start."""
    con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS code_hashes JSON")


def _v3(con: duckdb.DuckDBPyConnection) -> None:
    """``calls`` and the two views over it: what http and agent steps sent."""
    con.execute(
        """CREATE TABLE IF NOT EXISTS calls (
        run_id VARCHAR NOT NULL, step_id VARCHAR NOT NULL, attempt INTEGER NOT NULL,
        seq INTEGER NOT NULL, kind VARCHAR NOT NULL, started_at TIMESTAMP, data JSON,
        PRIMARY KEY (run_id, step_id, attempt, seq))"""
    )
    con.execute(
        """CREATE OR REPLACE VIEW http_requests AS
        SELECT run_id, step_id, attempt, seq, kind, started_at,
               data->>'method' AS method, data->>'url' AS url,
               (data->>'status')::INTEGER AS status,
               (data->>'duration_ms')::DOUBLE AS duration_ms,
               (data->>'bytes')::BIGINT AS bytes, data->>'error' AS error
        FROM calls"""
    )
    con.execute(
        """CREATE OR REPLACE VIEW token_usage AS
        SELECT run_id, step_id, attempt, data->>'model' AS model,
               sum((data->>'prompt_tokens')::BIGINT)::BIGINT AS prompt_tokens,
               sum((data->>'completion_tokens')::BIGINT)::BIGINT AS completion_tokens,
               sum((data->>'total_tokens')::BIGINT)::BIGINT AS total_tokens
        FROM calls WHERE kind = 'agent' AND data->>'total_tokens' IS NOT NULL
        GROUP BY run_id, step_id, attempt, data->>'model'"""
    )


def _v4(con: duckdb.DuckDBPyConnection) -> None:
    """``steps.worker``: the Dask worker an attempt ran on. The views that list
    step columns are made again, so they show it."""
    con.execute("ALTER TABLE steps ADD COLUMN IF NOT EXISTS worker VARCHAR")
    con.execute(
        """CREATE OR REPLACE VIEW run_timeline AS
        SELECT s.run_id, r.workflow, s.step_id, s.attempt, s.status,
               epoch_ms(s.started_at) - epoch_ms(r.started_at) AS start_offset_ms,
               epoch_ms(s.ended_at) - epoch_ms(r.started_at) AS end_offset_ms,
               s.duration_ms, s.error, s.worker
        FROM steps s JOIN runs r USING (run_id)"""
    )
    con.execute(
        """CREATE OR REPLACE VIEW latest_steps AS
        SELECT * EXCLUDE (seq) FROM steps
        QUALIFY row_number() OVER (PARTITION BY run_id, step_id ORDER BY attempt DESC) = 1"""
    )


def _v5_events(con: duckdb.DuckDBPyConnection) -> None:
    """``events`` becomes a table of real history (one row per change of state, as
    it was then) in place of the view over the current runs/steps rows. What the
    view showed is kept as the history of the runs made before; ``event_key`` (all
    the fields) makes a replayed write add nothing."""
    con.execute("DROP VIEW IF EXISTS events")
    con.execute(
        """CREATE TABLE IF NOT EXISTS events (
        ts TIMESTAMP NOT NULL, run_id VARCHAR NOT NULL, step_id VARCHAR, attempt INTEGER,
        event VARCHAR NOT NULL, status VARCHAR NOT NULL, error VARCHAR,
        event_key VARCHAR PRIMARY KEY, seq BIGINT DEFAULT nextval('wfnb_row_seq'))"""
    )
    con.execute(
        """INSERT INTO events (ts, run_id, step_id, attempt, event, status, error,
            event_key) SELECT *, concat_ws(chr(31), run_id, coalesce(step_id, ''),
            coalesce(attempt::VARCHAR, ''), status, epoch_us(ts)::VARCHAR, event) FROM (
        SELECT created_at AS ts, run_id, NULL::VARCHAR AS step_id, NULL::INTEGER AS attempt,
               'run_pending' AS event, 'pending' AS status, NULL::VARCHAR AS error FROM runs
        UNION ALL SELECT started_at, run_id, NULL, NULL, 'run_started', 'running', NULL
            FROM runs WHERE started_at IS NOT NULL
        UNION ALL SELECT ended_at, run_id, NULL, NULL, 'run_' || status, status, error
            FROM runs WHERE ended_at IS NOT NULL
        UNION ALL SELECT started_at, run_id, step_id, attempt, 'step_started', 'running', NULL
            FROM steps WHERE started_at IS NOT NULL
        UNION ALL SELECT ended_at, run_id, step_id, attempt, 'step_' || status, status, error
            FROM steps WHERE ended_at IS NOT NULL) ON CONFLICT DO NOTHING"""
    )


def _v6_traceback(con: duckdb.DuckDBPyConnection) -> None:
    """``steps.traceback``: the user's frames of a failed attempt's traceback;
    ``latest_steps`` is made again, so it shows it."""
    con.execute("ALTER TABLE steps ADD COLUMN IF NOT EXISTS traceback VARCHAR")
    con.execute(
        """CREATE OR REPLACE VIEW latest_steps AS
        SELECT * EXCLUDE (seq) FROM steps
        QUALIFY row_number() OVER (PARTITION BY run_id, step_id ORDER BY attempt DESC) = 1"""
    )


def _v7_journal_format_2(con: duckdb.DuckDBPyConnection) -> None:
    """No DDL: the version says the journal beside this file is in format 2 (see
    ``_journal``). A wfnb from before format 2 reads its 16-byte file header as a
    torn frame and truncates the journal, losing acknowledged checkpoints; it runs
    `migrate` before opening the journal, so this version makes it refuse the store
    ("newer than this wfnb understands") before it touches the journal."""
    del con


def _v8_events_without_key(con: duckdb.DuckDBPyConnection) -> None:
    """``events`` loses ``event_key`` and its primary key: keeping the index cost
    more than half of writing an event (16,000 rows: 7.5 µs a row with it, 3.1
    without), and a repeated event is now dropped by the fold (see ``_upsert``).
    DuckDB cannot drop a key, so the table is copied, in ``seq`` order, keeping
    each row's ``seq`` (an index a user made on ``events`` goes with the old table)."""
    con.execute(
        """CREATE TABLE wfnb_events_v8 (
        ts TIMESTAMP NOT NULL, run_id VARCHAR NOT NULL, step_id VARCHAR, attempt INTEGER,
        event VARCHAR NOT NULL, status VARCHAR NOT NULL, error VARCHAR,
        seq BIGINT DEFAULT nextval('wfnb_row_seq'))"""
    )
    con.execute(
        "INSERT INTO wfnb_events_v8 SELECT ts, run_id, step_id, attempt, event, status, "
        "error, seq FROM events ORDER BY seq"
    )
    con.execute("DROP TABLE events")
    con.execute("ALTER TABLE wfnb_events_v8 RENAME TO events")


#: ``MIGRATIONS[i]`` brings a file from version ``i`` to ``i + 1``. Append, never edit.
MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [
    _v1,
    _v2,
    _v3,
    _v4,
    _v5_events,
    _v6_traceback,
    _v7_journal_format_2,
    _v8_events_without_key,
]
