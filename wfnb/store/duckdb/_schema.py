"""The SQL: the schema, `migrate`, the reads (migrations: ``_migrations``, upserts: ``_upsert``).

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
from wfnb.store.duckdb._migrations import MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)

#: The schema at `SCHEMA_VERSION`, as a new file gets it: one transaction instead of
#: replaying every migration, whose ALTERs and history copies cost a durable run on a
#: new file ≈ 0.8 MB of peak memory and `migrate` 3× the CPU (docs/store.md, "Schema
#: versions"). Its second definition is ``MIGRATIONS``; tests/store/test_schema.py
#: keeps the two catalogs equal, so a new migration comes with its change made here.
CURRENT = [
    "CREATE SEQUENCE wfnb_row_seq",
    """CREATE TABLE workflows (
        name VARCHAR NOT NULL, definition VARCHAR NOT NULL, definition_hash VARCHAR NOT NULL,
        created_at TIMESTAMP, PRIMARY KEY (name, definition_hash))""",
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, workflow VARCHAR NOT NULL, definition_hash VARCHAR,
        status VARCHAR NOT NULL, inputs JSON, inputs_pickle BLOB, parent_run_id VARCHAR,
        parent_step_id VARCHAR, depth INTEGER, owner VARCHAR, created_at TIMESTAMP,
        started_at TIMESTAMP, ended_at TIMESTAMP, duration_ms DOUBLE, error VARCHAR,
        failed_step VARCHAR, seq BIGINT DEFAULT nextval('wfnb_row_seq'), code_hashes JSON)""",
    """CREATE TABLE steps (
        run_id VARCHAR NOT NULL, step_id VARCHAR NOT NULL, attempt INTEGER NOT NULL,
        status VARCHAR NOT NULL, started_at TIMESTAMP, ended_at TIMESTAMP,
        duration_ms DOUBLE, error VARCHAR, output JSON, output_kind VARCHAR NOT NULL,
        output_table VARCHAR, output_pickle BLOB, output_schema BLOB,
        seq BIGINT DEFAULT nextval('wfnb_row_seq'), worker VARCHAR, traceback VARCHAR,
        PRIMARY KEY (run_id, step_id, attempt))""",
    """CREATE TABLE calls (
        run_id VARCHAR NOT NULL, step_id VARCHAR NOT NULL, attempt INTEGER NOT NULL,
        seq INTEGER NOT NULL, kind VARCHAR NOT NULL, started_at TIMESTAMP, data JSON,
        PRIMARY KEY (run_id, step_id, attempt, seq))""",
    """CREATE TABLE events (
        ts TIMESTAMP NOT NULL, run_id VARCHAR NOT NULL, step_id VARCHAR, attempt INTEGER,
        event VARCHAR NOT NULL, status VARCHAR NOT NULL, error VARCHAR,
        seq BIGINT DEFAULT nextval('wfnb_row_seq'))""",
    "CREATE TABLE journal_state (id INTEGER PRIMARY KEY, folded_seq BIGINT NOT NULL)",
    """CREATE VIEW run_timeline AS
        SELECT s.run_id, r.workflow, s.step_id, s.attempt, s.status,
               epoch_ms(s.started_at) - epoch_ms(r.started_at) AS start_offset_ms,
               epoch_ms(s.ended_at) - epoch_ms(r.started_at) AS end_offset_ms,
               s.duration_ms, s.error, s.worker
        FROM steps s JOIN runs r USING (run_id)""",
    """CREATE VIEW latest_steps AS
        SELECT * EXCLUDE (seq) FROM steps
        QUALIFY row_number() OVER (PARTITION BY run_id, step_id ORDER BY attempt DESC) = 1""",
    """CREATE VIEW http_requests AS
        SELECT run_id, step_id, attempt, seq, kind, started_at,
               data->>'method' AS method, data->>'url' AS url,
               (data->>'status')::INTEGER AS status,
               (data->>'duration_ms')::DOUBLE AS duration_ms,
               (data->>'bytes')::BIGINT AS bytes, data->>'error' AS error
        FROM calls""",
    """CREATE VIEW token_usage AS
        SELECT run_id, step_id, attempt, data->>'model' AS model,
               sum((data->>'prompt_tokens')::BIGINT)::BIGINT AS prompt_tokens,
               sum((data->>'completion_tokens')::BIGINT)::BIGINT AS completion_tokens,
               sum((data->>'total_tokens')::BIGINT)::BIGINT AS total_tokens
        FROM calls WHERE kind = 'agent' AND data->>'total_tokens' IS NOT NULL
        GROUP BY run_id, step_id, attempt, data->>'model'""",
]


def _create_current(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in CURRENT:
        con.execute(ddl)


def migrate(con: duckdb.DuckDBPyConnection, target: int = SCHEMA_VERSION) -> None:
    """Bring the file to ``target`` (`SCHEMA_VERSION`): a new one by `CURRENT`, in one
    transaction recorded as every version; an older one by the migrations it lacks,
    one transaction each. Running it again does nothing."""
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
    steps: list[tuple[Callable[[duckdb.DuckDBPyConnection], None], range]]
    if current == 0 and target == SCHEMA_VERSION:
        steps = [(_create_current, range(1, target + 1))]
    else:
        steps = [(MIGRATIONS[v - 1], range(v, v + 1)) for v in range(current + 1, target + 1)]
    for make, versions in steps:
        con.execute("BEGIN")
        try:
            make(con)
            con.execute(
                "INSERT INTO schema_version (version) VALUES " + ", ".join(["(?)"] * len(versions)),
                list(versions),
            )
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
