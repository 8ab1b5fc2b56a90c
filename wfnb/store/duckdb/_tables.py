"""Step outputs that are tables: which become real DuckDB tables, and writing them.

A DataFrame or Arrow table becomes ``output_<hash>`` only if DuckDB gives its
columns back castable to the very same Arrow schema (checked with a ``LIMIT 0``
query on the registered Arrow data, before the transaction, since a failed
statement aborts a DuckDB transaction); otherwise it is pickled. A record without a
table that replaces one with a table drops the old table.
"""

from __future__ import annotations

from typing import Any

import duckdb

from wfnb.store.duckdb import _upsert
from wfnb.store.duckdb._codec import PICKLE, PendingTable, pickled, table_name


def vet(con: duckdb.DuckDBPyConnection, tables: list[PendingTable]) -> dict[str, bytes | None]:
    """Before the transaction (a failed statement would abort it): for each table
    output, None if DuckDB hands its columns back castable to the very same Arrow
    schema, else the value pickled. Raises `StoreError` if it cannot be pickled."""
    verdicts: dict[str, bytes | None] = {}
    for table in tables:
        try:
            con.register("wfnb_incoming", table.arrow)
            try:
                back = con.sql("SELECT * FROM wfnb_incoming LIMIT 0").to_arrow_table()
            finally:
                con.unregister("wfnb_incoming")
            exact = back.cast(table.arrow.schema).schema.equals(table.arrow.schema)
        except Exception:  # duckdb or pyarrow: an unsupported or uncastable type
            exact = False
        verdicts[table.name] = (
            None if exact else pickled(table.value, what=f"output table {table.name}")
        )
    return verdicts


def store(
    con: duckdb.DuckDBPyConnection,
    steps: list[Any],
    tables: list[PendingTable],
    verdicts: dict[str, bytes | None],
    known: set[str],
    created: set[str],
    dropped: set[str],
) -> list[Any]:
    """Create the output tables of this transaction and drop those a later record
    replaced; returns the step rows, a table `vet` refused as a pickle."""
    fresh = {t.name: t for t in tables}
    out = []
    for row in _upsert.last_per_key(steps, _upsert.KEYS["steps"]):
        name = row[9]
        if name is None or name not in fresh:
            out.append(row)
        elif (blob := verdicts[name]) is not None:
            out.append((*row[:7], None, PICKLE, None, blob, None, *row[12:]))
        else:
            con.register("wfnb_incoming", fresh[name].arrow)
            try:
                con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM wfnb_incoming')
            finally:
                con.unregister("wfnb_incoming")
            created.add(name)
            out.append(row)
    if known:  # a record without a table replaces one that had a table
        for row in out:
            if row[9] is None and (name := table_name(*row[:3])) in known:
                con.execute(f'DROP TABLE IF EXISTS "{name}"')
                dropped.add(name)
    return out
