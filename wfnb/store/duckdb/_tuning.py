"""How the store's DuckDB is set up: for a small memory footprint, and no downloads.

The store's DuckDB work is small: it folds a few hundred journal rows at a time and
reads one run's rows back. DuckDB's defaults are made for analytics on big data,
and they cost memory here. Measured with ``python3 benchmarks/bench_memory.py``
(peak RSS of ``import wfnb`` plus one durable 200-step fan-out, ``ru_maxrss`` in a
fresh process; duckdb 2.0.1, 2-core box), from 105.4 MB with the defaults to 97.8:

- ``threads = 1`` (−5 MB, to 101): DuckDB's worker threads (one per core) each get
  their own allocator arena and stack, for statements that have nothing to run in
  parallel. Queries over big output tables with ``store.sql`` run on one core.
- a new file gets 64 KiB blocks (−4 MB, to 97.7) instead of 256 KiB: the
  primary-key indexes and tables start with one block each per kind of node or
  column segment, so an almost empty store held ≈ 3 MB of index blocks for a few
  hundred rows (``duckdb_memory()``: ``ART_INDEX`` 3072 KiB → 768 KiB). 32 KiB
  saves no more (97.3–97.7 MB) but doubles the file of a big table output (9 → 18
  MB for 1M rows of int, float and str, where 64 KiB keeps 9 MB; writing that table
  takes 0.19 s instead of 0.15 s, reading it the same 0.03 s). The block size is
  fixed when a file is created, so only new files get it; existing files keep
  theirs and work as before.
- ``async_threads = 1`` (DuckDB 2.0's default is 8): not for memory (the peak is the
  same, 97.5–99.8 MB either way) but for the kernel's thread count, 10 → 3 while
  the store is open. The pool serves asynchronous reads of Parquet and CSV files
  only (a DuckDB file is read synchronously), so the store never uses it; a
  ``store.sql`` over Parquet still reads with one such thread (3M rows: 0.31 s
  either way, measured).
- ``autoinstall_known_extensions = false``: not for memory (no change measured) but
  safety: the store never downloads an extension (DuckDB would, for some files or
  queries). Installed extensions still load when a query needs them.

They are ``SET`` on the store's connection, not given as ``duckdb.connect(config=…)``:
DuckDB refuses a second ``duckdb.connect`` to the same file in this process with a
different configuration, and a user's own ``duckdb.connect(path)`` must keep
working while the store holds the file. (A ``SET`` is global to that database, so
that connection sees these settings too.) Settings weighed and left at their
defaults because they changed nothing measurable here: ``memory_limit``,
``preserve_insertion_order`` (it would also reorder unordered user queries),
``allocator_flush_threshold``, ``checkpoint_threshold``. Left at its default
though it would save memory: ``allocator_bulk_deallocation_flush_threshold``, at
256 KiB or less, took 2–4 MB off the peak (0.2 at most since the fold stopped
upserting rows that cannot conflict and a new file got its schema in one step) but
makes each fold re-fault what it gave back (≈ +50% fold CPU; docs/store.md, "Memory").
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

BLOCK_SIZE = 64 * 1024
SETTINGS: dict[str, str] = {
    "threads": "1",
    "async_threads": "1",
    "autoinstall_known_extensions": "false",
}


def create_small(path: Path) -> None:
    """Create the store file with `BLOCK_SIZE` blocks if it does not exist yet.

    ``duckdb.connect`` creates a file with 256 KiB blocks; ``ATTACH … (BLOCK_SIZE
    …)`` from a throwaway in-memory database is the way to choose it without giving
    the store's connection a configuration of its own (see the module docstring).
    If another process creates or holds the file meanwhile, the ATTACH fails and
    nothing is done: the caller's connect then waits for it or reports it."""
    if path.exists():
        return
    con = duckdb.connect(":memory:")
    try:
        quoted = str(path).replace("'", "''")
        with contextlib.suppress(duckdb.Error):
            con.execute(f"ATTACH '{quoted}' AS wfnb_new (BLOCK_SIZE {BLOCK_SIZE})")
    finally:
        con.close()


def apply(con: duckdb.DuckDBPyConnection) -> None:
    """Set `SETTINGS` on a freshly opened connection."""
    for name, value in SETTINGS.items():
        con.execute(f"SET {name} = {value}")
