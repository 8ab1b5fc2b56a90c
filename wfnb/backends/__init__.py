"""Execution backends: `local` (kernel loop + thread pool) and, later, `dask`."""

from wfnb.backends.base import Backend
from wfnb.backends.local import LocalBackend

__all__ = ["Backend", "LocalBackend"]
