"""One DuckDB transaction: journal frames folded in, then batches that skip the
journal (those with table outputs), in that order, all or nothing.

Split from the writer thread, which decides *when* to fold; this is *what* a fold
writes. A failure rolls back and raises `StoreError` (its cause the DuckDB error:
the writer drops a connection DuckDB invalidated, see ``Database._commit``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from wfnb.errors import StoreError
from wfnb.store.duckdb import _lock, _schema, _tables, _upsert
from wfnb.store.duckdb._codec import EncodedBatch, PendingTable

log = logging.getLogger("wfnb.store")
#: workflows, runs, steps, calls and events rows (a journal frame of an older wfnb
#: has fewer lists: three before calls, four before events)
Rows = tuple[list[Any], ...]


def transaction(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    frames: list[tuple[int, Rows]],
    batches: list[EncodedBatch],
    known_tables: set[str],
) -> set[str]:
    """Write ``frames`` (oldest first, marking the last one folded), then ``batches``;
    the output tables there are once committed (``known_tables`` before)."""
    workflows: list[Any] = []
    runs: list[Any] = []
    steps: list[Any] = []
    calls: list[Any] = []
    events: list[Any] = []
    for _, frame_rows in frames:
        # A frame journalled by an older wfnb holds fewer lists (see `Rows`).
        w, r, s, *rest = frame_rows
        workflows += w
        runs += r
        steps += s
        calls += rest[0] if rest else []
        events += rest[1] if len(rest) > 1 else []
    tables: list[PendingTable] = []
    for b in batches:
        workflows += b.workflows
        runs += b.runs
        steps += b.steps
        calls += b.calls
        events += b.events
        tables += b.tables
    created: set[str] = set()
    dropped: set[str] = set()
    with _translated(path):
        verdicts = _tables.vet(con, tables)  # before the transaction: see `vet`
    with _atomic(con, path):
        steps = _tables.store(con, steps, tables, verdicts, known_tables, created, dropped)
        _upsert.upsert(con, workflows, runs, steps, calls, events)
        if frames:
            _schema.set_folded_seq(con, frames[-1][0])
    return (known_tables - dropped) | created


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    """Whatever fails in the block as `StoreError`: a DuckDB error translated (its
    cause kept, see the module doc), or a parameter Python could not convert."""
    try:
        yield
    except StoreError:
        raise
    except duckdb.Error as exc:
        raise _lock.translate(exc, path) from exc
    except Exception as exc:
        raise StoreError(f"DuckDB store {path}: {exc!r}") from exc


@contextlib.contextmanager
def _atomic(con: duckdb.DuckDBPyConnection, path: Path) -> Iterator[None]:
    """The block as one transaction: committed, or rolled back and `StoreError`."""
    with _translated(path):
        con.execute("BEGIN")
        try:
            yield
            con.execute("COMMIT")
        except Exception:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise


def reject(
    con: duckdb.DuckDBPyConnection, path: Path, frame: tuple[int, Rows], exc: StoreError
) -> None:
    """Set aside a journal frame DuckDB will not take (a poison frame, which would
    block every later fold and read): its rows are appended to ``<db>.rejected``
    and fsync'd, logged as an error, and the frame marked folded."""
    rejected = path.with_name(path.name + ".rejected")
    log.error(
        "wfnb store: journal frame %d cannot be folded into %s (%s); its rows are kept in %s",
        frame[0],
        path,
        exc,
        rejected,
    )
    try:
        with open(rejected, "ab") as fh:
            pickle.dump(frame, fh, protocol=5)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:  # kept in the journal: tried again at the next fold
        raise StoreError(f"cannot set the frame aside in {rejected}: {err}") from err
    with _atomic(con, path):
        _schema.set_folded_seq(con, frame[0])
