"""Per-step overhead of the engine, against bare asyncio measured in the same run.

    python benchmarks/bench_engine.py                 # in-memory store
    python benchmarks/bench_engine.py --store duckdb  # durable: DuckDBStore in a temp dir

Shapes: a 200-step chain, a 200-step fan-out, 10 waves x 20 (each step needs one
step of the previous wave), and a skewed two-layer DAG run eagerly (makespan over
the ideal critical path). Each step is a no-op coroutine, so what is measured is
the engine: planning, templates, events, checkpoints. "bare" runs the same no-op
coroutines with plain asyncio (awaited in a chain, gathered for the fan-out);
overhead = (engine - bare) / steps. The machine is shared and noisy: we report the
median of several repetitions, and ratios taken in the same process.
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

import wfnb


async def noop() -> None:
    return None


async def sleeper(seconds: float) -> None:
    await asyncio.sleep(seconds)


def chain(n: int) -> wfnb.Workflow:
    steps = {f"s{i}": {"code": "noop", **({"needs": [f"s{i - 1}"]} if i else {})} for i in range(n)}
    return wfnb.Workflow(name="chain", steps=steps)


def fan_out(n: int) -> wfnb.Workflow:
    steps: dict[str, Any] = {"root": {"code": "noop"}}
    steps.update({f"s{i}": {"code": "noop", "needs": ["root"]} for i in range(n - 1)})
    return wfnb.Workflow(name="fanout", steps=steps)


def waves(width: int, depth: int, *, code: str = "noop", name: str = "waves") -> wfnb.Workflow:
    """``depth`` waves of ``width`` steps; each step needs one of the wave before."""
    steps: dict[str, Any] = {}
    for w in range(depth):
        for i in range(width):
            body: dict[str, Any] = {"code": code}
            if w:
                body["needs"] = [f"w{w - 1}_{i}"]
            steps[f"w{w}_{i}"] = body
    return wfnb.Workflow(name=name, steps=steps)


def skewed(width: int = 20, short: float = 0.005, long: float = 0.1) -> tuple[wfnb.Workflow, float]:
    """Layer 1: one long step and many short ones; layer 2: each short step has a
    short follower. Ideal makespan = the long step alone; waves would add a short
    step after it, eager should not."""
    steps: dict[str, Any] = {"long": {"code": "sleeper", "with": {"seconds": long}}}
    for i in range(width):
        steps[f"a{i}"] = {"code": "sleeper", "with": {"seconds": short}}
        steps[f"b{i}"] = {"code": "sleeper", "needs": [f"a{i}"], "with": {"seconds": short}}
    return wfnb.Workflow(name="skewed", steps=steps, schedule="eager"), long


async def bare_chain(n: int) -> None:
    for _ in range(n):
        await noop()


async def bare_fan_out(n: int) -> None:
    await noop()
    await asyncio.gather(*(noop() for _ in range(n - 1)))


async def bare_waves(width: int, depth: int) -> None:
    for _ in range(depth):
        await asyncio.gather(*(noop() for _ in range(width)))


async def timed(make: Callable[[], Any]) -> float:
    started = time.perf_counter()
    await make()
    return time.perf_counter() - started


async def run_engine(store_factory: Callable[[], Any], workflow: wfnb.Workflow) -> float:
    engine = wfnb.Engine(store=store_factory(), namespace={"noop": noop, "sleeper": sleeper})
    engine.register(workflow)
    await (await engine.start(workflow))  # warm-up: plans, templates, store schema
    started = time.perf_counter()
    result = await (await engine.start(workflow))
    elapsed = time.perf_counter() - started
    assert result.ok, result.error
    await engine.close()
    return elapsed


def store_factory(kind: str, tmp: Path) -> Callable[[], Any]:
    if kind == "memory":
        return wfnb.MemoryStore
    counter = iter(range(1_000_000))

    def make() -> Any:
        from wfnb.store.duckdb import DuckDBStore

        return DuckDBStore(tmp / f"bench-{next(counter)}.duckdb")

    return make


async def main(kind: str, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        factory = store_factory(kind, Path(tmp))
        shapes = [
            ("chain 200", chain(200), lambda: bare_chain(200), 200),
            ("fan-out 200", fan_out(200), lambda: bare_fan_out(200), 200),
            ("10 waves x 20", waves(20, 10), lambda: bare_waves(20, 10), 200),
        ]
        print(f"store: {kind}; median of {repeat} runs; overhead = (engine - bare) / steps")
        print(f"{'shape':<16}{'engine ms':>11}{'bare ms':>10}{'µs/step':>10}{'ratio':>9}")
        for label, workflow, bare, steps in shapes:
            engine_times, bare_times = [], []
            for _ in range(repeat):
                engine_times.append(await run_engine(factory, workflow))
                bare_times.append(await timed(bare))
            engine_s, bare_s = statistics.median(engine_times), statistics.median(bare_times)
            per_step = (engine_s - bare_s) / steps * 1e6
            print(
                f"{label:<16}{engine_s * 1e3:>11.2f}{bare_s * 1e3:>10.3f}"
                f"{per_step:>10.1f}{engine_s / bare_s:>9.0f}x"
            )
        workflow, ideal = skewed()
        makespans = [await run_engine(factory, workflow) for _ in range(repeat)]
        print(f"skewed eager makespan / ideal: {statistics.median(makespans) / ideal:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["memory", "duckdb"], default="memory")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.store, args.repeat))
