"""The schema's two definitions, a new file's and the migrations', kept one.

A new file gets the current schema in one step (``_schema.CURRENT``); a file an
earlier wfnb made reaches it through ``MIGRATIONS``. These tests compare what
DuckDB's catalog holds after each, so either definition drifting fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from wfnb.store.duckdb import _schema

#: per catalog function, the columns that say what the schema is (not oids, sizes)
CATALOG = {
    "duckdb_tables()": "table_name, has_primary_key, column_count, index_count, "
    "check_constraint_count, sql",
    "duckdb_columns()": "table_name, column_index, column_name, data_type, column_default, "
    "is_nullable",
    "duckdb_constraints()": "table_name, constraint_type, constraint_text, expression, "
    "constraint_column_names, constraint_name, referenced_table, referenced_column_names",
    "duckdb_views()": "view_name, column_count, sql",
    "duckdb_indexes()": "table_name, index_name, is_unique, is_primary, expressions, sql",
    "duckdb_sequences()": "sequence_name, start_value, min_value, max_value, "
    "increment_by, cycle, last_value",
}
BOOKKEEPING = {
    "schema_version": "SELECT version FROM schema_version ORDER BY version",
    "journal_state": "SELECT * FROM journal_state ORDER BY id",
}


def catalog(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """What the file's schema is, as DuckDB's catalog functions report it."""
    got = {
        function: con.execute(
            f"SELECT {columns} FROM {function} WHERE database_name = current_database() "
            "AND schema_name = 'main' ORDER BY ALL"
        ).fetchall()
        for function, columns in CATALOG.items()
    }
    for name, sql in BOOKKEEPING.items():
        got[name] = con.execute(sql).fetchall()
    return got


def new_file(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    _schema.migrate(con)
    return con


@pytest.mark.parametrize("version", range(1, _schema.SCHEMA_VERSION))
def test_a_file_migrated_from_each_version_has_a_new_files_catalog(
    tmp_path: Path, version: int
) -> None:
    """A file an earlier wfnb made (at ``version``) and a new file end the same:
    tables, columns with their types, defaults and nullability, keys and
    constraints, views' SQL, indexes, the sequence and the bookkeeping rows."""
    expected = catalog(new_file(tmp_path / "new.duckdb"))
    old = duckdb.connect(str(tmp_path / "old.duckdb"))
    _schema.migrate(old, target=version)
    assert catalog(old) != expected
    _schema.migrate(old)
    got = catalog(old)
    for part in expected:
        assert got[part] == expected[part], part
    assert {"runs", "steps", "events", "calls"} <= {row[0] for row in got["duckdb_tables()"]}
    assert len(got["duckdb_views()"]) == 4


def test_a_new_file_gets_the_schema_in_one_transaction_without_the_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaying v1..v8 on a new file paged in DuckDB code (ALTERs, the history
    copies) a new file never needs: ≈ 0.8 MB of a durable run's peak (issue 13)."""

    def replayed(con: duckdb.DuckDBPyConnection) -> None:
        raise AssertionError("a new file replayed a migration")

    monkeypatch.setattr(_schema, "MIGRATIONS", [replayed] * _schema.SCHEMA_VERSION)
    con = duckdb.connect(str(tmp_path / "new.duckdb"))
    _schema.migrate(con)
    versions = con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert versions == [(v,) for v in range(1, _schema.SCHEMA_VERSION + 1)]
    _schema.migrate(con)  # again: nothing to do


def test_a_new_file_whose_schema_fails_is_left_at_version_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_schema, "CURRENT", [*_schema.CURRENT, "SELECT no_such_column"])
    con = duckdb.connect(str(tmp_path / "new.duckdb"))
    with pytest.raises(duckdb.Error):
        _schema.migrate(con)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE NOT internal").fetchone() == (
        1,  # schema_version, made before the version is read
    )
