"""Checkpoint stores. `base` is the protocol; each backend lives in its own module
and only the `wfnb.store.duckdb` package imports the DuckDB driver, lazily: importing
`wfnb.store` (as the engine does) does not load duckdb."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfnb.store.base import (
    Batch,
    CallRecord,
    ChangeEvents,
    EventRecord,
    RunRecord,
    StepRecord,
    Store,
    WorkflowRecord,
)
from wfnb.store.memory import MemoryStore

if TYPE_CHECKING:
    from wfnb.store.duckdb import DuckDBStore

__all__ = [
    "Batch",
    "CallRecord",
    "ChangeEvents",
    "DuckDBStore",
    "EventRecord",
    "MemoryStore",
    "RunRecord",
    "StepRecord",
    "Store",
    "WorkflowRecord",
]


def __getattr__(name: str) -> Any:
    if name == "DuckDBStore":
        from wfnb.store.duckdb import DuckDBStore

        return DuckDBStore
    raise AttributeError(f"module 'wfnb.store' has no attribute {name!r}")
