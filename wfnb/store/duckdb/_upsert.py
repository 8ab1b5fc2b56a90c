"""The fold's write side: journalled rows upserted into DuckDB, one statement a table.

Split from ``_schema`` (DDL, reads) because it is the hot half of a
fold and has its own reason to change: how rows are handed to DuckDB. The column
lists here follow the tables ``_schema`` creates.

Multi-row writes are one ``INSERT … SELECT`` per table over the column lists,
never ``executemany``: one statement for any number of rows (2.2 ms for 400 rows
against 79 ms with executemany, measured). The lists are unnested as table
functions side by side (``FROM unnest($1) POSITIONAL JOIN unnest($2) …``), not as
``SELECT unnest($1), unnest($2), …``: inserting 16,000 event rows of 6 lists took
2.8–3.1 µs a row that way against 4.3–5.4 (4 runs each; docs/store.md, "What a
fold costs", has the figures of the whole fold).

``events`` has no key (schema v8): a change of state is written once, and the one
way the same event can reach the fold twice is a caller writing it again. Such a
row is dropped in the fold instead: a repeat within the fold by `last_per_key`
(an event's key is the whole row), a row already in DuckDB by an anti-join with
the rows of the fold's time window (``ts`` between the fold's first and last
event: DuckDB prunes the older row groups by their min/max, so the check does not
grow with the table). The window is counted first, and the anti-join left out
when it is empty, as it usually is: a fold's events come after the last fold's
(when the clock went back, or a caller gave an earlier time, the anti-join runs:
still correct, only slower). (16,000 event rows after 300,000 stored: 6.6
µs a step with the plain INSERT, 7.6 with the anti-join, 0.7 ms the count.)

The keyed tables are upserted (``INSERT … ON CONFLICT DO UPDATE``) only when a row
of the fold may meet a stored one: a count of the stored rows sharing the first
key column (a run id, a workflow's name) comes first, and when there are none, as
for a run folded whole, the rows are plainly inserted. Not for speed but memory:
the first ``ON CONFLICT`` statement of a process costs ≈ 2.3 MB more of DuckDB's
memory than a plain ``INSERT`` (anonymous pages, whatever the table or the number
of rows, measured with DuckDB 2.0; docs/store.md, "Memory").

The fold's statements are also kept to SQL a run needs anyway, for the same
reason: every kind of operator DuckDB runs for the first time pages its code into
the process. The count is an IN list of parameters (``run_id IN ($1, $2)``), not
``IN (SELECT unnest($1))`` (a semi-join: 0.8 MB of code), and ``duration_ms`` is
computed here from the two times (`_durations`), not by a subquery around the
INSERT (0.5 MB). Over 1,000,000 stored steps the IN list counts the ids of a new
run in 0.6–2.7 ms for 1–50 ids (0.8–13.5 ms when they are stored, as on a
resume), the semi-join in 1.4–7.0; past `_IN_LIST_MAX` ids the semi-join is used.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import duckdb

from wfnb.errors import StoreError

# Rows go to DuckDB as one list per column, unnested. Handing DuckDB a Python list
# costs ≈ 0.2 µs per value whatever it holds, None included, and that was most of a
# fold (measured: 14 step columns of 10,000 rows ≈ 32 ms, the 8 that are not all
# NULL ≈ 13 ms). So a column that holds one value in every row of the fold (NULL,
# or the run id, status, attempt … of a fan-out) is sent as that one value, and
# only the others as lists (one statement text per shape, cached).
_NULL, _SAME, _LIST = range(3)
#: (column, SQL type, how the unnested value becomes the column's value)
_Spec = tuple[tuple[str, str, str], ...]
_TS, _JSON, _PLAIN = "make_timestamp({})", "{}::JSON", "{}"

_WORKFLOW_SPEC: _Spec = (
    ("name", "VARCHAR", _PLAIN),
    ("definition", "VARCHAR", _PLAIN),
    ("definition_hash", "VARCHAR", _PLAIN),
    ("created_at", "TIMESTAMP", _TS),
)
_RUN_SPEC: _Spec = (
    ("run_id", "VARCHAR", _PLAIN),
    ("workflow", "VARCHAR", _PLAIN),
    ("definition_hash", "VARCHAR", _PLAIN),
    ("status", "VARCHAR", _PLAIN),
    ("inputs", "JSON", _JSON),
    ("inputs_pickle", "BLOB", _PLAIN),
    ("parent_run_id", "VARCHAR", _PLAIN),
    ("parent_step_id", "VARCHAR", _PLAIN),
    ("depth", "INTEGER", _PLAIN),
    ("owner", "VARCHAR", _PLAIN),
    ("created_at", "TIMESTAMP", _TS),
    ("started_at", "TIMESTAMP", _TS),
    ("ended_at", "TIMESTAMP", _TS),
    ("error", "VARCHAR", _PLAIN),
    ("failed_step", "VARCHAR", _PLAIN),
    ("code_hashes", "JSON", _JSON),
)
_STEP_SPEC: _Spec = (
    ("run_id", "VARCHAR", _PLAIN),
    ("step_id", "VARCHAR", _PLAIN),
    ("attempt", "INTEGER", _PLAIN),
    ("status", "VARCHAR", _PLAIN),
    ("started_at", "TIMESTAMP", _TS),
    ("ended_at", "TIMESTAMP", _TS),
    ("error", "VARCHAR", _PLAIN),
    ("output", "JSON", _JSON),
    ("output_kind", "VARCHAR", _PLAIN),
    ("output_table", "VARCHAR", _PLAIN),
    ("output_pickle", "BLOB", _PLAIN),
    ("output_schema", "BLOB", _PLAIN),
    ("worker", "VARCHAR", _PLAIN),
    ("traceback", "VARCHAR", _PLAIN),
)
_CALL_SPEC: _Spec = (
    ("run_id", "VARCHAR", _PLAIN),
    ("step_id", "VARCHAR", _PLAIN),
    ("attempt", "INTEGER", _PLAIN),
    ("seq", "INTEGER", _PLAIN),
    ("kind", "VARCHAR", _PLAIN),
    ("started_at", "TIMESTAMP", _TS),
    ("data", "JSON", _JSON),
)
_EVENT_SPEC: _Spec = (
    ("ts", "TIMESTAMP", _TS),
    ("run_id", "VARCHAR", _PLAIN),
    ("step_id", "VARCHAR", _PLAIN),
    ("attempt", "INTEGER", _PLAIN),
    ("event", "VARCHAR", _PLAIN),
    ("status", "VARCHAR", _PLAIN),
    ("error", "VARCHAR", _PLAIN),
)
#: table -> (its columns, the indexes of its key columns, whether it has
#: ``duration_ms``); events are only ever added and have no key (see the module doc)
_TABLES: dict[str, tuple[_Spec, tuple[int, ...], bool]] = {
    "workflows": (_WORKFLOW_SPEC, (0, 2), False),
    "runs": (_RUN_SPEC, (0,), True),
    "steps": (_STEP_SPEC, (0, 1, 2), True),
    "calls": (_CALL_SPEC, (0, 1, 2, 3), False),
    "events": (_EVENT_SPEC, (), False),
}

#: table -> where its rows hold ``started_at`` and ``ended_at``, for ``duration_ms``
_SPANS: dict[str, tuple[int, int]] = {
    table: tuple(  # type: ignore[misc]
        [name for name, _, _ in spec].index(column) for column in ("started_at", "ended_at")
    )
    for table, (spec, _, duration) in _TABLES.items()
    if duration
}
_DURATION = ("duration_ms", "DOUBLE", _PLAIN)

#: table -> the key of one of its rows, for `last_per_key`; an event's is the whole row
KEYS: dict[str, Callable[[tuple[Any, ...]], Hashable]] = {
    table: operator.itemgetter(*key) if key else tuple for table, (_, key, _) in _TABLES.items()
}
#: how many stored events fall in the fold's time window
_IN_WINDOW = (
    "SELECT count(*) FROM events WHERE ts BETWEEN make_timestamp($1) AND make_timestamp($2)"
)
#: ``events`` rows equal to one already stored: every column but ``seq``. The
#: window bounds ($lo, $hi) are what DuckDB prunes row groups by.
_SAME_EVENT = (
    "ts BETWEEN make_timestamp(${lo}) AND make_timestamp(${hi}) AND ts = new.ts "
    "AND run_id = new.run_id AND event = new.event AND status = new.status "
    "AND step_id IS NOT DISTINCT FROM new.step_id "
    "AND attempt IS NOT DISTINCT FROM new.attempt AND error IS NOT DISTINCT FROM new.error"
)


#: the most ids counted with an IN list of parameters (see `_any_stored`)
_IN_LIST_MAX = 8


@functools.lru_cache(maxsize=16)
def _stored_sql(table: str, values: int | None) -> str:
    """How many stored rows of ``table`` share their key's first column with one of
    ``values`` parameters, one id each, or (``None``) with one of the ids of the one
    list parameter; see `_any_stored`."""
    spec, key, _ = _TABLES[table]
    column = spec[key[0]][0]
    if values is None:
        return f"SELECT count(*) FROM {table} WHERE {column} IN (SELECT unnest($1))"
    params = ", ".join(f"${i}" for i in range(1, values + 1))
    return f"SELECT count(*) FROM {table} WHERE {column} IN ({params})"


def _any_stored(con: duckdb.DuckDBPyConnection, table: str, ids: list[Any]) -> bool:
    """Whether a stored row of ``table`` shares its key's first column with one of
    ``ids`` (run ids, workflow names): if none does, no row of the fold can conflict.
    Up to `_IN_LIST_MAX` ids are an IN list of parameters, not ``IN (SELECT
    unnest($1))``: the same answer without a semi-join, whose code (≈ 0.8 MB of
    DuckDB's library paged in) was the fold's largest share of a one-run process's
    peak memory. For many ids the semi-join is faster (5,000 runs in one fold: 27
    ms of CPU against 95 with the IN list)."""
    if len(ids) > _IN_LIST_MAX:
        return _any(con, _stored_sql(table, None), [ids])
    return _any(con, _stored_sql(table, len(ids)), ids)


@functools.lru_cache(maxsize=256)
def _upsert_sql(table: str, shape: tuple[int, ...], check: bool = False) -> str:
    """The statement for ``table`` given how each column is sent (``shape``: NULL,
    one value for every row, or a list). ``duration_ms`` comes from the two times.
    Events are inserted; with ``check``, only those not stored yet, and the
    statement takes three more parameters: the time window and the row count.
    For a keyed table, ``check`` says some rows may be stored already: an upsert,
    else a plain INSERT (see the module doc)."""
    spec, key, duration = _TABLES[table]
    if duration:
        spec += (_DURATION,)
    exprs, lists, n = [], [], 0
    for (name, sql_type, wrap), how in zip(spec, shape, strict=True):
        if how == _NULL:
            exprs.append(f"NULL::{sql_type} AS {name}")
            continue
        n += 1
        if how == _LIST:
            lists.append(f"unnest(${n}) AS c{n}(v)")
            value = f"c{n}.v"
        else:
            value = f"${n}"
        exprs.append(f"{wrap.format(value)} AS {name}")
    names = [name for name, _, _ in spec]
    if check and table == "events":  # the anti-join would lose the rows' order, which `seq` keeps
        exprs.append("pos.i")
        lists.append(f"range(${n + 3}) AS pos(i)")
    select = "SELECT " + ", ".join(exprs)
    if lists:
        select += " FROM " + " POSITIONAL JOIN ".join(lists)
    if table == "events" and not check:
        return f"INSERT INTO events ({', '.join(names)}) {select}"
    if table == "events":
        same = _SAME_EVENT.format(lo=n + 1, hi=n + 2)
        return (
            f"INSERT INTO events ({', '.join(names)}) SELECT * EXCLUDE (i) FROM ({select}) "
            f"AS new WHERE NOT EXISTS (SELECT 1 FROM events WHERE {same}) ORDER BY i"
        )
    sql = f"INSERT INTO {table} ({', '.join(names)}) {select}"
    if not check:
        return sql
    keys = {names[i] for i in key}
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in keys)
    return f"{sql} ON CONFLICT DO UPDATE SET {updates}"


def last_per_key(
    rows: Sequence[tuple[Any, ...]], key: Callable[[tuple[Any, ...]], Hashable]
) -> list[tuple[Any, ...]]:
    """DuckDB refuses to update one row twice in one statement: keep the last row
    of each ``key(row)``, in first-seen order."""
    return list({key(row): row for row in rows}.values())


#: an event row journalled before schema v8 ends in its ``event_key``
_OLD_EVENT_WIDTH = len(_EVENT_SPEC) + 1


def _fitted(table: str, rows: Sequence[tuple[Any, ...]], width: int) -> Sequence[tuple[Any, ...]]:
    """Rows journalled by an older wfnb are shorter (columns added since are NULL
    for them), or, for events before schema v8, one longer (their key, dropped).
    Any other length is a bug, refused rather than cut."""
    if all(len(row) == width for row in rows):
        return rows
    fitted = []
    for row in rows:
        if len(row) > width and not (table == "events" and len(row) == _OLD_EVENT_WIDTH):
            raise StoreError(f"a {table} row of {len(row)} values, {width} expected: {row!r}")
        fitted.append((row + (None,) * width)[:width])
    return fitted


def _write(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Upsert ``rows`` into ``table``, the last row of each key (`last_per_key`);
    events are added, each once (see the module doc)."""
    spec = _TABLES[table][0]
    rows = last_per_key(_fitted(table, rows, len(spec)), KEYS[table])
    columns = [list(col) for col in zip(*rows, strict=True)]
    if table in _SPANS:
        columns.append(_durations(*(columns[i] for i in _SPANS[table])))
    n = len(rows)
    shape = tuple(
        _NULL if col[0] is None and col.count(None) == n else _SAME if col.count(col[0]) == n
        else _LIST
        for col in columns
    )  # fmt: skip
    sent = [
        col if how == _LIST else col[0]
        for col, how in zip(columns, shape, strict=True)
        if how != _NULL
    ]
    if table == "events":
        window = [min(columns[0]), max(columns[0])]
        check = _any(con, _IN_WINDOW, window)
        sent += [*window, n] if check else []
    else:
        check = _any_stored(con, table, list(dict.fromkeys(columns[_TABLES[table][1][0]])))
    con.execute(_upsert_sql(table, shape, check), sent)


def _durations(started: list[int | None], ended: list[int | None]) -> list[float | None]:
    """``duration_ms`` from the times in µs: what DuckDB gave for ``(epoch_us(ended_at)
    - epoch_us(started_at)) / 1000.0`` (a double division, as here), computed here
    since a subquery for it in the INSERT cost ≈ 0.5 MB of DuckDB's code paged in."""
    return [
        None if start is None or end is None else (end - start) / 1000.0
        for start, end in zip(started, ended, strict=True)
    ]


def _any(con: duckdb.DuckDBPyConnection, count: str, params: list[Any]) -> bool:
    """Whether the ``count(*)`` query ``count`` counts any row."""
    row = con.execute(count, params).fetchone()
    return bool(row and row[0])


def upsert(
    con: duckdb.DuckDBPyConnection,
    workflows: Sequence[tuple[Any, ...]],
    runs: Sequence[tuple[Any, ...]],
    steps: Sequence[tuple[Any, ...]],
    calls: Sequence[tuple[Any, ...]] = (),
    events: Sequence[tuple[Any, ...]] = (),
) -> None:
    """Upsert rows (events are added, each once), inside the caller's transaction."""
    for table, rows in zip(_TABLES, (workflows, runs, steps, calls, events), strict=True):
        if rows:
            _write(con, table, rows)
