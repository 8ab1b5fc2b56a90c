"""DaskBackend on real LocalClusters of processes: what only a cluster can do (a
worker dies, a running task is stopped, resources route a step, a cluster is
owned and shut down). The engine's semantics on Dask are tests/engine/, run
on both backends."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wfnb
from wfnb.model import StepStatus

from ..conftest import arun, wf


async def until(predicate: Any, timeout: float = 30.0) -> None:
    """Wait for something another process does (a file appears, a process ends)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:g} s")
        await asyncio.sleep(0.02)


def on_cluster(cluster: Any) -> wfnb.DaskBackend:
    return wfnb.DaskBackend(address=cluster.scheduler_address)


def test_a_worker_killed_mid_step_fails_that_attempt_and_the_retry_succeeds(
    dask_cluster: Any, tmp_path: Path
) -> None:
    def die_once(marker: str, ctx: wfnb.StepContext) -> int:
        if not os.path.exists(marker):
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process, mid-step
        return ctx.attempt

    engine = wfnb.Engine(namespace={"die_once": die_once}, backend=on_cluster(dask_cluster))
    text = (
        "steps:\n  k: {code: die_once, with: {marker: '%s'}, retry: {max_attempts: 2, delay: 0}}\n"
    )

    async def main() -> Any:
        handle = await engine.start(wf(text % (tmp_path / "killed")))
        result = await handle.wait()
        steps = await engine.store.get_steps(run_id=handle.id)
        await engine.close()
        return result, steps

    result, (lost, retried) = arun(main())
    assert result.status is wfnb.RunStatus.COMPLETED and result.outputs == {"k": 2}
    assert (lost.attempt, lost.status, retried.attempt, retried.status) == (
        1,
        StepStatus.FAILED,
        2,
        StepStatus.COMPLETED,
    )
    assert lost.error.startswith("the Dask worker running it died (tcp://")
    assert lost.worker and retried.worker and lost.worker != retried.worker


async def stoppable(folder: str) -> str:
    Path(folder, "started").touch()
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        Path(folder, "stopped").touch()
        raise
    Path(folder, "finished").touch()
    return "finished"


@pytest.mark.parametrize("stop", ["timeout", "cancel"])
def test_a_stopped_step_cancels_its_future_and_stops_the_task_on_the_worker(
    dask_cluster: Any, tmp_path: Path, stop: str
) -> None:
    engine = wfnb.Engine(namespace={"stoppable": stoppable}, backend=on_cluster(dask_cluster))
    timeout = ", timeout: 0.5" if stop == "timeout" else ""
    text = f"steps:\n  long_one: {{code: stoppable, with: {{folder: '{tmp_path}'}}{timeout}}}\n"
    scheduler = dask_cluster.scheduler

    def tasks_of_the_step() -> list[str]:
        return [str(key) for key in scheduler.tasks if str(key).startswith("long_one-")]

    async def main() -> Any:
        handle = await engine.start(wf(text))
        await until(lambda: (tmp_path / "started").exists())
        if stop == "cancel":
            assert len(tasks_of_the_step()) == 1
            await engine.cancel(handle.id)
        result = await handle.wait()
        await until(lambda: (tmp_path / "stopped").exists())  # the worker's task is stopped
        await until(lambda: not tasks_of_the_step())  # and the scheduler forgot its future
        await engine.close()
        return result

    result = arun(main())
    expected = wfnb.RunStatus.FAILED if stop == "timeout" else wfnb.RunStatus.CANCELLED
    assert result.status is expected
    assert not (tmp_path / "finished").exists()


def test_an_unpicklable_callable_is_refused_at_start_naming_the_step() -> None:
    lock = threading.Lock()

    def guarded() -> int:
        with lock:
            return 1

    @wfnb.skill(name="guarded_skill")
    def guarded_skill() -> int:
        with lock:
            return 1

    # No cluster is needed to know: nothing connects before a step runs.
    engine = wfnb.Engine(
        namespace={"guarded": guarded, "fine": lambda: 1}, backend=wfnb.DaskBackend()
    )
    for text in (
        "steps:\n  ok: {code: fine}\n  g: {code: guarded}\n",
        "steps:\n  ok: {code: fine}\n  g: {skill: guarded_skill}\n",
    ):
        with pytest.raises(wfnb.UnpicklableCallableError) as info:
            arun(engine.start(wf(text)))
        assert (info.value.step_id, info.value.line) == ("g", 3)
        assert "cannot be sent to the Dask workers" in str(info.value)
        assert "lock" in str(info.value)  # why: what could not be pickled
    assert arun(engine.store.list_runs()) == []
    assert wfnb.DaskBackend().dashboard_link is None


