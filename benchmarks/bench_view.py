"""The cost of the live view: the same workflow with the view attached vs headless.

    python benchmarks/bench_view.py [--reps 15] [--width 20] [--depth 10] [--step-ms 2]
    python benchmarks/bench_view.py --store duckdb     # durable: a DuckDB file per run
    python benchmarks/bench_view.py --steps 1000       # 20 waves of steps/20
    python benchmarks/bench_view.py --steps 1000 --profile 20   # + cProfile's top lines

A ``waves`` workflow (depth x width steps, each needing one step of the previous
wave; every step sleeps ``step-ms``), run on one loop with the same store, so
what differs between the two runs is only the view: the widgets, the engine's
events to it and the `RunState` they update, the throttled redraw (``dot`` and
the timeline SVG on the render thread), and the final static picture (read back
from the store, with the timeline) that replaces the widgets (ipywidgets without
a kernel: the comm messages go nowhere, everything else is real). Runs alternate
headless/view. We report, for both in the same run: the wall time until ``await
run`` returns (the goal: view/headless median <= 1.1) and the CPU time of the
loop's thread meanwhile (less noisy on a shared machine); for the view, the time
until its final picture is ready (what a cell that awaits the run waits for, and
the one part a notebook adds after the run) and how many redraws it made; and the
load average, since the wall-clock figures move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_engine import waves

import wfnb
from wfnb.notebook.runs import NotebookRun
from wfnb.notebook.widgets import LiveView


@dataclass
class Sample:
    wall: float  # start -> `await run` returned
    cpu: float  # the loop thread's CPU time meanwhile
    final: float = 0.0  # start -> the final picture is ready (view only)
    redraws: int = 0
    timelines: int = 0


def bench_workflow(width: int, depth: int) -> wfnb.Workflow:
    return waves(width, depth, code="step", name="bench")


def make_store(kind: str) -> wfnb.Store | None:
    if kind == "memory":
        return None
    from wfnb.store.duckdb import DuckDBStore

    return DuckDBStore(Path(tempfile.mkdtemp(prefix="wfnb-bench-")) / "runs.duckdb")


async def once(
    wf: wfnb.Workflow,
    step_s: float,
    with_view: bool,
    store: str = "memory",
    profile: cProfile.Profile | None = None,
) -> Sample:
    async def step() -> None:
        await asyncio.sleep(step_s)

    engine = wfnb.Engine(store=make_store(store), namespace={"step": step})
    if profile is not None:
        profile.enable()
    start, cpu = time.perf_counter(), time.thread_time()
    run = NotebookRun(engine, asyncio.ensure_future(engine.start(wf)), workflow=wf.name)
    live = LiveView(engine, run) if with_view else None
    result = await run
    sample = Sample(time.perf_counter() - start, time.thread_time() - cpu)
    if profile is not None:
        profile.disable()
    assert result.ok, result.error
    if live is not None:
        await live.at_rest
        sample.final = time.perf_counter() - start
        assert live.final is not None and "wfnb-timeline" in live.final["text/html"]
        sample.redraws, sample.timelines = live.throttle.redraws, live.timelines
    await engine.close()
    return sample


def report(label: str, samples: list[Sample]) -> tuple[float, float]:
    wall = statistics.median(s.wall for s in samples)
    cpu = statistics.median(s.cpu for s in samples)
    each = ", ".join(f"{s.wall * 1000:.0f}" for s in samples)
    print(f"{label} wall median {wall * 1000:7.1f} ms (runs: {each}); loop CPU {cpu * 1000:.1f} ms")
    return wall, cpu


async def main(args: argparse.Namespace) -> None:
    wf = bench_workflow(args.width, args.depth)
    step_s = args.step_ms / 1000
    await once(wf, step_s, True, args.store)  # warm-up: imports, first `dot`
    await once(wf, step_s, False, args.store)
    load = os.getloadavg()
    headless: list[Sample] = []
    viewed: list[Sample] = []
    for _ in range(args.reps):
        headless.append(await once(wf, step_s, False, args.store))
        viewed.append(await once(wf, step_s, True, args.store))
    load_after = os.getloadavg()
    print(
        f"workflow: {args.depth} waves x {args.width} steps = {args.depth * args.width} steps, "
        f"{args.step_ms:g} ms each, {args.store} store"
    )
    h, h_cpu = report("headless ", headless)
    v, v_cpu = report("with view", viewed)
    final = statistics.median(s.final for s in viewed)
    print(
        f"with view: final picture (with its timeline) ready after {final * 1000:.1f} ms; "
        f"redraws per run {[s.redraws for s in viewed]}, "
        f"timelines drawn in the widgets per run {[s.timelines for s in viewed]}"
    )
    print(f"load average (1 min) {load[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"loop CPU view/headless: {v_cpu / h_cpu:.3f}")
    print(f"ratio view/headless: {v / h:.3f}  (goal <= 1.1)")
    if args.profile:
        profile = cProfile.Profile()
        for _ in range(args.reps):
            await once(wf, step_s, True, args.store, profile)
        print(f"\ncProfile of {args.reps} runs with the view, start -> `await run`:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--step-ms", type=float, default=2.0)
    parser.add_argument("--store", choices=["memory", "duckdb"], default="memory")
    parser.add_argument(
        "--steps", type=int, help="total steps: 20 waves of steps/20 (overrides width/depth)"
    )
    parser.add_argument("--profile", type=int, default=0, help="print this many profile lines")
    args = parser.parse_args()
    if args.steps:
        args.depth = 20
        args.width = max(1, args.steps // 20)
    asyncio.run(main(args))
