"""The same shapes on LangGraph and DBOS, durable on SQLite, beside the floors.

    pip install -e ".[bench]"
    python benchmarks/peers.py [--repeat 5] [--only langgraph|dbos]

Each peer runs the shapes of `shapes.py` (no-op steps) with its own durable
checkpointing on a SQLite file in a temp dir, configured for durability the way
its documentation recommends for production:

- LangGraph: `AsyncSqliteSaver`, ``durability="sync"`` (a checkpoint is written
  before the next superstep starts), one thread per run.
- DBOS: an async ``@DBOS.workflow`` whose steps are ``@DBOS.step`` coroutines, each
  wave gathered, on a SQLite system database.

Printed per shape: median wall time, bare asyncio, µs/step over bare, and the
chain's cost per step as a multiple of one write+fsync, all measured in this run.
The wfnb side of the table is `bench_engine.py --store duckdb` on the same shapes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import operator
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import shapes

Runner = Callable[[shapes.Shape, int], Awaitable[float]]


class _State(TypedDict):
    log: Annotated[list[str], operator.add]


async def _lg_noop(state: _State) -> dict[str, Any]:
    return {}


def _lg_graph(needs: dict[str, list[str]], nodes: dict[str, Any]) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(_State)
    for sid in needs:
        graph.add_node(sid, nodes[sid])
    needed = {n for deps in needs.values() for n in deps}
    for sid, deps in needs.items():
        for dep in deps or [START]:
            graph.add_edge(dep, sid)
        if sid not in needed:
            graph.add_edge(sid, END)
    return graph


async def langgraph_runner(tmp: Path) -> tuple[Runner, Callable[[], Awaitable[None]]]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    context = AsyncSqliteSaver.from_conn_string(str(tmp / "langgraph.sqlite"))
    saver = await context.__aenter__()
    threads = iter(range(1_000_000))

    async def run(shape: shapes.Shape, _: int) -> float:
        nodes = {sid: _lg_noop for sid in shape.needs}
        app = _lg_graph(shape.needs, nodes).compile(checkpointer=saver)
        config = {"configurable": {"thread_id": str(next(threads))}, "recursion_limit": 100_000}
        started = time.perf_counter()
        await app.ainvoke({"log": []}, config, durability="sync")
        return time.perf_counter() - started

    async def close() -> None:
        await context.__aexit__(None, None, None)

    return run, close


async def dbos_runner(tmp: Path) -> tuple[Runner, Callable[[], Awaitable[None]]]:
    from dbos import DBOS

    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{tmp / 'dbos.sqlite'}"})

    @DBOS.step()
    async def noop() -> None:
        return None

    @DBOS.workflow()
    async def run_waves(waves: list[int]) -> None:
        for width in waves:
            if width == 1:
                await noop()
            else:
                await asyncio.gather(*(noop() for _ in range(width)))

    DBOS.launch()

    async def run(shape: shapes.Shape, _: int) -> float:
        widths = [len(wave) for wave in shape.waves()]
        started = time.perf_counter()
        await run_waves(widths)
        return time.perf_counter() - started

    async def close() -> None:
        DBOS.destroy()

    return run, close


PEERS: dict[str, Callable[[Path], Awaitable[tuple[Runner, Callable[[], Awaitable[None]]]]]] = {
    "langgraph": langgraph_runner,
    "dbos": dbos_runner,
}


async def main(repeat: int, only: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        fsync_s = shapes.fsync_floor(tmp)
        shapes.print_floors(fsync_s)
        print(f"median of {repeat} runs; overhead = (peer - bare) / steps")
        print(
            f"{'peer':<11}{'shape':<18}{'peer ms':>10}{'bare ms':>10}{'µs/step':>10}"
            f"{'step ÷ fsync':>14}"
        )
        for name in only:
            run, close = await PEERS[name](tmp)
            try:
                for shape in shapes.standard_shapes():
                    await run(shape, 0)  # warm-up
                    peer_times, bare_times = [], []
                    for i in range(repeat):
                        peer_times.append(await run(shape, i))
                        bare_times.append(await shapes.timed(lambda s=shape: shapes.bare(s)))
                    peer_s = statistics.median(peer_times)
                    bare_s = statistics.median(bare_times)
                    per_step = (peer_s - bare_s) / shape.size
                    print(
                        f"{name:<11}{shape.label:<18}{peer_s * 1e3:>10.1f}{bare_s * 1e3:>10.3f}"
                        f"{per_step * 1e6:>10.0f}{per_step / fsync_s:>13.2f}x"
                    )
            finally:
                await close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=sorted(PEERS), action="append")
    args = parser.parse_args()
    asyncio.run(main(args.repeat, args.only or sorted(PEERS)))
