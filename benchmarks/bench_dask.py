"""What the Dask backend buys and costs, measured in one run.

    python benchmarks/bench_dask.py

1. Speed-up: 8 CPU-bound steps of ~0.3 s of pure Python in one wave, on a
   LocalCluster of 2 single-threaded worker processes against 1 (a ratio of wall
   times; 0.5 is perfect on 2 free cores, the goal is <= 0.6).
2. Per-step overhead on no-op steps (a 200-step fan-out), Dask against the local
   backend, in µs/step, with Dask's own floor (the same no-ops through
   ``client.submit`` and ``gather``, no wfnb) and the bare-asyncio floor.
3. Throughput of a 1,000-step fan-out on Dask, in steps/s.

The machine is shared and noisy: each figure is the median of a few repetitions,
the 1- and 2-worker runs alternate (so a busy spell hits both), and the same 8
tasks submitted straight to Dask (no wfnb) give the ratio the cluster itself
allows at that moment: a speed-up needs two idle cores to show.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import wfnb

REPEAT = 3


def burn(n: int) -> int:
    """Pure-Python CPU work (holds the GIL: threads cannot overlap it, processes can)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


async def noop() -> None:
    return None


def calibrate(seconds: float = 0.3) -> int:
    n = 200_000
    while True:
        started = time.perf_counter()
        burn(n)
        took = time.perf_counter() - started
        if took > 0.05:
            return int(n * seconds / took)
        n *= 2


def fan_out(width: int, code: str, name: str, **with_: Any) -> wfnb.Workflow:
    steps: dict[str, Any] = {
        f"s{i}": {"code": code, **({"with": with_} if with_ else {})} for i in range(width)
    }
    return wfnb.Workflow(name=name, steps=steps)


async def wall(engine: wfnb.Engine, workflow: wfnb.Workflow) -> float:
    started = time.perf_counter()
    result = await (await engine.start(workflow)).wait()
    took = time.perf_counter() - started
    assert result.ok, result.error
    return took


async def median(make: Callable[[], Awaitable[float]], repeat: int = REPEAT) -> float:
    return statistics.median([await make() for _ in range(repeat)])


async def dask_floor(backend: wfnb.DaskBackend, n: int) -> float:
    client: Any = await backend.connect()
    started = time.perf_counter()
    await client.gather([client.submit(noop, pure=False) for _ in range(n)])
    return time.perf_counter() - started


async def dask_cpu(backend: wfnb.DaskBackend, n_burn: int) -> float:
    client: Any = await backend.connect()
    started = time.perf_counter()
    await client.gather([client.submit(burn, n_burn, pure=False) for _ in range(8)])
    return time.perf_counter() - started


async def asyncio_floor(n: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(noop() for _ in range(n)))
    return time.perf_counter() - started


async def main() -> None:
    n_burn = calibrate()
    namespace = {"burn": burn, "noop": noop}
    cpu = fan_out(8, "burn", "cpu", n=n_burn)
    noops = fan_out(200, "noop", "noops")
    wide = fan_out(1000, "noop", "wide")

    one = wfnb.DaskBackend(n_workers=1, threads_per_worker=1, dashboard_address=":0")
    two = wfnb.DaskBackend(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    local = wfnb.Engine(namespace=namespace)
    on_one = wfnb.Engine(namespace=namespace, backend=one)
    on_two = wfnb.Engine(namespace=namespace, backend=two)
    try:
        for engine in (on_one, on_two):  # start the clusters, warm the workers
            await wall(engine, fan_out(4, "noop", "warm"))
        pairs = [(await wall(on_one, cpu), await wall(on_two, cpu)) for _ in range(REPEAT)]
        bare = [(await dask_cpu(one, n_burn), await dask_cpu(two, n_burn)) for _ in range(REPEAT)]
        t_one = statistics.median(first for first, _ in pairs)
        t_two = statistics.median(second for _, second in pairs)
        ratio = statistics.median(second / first for first, second in pairs)
        bare_ratio = statistics.median(second / first for first, second in bare)
        print(
            f"8 x ~0.3 s CPU-bound steps in one wave: 1 worker {t_one:.2f} s, "
            f"2 workers {t_two:.2f} s, ratio {ratio:.2f} (goal <= 0.6); the same tasks "
            f"on bare dask: ratio {bare_ratio:.2f}; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )

        n = len(noops.steps)
        t_local = await median(lambda: wall(local, noops))
        t_dask = await median(lambda: wall(on_two, noops))
        t_floor = await median(lambda: dask_floor(two, n))
        t_bare = await median(lambda: asyncio_floor(n))
        print(
            f"no-op steps ({n}-step fan-out), per step: local {t_local / n * 1e6:.0f} µs, "
            f"dask {t_dask / n * 1e6:.0f} µs (+{(t_dask - t_local) / n * 1e6:.0f} µs); "
            f"floors: bare dask submit/gather {t_floor / n * 1e6:.0f} µs, "
            f"bare asyncio {t_bare / n * 1e6:.1f} µs"
        )

        t_wide = await median(lambda: wall(on_two, wide), repeat=2)
        print(
            f"1,000-step fan-out on dask (2 workers): {t_wide:.2f} s, "
            f"{len(wide.steps) / t_wide:.0f} steps/s"
        )
    finally:
        for engine in (local, on_one, on_two):
            await engine.close()


if __name__ == "__main__":  # the cluster's worker processes import this file again
    asyncio.run(main())
