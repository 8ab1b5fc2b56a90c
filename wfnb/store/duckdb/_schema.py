"""The SQL: schema and its migrations, and the reads (the fold's upserts are ``_upsert``).

Schema (v8) — tables a user may query (times are UTC ``TIMESTAMP``s):

``workflows``  name, definition (the YAML), definition_hash, created_at
``runs``       run_id, workflow, definition_hash, status, inputs (JSON, NULL when
               pickled into inputs_pickle), parent_run_id, parent_step_id, depth,
               owner ("host:pid:start"), created_at, started_at, ended_at,
               duration_ms, error, failed_step, code_hashes (JSON, since v2)
``steps``      one row per attempt: run_id, step_id, attempt, status, started_at,
               ended_at, duration_ms, error, output (JSON; for a table, a reference
               ``{"table": …, "type": …, "rows": …}``), output_kind
               ('json' | 'table' | 'pickle' | 'none'), output_table, output_pickle,
               output_schema (the Arrow schema a table output is restored to),
               worker (where the attempt ran: a Dask worker's address; since v4)
               traceback (since v6: the user's frames of a failed attempt)
``output_…``   one real table per DataFrame/Arrow output, named in ``steps.output_table``
``calls``      (since v3) one row per request of a step attempt: run_id, step_id,
               attempt, seq, kind ('http' | 'agent'), started_at, data (JSON, masked)

``events``     history (since v5): one row per change of state of a run or a step
               attempt, with the state then: ts, run_id, step_id (NULL for the run),
               attempt, event (``run_started``, ``step_waiting``, … as the live
               stream names them), status, error, seq; no key (since v8: the
               fold writes each event once, see ``_upsert``)

Views: ``run_timeline`` (each attempt with its offsets from the run's start, and its
worker), ``latest_steps`` (the last attempt of each step), ``http_requests`` (every
request of ``http`` and ``agent`` steps: method, url, status, duration_ms, bytes,
error) and ``token_usage`` (tokens per agent step attempt and model, summed over its
requests). ``schema_version`` and ``journal_state`` are bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import duckdb

from wfnb.errors import StoreError

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
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(con: duckdb.DuckDBPyConnection, target: int = SCHEMA_VERSION) -> None:
    """Bring the file to ``target`` (`SCHEMA_VERSION`), one transaction per step;
    running it again does nothing."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the store file has schema version {current}, newer than this "
            f"wfnb understands ({SCHEMA_VERSION}); upgrade wfnb"
        )
    for version in range(current + 1, target + 1):
        con.execute("BEGIN")
        try:
            MIGRATIONS[version - 1](con)
            con.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def folded_seq(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT folded_seq FROM journal_state WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def set_folded_seq(con: duckdb.DuckDBPyConnection, seq: int) -> None:
    """An UPDATE, and an INSERT only the first time: an ``ON CONFLICT DO UPDATE``
    of this one row took 2.3 ms a fold, the UPDATE 0.6 ms (DuckDB 2.0, measured)."""
    (updated,) = con.execute(
        "UPDATE journal_state SET folded_seq = ? WHERE id = 1", [seq]
    ).fetchone() or (0,)
    if not updated:
        con.execute("INSERT INTO journal_state VALUES (1, ?)", [seq])


def output_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() "
        "WHERE schema_name = 'main' AND table_name LIKE 'output\\_%' ESCAPE '\\'"
    ).fetchall()
    return {r[0] for r in rows}


# -- reads ----------------------------------------------------------------------------
def _us(col: str) -> str:
    return f"epoch_us({col})"


WORKFLOW_SELECT = f"SELECT name, definition, definition_hash, {_us('created_at')} FROM workflows"
RUN_SELECT = (
    "SELECT run_id, workflow, definition_hash, status, inputs::VARCHAR, inputs_pickle, "
    f"parent_run_id, parent_step_id, depth, owner, {_us('created_at')}, {_us('started_at')}, "
    f"{_us('ended_at')}, error, failed_step, code_hashes::VARCHAR FROM runs"
)
STEP_SELECT = (
    f"SELECT run_id, step_id, attempt, status, {_us('started_at')}, {_us('ended_at')}, error, "
    "output::VARCHAR, output_kind, output_table, output_pickle, output_schema, worker, "
    "traceback FROM steps "
    "WHERE run_id = ? ORDER BY coalesce(started_at, TIMESTAMP '1970-01-01'), attempt, seq"
)

CALL_SELECT = (
    f"SELECT run_id, step_id, attempt, seq, kind, {_us('started_at')}, data::VARCHAR "
    "FROM calls WHERE run_id = ? ORDER BY started_at, seq, step_id, attempt"
)


EVENT_SELECT = (
    f"SELECT {_us('ts')}, run_id, step_id, attempt, status, error FROM events "
    "WHERE run_id = ? ORDER BY ts, seq"
)


def list_runs_query(
    *,
    workflow: str | None,
    statuses: Sequence[str] | None,
    parent_run_id: str | None,
    limit: int | None,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if workflow is not None:
        where.append("workflow = ?")
        params.append(workflow)
    if statuses is not None:
        where.append("list_contains(?::VARCHAR[], status)")
        params.append(list(statuses))
    if parent_run_id is not None:
        where.append("parent_run_id = ?")
        params.append(parent_run_id)
    sql = RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY created_at DESC, seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


PRUNE_DOOMED = (
    "SELECT run_id FROM runs WHERE created_at < make_timestamp(?) "
    "AND status IN ('completed', 'failed', 'cancelled') AND (NOT ? OR status <> 'failed')"
)
