"""wfnb: durable workflows in a Jupyter notebook.

``%load_ext wfnb`` in a notebook; ``wfnb.Engine`` in scripts and tests. The names
below are the whole public surface (``wfnb.__all__`` is tested).
"""

from wfnb.backends import Backend, LocalBackend
from wfnb.dag import Plan, build_plan, ready_steps
from wfnb.engine import Engine, RunHandle
from wfnb.errors import (
    ApprovalRejected,
    CycleError,
    DefinitionError,
    NotResumable,
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
    WfnbError,
    WorkflowTimeout,
    YamlError,
)
from wfnb.events import Event, EventKind, RunObserver
from wfnb.model import Retry, RunResult, RunStatus, Step, StepStatus, Workflow
from wfnb.steps.base import StepContext
from wfnb.steps.skill import skill, skills
from wfnb.store import MemoryStore, Store

__version__ = "0.1.0"

# Loaded on first use, so `import wfnb` (and the engine) does not load duckdb.
_LAZY = {"DuckDBStore": "wfnb.store.duckdb", "sql": "wfnb.store.duckdb"}


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
    "CycleError",
    "DefinitionError",
    "DuckDBStore",
    "Engine",
    "Event",
    "EventKind",
    "LocalBackend",
    "MemoryStore",
    "NotResumable",
    "Plan",
    "Retry",
    "RunError",
    "RunHandle",
    "RunNotFound",
    "RunObserver",
    "RunResult",
    "RunStatus",
    "SchemaError",
    "Step",
    "StepContext",
    "StepError",
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
    "WfnbError",
    "Workflow",
    "WorkflowTimeout",
    "YamlError",
    "build_plan",
    "load_ipython_extension",
    "ready_steps",
    "skill",
    "skills",
    "sql",
    "unload_ipython_extension",
]
