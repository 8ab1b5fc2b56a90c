"""Instructions per step of the event-loop thread, counted by callgrind.

    python benchmarks/bench_instructions.py                  # in-memory store
    python benchmarks/bench_instructions.py --store duckdb   # durable
    python benchmarks/bench_instructions.py --shapes fanout --runs 5

CPU time on a shared machine moves with the load (±30 % between two runs of
`bench_engine.py` here); instruction counts do not, so a change to the engine's
hot path can be compared before/after in one go. For each shape, the program runs
twice under ``valgrind --tool=callgrind --separate-threads=yes``: with ``--runs``
runs of a warmed-up engine, and with none; the difference over the steps run is
what a step costs, on the loop thread (callgrind's thread 1) and on all the others
(the store's writer). "bare" is the same no-op coroutines on plain asyncio. Slow
(about half a minute a line) and needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import shapes
from bench_engine import store_factory, workflow_of

import wfnb

SHAPES = {"chain": shapes.chain, "fanout": shapes.fan_out, "waves": shapes.waves}


async def child(kind: str, shape_name: str, runs: int, tmp: Path) -> None:
    """Two warm-up runs, then ``runs`` more: what the parent counts."""
    shape = SHAPES[shape_name]()
    if kind == "bare":
        for _ in range(2 + runs):
            await shapes.bare(shape)
        return
    engine = wfnb.Engine(store=store_factory(kind, tmp)(), namespace={"noop": shapes.noop})
    workflow = workflow_of(shape, name=shape.name)
    for _ in range(2 + runs):
        result = await (await engine.start(workflow))
        assert result.ok, result.error
    await engine.close()


def per_thread(out: Path) -> dict[str, int]:
    """Callgrind's total per thread file (``out-01``, ``out-02``, ...)."""
    totals = {}
    for path in sorted(out.parent.glob(out.name + "-*")):
        for line in path.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                totals[path.name.rsplit("-", 1)[1]] = int(line.split()[1])
                break
    return totals


def count(kind: str, shape: str, runs: int, tmp: Path) -> dict[str, int]:
    out = tmp / f"{kind}-{shape}-{runs}.cg"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            kind,
            shape,
            str(runs),
            str(tmp),
        ],
        check=True,
        capture_output=True,
    )
    return per_thread(out)


def main(kind: str, names: list[str], runs: int) -> None:
    print(f"store: {kind}; instructions a step: (runs={runs}) - (runs=0), over the steps run")
    print(f"{'shape':<10}{'loop thread':>14}{'other threads':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for label in (kind, "bare"):
                none, some = (count(label, name, n, Path(tmp)) for n in (0, runs))
                steps = runs * shapes.STEPS
                loop = (some.get("01", 0) - none.get("01", 0)) / steps
                rest = (sum(some.values()) - some.get("01", 0)) - (
                    sum(none.values()) - none.get("01", 0)
                )
                shown = name if label == kind else "  bare"
                print(f"{shown:<10}{loop / 1000:>13.1f}k{rest / steps / 1000:>15.1f}k")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        kind, shape, runs, tmp = sys.argv[2:6]
        asyncio.run(child(kind, shape, int(runs), Path(tmp)))
        sys.exit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["memory", "duckdb"], default="memory")
    parser.add_argument("--shapes", default="fanout,waves,chain")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    main(args.store, args.shapes.split(","), args.runs)
