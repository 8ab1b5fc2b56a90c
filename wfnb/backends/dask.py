"""The Dask backend: `code` and `skill` steps run on the workers of a Dask cluster.

The kernel stays the orchestrator: templates, control flow, approvals and every
checkpoint stay here, and only the step's callable, its rendered arguments and
its result travel. The callable goes by cloudpickle (a function defined in the
notebook travels by value; one from an installed module by reference, so that
module, and wfnb itself, must be importable on the workers).

This is the only module that imports ``distributed``, and only when a
`DaskBackend` connects, so ``import wfnb`` never loads it.

Ownership: a cluster the backend started (no client, no address given) is shut
down by `close`; a client the user passed in, or the scheduler at an address, is
left running (the backend closes only the client it made to reach it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, cast

from wfnb.backends.local import is_async, wants_ctx
from wfnb.errors import StepError, UnpicklableCallableError, WfnbError, WorkerLost
from wfnb.model import callable_name
from wfnb.steps.base import Runtime, StepContext

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

#: seconds between two looks, on the worker, at whether an async step's future was
#: cancelled (Dask does not stop a task that is already running; this does)
CANCEL_POLL = 0.05
#: template names a step's ``ctx`` does not take along to a worker: ``steps`` is a
#: live view of the run in the kernel, and secrets travel only where ``with:`` puts them
_KERNEL_ONLY = ("steps", "secrets")
_WORKER_ATTR = "wfnb_worker"


class DaskBackend:
    """Run `code` and `skill` steps on a Dask cluster.

    ``DaskBackend(client)`` or ``DaskBackend(address="tcp://HOST:PORT")`` uses that
    cluster; ``DaskBackend(**local_cluster_kwargs)`` starts a
    ``distributed.LocalCluster`` of processes on first use and owns it. Nothing
    connects before the first step (or `connect`).
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        address: str | None = None,
        **local_cluster_kwargs: Any,
    ) -> None:
        if client is not None and address is not None:
            raise WfnbError("DaskBackend takes a client or an address, not both")
        if (client is not None or address is not None) and local_cluster_kwargs:
            raise WfnbError(
                "LocalCluster options apply only when DaskBackend starts its own cluster "
                f"(no client, no address): {', '.join(sorted(local_cluster_kwargs))}"
            )
        problem = cluster_options_problem(local_cluster_kwargs)
        if problem is not None:
            raise WfnbError(f"DaskBackend: {problem}")
        self._given = client
        self._address = address
        self._cluster_kwargs = local_cluster_kwargs
        self._cluster: LocalCluster | None = None
        #: the asynchronous client this backend made, and the loop it runs on
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[Client] | None = None
        self._cancels: set[asyncio.Task[Any]] = set()

    # -- the cluster -------------------------------------------------------------

    @property
    def client(self) -> Client | None:
        """The client steps are submitted through; None before the first connection."""
        if self._given is not None and self._given.asynchronous:
            return self._given
        return self._client

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard of the cluster; None before the first connection."""
        client = self.client
        return None if client is None else str(client.dashboard_link)

    async def connect(self) -> Client:
        """The asynchronous client on the running loop: made (and the cluster
        started) at the first call on each loop."""
        given = self._given
        if given is not None and given.asynchronous:
            if getattr(given.loop, "asyncio_loop", None) is not asyncio.get_running_loop():
                raise WfnbError(
                    "the Dask client given to DaskBackend runs on another event loop; "
                    "pass a synchronous client or the scheduler's address instead"
                )
            return given
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._loop is not loop:
            if self._client is not None and self._loop is not None and self._loop.is_closed():
                self._client = None  # its loop is gone, and the connection with it
            self._loop = loop
            self._connecting = loop.create_task(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        except Exception:
            if self._connecting is connecting:
                self._connecting = None  # the next step tries again
            raise

    async def _connect(self) -> Client:
        from distributed import Client

        address = self._address
        if self._given is not None:
            address = getattr(self._given.scheduler, "address", None)
        elif address is None:
            if self._cluster is None:
                self._cluster = await asyncio.to_thread(_start_cluster, self._cluster_kwargs)
            address = self._cluster.scheduler_address
        connecting: Any = cast(Any, Client)(address, asynchronous=True, set_as_default=False)
        client: Client = await connecting
        self._client = client
        return client

    # -- the Backend protocol ----------------------------------------------------

    def check(self, fn: Callable[..., Any], *, step_id: str) -> None:
        import cloudpickle

        try:
            cloudpickle.dumps(fn)
        except Exception as exc:  # noqa: BLE001 - whatever pickling raises, say it
            raise UnpicklableCallableError(
                f"{callable_name(fn)} cannot be sent to the Dask workers, as it cannot be "
                f"pickled ({type(exc).__name__}: {exc}). Make what it cannot pickle (a "
                "connection, a lock, a client) inside the function, or run this workflow "
                "on the local backend",
                step_id=step_id,
            ) from None

    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: StepContext) -> Any:
        from distributed import KilledWorker

        client = await self.connect()
        if wants_ctx(fn):
            kwargs = {**kwargs, "ctx": _travelling(ctx)}
        # The key names the step, so the dashboard groups tasks by step.
        key = f"{ctx.step_id}-{uuid.uuid4().hex}"
        run = _run_async if is_async(fn) else _run_sync
        future = client.submit(run, fn, kwargs, key, key=key, resources=dict(ctx.resources) or None)
        try:
            worker, result = await future
        except asyncio.CancelledError:  # a timeout, a cancel, fail-fast
            self._cancel(cast(Any, client).cancel([future], force=True))
            raise
        except KilledWorker as exc:
            ctx.worker = getattr(exc.last_worker, "address", None)
            raise WorkerLost(
                f"the Dask worker running it died ({ctx.worker or 'unknown worker'})",
                step_id=ctx.step_id,
            ) from None
        except Exception as exc:
            ctx.worker = getattr(exc, _WORKER_ATTR, None)
            raise
        ctx.worker = worker
        return result

    def _cancel(self, cancelling: Coroutine[Any, Any, Any]) -> None:
        """Tell the scheduler without holding up the stop; `release` waits for it."""
        task = asyncio.get_running_loop().create_task(cancelling)
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def release(self) -> None:
        client, connecting, loop = self._client, self._connecting, self._loop
        self._client = self._connecting = self._loop = None
        if loop is not asyncio.get_running_loop():
            self._cancels.clear()
            return  # made on a loop that is gone: so is its connection
        if self._cancels:
            await asyncio.gather(*self._cancels, return_exceptions=True)
        if client is None and connecting is not None:
            (made,) = await asyncio.gather(connecting, return_exceptions=True)
            client = None if isinstance(made, BaseException) else made
        if client is not None:
            await cast(Any, client).close()

    async def close(self) -> None:
        await self.release()
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await asyncio.to_thread(cluster.close)

    def __repr__(self) -> str:
        where = self._address or ("a given client" if self._given else "its own LocalCluster")
        return f"<DaskBackend on {where}>"


def _start_cluster(options: dict[str, Any]) -> LocalCluster:
    """A LocalCluster of processes on a loop thread of its own, so it outlives the
    event loop that started it (``run_sync`` makes one per call). A worker that dies
    fails the task at once (``allowed_failures=0``): wfnb's retries decide what next,
    not Dask's silent re-runs. A cluster that cannot start fails the step, retried
    only if the failure was the machine's (an OSError, a timeout): the same
    options fail the same way."""
    from distributed import LocalCluster

    try:
        scheduler = {"allowed_failures": 0, **options.get("scheduler_kwargs", {})}
        cluster: LocalCluster = cast(Any, LocalCluster)(
            **{"processes": True, **options, "scheduler_kwargs": scheduler}
        )
    except Exception as exc:
        # Option names, not values: a value may be a secret (``env``, say).
        names = ", ".join(sorted(options)) or "none"
        raise StepError(
            f"could not start a Dask LocalCluster (options: {names}): "
            f"{type(exc).__name__}: {exc} (the workers' log above may say more)",
            retryable=isinstance(exc, OSError | TimeoutError),  # else the same again
        ) from exc
    return cluster


def cluster_options_problem(options: dict[str, Any]) -> str | None:
    """What is wrong with LocalCluster options that can be told before starting
    one (the rest is LocalCluster's to judge): None when nothing is."""
    for name in ("n_workers", "threads_per_worker"):
        value = options.get(name)
        if value is not None and not (type(value) is int and value >= 1):
            return f"{name} must be a whole number >= 1 (a cluster of no workers runs nothing)"
    if "asynchronous" in options:
        return "asynchronous is wfnb's to set (the cluster runs on a thread of its own)"
    return None


class _KernelOnly:
    """``ctx.runtime`` on a worker: loop bodies, child runs and approvals are the
    kernel's business, out of a worker's reach."""

    def __getattr__(self, name: str) -> NoReturn:
        raise WfnbError(f"ctx.runtime.{name} is not available on a Dask worker")


def _travelling(ctx: StepContext) -> StepContext:
    """The step's context as it goes to a worker: no live view of the run, no way
    back into the engine."""
    scope = {name: value for name, value in ctx.scope.items() if name not in _KERNEL_ONLY}
    return dataclasses.replace(ctx, scope=scope, runtime=cast(Runtime, _KernelOnly()))


# -- on the worker --------------------------------------------------------------------


def _tag(exc: BaseException, worker: str) -> None:
    """Say where it failed; the attribute travels back with the pickled exception."""
    with contextlib.suppress(AttributeError):  # an exception type without a __dict__
        setattr(exc, _WORKER_ATTR, worker)


def _run_sync(fn: Callable[..., Any], kwargs: dict[str, Any], key: str) -> tuple[str, Any]:
    """A sync callable, in a worker thread. Like a thread of the local backend, it
    cannot be stopped once it runs: a cancel drops its result."""
    from distributed import get_worker

    worker = get_worker().address
    try:
        result = fn(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    except BaseException as exc:
        _tag(exc, worker)
        raise
    return worker, result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def _run_async(fn: Callable[..., Any], kwargs: dict[str, Any], key: str) -> tuple[str, Any]:
    """An async callable, on the worker's loop, cancelled once its future is."""
    from distributed import get_worker

    worker = get_worker()
    task = asyncio.ensure_future(fn(**kwargs))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=CANCEL_POLL)
            state = worker.state.tasks.get(key)
            if state is None or state.state == "cancelled":
                task.cancel()
        return worker.address, task.result()
    except BaseException as exc:
        _tag(exc, worker.address)
        raise
    finally:
        task.cancel()
