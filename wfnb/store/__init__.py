"""Checkpoint stores. `base` is the protocol; each backend lives in its own module
and only `duckdb.py` imports the DuckDB driver."""

from wfnb.store.base import Batch, RunRecord, StepRecord, Store, WorkflowRecord
from wfnb.store.memory import MemoryStore

__all__ = ["Batch", "MemoryStore", "RunRecord", "StepRecord", "Store", "WorkflowRecord"]