def test_an_owned_cluster_routes_resources_and_is_shut_down_by_close() -> None:
    backend = wfnb.DaskBackend(
        n_workers=1, threads_per_worker=1, resources={"GPU": 1}, dashboard_address=":0"
    )
    engine = wfnb.Engine(namespace={"where": lambda: os.getpid()}, backend=backend)
    text = """
fail_fast: false
steps:
  gpu: {code: where, resources: {GPU: 1}}
  two_gpus: {code: where, resources: {GPU: 2}, timeout: 1}
"""

    async def main() -> Any:
        handle = await engine.start(wf(text))
        result = await handle.wait()
        steps = {s.step_id: s for s in await engine.store.get_steps(run_id=handle.id)}
        assert backend.client is not None
        address = backend.client.scheduler.address
        link = backend.dashboard_link
        await engine.close()
        return result, steps, address, link

    result, steps, address, link = arun(main())
    assert result.outputs["gpu"] != os.getpid()  # it ran in a worker process
    assert steps["gpu"].worker and steps["gpu"].worker.startswith("tcp://127.0.0.1:")
    # No worker has two GPUs: the step waited, unscheduled, until its timeout.
    assert "timed out" in steps["two_gpus"].error
    assert link and link.startswith("http://")
    worker_pid = result.outputs["gpu"]
    arun(until(lambda: not _alive(worker_pid)))  # close() shut the cluster down
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_given_client_is_used_on_each_loop_and_left_running(dask_cluster: Any) -> None:
    from distributed import Client

    with Client(dask_cluster, set_as_default=False) as client:  # synchronous, as in a notebook
        engine = wfnb.Engine(namespace={"pid": os.getpid}, backend=wfnb.DaskBackend(client))
        workflow = wf("steps:\n  p: {code: pid}\n")
        # Each run_sync runs on a loop of its own: the backend connects again.
        pids = {engine.run_sync(workflow).outputs["p"] for _ in range(2)}
        assert os.getpid() not in pids
        arun(engine.close())
        assert client.status == "running" and client.scheduler_info()["workers"]


def test_a_cluster_that_cannot_start_fails_the_step_once_naming_its_options() -> None:
    """Options LocalCluster refuses fail the step with those options in the error,
    and are not retried: each retry would start (and fail) a new cluster."""
    backend = wfnb.DaskBackend(
        n_workers=1, no_such_option=1, dashboard_address=":0", env={"TOKEN": "hunter2"}
    )
    engine = wfnb.Engine(namespace={"where": lambda: os.getpid()}, backend=backend)
    text = "steps:\n  a: {code: where, retry: {max_attempts: 3, delay: 0}}\n"

    async def main() -> tuple[wfnb.RunResult, list[Any]]:
        handle = await engine.start(wf(text))
        result = await handle.wait()
        steps = await engine.store.get_steps(run_id=handle.id)
        await engine.close()
        return result, steps

    result, steps = arun(main())
    assert not result.ok
    assert [s.attempt for s in steps] == [1]
    assert "could not start a Dask LocalCluster" in steps[0].error
    assert "no_such_option" in steps[0].error and "hunter2" not in steps[0].error


def test_cluster_options_are_refused_with_a_cluster_to_use() -> None:
    with pytest.raises(wfnb.WfnbError, match="n_workers"):
        wfnb.DaskBackend(address="tcp://127.0.0.1:8786", n_workers=2)


def test_a_cluster_of_no_workers_is_refused_at_once() -> None:
    """It would never run a step: the run would wait for ever."""
    with pytest.raises(wfnb.WfnbError, match="n_workers must be a whole number >= 1"):
        wfnb.DaskBackend(n_workers=0)
