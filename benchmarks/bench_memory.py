"""Peak memory of ``import wfnb`` plus one durable 200-step run, in a fresh process.

    python benchmarks/bench_memory.py            # fan-out of 200 on a DuckDBStore
    python benchmarks/bench_memory.py --steps 1000

Each measurement runs in its own subprocess (peak RSS only ever grows, so one
process per figure) and reads ``ru_maxrss``. Printed beside it: the peak of a bare
``python -c pass`` (the floor), and whether the heavy table libraries (pandas,
pyarrow, numpy) were loaded: they should load only when a table is asked for.

Then where it goes: the fan-out again in one more process, with ``VmRSS`` (split
into anonymous and file-backed pages: a shared library's code counts as file pages)
and the peak so far (``VmHWM``) from ``/proc/self/status`` at each point: at start,
after ``import wfnb`` (asyncio included), after importing the DuckDB store, once the
store is open (schema made), after the run, after the journal is folded into
DuckDB, and after close.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

HEAVY = ("pandas", "pyarrow", "numpy", "networkx")

RUN = """
import asyncio, json, resource, sys, tempfile
from pathlib import Path
import wfnb
from wfnb.store.duckdb import DuckDBStore
sys.path.insert(0, {bench!r})
import bench_engine, shapes
after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

async def main(tmp):
    workflow = bench_engine.workflow_of(getattr(shapes, {shape!r})({steps}))
    store = DuckDBStore(Path(tmp) / "mem.duckdb")
    engine = wfnb.Engine(store=store, namespace={{"noop": shapes.noop}})
    result = await (await engine.start(workflow))
    assert result.ok, result.error
    await engine.close()

with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(tmp))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"import": after_import, "peak": peak,
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""

FLOOR = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"

POINTS = """
marks = []
def mark(label):
    got = dict(line.split(":", 1) for line in open("/proc/self/status"))
    kb = {{k: int(got[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}}
    marks.append((label, kb))
mark("python started")
import asyncio, json, sys, tempfile
from pathlib import Path
import wfnb
mark("import wfnb")
from wfnb.store.duckdb import DuckDBStore
sys.path.insert(0, {bench!r})
import bench_engine, shapes
mark("import the DuckDB store")

async def main(tmp):
    workflow = bench_engine.workflow_of(getattr(shapes, {shape!r})({steps}))
    store = DuckDBStore(Path(tmp) / "mem.duckdb")
    await store.acquire()
    mark("store open")
    await store.release()
    engine = wfnb.Engine(store=store, namespace={{"noop": shapes.noop}})
    result = await (await engine.start(workflow))
    assert result.ok, result.error
    mark("run done")
    await store.flush()
    mark("journal folded")
    await engine.close()
    mark("closed")

with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(tmp))
print(json.dumps(marks))
"""


def measure(shape: str, steps: int) -> dict[str, object]:
    bench = str(__import__("pathlib").Path(__file__).resolve().parent)
    code = RUN.format(bench=bench, shape=shape, steps=steps, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def points(shape: str, steps: int) -> list[tuple[str, dict[str, int]]]:
    bench = str(__import__("pathlib").Path(__file__).resolve().parent)
    code = POINTS.format(bench=bench, shape=shape, steps=steps)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [(label, kb) for label, kb in json.loads(out.stdout.strip().splitlines()[-1])]


def main(steps: int) -> None:
    done = subprocess.run([sys.executable, "-c", FLOOR], capture_output=True, text=True, check=True)
    floor = int(done.stdout)
    print(f"floor: python -c pass peaks at {floor / 1024:.1f} MB (ru_maxrss, fresh process)")
    print(f"{'workload':<26}{'after import MB':>16}{'peak MB':>10}  heavy modules loaded")
    for shape in ("fan_out", "chain"):
        got = measure(shape, steps)
        label = f"durable {shape.replace('_', '-')} {steps}"
        heavy = ", ".join(got["heavy"]) or "none"  # type: ignore[arg-type]
        print(
            f"{label:<26}{int(got['import']) / 1024:>16.1f}"  # type: ignore[call-overload]
            f"{int(got['peak']) / 1024:>10.1f}  {heavy}"  # type: ignore[call-overload]
        )
    print(f"\nwhere it goes (durable fan-out {steps}; /proc/self/status, MB)")
    print(f"{'point':<26}{'VmRSS':>8}{'anon':>8}{'file':>8}{'peak so far':>13}")
    for label, kb in points("fan_out", steps):
        print(
            f"{label:<26}{kb['VmRSS'] / 1024:>8.1f}{kb['RssAnon'] / 1024:>8.1f}"
            f"{kb['RssFile'] / 1024:>8.1f}{kb['VmHWM'] / 1024:>13.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    main(parser.parse_args().steps)
