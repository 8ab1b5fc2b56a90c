"""The cost of the live view: the same workflow with the view attached vs headless.

    python benchmarks/bench_view.py [--reps 7] [--width 20] [--depth 10] [--step-ms 2]
    python benchmarks/bench_view.py --store duckdb     # durable: a DuckDB file per run
    python benchmarks/bench_view.py --steps 1000       # width x depth with that many steps

A ``waves`` workflow (depth x width steps, each needing one step of the previous
wave; every step sleeps ``step-ms``), run on one loop with the same store, so
what differs between the two runs is only the view: an event subscriber updating
a `RunState`, the throttled redraw (``dot`` and the timeline SVG on the render
thread), the final static picture (read back from the store) and the widget
updates (ipywidgets without a kernel: the comm messages go nowhere, everything
else is real). Runs alternate headless/view; we report medians and their ratio
(goal: <= 1.1), plus how many redraws the view made.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench_engine import waves

import wfnb
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.widgets import LiveView


def bench_workflow(width: int, depth: int) -> wfnb.Workflow:
    return waves(width, depth, code="step", name="bench")


def make_store(kind: str) -> wfnb.Store | None:
    if kind == "memory":
        return None
    from wfnb.store.duckdb import DuckDBStore

    return DuckDBStore(Path(tempfile.mkdtemp(prefix="wfnb-bench-")) / "runs.duckdb")


async def once(
    wf: wfnb.Workflow, step_s: float, with_view: bool, store: str = "memory"
) -> tuple[float, int]:
    async def step() -> None:
        await asyncio.sleep(step_s)

    engine = wfnb.Engine(store=make_store(store), namespace={"step": step})
    start = time.perf_counter()
    run = NotebookRun(engine, asyncio.ensure_future(engine.start(wf)), workflow=wf.name)
    live = LiveView(engine, run) if with_view else None
    result = await run
    elapsed = time.perf_counter() - start
    assert result.ok, result.error
    redraws = 0
    if live is not None:
        while live.final is None:
            await asyncio.sleep(0.01)
        redraws = live.throttle.redraws
    await engine.close()
    return elapsed, redraws


async def main(reps: int, width: int, depth: int, step_ms: float, store: str) -> None:
    wf = bench_workflow(width, depth)
    step_s = step_ms / 1000
    await once(wf, step_s, True, store)  # warm-up: imports, first `dot`
    headless: list[float] = []
    viewed: list[float] = []
    redraws: list[int] = []
    for _ in range(reps):
        headless.append((await once(wf, step_s, False, store))[0])
        elapsed, n = await once(wf, step_s, True, store)
        viewed.append(elapsed)
        redraws.append(n)
    h, v = statistics.median(headless), statistics.median(viewed)
    print(
        f"workflow: {depth} waves x {width} steps = {depth * width} steps, {step_ms:g} ms each, "
        f"{store} store"
    )
    for label, runs, median in (("headless ", headless, h), ("with view", viewed, v)):
        each = ", ".join(f"{x * 1000:.0f}" for x in runs)
        print(f"{label} median {median * 1000:8.1f} ms   (runs: {each})")
    print(f"redraws per run: {redraws}")
    print(f"ratio view/headless: {v / h:.3f}  (goal <= 1.1)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--step-ms", type=float, default=2.0)
    parser.add_argument("--store", choices=["memory", "duckdb"], default="memory")
    parser.add_argument(
        "--steps", type=int, help="total steps: 20 waves of steps/20 (overrides width/depth)"
    )
    args = parser.parse_args()
    if args.steps:
        args.depth = 20
        args.width = max(1, args.steps // 20)
    asyncio.run(main(args.reps, args.width, args.depth, args.step_ms, args.store))
