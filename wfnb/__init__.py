"""wfnb: durable workflows in a Jupyter notebook.

``%load_ext wfnb`` in a notebook; ``wfnb.Engine`` in scripts and tests. The names
in ``__all__`` are the whole public surface (tested); the IPython hooks
``load_ipython_extension``/``unload_ipython_extension`` are here for ``%load_ext``
only. The planner (`wfnb.dag`) is internal.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

# `parse` provides Workflow.from_yaml/to_yaml (the model itself has no YAML).
from wfnb import parse  # noqa: F401
from wfnb.backends import Backend, LocalBackend
from wfnb.engine import Engine, RunHandle
from wfnb.errors import (
    ApprovalRejected,
    CycleError,
    DefinitionError,
    JournalCorrupt,
    LoopRunning,
    NotResumable,
    NotWaiting,
    RunError,
    RunNotFound,
    SchemaError,
    StepError,
    StepTimeout,
    StoreError,
    StoreLocked,
    SubWorkflowError,
    TemplateError,
    TemplateRenderError,
    UnknownCallableError,
    UnknownStepError,
    UnpicklableCallableError,
    WfnbError,
    WorkerLost,
    WorkflowTimeout,
    YamlError,
)
from wfnb.events import Event, EventKind, RunObserver
from wfnb.model import Retry, RunResult, RunStatus, Step, StepStatus, Workflow
from wfnb.steps.base import StepContext
from wfnb.steps.skill import skill, skills
from wfnb.store import Batch, MemoryStore, RunRecord, StepRecord, Store, WorkflowRecord

__version__ = "0.1.0"

if _TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from wfnb.backends.dask import DaskBackend

# Loaded on first use, so `import wfnb` (and the engine) loads neither duckdb nor
# distributed (wfnb.backends.dask itself imports distributed only when it connects).
_LAZY = {
    "DaskBackend": "wfnb.backends.dask",
    "DuckDBStore": "wfnb.store.duckdb",
    "sql": "wfnb.store.duckdb",
}


def __getattr__(name: str) -> object:
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wfnb' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load_ipython_extension(ip: object) -> None:
    """``%load_ext wfnb``: register the magics (IPython is imported only now)."""
    from wfnb.notebook.extension import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: object) -> None:
    """``%unload_ext wfnb`` (and the first half of ``%reload_ext wfnb``)."""
    from wfnb.notebook.extension import unload_ipython_extension as unload

    unload(ip)


__all__ = [
    "ApprovalRejected",
    "Backend",
    "Batch",
    "CycleError",
    "DaskBackend",
    "DefinitionError",
    "DuckDBStore",
    "Engine",
    "Event",
    "EventKind",
    "JournalCorrupt",
    "LocalBackend",
    "LoopRunning",
    "MemoryStore",
    "NotResumable",
    "NotWaiting",
    "Retry",
    "RunError",
    "RunHandle",
    "RunNotFound",
    "RunObserver",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "SchemaError",
    "Step",
    "StepContext",
    "StepError",
    "StepRecord",
    "StepStatus",
    "StepTimeout",
    "Store",
    "StoreError",
    "StoreLocked",
    "SubWorkflowError",
    "TemplateError",
    "TemplateRenderError",
    "UnknownCallableError",
    "UnknownStepError",
    "UnpicklableCallableError",
    "WfnbError",
    "WorkerLost",
    "Workflow",
    "WorkflowRecord",
    "WorkflowTimeout",
    "YamlError",
    "skill",
    "skills",
    "sql",
]
