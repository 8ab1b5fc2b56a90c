"""The default backend: async callables on the kernel's loop, sync ones in a thread
pool so a slow function never freezes the loop (and with it the notebook's widgets).

A sync callable that times out or is cancelled keeps running in its thread until it
returns: Python cannot stop a thread. Its result is then dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wfnb.steps.base import StepContext


class LocalBackend:
    def __init__(self, *, max_workers: int | None = None) -> None:
        self._max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool: ThreadPoolExecutor | None = None

    def check(self, fn: Callable[..., Any], *, step_id: str) -> None:
        """Anything callable runs in this process."""

    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: StepContext) -> Any:
        if wants_ctx(fn):
            kwargs = {**kwargs, "ctx": ctx}
        if is_async(fn):
            return await fn(**kwargs)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="wfnb-step")
        call = functools.partial(contextvars.copy_context().run, fn, **kwargs)
        result = await asyncio.get_running_loop().run_in_executor(self._pool, call)
        if inspect.isawaitable(result):
            return await result
        return result

    async def release(self) -> None:
        """Nothing here is bound to a loop: the thread pool serves the next one."""

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


@functools.lru_cache(maxsize=1024)
def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


@functools.lru_cache(maxsize=1024)
def wants_ctx(fn: Callable[..., Any]) -> bool:
    """Whether the callable takes a ``ctx`` parameter (then it gets the StepContext)."""
    try:
        return "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
