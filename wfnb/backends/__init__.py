"""Execution backends: `local` (kernel loop + thread pool) and `dask` (a Dask
cluster; `wfnb.backends.dask`, imported only when used, as it loads `distributed`)."""

from wfnb.backends.base import Backend
from wfnb.backends.local import LocalBackend

__all__ = ["Backend", "LocalBackend"]
