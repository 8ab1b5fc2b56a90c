"""Per-step overhead of the engine, against the floors measured in the same run.

    python benchmarks/bench_engine.py                 # in-memory store
    python benchmarks/bench_engine.py --store duckdb  # durable: DuckDBStore in a temp dir
    python benchmarks/bench_engine.py --steps 10000   # the same shapes, larger
    python benchmarks/bench_engine.py --scale 10000   # cpu µs/step at 200 and 10,000

Shapes (`shapes.py`): a chain, a fan-out, and waves of 20 (each step needs one step
of the previous wave), of 200 steps by default; and a skewed two-layer DAG run
eagerly (makespan over the ideal critical path). Each step is a no-op coroutine,
so what is measured is the engine: planning, templates, events, checkpoints.
"bare" runs the same no-op coroutines with plain asyncio; overhead = (engine -
bare) / steps. With ``--store duckdb`` the fsync floor (one small write + fsync in
the store's directory) is printed too, and the chain's cost per step as a multiple
of it (the floor measured again beside each repetition, since a disk's fsync
drifts over a run of several minutes, and printed per shape as "fsync µs"): a
durable chain step cannot cost less than one acknowledgement, and the CPU
per step of folding the run's journal into DuckDB afterwards (deferred work the
writer thread does off the run's path, outside the run's time; one run's rows
folded alone, so a fold's fixed cost, milliseconds, falls on 200 steps: folds of
16,000 rows cost less a step, see ``bench_fold.py``). The machine
is shared and noisy: we report the median of several repetitions, and ratios taken
in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shapes

import wfnb


async def sleeper(seconds: float) -> None:
    await asyncio.sleep(seconds)


def workflow_of(shape: shapes.Shape, *, code: str = "noop", name: str = "bench") -> wfnb.Workflow:
    steps = {
        sid: {"code": code, **({"needs": needs} if needs else {})}
        for sid, needs in shape.needs.items()
    }
    return wfnb.Workflow(name=name, steps=steps)


def waves(width: int, depth: int, *, code: str = "noop", name: str = "waves") -> wfnb.Workflow:
    """``depth`` waves of ``width`` steps; each step needs one of the wave before."""
    return workflow_of(shapes.waves(width, depth), code=code, name=name)


def skewed(width: int = 20, short: float = 0.005, long: float = 0.1) -> tuple[wfnb.Workflow, float]:
    """Layer 1: one long step and many short ones; layer 2: each short step has a
    short follower. Ideal makespan = the long step alone; waves would add a short
    step after it, eager should not."""
    steps: dict[str, Any] = {"long": {"code": "sleeper", "with": {"seconds": long}}}
    for i in range(width):
        steps[f"a{i}"] = {"code": "sleeper", "with": {"seconds": short}}
        steps[f"b{i}"] = {"code": "sleeper", "needs": [f"a{i}"], "with": {"seconds": short}}
    return wfnb.Workflow(name="skewed", steps=steps, schedule="eager"), long


async def run_engine(store_factory: Callable[[], Any], workflow: wfnb.Workflow) -> float:
    return (await run_engine_cpu(store_factory, workflow))[0]


async def run_engine_cpu(
    store_factory: Callable[[], Any], workflow: wfnb.Workflow
) -> tuple[float, float, float]:
    """Wall and CPU seconds (`time.process_time`, every thread of the process) of
    one run, after a warm-up run on the same engine; then the CPU seconds of
    folding that run's journal into DuckDB (0 for a store without a journal). The
    fold is deferred work, done by the writer thread when the store is idle, every
    16,000 rows or before a read, so it is outside the run's time, but a process
    running workflows back to back pays it all the same."""
    store = store_factory()
    engine = wfnb.Engine(store=store, namespace={"noop": shapes.noop, "sleeper": sleeper})
    engine.register(workflow)
    await (await engine.start(workflow))  # warm-up: plans, templates, store schema
    flush = getattr(store, "flush", None)
    if flush is not None:
        await flush()  # the warm-up's rows, folded outside the measurement
    started, cpu = time.perf_counter(), time.process_time()
    result = await (await engine.start(workflow))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert result.ok, result.error
    fold = time.process_time()
    if flush is not None:
        await flush()
    fold = time.process_time() - fold
    await engine.close()
    return elapsed, cpu, fold


async def bare_cpu(shape: shapes.Shape) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    await shapes.bare(shape)
    return time.perf_counter() - started, time.process_time() - cpu


def medians(runs: list[tuple[float, ...]]) -> tuple[float, ...]:
    """The median of each column of ``runs``."""
    return tuple(statistics.median(column) for column in zip(*runs, strict=True))


def store_factory(kind: str, tmp: Path) -> Callable[[], Any]:
    if kind == "memory":
        return wfnb.MemoryStore
    counter = iter(range(1_000_000))

    def make() -> Any:
        from wfnb.store.duckdb import DuckDBStore

        return DuckDBStore(tmp / f"bench-{next(counter)}.duckdb")

    return make


def sized_shapes(steps: int) -> list[shapes.Shape]:
    return [shapes.chain(steps), shapes.fan_out(steps), shapes.waves(20, max(1, steps // 20))]


async def main(kind: str, repeat: int, steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        factory = store_factory(kind, Path(tmp))
        fsync_s = shapes.fsync_floor(Path(tmp)) if kind == "duckdb" else None
        shapes.print_floors(fsync_s)
        print(f"store: {kind}; median of {repeat} runs; overhead = (engine - bare) / steps")
        print("cpu µs/step: the same overhead in CPU time, steadier on a busy machine")
        header = f"{'shape':<18}{'engine ms':>11}{'bare ms':>10}{'µs/step':>10}{'ratio':>9}"
        durable = (
            f"{'fsync µs':>10}{'step ÷ fsync':>15}{'its fold, cpu µs/step':>23}" if fsync_s else ""
        )
        print(header + f"{'cpu µs/step':>13}" + durable)
        for shape in sized_shapes(steps):
            workflow = workflow_of(shape, name=shape.name)
            engine_runs, bare_runs, floors = [], [], []
            for _ in range(repeat):
                if fsync_s:
                    floors.append(shapes.fsync_floor(Path(tmp), samples=50))
                engine_runs.append(await run_engine_cpu(factory, workflow))
                bare_runs.append(await bare_cpu(shape))
            engine_s, engine_cpu, fold_cpu = medians(engine_runs)
            bare_s, bare_cpu_s = medians(bare_runs)
            per_step = (engine_s - bare_s) / shape.size
            cpu_step = (engine_cpu - bare_cpu_s) / shape.size
            line = (
                f"{shape.label:<18}{engine_s * 1e3:>11.2f}{bare_s * 1e3:>10.3f}"
                f"{per_step * 1e6:>10.1f}{engine_s / bare_s:>9.0f}x{cpu_step * 1e6:>13.1f}"
            )
            if fsync_s:
                floor = statistics.median(floors)
                line += (
                    f"{floor * 1e6:>10.0f}{per_step / floor:>14.2f}x"
                    f"{fold_cpu / shape.size * 1e6:>23.1f}"
                )
            print(line)
        workflow, ideal = skewed()
        makespans = [await run_engine(factory, workflow) for _ in range(repeat)]
        print(f"skewed eager makespan / ideal: {statistics.median(makespans) / ideal:.3f}")


async def scale(kind: str, repeat: int, steps: int) -> None:
    """CPU µs per step of the fan-out and the waves at the default size and at
    ``steps``, in one process, and their ratio: flat means near 1. Both the
    engine's whole CPU per step and its overhead over bare asyncio are shown (bare
    asyncio itself pays for the collector at 10,000 tasks in flight)."""
    with tempfile.TemporaryDirectory() as tmp:
        factory = store_factory(kind, Path(tmp))
        print(f"store: {kind}; cpu µs/step, median of {repeat} runs")
        big = f"{steps}"
        print(
            f"{'shape':<10}{'engine ' + str(shapes.STEPS):>12}{'engine ' + big:>14}{'ratio':>7}"
            f"{'overhead ' + str(shapes.STEPS):>15}{'overhead ' + big:>16}{'ratio':>7}"
        )
        for make in (shapes.fan_out, lambda n: shapes.waves(20, max(1, n // 20))):
            whole, over = [], []
            for size in (shapes.STEPS, steps):
                shape = make(size)
                workflow = workflow_of(shape, name=shape.name)
                runs = [await run_engine_cpu(factory, workflow) for _ in range(repeat)]
                bare = [await bare_cpu(shape) for _ in range(repeat)]
                engine_cpu, bare_cpu_s = medians(runs)[1], medians(bare)[1]
                whole.append(engine_cpu / shape.size)
                over.append((engine_cpu - bare_cpu_s) / shape.size)
            print(
                f"{shape.name:<10}{whole[0] * 1e6:>12.1f}{whole[1] * 1e6:>14.1f}"
                f"{whole[1] / whole[0]:>6.2f}x{over[0] * 1e6:>15.1f}{over[1] * 1e6:>16.1f}"
                f"{over[1] / over[0]:>6.2f}x"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["memory", "duckdb"], default="memory")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--steps", type=int, default=shapes.STEPS)
    parser.add_argument("--scale", type=int, metavar="STEPS", help="compare 200 with STEPS")
    args = parser.parse_args()
    if args.scale:
        asyncio.run(scale(args.store, args.repeat, args.scale))
    else:
        asyncio.run(main(args.store, args.repeat, args.steps))
